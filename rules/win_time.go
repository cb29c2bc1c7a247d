package rules

import (
	"encoding/binary"
	"errors"
	"math"
)

// timeWindows are tumbling (every == size) and hopping windows: fixed
// windows [start, start+size) with start a multiple of every since the Unix
// epoch. A record belongs to size/every windows; each window keeps its own
// groups, and closes, in order of start, when the watermark reaches its end.
//
// Hopping windows whose size is a multiple of every are kept in slices
// instead: panes [start, start+every), each record folded into its one
// slice, and a window's values merged from its size/every slices when it
// closes. A record then costs one group lookup and one accumulator update
// per aggregate, not size/every of each (a 1m window every 20s: a third).
// Merging is exact for count, min, max, first, last, quantile and
// count_distinct; sum, avg and stddev add the slices' partial results, which
// can differ from one running sum in the last bits; delta and rate take the
// order of the slices into account, so a counter reset between records that
// came out of order counts as it happened. The group cap applies per slice:
// memory is bounded as before (size/every panes of at most MaxGroups), but a
// window whose slices hold different keys may emit more than MaxGroups.
type timeWindows struct {
	size, every int64
	sliced      bool    // hopping with size a multiple of every: panes are slices
	done        int64   // sliced: windows starting before this were emitted
	panes       []*pane // open windows (slices) by start
	last        *pane   // the window of the last record
	pool        groupPool
	sorted      []*group
	spare       []*pane           // closed panes, for reuse
	merged      map[string]*group // sliced: a closing window's groups, scratch
	mpool       []*group
}

func newTimeWindows(size, every int64) *timeWindows {
	w := &timeWindows{size: size, every: every, done: math.MinInt64}
	if every < size && size%every == 0 {
		w.sliced, w.merged = true, map[string]*group{}
	}
	return w
}

// span is the length of a pane: a window, or a slice.
func (w *timeWindows) span() int64 {
	if w.sliced {
		return w.every
	}
	return w.size
}

// pane is one open time window, or slice of windows.
type pane struct {
	start, end int64
	groups     map[string]*group
	ids        []groupSlot // by key number (Set)
}

func (w *timeWindows) add(p *Plan, r *Record, t int64, out []Output) []Output {
	if w.every == w.size || w.sliced {
		w.addTo(p, w.pane(floorTo(t, w.span())), r, t)
		return out
	}
	for s := floorTo(t, w.every); s > t-w.size; s -= w.every {
		w.addTo(p, w.pane(s), r, t)
	}
	return out
}

// groupSlot is a group of a pane by key number, with its accumulators: a
// record's update reads both from the slot at once, instead of waiting for
// the group to learn where its accumulators are (windows of many groups
// are cache misses, and this is one fewer in a row).
type groupSlot struct {
	g    *group
	accs []acc
}

func (w *timeWindows) addTo(p *Plan, pn *pane, r *Record, t int64) {
	if uint32(p.kid) < uint32(len(pn.ids)) { // -1: no number
		if sl := &pn.ids[p.kid]; sl.g != nil {
			p.addAll(sl.accs, r, t)
			p.touch(sl.g)
			return
		}
	}
	key := p.groupKey(r)
	g := pn.groups[key]
	if g == nil {
		if len(pn.groups) >= p.maxGroups {
			p.Stats.GroupsDropped++
			return
		}
		g = w.pool.get(p, r, key, windowKey(pn.start, ""))
		g.start, g.end = pn.start, pn.end
		pn.groups[g.key] = g
		p.created(g)
	}
	if id := p.kid; id >= 0 {
		if int(id) >= len(pn.ids) {
			pn.ids = append(pn.ids, make([]groupSlot, int(id)+1-len(pn.ids))...)
		}
		pn.ids[id] = groupSlot{g, g.accs}
	}
	p.addAll(g.accs, r, t)
	p.touch(g)
}

// windowKey is the store key of a group of the window at start.
func windowKey(start int64, key string) string {
	var b [9]byte
	b[0] = prefixWindow[0]
	binary.BigEndian.PutUint64(b[1:], uint64(start))
	return string(b[:]) + key
}

// pane returns the open window at start, opening it if needed.
func (w *timeWindows) pane(start int64) *pane {
	if w.last != nil && w.last.start == start {
		return w.last
	}
	i := 0
	for ; i < len(w.panes); i++ {
		if w.panes[i].start == start {
			w.last = w.panes[i]
			return w.last
		}
		if w.panes[i].start > start {
			break
		}
	}
	var pn *pane
	if n := len(w.spare); n > 0 {
		pn, w.spare = w.spare[n-1], w.spare[:n-1]
	} else {
		pn = &pane{groups: make(map[string]*group)}
	}
	pn.start, pn.end = start, start+w.span()
	w.panes = append(w.panes, nil)
	copy(w.panes[i+1:], w.panes[i:])
	w.panes[i] = pn
	w.last = pn
	return pn
}

func (w *timeWindows) advance(p *Plan, wm int64, out []Output) []Output {
	if w.sliced {
		return w.closeSlices(p, wm, out)
	}
	for len(w.panes) > 0 && w.panes[0].end <= wm {
		out = w.close(p, out)
	}
	return out
}

func (w *timeWindows) flush(p *Plan, out []Output) []Output {
	if w.sliced {
		out = w.closeSlices(p, math.MaxInt64, out)
		// As for unsliced windows, a later record opens its windows afresh.
		w.done = math.MinInt64
		return out
	}
	for len(w.panes) > 0 {
		out = w.close(p, out)
	}
	return out
}

// close emits the first open window and forgets it.
func (w *timeWindows) close(p *Plan, out []Output) []Output {
	pn := w.panes[0]
	w.panes = w.panes[1:]
	if w.last == pn {
		w.last = nil
	}
	w.sorted = sortedGroups(pn.groups, w.sorted)
	for _, g := range w.sorted {
		out = p.emitGroup(g, g.accs, pn.start, pn.end, out)
		p.ended(g)
		w.pool.put(g)
	}
	clear(w.sorted)
	w.recycle(pn)
	return out
}

func (w *timeWindows) each(fn func(stateItem)) {
	for _, pn := range w.panes {
		for _, g := range pn.groups {
			fn(g)
		}
	}
}

func (w *timeWindows) restore(p *Plan, g *group) error {
	// A hopping window saved before it was sliced ends at start+size, not
	// start+every: it is refused here, so such a checkpoint fails to
	// restore with ErrBadState rather than counting a window twice.
	if g.start != floorTo(g.start, w.every) || g.end != g.start+w.span() || len(g.times) > 0 || len(g.sessions) > 0 {
		return errors.New("not a group of this window")
	}
	if w.sliced {
		// The windows that ended at or before the watermark were emitted
		// before the checkpoint.
		w.done = w.nextOpen(p.wm)
	}
	pn := w.pane(g.start)
	pn.groups[g.key] = g
	return nil
}

// recycle keeps a closed pane for reuse.
func (w *timeWindows) recycle(pn *pane) {
	clear(pn.groups)
	clear(pn.ids)
	w.spare = append(w.spare, pn)
}

func (w *timeWindows) forgetIDs() {
	for _, pn := range w.panes {
		clear(pn.ids)
	}
}

func (w *timeWindows) clear() {
	w.panes, w.last = nil, nil
	w.done = math.MinInt64
}

// nextOpen returns the start of the first window that ends after wm.
func (w *timeWindows) nextOpen(wm int64) int64 {
	if wm < math.MinInt64+w.size {
		return math.MinInt64
	}
	return floorTo(wm-w.size, w.every) + w.every
}

// closeSlices emits, in order of start, the windows that end at or before
// wm and hold a record, and drops the slices no open window needs.
func (w *timeWindows) closeSlices(p *Plan, wm int64, out []Output) []Output {
	for len(w.panes) > 0 {
		// The first window not yet emitted that holds the oldest slice.
		s := max(w.done, w.panes[0].start-w.size+w.every)
		if s > wm-w.size {
			break
		}
		out = w.emitWindow(p, s, out)
		w.done = s + w.every
		for len(w.panes) > 0 && w.panes[0].start < w.done {
			w.dropSlice(p)
		}
	}
	if wm != math.MaxInt64 {
		w.done = max(w.done, w.nextOpen(wm))
	}
	return out
}

// emitWindow merges the groups of the slices of the window at start and
// emits them in key order.
func (w *timeWindows) emitWindow(p *Plan, start int64, out []Output) []Output {
	end := start + w.size
	for _, pn := range w.panes {
		if pn.start >= end {
			break
		}
		for _, g := range pn.groups {
			m := w.merged[g.key]
			if m == nil {
				if n := len(w.mpool); n > 0 {
					m, w.mpool = w.mpool[n-1], w.mpool[:n-1]
				} else {
					m = &group{}
					m.accs = make([]acc, len(p.aggs))
				}
				m.key, m.keys = g.key, g.keys
				w.merged[g.key] = m
			}
			for k := range p.aggs {
				p.aggs[k].merge(&m.accs[k], &g.accs[k])
			}
		}
	}
	w.sorted = sortedGroups(w.merged, w.sorted)
	for _, m := range w.sorted {
		out = p.emitGroup(m, m.accs, start, end, out)
		resetAccs(m.accs)
		m.key, m.keys = "", nil
		w.mpool = append(w.mpool, m)
	}
	clear(w.sorted)
	clear(w.merged)
	return out
}

// dropSlice forgets the first slice, which no open window holds any more.
func (w *timeWindows) dropSlice(p *Plan) {
	pn := w.panes[0]
	w.panes = w.panes[1:]
	if w.last == pn {
		w.last = nil
	}
	for _, g := range pn.groups {
		p.ended(g)
		w.pool.put(g)
	}
	w.recycle(pn)
}
