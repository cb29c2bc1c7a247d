package rules

import (
	"encoding/binary"
	"errors"
)

// timeWindows are tumbling (every == size) and hopping windows: fixed
// windows [start, start+size) with start a multiple of every since the Unix
// epoch. A record belongs to size/every windows; each window keeps its own
// groups, and closes, in order of start, when the watermark reaches its end.
type timeWindows struct {
	size, every int64
	panes       []*pane // open windows by start
	last        *pane   // the window of the last record
	pool        groupPool
	sorted      []*group
	maps        []map[string]*group
}

// pane is one open time window.
type pane struct {
	start, end int64
	groups     map[string]*group
}

func (w *timeWindows) add(p *Plan, r *Record, t int64, out []Output) []Output {
	if w.every == w.size {
		w.addTo(p, w.pane(floorTo(t, w.size)), r, t)
		return out
	}
	for s := floorTo(t, w.every); s > t-w.size; s -= w.every {
		w.addTo(p, w.pane(s), r, t)
	}
	return out
}

func (w *timeWindows) addTo(p *Plan, pn *pane, r *Record, t int64) {
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
	pn := &pane{start: start, end: start + w.size}
	if n := len(w.maps); n > 0 {
		pn.groups, w.maps = w.maps[n-1], w.maps[:n-1]
	} else {
		pn.groups = make(map[string]*group)
	}
	w.panes = append(w.panes, nil)
	copy(w.panes[i+1:], w.panes[i:])
	w.panes[i] = pn
	w.last = pn
	return pn
}

func (w *timeWindows) advance(p *Plan, wm int64, out []Output) []Output {
	for len(w.panes) > 0 && w.panes[0].end <= wm {
		out = w.close(p, out)
	}
	return out
}

func (w *timeWindows) flush(p *Plan, out []Output) []Output {
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
	clear(pn.groups)
	w.maps = append(w.maps, pn.groups)
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
	if g.start != floorTo(g.start, w.every) || g.end != g.start+w.size || len(g.times) > 0 || len(g.sessions) > 0 {
		return errors.New("not a group of this window")
	}
	pn := w.pane(g.start)
	pn.groups[g.key] = g
	return nil
}

func (w *timeWindows) clear() {
	w.panes, w.last = nil, nil
}
