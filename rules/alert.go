package rules

import "encoding/binary"

// alertOp raises and clears an alert per group key. A key's alert is raised
// when When has held on every row for at least For (measured in event time
// from the first row where it held), and cleared when ClearWhen holds (or,
// without ClearWhen, when When no longer does). Each transition is one output
// ("raised" or "cleared") with the values of the row that caused it. Keys
// that are neither raised nor pending keep no state.
type alertOp struct {
	when, clear evalFn
	forNs       int64
	states      map[string]*alertState
	ids         idCache[alertState]
	pool        []*alertState // states of alerts that ended, for reuse: keys come and go on every row
}

type alertState struct {
	tracked
	firing, pending bool
	since           int64 // when When started to hold (pending)
}

func (s *alertState) appendState(_ *Plan, b []byte) []byte {
	var flags byte
	if s.firing {
		flags |= 1
	}
	if s.pending {
		flags |= 2
	}
	b = append(b, flags)
	return binary.LittleEndian.AppendUint64(b, uint64(s.since))
}

func (a *alertOp) decode(_ *Plan, key string, d *decoder) (stateItem, error) {
	flags := d.byte()
	s := &alertState{firing: flags&1 != 0, pending: flags&2 != 0, since: d.int64()}
	if d.err != nil || flags > 3 {
		return nil, ErrBadState
	}
	a.states[key[1:]] = s
	return s, nil
}

// row updates the alert of rw's key and reports whether rw is a transition,
// setting its event.
func (a *alertOp) row(p *Plan, rw *row) bool {
	s := a.ids.get(rw.kid)
	if s == nil {
		if s = a.states[rw.key]; s != nil {
			a.ids.set(rw.kid, s, &s.tracked)
		}
	}
	if s == nil || !s.firing {
		if !a.when(rw.cond, nil).Truthy() {
			if s != nil {
				a.forget(p, rw.key, s)
			}
			return false
		}
		if s == nil {
			if len(a.states) >= p.maxGroups {
				p.Stats.GroupsDropped++
				return false
			}
			s = a.newState()
			s.skey = prefixAlert + rw.key
			a.states[s.skey[1:]] = s
			a.ids.set(rw.kid, s, &s.tracked)
			p.created(s)
		}
		if !s.pending {
			s.pending, s.since = true, rw.t
			p.touch(s)
		}
		if rw.t-s.since < a.forNs {
			return false
		}
		s.firing, s.pending = true, false
		p.touch(s)
		rw.event = "raised"
		return true
	}
	var clear bool
	if a.clear != nil {
		clear = a.clear(rw.cond, nil).Truthy()
	} else {
		clear = !a.when(rw.cond, nil).Truthy()
	}
	if !clear {
		return false
	}
	a.forget(p, rw.key, s)
	rw.event = "cleared"
	return true
}

func (a *alertOp) forget(p *Plan, key string, s *alertState) {
	delete(a.states, key)
	a.ids.del(s, &s.tracked)
	p.ended(s)
	a.pool = append(a.pool, s)
}

// newState returns an empty state, reusing one that ended. One still in the
// plan's dirty list stays there once, as a reused group does (see
// groupPool.get): the checkpoint writes it under its new key.
func (a *alertOp) newState() *alertState {
	n := len(a.pool)
	if n == 0 {
		return &alertState{}
	}
	s := a.pool[n-1]
	a.pool = a.pool[:n-1]
	s.firing, s.pending, s.since = false, false, 0
	s.dead, s.kid = false, 0
	return s
}
