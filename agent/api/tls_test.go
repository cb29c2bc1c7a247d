package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// issue returns a certificate signed by parent (self-signed when parent is
// nil) and its key.
func issue(t *testing.T, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: ca, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// TestClientCertificatesOnNonLocalBind serves on every interface with client
// certificates as the credentials: a client without one is refused at the
// handshake, one with a certificate of the CA gets the status.
func TestClientCertificatesOnNonLocalBind(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPEM := issue(t, "sluice test CA", nil, nil, true)
	_, srvKey, srvPEM := issue(t, "gateway", ca, caKey, false)
	_, cliKey, cliPEM := issue(t, "prometheus", ca, caKey, false)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := ServerTLS(write("srv.pem", srvPEM), write("srv.key", keyPEM(t, srvKey)), write("ca.pem", caPEM))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ServerTLS(filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv.key"), write("empty.pem", nil)); err == nil {
		t.Fatal("ServerTLS accepted a CA file without certificates")
	}
	if _, err := New(&fixedSource{}, WithListen("0.0.0.0:0"), WithTLS(&tls.Config{})); err == nil {
		t.Fatal("TLS without client certificates accepted as credentials")
	}
	s, err := New(&fixedSource{st: sampleStatus()}, WithLogger(quiet), WithListen("0.0.0.0:0"), WithTLS(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "https://127.0.0.1:" + itoaPort(s.Addr()) + "/api/v1/status"
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	if resp, err := client().Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}
	pair, err := tls.X509KeyPair(cliPEM, keyPEM(t, cliKey))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client(pair).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with a client certificate: %d", resp.StatusCode)
	}
}

func itoaPort(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}
