package web

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Viewer latency reports: the watch page measures how far behind the
// camera it plays (now - #EXT-X-PROGRAM-DATE-TIME of what it shows, the
// segmenter dating segments by the publisher's capture clock) and posts
// it to POST /api/streams/{stream}/latency as {"latency": seconds}. The
// answer, {"now": ms since 1970, "interval": seconds}, gives the page this
// machine's clock (to correct its own, NTP-style) and when to report
// next; a body without "latency" only asks for the clock. One client
// address is heard at most once per LatencyInterval per stream (429
// otherwise), a body is at most maxLatencyBody bytes, a latency must be
// above 0 and at most maxLatency, and each stream keeps the last report
// of at most LatencyReporters addresses: a hostile client adds one vote
// per interval to the histogram and one value to the median, nothing
// else.

// maxLatencyBody bounds a latency report's body.
const maxLatencyBody = 256

// maxLatency is the largest latency accepted, in seconds; more is a
// broken clock or a client that is not playing live.
const maxLatency = 60

// latencyBuckets are the histogram's upper bounds, in seconds.
var latencyBuckets = []float64{0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 60}

// latencies holds the reports of every stream.
type latencies struct {
	interval, window time.Duration
	max              int

	mu      sync.Mutex
	streams map[string]*streamLatency
}

// streamLatency is one stream's reports: the last of each client address,
// and the histogram of all accepted ones.
type streamLatency struct {
	last    map[string]latencyReport
	buckets []uint64 // counts per latencyBuckets, not cumulative
	count   uint64
	sum     float64
}

type latencyReport struct {
	at      time.Time
	seconds float64 // 0: a clock request, not counted
}

// errRateLimited and errTooManyReporters refuse a report.
var (
	errRateLimited      = errors.New("one report per interval")
	errTooManyReporters = errors.New("too many reporting clients")
)

// add takes one report (seconds 0: a clock request) from client for stream
// at now. live tells which streams are still live: the others are
// forgotten whenever a stream is added.
func (l *latencies) add(stream, client string, seconds float64, now time.Time, live func(string) bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams == nil {
		l.streams = map[string]*streamLatency{}
	}
	st := l.streams[stream]
	if st == nil {
		for name := range l.streams {
			if !live(name) {
				delete(l.streams, name)
			}
		}
		st = &streamLatency{last: map[string]latencyReport{}, buckets: make([]uint64, len(latencyBuckets))}
		l.streams[stream] = st
	}
	prev, seen := st.last[client]
	if seen && now.Sub(prev.at) < l.interval {
		return errRateLimited
	}
	if !seen && len(st.last) >= l.max {
		for k, r := range st.last {
			if now.Sub(r.at) > max(l.window, l.interval) {
				delete(st.last, k)
			}
		}
		if len(st.last) >= l.max {
			return errTooManyReporters
		}
	}
	st.last[client] = latencyReport{at: now, seconds: seconds}
	if seconds > 0 {
		i, _ := slices.BinarySearch(latencyBuckets, seconds)
		if i < len(st.buckets) {
			st.buckets[i]++
		}
		st.count++
		st.sum += seconds
	}
	return nil
}

// median returns the median of the latest report of each client within
// the window.
func (l *latencies) median(stream string, now time.Time) (float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.streams[stream]
	if st == nil {
		return 0, false
	}
	var xs []float64
	for _, r := range st.last {
		if r.seconds > 0 && now.Sub(r.at) <= l.window {
			xs = append(xs, r.seconds)
		}
	}
	if len(xs) == 0 {
		return 0, false
	}
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2, true
	}
	return xs[len(xs)/2], true
}

// keep forgets the streams for which live is false.
func (l *latencies) keep(live func(stream string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.streams {
		if !live(name) {
			delete(l.streams, name)
		}
	}
}

// histogram returns a stream's histogram for /metrics.
func (l *latencies) histogram(stream string) (prometheus.Metric, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.streams[stream]
	if st == nil || st.count == 0 {
		return nil, false
	}
	cum := make(map[float64]uint64, len(latencyBuckets))
	var n uint64
	for i, b := range latencyBuckets {
		n += st.buckets[i]
		cum[b] = n
	}
	return prometheus.MustNewConstHistogram(viewerLatencyDesc, st.count, st.sum, cum, stream), true
}

var viewerLatencyDesc = prometheus.NewDesc("livegate_viewer_latency_seconds",
	"Glass-to-glass latency that the stream's viewers report: from the publisher's camera to their screen (watch page reports, at most one per client address per latency_report_interval).",
	[]string{"stream"}, nil)

// ViewerLatency is the median latency that a stream's viewers reported
// over the last LatencyWindow, each client address counted once; ok false
// when none did.
func (s *Server) ViewerLatency(stream string) (seconds float64, ok bool) {
	return s.latency.median(stream, time.Now())
}

// live reports whether a stream is live now.
func (s *Server) live(name string) bool {
	st := s.Catalog.Stream(name)
	return st != nil && st.Info().Live
}

// CaptureDated is implemented by a Stream that can tell whether its
// segments are dated by the publisher's capture clock (a publisher that
// sent none is dated when its media reached the gateway, and a viewer's
// now - PROGRAM-DATE-TIME is then not its latency).
type CaptureDated interface {
	CaptureDated() bool
}

// reportLatency serves POST /api/streams/{stream}/latency. A stream whose
// segments are not capture-dated answers 409 (undated).
func (s *Server) reportLatency(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	st := s.Catalog.Stream(name)
	if !s.allowed(w, r, name, st) {
		return
	}
	if st == nil || !st.Info().Live {
		jsonError(w, http.StatusNotFound, "not_found", "stream "+name+" is not live")
		return
	}
	if cd, ok := st.(CaptureDated); ok && !cd.CaptureDated() {
		jsonError(w, http.StatusConflict, "undated", "the publisher of "+name+" sends no capture clock: its latency cannot be measured")
		return
	}
	var body struct {
		Latency *float64 `json:"latency"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLatencyBody))
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		jsonError(w, http.StatusBadRequest, "bad_request", "want {\"latency\": seconds}, at most "+strconv.Itoa(maxLatencyBody)+" bytes")
		return
	}
	seconds := 0.0
	if body.Latency != nil {
		seconds = *body.Latency
		if math.IsNaN(seconds) || seconds <= 0 || seconds > maxLatency {
			jsonError(w, http.StatusBadRequest, "bad_request", "latency must be above 0 and at most "+strconv.Itoa(maxLatency)+" seconds")
			return
		}
	}
	now := time.Now()
	switch err := s.latency.add(name, s.ClientAddr(r), seconds, now, s.live); err {
	case nil:
	case errRateLimited:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.LatencyInterval.Seconds()))))
		jsonError(w, http.StatusTooManyRequests, "rate_limited", "one report per "+s.LatencyInterval.String())
		return
	default:
		jsonError(w, http.StatusServiceUnavailable, "busy", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"now": now.UnixMilli(), "interval": s.LatencyInterval.Seconds()})
}
