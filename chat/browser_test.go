package chat

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The panel of web/assets/chat.js in a real browser, against a real Server.
// The web package embeds and serves that file; this test serves it from the
// source tree.

const panelPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>chat</title>
<link rel="stylesheet" href="/assets/chat.css"></head>
<body><main><div id="chat" style="height:400px"></div></main>
<script src="/assets/chat.js"></script>
<script>LivegateChat.mount(document.getElementById("chat"), {stream: "party"});</script></body></html>`

func panelBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium missing in CI")
		}
		t.Skip("chromium not installed")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-background-timer-throttling", true), chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.WindowSize(900, 700))
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// tab is one browser tab with the panel.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
}

func openPanel(t *testing.T, browser context.Context, url, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	return &tab{t, name, ctx}
}

func (b *tab) eval(js string) any {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](js))
	if err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, js, err)
	}
	return v
}

// until polls a JavaScript condition for up to 10 s.
func (b *tab) until(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			status, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`q("chat-status").textContent`))
			b.t.Fatalf("%s: timed out waiting for %s (status %q)", b.name, what, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do runs statements with the helper q(testid) and set(testid, value)
// defined.
func (b *tab) do(js string) {
	b.t.Helper()
	b.eval(`(() => {` + js + `; return true })()`)
}

const panelHelpers = `window.q = (id) => document.querySelector("[data-testid=" + id + "]");
window.set = (id, v) => { const e = q(id); e.value = v; e.dispatchEvent(new Event("input")); };
window.texts = (sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent);`

func (b *tab) ready() {
	b.t.Helper()
	b.until("the panel", `!!document.querySelector("[data-testid=chat-name]")`)
	b.do(panelHelpers)
}

func (b *tab) joinAs(name string) {
	b.t.Helper()
	b.do(`set("chat-name", ` + strconv.Quote(name) + `); q("chat-join").click()`)
	b.until(name+" to join", `q("chat-status").textContent === "You are `+name+`." && !q("chat-input").closest("form").hidden`)
}

func (b *tab) say(text string) {
	b.t.Helper()
	b.do(`set("chat-input", ` + strconv.Quote(text) + `); q("chat-send").click()`)
}

func TestBrowserPanel(t *testing.T) {
	browser := panelBrowser(t)
	var current atomic.Pointer[Server] // the room server; replaced to test reconnection
	newServer := func() *Server {
		s := &Server{RatePerSecond: 1000, Burst: 1000, PresenceLimit: 2, CheckOrigin: func(r *http.Request) bool {
			return r.Header.Get("Origin") == "http://"+r.Host
		}}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		current.Store(s)
		return s
	}
	first := newServer()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chat/{stream}", func(w http.ResponseWriter, r *http.Request) {
		current.Load().ServeRoom(w, r, r.PathValue("stream"))
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServer(http.Dir("../web/assets"))))
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(panelPage))
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() { hs.Close(); current.Load().Close() })

	alice := openPanel(t, browser, hs.URL+"/page", "alice")
	alice.ready()
	alice.joinAs("alice")
	alice.until("1 online", `q("chat-count").textContent === "1 online"`)

	// the second tab shares localStorage: it tries "alice", is told the name
	// is taken, and picks another
	bob := openPanel(t, browser, hs.URL+"/page", "bob")
	bob.ready()
	bob.until("name_taken", `q("chat-status").textContent.includes("pick another") && !q("chat-name").closest("form").hidden`)
	bob.joinAs("bob")
	for _, b := range []*tab{alice, bob} {
		b.until("2 online", `q("chat-count").textContent === "2 online" && texts("[data-testid=chat-users] li").join() === "alice,bob"`)
	}
	alice.until("bob's join notice", `texts(".chat-notice").includes("bob joined")`)

	t.Run("text is text", func(t *testing.T) {
		payload := `<img src=x onerror="window.__pwned=1"><b>bold</b>`
		alice.say(payload)
		for _, b := range []*tab{alice, bob} {
			b.until("the message", `texts("[data-testid=chat-log] .chat-msg").some((s) => s.endsWith(`+strconv.Quote(payload)+`))`)
			if v := b.eval(`!!window.__pwned || !!document.querySelector("[data-testid=chat-log] img, [data-testid=chat-log] .chat-msg > b > b")`); v != false {
				t.Fatalf("%s: the message was rendered as HTML", b.name)
			}
		}
		if n := alice.eval(`document.querySelectorAll("[data-testid=chat-log] .chat-mine").length`); n != 1.0 {
			t.Fatalf("alice's own messages marked: %v, want 1", n)
		}
		if n := bob.eval(`document.querySelectorAll("[data-testid=chat-log] .chat-mine").length`); n != 0.0 {
			t.Fatalf("bob sees %v messages marked as his", n)
		}
	})

	t.Run("rename", func(t *testing.T) {
		bob.do(`q("chat-rename").click()`)
		bob.until("the name form", `!q("chat-name").closest("form").hidden && q("chat-name").value === "bob"`)
		bob.do(`set("chat-name", "ALICE"); q("chat-join").click()`)
		bob.until("name_taken", `q("chat-status").textContent.includes("pick another")`)
		bob.do(`set("chat-name", "robert"); q("chat-join").click()`)
		bob.until("the rename", `q("chat-status").textContent === "You are robert." && q("chat-name").closest("form").hidden`)
		alice.until("the notice", `texts(".chat-notice").includes("bob is now robert")`)
		alice.say("/nick al")
		bob.until("the /nick", `texts("[data-testid=chat-users] li").join() === "al,robert"`)
		if v := bob.eval(`document.querySelector("[data-testid=chat-users] li.chat-mine").textContent`); v != "robert" {
			t.Fatalf("bob's own entry: %v", v)
		}
	})

	t.Run("counter", func(t *testing.T) {
		alice.do(`set("chat-input", "é".repeat(501))`)
		if v := alice.eval(`q("chat-counter").textContent + " " + q("chat-counter").classList.contains("chat-over")`); v != "501/500 true" {
			t.Fatalf("counter: %v", v)
		}
		alice.do(`q("chat-send").click()`)
		if v := alice.eval(`q("chat-input").value.length`); v != 501.0 {
			t.Fatalf("an over-long message left the input: %v", v)
		}
		alice.do(`set("chat-input", "")`)
	})

	t.Run("no autoscroll while reading", func(t *testing.T) {
		for i := range 40 {
			alice.say(fmt.Sprint("line ", i))
		}
		bob.until("40 lines", `texts(".chat-msg").some((s) => s.endsWith("line 39"))`)
		bob.until("the log at the bottom", `(() => { const l = q("chat-log"); return l.scrollHeight > l.clientHeight && l.scrollHeight - l.scrollTop - l.clientHeight < 5 })()`)
		bob.do(`q("chat-log").scrollTop = 0`)
		alice.say("while bob reads")
		bob.until("the new message", `texts(".chat-msg").some((s) => s.endsWith("while bob reads"))`)
		if v := bob.eval(`q("chat-log").scrollTop === 0 && !q("chat-jump").hidden`); v != true {
			t.Fatalf("the log moved under a reader, or no jump button: %v", v)
		}
		bob.do(`q("chat-jump").click()`)
		alice.say("back at the bottom")
		bob.until("following again", `(() => { const l = q("chat-log"); return texts(".chat-msg").some((s) => s.endsWith("back at the bottom")) && l.scrollHeight - l.scrollTop - l.clientHeight < 5 })()`)
	})

	t.Run("a big room's presence summaries", func(t *testing.T) {
		// over PresenceLimit (2), joins and leaves come as summaries: the
		// count and list follow, without notices
		var guests []*client
		for _, name := range []string{"carol", "dave"} {
			c := dial(t, hs, "chat/party")
			c.send(map[string]string{"type": "join", "name": name})
			c.expect("welcome")
			guests = append(guests, c)
		}
		for _, b := range []*tab{alice, bob} {
			b.until("4 online", `q("chat-count").textContent === "4 online" && texts("[data-testid=chat-users] li").join() === "al,carol,dave,robert"`)
		}
		guests[1].conn.Close()
		for _, b := range []*tab{alice, bob} {
			b.until("3 online", `q("chat-count").textContent === "3 online" && texts("[data-testid=chat-users] li").join() === "al,carol,robert"`)
			if v := b.eval(`texts(".chat-notice").filter((s) => /carol|dave/.test(s)).join()`); v != "" {
				t.Fatalf("%s: notices in a big room: %v", b.name, v)
			}
		}
		guests[0].conn.Close() // back to 2: a leave event again
		alice.until("carol's leave notice", `texts(".chat-notice").includes("carol left") && q("chat-count").textContent === "2 online"`)
	})

	t.Run("reconnect", func(t *testing.T) {
		// the gateway restarts: both tabs come back under their names
		next := newServer()
		first.Close() // 1001 to everyone; reconnections reach next
		// the pages may still show their old state: wait for the new server
		eventually(t, "both tabs on the new server", func() bool { return next.Users("party") == 2 })
		for _, c := range []struct {
			b    *tab
			name string
		}{{alice, "al"}, {bob, "robert"}} {
			c.b.until("the rejoin", `q("chat-status").textContent === "You are `+c.name+`." && q("chat-count").textContent === "2 online"`)
		}
		alice.say("after the restart")
		bob.until("a message after the restart", `texts(".chat-msg").some((s) => s.endsWith("after the restart"))`)
	})
	if dir := os.Getenv("LIVEGATE_SCREENSHOTS"); dir != "" {
		if png, err := chromedp.Run(bob.ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(dir, "chat-panel.png"), png, 0o644)
		}
	}
}
