package config

import (
	"errors"
	"strings"
	"testing"
)

func TestAPISection(t *testing.T) {
	cases := []struct {
		name, api string
		want      string // "" means valid; else the error text
	}{
		{"default", "", ""},
		{"loopback", "api: {listen: \"127.0.0.2:9000\"}", ""},
		{"localhost", "api: {listen: \"localhost:9000\"}", ""},
		{"ipv6 loopback", "api: {listen: \"[::1]:9000\"}", ""},
		{"all interfaces without token", "api: {listen: \":8080\"}",
			`line 19: api.listen: ":8080" is not a loopback address: set api.token_file, api.token_env or api.tls.client_ca_file`},
		{"lan without token", "api: {listen: \"192.168.1.10:8080\"}",
			`line 19: api.listen: "192.168.1.10:8080" is not a loopback address`},
		{"lan with token file", "api: {listen: \"0.0.0.0:8080\", token_file: /etc/sluice/api.token}", ""},
		{"lan with token env", "api: {listen: \"0.0.0.0:8080\", token_env: SLUICE_API_TOKEN}", ""},
		{"lan with client certs", "api: {listen: \"0.0.0.0:8443\", tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}}", ""},
		{"lan with tls but no client certs", "api: {listen: \"0.0.0.0:8443\", tls: {cert_file: c.pem, key_file: k.pem}}",
			`api.listen: "0.0.0.0:8443" is not a loopback address`},
		{"both token sources", "api: {token_file: a, token_env: B}", `api.token_file: set token_file or token_env, not both`},
		{"tls without key", "api: {tls: {cert_file: c.pem}}", `api.tls: needs cert_file and key_file`},
		{"bad listen", "api: {listen: \"8080\"}", `api.listen: "8080" is not host:port`},
		{"disabled lan", "api: {listen: \":8080\", disabled: true}", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(good + c.api + "\n"))
			if c.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse: %v (config %+v), want an error %q", err, cfg, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse error:\n%v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestAPIDefaults(t *testing.T) {
	cfg, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Listen != "127.0.0.1:8080" || cfg.API.Disabled || cfg.API.Authenticated() {
		t.Fatalf("api defaults %+v", cfg.API)
	}
}
