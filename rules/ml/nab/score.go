// Package nab scores streaming anomaly detectors on the Numenta Anomaly
// Benchmark (NAB) the way NAB's own scorer does, and runs Sluice's
// anomaly_score over a NAB corpus (Main, behind `sluice nab`).
//
// The scoring follows NAB's published method (nab/sweeper.py): the first
// 15% of each file (at most 750 points) is a probation period that is not
// scored; a point at or above the threshold is a detection; the first
// detection in a labelled window earns A_TP times a sigmoid of its position
// (1 at the window's left edge, falling toward 0 at its right edge); a window
// with no detection costs A_FN; a detection outside every window costs A_FP
// times a sigmoid of its distance after the preceding window (the full A_FP
// before the first window or far after one). One threshold is chosen for the
// whole corpus, the one that maximises the summed raw score, and the result
// is normalised so that a detector that never fires scores 0 and one that
// fires on the first point of every window, and nowhere else, scores 100.
package nab

import (
	"math"
	"slices"
)

// Profile is a NAB application profile: the weights of a true positive, a
// false positive and a false negative.
type Profile struct {
	TP, FP, FN float64
}

// Standard is NAB's standard profile.
var Standard = Profile{TP: 1, FP: 0.11, FN: 1}

// ProbationFraction is the share of each file that is not scored, capped at
// 750 points (0.15 × 5000) as NAB does.
const ProbationFraction = 0.15

// Series is one scored file: the detector's score for each point and the
// labelled windows as inclusive point indices.
type Series struct {
	Name     string
	Category string
	Scores   []float64
	Windows  [][2]int // inclusive [first, last] indices, in order, not overlapping
}

// Probation returns the number of leading points of a file of n points that
// are not scored.
func Probation(n int) int {
	return int(math.Min(math.Floor(ProbationFraction*float64(n)), ProbationFraction*5000))
}

// scaledSigmoid is NAB's weight of a relative position: -1 is a window's left
// edge (0.9866), 0 its right edge (0), positive positions are past it, and
// from 3 on the weight is -1.
func scaledSigmoid(pos float64) float64 {
	if pos >= 3 {
		return -1
	}
	return 2/(1+math.Exp(5*pos)) - 1
}

// point is one scorable point of the corpus.
type point struct {
	score  float64
	weight float64 // what it adds as a detection: a TP weight in a window, a (negative) FP weight outside
	window int     // index into the corpus' windows, -1 outside
}

// Result is a scored corpus.
type Result struct {
	Profile   Profile
	Threshold float64
	Score     float64 // normalised: null detector 0, perfect 100
	Raw       float64 // summed raw score
	Null      float64 // raw score of a detector that never fires
	Perfect   float64 // raw score of a perfect detector
	Files     []FileResult
}

// FileResult is one file's raw score at the corpus threshold.
type FileResult struct {
	Name, Category string
	Raw            float64
	Windows        int // scorable windows
	Detected       int // windows with a detection
	FalsePositives int // detections outside windows
}

// Category returns the normalised score of the files of one category at the
// corpus threshold; ok is false when the category has no scorable window
// (then only false positives count and Raw says how much they cost).
func (r *Result) Category(cat string) (score, raw float64, ok bool) {
	var null, perfect float64
	for _, f := range r.Files {
		if f.Category != cat {
			continue
		}
		raw += f.Raw
		null -= r.Profile.FN * float64(f.Windows)
		perfect += r.Profile.TP * float64(f.Windows)
	}
	if perfect == null {
		return 0, raw, false
	}
	return 100 * (raw - null) / (perfect - null), raw, true
}

// points lists the scorable points of s with their weights under prof, and
// the number of scorable windows (those with at least one point after the
// probation period). base is the index of s's first window in the corpus.
func (prof Profile) points(s Series, base int, dst []point) ([]point, int) {
	prob := Probation(len(s.Scores))
	maxTP := scaledSigmoid(-1)
	next, prev := 0, -1 // next window to enter, last window left
	in := -1
	scorable := 0
	counted := -1
	for i, sc := range s.Scores {
		if in < 0 && next < len(s.Windows) && i == s.Windows[next][0] {
			in = next
			next++
		}
		var w float64
		win := -1
		if in >= 0 {
			first, last := s.Windows[in][0], s.Windows[in][1]
			width := float64(last - first + 1)
			w = scaledSigmoid(-float64(last-i+1)/width) * prof.TP / maxTP
			win = base + in
		} else if prev < 0 {
			w = -prof.FP
		} else {
			first, last := s.Windows[prev][0], s.Windows[prev][1]
			// NAB divides by the width minus one: a one-point window makes
			// every later false positive cost the full weight.
			pos := 3.0
			if width := float64(last - first); width > 0 {
				pos = float64(i-last) / width
			}
			w = scaledSigmoid(pos) * prof.FP
		}
		if i >= prob {
			dst = append(dst, point{score: sc, weight: w, window: win})
			if in >= 0 && counted != in {
				counted = in
				scorable++
			}
		}
		if in >= 0 && i == s.Windows[in][1] {
			prev, in = in, -1
		}
	}
	return dst, scorable
}

// Score chooses the corpus threshold that maximises the summed raw score
// under prof and returns the normalised result.
func Score(corpus []Series, prof Profile) Result {
	var pts []point
	base := 0
	windows := 0
	for _, s := range corpus {
		var k int
		pts, k = prof.points(s, base, pts)
		windows += k
		base += len(s.Windows)
	}
	slices.SortStableFunc(pts, func(a, b point) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	// Sweep the threshold down through every distinct score. A window's
	// score is its best (earliest) detection's weight, or -A_FN.
	null := -prof.FN * float64(windows)
	best := make([]float64, base)
	hit := make([]bool, base)
	raw := null
	bestRaw, bestT := null, math.Inf(1)
	for i := 0; i < len(pts); {
		t := pts[i].score
		for ; i < len(pts) && pts[i].score == t; i++ {
			p := pts[i]
			if p.window < 0 {
				raw += p.weight
				continue
			}
			if !hit[p.window] {
				hit[p.window] = true
				best[p.window] = p.weight
				raw += prof.FN + p.weight
			} else if p.weight > best[p.window] {
				raw += p.weight - best[p.window]
				best[p.window] = p.weight
			}
		}
		if raw > bestRaw {
			bestRaw, bestT = raw, t
		}
	}
	return scoreAt(corpus, prof, bestT)
}

// ScoreAt scores the corpus at a given threshold.
func ScoreAt(corpus []Series, prof Profile, threshold float64) Result {
	return scoreAt(corpus, prof, threshold)
}

func scoreAt(corpus []Series, prof Profile, threshold float64) Result {
	r := Result{Profile: prof, Threshold: threshold}
	var pts []point
	for _, s := range corpus {
		var k int
		pts, k = prof.points(s, 0, pts[:0])
		f := FileResult{Name: s.Name, Category: s.Category, Windows: k}
		best := make(map[int]float64)
		for _, p := range pts {
			if p.score < threshold {
				continue
			}
			if p.window < 0 {
				f.Raw += p.weight
				f.FalsePositives++
				continue
			}
			if b, ok := best[p.window]; !ok || p.weight > b {
				best[p.window] = p.weight
			}
		}
		f.Detected = len(best)
		for _, b := range best {
			f.Raw += b
		}
		f.Raw -= prof.FN * float64(k-f.Detected)
		r.Raw += f.Raw
		r.Null -= prof.FN * float64(k)
		r.Perfect += prof.TP * float64(k)
		r.Files = append(r.Files, f)
	}
	if r.Perfect != r.Null {
		r.Score = 100 * (r.Raw - r.Null) / (r.Perfect - r.Null)
	}
	return r
}
