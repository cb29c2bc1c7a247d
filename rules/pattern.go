package rules

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
)

// patternOp matches a sequence of steps per group key. A key's state is the
// next step to match and the time of the last step matched; a positive step
// must match before that time plus its Within, an absent step succeeds when
// that time passes without a row matching it (a row that does match it, or a
// positive step that times out, starts the key over). A complete match is one
// output ("matched") with the values of the last row that matched a positive
// step, at the time of the match.
type patternOp struct {
	steps  []patternStep
	states map[string]*patState
	next   int64 // no deadline passes before this time
	due    []*patState
}

type patternStep struct {
	cond   evalFn
	within int64
	absent bool
}

type patState struct {
	tracked
	key  string
	step int
	last int64
	keys []Field // owned
	vals []Field // owned
}

func (s *patState) appendState(_ *Plan, b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(s.step))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.last))
	b = appendFields(b, s.keys)
	return appendFields(b, s.vals)
}

func appendFields(b []byte, fs []Field) []byte {
	b = binary.AppendUvarint(b, uint64(len(fs)))
	for _, f := range fs {
		b = binary.AppendUvarint(b, uint64(len(f.Name)))
		b = append(b, f.Name...)
		b = appendValue(b, f.Value)
	}
	return b
}

func (d *decoder) fields() []Field {
	n := d.count(2)
	fs := make([]Field, n)
	for i := range fs {
		fs[i] = Field{Name: string(d.bytes()), Value: d.value()}
	}
	return fs
}

func (o *patternOp) decode(_ *Plan, key string, d *decoder) (stateItem, error) {
	s := &patState{key: key[1:], step: int(d.uvarint()), last: d.int64()}
	s.keys, s.vals = d.fields(), d.fields()
	if d.err != nil || s.step < 1 || s.step >= len(o.steps) {
		return nil, errors.New("bad pattern state")
	}
	o.states[s.key] = s
	o.watch(s)
	return s, nil
}

// deadline is when the state's current step times out, or MaxInt64.
func (o *patternOp) deadline(s *patState) int64 {
	if w := o.steps[s.step].within; w > 0 {
		return s.last + w
	}
	return math.MaxInt64
}

func (o *patternOp) watch(s *patState) { o.next = min(o.next, o.deadline(s)) }

func (o *patternOp) row(p *Plan, rw *row, out []Output) []Output {
	s := o.states[rw.key]
	if s != nil && rw.t >= o.deadline(s) {
		out = o.expire(p, s, out)
		s = o.states[rw.key]
	}
	if s != nil {
		st := o.steps[s.step]
		matched := st.cond(rw.cond, nil).Truthy()
		switch {
		case st.absent && matched:
			o.forget(p, s) // what had to stay away came: start over with this row
		case matched:
			return o.advanceState(p, s, rw, out)
		default:
			return out
		}
	}
	if !o.steps[0].cond(rw.cond, nil).Truthy() {
		return out
	}
	if len(o.states) >= p.maxGroups {
		p.Stats.GroupsDropped++
		return out
	}
	s = &patState{key: strings.Clone(rw.key)}
	s.skey = prefixPattern + s.key
	o.states[s.key] = s
	p.created(s)
	return o.advanceState(p, s, rw, out)
}

// advanceState records that rw matched the state's current positive step.
func (o *patternOp) advanceState(p *Plan, s *patState, rw *row, out []Output) []Output {
	s.step++
	s.last = rw.t
	s.keys = ownFields(s.keys, rw.keys)
	s.vals = ownFields(s.vals, rw.vals)
	if s.step == len(o.steps) {
		return o.complete(p, s, rw.t, out)
	}
	o.watch(s)
	p.touch(s)
	return out
}

// ownFields copies fs into dst with strings copied.
func ownFields(dst, fs []Field) []Field {
	dst = dst[:0]
	for _, f := range fs {
		if f.Kind == KindString {
			f.Str = strings.Clone(f.Str)
		}
		dst = append(dst, f)
	}
	return dst
}

// expire handles a state whose deadline passed: an absent step succeeded,
// a positive one failed.
func (o *patternOp) expire(p *Plan, s *patState, out []Output) []Output {
	for {
		dl := o.deadline(s)
		if !o.steps[s.step].absent {
			o.forget(p, s)
			return out
		}
		s.step++
		s.last = dl
		if s.step == len(o.steps) {
			return o.complete(p, s, dl, out)
		}
		p.touch(s)
		if o.deadline(s) > p.wm {
			o.watch(s)
			return out
		}
	}
}

func (o *patternOp) complete(p *Plan, s *patState, t int64, out []Output) []Output {
	o.forget(p, s)
	keys := p.alloc(len(s.keys))
	copy(keys, s.keys)
	vals := p.alloc(len(s.vals))
	copy(vals, s.vals)
	rw := row{key: s.key, kid: -1, keys: keys, vals: vals, t: t, time: timeAt(t), event: "matched"}
	return p.output(&rw, out)
}

func (o *patternOp) forget(p *Plan, s *patState) {
	delete(o.states, s.key)
	p.ended(s)
}

// advance expires the states whose deadline the watermark reached, in order
// of deadline and key.
func (o *patternOp) advance(p *Plan, wm int64, out []Output) []Output {
	if wm < o.next {
		return out
	}
	o.next = math.MaxInt64
	for _, s := range o.states {
		if o.deadline(s) <= wm {
			o.due = append(o.due, s)
		} else {
			o.watch(s)
		}
	}
	slices.SortFunc(o.due, func(a, b *patState) int {
		if c := cmpInt(o.deadline(a), o.deadline(b)); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	for _, s := range o.due {
		out = o.expire(p, s, out)
	}
	clear(o.due)
	o.due = o.due[:0]
	return out
}
