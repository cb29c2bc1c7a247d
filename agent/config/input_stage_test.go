package config

import (
	"strings"
	"testing"

	"github.com/sluiceio/sluice/rules"
)

const stageDoc = `gateway: gw-01
tags: {site: plant-a}
inputs:
  - name: telemetry
    mqtt: {url: "tcp://127.0.0.1:1883", topics: [sensors/+/+/telemetry], max_inflight: 500}
    topic: sensors/{site}/{device}/telemetry
    rename: {temp_f: temperature}
    coerce: {pressure: number}
    units: {temperature: F->C, pressure: psi->kPa}
    event_time: {field: ts, format: ms}
    lookup:
      key: device
      on_miss: dead_letter
      table:
        pump-7: {floor: 2, line: a, spare: false}
    gateway_tags: true
    fields: {region: north}
    dead_letters: {to: cloud}
rules:
  - {name: r, from: telemetry, select: {t: temperature}}
uplinks:
  - name: cloud
    nats: {url: "nats://127.0.0.1:4222"}
`

func TestInputStageNormalizeConfig(t *testing.T) {
	c, err := Parse([]byte(stageDoc))
	if err != nil {
		t.Fatal(err)
	}
	in := c.Inputs[0]
	if got := in.MQTT.Inflight(); got != 500 {
		t.Errorf("max_inflight %d", got)
	}
	so := in.StageOptionsFor(c.Gateway, c.Tags)
	if so == nil || so.EventTime == nil || so.EventTime.Field != "ts" || so.Lookup == nil || so.Lookup.OnMiss != "dead_letter" {
		t.Fatalf("stage options %+v", so)
	}
	row := so.Lookup.Table["pump-7"]
	want := map[string]rules.Value{"floor": rules.Number(2), "line": rules.String("a"), "spare": rules.Bool(false)}
	if len(row) != len(want) {
		t.Fatalf("row %+v", row)
	}
	for _, f := range row {
		if want[f.Name] != f.Value {
			t.Errorf("row field %s = %+v, want %+v", f.Name, f.Value, want[f.Name])
		}
	}
	if so.Gateway["gateway"] != "gw-01" || so.Gateway["site"] != "plant-a" {
		t.Errorf("gateway tags %v", so.Gateway)
	}
	if errs := c.ValidateDeadLetterRoutes(); len(errs) != 0 {
		t.Errorf("routes: %v", errs)
	}
	// Defaults.
	c, err = Parse([]byte(strings.Replace(stageDoc, ", max_inflight: 500", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Inputs[0].MQTT.Inflight(); got != DefaultMaxInflight {
		t.Errorf("default max_inflight %d", got)
	}
	if so := (&Input{}).StageOptionsFor("gw", nil); so != nil {
		t.Errorf("an input with no stage settings has stage options %+v", so)
	}
}

// TestInputStageErrors checks that every bad setting is reported at its
// field path and line.
func TestInputStageErrors(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"max_inflight: 500", "max_inflight: -1", "line 5: inputs[0].mqtt.max_inflight: must not be negative (0: no cap), got -1"},
		{"rename: {temp_f: temperature}", "rename: {temp_f: temperature, temperature: t}", "line 7: inputs[0].rename.temp_f: temperature is renamed too"},
		{"rename: {temp_f: temperature}", "rename: {temp_f: t, temp_c: t}", "line 7: inputs[0].rename.temp_f: temp_c and temp_f both become t"},
		{"coerce: {pressure: number}", "coerce: {pressure: integer}", `line 8: inputs[0].coerce.pressure: "integer" is not number, string or bool`},
		{"units: {temperature: F->C,", "units: {temperature: F->bar,", "line 9: inputs[0].units.temperature: F is a temperature and bar a pressure: no conversion"},
		{"pressure: psi->kPa}", "pressure: psi}", `line 9: inputs[0].units.pressure: "psi" is not a conversion like F->C or psi->kPa`},
		{"event_time: {field: ts, format: ms}", "event_time: {format: ms}", "line 10: inputs[0].event_time.field: is required"},
		{"event_time: {field: ts, format: ms}", "event_time: {field: ts, format: days}", `line 10: inputs[0].event_time.format: format "days" is not auto, s, ms, us, ns or rfc3339`},
		{"key: device", "key: \"\"", "line 12: inputs[0].lookup.key: is required"},
		{"on_miss: dead_letter", "on_miss: drop", `line 13: inputs[0].lookup.on_miss: "drop" is not keep or dead_letter`},
		{"spare: false}", "spare: [1, 2]}", "line 15: inputs[0].lookup.table.pump-7.spare: [1 2] is not a number, string or bool"},
		{"dead_letters: {to: cloud}", "dead_letters: {}", "line 18: inputs[0].dead_letters.to: is required: the name of an uplink"},
	} {
		doc := strings.Replace(stageDoc, c.from, c.to, 1)
		if doc == stageDoc {
			t.Fatalf("%q not in the document", c.from)
		}
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant %q", c.to, err, c.want)
		}
	}
	// sluice validate names a route to an uplink that does not exist.
	if _, err := Parse([]byte(strings.Replace(stageDoc, "{to: cloud}", "{to: nowhere}", 1))); err == nil ||
		!strings.Contains(err.Error(), `line 18: inputs[0].dead_letters.to: no uplink named "nowhere"`) {
		t.Errorf("routes: %v", err)
	}
	if _, err := Parse([]byte(strings.Replace(stageDoc, "gateway_tags: true", "gateway_tag: true", 1))); err == nil || !strings.Contains(err.Error(), "gateway_tag not found") {
		t.Errorf("unknown key: %v", err)
	}
}
