package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram keeps 2^subBits linear buckets per power of two, so a
// percentile read from it is at most 1/64 (1.6 %) above the true value.
const (
	subBits    = 6
	subBuckets = 1 << subBits
	maxBits    = 40 // values up to 2^40 ns (about 18 minutes); larger ones are clamped
	numBuckets = (maxBits - subBits + 1) << subBits
)

// histogram counts durations in log-linear buckets. It takes constant
// memory whatever the number of samples and is safe for concurrent use; the
// zero value is ready.
type histogram struct {
	counts [numBuckets]atomic.Uint64
	max    atomic.Int64
}

// record adds one sample; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(uint64(v))].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// snapshot copies the bucket counts.
func (h *histogram) snapshot() []uint64 {
	c := make([]uint64, numBuckets)
	for i := range c {
		c[i] = h.counts[i].Load()
	}
	return c
}

// maxValue is the largest sample recorded.
func (h *histogram) maxValue() time.Duration { return time.Duration(h.max.Load()) }

// bucketOf maps a value to its bucket index.
func bucketOf(v uint64) int {
	if v >= 1<<maxBits {
		v = 1<<maxBits - 1
	}
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBits - 1
	return (exp+1)<<subBits + int((v>>exp)&(subBuckets-1))
}

// bucketUpper is the largest value that falls in bucket i.
func bucketUpper(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	exp := i>>subBits - 1
	low := uint64(subBuckets+i&(subBuckets-1)) << exp
	return low + 1<<exp - 1
}

// quantile returns the q-quantile (0 < q <= 1) of the counts as the upper
// edge of the bucket holding it, capped at max when max > 0. It returns 0
// when there are no samples.
func quantile(counts []uint64, q float64, max time.Duration) time.Duration {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			v := time.Duration(bucketUpper(i))
			if max > 0 && v > max {
				v = max
			}
			return v
		}
	}
	return max
}

// diff returns now - before, bucket by bucket.
func diff(now, before []uint64) []uint64 {
	d := make([]uint64, len(now))
	for i := range now {
		d[i] = now[i]
		if i < len(before) {
			d[i] -= before[i]
		}
	}
	return d
}
