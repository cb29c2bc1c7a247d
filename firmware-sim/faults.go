package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"
)

// Faults says which faults to inject and how often. Rates are probabilities
// per message (per turn of a device), so the expected count of a fault is
// its rate times the messages sent; the zero value injects nothing.
//
// A fault that falls on a message that cannot carry it (a spike on a door
// contact, a spike on a malformed message) moves to the next message that
// can, so the count stays at rate × messages.
type Faults struct {
	// Spike adds ±SpikeSize × the profile's scale to one reading's primary
	// value (temperature, rms, power_w, speed_kmh).
	Spike     float64 `yaml:"spike"`
	SpikeSize float64 `yaml:"spike_size"`
	// Shift adds ±ShiftSize × scale to a device's primary value for
	// ShiftFor (of message time); a device has at most one shift at a time.
	Shift     float64       `yaml:"shift"`
	ShiftSize float64       `yaml:"shift_size"`
	ShiftFor  time.Duration `yaml:"shift_for"`
	// Stuck freezes a device's reading (every field but ts) for StuckFor.
	Stuck    float64       `yaml:"stuck"`
	StuckFor time.Duration `yaml:"stuck_for"`
	// Malformed replaces a payload by a broken one of a kind drawn from
	// MalformedKinds (default: all of bad_json, wrong_type, out_of_range,
	// oversized). An oversized payload is padded to OversizedBytes.
	Malformed      float64  `yaml:"malformed"`
	MalformedKinds []string `yaml:"malformed_kinds"`
	OversizedBytes int      `yaml:"oversized_bytes"`
	// Duplicate publishes a message twice, byte for byte.
	Duplicate float64 `yaml:"duplicate"`
	// SkewDevices is the fraction of devices whose clock is off by a fixed
	// amount, uniform in ±SkewMax; their ts fields carry the offset.
	SkewDevices float64       `yaml:"skew_devices"`
	SkewMax     time.Duration `yaml:"skew_max"`
	// ResetRate is the chance per reading that a power meter's energy counter
	// resets to 0 (a behaviour of the profile, recorded as counter_reset).
	// Unset (0) means DefaultResetRate; negative means never.
	ResetRate float64 `yaml:"counter_reset"`
	// StormEvery, when set, disconnects StormConns (a fraction, default all)
	// of the MQTT connections every StormEvery for StormDown: their devices
	// do not send until the connection is back.
	StormEvery time.Duration `yaml:"storm_every"`
	StormDown  time.Duration `yaml:"storm_down"`
	StormConns float64       `yaml:"storm_conns"`
}

// Malformed payload kinds.
const (
	malNone = iota
	malBadJSON
	malWrongType
	malOutOfRange
	malOversized
	numMal
)

var malNames = [numMal]string{"", "bad_json", "wrong_type", "out_of_range", "oversized"}

// Fault defaults applied where a rate is set but its size is not.
const (
	defaultSpikeSize      = 8
	defaultShiftSize      = 4
	defaultShiftFor       = time.Minute
	defaultStuckFor       = 30 * time.Second
	defaultOversizedBytes = 128 << 10
	defaultSkewMax        = 5 * time.Minute
	defaultStormDown      = 2 * time.Second
)

// withDefaults fills the sizes of faults whose rates are set.
func (f Faults) withDefaults() Faults {
	if f.SpikeSize == 0 {
		f.SpikeSize = defaultSpikeSize
	}
	if f.ShiftSize == 0 {
		f.ShiftSize = defaultShiftSize
	}
	if f.ShiftFor == 0 {
		f.ShiftFor = defaultShiftFor
	}
	if f.StuckFor == 0 {
		f.StuckFor = defaultStuckFor
	}
	if len(f.MalformedKinds) == 0 {
		f.MalformedKinds = malNames[1:]
	}
	if f.OversizedBytes == 0 {
		f.OversizedBytes = defaultOversizedBytes
	}
	if f.SkewMax == 0 {
		f.SkewMax = defaultSkewMax
	}
	if f.ResetRate == 0 {
		f.ResetRate = DefaultResetRate
	}
	if f.StormEvery > 0 && f.StormDown == 0 {
		f.StormDown = defaultStormDown
	}
	if f.StormConns == 0 {
		f.StormConns = 1
	}
	return f
}

func (f Faults) check() error {
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"spike", f.Spike}, {"shift", f.Shift}, {"stuck", f.Stuck}, {"malformed", f.Malformed},
		{"duplicate", f.Duplicate}, {"skew_devices", f.SkewDevices}, {"storm_conns", f.StormConns},
		{"counter_reset", max(f.ResetRate, 0)},
	} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("fault %s %v: want a fraction in [0, 1]", r.name, r.v)
		}
	}
	for _, k := range f.MalformedKinds {
		if malKind(k) == malNone {
			return fmt.Errorf("malformed kind %q: want one of %s", k, strings.Join(malNames[1:], ", "))
		}
	}
	switch {
	case f.SpikeSize < 0 || f.ShiftSize < 0:
		return fmt.Errorf("spike_size %v, shift_size %v: must not be negative", f.SpikeSize, f.ShiftSize)
	case f.ShiftFor < 0 || f.StuckFor < 0 || f.SkewMax < 0 || f.StormEvery < 0 || f.StormDown < 0:
		return fmt.Errorf("fault durations must not be negative")
	case f.OversizedBytes < 0 || f.OversizedBytes > 200<<20:
		return fmt.Errorf("oversized_bytes %d: want up to 200 MiB", f.OversizedBytes)
	case f.StormEvery > 0 && f.StormDown >= f.StormEvery:
		return fmt.Errorf("storm_down %s: must be shorter than storm_every %s", f.StormDown, f.StormEvery)
	}
	return nil
}

func malKind(name string) int {
	for i, n := range malNames {
		if i > 0 && n == name {
			return i
		}
	}
	return malNone
}

// Event is one entry of the ground-truth file: a fault injected into (or a
// notable behaviour of) one device, at the ts its message carried.
//
// Kinds: spike (Value is the primary value sent, Delta the offset added),
// level_shift (Delta for DurationMs of message time from TS on), stuck
// (for DurationMs), malformed (Detail: bad_json, wrong_type, out_of_range,
// oversized), duplicate (the message was sent twice), clock_skew (the
// device's ts is off by SkewMs from here on), counter_reset (a power meter's
// energy counter went back to 0).
type Event struct {
	Device     string  `json:"device"`
	TS         int64   `json:"ts"`
	Kind       string  `json:"kind"`
	Field      string  `json:"field,omitempty"`
	Value      float64 `json:"value,omitempty"`
	Delta      float64 `json:"delta,omitempty"`
	DurationMs int64   `json:"duration_ms,omitempty"`
	SkewMs     int64   `json:"skew_ms,omitempty"`
	Detail     string  `json:"detail,omitempty"`
	// Lost is set when the message carrying the event was not published
	// (its publish failed), so a consumer never saw it.
	Lost bool `json:"lost,omitempty"`
}

// Event kinds, also the keys of the summary's fault counts.
const (
	evSpike     = "spike"
	evShift     = "level_shift"
	evStuck     = "stuck"
	evMalformed = "malformed"
	evDuplicate = "duplicate"
	evSkew      = "clock_skew"
	evReset     = "counter_reset"
)

// truthWriter writes events as JSON lines. Not safe for concurrent use.
type truthWriter struct {
	f *os.File
	w *bufio.Writer
}

func createTruth(path string) (*truthWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create ground-truth file: %w", err)
	}
	return &truthWriter{f: f, w: bufio.NewWriter(f)}, nil
}

func (t *truthWriter) Write(e *Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	t.w.Write(b)
	return t.w.WriteByte('\n')
}

// Close flushes and closes the file, returning the first write error.
func (t *truthWriter) Close() error {
	err := t.w.Flush()
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write ground-truth file: %w", err)
	}
	return nil
}

// trigger fires a fault at a rate per message: it draws the index of the
// next firing from a geometric distribution, so that the hot path is one
// comparison per message and kind.
type trigger struct {
	rate float64
	next uint64 // message index at or after which the fault fires
}

func newTrigger(rate float64, rng *rand.Rand) trigger {
	t := trigger{rate: rate, next: math.MaxUint64}
	if rate > 0 {
		t.next = t.gap(rng) - 1
	}
	return t
}

// due reports whether the fault is pending at message k.
func (t *trigger) due(k uint64) bool { return k >= t.next }

// fired schedules the next firing after message k.
func (t *trigger) fired(k uint64, rng *rand.Rand) { t.next = k + t.gap(rng) }

// gap draws the distance to the next firing: geometric on 1, 2, ... with
// success probability rate.
func (t *trigger) gap(rng *rand.Rand) uint64 {
	if t.rate >= 1 {
		return 1
	}
	u := 1 - rng.Float64() // (0, 1]
	g := math.Floor(math.Log(u)/math.Log1p(-t.rate)) + 1
	if g >= 1<<62 {
		return 1 << 62
	}
	return uint64(g)
}
