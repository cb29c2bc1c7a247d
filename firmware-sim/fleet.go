package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// ProfileWeight is one entry of a fleet's profile mix.
type ProfileWeight struct {
	Profile Profile
	Weight  int
}

// ParseMix parses a profile mix, "temphum" or "temphum:6,vibration:2,gps:1"
// (a missing weight is 1), or "all" for every profile once.
func ParseMix(s string) ([]ProfileWeight, error) {
	if s == "all" {
		mix := make([]ProfileWeight, numProfiles)
		for i := range mix {
			mix[i] = ProfileWeight{Profile(i), 1}
		}
		return mix, nil
	}
	var mix []ProfileWeight
	for part := range strings.SplitSeq(s, ",") {
		name, w, hasW := strings.Cut(strings.TrimSpace(part), ":")
		p, err := ParseProfile(name)
		if err != nil {
			return nil, err
		}
		weight := 1
		if hasW {
			if weight, err = strconv.Atoi(w); err != nil || weight < 0 {
				return nil, fmt.Errorf("profile %s: weight %q is not a non-negative integer", name, w)
			}
		}
		mix = append(mix, ProfileWeight{p, weight})
	}
	return mix, checkMix(mix)
}

func checkMix(mix []ProfileWeight) error {
	total := 0
	seen := map[Profile]bool{}
	for _, pw := range mix {
		if pw.Weight < 0 {
			return fmt.Errorf("profile %s: negative weight", pw.Profile)
		}
		if seen[pw.Profile] {
			return fmt.Errorf("profile %s listed twice", pw.Profile)
		}
		seen[pw.Profile] = true
		total += pw.Weight
	}
	if total == 0 {
		return fmt.Errorf("profile mix has no weight")
	}
	return nil
}

// FleetOptions configures NewFleet. The zero value (after Devices is set)
// is a W1 fleet: temperature/humidity sensors, no faults.
type FleetOptions struct {
	Devices int
	Seed    uint64
	// Topic is the publish topic template: {device} is replaced by the
	// device name, {profile} by its profile name.
	Topic string
	// Mix assigns profiles to devices in proportion to the weights,
	// interleaved (smooth weighted round-robin); nil means all TempHum.
	Mix    []ProfileWeight
	Faults Faults
	// Interval is the time between two readings of one device at the
	// fleet's rate; it is the dt of each device's first reading.
	Interval time.Duration
	// UTCOffset is the fleet's time zone: the daily cycles (the afternoon
	// peak at 15:00, a machine's shifts) follow local time, ts + UTCOffset.
	// Benchmarks set it so that their load does not depend on the hour.
	UTCOffset time.Duration
}

type device struct {
	name, topic string
	profile     Profile
	m           model
	rng         *rand.Rand
	seen        bool  // has produced a reading
	lastTS      int64 // scheduled ts of the last reading
	lastSent    int64 // scheduled ts of the last message
	minGap      int64 // ms between messages, from set-interval; 0: every turn
	lastV       float64
	shift       float64 // level shift in force
	shiftUntil  int64   // 0: no shift
	stuckUntil  int64
	skew        int64 // ms added to ts
	skewNew     bool  // the clock_skew event is still to be recorded
}

// Reading describes the message Fleet.Next produced.
type Reading struct {
	Device int // index: the device is named "dev-<Device>"
	// Value is the primary value as written (temperature for TempHum); Prec
	// is its number of decimals, -1 for profiles without one.
	Value float64
	Prec  int
	// Skipped means the device let its turn pass (its interval, set by a
	// command, has not elapsed): there is no payload.
	Skipped bool
	// Malformed is set when the payload is deliberately broken.
	Malformed bool
	// Duplicate means the message is to be published twice.
	Duplicate bool
}

// Fleet is the simulated devices, dev-0 .. dev-(n-1), taking turns
// round-robin. Each device draws from its own generator seeded from (seed,
// index) and faults from one fleet generator, so a seed fixes the whole
// sequence of payloads as long as no command changes it. A Fleet is not safe
// for concurrent use.
type Fleet struct {
	devices []device
	next    int
	k       uint64 // messages produced
	nominal float64
	local   int64 // UTCOffset in ms
	faults  Faults
	frng    *rand.Rand
	mal     []int // malformed kinds to draw from

	spike, shift, stuck, malformed, dup trigger

	events  []Event
	scratch []byte
}

// NewFleet returns the devices of o.
func NewFleet(o FleetOptions) *Fleet {
	mix := o.Mix
	if len(mix) == 0 {
		mix = []ProfileWeight{{TempHum, 1}}
	}
	fa := o.Faults.withDefaults()
	s := splitmix64(o.Seed)
	frng := rand.New(rand.NewPCG(splitmix64(s^0xfa17), splitmix64(s^0x5eed)))
	f := &Fleet{
		devices: make([]device, o.Devices),
		nominal: o.Interval.Seconds(),
		local:   o.UTCOffset.Milliseconds(),
		faults:  fa,
		frng:    frng,
	}
	if f.nominal <= 0 {
		f.nominal = 1
	}
	for _, k := range fa.MalformedKinds {
		f.mal = append(f.mal, malKind(k))
	}
	f.spike = newTrigger(fa.Spike, frng)
	f.shift = newTrigger(fa.Shift, frng)
	f.stuck = newTrigger(fa.Stuck, frng)
	f.malformed = newTrigger(fa.Malformed, frng)
	f.dup = newTrigger(fa.Duplicate, frng)

	total := 0
	for _, pw := range mix {
		total += pw.Weight
	}
	cur := make([]int, len(mix))
	for i := range f.devices {
		// Smooth weighted round-robin: exact proportions, interleaved.
		best := 0
		for j, pw := range mix {
			cur[j] += pw.Weight
			if cur[j] > cur[best] {
				best = j
			}
		}
		cur[best] -= total
		p := mix[best].Profile

		name := "dev-" + strconv.Itoa(i)
		rng := rand.New(rand.NewPCG(s, splitmix64(s^uint64(i))))
		m := profiles[p].newModel(rng)
		if pm, ok := m.(*power); ok {
			pm.resetRate = max(fa.ResetRate, 0)
		}
		topic := strings.ReplaceAll(o.Topic, "{device}", name)
		f.devices[i] = device{
			name:    name,
			topic:   strings.ReplaceAll(topic, "{profile}", p.String()),
			profile: p,
			m:       m,
			rng:     rng,
		}
	}
	// Clock skew: an exact share of the devices, chosen by the seed.
	if n := int(math.Round(fa.SkewDevices * float64(o.Devices))); n > 0 {
		maxMs := fa.SkewMax.Milliseconds()
		for _, i := range frng.Perm(o.Devices)[:n] {
			skew := frng.Int64N(2*maxMs+1) - maxMs
			if skew == 0 {
				skew = 1
			}
			f.devices[i].skew, f.devices[i].skewNew = skew, true
		}
	}
	return f
}

// Len returns the number of devices.
func (f *Fleet) Len() int { return len(f.devices) }

// Name returns the name of device i.
func (f *Fleet) Name(i int) string { return f.devices[i].name }

// Topic returns the topic device i publishes to.
func (f *Fleet) Topic(i int) string { return f.devices[i].topic }

// Profile returns the profile of device i.
func (f *Fleet) Profile(i int) Profile { return f.devices[i].profile }

// Index returns the index of the device called name.
func (f *Fleet) Index(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "dev-")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= len(f.devices) {
		return 0, false
	}
	return i, true
}

// SetInterval makes device i send at most one message per ms milliseconds
// of message time (0: on every turn). A device cannot send more often than
// its turns come round.
func (f *Fleet) SetInterval(i int, ms int64) { f.devices[i].minGap = ms }

// Interval returns the interval set for device i, 0 if none.
func (f *Fleet) Interval(i int) int64 { return f.devices[i].minGap }

// Peek returns the index of the device whose turn is next.
func (f *Fleet) Peek() int { return f.next }

// Skip passes the next device's turn without a reading (it is offline).
func (f *Fleet) Skip() { f.advance() }

func (f *Fleet) advance() int {
	i := f.next
	f.next++
	if f.next == len(f.devices) {
		f.next = 0
	}
	return i
}

// Events returns the events of the message last produced by Next, valid
// until the next call.
func (f *Fleet) Events() []Event { return f.events }

// Next gives the next device in turn its turn at tsMillis (Unix ms, the
// message's scheduled time) and appends its payload to dst. For TempHum it
// is exactly (workload W1):
//
//	{"device":"dev-17","temperature":23.4,"humidity":41.2,"ts":1732500000000}
//
// with the device's clock skew, if any, added to ts. Faults due are applied
// and described by Events.
func (f *Fleet) Next(dst []byte, tsMillis int64) ([]byte, Reading) {
	f.events = f.events[:0]
	i := f.advance()
	d := &f.devices[i]
	info := &profiles[d.profile]
	r := Reading{Device: i, Prec: info.prec}
	if d.minGap > 0 && d.seen && tsMillis-d.lastSent < d.minGap {
		r.Skipped = true
		return dst, r
	}
	k := f.k
	f.k++
	dt := f.nominal
	if d.seen {
		dt = float64(tsMillis-d.lastTS) / 1000
	}
	ts := tsMillis + d.skew
	if d.skewNew {
		d.skewNew = false
		f.events = append(f.events, Event{Device: d.name, TS: ts, Kind: evSkew, SkewMs: d.skew})
	}

	stuck := tsMillis < d.stuckUntil
	if !stuck && d.seen && f.stuck.due(k) {
		f.stuck.fired(k, f.frng)
		stuck = true
		d.stuckUntil = tsMillis + f.faults.StuckFor.Milliseconds()
		f.events = append(f.events, Event{Device: d.name, TS: ts, Kind: evStuck, DurationMs: f.faults.StuckFor.Milliseconds()})
	}
	if !stuck && d.m.step(d.rng, tsMillis+f.local, dt) {
		f.events = append(f.events, Event{Device: d.name, TS: ts, Kind: evReset, Field: "energy_wh"})
	}
	d.seen, d.lastTS, d.lastSent = true, tsMillis, tsMillis

	if d.shiftUntil != 0 && tsMillis >= d.shiftUntil {
		d.shift, d.shiftUntil = 0, 0
	}
	if !stuck && info.scale > 0 && d.shiftUntil == 0 && f.shift.due(k) {
		f.shift.fired(k, f.frng)
		d.shift = f.sign() * f.faults.ShiftSize * info.scale
		d.shiftUntil = tsMillis + max(f.faults.ShiftFor.Milliseconds(), 1)
		f.events = append(f.events, Event{Device: d.name, TS: ts, Kind: evShift, Field: info.primary,
			Delta: d.shift, DurationMs: f.faults.ShiftFor.Milliseconds()})
	}
	mal := malNone
	if f.malformed.due(k) {
		f.malformed.fired(k, f.frng)
		mal = f.mal[f.frng.IntN(len(f.mal))]
		r.Malformed = true
		f.events = append(f.events, Event{Device: d.name, TS: ts, Kind: evMalformed, Detail: malNames[mal]})
	}

	v := d.lastV
	if !stuck {
		off := d.shift
		spiked := false
		if mal == malNone && info.scale > 0 && f.spike.due(k) {
			f.spike.fired(k, f.frng)
			delta := f.sign() * f.faults.SpikeSize * info.scale * (1 + 0.5*f.frng.Float64())
			off += delta
			spiked = true
			f.events = append(f.events, Event{Device: d.name, TS: ts, Kind: evSpike, Field: info.primary, Delta: delta})
		}
		v = roundTo(d.m.primary()+off, info.prec)
		if spiked {
			f.events[len(f.events)-1].Value = v
		}
		d.lastV = v
	}
	mode := modeNormal
	switch mal {
	case malWrongType:
		mode = modeWrongType
	case malOutOfRange:
		mode, v = modeOutOfRange, info.bad
	}
	r.Value = v

	start := len(dst)
	dst = append(dst, `{"device":"`...)
	dst = append(dst, d.name...)
	dst = append(dst, '"')
	dst = d.m.appendFields(dst, v, mode)
	tail := len(dst)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, '}')
	switch mal {
	case malBadJSON:
		// Any strict prefix of a JSON object is invalid JSON.
		dst = dst[:start+(len(dst)-start)/2]
	case malOversized:
		f.scratch = append(f.scratch[:0], dst[tail:]...)
		dst = append(dst[:tail], `,"pad":"`...)
		for n := f.faults.OversizedBytes - (tail - start) - len(f.scratch) - 9; n > 0; n-- {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
		dst = append(dst, f.scratch...)
	}
	if f.dup.due(k) {
		f.dup.fired(k, f.frng)
		r.Duplicate = true
		f.events = append(f.events, Event{Device: d.name, TS: ts, Kind: evDuplicate})
	}
	return dst, r
}

func (f *Fleet) sign() float64 {
	if f.frng.IntN(2) == 0 {
		return -1
	}
	return 1
}

// splitmix64 scrambles a seed so that neighbouring seeds and device indexes
// give unrelated generator states.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
