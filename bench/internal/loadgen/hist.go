package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// A Histogram keeps 2^subBits linear buckets per power of two of
// nanoseconds, so a quantile read from it is at most 1/64 (1.6 %) above the
// true value.
const (
	subBits = 6
	// SubBuckets is the number of buckets per power of two: quantiles are
	// at most 1/SubBuckets above the true value.
	SubBuckets = 1 << subBits
	maxBits    = 40 // values up to 2^40 ns (about 18 minutes) have a bucket; larger ones fall in the last
	// NumBuckets is the length of a Histogram's Counts.
	NumBuckets = (maxBits - subBits + 1) << subBits
)

// Histogram counts durations in log-linear buckets. It takes constant
// memory (about 18 KiB) whatever the number of samples and is safe for
// concurrent use; the zero value is empty and ready.
type Histogram struct {
	counts [NumBuckets]atomic.Uint64
	max    atomic.Int64
}

// Record adds one sample; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	h.raiseMax(v)
}

// raiseMax makes v the largest sample if it is larger.
func (h *Histogram) raiseMax(v int64) {
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.raiseMax(o.max.Load())
}

// Snapshot copies the bucket counts.
func (h *Histogram) Snapshot() Counts {
	c := make(Counts, NumBuckets)
	for i := range c {
		c[i] = h.counts[i].Load()
	}
	return c
}

// Max is the largest sample recorded, 0 when there is none.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// N is the number of samples recorded.
func (h *Histogram) N() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Quantile returns the q-quantile (0 < q <= 1) of the samples: see
// Counts.Quantile, with the largest sample as the cap.
func (h *Histogram) Quantile(q float64) time.Duration {
	return h.Snapshot().Quantile(q, h.Max())
}

// Counts are a Histogram's bucket counts at one moment.
type Counts []uint64

// Quantile returns the q-quantile (0 < q <= 1) as the upper edge of the
// bucket holding it, capped at top (the largest sample) when top > 0; in
// the last, open bucket it is top itself. It returns 0 when there are no samples.
func (c Counts) Quantile(q float64, top time.Duration) time.Duration {
	var total uint64
	for _, n := range c {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(total))), 1)
	var seen uint64
	for i, n := range c {
		seen += n
		if seen < rank {
			continue
		}
		v := time.Duration(bucketUpper(i))
		if top > 0 && (v > top || i == NumBuckets-1) {
			v = top
		}
		return v
	}
	return top
}

// Sub returns c - before, bucket by bucket: the samples recorded between
// two snapshots. A nil before counts as empty.
func (c Counts) Sub(before Counts) Counts {
	d := make(Counts, len(c))
	for i := range c {
		d[i] = c[i]
		if i < len(before) {
			d[i] -= before[i]
		}
	}
	return d
}

// bucketOf maps a value to its bucket index.
func bucketOf(v uint64) int {
	if v >= 1<<maxBits {
		v = 1<<maxBits - 1
	}
	if v < SubBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBits - 1
	return (exp+1)<<subBits + int((v>>exp)&(SubBuckets-1))
}

// bucketUpper is the largest value that falls in bucket i.
func bucketUpper(i int) uint64 {
	if i < SubBuckets {
		return uint64(i)
	}
	exp := i>>subBits - 1
	low := uint64(SubBuckets+i&(SubBuckets-1)) << exp
	return low + 1<<exp - 1
}

// Ms converts d to milliseconds with microsecond precision, for reports.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
