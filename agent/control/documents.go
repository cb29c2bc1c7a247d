package control

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Desired is the document on config/desired (retained, written by the fleet
// operator). Config is the whole agent config as a JSON object.
type Desired struct {
	Version  int64           `json:"version"`
	IssuedAt time.Time       `json:"issued_at"`
	Target   string          `json:"target"` // the gateway id, or group/<name> on a group's topic
	Config   json.RawMessage `json:"config"`
	Sig      string          `json:"sig,omitempty"`
}

// Reported is the document on config/reported (retained, written by the
// agent). Version is the version of the desired document this report answers;
// AppliedVersion is the one running.
type Reported struct {
	AppliedVersion int64       `json:"applied_version"`
	ConfigHash     string      `json:"config_hash,omitempty"` // sha256 of the running config's canonical bytes
	Status         string      `json:"status"`                // applied or rejected
	Version        int64       `json:"version"`
	Source         string      `json:"source,omitempty"` // own, or group/<name>
	Errors         []ErrorItem `json:"errors,omitempty"`
	Time           time.Time   `json:"time"`
}

// ErrorItem is one reason for a rejection: a field path of the desired
// document (config.rules[0].where, version, sig), the line where known.
type ErrorItem struct {
	Path string `json:"path"`
	Line int    `json:"line,omitempty"`
	Msg  string `json:"msg"`
}

// Report statuses.
const (
	StatusApplied  = "applied"
	StatusRejected = "rejected"
)

// Request is a command request on cmd/<name>/req (never retained). Name and
// Target are covered by the signature, so that a signed request cannot be
// replayed to another command or another gateway; sluice ctl always sets them.
type Request struct {
	ID        string          `json:"id"`
	Name      string          `json:"name,omitempty"`
	Target    string          `json:"target,omitempty"`
	Args      json.RawMessage `json:"args,omitempty"`
	ExpiresAt time.Time       `json:"expires_at"`
	Sig       string          `json:"sig,omitempty"`
}

// Response answers a Request on cmd/<name>/res.
type Response struct {
	ID     string `json:"id"`
	Status string `json:"status"` // accepted, rejected, succeeded, failed
	Detail any    `json:"detail,omitempty"`
}

// Command statuses.
const (
	CmdAccepted  = "accepted"
	CmdRejected  = "rejected"
	CmdSucceeded = "succeeded"
	CmdFailed    = "failed"
)

// Status is the retained document on status.
type Status struct {
	State         string `json:"state"` // ready, stopped; lost is the last will
	BootSeq       uint64 `json:"boot_seq,omitempty"`
	Version       string `json:"version,omitempty"`
	ConfigVersion int64  `json:"config_version"`
	Time          string `json:"time,omitempty"`
}

// Errors of document handling.
var (
	ErrNotObject = errors.New("not a JSON object")
	ErrBadSig    = errors.New("signature does not verify with any trusted key")
	ErrUnsigned  = errors.New("unsigned, and require_signed is on")
)

// Canonical returns the bytes a signature covers: doc without its "sig"
// member, as JSON with object keys sorted and no insignificant whitespace.
// Numbers are kept exactly as written. doc must be one JSON object.
func Canonical(doc []byte) ([]byte, error) {
	m, err := decodeObject(doc)
	if err != nil {
		return nil, err
	}
	delete(m, "sig")
	return encodeCanonical(m)
}

func decodeObject(doc []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode: data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrNotObject
	}
	return m, nil
}

// encodeCanonical writes v with sorted keys (encoding/json sorts map keys),
// no HTML escaping and no trailing newline.
func encodeCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Sign returns doc with its "sig" member set to the base64 ed25519 signature
// of Canonical(doc), in canonical form.
func Sign(doc []byte, key ed25519.PrivateKey) ([]byte, error) {
	m, err := decodeObject(doc)
	if err != nil {
		return nil, err
	}
	delete(m, "sig")
	c, err := encodeCanonical(m)
	if err != nil {
		return nil, err
	}
	m["sig"] = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c))
	return encodeCanonical(m)
}

// Verify checks doc's "sig" against keys. It returns ErrUnsigned when doc has
// no signature and ErrBadSig when no key verifies it.
func Verify(doc []byte, keys []ed25519.PublicKey) error {
	m, err := decodeObject(doc)
	if err != nil {
		return err
	}
	s, _ := m["sig"].(string)
	if s == "" {
		return ErrUnsigned
	}
	sig, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: sig is not a base64 ed25519 signature", ErrBadSig)
	}
	delete(m, "sig")
	c, err := encodeCanonical(m)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if ed25519.Verify(k, c, sig) {
			return nil
		}
	}
	return ErrBadSig
}

// ConfigHash is the hex sha256 of a config's canonical bytes.
func ConfigHash(cfg []byte) string {
	c, err := encodeCanonicalRaw(cfg)
	if err != nil {
		c = cfg
	}
	h := sha256.Sum256(c)
	return hex.EncodeToString(h[:])
}

func encodeCanonicalRaw(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return encodeCanonical(v)
}

// ParsePrivateKey decodes a base64 ed25519 private key (64 bytes) or seed
// (32 bytes), as written by sluice ctl keygen.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace([]byte(s))))
	if err != nil {
		return nil, fmt.Errorf("private key: not base64: %w", err)
	}
	switch len(b) {
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(b), nil
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	}
	return nil, fmt.Errorf("private key: %d bytes, want %d (or a %d-byte seed)", len(b), ed25519.PrivateKeySize, ed25519.SeedSize)
}
