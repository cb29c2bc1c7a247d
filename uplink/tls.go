package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names the files of a TLS client setup. Every field is optional:
// the zero TLSFiles gives the system roots and no client certificate.
type TLSFiles struct {
	CAFile     string // PEM bundle of the CAs that sign the server's certificate; system roots when empty
	CertFile   string // PEM client certificate, for servers that verify clients
	KeyFile    string // PEM key of CertFile; required with it
	ServerName string // name to verify the server's certificate against; the URL's host when empty
}

// ErrTLSFiles is wrapped by the errors of LoadTLS about the files' content
// (as opposed to a file that cannot be read).
var ErrTLSFiles = errors.New("invalid TLS files")

// LoadTLS reads the files and returns a client TLS configuration (TLS 1.2 at
// least) for NATS or Kafka. It returns an error naming the file when one
// cannot be read or holds no usable PEM, or when only one of CertFile and
// KeyFile is given. The agent calls it once per uplink when it builds the
// uplinks; certificates are not reloaded.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s: %w: no PEM certificate in it", f.CAFile, ErrTLSFiles)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile != "" && f.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate %s with key %s: %w: %w", f.CertFile, f.KeyFile, ErrTLSFiles, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.CertFile != "" || f.KeyFile != "":
		return nil, fmt.Errorf("tls: %w: a client certificate needs both cert_file and key_file", ErrTLSFiles)
	}
	return cfg, nil
}
