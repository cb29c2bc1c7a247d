package benchutil

import "slices"

// Median returns the median of v (the mean of the middle two for an even
// count), or 0 for none. The benchmarks report medians of alternating runs
// on a machine whose speed drifts.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
