package rules

import (
	"errors"
	"math"
	"slices"
	"strings"
)

// sessionWindows keep, per group, the sessions still open: runs of records
// with less than gap between neighbours. A session [first, last+gap) closes
// when the watermark reaches last+gap. A record that falls between two
// sessions of its group (out of order, within the lateness) joins them.
type sessionWindows struct {
	gap     int64
	groups  map[string]*group
	ids     idCache[group]
	next    int64 // no session closes before this watermark
	closing []closingSession
}

type closingSession struct {
	g *group
	s session
}

func (w *sessionWindows) add(p *Plan, r *Record, t int64, out []Output) []Output {
	g := p.groupFor(w.groups, &w.ids, r)
	if g == nil {
		return out
	}
	i := 0
	for ; i < len(g.sessions); i++ {
		s := &g.sessions[i]
		if t > s.start-w.gap && t < s.last+w.gap {
			break
		}
		if s.start > t {
			g.sessions = slices.Insert(g.sessions, i, session{start: t, last: t, accs: make([]acc, len(p.aggs))})
			break
		}
	}
	if i == len(g.sessions) {
		g.sessions = append(g.sessions, session{start: t, last: t, accs: make([]acc, len(p.aggs))})
	}
	s := &g.sessions[i]
	s.start, s.last = min(s.start, t), max(s.last, t)
	p.addAll(s.accs, r, t)
	// Join neighbours the record bridged.
	for i+1 < len(g.sessions) && s.last+w.gap > g.sessions[i+1].start {
		w.join(p, s, &g.sessions[i+1])
		g.sessions = slices.Delete(g.sessions, i+1, i+2)
	}
	if i > 0 && g.sessions[i-1].last+w.gap > s.start {
		w.join(p, &g.sessions[i-1], s)
		g.sessions = slices.Delete(g.sessions, i, i+1)
		i--
	}
	w.next = min(w.next, g.sessions[i].last+w.gap)
	p.touch(g)
	return out
}

// join folds session src into dst.
func (w *sessionWindows) join(p *Plan, dst, src *session) {
	for k := range p.aggs {
		p.aggs[k].merge(&dst.accs[k], &src.accs[k])
	}
	dst.start, dst.last = min(dst.start, src.start), max(dst.last, src.last)
}

func (w *sessionWindows) advance(p *Plan, wm int64, out []Output) []Output {
	if wm < w.next {
		return out
	}
	return w.closeUpTo(p, wm, out)
}

func (w *sessionWindows) flush(p *Plan, out []Output) []Output {
	return w.closeUpTo(p, math.MaxInt64, out)
}

// closeUpTo emits the sessions that end at or before wm, in order of end and
// then key.
func (w *sessionWindows) closeUpTo(p *Plan, wm int64, out []Output) []Output {
	w.next = math.MaxInt64
	for _, g := range w.groups {
		kept := g.sessions[:0]
		for _, s := range g.sessions {
			if end := s.last + w.gap; end <= wm || wm == math.MaxInt64 {
				w.closing = append(w.closing, closingSession{g, s})
			} else {
				kept = append(kept, s)
				w.next = min(w.next, end)
			}
		}
		if len(kept) != len(g.sessions) {
			g.sessions = kept
			p.touch(g)
		}
	}
	slices.SortFunc(w.closing, func(a, b closingSession) int {
		if a.s.last != b.s.last {
			return cmpInt(a.s.last, b.s.last)
		}
		return strings.Compare(a.g.key, b.g.key)
	})
	for _, c := range w.closing {
		out = p.emitGroup(c.g, c.s.accs, c.s.start, c.s.last+w.gap, out)
		if len(c.g.sessions) == 0 && !c.g.dead {
			delete(w.groups, c.g.key)
			w.ids.del(c.g, &c.g.tracked)
			p.ended(c.g)
		}
	}
	clear(w.closing)
	w.closing = w.closing[:0]
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (w *sessionWindows) each(fn func(stateItem)) {
	for _, g := range w.groups {
		fn(g)
	}
}

func (w *sessionWindows) restore(p *Plan, g *group) error {
	if len(g.sessions) == 0 || len(g.times) > 0 {
		return errors.New("not a session group")
	}
	w.groups[g.key] = g
	for _, s := range g.sessions {
		w.next = min(w.next, s.last+w.gap)
	}
	return nil
}

func (w *sessionWindows) forgetIDs() { clear(w.ids) }

func (w *sessionWindows) clear() {
	clear(w.groups)
	clear(w.ids)
	w.next = math.MaxInt64
}
