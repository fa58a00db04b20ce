package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// TestBrowserDevicePermissions: with the microphone denied the broadcaster
// goes live with video only and says so, the gateway makes its renditions
// and the viewer plays them; with the camera denied the page says why in
// plain words and does not go live.
//
// It uses Chromium's real permission path: the fake devices stay, the
// fake-UI flag (which grants every request) is dropped, and
// Browser.setPermission grants or denies "camera" and "microphone" for the
// gateway's origin, so getUserMedia rejects with NotAllowedError exactly as
// after a person's "Block". Nothing in the page is overridden.
func TestBrowserDevicePermissions(t *testing.T) {
	needTools(t)
	srv := startGateway(t, nil)
	b := newBrowser(t, chromedp.Flag("use-fake-ui-for-media-stream", false))
	cases := []struct {
		name       string
		camera     browser.PermissionSetting
		microphone browser.PermissionSetting
		text       string // in the page's state or note
		live       bool
	}{
		{"mic-denied", browser.PermissionSettingGranted, browser.PermissionSettingDenied, "Microphone blocked: live without sound.", true},
		{"camera-denied", browser.PermissionSettingDenied, browser.PermissionSettingGranted, "Camera blocked", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stream := "perm-" + c.name
			ctx, cancel := chromedp.NewContext(b)
			defer cancel()
			for name, setting := range map[string]browser.PermissionSetting{"camera": c.camera, "microphone": c.microphone} {
				if _, err := chromedp.Call(ctx, browser.SetPermission, browser.SetPermissionParams{
					Permission: &browser.PermissionDescriptor{Name: name}, Setting: setting, Origin: srv.URL,
				}); err != nil {
					t.Fatalf("set %s permission: %v", name, err)
				}
			}
			if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/broadcast?autostart=1&stream="+stream)); err != nil {
				t.Fatal(err)
			}
			pageText := `(document.getElementById("state").textContent + " " + document.getElementById("note").textContent)`
			evalUntil(t, ctx, 30*time.Second, "the page to say "+c.text, pageText+`.includes(`+jsString(c.text)+`)`)
			if !c.live {
				time.Sleep(2 * time.Second) // time enough to connect, were it trying
				if code, _ := get(t, srv.URL+"/api/streams/"+stream); code != 404 {
					t.Errorf("/api/streams/%s: %d, want 404 (not live)", stream, code)
				}
				if disabled, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("go").disabled`)); disabled {
					t.Error("Go live stays disabled after the camera was refused")
				}
				screenshot(t, ctx, "broadcast-"+c.name)
				return
			}
			evalUntil(t, ctx, 30*time.Second, "live", `!!(window.__livegate.status && window.__livegate.status.state === "live")`)
			if text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](pageText)); !strings.Contains(text, c.text) {
				t.Errorf("once live the page says %q, want it to keep %q", text, c.text)
			}
			tracks, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("preview").srcObject.getTracks().map(t => t.kind).join(",")`))
			if tracks != "video" {
				t.Errorf("published tracks %q, want video only", tracks)
			}
			code, body := get(t, srv.URL+"/api/streams/"+stream)
			var info struct {
				Live       bool `json:"live"`
				Renditions []struct {
					Name string `json:"name"`
				} `json:"renditions"`
			}
			if err := json.Unmarshal(body, &info); code != 200 || err != nil || !info.Live || len(info.Renditions) == 0 {
				t.Fatalf("/api/streams/%s: %d %s (%v)", stream, code, body, err)
			}
			if _, mv := get(t, srv.URL+"/live/"+stream+"/index.m3u8"); strings.Contains(string(mv), "mp4a") || strings.Contains(string(mv), "TYPE=AUDIO") {
				t.Errorf("a stream without sound lists audio:\n%s", mv)
			}
			screenshot(t, ctx, "broadcast-"+c.name)

			wctx, cancelW := chromedp.NewContext(b)
			defer cancelW()
			if err := chromedp.Do(wctx, chromedp.Navigate(srv.URL+"/watch/"+stream)); err != nil {
				t.Fatal(err)
			}
			evalUntil(t, wctx, 30*time.Second, "the video to start", `document.getElementById("video").currentTime > 0.5`)
			start, _ := chromedp.Run(wctx, chromedp.Evaluate[float64](`document.getElementById("video").currentTime`))
			evalUntil(t, wctx, 20*time.Second, "2 s of playback", `document.getElementById("video").currentTime > `+formatFloat(start+2))
			screenshot(t, wctx, "watch-"+c.name)
		})
	}
}

// TestBrowserNoCamera: Chromium without its fake devices, on a machine that
// has no camera (checked: no /dev/video*), rejects getUserMedia with
// NotFoundError; the broadcaster says so in plain words and does not go
// live. Nothing in the page is overridden.
func TestBrowserNoCamera(t *testing.T) {
	needTools(t)
	if devs, _ := filepath.Glob("/dev/video*"); len(devs) > 0 {
		t.Skipf("this machine has a camera (%v)", devs)
	}
	srv := startGateway(t, nil)
	b := newBrowser(t, chromedp.Flag("use-fake-device-for-media-stream", false))
	ctx, cancel := chromedp.NewContext(b)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/broadcast?autostart=1&stream=nocam")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 30*time.Second, "the page to say there is no camera",
		`document.getElementById("state").textContent.includes("No camera found")`)
	time.Sleep(2 * time.Second) // time enough to connect, were it trying
	if code, _ := get(t, srv.URL+"/api/streams/nocam"); code != 404 {
		t.Errorf("/api/streams/nocam: %d, want 404 (not live)", code)
	}
	screenshot(t, ctx, "broadcast-no-camera")
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowserGatewayRefusal: a WebSocket refused before the upgrade reaches
// the page as a bare close; the broadcaster asks the gateway why and shows
// the reason in plain words instead of retrying for ever.
func TestBrowserGatewayRefusal(t *testing.T) {
	needTools(t)
	srv := startGateway(t, func(c *config) { c.PublishKeys = []string{"sesame"} })
	b := newBrowser(t)
	for _, c := range []struct{ query, text string }{
		{"stream=refused", "This gateway needs a publish key or a token. (token_missing)"},
		{"stream=refused&key=wrong", "The publish key is wrong. (key_wrong)"},
	} {
		ctx, cancel := chromedp.NewContext(b)
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/broadcast?autostart=1&"+c.query)); err != nil {
			t.Fatal(err)
		}
		evalUntil(t, ctx, 30*time.Second, "the page to say "+c.text,
			`document.getElementById("state").textContent === `+jsString(c.text)+` && !document.getElementById("go").disabled`)
		if c.query == "stream=refused&key=wrong" {
			screenshot(t, ctx, "broadcast-key-wrong")
		}
		cancel()
	}
}
