package api

import (
	"sync"
	"time"
)

// sampler keeps recent samples of the counters and turns them into rates:
// each rate is the counter's increase from the oldest sample within the
// window to the status being served, divided by the time between them.
type sampler struct {
	mu      sync.Mutex
	window  time.Duration
	samples []sample // oldest first; at most max
	max     int
}

type sample struct {
	t       time.Time
	inputs  map[string]uint64 // messages
	ruleIn  map[string]uint64 // processed
	ruleOut map[string]uint64 // emitted
	uplinks map[string]uint64 // delivered
	outputs uint64
}

func newSampler(window, interval time.Duration) *sampler {
	return &sampler{window: window, max: int(window/interval) + 2}
}

func takeSample(st *Status) sample {
	s := sample{t: st.Time, outputs: st.Pipeline.Outputs,
		inputs: make(map[string]uint64, len(st.Inputs)), ruleIn: make(map[string]uint64, len(st.Rules)),
		ruleOut: make(map[string]uint64, len(st.Rules)), uplinks: make(map[string]uint64, len(st.Uplinks))}
	for _, in := range st.Inputs {
		s.inputs[in.Name] = in.Messages
	}
	for _, r := range st.Rules {
		s.ruleIn[r.Name], s.ruleOut[r.Name] = r.Processed, r.Emitted
	}
	for _, u := range st.Uplinks {
		s.uplinks[u.Name] = u.Delivered
	}
	return s
}

// add records st's counters.
func (r *sampler) add(st *Status) {
	s := takeSample(st)
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.samples); n > 0 && !s.t.After(r.samples[n-1].t) {
		return // clock did not move: keep the older sample
	}
	r.samples = append(r.samples, s)
	if len(r.samples) > r.max {
		r.samples = append(r.samples[:0], r.samples[len(r.samples)-r.max:]...)
	}
}

// fill sets the Rate fields of st from the oldest sample within the window
// before st.Time. Rates stay 0 until a sample older than st exists; a
// counter that went backwards (the agent restarted) has rate 0.
func (r *sampler) fill(st *Status) {
	r.mu.Lock()
	var base *sample
	for _, s := range r.samples {
		if s.t.Before(st.Time) && st.Time.Sub(s.t) <= r.window {
			base = &s // a copy: add shifts the slice; the maps are never written after takeSample
			break
		}
	}
	r.mu.Unlock()
	if base == nil {
		return
	}
	dt := st.Time.Sub(base.t).Seconds()
	rate := func(now uint64, then uint64, ok bool) float64 {
		if !ok || now < then {
			return 0
		}
		return float64(now-then) / dt
	}
	for i := range st.Inputs {
		in := &st.Inputs[i]
		v, ok := base.inputs[in.Name]
		in.Rate = rate(in.Messages, v, ok)
	}
	for i := range st.Rules {
		ru := &st.Rules[i]
		v, ok := base.ruleIn[ru.Name]
		ru.InRate = rate(ru.Processed, v, ok)
		v, ok = base.ruleOut[ru.Name]
		ru.OutRate = rate(ru.Emitted, v, ok)
	}
	for i := range st.Uplinks {
		u := &st.Uplinks[i]
		v, ok := base.uplinks[u.Name]
		u.Rate = rate(u.Delivered, v, ok)
	}
	st.Pipeline.OutRate = rate(st.Pipeline.Outputs, base.outputs, true)
}
