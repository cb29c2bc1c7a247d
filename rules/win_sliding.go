package rules

import (
	"errors"
	"math"
	"slices"
	"strings"
)

// slidingWindows emit, for each record, its group's aggregates over the
// window (t-size, t] that ends at the record. Each group keeps the aggregate
// arguments of its records still inside some future window (those newer than
// watermark - size), in time order, and folds them again per record.
type slidingWindows struct {
	size    int64
	groups  map[string]*group
	ids     idCache[group]
	scratch []acc
	next    int64 // no group empties before this watermark
}

func (w *slidingWindows) add(p *Plan, r *Record, t int64, out []Output) []Output {
	g := p.groupFor(w.groups, &w.ids, r)
	if g == nil {
		return out
	}
	na := len(p.aggs)
	// Insert the record's arguments in time order (usually at the end).
	i := len(g.times)
	for i > 0 && g.times[i-1] > t {
		i--
	}
	g.times = slices.Insert(g.times, i, t)
	g.args = slices.Insert(g.args, i*na, make([]Value, na)...)
	for k := range p.aggs {
		v := p.aggs[k].value(r)
		if v.Kind == KindString {
			v.Str = strings.Clone(v.Str)
		}
		g.args[i*na+k] = v
	}
	w.evict(g, p.wm-w.size, na)
	if len(w.scratch) != na {
		w.scratch = make([]acc, na)
	}
	resetAccs(w.scratch)
	for j, et := range g.times {
		if et <= t-w.size || et > t {
			continue
		}
		for k := range p.aggs {
			p.aggs[k].addValue(&w.scratch[k], g.args[j*na+k], et)
		}
	}
	w.next = min(w.next, g.times[len(g.times)-1]+w.size)
	p.touch(g)
	return p.emitGroup(g, w.scratch, t-w.size, t, out)
}

// evict drops the events at or before limit: no later window holds them.
func (w *slidingWindows) evict(g *group, limit int64, na int) {
	j := 0
	for j < len(g.times) && g.times[j] <= limit {
		j++
	}
	if j > 0 {
		g.times = slices.Delete(g.times, 0, j)
		g.args = slices.Delete(g.args, 0, j*na)
	}
}

func (w *slidingWindows) advance(p *Plan, wm int64, out []Output) []Output {
	if wm < w.next {
		return out
	}
	w.next = math.MaxInt64
	na := len(p.aggs)
	for k, g := range w.groups {
		before := len(g.times)
		w.evict(g, wm-w.size, na)
		switch {
		case len(g.times) == 0:
			delete(w.groups, k)
			w.ids.del(g, &g.tracked)
			p.ended(g)
		case len(g.times) != before:
			p.touch(g)
			fallthrough
		default:
			w.next = min(w.next, g.times[len(g.times)-1]+w.size)
		}
	}
	return out
}

func (w *slidingWindows) flush(_ *Plan, out []Output) []Output { return out }

func (w *slidingWindows) each(fn func(stateItem)) {
	for _, g := range w.groups {
		fn(g)
	}
}

func (w *slidingWindows) restore(p *Plan, g *group) error {
	if len(g.times) == 0 || len(g.sessions) > 0 {
		return errors.New("not a sliding group")
	}
	w.groups[g.key] = g
	w.next = min(w.next, g.times[len(g.times)-1]+w.size)
	return nil
}

func (w *slidingWindows) forgetIDs() { clear(w.ids) }

func (w *slidingWindows) clear() {
	clear(w.groups)
	clear(w.ids)
	w.next = math.MaxInt64
}
