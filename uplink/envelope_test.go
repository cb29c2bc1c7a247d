package uplink

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/sluiceio/sluice/buffer"
)

func TestAppendEnvelope(t *testing.T) {
	tests := []struct {
		name    string
		gateway string
		seq     uint64
		payload string
		want    string
	}{
		{"members", "gw-01", 1234, `{"rule":"r","ts":"2026-11-25T09:01:00Z","values":{"n":1}}`,
			`{"gateway":"gw-01","seq":1234,"rule":"r","ts":"2026-11-25T09:01:00Z","values":{"n":1}}`},
		{"one member", "g", 1, `{"a":1}`, `{"gateway":"g","seq":1,"a":1}`},
		{"empty object", "gw-01", 1, `{}`, `{"gateway":"gw-01","seq":1}`},
		{"empty object with spaces", "gw-01", 2, " {\n\t } ", `{"gateway":"gw-01","seq":2}`},
		{"nil payload", "gw-01", 3, "", `{"gateway":"gw-01","seq":3}`},
		{"leading space", "g", 4, ` {"a":1}`, `{"gateway":"g","seq":4,"a":1}`},
		{"space inside", "g", 5, `{ "a":1 }`, `{"gateway":"g","seq":5, "a":1 }`},
		{"seq 0", "g", 0, `{}`, `{"gateway":"g","seq":0}`},
		{"max seq", "g", math.MaxUint64, `{}`, `{"gateway":"g","seq":18446744073709551615}`},
		{"empty gateway", "", 1, `{}`, `{"gateway":"","seq":1}`},
		{"quote and backslash", `a"b\c`, 1, `{}`, `{"gateway":"a\"b\\c","seq":1}`},
		{"control characters", "a\nb\tc\rd\x01e\x1f\bf\fg", 1, `{}`,
			`{"gateway":"a\nb\tc\rd\u0001e\u001f\bf\fg","seq":1}`},
		{"unicode kept", "gw-ü-東京", 1, `{}`, `{"gateway":"gw-ü-東京","seq":1}`},
		{"html kept", "<a&b>", 1, `{}`, `{"gateway":"<a&b>","seq":1}`},
		{"invalid utf-8", "a\xffb", 1, `{}`, `{"gateway":"a\ufffdb","seq":1}`},
		{"line separators", "a\u2028b\u2029", 1, `{}`, `{"gateway":"a\u2028b\u2029","seq":1}`},
		{"not an object kept", "g", 6, `[1,2]`, `{"gateway":"g","seq":6,"payload":[1,2]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &buffer.Entry{Seq: tt.seq, Payload: []byte(tt.payload)}
			if tt.payload == "" {
				e.Payload = nil
			}
			got := AppendEnvelope([]byte("prefix:"), tt.gateway, e)
			if string(got) != "prefix:"+tt.want {
				t.Errorf("AppendEnvelope\n got %s\nwant %s", got, "prefix:"+tt.want)
			}
			if got := NewEnvelope(tt.gateway).Append(nil, e); string(got) != tt.want {
				t.Errorf("Envelope.Append\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(tt.want)) {
				t.Fatalf("want is not valid JSON: %s", tt.want)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(tt.want), &m); err != nil {
				t.Fatal(err)
			}
			if m["gateway"] != toValidUTF8(tt.gateway) {
				t.Errorf("gateway decodes to %q, want %q", m["gateway"], tt.gateway)
			}
		})
	}
}

func toValidUTF8(s string) string {
	return string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
}

func TestEnvelopeZeroValue(t *testing.T) {
	var v Envelope
	got := v.Append(nil, &buffer.Entry{Seq: 9, Payload: []byte(`{"a":1}`)})
	if want := `{"gateway":"","seq":9,"a":1}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestEnvelopeNoAllocs(t *testing.T) {
	e := &buffer.Entry{Seq: 123456789, Payload: []byte(`{"rule":"r","values":{"x":1.5}}`)}
	env := NewEnvelope(`gw-"01"`)
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { dst = env.Append(dst[:0], e) }); n != 0 {
		t.Errorf("Envelope.Append: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { dst = AppendEnvelope(dst[:0], "gw-\n01\xff", e) }); n != 0 {
		t.Errorf("AppendEnvelope: %v allocs, want 0", n)
	}
}

// encodingJSON is how encoding/json writes s without HTML escaping.
func encodingJSON(t testing.TB, s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "gw-01", `a"b\c`, "\x00\x1f\x7f", "\u2028\u2029", "\xff\xfe", "ü東京", "\b\f<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := string(appendJSONString(nil, s))
		if want := encodingJSON(t, s); got != want {
			t.Errorf("appendJSONString(%q) = %s, encoding/json gives %s", s, got, want)
		}
	})
}

func BenchmarkEnvelopeAppend(b *testing.B) {
	e := &buffer.Entry{Seq: 1234, Payload: []byte(`{"rule":"pump_temp_1m","ts":"2026-11-25T09:01:00Z","window":{"start":"2026-11-25T09:00:00Z","end":"2026-11-25T09:01:00Z"},"key":{"device":"pump-7"},"values":{"avg_t":41.2,"max_t":55.0,"n":600},"tags":{"site":"plant-a"}}`)}
	env := NewEnvelope("gw-01")
	dst := make([]byte, 0, 512)
	b.SetBytes(int64(len(e.Payload)))
	b.ReportAllocs()
	for b.Loop() {
		dst = env.Append(dst[:0], e)
	}
}
