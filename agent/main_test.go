package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`gateway: gw 1
inputs:
  - name: telemetry
    mqtt: {url: "tcp://127.0.0.1:1883", topics: ["a/#/b"]}
rules:
  - name: r
    from: telemetry
    where: temperature >
uplinks: []
`), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "--config", bad}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		`line 1: gateway: "gw 1": use letters, digits, _ and -`,
		`line 4: inputs[0].mqtt.topics[0]: "a/#/b": # must be the last level`,
		`line 8: rules[0].where: 1:14: unexpected end of expression`,
		`line 9: uplinks: needs at least one uplink`,
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut.String())
		}
	}

	var vout bytes.Buffer
	if code := run([]string{"validate", "--config", "../examples/demo.yaml"}, &vout, &errOut); code != 0 {
		t.Fatalf("valid config: exit %d: %s", code, errOut.String())
	}
	if code := run([]string{"validate", "--config", filepath.Join(dir, "missing.yaml")}, &out, &errOut); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}

func TestVersionAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || out.String() != "sluice dev\n" {
		t.Errorf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, errOut.String())
	}
}

func TestSelftest(t *testing.T) {
	t.Setenv("SLUICE_KEEP_EXE_PAGES", "")
	var out, errOut bytes.Buffer
	if code := run([]string{"selftest"}, &out, &errOut); code != 0 {
		t.Fatalf("selftest exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "selftest: ok: 2000 messages from 20 devices") {
		t.Errorf("output %q", out.String())
	}
	// The agent ran in this test's process and released its pages.
	if !strings.Contains(out.String(), "selftest: start-up pages released: 2 mappings (") {
		t.Errorf("output %q; want the release of the test binary's start-up pages", out.String())
	}
}

func TestTestRuleCommand(t *testing.T) {
	dir := t.TempDir()
	rule := filepath.Join(dir, "r.yaml")
	os.WriteFile(rule, []byte(`- name: hot
  from: x
  where: temperature > 30
  select: {device: device, t: temperature}
- name: per_device
  sql: SELECT device, count(*) AS n, max(temperature) AS m FROM x GROUP BY device, TUMBLING(1h)
`), 0o600)
	input := filepath.Join(dir, "in.jsonl")
	os.WriteFile(input, []byte(`{"device":"a","temperature":20}
{"device":"a","temperature":35}

{"device":"b","temperature":31.5}
`), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"test-rule", "--rule", rule, "--input", input}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d outputs:\n%s", len(lines), out.String())
	}
	for i, want := range []string{`"values":{"device":"a","t":35}`, `"values":{"device":"b","t":31.5}`, `"values":{"device":"a","n":2,"m":35}`, `"values":{"device":"b","n":1,"m":31.5}`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("output %d: %s\nwant it to contain %s", i, lines[i], want)
		}
	}
	os.WriteFile(input, []byte("{\"device\":\n"), 0o600)
	if code := run([]string{"test-rule", "--rule", rule, "--input", input}, &out, &errOut); code != 1 {
		t.Errorf("bad record: exit %d", code)
	}
}
