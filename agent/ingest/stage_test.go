package ingest

import (
	"strings"
	"testing"

	"github.com/sluiceio/sluice/rules"
)

func f64(v float64) *float64 { return &v }

func TestStage(t *testing.T) {
	s, err := NewStage(StageOptions{
		Topic: "sensors/{site}/{device}/telemetry",
		Schema: []FieldSpec{
			{Name: "temperature", Required: true, Type: "number", Min: f64(-40), Max: f64(150)},
			{Name: "status", Type: "string", Enum: []string{"ok", "warn"}},
			{Name: "device", Required: true, Type: "string"},
		},
		Tags: map[string]string{"region": "north"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var d JSONDecoder
	run := func(topic, payload string) (*rules.Record, error) {
		r := &rules.Record{Topic: topic}
		if err := d.Decode([]byte(payload), r); err != nil {
			t.Fatal(err)
		}
		return r, s.Apply(r)
	}
	r, err := run("sensors/plant-a/pump-7/telemetry", `{"temperature":41.5,"status":"ok"}`)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]rules.Value{"site": rules.String("plant-a"), "device": rules.String("pump-7"), "region": rules.String("north"), "temperature": rules.Number(41.5)} {
		if got, _ := r.Get(name); got != want {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	for _, c := range []struct{ topic, payload, reason string }{
		{"sensors/a/b/telemetry", `{"status":"ok"}`, "field temperature is required"},
		{"sensors/a/b/telemetry", `{"temperature":"hot"}`, "field temperature is a string, want a number"},
		{"sensors/a/b/telemetry", `{"temperature":151}`, "field temperature = 151 is out of range"},
		{"sensors/a/b/telemetry", `{"temperature":20,"status":"bad"}`, `field status = "bad" is not one of ok, warn`},
		{"sensors/a/b/status", `{"temperature":20}`, `does not match the input's pattern at "status"`},
		{"sensors/a/telemetry", `{"temperature":20}`, "fewer levels"},
		{"sensors/a/b/telemetry/x", `{"temperature":20}`, "more levels"},
	} {
		if _, err := run(c.topic, c.payload); err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s %s: %v, want %q", c.topic, c.payload, err, c.reason)
		}
	}
	for _, bad := range []StageOptions{{Topic: "a/{}/b"}, {Topic: "a/x{y}/b"}, {Schema: []FieldSpec{{Name: "x", Type: "date"}}}} {
		if _, err := NewStage(bad); err == nil {
			t.Errorf("NewStage(%+v) accepted", bad)
		}
	}
}

func TestStageDoesNotAllocate(t *testing.T) {
	s, _ := NewStage(StageOptions{Topic: "sensors/{site}/{device}/telemetry",
		Schema: []FieldSpec{{Name: "temperature", Required: true, Type: "number", Min: f64(-40)}}, Tags: map[string]string{"region": "north"}})
	var d JSONDecoder
	r := &rules.Record{}
	payload := []byte(`{"temperature":21.5}`)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Reset()
		r.Topic = "sensors/plant-a/pump-7/telemetry"
		d.Decode(payload, r)
		if err := s.Apply(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per record", allocs)
	}
}

func FuzzStageTopic(f *testing.F) {
	s, _ := NewStage(StageOptions{Topic: "sensors/{site}/{device}/telemetry", Schema: []FieldSpec{{Name: "v", Type: "number", Min: f64(0)}}})
	f.Add("sensors/a/b/telemetry", `{"v":1}`)
	f.Add("//", `{}`)
	f.Fuzz(func(t *testing.T, topic, payload string) {
		var d JSONDecoder
		r := &rules.Record{Topic: topic}
		if d.Decode([]byte(payload), r) == nil {
			s.Apply(r) // must not panic
		}
	})
}
