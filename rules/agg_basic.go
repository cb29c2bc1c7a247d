package rules

// count, sum, avg, min and max: a holds the sum, b the min, c the max.

func addNumber(a *acc, v Value, _ int64) {
	x := v.Num
	if a.n == 0 || x < a.b {
		a.b = x
	}
	if a.n == 0 || x > a.c {
		a.c = x
	}
	a.n++
	a.a += x
}

func mergeNumber(d, s *acc) {
	if s.n == 0 {
		return
	}
	if d.n == 0 || s.b < d.b {
		d.b = s.b
	}
	if d.n == 0 || s.c > d.c {
		d.c = s.c
	}
	d.n += s.n
	d.a += s.a
}

var aggCount = &aggFunc{name: "count",
	add:    func(a *acc, _ Value, _ int64) { a.n++ },
	merge:  func(d, s *acc) { d.n += s.n },
	result: func(a *acc, _ []float64) Value { return Number(a.n) },
}

var aggSum = &aggFunc{name: "sum", state: "number", numeric: true, add: addNumber, merge: mergeNumber,
	result: func(a *acc, _ []float64) Value { return numberOrNull(a, a.a) }}

var aggAvg = &aggFunc{name: "avg", state: "number", numeric: true, add: addNumber, merge: mergeNumber,
	result: func(a *acc, _ []float64) Value { return numberOrNull(a, a.a/a.n) }}

var aggMin = &aggFunc{name: "min", state: "number", numeric: true, add: addNumber, merge: mergeNumber,
	result: func(a *acc, _ []float64) Value { return numberOrNull(a, a.b) }}

var aggMax = &aggFunc{name: "max", state: "number", numeric: true, add: addNumber, merge: mergeNumber,
	result: func(a *acc, _ []float64) Value { return numberOrNull(a, a.c) }}
