package rules

import "strings"

// first and last: the value with the earliest (v0 at t0) and the latest (v1
// at t1) event time; on equal times the first and the last to arrive.

// keep stores v into dst, copying a string only when it changed, so a field
// whose value repeats costs no allocation.
func keep(dst *Value, v Value) {
	if v.Kind == KindString {
		if dst.Kind == KindString && dst.Str == v.Str {
			return
		}
		v.Str = strings.Clone(v.Str)
	}
	*dst = v
}

var aggFirst = &aggFunc{name: "first",
	add: func(a *acc, v Value, t int64) {
		if a.n == 0 || t < a.t0 {
			keep(&a.v0, v)
			a.t0 = t
		}
		a.n++
	},
	merge: func(d, s *acc) {
		if s.n > 0 && (d.n == 0 || s.t0 < d.t0) {
			d.v0, d.t0 = s.v0, s.t0
		}
		d.n += s.n
	},
	result: func(a *acc, _ []float64) Value { return a.v0 },
}

var aggLast = &aggFunc{name: "last",
	add: func(a *acc, v Value, t int64) {
		if a.n == 0 || t >= a.t1 {
			keep(&a.v1, v)
			a.t1 = t
		}
		a.n++
	},
	merge: func(d, s *acc) {
		if s.n > 0 && (d.n == 0 || s.t1 >= d.t1) {
			d.v1, d.t1 = s.v1, s.t1
		}
		d.n += s.n
	},
	result: func(a *acc, _ []float64) Value { return a.v1 },
}
