package uplink

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// startAuthServer starts a server with the given options (auth, TLS,
// JetStream) on a free loopback port.
func startAuthServer(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.Host, o.Port, o.NoLog, o.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestNATSAuth connects with each way of authenticating, and checks that
// the wrong secret does not connect.
func TestNATSAuth(t *testing.T) {
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(dir, "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	serverTLS, files := testCerts(t, dir)
	clientTLS, err := LoadTLS(files)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		server     server.Options
		good, bad  NATSOption
		tlsOptions bool
	}{
		{"user", server.Options{Username: "gw", Password: "s3cret"}, WithUserPassword("gw", "s3cret"), WithUserPassword("gw", "wrong"), false},
		{"token", server.Options{Authorization: "t0ken"}, WithToken("t0ken"), WithToken("wrong"), false},
		{"nkey", server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}}, WithNKeySeedFile(seedFile), WithNKeySeedFile(otherFile), false},
		{"tls", server.Options{TLSConfig: serverTLS, TLSVerify: true, TLSTimeout: 2}, WithNATSTLS(clientTLS), WithNATSTLS(clientTLS.Clone()), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.server
			s := startAuthServer(t, &o)
			u := newTestNATS(t, s.ClientURL(), tt.good)
			eventually(t, 10*time.Second, "connected", u.Connected)
			deliver(t, u, entries(1, 10)) // core publish, flushed

			bad := tt.bad
			if tt.tlsOptions {
				// A client without the client certificate.
				noCert := clientTLS.Clone()
				noCert.Certificates = nil
				bad = WithNATSTLS(noCert)
			}
			w := newTestNATS(t, s.ClientURL(), bad)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := w.Deliver(ctx, entries(1, 1)); err == nil || w.Connected() {
				t.Errorf("with the wrong credentials: Deliver %v, connected %v", err, w.Connected())
			}
		})
	}
	if _, err := NewNATS("cloud", "nats://127.0.0.1:1", WithGateway("g"), WithNKeySeedFile(filepath.Join(dir, "missing.nk"))); err == nil {
		t.Error("a missing nkey seed file gave no error")
	}
}
