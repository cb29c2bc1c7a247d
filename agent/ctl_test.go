package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/control"
	"github.com/sluiceio/sluice/internal/testenv"
)

// ctlTestRuntime applies configs with the real parser and validation and
// runs no pipeline.
type ctlTestRuntime struct {
	local   *config.Config
	mu      sync.Mutex
	running *config.Config
}

func (r *ctlTestRuntime) Apply(_ context.Context, cfg []byte) error {
	c, err := control.ParseRemote(cfg, r.local)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.running = c
	r.mu.Unlock()
	return nil
}
func (r *ctlTestRuntime) Flush(context.Context) error { return nil }
func (r *ctlTestRuntime) Status() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return map[string]any{"rules": len(r.running.Rules)}
}
func (r *ctlTestRuntime) BufferStats() any { return map[string]any{"records": 0} }
func (r *ctlTestRuntime) TestRule(context.Context, json.RawMessage, []json.RawMessage) ([]json.RawMessage, error) {
	return nil, nil
}
func (r *ctlTestRuntime) Reload(context.Context) error { return nil }

const ctlLocal = `gateway: gw-01
inputs:
  - name: telemetry
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [sensors/+/telemetry]}
rules:
  - name: temp
    from: telemetry
    window: {tumbling: 1m}
    select: {n: count(*)}
uplinks:
  - name: cloud
    nats: {url: "nats://127.0.0.1:4222"}
`

// TestCtlRoundTrip: keygen, sign, push (applied, then rejected), cmd and
// watch against mosquitto and a running controller.
func TestCtlRoundTrip(t *testing.T) {
	dir := t.TempDir()
	broker, err := testenv.StartMosquitto(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Stop)
	ctl := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := ctlMain(args, &out, &errb)
		return code, out.String() + errb.String()
	}
	keyPrefix := filepath.Join(dir, "fleet")
	if code, out := ctl("keygen", "-out", keyPrefix); code != 0 {
		t.Fatalf("keygen %d: %s", code, out)
	}
	pub, err := os.ReadFile(keyPrefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	local, err := config.Parse([]byte(ctlLocal + "control:\n  enabled: true\n  url: " + broker.URL +
		"\n  require_signed: true\n  health_interval: 1s\n  trusted_keys: [" + strings.TrimSpace(string(pub)) + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	rt := &ctlTestRuntime{local: local, running: local}
	c, err := control.New(control.Options{Gateway: "gw-01", Control: local.Control, Version: "test",
		Runtime: rt, Store: &control.MemStore{}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// A new rule, signed and pushed.
	newCfg := filepath.Join(dir, "new.yaml")
	withHot := strings.Replace(ctlLocal, "uplinks:", "  - name: hot\n    from: telemetry\n    where: temperature > 30\n"+
		"    window: {tumbling: 1m}\n    select: {n: count(*)}\n    to: [cloud]\nuplinks:", 1)
	os.WriteFile(newCfg, []byte(strings.Replace(withHot, "gateway: gw-01\n", "", 1)), 0o600)
	doc := filepath.Join(dir, "v2.json")
	if code, out := ctl("sign", "-key", keyPrefix+".key", "-version", "2", "-gateway", "gw-01", "-o", doc, newCfg); code != 0 {
		t.Fatalf("sign %d: %s", code, out)
	}
	code, out := ctl("push", "-broker", broker.URL, "-timeout", "15s", doc)
	if code != 0 || !strings.Contains(out, "gw-01: applied version 2") {
		t.Fatalf("push %d: %s", code, out)
	}
	if c.AppliedVersion() != 2 {
		t.Fatalf("applied version %d", c.AppliedVersion())
	}

	// The same document again: the gateway already runs it and says nothing
	// new; its retained report of that version says applied.
	if code, out := ctl("push", "-broker", broker.URL, "-timeout", "15s", doc); code != 0 {
		t.Fatalf("re-push %d: %s", code, out)
	}
	// Unsigned: rejected with the reason, exit 1.
	unsigned := filepath.Join(dir, "v3.json")
	if code, out := ctl("sign", "-version", "3", "-gateway", "gw-01", "-o", unsigned, newCfg); code != 0 {
		t.Fatalf("sign %d: %s", code, out)
	}
	code, out = ctl("push", "-broker", broker.URL, "-timeout", "15s", unsigned)
	if code != 1 || !strings.Contains(out, "rejected version 3") || !strings.Contains(out, "sig: unsigned") {
		t.Fatalf("unsigned push %d: %s", code, out)
	}
	// An invalid config is refused before it leaves the operator's machine.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules: [{name: x, from: nowhere}]\n"), 0o600)
	if code, out := ctl("sign", "-version", "4", "-gateway", "gw-01", bad); code != 1 || !strings.Contains(out, "rules[0]") {
		t.Fatalf("sign of an invalid config %d: %s", code, out)
	}

	code, out = ctl("cmd", "-broker", broker.URL, "-timeout", "15s", "-gateway", "gw-01", "-key", keyPrefix+".key", "status")
	if code != 0 || !strings.Contains(out, "gw-01 status succeeded") || !strings.Contains(out, `"config_version": 2`) {
		t.Fatalf("cmd status %d: %s", code, out)
	}
	if code, out := ctl("cmd", "-broker", broker.URL, "-timeout", "15s", "-gateway", "gw-01", "ping"); code != 1 || !strings.Contains(out, "rejected") {
		t.Fatalf("unsigned cmd %d: %s", code, out)
	}

	code, out = ctl("watch", "-broker", broker.URL, "-gateway", "gw-01", "-count", "2", "-timeout", "15s")
	if code != 0 || !strings.Contains(out, "gw-01 status ready boot_seq=1 version=test config_version=2") || !strings.Contains(out, "gw-01 health {") {
		t.Fatalf("watch %d: %s", code, out)
	}
	t.Logf("sluice ctl watch:\n%s", out)
}
