package api

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/sluiceio/sluice/buffer"
	"github.com/sluiceio/sluice/uplink"
)

// lastOutputs is how many recent outputs the server keeps per rule.
const lastOutputs = 60

// Output is a committed output as upstream receives it.
type Output struct {
	Seq       uint64          `json:"seq"`
	Rule      string          `json:"rule"`
	Committed time.Time       `json:"committed"`
	Envelope  json.RawMessage `json:"envelope"`
}

// outputs keeps the last outputs of each rule, copied from the commits.
type outputs struct {
	env uplink.Envelope
	n   int

	mu     sync.Mutex
	byRule map[string][]Output // oldest first, at most n
}

func newOutputs(gateway string, n int) *outputs {
	return &outputs{env: uplink.NewEnvelope(gateway), n: n, byRule: map[string][]Output{}}
}

// add keeps the newest n entries of each rule among entries; only those
// are copied.
func (o *outputs) add(entries []buffer.Entry, now time.Time) {
	taken := map[string]int{}
	var keep []int // indexes, newest first
	for i := len(entries) - 1; i >= 0; i-- {
		if r := entries[i].Rule; taken[r] < o.n {
			taken[r]++
			keep = append(keep, i)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := len(keep) - 1; k >= 0; k-- {
		e := &entries[keep[k]]
		list := append(o.byRule[e.Rule], Output{Seq: e.Seq, Rule: e.Rule, Committed: now, Envelope: o.env.Append(nil, e)})
		if len(list) > o.n {
			list = append(list[:0], list[len(list)-o.n:]...)
		}
		o.byRule[e.Rule] = list
	}
}

// last returns copies of the kept outputs of rule, oldest first.
func (o *outputs) last(rule string) []Output {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Output(nil), o.byRule[rule]...)
}
