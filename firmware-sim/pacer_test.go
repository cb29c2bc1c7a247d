package main

import (
	"fmt"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// pacerRates are the tested rates as exact fractions num/den msg/s.
var pacerRates = []struct {
	rate     float64
	num, den int64
}{
	{1, 1, 1},
	{333.3, 3333, 10},
	{50000, 50000, 1},
}

// exactDue is the number of messages due after e at rate num/den, computed
// in integers: message k is due at k·den·1e9/num ns, so floor(e·num/(den·1e9))+1.
func exactDue(e time.Duration, num, den int64) uint64 {
	return uint64(int64(e)*num/(den*1e9)) + 1
}

func TestPacerDueExact(t *testing.T) {
	for _, tc := range pacerRates {
		t.Run(fmt.Sprint(tc.rate), func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1732500000, 0)}
			p := NewPacer(tc.rate, clk.now)
			// Uneven steps over 100 s of simulated time.
			steps := []time.Duration{time.Millisecond, 1234567, 3 * time.Second / 7, 999, 20000, time.Second}
			var e time.Duration
			for i := 0; e < 100*time.Second; i++ {
				if got, want := p.Due(), exactDue(e, tc.num, tc.den); got != want {
					t.Fatalf("at %v: due %d, want %d", e, got, want)
				}
				d := steps[i%len(steps)]
				clk.advance(d)
				e += d
			}
			// Exactly at, and 1 ns before, each message's due time.
			for k := uint64(1); k < 5000; k += 7 {
				ns := (int64(k)*tc.den*1e9 + tc.num - 1) / tc.num // ceil
				if got := p.Offset(k); got != time.Duration(ns) {
					t.Fatalf("Offset(%d) = %d, want %d", k, got, ns)
				}
				if got := p.DueAt(time.Duration(ns)); got != k+1 {
					t.Fatalf("DueAt(Offset(%d)) = %d, want %d", k, got, k+1)
				}
				if got := p.DueAt(time.Duration(ns - 1)); got != k {
					t.Fatalf("DueAt(Offset(%d)-1) = %d, want %d", k, got, k)
				}
			}
		})
	}
}

// TestPacerLoopSimulated runs the send loop's schedule against a fake clock
// whose sleeps overshoot by up to 0.7 ms: the loop never sends ahead of the
// schedule, stays within one tick behind it, and a 10 s run sends exactly
// rate × 10 s messages.
func TestPacerLoopSimulated(t *testing.T) {
	for _, tc := range pacerRates {
		t.Run(fmt.Sprint(tc.rate), func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1732500000, 0)}
			p := NewPacer(tc.rate, clk.now)
			const dur = 10 * time.Second
			limit := p.DueAt(dur - 1)
			if want := uint64(dur.Seconds() * float64(tc.num) / float64(tc.den)); limit != want {
				t.Fatalf("messages in %v: %d, want %d", dur, limit, want)
			}
			var sent uint64
			wakeups := 0
			for jitter := 0; sent < limit; jitter++ {
				due := min(p.Due(), limit)
				if want := min(exactDue(p.Elapsed(), tc.num, tc.den), limit); due != want {
					t.Fatalf("at %v: due %d, want %d", p.Elapsed(), due, want)
				}
				sent = due
				if sent == limit {
					break
				}
				pause := p.Pause(sent)
				if pause <= 0 {
					t.Fatalf("at %v with %d sent: pause %v, want > 0", p.Elapsed(), sent, pause)
				}
				// After the pause the next message is due, and no more than a
				// tick's worth of messages (plus the oversleep) have piled up.
				clk.advance(pause + time.Duration(jitter%8)*100*time.Microsecond)
				wakeups++
				if behind := p.Due() - sent; float64(behind) > 1+tc.rate*(Tick+800*time.Microsecond).Seconds() {
					t.Fatalf("at %v: %d messages due at once", p.Elapsed(), behind)
				}
			}
			if sent != limit {
				t.Fatalf("sent %d, want %d", sent, limit)
			}
			if late := p.Elapsed() - p.Offset(limit-1); late > Tick+800*time.Microsecond {
				t.Fatalf("last message sent %v after it was due", late)
			}
			// Low rates sleep until the next message, high rates tick.
			maxWakeups := int(limit)
			if tc.rate > 1000 {
				maxWakeups = int(dur / Tick)
			}
			if wakeups > maxWakeups {
				t.Fatalf("%d wakeups, want at most %d", wakeups, maxWakeups)
			}
		})
	}
}
