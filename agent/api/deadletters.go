package api

import "sync"

// deadLetterSamples is how many recent dead letters the server keeps.
const deadLetterSamples = 64

// deadLetters is a ring of the most recent dead letters of every input. It is
// fed by DeadLetter (a hook that sees every one) and by the inputs' last dead
// letter at each sample (which sees at most one per input per sample); the
// same dead letter seen both ways is kept once.
type deadLetters struct {
	mu   sync.Mutex
	ring []DeadLetter
	next int
	full bool
	last map[string]DeadLetter // newest seen, per input
}

func newDeadLetters(n int) *deadLetters {
	return &deadLetters{ring: make([]DeadLetter, n), last: map[string]DeadLetter{}}
}

// add keeps dl unless it is the newest one already kept for its input.
func (d *deadLetters) add(dl DeadLetter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if prev, ok := d.last[dl.Input]; ok && prev == dl {
		return
	}
	d.last[dl.Input] = dl
	d.ring[d.next] = dl
	d.next = (d.next + 1) % len(d.ring)
	if d.next == 0 {
		d.full = true
	}
}

// observe adds the inputs' last dead letters.
func (d *deadLetters) observe(inputs []Input) {
	for _, in := range inputs {
		if dl := in.LastDeadLetter; dl != nil && !dl.Time.IsZero() {
			c := *dl
			c.Input = in.Name
			d.add(c)
		}
	}
}

// list returns the kept dead letters, newest first.
func (d *deadLetters) list() []DeadLetter {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.next
	if d.full {
		n = len(d.ring)
	}
	out := make([]DeadLetter, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, d.ring[(d.next-i+len(d.ring))%len(d.ring)])
	}
	return out
}

// DeadLetter records a message an input rejected. It is the hook for a
// pipeline that reports every dead letter; without it the server keeps the
// inputs' last dead letter at each sample. Safe for concurrent use.
func (s *Server) DeadLetter(dl DeadLetter) { s.dead.add(dl) }
