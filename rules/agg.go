package rules

import (
	"encoding/binary"
	"math"
)

// acc is the running state of one aggregate in one group and window. One flat
// struct serves every aggregate, so a group's state is a slice of fixed-size
// values that is updated without allocating; the few aggregates that need
// more (quantile, count_distinct) keep it in ext.
//
// The fields every update reads (ext, to know whether one is needed, and
// n) come first, in the acc's first cache line: a window's accumulators are
// many and cold, and an update that touches two lines per aggregate costs
// twice the misses.
type acc struct {
	ext     accExt  // sketch or set; nil until needed
	n       float64 // values folded in
	a, b, c float64 // per aggregate (sum; mean and M2; increase, first and last value)
	t0, t1  int64   // unix ns of the first and last value (first, last, rate)
	v0, v1  Value   // first and last value (first, last)
}

// accExt is the part of an accumulator that does not fit in acc's fields.
type accExt interface {
	reset()
	merge(src accExt)
	appendBinary(b []byte) []byte
	decode(b []byte) error
}

// aggFunc is an aggregate function. The plan calls add for each value of a
// group in a window (v is never null: nulls are skipped before, except for
// count(*) which gets Bool(true)), merge to combine two accumulators of
// neighbouring data (session windows that join), and result when the window
// closes. consts are the constant arguments after the first (quantile's q).
//
// Adding an aggregate is one file with its aggFunc and one line in
// aggregates.
type aggFunc struct {
	name    string
	state   string // aggregates with the same state share it (see sharedState); "" is the name
	consts  int    // constant arguments after the value
	numeric bool
	add     func(a *acc, v Value, t int64)
	merge   func(dst, src *acc)
	result  func(a *acc, consts []float64) Value
	newExt  func() accExt // nil: no ext
	check   func(consts []float64) string
}

// aggregates is the registry of aggregate functions.
var aggregates = map[string]*aggFunc{
	"count":          aggCount,
	"sum":            aggSum,
	"avg":            aggAvg,
	"mean":           aggAvg,
	"min":            aggMin,
	"max":            aggMax,
	"first":          aggFirst,
	"last":           aggLast,
	"stddev":         aggStddev,
	"stddev_pop":     aggStddevPop,
	"variance":       aggVariance,
	"var_pop":        aggVarPop,
	"quantile":       aggQuantile,
	"median":         aggMedian,
	"count_distinct": aggCountDistinct,
	"delta":          aggDelta,
	"increase":       aggDelta,
	"rate":           aggRate,
}

// reset empties a for reuse, keeping its ext's memory.
func (a *acc) reset() {
	ext := a.ext
	*a = acc{}
	if ext != nil {
		ext.reset()
		a.ext = ext
	}
}

// appendBinary encodes a; decodeAcc reads it back.
func (a *acc) appendBinary(b []byte) []byte {
	for _, f := range [4]float64{a.n, a.a, a.b, a.c} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(a.t0))
	b = binary.LittleEndian.AppendUint64(b, uint64(a.t1))
	b = appendValue(b, a.v0)
	b = appendValue(b, a.v1)
	if a.ext == nil {
		return binary.AppendUvarint(b, 0)
	}
	ext := a.ext.appendBinary(nil)
	b = binary.AppendUvarint(b, uint64(len(ext)))
	return append(b, ext...)
}

func (a *acc) decode(d *decoder, fn *aggFunc) {
	a.n, a.a, a.b, a.c = d.float(), d.float(), d.float(), d.float()
	a.t0, a.t1 = d.int64(), d.int64()
	a.v0, a.v1 = d.value(), d.value()
	ext := d.bytes()
	if d.err != nil {
		return
	}
	if len(ext) == 0 {
		return
	}
	if fn.newExt == nil {
		d.err = ErrBadState
		return
	}
	a.ext = fn.newExt()
	if err := a.ext.decode(ext); err != nil {
		d.err = ErrBadState
	}
}

// numberOrNull returns Number(f), or Null when nothing was folded in.
func numberOrNull(a *acc, f float64) Value {
	if a.n == 0 {
		return Null
	}
	return Number(f)
}
