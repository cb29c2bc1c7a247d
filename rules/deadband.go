package rules

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
)

// deadbandOp reports by exception: per group key it keeps the values of the
// last output and lets a row through only when a watched value moved enough
// (see Deadband), a value that is not a number changed, or the heartbeat
// passed. Dedup is a deadband on every value with no threshold.
type deadbandOp struct {
	fields   []string // watched select names; empty: all values
	abs, rel float64
	beat     int64
	states   map[string]*bandState
	ids      idCache[bandState]
}

type bandState struct {
	tracked
	vals []Value // watched values of the last output
	last int64   // its time
}

func (s *bandState) appendState(_ *Plan, b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(s.last))
	return appendValues(b, s.vals)
}

func (o *deadbandOp) decode(_ *Plan, key string, d *decoder) (stateItem, error) {
	s := &bandState{last: d.int64(), vals: d.values()}
	if d.err != nil {
		return nil, ErrBadState
	}
	o.states[key[1:]] = s
	return s, nil
}

// watched calls fn with each watched value of rw in order.
func (o *deadbandOp) watched(rw *row, fn func(i int, v Value)) {
	if len(o.fields) == 0 {
		for i, f := range rw.vals {
			fn(i, f.Value)
		}
		return
	}
	for i, name := range o.fields {
		v := Null
		for _, f := range rw.vals {
			if f.Name == name {
				v = f.Value
				break
			}
		}
		fn(i, v)
	}
}

// moved reports whether v differs enough from the last emitted value.
func (o *deadbandOp) moved(last, v Value) bool {
	if last.Kind != KindNumber || v.Kind != KindNumber {
		return last.Kind != v.Kind || last.Str != v.Str || last.Num != v.Num
	}
	d := math.Abs(v.Num - last.Num)
	if o.abs == 0 && o.rel == 0 {
		return d != 0
	}
	return (o.abs > 0 && d > o.abs) || (o.rel > 0 && d > o.rel*math.Abs(last.Num))
}

// pass reports whether rw is to be emitted, and then remembers its values.
func (o *deadbandOp) pass(p *Plan, rw *row) bool {
	s := o.ids.get(rw.kid)
	if s == nil {
		if s = o.states[rw.key]; s != nil {
			o.ids.set(rw.kid, s, &s.tracked)
		}
	}
	if s != nil {
		emit := o.beat > 0 && rw.t-s.last >= o.beat
		if !emit {
			n := 0
			o.watched(rw, func(i int, v Value) {
				n++
				if !emit && (i >= len(s.vals) || o.moved(s.vals[i], v)) {
					emit = true
				}
			})
			emit = emit || n != len(s.vals)
		}
		if !emit {
			return false
		}
	} else {
		if len(o.states) >= p.maxGroups {
			p.Stats.GroupsDropped++
			return false
		}
		s = &bandState{}
		s.skey = prefixBand + rw.key
		o.states[s.skey[1:]] = s
		o.ids.set(rw.kid, s, &s.tracked)
		p.created(s)
	}
	s.last = rw.t
	n := 0
	o.watched(rw, func(i int, v Value) {
		n++
		if i < len(s.vals) {
			keep(&s.vals[i], v)
		} else {
			if v.Kind == KindString {
				v.Str = strings.Clone(v.Str)
			}
			s.vals = append(s.vals, v)
		}
	})
	s.vals = slices.Clip(s.vals[:n])
	p.touch(s)
	return true
}
