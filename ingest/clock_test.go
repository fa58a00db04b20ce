package ingest

import (
	"math"
	"testing"
	"time"
)

// TestCaptureClock: the capture time of media zero moves to this machine's
// clock by the smallest arrival - sent seen, and implausible clocks are
// ignored.
func TestCaptureClock(t *testing.T) {
	at := func(ms float64) time.Time { return time.UnixMicro(int64(ms * 1000)) }
	const zero = 1.7e12 // publisher's clock at media zero, ms
	cases := []struct {
		name string
		feed func(c *captureClock)
		want float64 // ms on this machine's clock; 0: unknown
	}{
		{"nothing", func(c *captureClock) {}, 0},
		{"clock frames without a hello", func(c *captureClock) { c.sample(zero, at(zero+5000)) }, 0},
		// the publisher's clock is 5 s behind ours; the hello took 40 ms,
		// a later frame 10 ms, another 80 ms
		{"hello and frames", func(c *captureClock) {
			c.hello(zero, at(zero+5040))
			c.sample(zero+1000, at(zero+6010))
			c.sample(zero+2000, at(zero+7080))
		}, zero + 5010},
		{"a clock ahead of ours", func(c *captureClock) { c.hello(zero, at(zero-3000+20)) }, zero - 2980},
		{"implausible hello", func(c *captureClock) { c.hello(42, at(zero)) }, 0},
		{"NaN and infinite frames ignored", func(c *captureClock) {
			c.hello(zero, at(zero+100))
			c.sample(math.NaN(), at(zero))
			c.sample(math.Inf(1), at(zero))
			c.sample(-1e12, at(zero))
		}, zero + 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cc captureClock
			c.feed(&cc)
			got, ok := cc.start()
			if c.want == 0 {
				if ok {
					t.Errorf("start() = %s, want unknown", got)
				}
				return
			}
			if !ok || math.Abs(float64(got.UnixMicro())/1000-c.want) > 0.01 {
				t.Errorf("start() = %v %v, want %v", got.UnixMicro(), ok, c.want*1000)
			}
		})
	}
}
