package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/agent/broker"
	"github.com/sluiceio/sluice/internal/testenv"
)

const good = `gateway: gw-01
inputs:
  - name: telemetry
    mqtt:
      url: tcp://127.0.0.1:1883
      topics: [sensors/+/telemetry]
rules:
  - name: temp
    from: telemetry
    group_by: [device]
    window: {tumbling: 1m}
    select:
      n: count(*)
      avg_t: avg(temperature)
      max_t: max(temperature)
uplinks:
  - name: cloud
    nats: {url: "nats://127.0.0.1:4222"}
`

func TestParseDefaultsAndOrder(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Inputs[0].MQTT
	if *m.QoS != 1 || m.ClientID != "sluice-gw-01-telemetry" || *m.ReadCoalesce != DefaultReadCoalesce {
		t.Errorf("mqtt defaults: %+v", m)
	}
	if c.Buffer.Path != filepath.Join("data", "buffer.db") || c.Buffer.CommitInterval != DefaultCommitInterval {
		t.Errorf("buffer defaults: %+v", c.Buffer)
	}
	if c.Uplinks[0].NATS.Subject != DefaultSubject {
		t.Errorf("subject default %q", c.Uplinks[0].NATS.Subject)
	}
	var names []string
	for _, s := range c.Rules[0].Select {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "n,avg_t,max_t" {
		t.Errorf("select order %v", names)
	}
	if c.Rules[0].Window.Tumbling != time.Minute {
		t.Errorf("tumbling %v", c.Rules[0].Window.Tumbling)
	}
}

func TestErrorsNameLineAndField(t *testing.T) {
	cases := []struct {
		name, old, edit, want string
	}{
		{"bad expression", "select:\n      n: count(*)", "select:\n      n: count(*) +", "line 13: rules[0].select.n: 1:11: unexpected end of expression"},
		{"unknown input", "from: telemetry", "from: nope", `line 9: rules[0].from: no input is named "nope"`},
		{"bad qos", "topics: [sensors/+/telemetry]", "topics: [sensors/+/telemetry]\n      qos: 3", "line 7: inputs[0].mqtt.qos: must be 0, 1 or 2, got 3"},
		{"bad ack delay", "topics: [sensors/+/telemetry]", "topics: [sensors/+/telemetry]\n      max_ack_delay: 1s", "line 7: inputs[0].mqtt.max_ack_delay: must be between 0 and 100ms, got 1s"},
		{"bad procs", "uplinks:", "limits: {procs: -1}\nuplinks:", `line 16: limits.procs: must not be negative (0: sized by load), got -1`},
		{"bad filter", "sensors/+/telemetry", "sensors/a+/telemetry", `line 6: inputs[0].mqtt.topics[0]: "sensors/a+/telemetry": + must fill a whole level`},
		{"no gateway", "gateway: gw-01", "gateway: ''", "line 1: gateway: is required"},
		{"unknown key", "group_by: [device]", "group_by: [device]\n    groupby: [x]", "line 11: field groupby not found"},
		{"bad subject", `nats: {url: "nats://127.0.0.1:4222"}`, `nats: {url: "nats://127.0.0.1:4222", subject: "a.*.{rule}"}`, "uplinks[0].nats.subject:"},
		{"field outside aggregate", "avg_t: avg(temperature)", "avg_t: temperature", `rules[0].select.avg_t: 1:1: field "temperature" must be in group_by`},
		{"bad policy", "uplinks:", "buffer: {policy: keep_all}\nuplinks:", `line 16: buffer.policy: unknown policy "keep_all"`},
		{"bad size", "uplinks:", "buffer: {max_bytes: 12 parsecs}\nuplinks:", `line 16: "12 parsecs" is not a size like 64MiB`},
		{"unknown uplink", "from: telemetry", "from: telemetry\n    to: [edge]", `line 10: rules[0].to[0]: no uplink is named "edge"`},
	}
	for _, c := range cases {
		doc := strings.Replace(good, c.old, c.edit, 1)
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v\nwant it to contain %q", c.name, err, c.want)
		}
	}
}

// TestExampleConfigs loads every example config in the repository and every
// YAML block of the README that is a whole config, so none of them rots.
func TestExampleConfigs(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no example configs found in examples/")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	n := 0
	for _, b := range blocks {
		if !strings.HasPrefix(b[1], "gateway:") {
			continue
		}
		n++
		if _, err := Parse([]byte(b[1])); err != nil {
			t.Errorf("README config block %d: %v", n, err)
		}
	}
	if n == 0 {
		t.Error("README has no config example (a ```yaml block starting with gateway:)")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("gateway: x\nrules: [{name: a, where: 'a >'}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b) // must not panic
	})
}

func TestBufferCapsAnd32BitLimit(t *testing.T) {
	doc := strings.Replace(good, "uplinks:", "buffer: {max_bytes: 2GiB, max_records: 1000000, max_age: 72h, policy: backpressure}\nuplinks:", 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Buffer.MaxBytes != 2<<30 || c.Buffer.MaxRecords != 1e6 || c.Buffer.MaxAge != 72*time.Hour || c.Buffer.Policy != "backpressure" {
		t.Errorf("buffer %+v", c.Buffer)
	}
	errs := c.validate(32)
	if len(errs) != 1 || errs[0].Path != "buffer.max_bytes" || !strings.Contains(errs[0].Msg, "2048 MiB is more than a 32-bit gateway can memory-map") {
		t.Errorf("32-bit: %v", errs)
	}
	if errs := c.validate(64); len(errs) != 0 {
		t.Errorf("64-bit: %v", errs)
	}
	def, _ := Parse([]byte(good))
	if def.Buffer.MaxBytes != DefaultMaxBytes || len(def.validate(32)) != 0 {
		t.Errorf("default cap %d must fit 32-bit gateways", def.Buffer.MaxBytes)
	}
	for in, want := range map[string]ByteSize{"512KiB": 512 << 10, "64MiB": 64 << 20, "1GB": 1e9, "100": 100, "7 MiB": 7 << 20} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
}

func TestInputStageConfig(t *testing.T) {
	doc := strings.Replace(good, "      topics: [sensors/+/telemetry]", `      topics: [sensors/+/telemetry]
    topic: "sensors/{device}/telemetry"
    schema:
      - {name: temperature, required: true, type: number, min: -40, max: 150}
    fields: {site: plant-a}`, 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	so := c.Inputs[0].StageOptions()
	if so == nil || so.Topic != "sensors/{device}/telemetry" || len(so.Schema) != 1 || *so.Schema[0].Max != 150 || so.Tags["site"] != "plant-a" {
		t.Fatalf("stage options %+v", so)
	}
	bad := strings.Replace(doc, "type: number", "type: date", 1)
	if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "inputs[0].schema") {
		t.Errorf("bad schema type: %v", err)
	}
}

// TestBrokerSectionNeedsTheBrokerBuild: a build without the built-in
// broker (the default) rejects a broker section at validation, not at start.
func TestBrokerSectionNeedsTheBrokerBuild(t *testing.T) {
	_, err := Parse([]byte(strings.Replace(good, "inputs:", "broker: {listen: 127.0.0.1:1883}\ninputs:", 1)))
	if broker.Built {
		if err != nil {
			t.Fatalf("with the broker built in: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "broker: this sluice has no built-in broker") {
		t.Errorf("err = %v, want one saying the build has no broker", err)
	}
}

func TestQuickAck(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(good, "topics: [sensors/+/telemetry]", "topics: [sensors/+/telemetry]\n      quick_ack: true", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Inputs[0].MQTT.QuickAck {
		t.Error("quick_ack not set")
	}
}
