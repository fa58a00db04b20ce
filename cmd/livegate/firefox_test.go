//go:build unix

package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/gorilla/websocket"
)

// firefoxPrefs is the user.js of a test profile: fake camera and microphone
// granted without a prompt, autoplay allowed, no first-run pages, no
// updates or other background traffic, and no video suspended in a window
// that is not in front.
const firefoxPrefs = `user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.autoplay.default", 0);
user_pref("media.autoplay.blocking_policy", 0);
user_pref("media.suspend-bkgnd-video.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("startup.homepage_welcome_url", "");
user_pref("startup.homepage_welcome_url.additional", "");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.auto", false);
user_pref("extensions.update.enabled", false);
user_pref("media.gmp-manager.updateEnabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("network.proxy.type", 0);
user_pref("dom.push.connection.enabled", false);
`

// firefox is a headless Firefox ESR on a fresh profile, reached through
// its built-in WebDriver BiDi endpoint (no geckodriver, nothing in the
// pages): tests read page state and take screenshots with it.
type firefox struct {
	conn     *websocket.Conn
	next     int
	jsErrors []string // errors the pages logged or threw, from log.entryAdded events
	mu       sync.Mutex
	log      *strings.Builder
}

// newFirefox starts firefox-esr on url in its own process group and kills
// the group when the test ends. It skips when firefox-esr is missing
// locally; CI installs it (scripts/deps --test), so there it always runs.
func newFirefox(t *testing.T, url string) *firefox {
	t.Helper()
	path := needTool(t, "firefox-esr")
	profile := t.TempDir()
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--headless", "--no-remote", "--profile", profile,
		"--remote-debugging-port", "0", "--window-size", "1280,900", url)
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start firefox: %v", err)
	}
	f := &firefox{log: &strings.Builder{}}
	t.Cleanup(func() { stopGroup(t, cmd) })
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			f.mu.Lock()
			if f.log.Len() < 64<<10 {
				f.log.WriteString(line + "\n")
			}
			f.mu.Unlock()
			if addr, ok := strings.CutPrefix(line, "WebDriver BiDi listening on "); ok {
				endpoint <- addr
			}
		}
	}()
	select {
	case addr := <-endpoint:
		f.conn, _, err = websocket.DefaultDialer.Dial(addr+"/session", nil)
		if err != nil {
			t.Fatalf("firefox bidi: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("firefox did not start its BiDi endpoint in 60 s; stderr:\n%s", f.stderr())
	}
	t.Cleanup(func() { f.conn.Close() })
	if _, err := f.call("session.new", map[string]any{"capabilities": map[string]any{}}); err != nil {
		t.Fatalf("firefox session: %v", err)
	}
	if _, err := f.call("session.subscribe", map[string]any{"events": []string{"log.entryAdded"}}); err != nil {
		t.Fatalf("firefox log events: %v", err)
	}
	return f
}

// stopGroup ends a process and every process in its group (SIGTERM, then
// SIGKILL after 5 s), waits for it, and fails the test if any is left.
func stopGroup(t *testing.T, cmd *exec.Cmd) {
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-done
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of group %d still running", pgid)
			return
		}
	}
}

func (f *firefox) stderr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.log.String()
}

// call sends one BiDi command and returns its result; of the events that
// come before it, it keeps the pages' errors.
func (f *firefox) call(method string, params any) (json.RawMessage, error) {
	f.next++
	id := f.next
	f.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	f.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := f.conn.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	for {
		var m struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Method  string `json:"method"`
			Params  struct{ Level, Text string }
			Result  json.RawMessage `json:"result"`
			Error   string          `json:"error"`
			Message string          `json:"message"`
		}
		if err := f.conn.ReadJSON(&m); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if m.Method == "log.entryAdded" && m.Params.Level == "error" {
			f.jsErrors = append(f.jsErrors, m.Params.Text)
		}
		if m.Type != "success" && m.Type != "error" || m.ID != id {
			continue
		}
		if m.Type == "error" {
			return nil, fmt.Errorf("%s: %s: %s", method, m.Error, m.Message)
		}
		return m.Result, nil
	}
}

// tab returns the browsing context whose URL contains part, or a new
// window opened on url when part is "".
func (f *firefox) tab(t *testing.T, part, url string) string {
	t.Helper()
	if part == "" {
		res, err := f.call("browsingContext.create", map[string]any{"type": "window"})
		if err != nil {
			t.Fatal(err)
		}
		var c struct{ Context string }
		json.Unmarshal(res, &c)
		if _, err := f.call("browsingContext.navigate", map[string]any{"context": c.Context, "url": url, "wait": "complete"}); err != nil {
			t.Fatal(err)
		}
		return c.Context
	}
	res, err := f.call("browsingContext.getTree", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	var tree struct {
		Contexts []struct{ Context, URL string }
	}
	json.Unmarshal(res, &tree)
	for _, c := range tree.Contexts {
		if strings.Contains(c.URL, part) {
			return c.Context
		}
	}
	t.Fatalf("no page at %s among %+v", part, tree.Contexts)
	return ""
}

// eval evaluates a JavaScript expression in a page and decodes its
// (JSON.stringify'd) value into v.
func (f *firefox) eval(ctx, expr string, v any) error {
	res, err := f.call("script.evaluate", map[string]any{
		"expression": "JSON.stringify(" + expr + ")", "target": map[string]any{"context": ctx}, "awaitPromise": false,
	})
	if err != nil {
		return err
	}
	var r struct {
		Type             string
		Result           struct{ Value string }
		ExceptionDetails struct{ Text string }
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return err
	}
	if r.Type != "success" {
		return fmt.Errorf("%s: %s", expr, r.ExceptionDetails.Text)
	}
	return json.Unmarshal([]byte(r.Result.Value), v)
}

// until polls a JavaScript expression in a page until it is true.
func (f *firefox) until(t *testing.T, ctx string, within time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ok bool
		if err := f.eval(ctx, expr, &ok); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var state string
			f.eval(ctx, `JSON.stringify(window.__livegate||null, (k,v)=> (k==="hls"||k==="video")?undefined:v) + " " + (document.getElementById("state")||{}).textContent`, &state)
			t.Fatalf("timed out after %s waiting for %s; page state: %s", within, what, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// screenshot saves a PNG of a page into $LIVEGATE_SCREENSHOTS (or the
// test's temporary directory).
func (f *firefox) screenshot(t *testing.T, ctx, name string) {
	t.Helper()
	res, err := f.call("browsingContext.captureScreenshot", map[string]any{"context": ctx, "origin": "document"})
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	var r struct{ Data string }
	json.Unmarshal(res, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := os.Getenv("LIVEGATE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}

// TestFirefox: Firefox ESR publishes its fake camera and microphone with
// /broadcast?autostart=1 (VP8/Opus WebM), the gateway makes its ladder,
// a second Firefox window plays it with hls.js, and after Stop every
// segment decodes.
func TestFirefox(t *testing.T) {
	needTools(t)
	srv := startGateway(t, nil)
	const stream = "firefox"
	f := newFirefox(t, srv.URL+"/broadcast?autostart=1&stream="+stream)
	var info struct {
		Live       bool
		Renditions []struct{ Name string }
	}
	waitFor(t, 90*time.Second, "the stream to be live with renditions", func() bool {
		code, b := get(t, srv.URL+"/api/streams/"+stream)
		return code == 200 && json.Unmarshal(b, &info) == nil && info.Live && len(info.Renditions) > 0
	})
	bc := f.tab(t, "/broadcast", "")
	var mime string
	if err := f.eval(bc, `document.getElementById("s-mime").textContent`, &mime); err != nil || !strings.Contains(mime, "vp8") {
		t.Errorf("Firefox records %q (%v), want VP8", mime, err)
	}
	f.until(t, bc, 30*time.Second, "the page to say Live", `document.getElementById("state").textContent.startsWith("Live")`)

	wc := f.tab(t, "", srv.URL+"/watch/"+stream)
	f.until(t, wc, 45*time.Second, "the video to start", `document.getElementById("video").currentTime > 0.5`)
	var start float64
	f.eval(wc, `document.getElementById("video").currentTime`, &start)
	f.until(t, wc, 30*time.Second, "3 s of playback", fmt.Sprintf(`document.getElementById("video").currentTime > %.3f`, start+3))
	var fatal []string
	if err := f.eval(wc, `window.__livegate.errors`, &fatal); err != nil || len(fatal) > 0 {
		t.Errorf("hls.js fatal errors in Firefox: %v %v", fatal, err)
	}
	f.screenshot(t, wc, "firefox-watch")
	f.screenshot(t, bc, "firefox-broadcast")
	hc := f.tab(t, "", srv.URL+"/")
	f.until(t, hc, 20*time.Second, "the stream's card with its thumbnail on the home page",
		`[...document.querySelectorAll("#streams img")].some(i => i.complete && i.naturalWidth > 0)`)
	f.screenshot(t, hc, "firefox-home")

	var stopped bool
	if err := f.eval(bc, `(document.getElementById("stop").click(), true)`, &stopped); err != nil {
		t.Fatal(err)
	}
	f.until(t, bc, 10*time.Second, "the page to say Not live", `document.getElementById("state").textContent === "Not live."`)
	code, body := get(t, srv.URL+"/live/"+stream+"/index.m3u8")
	var mv playlist.Multivariant
	if err := mv.Unmarshal(body); code != 200 || err != nil {
		t.Fatalf("index.m3u8: %d %v\n%s", code, err, body)
	}
	checkEnded(t, srv.URL+"/live/"+stream+"/", &mv)

	// camera only, by choice: the recorder drops the audio codec from its format
	const silent = "firefox-silent"
	var clicked bool
	if err := f.eval(bc, `(document.getElementById("name").value = "`+silent+`", document.getElementById("mic").value = "none",
		document.getElementById("go").click(), true)`, &clicked); err != nil {
		t.Fatal(err)
	}
	f.until(t, bc, 30*time.Second, "live without sound", `document.getElementById("state").textContent.startsWith("Live") &&
		document.getElementById("note").textContent === "No microphone chosen: live without sound."`)
	if err := f.eval(bc, `document.getElementById("s-mime").textContent`, &mime); err != nil || strings.Contains(mime, "opus") {
		t.Errorf("Firefox records %q (%v) for video only", mime, err)
	}
	if code, b := get(t, srv.URL+"/live/"+silent+"/index.m3u8"); code != 200 || strings.Contains(string(b), "TYPE=AUDIO") {
		t.Errorf("camera-only stream: %d\n%s", code, b)
	}
	f.screenshot(t, bc, "firefox-broadcast-silent")
	if len(f.jsErrors) > 0 {
		t.Errorf("the pages logged errors in Firefox: %q", f.jsErrors)
	}
	if t.Failed() {
		t.Logf("firefox stderr:\n%s", f.stderr())
	}
}
