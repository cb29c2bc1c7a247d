package ingest

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/rules"
)

func mustStage(t testing.TB, o StageOptions) *Stage {
	t.Helper()
	s, err := NewStage(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// applyJSON decodes payload on topic and runs the stage.
func applyJSON(t testing.TB, s *Stage, topic, payload string) (*rules.Record, error) {
	t.Helper()
	var d JSONDecoder
	r := &rules.Record{Topic: topic, Time: time.Unix(1, 0).UTC()}
	if err := d.Decode([]byte(payload), r); err != nil {
		t.Fatalf("decode %s: %v", payload, err)
	}
	return r, s.Apply(r)
}

func TestUnitConversions(t *testing.T) {
	for _, c := range []struct {
		spec    string
		in, out float64
		exact   bool
	}{
		{"F->C", 212, 100, true},
		{"F->C", 32, 0, true},
		{"°F->°C", -40, -40, true},
		{"C->F", 100, 212, true},
		{"C->F", -40, -40, true},
		{"K->C", 273.15, 0, true},
		{"K->C", 373.15, 100, false},
		{"C->K", 0, 273.15, true},
		{"K->F", 0, -459.67, false},
		{"psi->kPa", 1, 6.894757293168361, true},
		{"kPa->psi", 6.894757293168361, 1, false},
		{"bar->kPa", 1, 100, true},
		{"bar->psi", 1, 14.503773773022, false},
		{"hPa->kPa", 1013.25, 101.325, true},
		{"mbar->hPa", 5, 5, true},
		{"mph->km/h", 1, 1.609344, true},
		{"mph->km/h", 60, 96.56064, true},
		{"km/h->m/s", 36, 10, true},
		{"kn->km/h", 1, 1.852, true},
		{"in->mm", 1, 25.4, true},
		{"in->mm", 3, 76.2, true},
		{"mm->in", 25.4, 1, true},
		{"ft->m", 1, 0.3048, true},
		{"mi->km", 1, 1.609344, true},
	} {
		conv, err := ParseConversion(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		got := conv.Apply(c.in)
		if c.exact && got != c.out || !c.exact && math.Abs(got-c.out) > 1e-9*math.Max(1, math.Abs(c.out)) {
			t.Errorf("%s(%v) = %v, want %v", c.spec, c.in, got, c.out)
		}
	}
	for spec, want := range map[string]string{
		"F":          "not a conversion",
		"F->":        "not a conversion",
		"F->psi":     "is a temperature and psi a pressure",
		"furlong->m": `unknown unit "furlong"`,
		"C->X":       `unknown unit "X"`,
	} {
		if _, err := ParseConversion(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", spec, err, want)
		}
	}
}

func TestStageNormalizes(t *testing.T) {
	s := mustStage(t, StageOptions{
		Topic:     "sensors/{site}/{device}/telemetry",
		Rename:    map[string]string{"temp_f": "temperature", "p": "pressure", "site": "plant"},
		Coerce:    map[string]string{"pressure": "number", "serial": "string", "alarm": "bool", "open": "number"},
		Units:     map[string]string{"temperature": "F->C", "pressure": "psi->kPa"},
		EventTime: &EventTime{Field: "ts", Format: TimeMillis},
		Schema:    []FieldSpec{{Name: "temperature", Required: true, Type: "number", Min: f64(-40), Max: f64(150)}},
		Lookup: &LookupOptions{Key: "device", Table: map[string][]rules.Field{
			"pump-7": {{Name: "floor", Value: rules.Number(2)}, {Name: "line", Value: rules.String("a")}},
		}},
		Gateway: map[string]string{"gateway": "gw-01", "region": "north"},
		Tags:    map[string]string{"region": "south"},
	})
	r, err := applyJSON(t, s, "sensors/plant-a/pump-7/telemetry",
		`{"temp_f":212,"p":"14.5","serial":1234567,"alarm":"on","open":true,"ts":1700000000123,"temperature":1}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]rules.Value{
		"plant":       rules.String("plant-a"),
		"device":      rules.String("pump-7"),
		"temperature": rules.Number(100),
		"pressure":    rules.Number(14.5 * 6894.757293168361 / 1000),
		"serial":      rules.String("1234567"),
		"alarm":       rules.Bool(true),
		"open":        rules.Number(1),
		"ts":          rules.Number(1700000000123),
		"floor":       rules.Number(2),
		"line":        rules.String("a"),
		"gateway":     rules.String("gw-01"),
		"region":      rules.String("south"),
	}
	for name, w := range want {
		if got, _ := r.Get(name); got != w {
			t.Errorf("%s = %+v, want %+v", name, got, w)
		}
	}
	if len(r.Fields) != len(want) {
		t.Errorf("%d fields, want %d: %+v", len(r.Fields), len(want), r.Fields)
	}
	if want := time.UnixMilli(1700000000123).UTC(); !r.Time.Equal(want) {
		t.Errorf("time %v, want %v", r.Time, want)
	}
	// No lookup row: kept as it is.
	r, err = applyJSON(t, s, "sensors/plant-a/pump-9/telemetry", `{"temp_f":50}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Get("floor"); ok || r.Time != time.Unix(1, 0).UTC() {
		t.Errorf("pump-9: floor set or time changed: %+v %v", r.Fields, r.Time)
	}
	if v, _ := r.Get("temperature"); v != rules.Number(10) {
		t.Errorf("50 °F = %v °C, want 10", v.Num)
	}
}

// TestStageErrorReasons shows each reason the stage gives for a dead letter.
func TestStageErrorReasons(t *testing.T) {
	s := mustStage(t, StageOptions{
		Coerce:    map[string]string{"n": "number", "b": "bool"},
		Units:     map[string]string{"t": "C->F"},
		EventTime: &EventTime{Field: "ts"},
		Schema:    []FieldSpec{{Name: "t", Required: true}},
		Lookup:    &LookupOptions{Key: "device", OnMiss: MissDeadLetter, Table: map[string][]rules.Field{"7": nil, "d": nil}},
	})
	for _, c := range []struct{ payload, reason string }{
		{`{"t":1,"device":"d","n":"12a"}`, `field n = "12a" is not a number`},
		{`{"t":1,"device":"d","b":"maybe"}`, `field b = "maybe" is not a bool (true/false, 1/0, yes/no, on/off)`},
		{`{"t":"hot","device":"d"}`, `field t = "hot" is a string; units C->F need a number`},
		{`{"t":1,"device":"d","ts":"yesterday"}`, `field ts = "yesterday" is not a time (want RFC 3339 or unix seconds, ms, µs or ns)`},
		{`{"t":1,"device":"d","ts":true}`, `field ts = true is not a time`},
		{`{"t":1,"device":"d","ts":1e300}`, `is not a time`},
		{`{"device":"d"}`, `field t is required`},
		{`{"t":1,"device":"e"}`, `lookup: no row for device = "e"`},
		{`{"t":1}`, `lookup: no row for device = null`},
		{`{"t":1,"device":8}`, `lookup: no row for device = 8`},
	} {
		_, err := applyJSON(t, s, "", c.payload)
		if err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %v, want %q", c.payload, err, c.reason)
		}
	}
	if _, err := applyJSON(t, s, "", `{"t":1,"device":7,"n":" 12 ","b":"NO","ts":null}`); err != nil {
		t.Errorf("a number key finds its row by its text: %v", err)
	}
}

func TestEventTimeFormats(t *testing.T) {
	at := time.Date(2026, 11, 25, 9, 1, 2, 345678912, time.UTC)
	for _, c := range []struct {
		format  TimeFormat
		payload string
		want    time.Time
	}{
		{TimeAuto, `{"ts":1795597262}`, at.Truncate(time.Second)},
		{TimeAuto, `{"ts":1795597262345}`, at.Truncate(time.Millisecond)},
		{TimeAuto, `{"ts":1795597262345678}`, at.Truncate(time.Microsecond)},
		{TimeAuto, `{"ts":1795597262345678912}`, time.Unix(0, int64(float64(1795597262345678912))).UTC()},
		{TimeAuto, `{"ts":"2026-11-25T09:01:02.345678912Z"}`, at},
		{TimeAuto, `{"ts":"2026-11-25T10:01:02.345678912+01:00"}`, at},
		{TimeAuto, `{"ts":"1795597262"}`, at.Truncate(time.Second)},
		{TimeAuto, `{"ts":1795597262.5}`, at.Truncate(time.Second).Add(500 * time.Millisecond)},
		{TimeSeconds, `{"ts":1795597262}`, at.Truncate(time.Second)},
		{TimeSeconds, `{"ts":1}`, time.Unix(1, 0).UTC()},
		{TimeMillis, `{"ts":1000}`, time.Unix(1, 0).UTC()},
		{TimeMicros, `{"ts":1795597262345678}`, at.Truncate(time.Microsecond)},
		{TimeNanos, `{"ts":1000}`, time.Unix(0, 1000).UTC()},
		{TimeRFC3339, `{"ts":"2026-11-25T04:01:02.345678912-05:00"}`, at},
	} {
		s := mustStage(t, StageOptions{EventTime: &EventTime{Field: "ts", Format: c.format}})
		r, err := applyJSON(t, s, "", c.payload)
		if err != nil {
			t.Errorf("%d %s: %v", c.format, c.payload, err)
			continue
		}
		if !r.Time.Equal(c.want) {
			t.Errorf("%d %s: %v, want %v", c.format, c.payload, r.Time, c.want)
		}
		if v, _ := r.Get("ts"); v.Kind != rules.KindNumber || math.Abs(v.Num-float64(c.want.UnixNano())/1e6) > 1e-3 {
			t.Errorf("%d %s: ts rewritten to %+v, want unix ms %v", c.format, c.payload, v, float64(c.want.UnixNano())/1e6)
		}
	}
	for _, c := range []struct {
		format  TimeFormat
		payload string
	}{
		{TimeRFC3339, `{"ts":1795597262}`},
		{TimeSeconds, `{"ts":"2026-11-25T09:01:02Z"}`},
		{TimeAuto, `{"ts":"2026-02-30T09:01:02Z"}`},
		{TimeAuto, `{"ts":"2026-11-25 09:01:02Z"}`},
		{TimeNanos, `{"ts":-1e19}`},
	} {
		s := mustStage(t, StageOptions{EventTime: &EventTime{Field: "ts", Format: c.format}})
		if _, err := applyJSON(t, s, "", c.payload); err == nil || !strings.Contains(err.Error(), "is not a time") {
			t.Errorf("%d %s: %v, want not a time", c.format, c.payload, err)
		}
	}
}

func TestRenameReplacesAndRejectsChains(t *testing.T) {
	s := mustStage(t, StageOptions{Rename: map[string]string{"a": "b"}})
	r, err := applyJSON(t, s, "", `{"b":1,"a":2,"c":3}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Fields) != 2 || r.Fields[0] != (rules.Field{Name: "b", Value: rules.Number(2)}) {
		t.Errorf("fields %+v, want b=2 and c=3", r.Fields)
	}
	for _, c := range []struct {
		o    StageOptions
		want string
	}{
		{StageOptions{Rename: map[string]string{"a": "b", "b": "c"}}, "rename a: b is renamed too"},
		{StageOptions{Rename: map[string]string{"a": "c", "b": "c"}}, "a and b both become c"},
		{StageOptions{Rename: map[string]string{"a": ""}}, "must not be empty"},
		{StageOptions{Coerce: map[string]string{"a": "int"}}, `coerce a: "int" is not number, string or bool`},
		{StageOptions{Units: map[string]string{"a": "F->bar"}}, "units a: F is a temperature"},
		{StageOptions{EventTime: &EventTime{}}, "event_time: field is required"},
		{StageOptions{Lookup: &LookupOptions{}}, "lookup: key is required"},
		{StageOptions{Lookup: &LookupOptions{Key: "k", OnMiss: "drop"}}, `on_miss "drop"`},
	} {
		if _, err := NewStage(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
}

func TestParseRFC3339MatchesTimeParse(t *testing.T) {
	for _, s := range rfc3339Seeds {
		want, werr := time.Parse(time.RFC3339Nano, s)
		got, ok := parseRFC3339(s)
		if ok != (werr == nil) || ok && !got.Equal(want) {
			t.Errorf("%q: got %v %v, time.Parse %v %v", s, got, ok, want, werr)
		}
	}
}

var rfc3339Seeds = []string{
	"2026-11-25T09:01:02Z", "2026-11-25T09:01:02.5Z", "2026-11-25T09:01:02.123456789Z",
	"2026-11-25T09:01:02.1234567891Z", "2026-11-25T09:01:02+01:00", "2026-11-25T09:01:02.001-23:59",
	"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-25T24:00:00Z",
	"2026-11-25T09:01:02", "2026-11-25T09:01:02+1:00", "2026-11-25t09:01:02Z", "0000-01-01T00:00:00Z",
	"9999-12-31T23:59:59.999999999Z", "2026-11-25T09:01:60Z", "2026-11-25T09:01:02.Z", "x",
}

func FuzzParseRFC3339(f *testing.F) {
	for _, s := range rfc3339Seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseRFC3339(s)
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !got.Equal(want) {
			t.Fatalf("%q: parsed %v, time.Parse %v %v", s, got, want, err)
		}
	})
}

// TestStageNormalizeDoesNotAllocate runs every step on a record: nothing
// per record allocates, neither when no step is configured.
func TestStageNormalizeDoesNotAllocate(t *testing.T) {
	full := mustStage(t, StageOptions{
		Topic:     "sensors/{site}/{device}/telemetry",
		Rename:    map[string]string{"temp_f": "temperature"},
		Coerce:    map[string]string{"p": "number", "serial": "string", "alarm": "bool"},
		Units:     map[string]string{"temperature": "F->C", "p": "psi->kPa"},
		EventTime: &EventTime{Field: "ts"},
		Schema:    []FieldSpec{{Name: "temperature", Required: true, Type: "number", Min: f64(-40)}},
		Lookup:    &LookupOptions{Key: "serial", Table: map[string][]rules.Field{"1234": {{Name: "floor", Value: rules.Number(2)}}}},
		Gateway:   map[string]string{"gateway": "gw-01"},
		Tags:      map[string]string{"region": "north"},
	})
	empty := mustStage(t, StageOptions{})
	for name, s := range map[string]*Stage{"full": full, "empty": empty} {
		var d JSONDecoder
		r := &rules.Record{}
		payload := []byte(`{"temp_f":70.5,"p":"14.7","serial":1234,"alarm":"on","ts":"2026-11-25T10:01:02.5+01:00"}`)
		allocs := testing.AllocsPerRun(1000, func() {
			r.Reset()
			r.Topic = "sensors/plant-a/pump-7/telemetry"
			d.Decode(payload, r)
			if err := s.Apply(r); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per record", name, allocs)
		}
		if name == "full" {
			if v, _ := r.Get("floor"); v != rules.Number(2) {
				t.Errorf("lookup by a coerced number key: floor = %+v", v)
			}
		}
	}
}

func BenchmarkStageNormalize(b *testing.B) {
	s := mustStage(b, StageOptions{
		Rename:    map[string]string{"temp_f": "temperature"},
		Coerce:    map[string]string{"p": "number"},
		Units:     map[string]string{"temperature": "F->C", "p": "psi->kPa"},
		EventTime: &EventTime{Field: "ts", Format: TimeMillis},
		Schema:    []FieldSpec{{Name: "temperature", Required: true, Type: "number"}},
		Lookup:    &LookupOptions{Key: "device", Table: map[string][]rules.Field{"pump-7": {{Name: "floor", Value: rules.Number(2)}}}},
	})
	var d JSONDecoder
	r := &rules.Record{}
	payload := []byte(`{"device":"pump-7","temp_f":70.5,"p":"14.7","ts":1795597262345}`)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset()
		d.Decode(payload, r)
		if err := s.Apply(r); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzStageNormalize runs a stage with every step configured over any JSON
// payload and topic: it never panics, never grows a record beyond its
// decoded fields plus what the stage adds, and reuses its scratch.
func FuzzStageNormalize(f *testing.F) {
	s := mustStage(f, StageOptions{
		Topic:     "s/{device}",
		Rename:    map[string]string{"a": "b", "x": "y"},
		Coerce:    map[string]string{"b": "number", "c": "string", "d": "bool"},
		Units:     map[string]string{"b": "F->C", "e": "psi->kPa"},
		EventTime: &EventTime{Field: "ts"},
		Schema:    []FieldSpec{{Name: "b", Type: "number", Min: f64(-1000)}, {Name: "f", Enum: []string{"ok"}}},
		Lookup:    &LookupOptions{Key: "device", Table: map[string][]rules.Field{"7": {{Name: "g", Value: rules.Number(1)}}}},
		Gateway:   map[string]string{"gateway": "gw"},
		Tags:      map[string]string{"t": "v"},
	})
	f.Add("s/7", `{"a":"70","c":1.5,"d":"yes","e":14.7,"ts":"2026-11-25T09:01:02Z","f":"ok"}`)
	f.Add("s/x", `{"b":1,"a":2,"y":3,"x":4}`)
	f.Add("s/7", `{"ts":1e300,"c":true}`)
	f.Add("s/", `{"d":2,"ts":"17955972620"}`)
	f.Add("s/7/8", `{}`)
	f.Fuzz(func(t *testing.T, topic, payload string) {
		var d JSONDecoder
		r := &rules.Record{Topic: topic}
		if d.Decode([]byte(payload), r) != nil {
			return
		}
		n := len(r.Fields)
		if s.Apply(r) == nil && len(r.Fields) > n+5 {
			t.Fatalf("%d fields after the stage from %d decoded", len(r.Fields), n)
		}
		if cap(s.scratch) > 1<<20 {
			t.Fatalf("scratch grew to %d bytes", cap(s.scratch))
		}
	})
}
