package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// newBrowser starts Debian's Chromium, headless, with a fake camera and
// microphone that need no permission prompt. It skips when Chromium is
// missing locally; CI installs it, so there the test always runs.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium missing in CI")
		}
		t.Skip("chromium not installed")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 900),
	}
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
