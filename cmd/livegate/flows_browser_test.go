package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// consoleErrors collects the uncaught exceptions and console.error calls of
// a page; the test fails on any at the end.
type consoleErrors struct {
	mu   sync.Mutex
	list []string
}

func watchConsole(ctx context.Context, page string) *consoleErrors {
	c := &consoleErrors{}
	chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			for _, a := range ev.Args {
				msg += " " + strings.Trim(string(a.Value), `"`)
			}
		default:
			return
		}
		c.mu.Lock()
		c.list = append(c.list, page+":"+msg)
		c.mu.Unlock()
	})
	return c
}

func (c *consoleErrors) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.list {
		t.Errorf("console error on %s", e)
	}
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// runJS runs JavaScript for its effect.
func runJS(ctx context.Context, js string) error {
	_, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
	return err
}

func evalString(ctx context.Context, expr string) string {
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	return s
}

// TestBrowserViewerFlows walks the pages as people use them: a viewer waits
// on an offline stream; a broadcaster picks a quality and goes live with the
// keyboard; the waiting viewer starts by itself, lists Auto plus each
// rendition, switches to one, falls behind and goes back to live; the home
// page lists the stream with its thumbnail; the broadcaster stops and the
// viewer says the stream ended. No page logs an error.
func TestBrowserViewerFlows(t *testing.T) {
	needTools(t)
	srv := startGateway(t, nil)
	browser := newBrowser(t)

	wctx, cancelW := chromedp.NewContext(browser)
	defer cancelW()
	werr := watchConsole(wctx, "watch")
	navigate(t, wctx, srv.URL+"/watch/flow")
	evalUntil(t, wctx, 10*time.Second, "the offline state", `document.getElementById("state").textContent.startsWith("Offline")`)
	screenshot(t, wctx, "watch-offline")

	bctx, cancelB := chromedp.NewContext(browser)
	defer cancelB()
	berr := watchConsole(bctx, "broadcast")
	navigate(t, bctx, srv.URL+"/broadcast?stream=flow")
	evalUntil(t, bctx, 10*time.Second, "the device pickers", `document.getElementById("camera").options.length > 0 && document.getElementById("mic").options.length > 0`)
	// keyboard only: choose 480p, then Enter on "Go live"
	if err := chromedp.Do(bctx,
		chromedp.Focus(chromedp.ID("quality")),
		chromedp.SetValue(chromedp.ID("quality"), "480"),
		chromedp.Focus(chromedp.ID("go")),
		chromedp.KeyEvent("\r"),
	); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, bctx, 30*time.Second, "the broadcaster to be live", `!!(window.__livegate.status && window.__livegate.status.state === "live")`)
	if mime := evalString(bctx, `document.getElementById("s-mime").textContent`); !strings.HasPrefix(mime, "video/") {
		t.Errorf("the page does not say which recorder type it uses: %q", mime)
	}
	if share := evalString(bctx, `document.getElementById("share").href`); !strings.HasSuffix(share, "/watch/flow") {
		t.Errorf("share link %q", share)
	}

	// the waiting viewer starts on its own
	evalUntil(t, wctx, 30*time.Second, "the waiting viewer to start", `document.getElementById("video").currentTime > 0.5`)
	evalUntil(t, wctx, 15*time.Second, "the rendition list", `!!window.__livegate.hls && window.__livegate.hls.levels.length > 0 &&
		document.getElementById("quality").options.length === window.__livegate.hls.levels.length + 1`)
	levels := evalString(wctx, `Array.from(document.getElementById("quality").options).map(o => o.textContent).join("|")`)
	if !strings.HasPrefix(levels, "Auto|") || !strings.Contains(levels, "360p") {
		t.Errorf("quality menu: %q", levels)
	}
	// pick the lowest rendition: hls.js plays it and the page says so
	if err := runJS(wctx, `(() => {
		const q = document.getElementById("quality");
		const i = window.__livegate.hls.levels.findIndex(l => l.height === 360);
		q.value = String(i); q.dispatchEvent(new Event("change")); })()`); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 20*time.Second, "the 360p rendition to play", `document.getElementById("state").textContent.includes("playing 360p")`)

	// fall behind: "Go to live" appears, and brings the player back
	if err := runJS(wctx, `document.getElementById("video").pause()`); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 20*time.Second, "the go-to-live button", `!document.getElementById("golive").hidden`)
	if err := runJS(wctx, `document.getElementById("video").play(); document.getElementById("golive").click()`); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 20*time.Second, "the player back near the live edge", `window.__livegate.hls.latency < window.__livegate.hls.targetLatency + 2`)
	screenshot(t, wctx, "watch-playing")

	// home lists the stream, with a thumbnail that loaded
	hctx, cancelH := chromedp.NewContext(browser)
	defer cancelH()
	herr := watchConsole(hctx, "home")
	navigate(t, hctx, srv.URL+"/")
	evalUntil(t, hctx, 20*time.Second, "the stream card with its thumbnail", `(() => {
		const a = document.querySelector('#streams a[href="/watch/flow"]');
		const img = a && a.querySelector("img");
		return !!img && img.complete && img.naturalWidth > 0 && a.textContent.includes("watching");
	})()`)
	if empty := evalString(hctx, `String(document.getElementById("empty").hidden)`); empty != "true" {
		t.Errorf("home still says nobody is live")
	}
	screenshot(t, hctx, "home-live")

	// the broadcaster stops: the stream ends for the viewer
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.ID("stop"))); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, bctx, 10*time.Second, "the broadcaster to stop", `document.getElementById("go").disabled === false`)
	evalUntil(t, wctx, 30*time.Second, "the viewer to say the stream ended", `document.getElementById("state").textContent.includes("ended")`)
	screenshot(t, wctx, "watch-ended")
	if fatal := evalString(wctx, `window.__livegate.errors.join(",")`); fatal != "" {
		t.Errorf("hls.js fatal errors: %s", fatal)
	}
	for _, c := range []*consoleErrors{werr, berr, herr} {
		c.check(t)
	}
	t.Logf("quality menu: %s", levels)
}
