package ingest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluiceio/sluice/rules"
)

func mustDecoder(t testing.TB, kind string, o DecoderOptions) Decoder {
	t.Helper()
	d, err := NewDecoder(kind, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func checkFields(t *testing.T, in string, got []rules.Field, want []rules.Field) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%q: got %+v, want %+v", in, got, want)
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%q: field %d = %+v, want %+v", in, i, got[i], want[i])
		}
	}
}

type decodeCase struct {
	in   string
	want []rules.Field
	err  string // substring of the error; "" for none
}

func runCases(t *testing.T, d Decoder, cases []decodeCase) {
	t.Helper()
	var r rules.Record
	for _, c := range cases {
		r.Reset()
		err := d.Decode([]byte(c.in), &r)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		checkFields(t, c.in, r.Fields, c.want)
	}
}

func n(name string, f float64) rules.Field   { return rules.Field{Name: name, Value: rules.Number(f)} }
func s(name, v string) rules.Field           { return rules.Field{Name: name, Value: rules.String(v)} }
func bl(name string, v bool) rules.Field     { return rules.Field{Name: name, Value: rules.Bool(v)} }
func null(name string) rules.Field           { return rules.Field{Name: name, Value: rules.Null} }
func fields(fs ...rules.Field) []rules.Field { return fs }

func TestCSVDecoder(t *testing.T) {
	d := mustDecoder(t, "csv", DecoderOptions{Header: []string{"device", "", "temp", "note"}})
	runCases(t, d, []decodeCase{
		{"pump-7,skip,41.5,ok\r\n", fields(s("device", "pump-7"), n("temp", 41.5), s("note", "ok")), ""},
		{`"pump,7",x,-1e3,"say ""hi"""`, fields(s("device", "pump,7"), n("temp", -1000), s("note", `say "hi"`)), ""},
		{`"42",x,,`, fields(s("device", "42")), ""}, // quoted stays a string; empty left out
		{"a,b", fields(s("device", "a")), ""},       // fewer columns
		{"a,b,c,d,e", nil, "more than the 4 columns"},
		{`"a`, nil, "unterminated quote"},
		{`"a"b,c`, nil, "after the closing quote"},
		{`a"b,c`, nil, "quote inside"},
	})
	semi := mustDecoder(t, "csv", DecoderOptions{Header: []string{"a", "b"}, Delimiter: ';'})
	runCases(t, semi, []decodeCase{{"1;x,y", fields(n("a", 1), s("b", "x,y")), ""}})
}

func TestLogfmtDecoder(t *testing.T) {
	d := mustDecoder(t, "logfmt", DecoderOptions{})
	runCases(t, d, []decodeCase{
		{`level=info msg="disk \"sda\" full" temp=41.5 count=-3 ok=true bad=false debug empty= id=7a`,
			fields(s("level", "info"), s("msg", `disk "sda" full`), n("temp", 41.5), n("count", -3),
				bl("ok", true), bl("bad", false), bl("debug", true), null("empty"), s("id", "7a")), ""},
		{"  a=1\tb=\"x y\"\n", fields(n("a", 1), s("b", "x y")), ""},
		{"", nil, ""},
		{`a="x`, nil, "unterminated quote"},
		{`a=x"y`, nil, "unexpected"},
		{`=1`, nil, "expected a key"},
		{`a"b=1`, nil, "quote in a key"},
	})
}

func TestRegexDecoder(t *testing.T) {
	d := mustDecoder(t, "regex", DecoderOptions{Pattern: `^(?P<ts>\S+) (?P<level>[A-Z]+) (\w+) temp=(?P<temp>\S+)(?: code=(?P<code>\d+))?`})
	runCases(t, d, []decodeCase{
		{"2026-11-25T09:00:00Z WARN pump temp=41.5 code=7",
			fields(s("ts", "2026-11-25T09:00:00Z"), s("level", "WARN"), n("temp", 41.5), n("code", 7)), ""},
		{"t INFO pump temp=12abc", fields(s("ts", "t"), s("level", "INFO"), s("temp", "12abc")), ""},
		{"nothing here", nil, "does not match"},
	})
	var r rules.Record
	if err := d.Decode([]byte("x"), &r); !errors.Is(err, ErrNoMatch) {
		t.Errorf("error %v, want ErrNoMatch", err)
	}
}

func TestInfluxDecoder(t *testing.T) {
	d := mustDecoder(t, "influx", DecoderOptions{})
	runCases(t, d, []decodeCase{
		{`weather,site=plant\ a,dev\=ice=d7 temp=21.5,hum=40i,cnt=3u,ok=t,off=FALSE,msg="say \"hi\" \\ ok" 1732500000000000000` + "\n",
			fields(s("measurement", "weather"), s("site", "plant a"), s("dev=ice", "d7"), n("temp", 21.5), n("hum", 40),
				n("cnt", 3), bl("ok", true), bl("off", false), s("msg", `say "hi" \ ok`)), ""},
		{`cpu\,x usage=0.5`, fields(s("measurement", "cpu,x"), n("usage", 0.5)), ""},
		{`cpu`, nil, "expected a space before the fields"},
		{`cpu usage`, nil, "expected field=value"},
		{`cpu,host usage=1`, nil, "expected tag=value"},
		{`cpu usage=abc`, nil, "bad field value"},
		{`cpu usage="x`, nil, "unterminated string"},
		{`cpu usage=1 12x`, nil, "bad timestamp"},
		{`,a=b x=1`, nil, "expected a measurement"},
	})
	var r rules.Record
	if err := d.Decode([]byte("m v=1 1732500000000000000"), &r); err != nil || !r.Time.Equal(time.Unix(0, 1732500000000000000)) {
		t.Errorf("time %v err %v", r.Time, err)
	}
	ms := mustDecoder(t, "influx", DecoderOptions{Precision: "ms"})
	r.Reset()
	if err := ms.Decode([]byte("m v=1 1732500000123"), &r); err != nil || !r.Time.Equal(time.UnixMilli(1732500000123)) {
		t.Errorf("time %v err %v", r.Time, err)
	}
	r.Reset()
	if err := ms.Decode([]byte("m v=1 9223372036854775807"), &r); err == nil {
		t.Error("overflowing timestamp accepted")
	}
}

func TestNumberDecoder(t *testing.T) {
	runCases(t, mustDecoder(t, "number", DecoderOptions{}), []decodeCase{
		{" 41.5\n", fields(n("value", 41.5)), ""},
		{"-3e2", fields(n("value", -300)), ""},
		{"NaN", nil, "not a number"},
		{"0x10", nil, "not a number"},
		{"1_000", nil, "not a number"},
		{"", nil, "not a number"},
	})
	runCases(t, mustDecoder(t, "number", DecoderOptions{Field: "temp"}), []decodeCase{{"7", fields(n("temp", 7)), ""}})
}

func TestNewDecoderRejects(t *testing.T) {
	cases := []struct {
		kind string
		o    DecoderOptions
		err  string
	}{
		{"xml", DecoderOptions{}, "unknown format"},
		{"csv", DecoderOptions{}, "needs a header"},
		{"csv", DecoderOptions{Header: []string{"a"}, Delimiter: '"'}, "delimiter"},
		{"regex", DecoderOptions{}, "needs a pattern"},
		{"regex", DecoderOptions{Pattern: "("}, "missing closing"},
		{"regex", DecoderOptions{Pattern: `(\d+)`}, "no named group"},
		{"influx", DecoderOptions{Precision: "h"}, "precision"},
	}
	for _, c := range cases {
		if _, err := NewDecoder(c.kind, c.o); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s %+v: error %v, want %q", c.kind, c.o, err, c.err)
		}
	}
	if _, err := NewDecoder("xml", DecoderOptions{}); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("error %v, want ErrUnknownFormat", err)
	}
	for _, k := range DecoderKinds() {
		if _, err := NewDecoder(k, DecoderOptions{Header: []string{"a"}, Pattern: "(?P<a>.)"}); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
}

func TestDecodersDoNotAllocate(t *testing.T) {
	cases := []struct {
		kind    string
		o       DecoderOptions
		payload string
	}{
		{"csv", DecoderOptions{Header: []string{"device", "temp", "hum", "site", "ok"}}, "pump-7,41.5,40,plant-a,1"},
		{"logfmt", DecoderOptions{}, "device=pump-7 temp=41.5 hum=40 site=plant-a ok=true"},
		{"influx", DecoderOptions{}, "telemetry,device=pump-7,site=plant-a temp=41.5,hum=40i 1732500000000000000"},
		{"number", DecoderOptions{}, "41.5"},
	}
	for _, c := range cases {
		d := mustDecoder(t, c.kind, c.o)
		payload := []byte(c.payload)
		r := rules.Record{Fields: make([]rules.Field, 0, 16)}
		if err := d.Decode(payload, &r); err != nil { // warm the name tables
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			r.Reset()
			if err := d.Decode(payload, &r); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per decode", c.kind, allocs)
		}
	}
}

func BenchmarkDecoders(b *testing.B) {
	for _, c := range []struct {
		kind    string
		o       DecoderOptions
		payload string
	}{
		{"csv", DecoderOptions{Header: []string{"device", "temp", "hum", "site", "ok"}}, "pump-7,41.5,40,plant-a,1"},
		{"logfmt", DecoderOptions{}, "device=pump-7 temp=41.5 hum=40 site=plant-a ok=true"},
		{"regex", DecoderOptions{Pattern: `^(?P<device>\S+) (?P<temp>\S+) (?P<hum>\S+)$`}, "pump-7 41.5 40"},
		{"influx", DecoderOptions{}, "telemetry,device=pump-7,site=plant-a temp=41.5,hum=40i 1732500000000000000"},
	} {
		b.Run(c.kind, func(b *testing.B) {
			d := mustDecoder(b, c.kind, c.o)
			payload := []byte(c.payload)
			var r rules.Record
			b.ReportAllocs()
			for b.Loop() {
				r.Reset()
				if err := d.Decode(payload, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fuzzDecoder checks that d never panics and that what it decodes is
// bounded by the payload.
func fuzzDecoder(f *testing.F, d Decoder, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r rules.Record
		if err := d.Decode(b, &r); err != nil {
			return
		}
		if len(r.Fields) > len(b)+1 {
			t.Fatalf("%d fields from %d bytes", len(r.Fields), len(b))
		}
	})
}

func FuzzDecodeCSV(f *testing.F) {
	fuzzDecoder(f, mustDecoder(f, "csv", DecoderOptions{Header: []string{"a", "", "c", "d"}}),
		`pump-7,skip,41.5,ok`, `"a,b",x,"say ""hi""",`, `"`, `a,b,c,d,e`, "\r\n")
}

func FuzzDecodeLogfmt(f *testing.F) {
	fuzzDecoder(f, mustDecoder(f, "logfmt", DecoderOptions{}),
		`level=info msg="disk \"sda\" full" temp=41.5 ok`, `a="\`, `a= b=`, `=`, `a=x"y`)
}

func FuzzDecodeRegex(f *testing.F) {
	fuzzDecoder(f, mustDecoder(f, "regex", DecoderOptions{Pattern: `(?P<level>[A-Z]+) (?P<temp>[-0-9.e]+)(?: (?P<rest>.*))?`}),
		"WARN 41.5 x", "INFO -1e400", "x", "")
}

func FuzzDecodeInflux(f *testing.F) {
	fuzzDecoder(f, mustDecoder(f, "influx", DecoderOptions{Precision: "s"}),
		`weather,site=plant\ a temp=21.5,hum=40i,ok=t,msg="say \"hi\"" 1732500000`,
		`cpu\,x usage=0.5`, `m v="\`, `m,a=b,c=d x=1u,y=-2i 9223372036854775807`, `m  v=1  1`)
}

func FuzzDecodeNumber(f *testing.F) {
	fuzzDecoder(f, mustDecoder(f, "number", DecoderOptions{}), "41.5", " -3e2\n", "1e999", "+.", "0x1p3")
}
