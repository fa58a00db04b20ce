package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"

	"github.com/livegate/livegate/internal/natstest"
	"github.com/livegate/livegate/record"
)

// TestRollingRestart: three gateways on one NATS server and one data
// directory, behind nginx with nginx/compose.conf, as compose.yaml runs
// them. The broadcaster page (Chromium, fake camera) goes live through
// nginx and the watch page plays through it; then each gateway in turn
// gets SIGTERM and starts again on its address. Through every restart the
// broadcast stays live (the broadcaster page resumes its session through
// nginx on another gateway when its own stops) and the video plays on
// without a fatal hls.js error. When the broadcast ends, it is one
// recording: both gateways' parts in one directory, a discontinuity at
// each move, played through nginx as a VOD.
func TestRollingRestart(t *testing.T) {
	chromium := needTool(t, "chromium")
	needTool(t, "ffmpeg")
	needTool(t, "nginx")
	if testing.Short() {
		t.Skip("-short")
	}
	nats := natstest.Start(t)
	bin := gatewayBinary(t)
	data := t.TempDir()
	var addrs [3]string
	var servers [][2]string
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		servers = append(servers, [2]string{fmt.Sprintf("server gateway%d:8080 ", i+1), "server " + addrs[i] + " "})
	}
	var all []*gatewayProc // every process, restarted ones included
	start := func(i int) *gatewayProc {
		g := startGateway(t, bin, "--listen", addrs[i], "--nats-url", nats, "--data", data)
		all = append(all, g)
		return g
	}
	gws := []*gatewayProc{start(0), start(1), start(2)}
	edge := startNginxSite(t, "compose.conf", servers...)

	browser := newBrowser(t, chromium)
	eval := func(ctx context.Context, expr string) float64 {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](expr))
		return v
	}
	// what a page and its player show, hls.js's events (but the level
	// loads that change no discontinuity, one every part) and the answers
	// nginx gave that were not 200: for a failure
	diagnose := func(ctx context.Context) string {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__livegate||null, (k,v)=> (k==="hls"||k==="video")?undefined:v) + " " + document.getElementById("state").textContent + " " + JSON.stringify(window.__events || [])`))
		b, _ := os.ReadFile(filepath.Join(edge.Dir, "access.log"))
		var refused []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 3 && f[3] != "200" && f[3] != "101" {
				refused = append(refused, l)
			}
		}
		return page + "\nnginx:\n" + strings.Join(refused, "\n")
	}
	until := func(ctx context.Context, within time.Duration, what, expr string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; %s", what, within, diagnose(ctx))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	bctx, cancelB := chromedp.NewContext(browser)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.Navigate(edge.URL+"/broadcast?stream=roll&autostart=1")); err != nil {
		t.Fatal(err)
	}
	const live = `!!(window.__livegate && window.__livegate.status && window.__livegate.status.state === "live")`
	until(bctx, 60*time.Second, "the broadcaster live through nginx", live)
	liveAt := time.Now()
	wctx, cancelW := chromedp.NewContext(browser)
	defer cancelW()
	if err := chromedp.Do(wctx, chromedp.Navigate(edge.URL+"/watch/roll")); err != nil {
		t.Fatal(err)
	}
	const played = `document.getElementById("video").currentTime`
	until(wctx, 60*time.Second, "the video to play through nginx", played+` > 1`)
	// hls.js's events, shown if the video stops
	if _, err := chromedp.Run(wctx, chromedp.Evaluate[any](`(() => { const h = window.__livegate.hls, ev = window.__events = [];
		let cc = "";
		const keep = (e, s) => { ev.push((performance.now()/1000).toFixed(2) + " " + e + " " + s); if (ev.length > 300) ev.shift(); };
		h.on("hlsLevelLoaded", (e, d) => { const c = d.details.startCC + "-" + d.details.endCC; if (c !== cc) keep(e, d.level + " " + d.details.startSN + "-" + d.details.endSN + " cc " + c); cc = c; });
		h.on("hlsLevelSwitching", (e, d) => keep(e, d.level));
		h.on("hlsFragLoading", (e, d) => keep(e, d.frag.type + " " + d.frag.level + " sn " + d.frag.sn + (d.part ? " part " + d.part.index : "") + " cc " + d.frag.cc + " start " + d.frag.start.toFixed(2)));
		h.on("hlsError", (e, d) => keep(e, d.type + " " + d.details + " fatal " + d.fatal));
		return true })()`)); err != nil {
		t.Fatal(err)
	}

	for i := range gws {
		at := eval(wctx, played)
		if !gws[i].stop(40 * time.Second) {
			t.Fatalf("gateway %d still running 40 s after SIGTERM", i+1)
		}
		gws[i] = start(i)
		until(bctx, 60*time.Second, fmt.Sprintf("the broadcaster live again after gateway %d restarted", i+1), live)
		until(wctx, 60*time.Second, fmt.Sprintf("3 s more of video after gateway %d restarted", i+1),
			fmt.Sprintf("%s > %f", played, at+3))
		t.Logf("gateway %d restarted; video at %.1f s, %v jumps over a hole so far", i+1, eval(wctx, played), eval(wctx, `window.__livegate.jumps || 0`))
	}
	if errs, err := chromedp.Run(wctx, chromedp.Evaluate[[]string](`window.__livegate.errors`)); err != nil || len(errs) > 0 {
		t.Errorf("fatal hls.js errors through the restarts: %v %v; %s", errs, err, diagnose(wctx))
	}
	handoffs := 0
	for _, g := range all {
		handoffs += strings.Count(g.Log.String(), "session handed off")
	}
	if handoffs == 0 {
		t.Fatal("no gateway handed the broadcast off: the restarts never moved it")
	}

	if _, err := chromedp.Run(bctx, chromedp.Evaluate[any](`document.getElementById("stop").click()`)); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(liveAt).Seconds()
	waitHTTP(t, edge.URL+"/api/recordings", `"roll"`, 60*time.Second)
	metas, _ := filepath.Glob(filepath.Join(data, "recordings", "roll", "*", record.MetaFile))
	if len(metas) != 1 {
		t.Fatalf("recordings of the broadcast: %v, want one", metas)
	}
	var meta record.Meta
	if b, err := os.ReadFile(metas[0]); err != nil || json.Unmarshal(b, &meta) != nil {
		t.Fatalf("%s: %v", metas[0], err)
	}

	// the recording through nginx: a VOD of the whole broadcast
	get := func(u string) []byte {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", u, resp.StatusCode, b)
		}
		return b
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(get(edge.URL + "/live/roll/index.m3u8")); err != nil || len(mv.Variants) == 0 {
		t.Fatalf("the recording's multivariant playlist: %v", err)
	}
	var media playlist.Media
	if err := media.Unmarshal(get(edge.URL + "/live/roll/" + mv.Variants[0].URI)); err != nil {
		t.Fatal(err)
	}
	discont := 0
	for _, s := range media.Segments {
		if s.Discontinuity {
			discont++
		}
	}
	t.Logf("broadcast live %.0f s, %d handoffs; its recording: %.1f s, %d segments, %d discontinuities",
		wall, handoffs, meta.Duration, len(media.Segments), discont)
	if !media.Endlist || discont < handoffs || meta.Duration < wall/2 {
		t.Errorf("recording of %.1f s (live %.0f s), %d discontinuities (%d handoffs), ended %v: want one VOD of the whole broadcast, a discontinuity at each move",
			meta.Duration, wall, discont, handoffs, media.Endlist)
	}
	last := media.Segments[len(media.Segments)-1].URI
	if b := get(edge.URL + "/live/roll/" + pathDir(mv.Variants[0].URI) + last); len(b) == 0 {
		t.Errorf("the recording's last segment %s is empty", last)
	}
}

// pathDir is the directory part of a relative URI, with its slash.
func pathDir(uri string) string {
	if i := strings.LastIndexByte(uri, '/'); i >= 0 {
		return uri[:i+1]
	}
	return ""
}
