package main

import (
	"math"
	"slices"
)

// dist summarises a set of samples in seconds. The zero value means no
// samples.
type dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	Max float64 `json:"max"`
}

// summarize returns the median, 95th percentile and maximum of xs. xs is not
// modified.
func summarize(xs []float64) dist {
	if len(xs) == 0 {
		return dist{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return dist{N: len(s), P50: percentile(s, 50), P95: percentile(s, 95), Max: s[len(s)-1]}
}

// percentile returns the p-th percentile (0 to 100) of sorted, interpolating
// linearly between the two nearest ranks; NaN when sorted is empty.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	p = min(max(p, 0), 100)
	pos := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

// sumDist adds two independent distributions percentile by percentile. It is
// the usual approximation for "listing delay plus player distance": exact for
// the median only when both parts move together, an upper bound for p95.
func sumDist(a, b dist) dist {
	if a.N == 0 || b.N == 0 {
		return dist{}
	}
	return dist{N: min(a.N, b.N), P50: a.P50 + b.P50, P95: a.P95 + b.P95, Max: a.Max + b.Max}
}
