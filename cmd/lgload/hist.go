package main

import (
	"math"
	"time"
)

// histBuckets is the number of buckets of a hist: bucket i holds durations
// below histBase * histRatio^i, which covers 10 µs to beyond 60 s with
// steps of about 9 %.
const (
	histBuckets = 200
	histBase    = 10 * time.Microsecond
	histRatio   = 1.0905077326652577 // 2^(1/8)
)

// hist is a latency histogram with logarithmic buckets. The zero value is
// empty and ready; it is not safe for concurrent use.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

// bucket returns the index of the bucket that holds d.
func bucket(d time.Duration) int {
	if d < histBase {
		return 0
	}
	i := int(math.Log(float64(d)/float64(histBase))/math.Log(histRatio)) + 1
	return min(i, histBuckets-1)
}

// upper returns the upper bound of bucket i.
func upper(i int) time.Duration {
	return time.Duration(float64(histBase) * math.Pow(histRatio, float64(i)))
}

// add records one duration.
func (h *hist) add(d time.Duration) {
	h.counts[bucket(d)]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

// merge adds every sample of o to h.
func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the upper bound of the bucket holding the q-th quantile
// (0 < q <= 1), capped by the largest sample (the largest sample itself
// in the last, open bucket); 0 when h is empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == histBuckets-1 { // the overflow bucket
				return h.max
			}
			return min(upper(i), h.max)
		}
	}
	return h.max
}

// ms converts d to milliseconds rounded to 0.01 ms, for the report.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*100) / 100
}
