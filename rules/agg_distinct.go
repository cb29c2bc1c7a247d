package rules

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
)

// count_distinct(x): the number of distinct non-null values, exact up to
// collisions of a 64-bit hash (FNV-1a of the kind and the value, stable across
// restarts because it is saved).
type distinctSet map[uint64]struct{}

func hashValue(v Value) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	h = (h ^ uint64(v.Kind)) * prime
	if v.Kind == KindString {
		for i := 0; i < len(v.Str); i++ {
			h = (h ^ uint64(v.Str[i])) * prime
		}
		return h
	}
	bits := math.Float64bits(v.Num)
	if v.Num == 0 {
		bits = 0 // -0 and 0 are one value
	}
	for i := 0; i < 8; i++ {
		h = (h ^ (bits & 0xff)) * prime
		bits >>= 8
	}
	return h
}

func (s distinctSet) reset() { clear(s) }
func (s distinctSet) merge(o accExt) {
	for h := range o.(distinctSet) {
		s[h] = struct{}{}
	}
}

func (s distinctSet) appendBinary(b []byte) []byte {
	hs := make([]uint64, 0, len(s))
	for h := range s {
		hs = append(hs, h)
	}
	slices.Sort(hs) // stable bytes for the same set
	for _, h := range hs {
		b = binary.LittleEndian.AppendUint64(b, h)
	}
	return b
}

func (s distinctSet) decode(b []byte) error {
	if len(b)%8 != 0 {
		return errors.New("bad distinct set")
	}
	clear(s)
	for ; len(b) > 0; b = b[8:] {
		s[binary.LittleEndian.Uint64(b)] = struct{}{}
	}
	return nil
}

var aggCountDistinct = &aggFunc{name: "count_distinct",
	add: func(a *acc, v Value, _ int64) {
		a.n++
		a.ext.(distinctSet)[hashValue(v)] = struct{}{}
	},
	merge: func(d, s *acc) {
		d.n += s.n
		d.ext.merge(s.ext)
	},
	result: func(a *acc, _ []float64) Value {
		if a.ext == nil {
			return Number(0)
		}
		return Number(float64(len(a.ext.(distinctSet))))
	},
	newExt: func() accExt { return distinctSet{} },
}
