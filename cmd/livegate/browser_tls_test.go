package main

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// liveTest is the host name the browser tests give the gateway: not
// localhost, so that Chromium treats its pages as it treats any remote
// site's. Chromium resolves it to 127.0.0.1.
const liveTest = "live.test"

// TestBrowserHTTPS: a broadcaster on a remote-looking origin over HTTPS
// (the binary with --tls-cert and --tls-key, a self-signed certificate for
// live.test that Chromium trusts by its public key only) goes live from
// /broadcast?autostart=1, and the stream is live with renditions.
func TestBrowserHTTPS(t *testing.T) {
	needTools(t)
	bin := buildGateway(t)
	cert := newTestCert(t, liveTest)
	certFile, keyFile := cert.write(t, t.TempDir())
	gw := startProc(t, bin, nil, "--tls-cert", certFile, "--tls-key", keyFile)
	_, port, _ := net.SplitHostPort(gw.addr)
	base := "https://" + liveTest + ":" + port
	browser := newBrowser(t,
		chromedp.Flag("host-resolver-rules", "MAP "+liveTest+" 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors-spki-list", cert.spki()))
	ctx, cancel := chromedp.NewContext(browser)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/broadcast?stream=tlslive&autostart=1")); err != nil {
		t.Fatal(err)
	}
	if secure, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.isSecureContext`)); !secure {
		t.Fatal("the page over https://live.test is not a secure context: the certificate is not trusted")
	}
	evalUntil(t, ctx, 60*time.Second, "the broadcaster to be live over HTTPS",
		`!!(window.__livegate && window.__livegate.status && window.__livegate.status.state === "live")`)
	screenshot(t, ctx, "broadcast-https")

	roots := x509.NewCertPool()
	roots.AddCert(cert.cert)
	client := clientFor(roots, gw.addr)
	var stream map[string]any
	waitFor(t, 30*time.Second, "/api/streams/tlslive live with renditions", func() bool {
		code, m := apiStream(t, client, base, "tlslive")
		stream = m
		r, _ := m["renditions"].([]any)
		return code == 200 && m["live"] == true && len(r) > 0
	})
	t.Logf("live over HTTPS: %v", stream["renditions"])
}

// TestBrowserInsecureOrigin: the broadcaster page over plain HTTP on a host
// name that is not localhost gets no camera from the browser; it says so
// in plain words and does not go live. Over http://127.0.0.1 (a secure
// context) the same page has no such message.
func TestBrowserInsecureOrigin(t *testing.T) {
	needTools(t)
	srv := startGateway(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	browser := newBrowser(t, chromedp.Flag("host-resolver-rules", "MAP "+liveTest+" 127.0.0.1"))
	ctx, cancel := chromedp.NewContext(browser)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+liveTest+":"+port+"/broadcast?stream=plainhttp&autostart=1")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 15*time.Second, "the secure-connection message",
		`document.getElementById("state").textContent.includes("The camera needs a secure connection") &&
		 document.getElementById("state").className === "state-error" &&
		 window.__livegate.errors.some((e) => e.code === "insecure")`)
	screenshot(t, ctx, "broadcast-insecure")
	if secure, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.isSecureContext`)); secure {
		t.Error("http://live.test is a secure context here: the test proves nothing")
	}
	time.Sleep(2 * time.Second) // time enough to have connected, had it tried
	if code, body := get(t, srv.URL+"/api/streams/plainhttp"); code == 200 && strings.Contains(string(body), `"live":true`) {
		t.Errorf("the stream went live over plain HTTP: %s", body)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/broadcast?stream=loopback")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 10*time.Second, "the page on 127.0.0.1", `document.readyState === "complete" && !!window.__livegate`)
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`window.isSecureContext + " " + document.getElementById("state").textContent`))
	if state != "true Not live." {
		t.Errorf("on http://127.0.0.1: %q, want a secure context and no message", state)
	}
}
