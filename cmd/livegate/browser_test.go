package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/livegate/livegate/internal/chromium"
)

// newBrowser starts Debian's Chromium, headless, with a fake camera and
// microphone that need no permission prompt; extra options come last and
// override (chromedp.Flag(name, false) drops a flag). It skips when Chromium
// is missing locally; CI installs it, so there the test always runs.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := needTool(t, "chromium")
	opts := append(chromium.Options(path, t.TempDir()), chromedp.WindowSize(1280, 900))
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// evalUntil polls a JavaScript expression until it is true.
func evalUntil(t *testing.T, ctx context.Context, within time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__livegate||null, (k,v)=> (k==="hls"||k==="video")?undefined:v) + " " + (document.getElementById("state")||{}).textContent`))
			t.Fatalf("timed out after %s waiting for %s; page state: %s", within, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// screenshot saves a PNG of the page into $LIVEGATE_SCREENSHOTS (or the
// test's temporary directory) for people to look at.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("LIVEGATE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}

// TestBrowserBroadcastAndWatch: the broadcaster page publishes the fake
// camera with no click, and a second page plays it with hls.js.
func TestBrowserBroadcastAndWatch(t *testing.T) {
	needTools(t)
	srv := startGateway(t, nil)
	browser := newBrowser(t)

	bctx, cancelB := chromedp.NewContext(browser)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/broadcast?stream=t&autostart=1")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, bctx, 30*time.Second, "the broadcaster to be live",
		`!!(window.__livegate && window.__livegate.status && window.__livegate.status.state === "live")`)

	wctx, cancelW := chromedp.NewContext(browser)
	defer cancelW()
	if err := chromedp.Do(wctx, chromedp.Navigate(srv.URL+"/watch/t")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 30*time.Second, "the video to start", `document.getElementById("video").currentTime > 0.5`)
	start, _ := chromedp.Run(wctx, chromedp.Evaluate[float64](`document.getElementById("video").currentTime`))
	evalUntil(t, wctx, 20*time.Second, "3 s of playback",
		`document.getElementById("video").currentTime > `+formatFloat(start+3))
	fatal, err := chromedp.Run(wctx, chromedp.Evaluate[[]string](`window.__livegate.errors`))
	if err != nil || len(fatal) > 0 {
		t.Errorf("hls.js fatal errors: %v %v", fatal, err)
	}
	latency, _ := chromedp.Run(wctx, chromedp.Evaluate[float64](`window.__livegate.hls ? window.__livegate.hls.latency : -1`))
	t.Logf("hls.js latency estimate: %.2f s", latency)
	screenshot(t, bctx, "broadcast")
	screenshot(t, wctx, "watch")
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

// TestBrowserChat: two viewers join the chat of a stream that is not live;
// a message that looks like HTML shows as text and runs nothing.
func TestBrowserChat(t *testing.T) {
	needTools(t)
	srv := startGateway(t, nil)
	browser := newBrowser(t)
	payload := `<img src=x onerror="window.__pwned=1">`
	tabs := map[string]context.Context{}
	for _, name := range []string{"alice", "bob"} {
		ctx, cancel := chromedp.NewContext(browser)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/watch/party")); err != nil {
			t.Fatal(err)
		}
		evalUntil(t, ctx, 10*time.Second, "the chat form", `!!document.querySelector("[data-testid=chat-name]")`)
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("[data-testid=chat-name]").value = "`+name+`";
			document.querySelector("[data-testid=chat-join]").click(); true`)); err != nil {
			t.Fatal(err)
		}
		evalUntil(t, ctx, 10*time.Second, name+" to join", `!document.querySelector("[data-testid=chat-input]").closest("form").hidden`)
		tabs[name] = ctx
	}
	evalUntil(t, tabs["alice"], 10*time.Second, "2 online", `document.querySelector("[data-testid=chat-count]").textContent === "2 online"`)
	js := `(() => { const i = document.querySelector("[data-testid=chat-input]"); i.value = ` + strconv.Quote(payload) + `;
		document.querySelector("[data-testid=chat-send]").click(); return true })()`
	if _, err := chromedp.Run(tabs["alice"], chromedp.Evaluate[bool](js)); err != nil {
		t.Fatal(err)
	}
	for name, ctx := range tabs {
		evalUntil(t, ctx, 10*time.Second, "the message at "+name,
			`[...document.querySelectorAll("[data-testid=chat-log] .chat-msg")].some(li => li.textContent.includes(`+strconv.Quote(payload)+`))`)
		pwned, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!window.__pwned || !!document.querySelector("[data-testid=chat-log] img")`))
		if pwned {
			t.Errorf("%s: the message was rendered as HTML", name)
		}
	}
	screenshot(t, tabs["bob"], "watch-chat")
	if n, _ := chromedp.Run(tabs["alice"], chromedp.Evaluate[int](`document.querySelectorAll("[data-testid=chat-log] .chat-mine").length`)); n != 1 {
		t.Errorf("alice's own message not told apart: %d marked", n)
	}
}

// throttler is a TCP proxy to a test server whose client-to-server
// direction can be limited to a rate: a slow uplink, as the broadcaster's
// WebSocket sees it (DevTools network throttling does not reach WebSockets
// in this Chromium).
type throttler struct {
	ln      net.Listener
	backend string
	rate    atomic.Int64 // bytes per second upstream; 0 is unlimited
	mu      sync.Mutex
	conns   []net.Conn
}

// cut drops every connection, as a network outage would.
func (th *throttler) cut() {
	th.mu.Lock()
	defer th.mu.Unlock()
	for _, c := range th.conns {
		c.Close()
	}
	th.conns = nil
}

func newThrottler(t *testing.T, backend string) *throttler {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	th := &throttler{ln: ln, backend: backend}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go th.serve(c)
		}
	}()
	return th
}

func (th *throttler) serve(c net.Conn) {
	defer c.Close()
	th.mu.Lock()
	th.conns = append(th.conns, c)
	th.mu.Unlock()
	b, err := net.Dial("tcp", th.backend)
	if err != nil {
		return
	}
	defer b.Close()
	go io.Copy(c, b)
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if r := th.rate.Load(); r > 0 {
			time.Sleep(time.Duration(n) * time.Second / time.Duration(r))
		}
		if _, err := b.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestBrowserAdaptiveUpload: when the link cannot carry the chosen bitrate
// (upload throttled through the DevTools protocol), the broadcaster lowers
// its bitrate by resuming its session with a new recorder, and stays live.
func TestBrowserAdaptiveUpload(t *testing.T) {
	needTools(t)
	srv := startGateway(t, func(c *config) { c.AllowedOrigins = []string{"*"} })
	th := newThrottler(t, strings.TrimPrefix(srv.URL, "http://"))
	browser := newBrowser(t)
	ctx, cancel := chromedp.NewContext(browser)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+th.ln.Addr().String()+"/broadcast?stream=adapt&autostart=1")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 30*time.Second, "live", `!!(window.__livegate.status && window.__livegate.status.state === "live")`)
	th.rate.Store(16 << 10) // 128 kbit/s: less than the recording makes
	evalUntil(t, ctx, 45*time.Second, "a lower bitrate", `window.__livegate.bitrate > 0 && window.__livegate.bitrate < 2500e3`)
	th.rate.Store(0)
	evalUntil(t, ctx, 30*time.Second, "live again after adapting",
		`window.__livegate.status.state === "live" && document.getElementById("state").className === "state-live"`)
	screenshot(t, ctx, "broadcast-adapted")

	// a network drop: the page reconnects by itself with its session
	th.cut()
	evalUntil(t, ctx, 30*time.Second, "a reconnect", `window.__livegate.reconnects >= 1`)
	evalUntil(t, ctx, 30*time.Second, "live again after the drop",
		`window.__livegate.status.state === "live" && document.getElementById("state").textContent.startsWith("Live")`)
	if code, _ := get(t, srv.URL+"/live/adapt/index.m3u8"); code != 200 {
		t.Errorf("stream gone after the reconnect: %d", code)
	}
}

// TestBrowserAccessibility runs axe-core (web/node_modules, installed by
// scripts/deps --test) on each page, in light and dark, on a desktop and a
// phone-sized window, and fails on serious or critical violations and on
// sideways scrolling.
func TestBrowserAccessibility(t *testing.T) {
	needTools(t)
	if _, err := os.Stat("../../web/node_modules/axe-core/axe.min.js"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("axe-core missing in CI: %v", err)
		}
		t.Skipf("axe-core not installed (scripts/deps --test): %v", err)
	}
	srv := startGateway(t, nil)
	browser := newBrowser(t)
	pages := map[string]string{"home": "/", "broadcast": "/broadcast?stream=a11y", "watch": "/watch/a11y"}
	for name, path := range pages {
		for _, dark := range []bool{false, true} {
			for _, width := range []int64{1280, 375} {
				label := fmt.Sprintf("%s-%d-dark=%v", name, width, dark)
				t.Run(label, func(t *testing.T) {
					ctx, cancel := chromedp.NewContext(browser)
					defer cancel()
					scheme := "light"
					if dark {
						scheme = "dark"
					}
					if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
						Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
					}); err != nil {
						t.Fatal(err)
					}
					if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 800), chromedp.Navigate(srv.URL+path)); err != nil {
						t.Fatal(err)
					}
					time.Sleep(500 * time.Millisecond) // scripts fill the page
					axeCheck(t, ctx)
					sideways, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
					if sideways {
						t.Errorf("the page scrolls sideways at %d px", width)
					}
					screenshot(t, ctx, label)
				})
			}
		}
	}
}
