package main

import (
	"context"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	srv := startGateway(t, func(c *config) { c.LatencyReportInterval = duration(time.Second) })
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
	delays := make(chan []float64, 1)
	go func() { delays <- listingDelays(ctx, srv.URL+"/live/lat/"+uri[1], zero) }()

	wctx, cancelW := chromedp.NewContext(browser)
	defer cancelW()
	if err := chromedp.Do(wctx, chromedp.Navigate(srv.URL+"/watch/lat")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 30*time.Second, "the page to measure its latency", `window.__livegate.glass !== null`)
	var glass, distance []float64
	for len(glass) < 24 { // 12 s of samples
		time.Sleep(500 * time.Millisecond)
		s, err := chromedp.Run(wctx, chromedp.Evaluate[[]float64](`[window.__livegate.glass, window.__livegate.hls.latency]`))
		if err == nil && len(s) == 2 && s[0] > 0 && s[1] > 0 {
			glass, distance = append(glass, s[0]), append(distance, s[1])
		}
	}
	stop()
	listing := <-delays
	if len(listing) < 10 {
		t.Fatalf("%d listing delays", len(listing))
	}
	outside := median(listing) + median(distance)
	t.Logf("page: %.2f s; outside: listing %.2f + distance %.2f = %.2f s", median(glass), median(listing), median(distance), outside)
	if d := math.Abs(median(glass) - outside); d > 0.3 {
		t.Errorf("the page measures %.2f s, the benchmark's way %.2f s: %.2f s apart", median(glass), outside, d)
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
// until ctx ends and returns, for each answer that lists more media, its
// arrival - zero - the media listed: segments of exactly one second,
// counted from the first one after the leading gaps, plus the parts of the
// segment in progress.
func listingDelays(ctx context.Context, u string, zero time.Time) []float64 {
	var out []float64
	first := -1 // MSN of the first real segment
	last := 0.0
	query := ""
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return out
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
			return out
		}
		for i, seg := range pl.Segments {
			if !seg.Gap && first < 0 {
				first = pl.MediaSequence + i
			}
		}
		next := pl.MediaSequence + len(pl.Segments)
		if first >= 0 {
			media := float64(next - first)
			for _, p := range pl.Parts {
				media += p.Duration.Seconds()
			}
			if media > last+1e-6 {
				last = media
				if media > 3 { // as lgbench: the first 3 s left out
					out = append(out, at.Sub(zero).Seconds()-media)
				}
			}
		}
		query = "?_HLS_msn=" + strconv.Itoa(next) + "&_HLS_part=" + strconv.Itoa(len(pl.Parts))
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	return s[len(s)/2]
}
