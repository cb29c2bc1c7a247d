package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestPayloadFormat(t *testing.T) {
	const ts = int64(1732500000000)
	f := NewFleet(FleetOptions{Devices: 50, Seed: 1, Topic: "sensors/{device}/telemetry"})
	var buf []byte
	var r Reading
	for i := range 500 {
		buf, r = f.Next(buf[:0], ts+int64(i))
		name := fmt.Sprintf("dev-%d", i%50)
		var p struct{ Humidity float64 }
		if err := json.Unmarshal(buf, &p); err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		want := fmt.Sprintf(`{"device":"%s","temperature":%.1f,"humidity":%.1f,"ts":%d}`,
			name, r.Value, p.Humidity, ts+int64(i))
		if string(buf) != want {
			t.Fatalf("payload %d:\n got %s\nwant %s", i, buf, want)
		}
		if r.Device != i%50 || f.Name(r.Device) != name || f.Topic(r.Device) != "sensors/"+name+"/telemetry" {
			t.Fatalf("message %d: device %d %q topic %q", i, r.Device, f.Name(r.Device), f.Topic(r.Device))
		}

		// Keys in order, with the right JSON types.
		dec := json.NewDecoder(bytes.NewReader(buf))
		dec.UseNumber()
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("payload %d: want an object, got %v %v", i, tok, err)
		}
		var keys []string
		vals := map[string]any{}
		for dec.More() {
			k, _ := dec.Token()
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("payload %d: %v", i, err)
			}
			keys = append(keys, k.(string))
			vals[k.(string)] = v
		}
		if got := strings.Join(keys, ","); got != "device,temperature,humidity,ts" {
			t.Fatalf("payload %d: keys %s", i, got)
		}
		if vals["device"] != name {
			t.Fatalf("payload %d: device %v", i, vals["device"])
		}
		temp := oneDecimal(t, vals["temperature"])
		hum := oneDecimal(t, vals["humidity"])
		if temp < 10 || temp > 35 || temp != r.Value {
			t.Fatalf("payload %d: temperature %v (reading %v)", i, temp, r.Value)
		}
		if hum < 30 || hum > 60 || hum != p.Humidity {
			t.Fatalf("payload %d: humidity %v", i, hum)
		}
		n, ok := vals["ts"].(json.Number)
		if !ok {
			t.Fatalf("payload %d: ts %T", i, vals["ts"])
		}
		if got, err := n.Int64(); err != nil || got != ts+int64(i) {
			t.Fatalf("payload %d: ts %s", i, n)
		}
	}
}

// oneDecimal checks that v is a JSON number written with exactly one decimal.
func oneDecimal(t *testing.T, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v is %T, want a number", v, v)
	}
	s := n.String()
	if dot := strings.IndexByte(s, '.'); dot < 1 || dot != len(s)-2 || strings.HasPrefix(s, "-") {
		t.Fatalf("%s: want one decimal", s)
	}
	x, _ := n.Float64()
	return x
}

func TestSameSeedSamePayloads(t *testing.T) {
	gen := func(seed uint64) []string {
		f := NewFleet(FleetOptions{Devices: 50, Seed: seed, Topic: "t/{device}"})
		var out []string
		var buf []byte
		for i := range 5000 {
			buf, _ = f.Next(buf[:0], int64(i))
			out = append(out, string(buf))
		}
		return out
	}
	a, b, c := gen(7), gen(7), gen(8)
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 7, message %d: %s vs %s", i, a[i], b[i])
		}
		if a[i] == c[i] {
			same++
		}
	}
	if same > len(a)/10 {
		t.Fatalf("seeds 7 and 8 agree on %d of %d payloads", same, len(a))
	}
}

// TestTemperatureBelievable checks the device model: bases spread over
// 15–30 °C, readings stay near their base and move slowly.
func TestTemperatureBelievable(t *testing.T) {
	const n, rounds = 100, 2000
	f := NewFleet(FleetOptions{Devices: n, Seed: 1, Topic: "t"})
	var sum [n]float64
	var prev [n]float64
	var maxStep float64
	for i := range n * rounds {
		_, r := f.Next(nil, 0)
		if i >= n {
			maxStep = math.Max(maxStep, math.Abs(r.Value-prev[r.Device]))
		}
		prev[r.Device] = r.Value
		sum[r.Device] += r.Value
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range sum {
		mean := s / rounds
		lo, hi = math.Min(lo, mean), math.Max(hi, mean)
	}
	if lo < 13 || hi > 32 || hi-lo < 10 {
		t.Fatalf("device mean temperatures span %.1f .. %.1f, want a spread inside 15–30 °C ± drift", lo, hi)
	}
	if maxStep > 1.5 {
		t.Fatalf("a device's temperature jumped by %.1f between readings", maxStep)
	}
}

func BenchmarkFleetNext(b *testing.B) {
	f := NewFleet(FleetOptions{Devices: 1000, Seed: 1, Topic: "sensors/{device}/telemetry"})
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for i := range b.N {
		buf, _ = f.Next(buf[:0], 1732500000000+int64(i))
	}
}
