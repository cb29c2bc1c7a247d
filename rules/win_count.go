package rules

import "errors"

// countWindows close a group's window at its nth record; the window runs from
// the time of its first record to that of its last. Flush emits the windows
// not yet full.
type countWindows struct {
	n      int
	groups map[string]*group
	ids    idCache[group]
	pool   groupPool
	sorted []*group
}

func (w *countWindows) add(p *Plan, r *Record, t int64, out []Output) []Output {
	g := w.ids.get(p.kid)
	if g == nil {
		key := p.groupKey(r)
		g = w.groups[key]
		if g == nil {
			if len(w.groups) >= p.maxGroups {
				p.Stats.GroupsDropped++
				return out
			}
			g = w.pool.get(p, r, key, prefixGroup)
			g.start = t
			w.groups[g.key] = g
			p.created(g)
		}
		w.ids.set(p.kid, g, &g.tracked)
	}
	p.addAll(g.accs, r, t)
	g.start, g.end = min(g.start, t), max(g.end, t)
	g.n++
	p.touch(g)
	if g.n >= w.n {
		out = p.emitGroup(g, g.accs, g.start, g.end, out)
		delete(w.groups, g.key)
		w.ids.del(g, &g.tracked)
		p.ended(g)
		w.pool.put(g)
	}
	return out
}

func (w *countWindows) advance(_ *Plan, _ int64, out []Output) []Output { return out }

func (w *countWindows) flush(p *Plan, out []Output) []Output {
	w.sorted = sortedGroups(w.groups, w.sorted)
	for _, g := range w.sorted {
		out = p.emitGroup(g, g.accs, g.start, g.end, out)
		delete(w.groups, g.key)
		w.ids.del(g, &g.tracked)
		p.ended(g)
		w.pool.put(g)
	}
	clear(w.sorted)
	return out
}

func (w *countWindows) each(fn func(stateItem)) {
	for _, g := range w.groups {
		fn(g)
	}
}

func (w *countWindows) restore(_ *Plan, g *group) error {
	if g.n <= 0 || g.n >= w.n || len(g.times) > 0 || len(g.sessions) > 0 {
		return errors.New("not a count group")
	}
	w.groups[g.key] = g
	return nil
}

func (w *countWindows) forgetIDs() { clear(w.ids) }

func (w *countWindows) clear() {
	clear(w.groups)
	clear(w.ids)
}
