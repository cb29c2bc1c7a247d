package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/agent/config"
	"github.com/sluiceio/sluice/agent/ingest"
	"github.com/sluiceio/sluice/agent/pipeline"
	"github.com/sluiceio/sluice/buffer"
)

const deadLetterConfig = `gateway: gw-dl
tags: {site: plant-a}
inputs:
  - name: json
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [sensors/+/+/telemetry], max_payload: 200}
    topic: sensors/{site}/{device}/telemetry
    rename: {temp_f: temperature}
    coerce: {pressure: number, alarm: bool}
    units: {temperature: F->C, pressure: psi->kPa}
    event_time: {field: ts, format: rfc3339}
    schema:
      - {name: temperature, required: true, type: number, min: -40, max: 150}
      - {name: status, enum: [ok, warn]}
    lookup:
      key: device
      on_miss: dead_letter
      table: {pump-7: {floor: 2}}
    dead_letters: {to: cloud}
  - name: csv
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [csv]}
    format: csv
    csv: {header: [device, t]}
    dead_letters: {to: cloud}
  - name: logfmt
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [logfmt]}
    format: logfmt
    dead_letters: {to: cloud}
  - name: regex
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [regex]}
    format: regex
    pattern: '^(?P<device>\w+) t=(?P<t>[0-9.]+)$'
    dead_letters: {to: cloud}
  - name: influx
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [influx]}
    format: influx
    dead_letters: {to: cloud}
  - name: number
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [number]}
    format: number
  - name: quiet
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [quiet], qos: 0}
    dead_letters: {to: cloud}
rules:
  - {name: temps, from: json, select: {t: temperature}, to: [other]}
uplinks:
  - name: cloud
    nats: {url: "nats://127.0.0.1:4222"}
  - name: other
    nats: {url: "nats://127.0.0.1:4223"}
`

// ackWaiter is a message's Acker that says when the pipeline released it.
type ackWaiter chan struct{}

func (a ackWaiter) Ack() { close(a) }

// deadLetterRig runs the agent's pipeline with its dead-letter router on a
// real buffer file, without sources or forwarders: the test hands it
// messages and reads the buffer.
type deadLetterRig struct {
	cfg    *config.Config
	buf    *buffer.Buffer
	p      *pipeline.Pipeline
	pins   []*pipeline.Input
	router *deadLetterRouter
	index  map[string]int
}

func newDeadLetterRig(t *testing.T, doc string) *deadLetterRig {
	t.Helper()
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	r := &deadLetterRig{cfg: cfg, index: map[string]int{}}
	names := []string{}
	for _, u := range cfg.Uplinks {
		names = append(names, u.Name)
	}
	if r.buf, err = buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{Uplinks: names}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.buf.Close() })
	byName := map[string]*pipeline.Input{}
	for i, in := range cfg.Inputs {
		pin, err := newPipelineInput(in, cfg.Gateway, cfg.Tags)
		if err != nil {
			t.Fatal(err)
		}
		r.pins = append(r.pins, pin)
		r.index[in.Name] = i
		byName[in.Name] = pin
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r.router = newDeadLetterRouter(cfg.Tags)
	r.router.setRoutes(cfg.Inputs, byName)
	r.p = pipeline.New(r.buf, r.pins, nil, pipeline.Options{
		Gateway: cfg.Gateway, CommitInterval: time.Millisecond, CommitMaxRecords: 100, CheckpointInterval: time.Second,
		RouteDeadLetter: r.router.route,
		Logger:          log,
	})
	if err := r.p.Restore(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// send hands one message to the pipeline and waits for its ack.
func (r *deadLetterRig) send(t *testing.T, input, topic, payload string) {
	t.Helper()
	ack := make(ackWaiter)
	r.p.In() <- ingest.Message{Input: r.index[input], Topic: topic, Payload: []byte(payload), Received: time.Unix(1700000000, 0), Acker: ack}
	select {
	case <-ack:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %q: not acked within 10s", input, payload)
	}
}

type deadLetterDoc struct {
	Rule          string            `json:"rule"`
	TS            string            `json:"ts"`
	Input         string            `json:"input"`
	Topic         string            `json:"topic"`
	Reason        string            `json:"reason"`
	Payload       *string           `json:"payload"`
	PayloadBase64 string            `json:"payload_base64"`
	Truncated     bool              `json:"truncated"`
	Tags          map[string]string `json:"tags"`
}

// queued returns the dead letters in the buffer for uplink.
func (r *deadLetterRig) queued(t *testing.T, uplink string) []deadLetterDoc {
	t.Helper()
	pos, err := r.buf.Cursor(uplink)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := r.buf.Read(uplink, pos, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	var docs []deadLetterDoc
	for _, e := range entries {
		var d deadLetterDoc
		if err := json.Unmarshal(e.Payload, &d); err != nil {
			t.Fatalf("entry %d: %v: %s", e.Seq, err, e.Payload)
		}
		if e.Rule != config.DeadLetterRule || d.Rule != config.DeadLetterRule {
			t.Errorf("entry %d of rule %q (%q)", e.Seq, e.Rule, d.Rule)
		}
		docs = append(docs, d)
	}
	return docs
}

// TestDeadLetterReasons sends one bad message per reason, decoder and stage
// step: each is counted on its input, sampled with its reason, acked, and
// (for inputs with dead_letters.to) committed to the buffer for the uplink
// before its ack, with the whole payload.
func TestDeadLetterReasons(t *testing.T) {
	r := newDeadLetterRig(t, deadLetterConfig)
	const topic = "sensors/plant-a/pump-7/telemetry"
	cases := []struct{ input, topic, payload, reason string }{
		{"json", topic, `{"temperature":20`, "json at byte 17: expected ',' or '}'"},
		{"json", topic, `[1,2]`, "payload is not a JSON object"},
		{"json", topic, `{"temperature":20}` + strings.Repeat(" ", 200), "payload of 218 bytes exceeds max_payload 200"},
		{"json", "sensors/plant-a/pump-7/status", `{"temperature":20}`, `topic "sensors/plant-a/pump-7/status" does not match the input's pattern at "status"`},
		{"json", topic, `{"temp_f":"hot"}`, `field temperature = "hot" is a string; units F->C need a number`},
		{"json", topic, `{"temperature":20,"pressure":"high"}`, `field pressure = "high" is not a number`},
		{"json", topic, `{"temperature":20,"alarm":"maybe"}`, `field alarm = "maybe" is not a bool (true/false, 1/0, yes/no, on/off)`},
		{"json", topic, `{"temperature":20,"ts":1700000000}`, "field ts = 1700000000 is not a time (want RFC 3339)"},
		{"json", topic, `{"status":"ok"}`, "field temperature is required"},
		{"json", topic, `{"temp_f":400}`, "field temperature = 204.44444444444446 is out of range"},
		{"json", topic, `{"temperature":20,"status":"bad"}`, `field status = "bad" is not one of ok, warn`},
		{"json", "sensors/plant-a/pump-9/telemetry", `{"temperature":20}`, `lookup: no row for device = "pump-9"`},
		{"csv", "csv", `pump-7,20,extra`, "csv: more than the 2 columns of the header"},
		{"csv", "csv", `"pump-7,20`, "csv: unterminated quote"},
		{"logfmt", "logfmt", `device="pump-7 t=20`, "logfmt at byte 7: unterminated quote"},
		{"logfmt", "logfmt", `=20`, "logfmt at byte 0: expected a key"},
		{"regex", "regex", `pump-7 temperature 20`, "pattern does not match"},
		{"influx", "influx", `temp,device=pump-7`, "influx at byte"},
		{"number", "number", `twenty`, "payload is not a number"},
		{"json", topic, "{\"temperature\":\xff}", "json at byte"},
	}
	counts := map[string]uint64{}
	for _, c := range cases {
		r.send(t, c.input, c.topic, c.payload)
		counts[c.input]++
		st := &r.pins[r.index[c.input]].Stats
		if got := st.DeadLetters.Load(); got != counts[c.input] {
			t.Errorf("%s %q: %d dead letters, want %d", c.input, c.payload, got, counts[c.input])
		}
		dl := st.LastDeadLetter()
		sample := c.payload
		if len(sample) > 256 {
			sample = sample[:256]
		}
		if !strings.HasPrefix(dl.Reason, c.reason) || dl.Topic != c.topic || dl.Sample != strings.ToValidUTF8(sample, "?") {
			t.Errorf("%s %q: sample %+v, want reason %q", c.input, c.payload, dl, c.reason)
		}
	}
	// Routed before their acks: all are in the buffer now, in order, for
	// cloud only; the number input has no route.
	docs := r.queued(t, "cloud")
	var routed []int
	for i, c := range cases {
		if c.input != "number" {
			routed = append(routed, i)
		}
	}
	if len(docs) != len(routed) {
		t.Fatalf("%d dead letters queued for cloud, want %d", len(docs), len(routed))
	}
	for j, i := range routed {
		c, d := cases[i], docs[j]
		payload := ""
		if d.Payload != nil {
			payload = *d.Payload
		} else if b, err := base64.StdEncoding.DecodeString(d.PayloadBase64); err == nil {
			payload = string(b)
		}
		oversized := strings.Contains(c.reason, "exceeds max_payload")
		want := c.payload
		if oversized {
			want = c.payload // its sample is all of it: 218 bytes < 256
		}
		if d.Input != c.input || d.Topic != c.topic || !strings.HasPrefix(d.Reason, c.reason) || payload != want ||
			d.Truncated != oversized || d.TS != "2023-11-14T22:13:20Z" || d.Tags["site"] != "plant-a" {
			t.Errorf("queued dead letter %d: %+v (payload %q), want input %s topic %s reason %q payload %q", j, d, payload, c.input, c.topic, c.reason, want)
		}
	}
	if d := docs[len(docs)-1]; d.Payload != nil || d.PayloadBase64 != base64.StdEncoding.EncodeToString([]byte("{\"temperature\":\xff}")) {
		t.Errorf("a payload that is not UTF-8 goes as payload_base64: %+v", d)
	}
	if other := r.queued(t, "other"); len(other) != 0 {
		t.Errorf("%d dead letters for uplink other, want none", len(other))
	}
	if got := r.router.Routed.Load(); got != uint64(len(routed)) {
		t.Errorf("router counted %d, want %d", got, len(routed))
	}
}

// TestDeadLetterOfQoS0Input checks that a dead letter of a message with
// nothing to ack (QoS 0) is committed too: the entry itself starts a commit.
func TestDeadLetterOfQoS0Input(t *testing.T) {
	r := newDeadLetterRig(t, deadLetterConfig)
	r.p.In() <- ingest.Message{Input: r.index["quiet"], Topic: "quiet", Payload: []byte("nope"), Received: time.Unix(1700000000, 0)}
	changed := r.buf.Changed()
	deadline := time.After(10 * time.Second)
	for r.buf.LastSeq() == 0 {
		select {
		case <-changed:
			changed = r.buf.Changed()
		case <-deadline:
			t.Fatal("dead letter of a QoS 0 message not committed within 10s")
		}
	}
	docs := r.queued(t, "cloud")
	if len(docs) != 1 || docs[0].Input != "quiet" || docs[0].Reason != "payload is not a JSON object" || docs[0].Payload == nil || *docs[0].Payload != "nope" {
		t.Fatalf("queued %+v", docs)
	}
}

func TestDeadLetterRouteNeedsAnUplink(t *testing.T) {
	// sluice validate (and a config over MQTT) names it with the line.
	_, err := config.Parse([]byte(strings.Replace(deadLetterConfig, "dead_letters: {to: cloud}\n  - name: csv", "dead_letters: {to: nowhere}\n  - name: csv", 1)))
	if err == nil || !strings.Contains(err.Error(), `inputs[0].dead_letters.to: no uplink named "nowhere"`) {
		t.Fatalf("parse: %v", err)
	}
	// A config built in code is checked again at start.
	cfg, err := config.Parse([]byte(deadLetterConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Inputs[0].DeadLetters.To = "nowhere"
	if _, err := startGeneration(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), agentHooks{}, nil, time.Now()); err == nil ||
		!strings.Contains(err.Error(), `inputs[0].dead_letters.to: no uplink named "nowhere"`) {
		t.Fatalf("start: %v", err)
	}
}
