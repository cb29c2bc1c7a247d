package main

import (
	"math"
	"time"
)

// Tick is the shortest pause of the send loop: at rates above about 1000
// msg/s the loop wakes every Tick and sends the messages that fell due in a
// burst, instead of sleeping between single messages.
const Tick = time.Millisecond

// Pacer schedules messages at a fixed rate by absolute time: message k
// (counting from 0) is due at Offset(k) = ceil(k × 1e9 / rate) ns after the
// start, so message 0 is due at once. Because the schedule is a function of
// the start time only, sleeping too long or sending late never shifts later
// messages: the count of due messages catches up and drift cannot accumulate.
//
// A Pacer is not safe for concurrent use; it reads the clock only through the
// function given to NewPacer, so tests can drive it with a fake clock.
//
// With a burst size b > 1 the same mean rate is sent in bursts: messages
// k-k%b .. k-k%b+b-1 are all due at the time message k-k%b would be due
// without bursts, so b messages leave at once every b/rate seconds.
type Pacer struct {
	rate  float64
	burst uint64
	start time.Time
	now   func() time.Time
}

// NewPacer returns a pacer for rate messages per second whose schedule starts
// at now(). rate must be positive and finite.
func NewPacer(rate float64, now func() time.Time) *Pacer {
	return NewBurstPacer(rate, 1, now)
}

// NewBurstPacer is NewPacer with messages sent in bursts of burst (0 or 1:
// evenly spaced).
func NewBurstPacer(rate float64, burst uint64, now func() time.Time) *Pacer {
	return &Pacer{rate: rate, burst: max(burst, 1), start: now(), now: now}
}

// Start returns the time message 0 was due.
func (p *Pacer) Start() time.Time { return p.start }

// Elapsed returns the time since the start, by the pacer's clock.
func (p *Pacer) Elapsed() time.Duration { return p.now().Sub(p.start) }

// Offset returns how long after the start message k is due.
func (p *Pacer) Offset(k uint64) time.Duration {
	return p.offset(k - k%p.burst)
}

func (p *Pacer) offset(k uint64) time.Duration {
	// k*1e9 is exact below 2^53/1e9 ≈ 9e6 messages and a division whose exact
	// quotient is representable is exact, so whole-nanosecond offsets (as at
	// 1/s or 50000/s) are not pushed up by ceil through rounding error.
	ns := math.Ceil(float64(k) * 1e9 / p.rate)
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// DueAt returns how many messages are due by elapsed after the start: the
// number of k with Offset(k) <= elapsed. It is exactly consistent with Offset.
func (p *Pacer) DueAt(elapsed time.Duration) uint64 {
	if elapsed < 0 {
		return 0
	}
	// Estimate, then correct the float estimate against offset itself.
	n := uint64(float64(elapsed)*p.rate/1e9) + 1
	for n > 0 && p.offset(n-1) > elapsed {
		n--
	}
	for p.offset(n) <= elapsed {
		n++
	}
	// Every message of a burst whose first message is due is due.
	return (n + p.burst - 1) / p.burst * p.burst
}

// Due returns how many messages are due now.
func (p *Pacer) Due() uint64 { return p.DueAt(p.Elapsed()) }

// Pause returns how long the send loop should sleep once it has sent sent
// messages: until the next message is due, but at least Tick so that high
// rates are served in bursts rather than by a timer per message. It returns 0
// if the next message is already due.
func (p *Pacer) Pause(sent uint64) time.Duration {
	d := p.Offset(sent) - p.Elapsed()
	if d <= 0 {
		return 0
	}
	return max(d, Tick)
}
