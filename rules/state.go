package rules

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// StateChange is what changed in a plan's state since its last checkpoint.
// The store applies it in order: with Reset it drops everything saved before,
// then it writes Puts; an entry with an empty Value may be deleted (a plan
// writes one for state that ended, and ignores it in Restore).
type StateChange struct {
	Reset bool
	Puts  []StateEntry
}

// StateEntry is one saved piece of a plan's state.
type StateEntry struct {
	Key   string
	Value []byte
}

// ErrBadState reports saved state that does not fit the plan (the rule
// changed shape, or the bytes are damaged).
var ErrBadState = errors.New("saved state does not match the rule")

// tracked is the bookkeeping of one piece of state: its key in the store,
// whether it changed since the last checkpoint, whether it ended.
type tracked struct {
	skey  string
	dirty bool
	dead  bool
	kid   int32 // key number + 1 in an idCache (see Set); 0: none
}

func (t *tracked) state() *tracked { return t }

// stateItem is a piece of a plan's state saved as one entry.
type stateItem interface {
	state() *tracked
	appendState(p *Plan, b []byte) []byte
}

// Entry key prefixes.
const (
	metaKey       = "m"
	prefixWindow  = "w" // tumbling and hopping: "w" + window start (8 bytes) + group key
	prefixGroup   = "g" // sliding, session, count: "g" + group key
	prefixAlert   = "a"
	prefixPattern = "p"
	prefixBand    = "d"
	prefixOnline  = "o" // learning functions: "o" + group key
)

// created counts a new piece of state and marks it for the next checkpoint.
func (p *Plan) created(it stateItem) {
	p.live++
	p.touch(it)
}

// touch marks a piece of state changed.
func (p *Plan) touch(it stateItem) {
	if st := it.state(); !st.dirty {
		st.dirty = true
		p.dirty = append(p.dirty, it)
	}
}

// ended forgets a piece of state: the next checkpoint deletes it.
func (p *Plan) ended(it stateItem) {
	st := it.state()
	st.dead = true
	p.live--
	p.dead = append(p.dead, st.skey)
}

// Dirty reports whether the state changed since the last checkpoint.
func (p *Plan) Dirty() bool {
	return p.reset || p.metaDirty || len(p.dirty) > 0 || len(p.dead) > 0
}

// Checkpoint returns the state changes since the last call and forgets them.
// Saving them in the same transaction as the outputs and input positions that
// go with them is what makes a restart exact. When deleted entries pile up it
// returns the whole state with Reset instead.
func (p *Plan) Checkpoint() StateChange {
	if !p.stateful {
		return StateChange{}
	}
	if p.reset || p.tombstones+len(p.dead) > 256+p.live {
		return p.fullCheckpoint()
	}
	sc := StateChange{Puts: make([]StateEntry, 0, len(p.dead)+len(p.dirty)+1)}
	arena := make([]byte, 0, p.checkpointBytes)
	for _, k := range p.dead {
		sc.Puts = append(sc.Puts, StateEntry{Key: k})
	}
	p.tombstones += len(p.dead)
	if p.metaDirty {
		sc.Puts = append(sc.Puts, StateEntry{Key: metaKey, Value: p.appendMeta(nil)})
	}
	for _, it := range p.dirty {
		st := it.state()
		st.dirty = false
		if !st.dead {
			sc.Puts, arena = p.appendItem(sc.Puts, arena, it)
		}
	}
	p.checkpointBytes = len(arena)
	p.clearChanges()
	return sc
}

func (p *Plan) fullCheckpoint() StateChange {
	sc := StateChange{Reset: true, Puts: []StateEntry{{Key: metaKey, Value: p.appendMeta(nil)}}}
	for _, it := range p.dirty {
		it.state().dirty = false
	}
	arena := make([]byte, 0, p.checkpointBytes)
	p.eachItem(func(it stateItem) { sc.Puts, arena = p.appendItem(sc.Puts, arena, it) })
	p.checkpointBytes = len(arena)
	p.tombstones = 0
	p.reset = false
	p.clearChanges()
	return sc
}

// appendItem appends the state of it to puts, its value encoded at the end
// of arena: a checkpoint's values share one allocation, sized by the last
// checkpoint, rather than a growing slice per group.
func (p *Plan) appendItem(puts []StateEntry, arena []byte, it stateItem) ([]StateEntry, []byte) {
	start := len(arena)
	arena = it.appendState(p, arena)
	return append(puts, StateEntry{Key: it.state().skey, Value: arena[start:len(arena):len(arena)]}), arena
}

func (p *Plan) clearChanges() {
	clear(p.dirty)
	p.dirty = p.dirty[:0]
	p.dead = p.dead[:0]
	p.metaDirty = false
}

// eachItem calls fn for every live piece of state.
func (p *Plan) eachItem(fn func(stateItem)) {
	if p.wins != nil {
		p.wins.each(fn)
	}
	if p.alert != nil {
		for _, s := range p.alert.states {
			fn(s)
		}
	}
	if p.pattern != nil {
		for _, s := range p.pattern.states {
			fn(s)
		}
	}
	if p.band != nil {
		for _, s := range p.band.states {
			fn(s)
		}
	}
	if p.online != nil {
		for _, s := range p.online.states {
			fn(s)
		}
	}
}

// appendMeta encodes what the plan keeps besides its items: the shape of
// the rule and the watermark.
func (p *Plan) appendMeta(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, p.fp)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.wm))
	b = binary.LittleEndian.AppendUint64(b, uint64(p.maxT))
	if p.started {
		return append(b, 1)
	}
	return append(b, 0)
}

// Restore replaces the plan's state with saved entries (what the checkpoints
// wrote since the last Reset, newest value per key). State saved by a rule of
// another shape (see Spec.Fingerprint) is not taken: the plan starts empty
// and the error wraps ErrBadState; so does a damaged entry, which is skipped.
func (p *Plan) Restore(entries []StateEntry) error {
	if !p.stateful {
		return nil
	}
	p.clearState()
	var meta []byte
	n := 0
	for _, e := range entries {
		if e.Key == metaKey {
			meta = e.Value
		} else if len(e.Value) > 0 {
			n++
		}
	}
	if meta == nil {
		if n == 0 {
			return nil
		}
		return fmt.Errorf("restore rule %s: %d entries without the rule's shape: %w", p.name, n, ErrBadState)
	}
	d := decoder{b: meta}
	fp, wm, maxT := d.uint64(), d.int64(), d.int64()
	started := d.byte() == 1
	if d.err != nil || fp != p.fp {
		return fmt.Errorf("restore rule %s: the rule changed; its state of %d entries is dropped: %w", p.name, n, ErrBadState)
	}
	p.wm, p.maxT, p.started = wm, maxT, started
	skipped := 0
	for _, e := range entries {
		if e.Key == metaKey || len(e.Value) == 0 {
			continue
		}
		if err := p.restoreEntry(e); err != nil {
			skipped++
		}
	}
	p.reset = true // drop the deleted entries still saved at the next checkpoint
	if skipped > 0 {
		return fmt.Errorf("restore rule %s: skipped %d of %d entries: %w", p.name, skipped, n, ErrBadState)
	}
	return nil
}

func (p *Plan) restoreEntry(e StateEntry) error {
	if e.Key == "" {
		return ErrBadState
	}
	d := &decoder{b: e.Value}
	var it stateItem
	var err error
	switch {
	case e.Key[0] == prefixWindow[0] || e.Key[0] == prefixGroup[0]:
		if p.wins == nil {
			return ErrBadState
		}
		var g *group
		g, err = p.decodeGroup(e.Key, d)
		if err == nil {
			err = p.wins.restore(p, g)
			it = g
		}
	case e.Key[0] == prefixAlert[0] && p.alert != nil:
		it, err = p.alert.decode(p, e.Key, d)
	case e.Key[0] == prefixPattern[0] && p.pattern != nil:
		it, err = p.pattern.decode(p, e.Key, d)
	case e.Key[0] == prefixBand[0] && p.band != nil:
		it, err = p.band.decode(p, e.Key, d)
	case e.Key[0] == prefixOnline[0] && p.online != nil:
		it, err = p.online.decode(p, e.Key, d)
	default:
		return ErrBadState
	}
	if err == nil && (d.err != nil || len(d.b) != 0) {
		err = ErrBadState
	}
	if err != nil {
		return err
	}
	p.live++
	it.state().skey = e.Key
	return nil
}

// clearState empties every operator.
func (p *Plan) clearState() {
	if p.wins != nil {
		p.wins.clear()
	}
	if p.alert != nil {
		clear(p.alert.states)
	}
	if p.pattern != nil {
		clear(p.pattern.states)
	}
	if p.band != nil {
		clear(p.band.states)
	}
	if p.online != nil {
		clear(p.online.states)
		p.online.cur = nil
	}
	p.forgetIDs()
	p.live, p.tombstones = 0, 0
	p.wm, p.maxT, p.started = 0, 0, false
	p.clearChanges()
}

// appendState encodes a group: its window bounds and count, keys,
// accumulators, sliding events and sessions.
func (g *group) appendState(p *Plan, b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(g.start))
	b = binary.LittleEndian.AppendUint64(b, uint64(g.end))
	b = binary.AppendUvarint(b, uint64(g.n))
	b = appendValues(b, g.keys)
	b = appendAccs(b, g.accs)
	b = binary.AppendUvarint(b, uint64(len(g.times)))
	for i, t := range g.times {
		b = binary.LittleEndian.AppendUint64(b, uint64(t))
		for _, v := range g.args[i*len(p.aggs) : (i+1)*len(p.aggs)] {
			b = appendValue(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(g.sessions)))
	for _, s := range g.sessions {
		b = binary.LittleEndian.AppendUint64(b, uint64(s.start))
		b = binary.LittleEndian.AppendUint64(b, uint64(s.last))
		b = appendAccs(b, s.accs)
	}
	return b
}

func (p *Plan) decodeGroup(key string, d *decoder) (*group, error) {
	g := &group{}
	g.start, g.end = d.int64(), d.int64()
	g.n = int(d.uvarint())
	g.keys = d.values()
	g.accs = p.decodeAccs(d)
	if d.err != nil || len(g.keys) != len(p.keys) {
		return nil, ErrBadState
	}
	ne := d.count(8)
	for i := 0; i < ne && d.err == nil; i++ {
		g.times = append(g.times, d.int64())
		for range p.aggs {
			g.args = append(g.args, d.value())
		}
	}
	ns := d.count(16)
	for i := 0; i < ns && d.err == nil; i++ {
		s := session{start: d.int64(), last: d.int64()}
		s.accs = p.decodeAccs(d)
		g.sessions = append(g.sessions, s)
	}
	if d.err != nil {
		return nil, ErrBadState
	}
	g.key = string(groupKeyOf(g.keys))
	return g, nil
}

// groupKeyOf builds the key text of key values, as groupKey does.
func groupKeyOf(keys []Value) []byte {
	var b []byte
	for i, k := range keys {
		if i > 0 {
			b = append(b, 0)
		}
		b = k.AppendText(b)
	}
	return b
}

func appendAccs(b []byte, accs []acc) []byte {
	b = binary.AppendUvarint(b, uint64(len(accs)))
	for i := range accs {
		b = accs[i].appendBinary(b)
	}
	return b
}

func (p *Plan) decodeAccs(d *decoder) []acc {
	n := d.uvarint()
	if d.err != nil || n != uint64(len(p.aggs)) {
		d.err = ErrBadState
		return nil
	}
	accs := make([]acc, n)
	for i := range accs {
		accs[i].decode(d, p.aggs[i].fn)
	}
	return accs
}

func appendValue(b []byte, v Value) []byte {
	b = append(b, byte(v.Kind))
	switch v.Kind {
	case KindString:
		b = binary.AppendUvarint(b, uint64(len(v.Str)))
		b = append(b, v.Str...)
	case KindNumber, KindBool:
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Num))
	}
	return b
}

func appendValues(b []byte, vs []Value) []byte {
	b = binary.AppendUvarint(b, uint64(len(vs)))
	for _, v := range vs {
		b = appendValue(b, v)
	}
	return b
}

// decoder reads what the append functions wrote; the first error sticks and
// later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = ErrBadState, nil }

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) int64() int64   { return int64(d.uint64()) }
func (d *decoder) float() float64 { return math.Float64frombits(d.uint64()) }

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items of at least minSize bytes each, failing
// when the rest cannot hold them (so damaged bytes cannot make it allocate).
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/minSize) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) value() Value {
	switch k := Kind(d.byte()); k {
	case KindNull:
		return Null
	case KindString:
		return String(string(d.bytes()))
	case KindNumber, KindBool:
		return Value{Kind: k, Num: d.float()}
	}
	d.fail()
	return Null
}

func (d *decoder) values() []Value {
	n := d.count(1)
	vs := make([]Value, n)
	for i := range vs {
		vs[i] = d.value()
	}
	return vs
}
