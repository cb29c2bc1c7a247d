package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testTS = int64(1732500000000) // 2024-11-25 02:00 UTC

// genFleet runs n turns of a fleet at rate msg/s from testTS and returns the
// payloads, readings and events.
func genFleet(o FleetOptions, n int, rate float64) ([]string, []Reading, []Event) {
	if o.Topic == "" {
		o.Topic = "t/{device}"
	}
	o.Interval = time.Duration(float64(o.Devices) / rate * 1e9)
	f := NewFleet(o)
	var out []string
	var rs []Reading
	var evs []Event
	var buf []byte
	for k := range n {
		var r Reading
		buf, r = f.Next(buf[:0], testTS+int64(float64(k)*1000/rate))
		out = append(out, string(buf))
		rs = append(rs, r)
		evs = append(evs, f.Events()...)
	}
	return out, rs, evs
}

// decodeNumbers decodes a JSON object keeping numbers as json.Number.
func decodeNumbers(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return m
}

func num(t *testing.T, m map[string]any, k string) float64 {
	t.Helper()
	n, ok := m[k].(json.Number)
	if !ok {
		t.Fatalf("%v: %s is %T, want a number", m, k, m[k])
	}
	v, _ := n.Float64()
	return v
}

// TestProfiles checks every profile's payload shape and that its values are
// believable over two simulated days.
func TestProfiles(t *testing.T) {
	keys := map[Profile]string{
		TempHum:   "device,temperature,humidity,ts",
		Vibration: "device,rms,peak,bands,ts",
		Power:     "device,power_w,energy_wh,voltage,ts",
		Door:      "device,open,changes,ts",
		Motion:    "device,motion,events,ts",
		GPS:       "device,lat,lon,speed_kmh,heading,ts",
	}
	for p := range numProfiles {
		t.Run(p.String(), func(t *testing.T) {
			const devices = 20
			// 2 days at one reading per device per 10 minutes.
			rate := devices / 600.0
			msgs, rs, _ := genFleet(FleetOptions{Devices: devices, Seed: 3, Mix: []ProfileWeight{{p, 1}},
				Faults: Faults{ResetRate: -1}}, devices*288, rate)
			lastEnergy := map[string]float64{}
			var changed, moved int
			lastPrimary := map[string]float64{}
			for i, s := range msgs {
				// Keys in order.
				dec := json.NewDecoder(strings.NewReader(s))
				dec.Token()
				var ks []string
				for dec.More() {
					k, _ := dec.Token()
					ks = append(ks, k.(string))
					var v any
					dec.Decode(&v)
				}
				if got := strings.Join(ks, ","); got != keys[p] {
					t.Fatalf("%s: keys %s, want %s", s, got, keys[p])
				}
				m := decodeNumbers(t, s)
				dev := m["device"].(string)
				if dev != fmt.Sprintf("dev-%d", i%devices) {
					t.Fatalf("message %d from %s", i, dev)
				}
				switch p {
				case TempHum:
					if v := num(t, m, "temperature"); v < 8 || v > 37 {
						t.Fatalf("%s: temperature", s)
					}
				case Vibration:
					rms, peak := num(t, m, "rms"), num(t, m, "peak")
					bands := m["bands"].([]any)
					if len(bands) != vibBands || rms <= 0 || rms > 10 || peak < rms {
						t.Fatalf("%s: vibration out of shape", s)
					}
				case Power:
					pw, e, v := num(t, m, "power_w"), num(t, m, "energy_wh"), num(t, m, "voltage")
					if pw < 0 || pw > 10000 || v < 220 || v > 240 {
						t.Fatalf("%s: power out of range", s)
					}
					if e < lastEnergy[dev] {
						t.Fatalf("%s: energy went back from %v without a reset", s, lastEnergy[dev])
					}
					lastEnergy[dev] = e
				case Door, Motion:
					if _, ok := m[profiles[p].primary].(bool); !ok {
						t.Fatalf("%s: want a bool", s)
					}
				case GPS:
					lat, lon, sp := num(t, m, "lat"), num(t, m, "lon"), num(t, m, "speed_kmh")
					if lat < 51 || lat > 54 || lon < 12 || lon > 15 || sp < 0 || sp > 150 {
						t.Fatalf("%s: gps out of range", s)
					}
					if sp > 0 {
						moved++
					}
				}
				if rs[i].Prec >= 0 {
					if prev, ok := lastPrimary[dev]; ok && prev != rs[i].Value {
						changed++
					}
					lastPrimary[dev] = rs[i].Value
				}
			}
			if rs[0].Prec >= 0 && changed < len(msgs)/4 {
				t.Fatalf("primary value changed only %d times in %d readings", changed, len(msgs))
			}
			if p == GPS && (moved < len(msgs)/10 || moved > len(msgs)*9/10) {
				t.Fatalf("vehicles moving in %d of %d readings", moved, len(msgs))
			}
		})
	}
}

// TestDailyCycle checks that temperature is higher in the afternoon than at
// night, averaged over the fleet.
func TestDailyCycle(t *testing.T) {
	const devices = 200
	at := func(hour int64) float64 {
		f := NewFleet(FleetOptions{Devices: devices, Seed: 5, Topic: "t"})
		base := testTS - 2*3600000 + hour*3600000 // testTS is 02:00 UTC
		var sum float64
		for i := range devices {
			_, r := f.Next(nil, base+int64(i))
			sum += r.Value
		}
		return sum / devices
	}
	if night, day := at(3), at(15); day-night < 1 {
		t.Fatalf("mean temperature 03:00 %.2f, 15:00 %.2f: want the afternoon warmer", night, day)
	}
}

// TestUTCOffset checks that the daily cycle follows the fleet's time zone:
// a fleet 12 hours east of UTC sees at 03:00 UTC exactly what a UTC fleet
// sees at 15:00 UTC.
func TestUTCOffset(t *testing.T) {
	const devices = 50
	values := func(offset time.Duration, hour int64) []float64 {
		f := NewFleet(FleetOptions{Devices: devices, Seed: 5, Topic: "t", UTCOffset: offset})
		base := testTS - 2*3600000 + hour*3600000 // testTS is 02:00 UTC
		var vs []float64
		for i := range devices {
			_, r := f.Next(nil, base+int64(i))
			vs = append(vs, r.Value)
		}
		return vs
	}
	east, utc := values(12*time.Hour, 3), values(0, 15)
	if !slices.Equal(east, utc) {
		t.Fatalf("UTC+12 at 03:00 UTC %v\nUTC at 15:00 UTC %v: want the same readings", east, utc)
	}
	if night := values(0, 3); slices.Equal(night, utc) {
		t.Fatal("UTC at 03:00 and 15:00 read the same: the hour has no effect, the test proves nothing")
	}
}

func TestPowerCounterResets(t *testing.T) {
	msgs, _, evs := genFleet(FleetOptions{Devices: 10, Seed: 9, Mix: []ProfileWeight{{Power, 1}},
		Faults: Faults{ResetRate: 0.01}}, 20000, 10)
	resets := map[string]bool{}
	for _, e := range evs {
		if e.Kind != evReset {
			t.Fatalf("unexpected event %+v", e)
		}
		resets[e.Device+"/"+strconv.FormatInt(e.TS, 10)] = true
	}
	if len(evs) < 100 || len(evs) > 300 {
		t.Fatalf("%d counter resets in 20000 readings at 1%%", len(evs))
	}
	last := map[string]float64{}
	for _, s := range msgs {
		m := decodeNumbers(t, s)
		dev, e := m["device"].(string), num(t, m, "energy_wh")
		key := dev + "/" + string(m["ts"].(json.Number))
		if resets[key] && e != 0 || !resets[key] && e < last[dev] {
			t.Fatalf("%s: energy %v after %v, reset recorded %v", s, e, last[dev], resets[key])
		}
		last[dev] = e
	}
}

func TestMix(t *testing.T) {
	mix, err := ParseMix("temphum:6,vibration:2,power,door:1")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFleet(FleetOptions{Devices: 100, Mix: mix, Topic: "x/{profile}/{device}"})
	count := map[Profile]int{}
	for i := range f.Len() {
		count[f.Profile(i)]++
	}
	if count[TempHum] != 60 || count[Vibration] != 20 || count[Power] != 10 || count[Door] != 10 {
		t.Fatalf("profile counts %v", count)
	}
	// Interleaved, not in blocks.
	if f.Profile(0) == f.Profile(1) && f.Profile(1) == f.Profile(2) && f.Profile(2) == f.Profile(3) {
		t.Fatalf("first devices all %s", f.Profile(0))
	}
	if got := f.Topic(1); got != "x/"+f.Profile(1).String()+"/dev-1" {
		t.Fatalf("topic %s", got)
	}
	for _, bad := range []string{"", "nope", "temphum:-1", "temphum:x", "temphum:0", "gps,gps"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q): no error", bad)
		}
	}
	if all, err := ParseMix("all"); err != nil || len(all) != int(numProfiles) {
		t.Fatalf("all: %v %v", all, err)
	}
}

// within reports whether n successes of N trials at p lie within 4 standard
// deviations of the mean.
func within(n, trials int, p float64) bool {
	mean := float64(trials) * p
	return math.Abs(float64(n)-mean) <= 4*math.Sqrt(mean*(1-p))+1
}

// TestFaultRates checks, with a fixed seed, that each fault fires at its
// rate (within 4σ), that the same seed gives the same faults, and that
// faults do not disturb the values of messages they do not touch.
func TestFaultRates(t *testing.T) {
	const n, devices = 200000, 100
	fa := Faults{Spike: 0.002, Shift: 0.0002, ShiftFor: time.Second, Stuck: 0.0005, StuckFor: time.Second,
		Malformed: 0.003, Duplicate: 0.004, SkewDevices: 0.1}
	o := FleetOptions{Devices: devices, Seed: 11, Faults: fa, Mix: []ProfileWeight{{TempHum, 3}, {Door, 1}}}
	msgs, rs, evs := genFleet(o, n, 10000)
	msgs2, _, evs2 := genFleet(o, n, 10000)
	if !slices.Equal(msgs, msgs2) || !slices.Equal(evs, evs2) {
		t.Fatal("same seed, different messages or events")
	}
	count := map[string]int{}
	mal := map[string]int{}
	for _, e := range evs {
		count[e.Kind]++
		if e.Kind == evMalformed {
			mal[e.Detail]++
		}
	}
	for kind, p := range map[string]float64{evSpike: fa.Spike, evShift: fa.Shift, evStuck: fa.Stuck,
		evMalformed: fa.Malformed, evDuplicate: fa.Duplicate} {
		if !within(count[kind], n, p) {
			t.Errorf("%s: %d in %d messages, want about %.0f", kind, count[kind], n, p*n)
		}
	}
	if count[evSkew] != 10 {
		t.Errorf("%d skewed devices, want 10", count[evSkew])
	}
	for _, k := range malNames[1:] {
		if !within(mal[k], count[evMalformed], 0.25) {
			t.Errorf("malformed %s: %d of %d", k, mal[k], count[evMalformed])
		}
	}
	dups := 0
	for _, r := range rs {
		if r.Duplicate {
			dups++
		}
	}
	if dups != count[evDuplicate] {
		t.Errorf("%d readings marked duplicate, %d events", dups, count[evDuplicate])
	}

	// Spikes and shifts alone leave the readings as a clean run has them,
	// except at the labelled places.
	o.Faults = Faults{Spike: 0.01, Shift: 0.001, ShiftFor: 2 * time.Second}
	faulty, frs, fevs := genFleet(o, 50000, 10000)
	o.Faults = Faults{}
	_, crs, _ := genFleet(o, 50000, 10000)
	spikes := map[string]Event{}
	shiftUntil := map[string]int64{}
	shiftDelta := map[string]float64{}
	for _, e := range fevs {
		if e.Kind == evSpike {
			spikes[e.Device+"/"+strconv.FormatInt(e.TS, 10)] = e
		}
	}
	ei := 0
	for i, s := range faulty {
		m := decodeNumbers(t, s)
		dev, ts := m["device"].(string), int64(num(t, m, "ts"))
		for ei < len(fevs) && fevs[ei].TS <= ts {
			if e := fevs[ei]; e.Kind == evShift {
				shiftUntil[e.Device], shiftDelta[e.Device] = e.TS+e.DurationMs, e.Delta
			}
			ei++
		}
		if frs[i].Prec < 0 {
			continue
		}
		want := crs[i].Value
		if ts < shiftUntil[dev] {
			want += shiftDelta[dev]
		}
		if e, ok := spikes[dev+"/"+strconv.FormatInt(ts, 10)]; ok {
			want += e.Delta
			if e.Value != frs[i].Value {
				t.Fatalf("%s: spike event value %v", s, e.Value)
			}
		}
		if math.Abs(frs[i].Value-want) > 0.1001 { // two roundings to 0.1
			t.Fatalf("%s: value %v, clean %v, want %v", s, frs[i].Value, crs[i].Value, want)
		}
	}
}

// TestMalformedKinds checks what each kind of malformed payload looks like.
func TestMalformedKinds(t *testing.T) {
	for _, kind := range malNames[1:] {
		t.Run(kind, func(t *testing.T) {
			msgs, rs, evs := genFleet(FleetOptions{Devices: 5, Seed: 1,
				Faults: Faults{Malformed: 0.05, MalformedKinds: []string{kind}, OversizedBytes: 4096}}, 2000, 100)
			bad := map[string]bool{}
			for _, e := range evs {
				bad[e.Device+"/"+strconv.FormatInt(e.TS, 10)] = true
			}
			nbad := 0
			for i, s := range msgs {
				if !rs[i].Malformed {
					if !json.Valid([]byte(s)) || len(s) > 200 {
						t.Fatalf("clean message %s", s)
					}
					continue
				}
				nbad++
				if kind == "bad_json" {
					if json.Valid([]byte(s)) || !strings.HasPrefix(s, `{"device":"dev-`) {
						t.Fatalf("bad_json %s", s)
					}
					continue
				}
				m := decodeNumbers(t, s)
				if !bad[m["device"].(string)+"/"+string(m["ts"].(json.Number))] {
					t.Fatalf("%s: not in the ground truth", s)
				}
				switch kind {
				case "wrong_type":
					if _, ok := m["temperature"].(string); !ok {
						t.Fatalf("wrong_type %s", s)
					}
				case "out_of_range":
					if num(t, m, "temperature") != 999.9 {
						t.Fatalf("out_of_range %s", s)
					}
				case "oversized":
					if len(s) != 4096 {
						t.Fatalf("oversized: %d bytes", len(s))
					}
				}
			}
			if nbad != len(evs) || !within(nbad, 2000, 0.05) {
				t.Fatalf("%d malformed messages, %d events", nbad, len(evs))
			}
		})
	}
}

// TestStuck checks that a stuck device repeats its reading, ts apart, for
// the stated time.
func TestStuck(t *testing.T) {
	msgs, _, evs := genFleet(FleetOptions{Devices: 4, Seed: 2, Mix: []ProfileWeight{{Vibration, 1}},
		Faults: Faults{Stuck: 0.002, StuckFor: 3 * time.Second}}, 40000, 100)
	if len(evs) < 20 {
		t.Fatalf("%d stuck events", len(evs))
	}
	strip := func(s string) (string, string, int64) {
		m := decodeNumbers(t, s)
		i := strings.LastIndex(s, `,"ts":`)
		return m["device"].(string), s[:i], int64(num(t, m, "ts"))
	}
	until := map[string]int64{}
	body := map[string]string{}
	ei := 0
	for _, s := range msgs {
		dev, b, ts := strip(s)
		for ei < len(evs) && evs[ei].TS <= ts {
			until[evs[ei].Device] = evs[ei].TS + evs[ei].DurationMs
			ei++
		}
		if ts < until[dev] && b != body[dev] {
			t.Fatalf("%s: stuck, but differs from %s", s, body[dev])
		}
		if ts >= until[dev] && b == body[dev] {
			t.Fatalf("%s: repeats the last reading without being stuck", s)
		}
		body[dev] = b
	}
}

func TestClockSkew(t *testing.T) {
	msgs, _, evs := genFleet(FleetOptions{Devices: 40, Seed: 4, Faults: Faults{SkewDevices: 0.25, SkewMax: time.Minute}}, 400, 40)
	skew := map[string]int64{}
	for _, e := range evs {
		if e.Kind != evSkew || e.SkewMs == 0 || e.SkewMs < -60000 || e.SkewMs > 60000 {
			t.Fatalf("event %+v", e)
		}
		skew[e.Device] = e.SkewMs
	}
	if len(skew) != 10 {
		t.Fatalf("%d skewed devices, want 10", len(skew))
	}
	for k, s := range msgs {
		m := decodeNumbers(t, s)
		want := testTS + int64(k)*1000/40 + skew[m["device"].(string)]
		if got := int64(num(t, m, "ts")); got != want {
			t.Fatalf("%s: ts %d, want %d", s, got, want)
		}
	}
}

func TestPacerBurst(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1732500000, 0)}
	p := NewBurstPacer(1000, 10, clk.now)
	for _, tc := range []struct {
		at   time.Duration
		want uint64
	}{{0, 10}, {10*time.Millisecond - 1, 10}, {10 * time.Millisecond, 20}, {time.Second - 1, 1000}, {time.Second, 1010}} {
		if got := p.DueAt(tc.at); got != tc.want {
			t.Errorf("DueAt(%v) = %d, want %d", tc.at, got, tc.want)
		}
	}
	if p.Offset(19) != 10*time.Millisecond || p.Offset(20) != 20*time.Millisecond {
		t.Fatalf("offsets %v %v", p.Offset(19), p.Offset(20))
	}
	// The mean rate is unchanged: 10 s hold 10,000 messages.
	if n := p.DueAt(10*time.Second - 1); n != 10000 {
		t.Fatalf("10 s: %d messages", n)
	}
}

// readLines returns the lines of the rotated files, oldest first.
func readLogLines(t *testing.T, path string, keep int) []string {
	t.Helper()
	var all []string
	for n := keep + 1; n >= 0; n-- {
		p := path
		if n > 0 {
			p += "." + strconv.Itoa(n)
		}
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			if n > keep {
				continue
			}
			t.Fatalf("%s missing", p)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > keep {
			t.Fatalf("%s kept beyond keep=%d", p, keep)
		}
		if len(b) > 1024 {
			t.Fatalf("%s: %d bytes, over max_bytes", p, len(b))
		}
		all = append(all, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	return all
}

func TestDeviceLogRotation(t *testing.T) {
	for _, mode := range []string{"rename", "copytruncate"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			l, err := openDeviceLogs(Logs{Dir: dir, Devices: 2, MaxBytes: 1024, Rotate: mode, Keep: 3}, []string{"dev-0", "dev-1", "dev-2"})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "dev-0.log")
			// A tailer holding the file open across copytruncate sees it shrink.
			held, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			const lines = 300
			for i := range lines {
				l.Reading(0, testTS+int64(i), "dev-0", "temperature", float64(i), 1)
				l.Reading(2, testTS, "dev-2", "x", 1, 1) // not logged
				if i%7 == 0 {
					l.Flush()
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "dev-2.log")); !os.IsNotExist(err) {
				t.Fatalf("dev-2 has a log: %v", err)
			}
			got := readLogLines(t, path, 3)
			// The kept lines are the last ones written, consecutive.
			for i, line := range got {
				want := fmt.Sprintf(" INFO dev-0 temperature=%d.0", lines-len(got)+i)
				if !strings.HasSuffix(line, want) || !strings.HasPrefix(line, "2024-11-25T02:00:0") {
					t.Fatalf("line %d of %d: %q, want suffix %q", i, len(got), line, want)
				}
			}
			if len(got) < 3*1024/60 || l.rotations < 10 {
				t.Fatalf("%d lines kept, %d rotations", len(got), l.rotations)
			}
			fi, _ := held.Stat()
			if mode == "copytruncate" && fi.Size() > 1024 {
				t.Fatalf("copytruncate: the open file is %d bytes", fi.Size())
			}
		})
	}
}

func TestScenarioFiles(t *testing.T) {
	files, _ := filepath.Glob("../examples/scenarios/*.yaml")
	if len(files) < 3 {
		t.Fatalf("scenario files: %v", files)
	}
	for _, f := range files {
		cfg, err := parseFlags([]string{"--scenario", f}, io.Discard)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.Duration == 0 && cfg.Count == 0 {
			t.Errorf("%s: runs forever", f)
		}
	}

	// The file's options apply, flags given override them.
	cfg, err := parseFlags([]string{"--scenario", "../examples/scenarios/bad-day.yaml", "--rate", "50", "--duplicate", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Rate != 50 || cfg.Devices != 400 || cfg.Connections != 4 || cfg.QoS != 1 || cfg.Seed != 7 ||
		cfg.Faults.Duplicate != 0 || cfg.Faults.Malformed != 0.005 || cfg.Faults.StormEvery != 20*time.Second {
		t.Fatalf("bad-day with flags: %+v", cfg)
	}
	cfg, err = parseFlags([]string{"--scenario", "../examples/scenarios/plant.yaml"}, io.Discard)
	if err != nil || len(cfg.Mix) != int(numProfiles) || cfg.Mix[0].Profile != TempHum || cfg.Mix[0].Weight != 10 {
		t.Fatalf("plant: %v %v", cfg.Mix, err)
	}

	dir := t.TempDir()
	for name, text := range map[string]string{
		"unknown key":     "devices: 3\nrat: 5\n",
		"unknown fault":   "faults: {spikes: 0.1}\n",
		"bad profile":     "profiles: {toaster: 1}\n",
		"bad duration":    "duration: soon\n",
		"bad rate":        "faults: {spike: 2}\n",
		"bad rotate":      "logs: {dir: x, rotate: gzip}\n",
		"bad kind":        "faults: {malformed: 0.1, malformed_kinds: [weird]}\n",
		"two documents":   "devices: 3\n---\ndevices: 4\n",
		"empty":           "",
		"wrong type":      "devices: many\n",
		"storm too long":  "faults: {storm_every: 1s, storm_down: 2s}\n",
		"bad cmd topic":   "cmd_topic: devices/x{device}/cmd\n",
		"too many conns":  "devices: 2\nconnections: 3\n",
		"no profile mass": "profiles: {gps: 0}\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if code := realMain([]string{"--scenario", p}, io.Discard, &out); code != 2 || out.Len() == 0 {
			t.Errorf("%s: exit %d, %q", name, code, out.String())
		}
	}
}

func TestCommandTemplate(t *testing.T) {
	c, err := parseCmdTemplate("devices/{device}/cmd")
	if err != nil {
		t.Fatal(err)
	}
	if c.filter() != "devices/+/cmd/+" || c.reply("dev-3") != "devices/dev-3/cmd/res" {
		t.Fatalf("%s %s", c.filter(), c.reply("dev-3"))
	}
	if d, n, ok := c.split("devices/dev-3/cmd/set-interval"); !ok || d != "dev-3" || n != "set-interval" {
		t.Fatalf("split: %q %q %v", d, n, ok)
	}
	for _, bad := range []string{"devices/cmd", "devices/x{device}/cmd", "a/{device}/{device}", "a/+/{device}"} {
		if _, err := parseCmdTemplate(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	f := NewFleet(FleetOptions{Devices: 3, Topic: "t/{device}"})
	for _, tc := range []struct {
		cmd  command
		want string
	}{
		{command{"dev-1", "set-interval", []byte(`{"id":"a","interval_ms":500}`)}, `{"cmd":"set-interval","id":"a","ok":true,"interval_ms":500,"turn_ms":30,"profile":"temphum","topic":"t/dev-1","ts":9}`},
		{command{"dev-1", "get-state", nil}, `{"cmd":"get-state","ok":true,"interval_ms":500,"turn_ms":30,"profile":"temphum","topic":"t/dev-1","ts":9}`},
		{command{"dev-1", "ping", []byte(`{"id":7}`)}, `{"cmd":"ping","id":7,"ok":true,"ts":9}`},
		{command{"dev-1", "set-interval", []byte(`{"interval_ms":-1}`)}, `{"cmd":"set-interval","ok":false,"error":"set-interval wants a non-negative interval_ms","ts":9}`},
		{command{"dev-1", "reboot", nil}, `{"cmd":"reboot","ok":false,"error":"unknown command \"reboot\" (want set-interval, get-state or ping)","ts":9}`},
		{command{"dev-9", "ping", nil}, `{"cmd":"ping","ok":false,"error":"no device \"dev-9\"","ts":9}`},
		{command{"dev-01", "ping", nil}, `{"cmd":"ping","ok":false,"error":"no device \"dev-01\"","ts":9}`},
		{command{"dev-1", "ping", []byte(`{`)}, `{"cmd":"ping","ok":false,"error":"bad request: unexpected end of JSON input","ts":9}`},
	} {
		rep, _ := handleCommand(f, tc.cmd, 30, 9)
		b, _ := json.Marshal(rep)
		if string(b) != tc.want {
			t.Errorf("%+v:\n got %s\nwant %s", tc.cmd, b, tc.want)
		}
	}
	// dev-1 now sends at most every 500 ms of message time.
	var sent []int64
	for k := range 300 {
		ts := int64(k) * 10 // turns of each device 30 ms apart
		_, r := f.Next(nil, ts)
		if r.Device == 1 && !r.Skipped {
			sent = append(sent, ts)
		}
	}
	for i := 1; i < len(sent); i++ {
		if d := sent[i] - sent[i-1]; d < 500 || d > 530 {
			t.Fatalf("dev-1 sent at %v", sent)
		}
	}
	if len(sent) != 6 {
		t.Fatalf("dev-1 sent at %v", sent)
	}
}

func BenchmarkFleetNextMix(b *testing.B) {
	mix, _ := ParseMix("all")
	f := NewFleet(FleetOptions{Devices: 1000, Seed: 1, Topic: "sensors/{device}/telemetry", Mix: mix,
		Faults: Faults{Spike: 0.001, Malformed: 0.001, MalformedKinds: []string{"bad_json", "wrong_type"}, Duplicate: 0.001}})
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := range b.N {
		buf, _ = f.Next(buf[:0], 1732500000000+int64(i))
	}
}
