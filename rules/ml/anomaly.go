package ml

import "math"

// Anomaly is an unsupervised streaming anomaly detector with a score in
// [0, 1], chosen on the Numenta Anomaly Benchmark (see rules/ml/nab and
// `sluice nab`). It combines two signals:
//
//   - Spatial novelty: a value more than 5% of the range seen so far
//     beyond that range scores 1.
//   - Pattern novelty: each value is quantised into levels of the range
//     seen so far, and the last k levels form a word. Three views of the
//     stream (5 levels × 3 values, 8 × 5 and 5 × 7) each keep a Bloom filter
//     of the words they have seen. A view scores an unseen word by how rare
//     unseen words have been lately (1 minus its recent novelty rate, halved
//     when another novelty came within 10 points), so a stream that keeps
//     changing does not keep alarming; the score is the views' mean.
//
// Measured on the 41-file NAB subset in testdata/nab (standard profile):
// NAB's windowed Gaussian 39.1, spatial novelty alone 57, spatial novelty
// with a Numenta-style likelihood of forecast errors 58, one view 57 to 68.6
// depending on levels and k, the mean of these three views 69.2. The first
// values (warmUp) score 0 while the range forms. Memory is fixed: Size bytes
// per detector whatever the stream's length. The range only widens, so one
// wild value coarsens the levels for good.
type Anomaly struct {
	n        uint64
	min, max float64
	views    [3]view
}

// view is one quantisation of the stream: its levels, word length, last
// levels, the words it has seen and how often it met new ones.
type view struct {
	levels, k int
	hist      [8]uint8
	rate      float64 // EWMA of novelty (0 or 1)
	last      uint64  // point of the last novelty
	bloom     [bloomWords]uint64
}

const (
	bloomWords = 32 // 2048 bits per view: 4096 scored the same on NAB, 1024 lost 0.8
	spatialTol = 0.05
	rateAlpha  = 0.01
	warmUp     = 16
)

// NewAnomaly returns a detector with the defaults measured on NAB.
func NewAnomaly() *Anomaly {
	return &Anomaly{views: [3]view{{levels: 5, k: 3}, {levels: 8, k: 5}, {levels: 5, k: 7}}}
}

// Update learns x and returns its anomaly score in [0, 1]. NaN and
// infinities are not learned and score NaN.
func (a *Anomaly) Update(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return math.NaN()
	}
	a.n++
	if a.n == 1 {
		a.min, a.max = x, x
	}
	r := a.max - a.min
	spatial := x > a.max+spatialTol*r || x < a.min-spatialTol*r
	a.min, a.max = math.Min(a.min, x), math.Max(a.max, x)
	r = a.max - a.min
	var sum float64
	for i := range a.views {
		sum += a.views[i].update(a.n, x, a.min, r)
	}
	switch {
	case a.n <= warmUp:
		return 0
	case spatial:
		return 1
	}
	return sum / float64(len(a.views))
}

func (v *view) update(n uint64, x, lo, r float64) float64 {
	q := 0
	if r > 0 {
		q = min(int(float64(v.levels)*(x-lo)/r), v.levels-1)
	}
	copy(v.hist[1:v.k], v.hist[:v.k-1])
	v.hist[0] = uint8(q)
	if n < uint64(v.k) {
		return 0
	}
	h := uint64(14695981039346656037) // FNV-1a over the word
	for _, c := range v.hist[:v.k] {
		h ^= uint64(c) + 1
		h *= 1099511628211
	}
	b1, b2 := h%(64*bloomWords), (h>>20)%(64*bloomWords)
	m1, m2 := uint64(1)<<(b1%64), uint64(1)<<(b2%64)
	novel := v.bloom[b1/64]&m1 == 0 || v.bloom[b2/64]&m2 == 0
	v.bloom[b1/64] |= m1
	v.bloom[b2/64] |= m2
	var s, hit float64
	if novel {
		hit = 1
		s = 1 - v.rate
		if n-v.last < 10 {
			s /= 2
		}
		v.last = n
	}
	v.rate += rateAlpha * (hit - v.rate)
	return s
}

// AppendState implements Online.
func (a *Anomaly) AppendState(b []byte) []byte {
	e := enc(b).u(a.n).f(a.min, a.max)
	for i := range a.views {
		v := &a.views[i]
		e = append(e, v.hist[:]...)
		e = e.f(v.rate).u(v.last).u(v.bloom[:]...)
	}
	return e
}

// DecodeState implements Online.
func (a *Anomaly) DecodeState(b []byte) ([]byte, error) {
	d := dec{b: b}
	a.n, a.min, a.max = d.u(), d.f(), d.f()
	for i := range a.views {
		v := &a.views[i]
		copy(v.hist[:], d.raw(len(v.hist)))
		v.rate, v.last = d.f(), d.u()
		for j := range v.bloom {
			v.bloom[j] = d.u()
		}
	}
	return d.done()
}

// Size implements Online.
func (a *Anomaly) Size() int { return int(sizeofAnomaly) }
