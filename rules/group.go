package rules

import "strings"

// group is the state of one group key: in one time window (tumbling,
// hopping), or across windows (sliding events, sessions, a count window).
type group struct {
	tracked
	aggView          // keys and accumulators
	key      string  // group key text, owned
	start    int64   // time windows: the window; count: first and last time
	end      int64   //
	n        int     // count: records in the window
	times    []int64 // sliding: event times, in order ...
	args     []Value // ... and their aggregate arguments, len(aggs) per event
	sessions []session
}

// session is one open session window of a group.
type session struct {
	start, last int64
	accs        []acc
}

// groupKey returns r's group key as text: the group_by values joined with
// "\x00". The string points into scratch memory: clone it to keep it.
func (p *Plan) groupKey(r *Record) string {
	var key string
	key, p.keyBuf = appendGroupKey(p.keyBuf, p.keys, r)
	return key
}

// appendGroupKey returns r's key for the group_by keys: a string field of a
// single key as it is, else the values as text joined with "\x00" in buf
// (returned for reuse; the key points into it).
func appendGroupKey(buf []byte, keys []string, r *Record) (string, []byte) {
	switch len(keys) {
	case 0:
		return "", buf
	case 1:
		v, _ := r.Get(keys[0])
		if v.Kind == KindString {
			return v.Str, buf
		}
		buf = v.AppendText(buf[:0])
		return unsafeString(buf), buf
	}
	buf = buf[:0]
	for i, k := range keys {
		if i > 0 {
			buf = append(buf, 0)
		}
		v, _ := r.Get(k)
		buf = v.AppendText(buf)
	}
	return unsafeString(buf), buf
}

// keyFields returns r's group_by fields in the arena (strings not copied).
func (p *Plan) keyFields(r *Record) []Field {
	fs := p.alloc(len(p.keys))
	for i, k := range p.keys {
		v, _ := r.Get(k)
		fs[i] = Field{Name: k, Value: v}
	}
	return fs
}

// ownKeys returns r's group_by values, with strings copied.
func (p *Plan) ownKeys(r *Record) []Value {
	vs := make([]Value, len(p.keys))
	for i, k := range p.keys {
		v, _ := r.Get(k)
		if v.Kind == KindString {
			v.Str = strings.Clone(v.Str)
		}
		vs[i] = v
	}
	return vs
}

// newGroup makes the state of a new group of r, whose key is key (scratch).
func (p *Plan) newGroup(r *Record, key, prefix string) *group {
	g := &group{key: strings.Clone(key)}
	g.keys = p.ownKeys(r)
	g.accs = make([]acc, len(p.aggs))
	g.skey = prefix + g.key
	return g
}

// addAll folds r into accs.
func (p *Plan) addAll(accs []acc, r *Record, t int64) {
	for i := range p.aggs {
		p.aggs[i].add(&accs[i], r, t)
	}
}

// resetAccs empties accs for reuse.
func resetAccs(accs []acc) {
	for i := range accs {
		accs[i].reset()
	}
}

// groupFor finds r's group in ids or groups or creates it there, counting
// and returning nil when the plan's group cap bites.
func (p *Plan) groupFor(groups map[string]*group, ids *idCache[group], r *Record) *group {
	if g := ids.get(p.kid); g != nil {
		return g
	}
	key := p.groupKey(r)
	g := groups[key]
	if g == nil {
		if len(groups) >= p.maxGroups {
			p.Stats.GroupsDropped++
			return nil
		}
		g = p.newGroup(r, key, prefixGroup)
		groups[g.key] = g
		p.created(g)
	}
	ids.set(p.kid, g, &g.tracked)
	return g
}
