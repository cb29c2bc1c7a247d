package rules

import "strings"

// Set drives the plans of one stream of records, sharing the work that
// repeats across them: it finds each record's group key once per distinct
// group_by and gives the plans a number for it, with which a plan finds the
// group in a slice instead of hashing the key into a map of its own.
//
// A Set is driven by one goroutine, as its plans are. A plan given to a new
// Set (after a config swap) forgets the numbers of the old one; one used by
// two Sets in turn forgets them at each turn (slower, still right). Plans
// keep working alone (Process, ProcessBatch, Tick, Flush) and give the same
// outputs either way.
type Set struct {
	plans   []*Plan
	indexes []*keyIndex // one per distinct group_by
	of      []int       // plans[i] uses indexes[of[i]]; -1: no group_by
	ids     [][]int32   // per index, the key numbers of the batch's records
	out     []Output
}

// NewSet makes a Set of plans, which all take the same records.
func NewSet(plans ...*Plan) *Set {
	s := &Set{plans: plans, of: make([]int, len(plans))}
	byKeys := map[string]int{}
	for i, p := range plans {
		s.of[i] = -1
		if len(p.keys) == 0 || !p.stateful {
			continue
		}
		k := strings.Join(p.keys, "\x00")
		j, ok := byKeys[k]
		if !ok {
			j = len(s.indexes)
			byKeys[k] = j
			s.indexes = append(s.indexes, &keyIndex{keys: p.keys, ids: map[string]int32{}, max: maxKeyIDs})
		}
		s.of[i] = j
		p.useIndex(s.indexes[j])
	}
	s.ids = make([][]int32, len(s.indexes))
	return s
}

// Plans returns the set's plans, in the order NewSet got them.
func (s *Set) Plans() []*Plan { return s.plans }

// ProcessBatch feeds records to every plan of the set, plan by plan (see
// Plan.ProcessBatch for why), and calls emit with the index of each plan
// (in Plans) that has outputs and its outputs, in the order of the records.
// The outputs stay valid until emit returns; emit keeps what it needs (the
// pipeline encodes them). A plan's outputs are those ProcessBatch would
// give.
func (s *Set) ProcessBatch(rs []*Record, emit func(plan int, outs []Output)) {
	for j, x := range s.indexes {
		ids := s.ids[j][:0]
		for _, r := range rs {
			ids = append(ids, x.id(r))
		}
		s.ids[j] = ids
	}
	used := 0
	for i, p := range s.plans {
		var ids []int32
		if j := s.of[i]; j >= 0 {
			ids = s.ids[j]
			p.useIndex(s.indexes[j]) // a no-op unless another Set used p since
		}
		s.out = p.processIDs(rs, ids, s.out[:0])
		used = max(used, len(s.out))
		if len(s.out) > 0 {
			emit(i, s.out)
		}
	}
	// Keep no record's strings alive. Only what this batch used: the rest
	// was cleared before, and after a window of 1,000 groups closed,
	// clearing the whole capacity on every batch was a quarter of the
	// agent's CPU under W1.
	clear(s.out[:used])
}

// maxKeyIDs bounds a key index: keys beyond it get no number, and the plans
// find their groups by key text, as plans outside a Set do. A number is
// never reused (a plan's slices stay right without being told), so the
// keys of devices gone stay numbered; the bound keeps that from growing
// without end.
const maxKeyIDs = 1 << 14

// keyIndex numbers the group keys of one group_by.
type keyIndex struct {
	keys []string
	ids  map[string]int32
	max  int // maxKeyIDs; less in tests
	buf  []byte
}

// id returns the number of r's group key, or -1 when the index is full.
func (x *keyIndex) id(r *Record) int32 {
	var key string
	key, x.buf = appendGroupKey(x.buf, x.keys, r)
	if id, ok := x.ids[key]; ok {
		return id
	}
	if len(x.ids) >= x.max {
		return -1
	}
	id := int32(len(x.ids))
	x.ids[strings.Clone(key)] = id
	return id
}

// processIDs is ProcessBatch with the key numbers of the records (nil for
// a plan without group_by).
func (p *Plan) processIDs(rs []*Record, ids []int32, out []Output) []Output {
	if ids == nil {
		return p.ProcessBatch(rs, out)
	}
	for i, r := range rs {
		p.kid = ids[i]
		out = p.Process(r, out)
	}
	p.kid = -1
	return out
}

// useIndex makes x the source of the plan's key numbers, forgetting those
// of another index.
func (p *Plan) useIndex(x *keyIndex) {
	if p.kidx == x {
		return
	}
	p.kidx = x
	p.forgetIDs()
}

// forgetIDs empties the plan's caches by key number.
func (p *Plan) forgetIDs() {
	if p.wins != nil {
		p.wins.forgetIDs()
	}
	if p.alert != nil {
		clear(p.alert.ids)
	}
	if p.band != nil {
		clear(p.band.ids)
	}
	if p.online != nil {
		clear(p.online.ids)
	}
}

// idCache finds pieces of state (groups, alerts, ...) by key number (Set),
// in front of a map by key text. A piece records its number in its
// tracked.kid, so that it can be taken out when it ends.
type idCache[T any] []*T

func (c idCache[T]) get(id int32) *T {
	if uint32(id) < uint32(len(c)) { // -1: no number
		return c[id]
	}
	return nil
}

func (c *idCache[T]) set(id int32, x *T, st *tracked) {
	if id < 0 {
		return
	}
	if int(id) >= len(*c) {
		*c = append(*c, make([]*T, int(id)+1-len(*c))...)
	}
	(*c)[id] = x
	st.kid = id + 1
}

func (c idCache[T]) del(x *T, st *tracked) {
	if k := st.kid - 1; uint32(k) < uint32(len(c)) && c[k] == x {
		c[k] = nil
	}
	st.kid = 0
}
