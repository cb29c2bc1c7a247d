package rules

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
)

// sketch is a mergeable quantile sketch with relative error sketchAlpha
// (DDSketch's log-spaced buckets): a value x > 0 is counted in bucket
// ceil(log_γ x) with γ = (1+α)/(1-α), and a bucket reads back as the value
// 2γ^i/(γ+1), within α of everything counted in it. Negative values have
// their own buckets; values closer to zero than sketchMinValue count as zero.
// Two sketches merge exactly (bucket counts add), so a merged sketch answers
// as if it had seen both inputs.
//
// Values are first noted as bucket codes in few, and counted into the
// buckets when few is full or the sketch is read: a window's sketches are
// many (one per group, and per slice of a hopping window), most see few
// values, and appending a code touches one cache line where a bucket of a
// wide range is a miss of its own; merging sketches that saw few values is
// then appending their codes. Bucket counts are integers, so the order in
// which codes are counted changes nothing.
type sketch struct {
	pos, neg bucketStore
	zero     uint64
	n        uint64
	counted  uint64           // values in the buckets
	nfew     int32            // codes in few
	few      [sketchFew]int32 // codes not yet counted: bucket<<1, | 1 for a negative value; in the sketch, one miss less
}

// sketchFew is how many codes a sketch notes before counting them.
const sketchFew = 64

const (
	sketchAlpha    = 0.01
	sketchMinValue = 1e-9
)

var (
	sketchGamma    = (1 + sketchAlpha) / (1 - sketchAlpha)
	sketchLogGamma = math.Log(sketchGamma)
)

// bucketStore is a dense run of bucket counts starting at index off.
type bucketStore struct {
	off    int32
	counts []uint32 // 4 bytes: a window's sketches are many (one per group), cache misses cost
}

func (s *bucketStore) add(i int32, c uint32) {
	switch {
	case len(s.counts) == 0:
		s.off = i
		s.counts = append(s.counts[:0], c)
		return
	case i < s.off:
		// Grow downwards with headroom (as append does upwards), so a run
		// of ever smaller values does not copy the store each time.
		grow := int(s.off-i) + len(s.counts)
		n := make([]uint32, grow+len(s.counts))
		copy(n[grow:], s.counts)
		s.counts, s.off = n, s.off-int32(grow)
	case int(i-s.off) >= len(s.counts):
		for int(i-s.off) >= len(s.counts) {
			s.counts = append(s.counts, 0)
		}
	}
	s.counts[i-s.off] += c
}

func (s *bucketStore) merge(o *bucketStore) {
	lo, hi := 0, len(o.counts) // o's non-empty run
	for lo < hi && o.counts[lo] == 0 {
		lo++
	}
	for hi > lo && o.counts[hi-1] == 0 {
		hi--
	}
	if lo == hi {
		return
	}
	// Make room for the whole run once (add grows s at either end), then
	// add the counts in one pass: windows merged from slices do this for
	// every group of every slice.
	s.add(o.off+int32(lo), 0)
	s.add(o.off+int32(hi-1), 0)
	dst := s.counts[o.off+int32(lo)-s.off:]
	for j, c := range o.counts[lo:hi] {
		dst[j] += c
	}
}

func sketchIndex(x float64) int32 { return int32(math.Ceil(math.Log(x) / sketchLogGamma)) }
func sketchValue(i int32) float64 {
	return 2 * math.Pow(sketchGamma, float64(i)) / (sketchGamma + 1)
}

func (s *sketch) add(x float64) {
	s.n++
	switch {
	case x > sketchMinValue: // an infinity counts as the largest number
		s.note(sketchIndex(min(x, math.MaxFloat64)) << 1)
	case x < -sketchMinValue:
		s.note(sketchIndex(min(-x, math.MaxFloat64))<<1 | 1)
	default:
		s.zero++
	}
}

// note adds a code to few, counting few when it is full.
func (s *sketch) note(code int32) {
	s.few[s.nfew] = code
	if s.nfew++; s.nfew == sketchFew {
		s.count()
	}
}

// count moves the codes of few into the buckets.
func (s *sketch) count() {
	s.counted += uint64(s.nfew)
	for _, c := range s.few[:s.nfew] {
		if c&1 == 0 {
			s.pos.add(c>>1, 1)
		} else {
			s.neg.add(c>>1, 1)
		}
	}
	s.nfew = 0
}

// quantile returns the value at rank q·(n-1) of what was added, within the
// relative error; NaN when the sketch is empty.
func (s *sketch) quantile(q float64) float64 {
	if s.n == 0 {
		return math.NaN()
	}
	if s.counted == 0 {
		return s.fewQuantile(q)
	}
	s.count()
	rank := q * float64(s.n-1)
	var cum float64
	for j := len(s.neg.counts) - 1; j >= 0; j-- {
		cum += float64(s.neg.counts[j])
		if cum > rank {
			return -sketchValue(s.neg.off + int32(j))
		}
	}
	cum += float64(s.zero)
	if cum > rank {
		return 0
	}
	for j, c := range s.pos.counts {
		cum += float64(c)
		if cum > rank {
			return sketchValue(s.pos.off + int32(j))
		}
	}
	return sketchValue(s.pos.off + int32(len(s.pos.counts)-1))
}

// fewQuantile is quantile for a sketch whose values are all in few (or
// zero): the codes sorted by value are the buckets, one value each, read in
// the same order. Most sketches of a window are such, and sorting a few
// codes costs less than filling and reading a bucket run.
func (s *sketch) fewQuantile(q float64) float64 {
	few := s.few[:s.nfew]
	for i, c := range few {
		few[i] = codeOrder(c)
	}
	slices.Sort(few)
	rank := q * float64(s.n-1)
	var cum float64
	zeros := false
	v := 0.0 // the rank falls in the zeros after the negative values
	for _, k := range few {
		if k > 0 && !zeros { // the zeros come between negative and positive values
			zeros = true
			if cum += float64(s.zero); cum > rank {
				break
			}
		}
		if cum++; cum > rank {
			if c := orderCode(k); c&1 != 0 {
				v = -sketchValue(c >> 1)
			} else {
				v = sketchValue(c >> 1)
			}
			break
		}
	}
	for i, k := range few {
		few[i] = orderCode(k)
	}
	return v
}

// codeOrder maps a code to a number that sorts as the value of its bucket:
// negative values (larger bucket, more negative) below zero, positive ones
// above; orderCode maps it back. Buckets are within ±2^16 (sketchIndex of
// a float64 above sketchMinValue).
func codeOrder(c int32) int32 {
	if c&1 != 0 {
		return -(1 << 24) - c>>1
	}
	return 1<<24 + c>>1
}

func orderCode(k int32) int32 {
	if k < 0 {
		return (-(1<<24)-k)<<1 | 1
	}
	return (k - 1<<24) << 1
}

// reset empties the sketch but keeps its buckets' range and memory: the
// next window of a group usually sees values of the same range.
func (s *sketch) reset() {
	clear(s.pos.counts)
	clear(s.neg.counts)
	s.zero, s.n, s.counted = 0, 0, 0
	s.nfew = 0
}

func (s *sketch) merge(o accExt) {
	src := o.(*sketch)
	for _, c := range src.few[:src.nfew] {
		s.note(c)
	}
	s.counted += src.counted
	s.pos.merge(&src.pos)
	s.neg.merge(&src.neg)
	s.zero += src.zero
	s.n += src.n
}

func (s *sketch) appendBinary(b []byte) []byte {
	s.count() // the saved form has buckets only
	b = binary.AppendUvarint(b, s.zero)
	for _, st := range []*bucketStore{&s.pos, &s.neg} {
		lo, hi := 0, len(st.counts) // trim empty buckets at both ends
		for lo < hi && st.counts[lo] == 0 {
			lo++
		}
		for hi > lo && st.counts[hi-1] == 0 {
			hi--
		}
		b = binary.AppendVarint(b, int64(st.off)+int64(lo))
		b = binary.AppendUvarint(b, uint64(hi-lo))
		for _, c := range st.counts[lo:hi] {
			b = binary.AppendUvarint(b, uint64(c))
		}
	}
	return b
}

var errBadSketch = errors.New("bad sketch")

func (s *sketch) decode(b []byte) error {
	*s = sketch{}
	z, k := binary.Uvarint(b)
	if k <= 0 {
		return errBadSketch
	}
	b = b[k:]
	s.zero, s.n = z, z
	for _, st := range []*bucketStore{&s.pos, &s.neg} {
		off, k := binary.Varint(b)
		if k <= 0 {
			return errBadSketch
		}
		b = b[k:]
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)) {
			return errBadSketch
		}
		b = b[k:]
		st.off = int32(off)
		st.counts = make([]uint32, l)
		for j := range st.counts {
			c, k := binary.Uvarint(b)
			if k <= 0 || c > math.MaxUint32 {
				return errBadSketch
			}
			b = b[k:]
			st.counts[j] = uint32(c)
			s.n += c
		}
	}
	if len(b) != 0 {
		return errBadSketch
	}
	s.counted = s.n - s.zero
	return nil
}

// quantile(x, q) and median(x): q is a constant in [0, 1].

func sketchOf(a *acc) *sketch { return a.ext.(*sketch) }

func sketchResult(a *acc, q float64) Value {
	if a.n == 0 || a.ext == nil {
		return Null
	}
	return Number(sketchOf(a).quantile(q))
}

var aggQuantile = &aggFunc{name: "quantile", state: "sketch", consts: 1, numeric: true,
	add: func(a *acc, v Value, _ int64) {
		a.n++
		sketchOf(a).add(v.Num)
	},
	merge: func(d, s *acc) {
		d.n += s.n
		d.ext.merge(s.ext)
	},
	result: func(a *acc, k []float64) Value { return sketchResult(a, k[0]) },
	newExt: func() accExt { return &sketch{} },
	check: func(k []float64) string {
		if !(k[0] >= 0 && k[0] <= 1) {
			return "q must be between 0 and 1"
		}
		return ""
	},
}

var aggMedian = &aggFunc{name: "median", state: "sketch", numeric: true,
	add: aggQuantile.add, merge: aggQuantile.merge, newExt: aggQuantile.newExt,
	result: func(a *acc, _ []float64) Value { return sketchResult(a, 0.5) },
}
