package control

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/internal/testenv"
)

// localYAML is the gateway's local file: what runs before any remote config.
const localYAML = `gateway: gw-01
data_dir: /tmp/sluice-control-test
inputs:
  - name: telemetry
    mqtt:
      url: tcp://127.0.0.1:1883
      topics: [sensors/+/telemetry]
rules:
  - name: keep
    from: telemetry
    group_by: [device]
    window: {tumbling: 1m}
    select: {n: count(*)}
  - name: change
    from: telemetry
    window: {tumbling: 1m}
    select: {n: count(*)}
  - name: drop
    from: telemetry
    window: {tumbling: 1m}
    select: {n: count(*)}
uplinks:
  - name: cloud
    nats: {url: "nats://127.0.0.1:4222"}
`

// remoteConfig is a config member: keeps "keep", changes "change", removes
// "drop", adds "added".
const remoteConfig = `{"inputs":[{"name":"telemetry","mqtt":{"url":"tcp://127.0.0.1:1883","topics":["sensors/+/telemetry"]}}],
"rules":[{"name":"keep","from":"telemetry","group_by":["device"],"window":{"tumbling":"1m"},"select":{"n":"count(*)"}},
{"name":"change","from":"telemetry","window":{"tumbling":"30s"},"select":{"n":"count(*)"}},
{"name":"added","from":"telemetry","where":"temperature > 30","window":{"tumbling":"1m"},"select":{"hot":"count(*)"}}],
"uplinks":[{"name":"cloud","nats":{"url":"nats://127.0.0.1:4222"}}]}`

// testRuntime is a real Runtime over the real config parser: Apply parses and
// validates with ParseRemote (config.Parse) and, when valid, makes the result
// the running config. It runs no pipeline.
type testRuntime struct {
	local *config.Config

	mu      sync.Mutex
	running *config.Config
	applies int // successful
	flushes int
	reloads int
}

func newTestRuntime(t testing.TB) *testRuntime {
	t.Helper()
	c, err := config.Parse([]byte(localYAML))
	if err != nil {
		t.Fatal(err)
	}
	return &testRuntime{local: c, running: c}
}

func (r *testRuntime) Apply(_ context.Context, cfg []byte) error {
	c, err := ParseRemote(cfg, r.local)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = c
	r.applies++
	return nil
}

func (r *testRuntime) Flush(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
	return nil
}

func (r *testRuntime) Status() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return map[string]any{"rules": len(r.running.Rules)}
}

func (r *testRuntime) BufferStats() any { return map[string]any{"records": 0} }

// TestRule returns each record whose "temperature" is above 30, standing in
// for a compiled rule.
func (r *testRuntime) TestRule(_ context.Context, rule json.RawMessage, records []json.RawMessage) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for _, rec := range records {
		var m struct{ Temperature float64 }
		if err := json.Unmarshal(rec, &m); err != nil {
			return nil, err
		}
		if m.Temperature > 30 {
			out = append(out, rec)
		}
	}
	return out, nil
}

func (r *testRuntime) Reload(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reloads++
	return nil
}

func (r *testRuntime) ruleNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, ru := range r.running.Rules {
		names = append(names, ru.Name)
	}
	return names
}

func (r *testRuntime) count() (applies, flushes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applies, r.flushes
}

type keyPair struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newKey(t testing.TB) keyPair {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{pub, priv}
}

func (k keyPair) b64() string { return base64.StdEncoding.EncodeToString(k.pub) }

// desiredDoc builds a desired document, signed when key is not nil.
func desiredDoc(t testing.TB, version int64, target, cfg string, key ed25519.PrivateKey) []byte {
	t.Helper()
	doc := fmt.Sprintf(`{"version":%d,"issued_at":"2026-11-27T10:00:00Z","target":%q,"config":%s}`, version, target, cfg)
	if key == nil {
		return []byte(doc)
	}
	b, err := Sign([]byte(doc), key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func controlConfig(url string, keys []string, requireSigned bool, groups ...string) config.Control {
	return config.Control{Enabled: true, URL: url, ClientID: "sluice-gw-01-control", Prefix: "sluice/gw-01/",
		Groups: groups, TrustedKeys: keys, RequireSigned: requireSigned, HealthInterval: time.Second, KeepAlive: 30 * time.Second}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newController returns a controller not connected to any broker, for the
// handler tests and fuzzing.
func newController(t testing.TB, rt Runtime, store Store, ct config.Control) *Controller {
	t.Helper()
	c, err := New(Options{Gateway: "gw-01", Control: ct, Version: "test", Runtime: rt, Store: store,
		Logger: quietLog(), Host: func(context.Context) any { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startController runs a controller until the test ends.
func startController(t *testing.T, c *Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func startBroker(t *testing.T) *testenv.Mosquitto {
	t.Helper()
	m, err := testenv.StartMosquitto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// operator is the fleet operator's MQTT client.
type operator struct {
	t  *testing.T
	c  mqtt.Client
	in chan mqtt.Message
}

func newOperator(t *testing.T, url string, filters ...string) *operator {
	t.Helper()
	o := &operator{t: t, in: make(chan mqtt.Message, 256)}
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("op-%d", time.Now().UnixNano())).SetCleanSession(true)
	o.c = mqtt.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("operator connect: %v", tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	for _, f := range filters {
		if tok := o.c.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) { o.in <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("operator subscribe: %v", tok.Error())
		}
	}
	return o
}

func (o *operator) publish(topic string, retained bool, payload []byte) {
	o.t.Helper()
	if tok := o.c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		o.t.Fatalf("publish: %v", tok.Error())
	}
}

// waitFor returns the first message on topic for which match is true.
func (o *operator) waitFor(topic string, match func([]byte) bool) []byte {
	o.t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-o.in:
			if m.Topic() == topic && match(m.Payload()) {
				return m.Payload()
			}
		case <-deadline:
			o.t.Fatalf("no matching message on %s within 15s", topic)
			return nil
		}
	}
}

func (o *operator) report(version int64) Reported {
	o.t.Helper()
	var r Reported
	o.waitFor("sluice/gw-01/config/reported", func(b []byte) bool {
		return json.Unmarshal(b, &r) == nil && r.Version == version
	})
	return r
}
