package ml

import (
	"fmt"
	"math"
	"unsafe"
)

var sizeofAnomaly = unsafe.Sizeof(Anomaly{})

// ZScore is how many standard deviations x lies from the mean of the values
// before it, both exponentially weighted over about Window values (a value
// weighs 1/Window, once Window values have been seen; before that every value
// weighs the same). NaN until two values differ.
type ZScore struct {
	alpha    float64
	n        float64
	mean, vr float64
}

// NewZScore returns a z-score over about window values (window ≥ 2).
func NewZScore(window float64) (*ZScore, error) {
	if !(window >= 2) || math.IsInf(window, 0) {
		return nil, fmt.Errorf("window must be at least 2, got %v", window)
	}
	return &ZScore{alpha: 1 / window}, nil
}

// Update implements Online.
func (z *ZScore) Update(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return math.NaN()
	}
	out := math.NaN()
	if z.n > 0 && z.vr > 0 {
		out = (x - z.mean) / math.Sqrt(z.vr)
	}
	z.n++
	a := max(z.alpha, 1/z.n)
	d := x - z.mean
	z.mean += a * d
	z.vr = (1 - a) * (z.vr + a*d*d)
	return out
}

// AppendState implements Online.
func (z *ZScore) AppendState(b []byte) []byte { return enc(b).f(z.n, z.mean, z.vr) }

// DecodeState implements Online.
func (z *ZScore) DecodeState(b []byte) ([]byte, error) {
	d := dec{b: b}
	z.n, z.mean, z.vr = d.f(), d.f(), d.f()
	return d.done()
}

// Size implements Online.
func (z *ZScore) Size() int { return int(unsafe.Sizeof(*z)) }

// EWMA is the exponentially weighted moving average with smoothing factor
// alpha in (0, 1]: s = alpha·x + (1-alpha)·s, starting at the first value.
type EWMA struct {
	alpha float64
	s     float64
	seen  bool
}

// NewEWMA returns an EWMA with smoothing factor alpha.
func NewEWMA(alpha float64) (*EWMA, error) {
	if !(alpha > 0 && alpha <= 1) {
		return nil, fmt.Errorf("alpha must be in (0, 1], got %v", alpha)
	}
	return &EWMA{alpha: alpha}, nil
}

// Update implements Online.
func (e *EWMA) Update(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return math.NaN()
	}
	if !e.seen {
		e.s, e.seen = x, true
	} else {
		e.s += e.alpha * (x - e.s)
	}
	return e.s
}

// AppendState implements Online.
func (e *EWMA) AppendState(b []byte) []byte {
	var seen uint64
	if e.seen {
		seen = 1
	}
	return enc(b).f(e.s).u(seen)
}

// DecodeState implements Online.
func (e *EWMA) DecodeState(b []byte) ([]byte, error) {
	d := dec{b: b}
	e.s, e.seen = d.f(), d.u() == 1
	return d.done()
}

// Size implements Online.
func (e *EWMA) Size() int { return int(unsafe.Sizeof(*e)) }

// MaxSeason bounds Holt-Winters' season length (its memory).
const MaxSeason = 4096

// Holt-Winters smoothing factors: level, trend, season.
const (
	holtAlpha = 0.5
	holtBeta  = 0.1
	holtGamma = 0.2
)

// Forecast is additive Holt-Winters exponential smoothing: a level and a
// trend (Holt's linear method), and with a season length an additive
// seasonal component learned over the first season and updated after. Update
// returns the forecast Horizon values ahead, NaN until two values arrived.
type Forecast struct {
	horizon  int
	season   []float64 // len = season length; nil without
	n        uint64
	level    float64
	trend    float64
	sumFirst float64 // season: the mean of the first season starts the level
}

// NewForecast returns a forecaster horizon (≥ 1) values ahead, seasonal
// when season > 1 (at most MaxSeason values).
func NewForecast(horizon, season float64) (*Forecast, error) {
	if !(horizon >= 1 && horizon <= 1e6) || horizon != math.Trunc(horizon) {
		return nil, fmt.Errorf("horizon must be a whole number from 1, got %v", horizon)
	}
	if !(season >= 0 && season <= MaxSeason) || season != math.Trunc(season) {
		return nil, fmt.Errorf("season length must be a whole number from 0 to %d, got %v", MaxSeason, season)
	}
	f := &Forecast{horizon: int(horizon)}
	if season > 1 {
		f.season = make([]float64, int(season))
	}
	return f, nil
}

// Update implements Online.
func (f *Forecast) Update(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return math.NaN()
	}
	f.n++
	m := uint64(len(f.season))
	switch {
	case m > 0 && f.n <= m:
		// The first season: the level is its running mean, the seasonal
		// components the deviations from the mean once it is complete.
		f.season[f.n-1] = x
		f.sumFirst += x
		f.level = f.sumFirst / float64(f.n)
		if f.n < m {
			return math.NaN()
		}
		for i := range f.season {
			f.season[i] -= f.level
		}
	case m == 0 && f.n == 1:
		f.level = x
		return math.NaN()
	case m == 0 && f.n == 2:
		f.trend = x - f.level
		f.level = x
	default:
		s := 0.0
		i := 0
		if m > 0 {
			i = int((f.n - 1) % m)
			s = f.season[i]
		}
		prev := f.level
		f.level = holtAlpha*(x-s) + (1-holtAlpha)*(f.level+f.trend)
		f.trend = holtBeta*(f.level-prev) + (1-holtBeta)*f.trend
		if m > 0 {
			f.season[i] = holtGamma*(x-f.level) + (1-holtGamma)*s
		}
	}
	out := f.level + float64(f.horizon)*f.trend
	if m > 0 {
		out += f.season[int((f.n-1+uint64(f.horizon))%m)]
	}
	return out
}

// AppendState implements Online.
func (f *Forecast) AppendState(b []byte) []byte {
	return enc(b).u(f.n).f(f.level, f.trend, f.sumFirst).f(f.season...)
}

// DecodeState implements Online.
func (f *Forecast) DecodeState(b []byte) ([]byte, error) {
	d := dec{b: b}
	f.n = d.u()
	f.level, f.trend, f.sumFirst = d.f(), d.f(), d.f()
	for i := range f.season {
		f.season[i] = d.f()
	}
	return d.done()
}

// Size implements Online.
func (f *Forecast) Size() int { return int(unsafe.Sizeof(*f)) + 8*len(f.season) }

// ChangePoint detects a lasting shift of the mean with a two-sided CUSUM on
// standardised values: it learns the mean and standard deviation over the
// first learn values, then sums deviations beyond slack (0.5 standard
// deviations) in each direction and reports 1 when a sum passes threshold
// standard deviations; then it learns the new regime afresh. Otherwise 0.
type ChangePoint struct {
	threshold float64
	n         float64
	mean, m2  float64
	pos, neg  float64
}

const (
	cpLearn = 30
	cpSlack = 0.5
)

// NewChangePoint returns a detector with the given threshold in standard
// deviations (default 8 where the rule gives none).
func NewChangePoint(threshold float64) (*ChangePoint, error) {
	if !(threshold > 0) || math.IsInf(threshold, 0) {
		return nil, fmt.Errorf("threshold must be positive, got %v", threshold)
	}
	return &ChangePoint{threshold: threshold}, nil
}

// Update implements Online.
func (c *ChangePoint) Update(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return math.NaN()
	}
	if c.n < cpLearn {
		c.n++
		d := x - c.mean
		c.mean += d / c.n
		c.m2 += d * (x - c.mean)
		return 0
	}
	sd := math.Sqrt(c.m2 / (c.n - 1))
	if sd == 0 {
		sd = math.Max(math.Abs(c.mean)*1e-3, 1e-9)
	}
	z := (x - c.mean) / sd
	c.pos = math.Max(0, c.pos+z-cpSlack)
	c.neg = math.Max(0, c.neg-z-cpSlack)
	if c.pos > c.threshold || c.neg > c.threshold {
		*c = ChangePoint{threshold: c.threshold}
		return 1
	}
	return 0
}

// AppendState implements Online.
func (c *ChangePoint) AppendState(b []byte) []byte {
	return enc(b).f(c.n, c.mean, c.m2, c.pos, c.neg)
}

// DecodeState implements Online.
func (c *ChangePoint) DecodeState(b []byte) ([]byte, error) {
	d := dec{b: b}
	c.n, c.mean, c.m2, c.pos, c.neg = d.f(), d.f(), d.f(), d.f(), d.f()
	return d.done()
}

// Size implements Online.
func (c *ChangePoint) Size() int { return int(unsafe.Sizeof(*c)) }
