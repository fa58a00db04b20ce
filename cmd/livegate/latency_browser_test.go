package main

import (
	"context"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"
)

// TestBrowserLatency: a Chromium broadcaster and a Chromium viewer. The
// latency the watch page measures from the capture-dated playlist (now -
// PROGRAM-DATE-TIME of the frame shown) and reports to the gateway is
// within 0.3 s of what bench/lgbench measures from outside: the listing
// delay (arrival of each new part - the broadcaster's capture start - the
// media listed, media counted by sequence number and parts) plus the
// player's distance from the live edge (hls.latency). The broadcaster's
// status frames and /metrics carry the reports.
func TestBrowserLatency(t *testing.T) {
	needTools(t)
	var firstSegment float64
	srv := startGateway(t, func(c *config) {
		c.LatencyReportInterval = duration(time.Second)
		firstSegment = time.Duration(c.HLSFirstSegment).Seconds()
	})
	browser := newBrowser(t)

	bctx, cancelB := chromedp.NewContext(browser)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/broadcast?stream=lat&autostart=1")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, bctx, 30*time.Second, "the broadcaster to be live",
		`!!(window.__livegate && window.__livegate.status && window.__livegate.status.state === "live")`)
	clock0, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`window.__livegate.clock0 || 0`))
	if err != nil || clock0 <= 0 {
		t.Fatalf("the broadcaster sent no capture clock: %v %v", clock0, err)
	}
	zero := time.UnixMicro(int64(clock0 * 1000))

	// the listing delays, as lgbench measures them, of the first rendition
	_, master := get(t, srv.URL+"/live/lat/index.m3u8")
	uri := regexp.MustCompile(`(?m)^([^#\s].*\.m3u8)\s*$`).FindStringSubmatch(string(master))
	if uri == nil {
		t.Fatalf("no media playlist in\n%s", master)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var latest atomic.Value // float64: the newest listing delay
	done := make(chan int, 1)
	go func() {
		done <- listingDelays(ctx, srv.URL+"/live/lat/"+uri[1], zero, firstSegment, func(d float64) { latest.Store(d) })
	}()

	wctx, cancelW := chromedp.NewContext(browser)
	defer cancelW()
	if err := chromedp.Do(wctx, chromedp.Navigate(srv.URL+"/watch/lat")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 30*time.Second, "the page to measure its latency", `window.__livegate.glass !== null`)
	// each sample pairs the page's figure with the benchmark's at the same
	// moment: on a loaded machine the latency drifts as a backlog builds
	var glass, outside, diff []float64
	for len(glass) < 24 { // 12 s of samples
		time.Sleep(500 * time.Millisecond)
		s, err := chromedp.Run(wctx, chromedp.Evaluate[[]float64](`[window.__livegate.glass, window.__livegate.hls.latency]`))
		listing, ok := latest.Load().(float64)
		if err == nil && ok && len(s) == 2 && s[0] > 0 && s[1] > 0 {
			glass, outside = append(glass, s[0]), append(outside, listing+s[1])
			diff = append(diff, s[0]-(listing+s[1]))
		}
	}
	stop()
	if n := <-done; n < 10 {
		t.Fatalf("%d listing delays", n)
	}
	t.Logf("page: %.2f s; listing delay + player distance: %.2f s; median difference %.2f s", median(glass), median(outside), median(diff))
	if d := median(diff); math.Abs(d) > 0.3 {
		t.Errorf("the page measures %.2f s, the benchmark's way %.2f s: %.2f s apart (median of paired samples)", median(glass), median(outside), d)
	}

	// the reports reach the broadcaster (a value the page measured over
	// the last seconds: a latency that grows on a loaded machine moves
	// between a report and the status frame) and /metrics
	evalUntil(t, bctx, 15*time.Second, "the broadcaster to show its viewers' latency",
		`typeof window.__livegate.status.viewer_latency === "number" && document.getElementById("s-behind").textContent.endsWith(" s")`)
	told, _ := chromedp.Run(bctx, chromedp.Evaluate[float64](`window.__livegate.status.viewer_latency`))
	if now, err := chromedp.Run(wctx, chromedp.Evaluate[float64](`window.__livegate.glass`)); err == nil {
		glass = append(glass, now)
	}
	if told < slices.Min(glass)-0.3 || told > slices.Max(glass)+0.3 {
		t.Errorf("the broadcaster is told %.2f s, the page measured %.2f to %.2f s", told, slices.Min(glass), slices.Max(glass))
	}
	_, metrics := get(t, srv.URL+"/metrics")
	if !strings.Contains(string(metrics), `livegate_viewer_latency_seconds_count{stream="lat"}`) {
		t.Errorf("no latency histogram for the stream on /metrics")
	}
	screenshot(t, bctx, "broadcast-latency")
}

// listingDelays follows a low-latency media playlist with blocking reloads
// until ctx ends and gives each answer that lists more media to got: its
// arrival - zero - the media listed, the media counted from the first
// segment after the leading gaps (first seconds long, hls_first_segment;
// 0: one second), one second for each later one, plus the parts of the
// segment in progress. It returns how many it gave.
func listingDelays(ctx context.Context, u string, zero time.Time, first float64, got func(float64)) int {
	n := 0
	firstMSN := -1 // MSN of the first real segment
	if first == 0 {
		first = 1
	}
	last := 0.0
	query := ""
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return n
		}
		var pl playlist.Media
		body := make([]byte, 0, 8192)
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			body = append(body, buf[:n]...)
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		at := time.Now()
		if err := pl.Unmarshal(body); err != nil {
			return n
		}
		for i, seg := range pl.Segments {
			if !seg.Gap && firstMSN < 0 {
				firstMSN = pl.MediaSequence + i
			}
		}
		next := pl.MediaSequence + len(pl.Segments)
		if firstMSN >= 0 && next > firstMSN {
			media := float64(next-firstMSN) - 1 + first
			for _, p := range pl.Parts {
				media += p.Duration.Seconds()
			}
			if media > last+1e-6 {
				last = media
				if media > 3 { // as lgbench: the first 3 s left out
					got(at.Sub(zero).Seconds() - media)
					n++
				}
			}
		}
		query = "?_HLS_msn=" + strconv.Itoa(next) + "&_HLS_part=" + strconv.Itoa(len(pl.Parts))
	}
	return n
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	return s[len(s)/2]
}
