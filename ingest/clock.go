package ingest

import (
	"math"
	"time"
)

// maxClockSamples bounds the clock frames one connection's estimate uses;
// later frames are ignored (the estimate has long settled by then).
const maxClockSamples = 10000

// captureClock turns the publisher's capture clock into this machine's.
// The hello frame says when media time zero was captured, on the
// publisher's clock; every frame that carries the publisher's clock (the
// hello's arrival counts too) gives offset + one-way delay = arrival -
// sent. The smallest such value is the estimate of the offset between the
// clocks: it includes the smallest one-way delay seen, so the capture time
// it gives is late by that much (a few milliseconds on a good link), and
// the latency measured from it is short by as much. The zero value knows
// nothing.
type captureClock struct {
	zero    float64 // publisher's clock at media time zero, ms since 1970; 0 unknown
	offset  float64 // min(arrival - sent), ms
	samples int
}

// plausible reports whether ms can be a wall-clock time in ms since 1970
// (between 2001 and 2286): anything else is a broken or hostile client.
func plausible(ms float64) bool {
	return !math.IsNaN(ms) && ms > 1e12 && ms < 1e13
}

// hello takes the hello frame's capture time of media zero, which the
// publisher sends right after starting its recorder, so it also serves as
// a clock sample.
func (c *captureClock) hello(zero float64, at time.Time) {
	if !plausible(zero) {
		return
	}
	c.zero = zero
	c.sample(zero, at)
}

// sample takes one frame sent at publisher time sent (ms) that arrived at
// at.
func (c *captureClock) sample(sent float64, at time.Time) {
	if !plausible(sent) || c.samples >= maxClockSamples {
		return
	}
	d := float64(at.UnixMicro())/1000 - sent
	if c.samples == 0 || d < c.offset {
		c.offset = d
	}
	c.samples++
}

// start returns when media time zero was captured, on this machine's
// clock, once known.
func (c *captureClock) start() (time.Time, bool) {
	if c.zero == 0 || c.samples == 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(int64((c.zero + c.offset) * 1000)), true
}
