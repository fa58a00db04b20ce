package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestEdgeBrowser: Chromium plays a stream's watch page through the nginx
// edge (hls.js in low-latency mode: blocking reloads, parts, the audio
// rendition), while ten lgload players watch the same stream through it.
// The video must advance 3 s without a fatal hls.js error, and hls.js's
// blocking reloads must have gone through the edge's cache.
func TestEdgeBrowser(t *testing.T) {
	chromium := needTool(t, "chromium")
	needTool(t, "ffmpeg")
	needTool(t, "nginx")
	if testing.Short() {
		t.Skip("-short")
	}
	gw := startGateway(t, gatewayBinary(t))
	edge := startNginx(t, gw.Addr)
	lg := lgloadBinary(t)
	background(t, command(t, lg, "-url", gw.URL, "-publishers", "1", "-viewers", "0", "-probe=false",
		"-size", "640x360", "-prefix", "web", "-duration", "120s", "-start-wait", "90s"))
	waitHTTP(t, gw.URL+"/live/web0/index.m3u8", "#EXT-X-STREAM-INF", 90*time.Second)
	background(t, command(t, lg, "-url", edge.URL, "-origin", gw.URL, "-publish=false", "-prefix", "web",
		"-viewers", "10", "-duration", "90s", "-start-wait", "30s"))

	ctx, cancelT := context.WithTimeout(newBrowser(t, chromium), 90*time.Second)
	defer cancelT()
	logFrom := fileSize(filepath.Join(edge.Dir, "access.log"))
	if err := chromedp.Do(ctx, chromedp.Navigate(edge.URL+"/watch/web0")); err != nil {
		t.Fatalf("open the watch page through nginx: %v", err)
	}
	currentTime := func() float64 {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("video").currentTime`))
		return v
	}
	waitFor := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); !ok(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__livegate.errors) + " " + document.getElementById("state").textContent`))
				t.Fatalf("timed out after %s waiting for %s; page: %s", within, what, state)
			}
		}
	}
	waitFor("the video to start", 45*time.Second, func() bool { return currentTime() > 0.5 })
	start := currentTime()
	waitFor("3 s of playback", 20*time.Second, func() bool { return currentTime() > start+3 })
	if fatal, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__livegate.errors`)); err != nil || len(fatal) > 0 {
		t.Errorf("hls.js fatal errors: %v %v", fatal, err)
	}
	latency, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.__livegate.hls ? window.__livegate.hls.latency : -1`))

	time.Sleep(1500 * time.Millisecond) // nginx flushes its log every second
	summary := accessSummary(filepath.Join(edge.Dir, "access.log"), logFrom)
	t.Logf("hls.js played %.1f s through nginx (latency estimate %.2f s); nginx's access log: %s; load average %s",
		currentTime()-start, latency, summary, loadAverage())
	b, _ := os.ReadFile(filepath.Join(edge.Dir, "access.log"))
	if !strings.Contains(string(b[min(int(logFrom), len(b)):]), "_HLS_msn=") {
		t.Error("no blocking playlist reload went through nginx: hls.js did not play low-latency through the edge")
	}
	if !strings.Contains(summary, "edge blocking: map[") || !strings.Contains(summary, "HIT") {
		t.Errorf("no blocking reload answered from nginx's cache: %s", summary)
	}
}
