package rules

import (
	"slices"
	"strings"
)

// windower is the window of a plan: it folds records into the groups of the
// windows they belong to and emits a group's values when its window closes.
// The plan calls it from its one goroutine: add for each record that passed
// where (t is its event time, never older than the watermark), advance when
// the watermark moves (windows that end at or before wm close), flush to
// close everything now.
type windower interface {
	add(p *Plan, r *Record, t int64, out []Output) []Output
	advance(p *Plan, wm int64, out []Output) []Output
	flush(p *Plan, out []Output) []Output
	each(fn func(stateItem)) // every live group, for a full checkpoint
	restore(p *Plan, g *group) error
	clear()
	forgetIDs() // the key numbers (Set) changed meaning
}

// groupPool recycles the groups of closed windows, so a steady stream of
// windows reuses memory instead of allocating it.
type groupPool []*group

// get returns a group for r with key (scratch) and store key prefix+key.
func (gp *groupPool) get(p *Plan, r *Record, key, prefix string) *group {
	n := len(*gp)
	if n == 0 {
		return p.newGroup(r, key, prefix)
	}
	g := (*gp)[n-1]
	*gp = (*gp)[:n-1]
	g.key = strings.Clone(key)
	g.keys = p.ownKeys(r)
	g.skey = prefix + g.key
	g.dead, g.kid = false, 0 // dirty stays: if set, the group is in the plan's dirty list once
	g.n, g.start, g.end = 0, 0, 0
	return g
}

func (gp *groupPool) put(g *group) {
	resetAccs(g.accs)
	g.times, g.args, g.sessions = g.times[:0], g.args[:0], nil
	*gp = append(*gp, g)
}

// byKey orders groups by key text, so outputs come in the same order
// whatever the history of a map (a restored plan emits as the original).
func byKey(a, b *group) int { return strings.Compare(a.key, b.key) }

// sortedGroups returns the groups of m in key order, in buf.
func sortedGroups(m map[string]*group, buf []*group) []*group {
	buf = buf[:0]
	for _, g := range m {
		buf = append(buf, g)
	}
	slices.SortFunc(buf, byKey)
	return buf
}

// floorTo rounds t down to a multiple of d (also for negative t).
func floorTo(t, d int64) int64 {
	q := t / d
	if t%d != 0 && t < 0 {
		q--
	}
	return q * d
}
