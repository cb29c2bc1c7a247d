package rules

// delta (alias increase) and rate over a counter: a is the increase, b and c
// the first and last values, t0 and t1 their times. A value below the one
// before is a counter reset: the counter restarted from zero, so the increase
// across it is the new value. Values are expected in time order per group; one
// older than the first of the window extends it backwards, one between the
// first and the last is counted but adds nothing (its order is unknown).

// counterStep is the increase from prev to next across a possible reset.
func counterStep(prev, next float64) float64 {
	if next < prev {
		return next
	}
	return next - prev
}

func addCounter(a *acc, v Value, t int64) {
	x := v.Num
	switch {
	case a.n == 0:
		a.b, a.c, a.t0, a.t1 = x, x, t, t
	case t >= a.t1:
		a.a += counterStep(a.c, x)
		a.c, a.t1 = x, t
	case t < a.t0:
		a.a += counterStep(x, a.b)
		a.b, a.t0 = x, t
	}
	a.n++
}

func mergeCounter(d, s *acc) {
	switch {
	case s.n == 0:
		return
	case d.n == 0:
		*d = *s
		return
	case s.t0 >= d.t1:
		d.a += s.a + counterStep(d.c, s.b)
		d.c, d.t1 = s.c, s.t1
	case s.t1 <= d.t0:
		d.a += s.a + counterStep(s.c, d.b)
		d.b, d.t0 = s.b, s.t0
	default:
		d.a += s.a
	}
	d.n += s.n
}

var aggDelta = &aggFunc{name: "delta", state: "counter", numeric: true, add: addCounter, merge: mergeCounter,
	result: func(a *acc, _ []float64) Value { return numberOrNull(a, a.a) }}

var aggRate = &aggFunc{name: "rate", state: "counter", numeric: true, add: addCounter, merge: mergeCounter,
	result: func(a *acc, _ []float64) Value {
		if a.n < 2 || a.t1 <= a.t0 {
			return Null
		}
		return Number(a.a / (float64(a.t1-a.t0) / 1e9))
	}}
