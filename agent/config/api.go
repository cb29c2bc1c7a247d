package config

import (
	"net"

	"github.com/sluiceio/sluice/agent/api"
)

// DefaultAPIListen is where the local API listens unless configured.
const DefaultAPIListen = "127.0.0.1:8080"

// API configures the local HTTP server: health, metrics, status, dashboard.
//
// On a loopback address (the default) no credentials are needed. Any other
// address requires a bearer token (token_file or token_env), client
// certificates (tls.client_ca_file), or both: validation rejects a
// non-loopback listen address without one of them.
type API struct {
	// Listen is the address; default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// Disabled turns the server off.
	Disabled bool `yaml:"disabled"`
	// TokenFile and TokenEnv name where the bearer token is read from (at
	// most one); the token itself never appears in the config.
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	// TLS serves HTTPS; with ClientCAFile, clients must present a
	// certificate signed by one of its CAs.
	TLS *APITLS `yaml:"tls"`
}

// APITLS is the API server's certificate and, optionally, the CAs whose
// client certificates it requires.
type APITLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Authenticated reports whether the section asks for a token or client
// certificates.
func (a *API) Authenticated() bool {
	return a.TokenFile != "" || a.TokenEnv != "" || (a.TLS != nil && a.TLS.ClientCAFile != "")
}

// validateAPI checks the api section.
func (c *Config) validateAPI(add func(path, format string, args ...any)) {
	a := &c.API
	if a.Disabled {
		return
	}
	listen := a.Listen
	if listen == "" {
		listen = DefaultAPIListen // defaults are set after validation
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		add("api.listen", "%q is not host:port like 127.0.0.1:8080", a.Listen)
		return
	}
	if a.TokenFile != "" && a.TokenEnv != "" {
		add("api.token_file", "set token_file or token_env, not both")
	}
	if t := a.TLS; t != nil {
		if t.CertFile == "" || t.KeyFile == "" {
			add("api.tls", "needs cert_file and key_file")
		}
	}
	if !api.Loopback(listen) && !a.Authenticated() {
		add("api.listen", "%q is not a loopback address: set api.token_file, api.token_env or api.tls.client_ca_file", a.Listen)
	}
}

// setAPIDefaults fills in the api section's defaults.
func (c *Config) setAPIDefaults() {
	if c.API.Listen == "" {
		c.API.Listen = DefaultAPIListen
	}
}
