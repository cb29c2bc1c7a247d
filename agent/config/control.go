package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Control configures remote configuration over MQTT (DESIGN.md "Remote
// configuration over MQTT"). Absent or disabled: the agent runs its local
// config only. This section is read from the local file only: a config
// received over MQTT may not carry it (trusted keys never travel there).
type Control struct {
	Enabled  bool   `yaml:"enabled"`
	URL      string `yaml:"url"`       // broker, e.g. tcp://127.0.0.1:1883
	ClientID string `yaml:"client_id"` // default sluice-<gateway>-control
	// Prefix of this gateway's topics; default sluice/<gateway>/. It ends
	// with a slash.
	Prefix string `yaml:"prefix"`
	// Groups whose sluice/group/<name>/config/desired this gateway follows;
	// its own desired config wins over a group's.
	Groups []string `yaml:"groups"`
	// TrustedKeys are the base64 ed25519 public keys (32 bytes) whose
	// signatures are accepted on desired configs and commands.
	TrustedKeys []string `yaml:"trusted_keys"`
	// RequireSigned rejects unsigned configs and commands, and those whose
	// signature no trusted key verifies.
	RequireSigned bool `yaml:"require_signed"`
	// HealthInterval is how often the health document is published;
	// default 30s.
	HealthInterval time.Duration `yaml:"health_interval"`
	KeepAlive      time.Duration `yaml:"keep_alive"` // default 30s
	Username       string        `yaml:"username"`
	PasswordFile   string        `yaml:"password_file"` // secrets come from files or env
	PasswordEnv    string        `yaml:"password_env"`
}

// DefaultHealthInterval is how often health is published by default.
const DefaultHealthInterval = 30 * time.Second

// PublicKeys decodes TrustedKeys (validated by Parse).
func (c *Control) PublicKeys() ([]ed25519.PublicKey, error) {
	keys := make([]ed25519.PublicKey, 0, len(c.TrustedKeys))
	for _, s := range c.TrustedKeys {
		k, err := ParsePublicKey(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ParsePublicKey decodes a base64 (standard or URL alphabet, padded or not)
// ed25519 public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("an ed25519 public key is %d bytes, this one is %d", ed25519.PublicKeySize, len(b))
			}
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, fmt.Errorf("%q is not base64", s)
}

// validateControl checks the control section.
func (c *Config) validateControl(add func(path, format string, args ...any)) {
	ct := &c.Control
	if !ct.Enabled {
		return
	}
	if u, err := url.Parse(ct.URL); err != nil || u.Host == "" {
		add("control.url", "%q is not a broker URL like tcp://127.0.0.1:1883", ct.URL)
	} else if u.Scheme != "tcp" && u.Scheme != "mqtt" {
		add("control.url", "scheme %q is not supported (tcp, mqtt)", u.Scheme)
	}
	if p := ct.Prefix; p != "" {
		if strings.ContainsAny(p, "+#") || !strings.HasSuffix(p, "/") || strings.HasPrefix(p, "/") {
			add("control.prefix", "%q: a topic prefix ends with / and holds no wildcards", p)
		}
	}
	seen := map[string]bool{}
	for i, g := range ct.Groups {
		switch {
		case !namePattern.MatchString(g):
			add(fmt.Sprintf("control.groups[%d]", i), "%q: use letters, digits, _ and - (at most 64)", g)
		case seen[g]:
			add(fmt.Sprintf("control.groups[%d]", i), "%q is listed twice", g)
		}
		seen[g] = true
	}
	for i, k := range ct.TrustedKeys {
		if _, err := ParsePublicKey(k); err != nil {
			add(fmt.Sprintf("control.trusted_keys[%d]", i), "%v", err)
		}
	}
	if ct.RequireSigned && len(ct.TrustedKeys) == 0 {
		add("control.require_signed", "needs at least one key in control.trusted_keys")
	}
	if ct.HealthInterval < 0 || (ct.HealthInterval > 0 && ct.HealthInterval < time.Second) {
		add("control.health_interval", "must be at least 1s, got %s", ct.HealthInterval)
	}
	if ct.KeepAlive < 0 {
		add("control.keep_alive", "must not be negative")
	}
	if ct.PasswordFile != "" && ct.PasswordEnv != "" {
		add("control.password_file", "set password_file or password_env, not both")
	}
}

// setControlDefaults fills in the control section's defaults.
func (c *Config) setControlDefaults() {
	ct := &c.Control
	if ct.ClientID == "" {
		ct.ClientID = "sluice-" + c.Gateway + "-control"
	}
	if ct.Prefix == "" {
		ct.Prefix = "sluice/" + c.Gateway + "/"
	}
	if ct.HealthInterval <= 0 {
		ct.HealthInterval = DefaultHealthInterval
	}
	if ct.KeepAlive <= 0 {
		ct.KeepAlive = 30 * time.Second
	}
}
