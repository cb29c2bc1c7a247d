package ingest

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/sluiceio/sluice/rules"
)

func TestJSONDecoder(t *testing.T) {
	var d JSONDecoder
	var r rules.Record
	payload := []byte(` {"device":"dev-17","temperature":23.4,"humidity":41.2,"ts":1732500000000,
		"ok":true,"none":null,"gps":{"lat":51.5,"lon":-0.1,"fix":{"q":2}},"tags":["a",{"b":1}],"esc":"a\"b\u00e9\ud83d\ude00","e":-1.5e3} `)
	if err := d.Decode(payload, &r); err != nil {
		t.Fatal(err)
	}
	want := []rules.Field{
		{Name: "device", Value: rules.String("dev-17")},
		{Name: "temperature", Value: rules.Number(23.4)},
		{Name: "humidity", Value: rules.Number(41.2)},
		{Name: "ts", Value: rules.Number(1732500000000)},
		{Name: "ok", Value: rules.Bool(true)},
		{Name: "none", Value: rules.Null},
		{Name: "gps.lat", Value: rules.Number(51.5)},
		{Name: "gps.lon", Value: rules.Number(-0.1)},
		{Name: "gps.fix.q", Value: rules.Number(2)},
		{Name: "esc", Value: rules.String("a\"bé😀")},
		{Name: "e", Value: rules.Number(-1500)},
	}
	if len(r.Fields) != len(want) {
		t.Fatalf("got %d fields %+v", len(r.Fields), r.Fields)
	}
	for i := range want {
		if r.Fields[i] != want[i] {
			t.Errorf("field %d = %+v, want %+v", i, r.Fields[i], want[i])
		}
	}
}

func TestJSONDecoderRejects(t *testing.T) {
	cases := map[string]string{
		`[1,2]`:                     "not a JSON object",
		`"x"`:                       "not a JSON object",
		``:                          "not a JSON object",
		`{"a":1`:                    "expected ',' or '}'",
		`{"a" 1}`:                   "expected ':'",
		`{"a":1}x`:                  "unexpected data",
		`{"a":tru}`:                 "bad literal",
		`{"a":1.2.3}`:               "bad number",
		`{"a":"x`:                   "unterminated string",
		`{"a":"\x"}`:                "bad escape",
		`{"a":-}`:                   "bad number",
		`{"a":}`:                    "expected a value",
		`{a:1}`:                     "expected a string",
		`{"a":"` + "\x01" + `"}`:    "control character",
		strings.Repeat(`{"a":`, 20): "nested deeper",
	}
	for in, want := range cases {
		var d JSONDecoder
		var r rules.Record
		err := d.Decode([]byte(in), &r)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestJSONDecoderDoesNotAllocate(t *testing.T) {
	var d JSONDecoder
	var r rules.Record
	payload := []byte(`{"device":"dev-17","temperature":23.4,"humidity":41.2,"ts":1732500000000}`)
	d.Decode(payload, &r)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Reset()
		if err := d.Decode(payload, &r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message", allocs)
	}
}

func BenchmarkJSONDecoder(b *testing.B) {
	var d JSONDecoder
	var r rules.Record
	payload := []byte(`{"device":"dev-17","temperature":23.4,"humidity":41.2,"ts":1732500000000}`)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		r.Reset()
		d.Decode(payload, &r)
	}
}

// FuzzJSONDecoder checks the decoder never panics and agrees with
// encoding/json on which documents are valid objects.
func FuzzJSONDecoder(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,{"c":"d"}]}}`, `{"s":"\u00e9\n"}`, `{}`, `{"a":1e400}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d JSONDecoder
		var r rules.Record
		err := d.Decode(b, &r)
		var v map[string]any
		stdErr := json.Unmarshal(b, &v)
		if err == nil && stdErr != nil && !strings.Contains(stdErr.Error(), "out of range") && !strings.Contains(stdErr.Error(), "invalid character") {
			t.Fatalf("accepted %q that encoding/json rejects: %v", b, stdErr)
		}
	})
}

// TestFastNumberMatchesParseFloat checks the fast path against ParseFloat,
// bit for bit, on the forms sensors send and the edges of the fast path.
func TestFastNumberMatchesParseFloat(t *testing.T) {
	for _, s := range []string{"0", "-0", "23.4", "-20.5", "41.2", "1732500000000", "0.1", "0.3", "9.99999999999999",
		"123456789012345", "1.", ".5", "007", "-0.00000000000001", "8.589973e9"} {
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := fastNumber([]byte(s))
		if strings.ContainsAny(s, "eE") {
			if ok {
				t.Errorf("%s: the fast path took an exponent", s)
			}
			continue
		}
		if !ok || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("%s: fast path %v (%v), ParseFloat %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"1234567890123456", "9.999999999999999", "-0.000000000000001", "-", "", "1.2.3", "--1", "1-"} {
		if _, ok := fastNumber([]byte(s)); ok {
			t.Errorf("%q: the fast path took it", s)
		}
	}
}

// FuzzFastNumber compares the fast path with ParseFloat on any input.
func FuzzFastNumber(f *testing.F) {
	for _, s := range []string{"23.4", "-0", "1732500000000", "0.1", "123456789012345"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := fastNumber([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q: fast path %v, ParseFloat %v (%v)", s, got, want, err)
		}
	})
}

// TestJSONDecoderNamesFollowEachPayload decodes payloads whose fields come
// in different orders and numbers, with one decoder (the names it remembers
// by position must not leak from one payload to the next).
func TestJSONDecoderNamesFollowEachPayload(t *testing.T) {
	var d JSONDecoder
	for _, c := range []struct{ payload, want string }{
		{`{"a":1,"b":2}`, "a=1 b=2"},
		{`{"b":3,"a":4}`, "b=3 a=4"},
		{`{"b":5,"c":{"d":6},"e":"x"}`, "b=5 c.d=6 e=x"},
		{`{"a":7}`, "a=7"},
		{`{"b":3,"a":4}`, "b=3 a=4"},
	} {
		var r rules.Record
		if err := d.Decode([]byte(c.payload), &r); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range r.Fields {
			v := f.Value.Str
			if f.Value.Kind == rules.KindNumber {
				v = strconv.FormatFloat(f.Value.Num, 'g', -1, 64)
			}
			got = append(got, f.Name+"="+v)
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%s: got %s, want %s", c.payload, g, c.want)
		}
	}
}
