package loadgen

import (
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 123456789, 1<<40 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= NumBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		up := bucketUpper(i)
		if up < v {
			t.Errorf("bucketUpper(bucketOf(%d)) = %d < value", v, up)
		}
		if v >= SubBuckets && float64(up-v) > float64(v)/SubBuckets {
			t.Errorf("value %d: bucket upper %d more than 1/%d above", v, up, SubBuckets)
		}
		if i > 0 && bucketUpper(i-1) >= v {
			t.Errorf("value %d: previous bucket %d already reaches %d", v, i-1, bucketUpper(i-1))
		}
	}
	if got := bucketOf(1 << 50); got != NumBuckets-1 {
		t.Errorf("bucketOf(2^50) = %d, want clamp to %d", got, NumBuckets-1)
	}
}

// uniform returns 1 ms to n ms in 1 ms steps.
func uniform(n int) []time.Duration {
	var d []time.Duration
	for i := 1; i <= n; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	return d
}

// TestQuantile: within 1/SubBuckets above the true value, and the same
// after a Merge into an empty histogram.
func TestQuantile(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{5 * time.Millisecond}, 0.99, 5 * time.Millisecond},
		{"p50 of 1..100ms", uniform(100), 0.50, 50 * time.Millisecond},
		{"p90 of 1..100ms", uniform(100), 0.90, 90 * time.Millisecond},
		{"p99 of 1..100ms", uniform(100), 0.99, 99 * time.Millisecond},
		{"max of 1..100ms", uniform(100), 1, 100 * time.Millisecond},
		{"small exact values", []time.Duration{1, 2, 3, 4}, 0.5, 2},
		{"tiny", []time.Duration{time.Nanosecond}, 0.5, time.Nanosecond},
		{"huge: the largest sample in the open bucket", []time.Duration{time.Hour}, 0.5, time.Hour},
		{"negative counts as zero", []time.Duration{-time.Second}, 0.5, 0},
		{"outlier", append(uniform(99), time.Minute), 0.99, 99 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, s := range tt.samples {
				h.Record(s)
			}
			got := h.Quantile(tt.q)
			if got < tt.want || float64(got-tt.want) > float64(tt.want)/SubBuckets {
				t.Errorf("Quantile(%v) = %v, want %v (+1/%d)", tt.q, got, tt.want, SubBuckets)
			}
			if p99 := h.Quantile(0.99); p99 > h.Max() {
				t.Errorf("p99 %v above the largest sample %v", p99, h.Max())
			}
			var m Histogram
			m.Merge(&h)
			if m.Quantile(tt.q) != got || m.N() != h.N() || m.N() != uint64(len(tt.samples)) {
				t.Errorf("merged: Quantile %v N %d, want %v N %d", m.Quantile(tt.q), m.N(), got, len(tt.samples))
			}
		})
	}
}

func TestQuantileSub(t *testing.T) {
	var h Histogram
	h.Record(time.Second)
	before := h.Snapshot()
	for i := 0; i < 10; i++ {
		h.Record(time.Millisecond)
	}
	got := h.Snapshot().Sub(before).Quantile(0.99, 0)
	if got < time.Millisecond || got > time.Millisecond+time.Millisecond/SubBuckets {
		t.Errorf("interval p99 = %v, want about 1ms (the 1s sample is before the interval)", got)
	}
}
