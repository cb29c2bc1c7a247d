package rules

import "math"

// stddev and variance: Welford's running mean (a) and sum of squared
// deviations (b); merged with Chan's formula.

func addWelford(a *acc, v Value, _ int64) {
	a.n++
	d := v.Num - a.a
	a.a += d / a.n
	a.b += d * (v.Num - a.a)
}

func mergeWelford(d, s *acc) {
	if s.n == 0 {
		return
	}
	if d.n == 0 {
		d.n, d.a, d.b = s.n, s.a, s.b
		return
	}
	n := d.n + s.n
	delta := s.a - d.a
	d.b += s.b + delta*delta*d.n*s.n/n
	d.a += delta * s.n / n
	d.n = n
}

func welford(sample, root bool) func(a *acc, _ []float64) Value {
	return func(a *acc, _ []float64) Value {
		div := a.n
		if sample {
			div--
		}
		if div <= 0 {
			return Null
		}
		v := a.b / div
		if root {
			v = math.Sqrt(v)
		}
		return Number(v)
	}
}

var aggStddev = &aggFunc{name: "stddev", state: "welford", numeric: true, add: addWelford, merge: mergeWelford, result: welford(true, true)}
var aggStddevPop = &aggFunc{name: "stddev_pop", state: "welford", numeric: true, add: addWelford, merge: mergeWelford, result: welford(false, true)}
var aggVariance = &aggFunc{name: "variance", state: "welford", numeric: true, add: addWelford, merge: mergeWelford, result: welford(true, false)}
var aggVarPop = &aggFunc{name: "var_pop", state: "welford", numeric: true, add: addWelford, merge: mergeWelford, result: welford(false, false)}
