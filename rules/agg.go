package rules

import "math"

// acc is the running state of one aggregate in one group. One flat struct
// serves count, sum, avg, min and max, so a group's state is a slice of
// fixed-size values: no per-record allocation, and a fixed-size snapshot.
type acc struct {
	n, sum, min, max float64
}

const accSize = 4 * 8 // bytes of an encoded acc

func (a *acc) addNumber(x float64) {
	if a.n == 0 || x < a.min {
		a.min = x
	}
	if a.n == 0 || x > a.max {
		a.max = x
	}
	a.n++
	a.sum += x
}

// aggFunc is an aggregate function: add folds a value into the accumulator,
// result reads it out when the window closes.
type aggFunc struct {
	name   string
	add    func(a *acc, v Value)
	result func(a *acc) Value
}

func addNumeric(a *acc, v Value) {
	if v.Kind == KindNumber && !math.IsNaN(v.Num) {
		a.addNumber(v.Num)
	}
}

// aggregates is the registry of aggregate functions.
var aggregates = map[string]*aggFunc{
	"count": {"count",
		func(a *acc, v Value) {
			if v.Kind != KindNull {
				a.n++
			}
		},
		func(a *acc) Value { return Number(a.n) }},
	"sum": {"sum", addNumeric, func(a *acc) Value {
		if a.n == 0 {
			return Null
		}
		return Number(a.sum)
	}},
	"avg": {"avg", addNumeric, func(a *acc) Value {
		if a.n == 0 {
			return Null
		}
		return Number(a.sum / a.n)
	}},
	"min": {"min", addNumeric, func(a *acc) Value {
		if a.n == 0 {
			return Null
		}
		return Number(a.min)
	}},
	"max": {"max", addNumeric, func(a *acc) Value {
		if a.n == 0 {
			return Null
		}
		return Number(a.max)
	}},
}
