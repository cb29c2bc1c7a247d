package ingest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/internal/testenv"
)

// writeCert makes a key and a certificate signed by parent (self-signed when
// parent is nil) and writes them as PEM files.
func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         isCA, BasicConstraintsValid: true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o644)
	return cert, key
}

// TestMQTTOverTLSWithClientCertificate subscribes over TLS to a mosquitto
// that requires client certificates, with the buffered reader on top.
func TestMQTTOverTLSWithClientCertificate(t *testing.T) {
	dir := t.TempDir()
	// mosquitto started as root drops to its own user, which must be able
	// to read the certificates.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	ca, caKey := writeCert(t, dir, "ca", nil, nil, true)
	writeCert(t, dir, "server", ca, caKey, false)
	writeCert(t, dir, "client", ca, caKey, false)
	m, err := testenv.StartMosquittoWith(dir, "cafile "+filepath.Join(dir, "ca.pem")+"\ncertfile "+filepath.Join(dir, "server.pem")+
		"\nkeyfile "+filepath.Join(dir, "server.key")+"\nrequire_certificate true\n")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	url := "ssl://127.0.0.1:" + itoa(m.Port)

	clientTLS, err := TLSConfig(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, out, _, _ := startSourceWith(t, MQTTOptions{URL: url, ClientID: "tls-test", Topics: []string{"t/#"}, QoS: 1, KeepAlive: 30 * time.Second,
		ReadCoalesce: time.Millisecond, TLS: clientTLS})
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("tls-pub").SetTLSConfig(clientTLS))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(50)
	pub.Publish("t/x", 1, false, `{"v":1}`).Wait()
	select {
	case msg := <-out:
		if string(msg.Payload) != `{"v":1}` {
			t.Errorf("payload %q", msg.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over TLS")
	}
	// QoS 0 is read by the connection itself, under TLS too.
	pub.Publish("t/y", 0, false, `{"v":0}`).Wait()
	select {
	case msg := <-out:
		if msg.Batch == nil || len(msg.Batch.Items) != 1 || msg.Batch.Items[0].Topic != "t/y" || string(msg.Batch.Items[0].Payload) != `{"v":0}` {
			t.Errorf("QoS 0 over TLS: got %+v, want a batch of t/y {\"v\":0}", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no QoS 0 message over TLS")
	}

	// Without a client certificate the broker refuses the handshake.
	noCert, _ := TLSConfig(filepath.Join(dir, "ca.pem"), "", "")
	bad := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("tls-nocert").SetTLSConfig(noCert).SetConnectTimeout(3 * time.Second))
	if tok := bad.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		bad.Disconnect(0)
		t.Error("a client without a certificate connected")
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
