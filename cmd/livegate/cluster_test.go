package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/livegate/livegate/internal/natstest"
)

// runLogged is runGateway, with the gateway's log shown when the test
// fails (or LIVEGATE_TEST_LOGS is set).
func runLogged(t *testing.T, name, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() || os.Getenv("LIVEGATE_TEST_LOGS") != "" {
			mu.Lock()
			t.Logf("gateway %s log:\n%s", name, strings.Join(lines, "\n"))
			mu.Unlock()
		}
	})
	addr := ""
	sc := bufio.NewScanner(stderr)
	for addr == "" && sc.Scan() {
		lines = append(lines, sc.Text())
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("gateway %s stopped before it listened:\n%s", name, strings.Join(lines, "\n"))
	}
	go func() {
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	return cmd, addr
}

// liveSession reads status frames until the state is live and returns
// the session.
func liveSession(t *testing.T, p *publisher, within time.Duration) string {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case m, ok := <-p.status:
			if !ok {
				t.Fatalf("publisher closed before it was live: %v", p.err)
			}
			if m["type"] == "status" && m["state"] == "live" {
				return m["session"].(string)
			}
		case <-timeout:
			t.Fatalf("publisher not live within %s", within)
		}
	}
}

func getURL(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// listed reports whether base's /api/streams lists stream.
func listed(t *testing.T, base, stream string) bool {
	t.Helper()
	code, body := getURL(t, base+"/api/streams")
	var list []struct{ Name string }
	return code == 200 && json.Unmarshal(body, &list) == nil && func() bool {
		for _, s := range list {
			if s.Name == stream {
				return true
			}
		}
		return false
	}()
}

// metric reads one sample of base's /metrics ("name" or `name{labels}`).
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	_, body := getURL(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` ([0-9.e+-]+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// chatMember joins a chat room over the WebSocket and returns the
// connection after its welcome.
func chatMember(t *testing.T, base, room, name string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/chat/"+room, nil)
	if err != nil {
		t.Fatalf("chat %s: %v", base, err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.WriteJSON(map[string]string{"type": "join", "name": name})
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m map[string]any
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("chat welcome: %v", err)
		}
		if m["type"] == "welcome" {
			return conn
		}
	}
}

// TestClusterServeAnywhere runs two gateways (the binary) on one NATS
// server: a stream published on A is listed, described, watched (ffmpeg
// reads its HLS) and talked about through B; a second publisher of the
// name on B gets 409; killed with SIGKILL, A's stream leaves B's list
// within 5 s.
func TestClusterServeAnywhere(t *testing.T) {
	needTools(t)
	nats := natstest.Start(t)
	bin := buildGateway(t)
	procA, addrA := runGateway(t, bin, "--nats-url", nats)
	_, addrB := runGateway(t, bin, "--nats-url", nats)
	A, B := "http://"+addrA, "http://"+addrB

	pub := publishAt(t, "ws://"+addrA+"/ingest/both", "640x360", 60)
	liveSession(t, pub, 60*time.Second)
	waitFor(t, 10*time.Second, "B to list the stream", func() bool { return listed(t, B, "both") })

	code, body := getURL(t, B+"/live/both/index.m3u8")
	var mv playlist.Multivariant
	if code != 200 || mv.Unmarshal(body) != nil || len(mv.Variants) != 1 {
		t.Fatalf("multivariant through B: %d\n%s", code, body)
	}
	var info struct {
		Live       bool
		Renditions []struct{ Height int }
	}
	// the renditions reach the directory with A's next refresh (every TTL/3)
	var code2 int
	var body2 []byte
	waitFor(t, 10*time.Second, "/api/streams/both through B with its rendition", func() bool {
		code2, body2 = getURL(t, B+"/api/streams/both")
		return code2 == 200 && json.Unmarshal(body2, &info) == nil && len(info.Renditions) == 1
	})
	if !info.Live || info.Renditions[0].Height != 360 {
		t.Errorf("/api/streams/both through B: %d %s", code2, body2)
	}
	if code, _ := getURL(t, B+"/watch/both"); code != 200 {
		t.Errorf("/watch/both through B: %d", code)
	}
	// a real client reads the HLS through B
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-i", B+"/live/both/index.m3u8",
		"-t", "3", "-f", "null", "-").CombinedOutput(); err != nil {
		t.Errorf("ffmpeg reading through B: %v\n%s", err, out)
	}

	// one publisher per stream, cluster-wide
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addrB+"/ingest/both", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("second publisher on B: %v %v, want 409", resp, err)
	} else {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		if e.Error != "busy" {
			t.Errorf("second publisher on B: error %q, want busy", e.Error)
		}
	}

	// chat across the gateways
	alice, bob := chatMember(t, A, "both", "alice"), chatMember(t, B, "both", "bob")
	bob.WriteJSON(map[string]string{"type": "message", "text": "hello from B"})
	alice.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m map[string]any
		if err := alice.ReadJSON(&m); err != nil {
			t.Fatalf("alice on A got no message from bob on B: %v", err)
		}
		if m["type"] == "message" && m["text"] == "hello from B" {
			break
		}
	}

	if v := metric(t, B, `livegate_cluster_proxy_requests_total{result="ok"}`); v < 1 {
		t.Errorf("B's proxied requests: %v", v)
	}
	if v := metric(t, A, "livegate_cluster_own_claims"); v != 1 {
		t.Errorf("A's own claims: %v", v)
	}
	if v := metric(t, B, "livegate_cluster_nats_connected"); v != 1 {
		t.Errorf("B's NATS connected: %v", v)
	}

	// A dies: its stream leaves B's list within 5 s
	procA.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	waitFor(t, 10*time.Second, "B to drop A's stream", func() bool { return !listed(t, B, "both") })
	gone := time.Since(killed)
	t.Logf("A's stream left B's list %s after SIGKILL", gone)
	if gone > 5*time.Second {
		t.Errorf("A's stream stayed listed %s after A died, want 5 s at most", gone)
	}
	waitFor(t, 10*time.Second, "404 through B", func() bool {
		code, _ := getURL(t, B+"/live/both/index.m3u8")
		return code == http.StatusNotFound
	})
}

// TestClusterRollingRestart restarts the gateway that ingests a stream
// (SIGTERM, the binary): its publisher is told 1012 "restart", resumes
// its session on the other gateway, which takes the stream over: the
// media sequence numbers go on after a discontinuity, and hls.js playing
// through the other gateway keeps playing with no error.
func TestClusterRollingRestart(t *testing.T) {
	needTools(t)
	nats := natstest.Start(t)
	bin := buildGateway(t)
	procA, addrA := runLogged(t, "A", bin, "--nats-url", nats)
	_, addrB := runLogged(t, "B", bin, "--nats-url", nats)
	B := "http://" + addrB

	first := publishAt(t, "ws://"+addrA+"/ingest/roll", "640x360", 120)
	session := liveSession(t, first, 60*time.Second)

	// a player through B, and a follower of B's media playlist
	browser := newBrowser(t)
	wctx, cancelW := chromedp.NewContext(browser)
	defer cancelW()
	if err := chromedp.Do(wctx, chromedp.Navigate(B+"/watch/roll")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 60*time.Second, "the video to play through B", `document.getElementById("video").currentTime > 1`)
	follow := followPlaylist(t, B+"/live/roll/360p/video1_stream.m3u8")

	procA.Process.Signal(syscall.SIGTERM)
	termAt := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- procA.Wait() }()
	var lastErr map[string]any
	for m := range first.status {
		if m["type"] == "error" {
			lastErr = m
		}
	}
	ce, ok := first.err.(*websocket.CloseError)
	if !ok || ce.Code != websocket.CloseServiceRestart || lastErr == nil || lastErr["code"] != "restart" {
		t.Fatalf("publisher on A: close %v, error %v; want 1012 restart", first.err, lastErr)
	}
	second := publishAt(t, "ws://"+addrB+"/ingest/roll?session="+session, "640x360", 120)
	if got := liveSession(t, second, 60*time.Second); got != session {
		t.Errorf("session on B %q, want %q", got, session)
	}
	t.Logf("the publisher was live again on B %s after SIGTERM to A", time.Since(termAt))
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("A after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("A still running 30 s after SIGTERM")
	}

	// the playlist through B goes on: B's segments after A's, the first
	// a discontinuity
	var lists []*playlist.Media
	waitFor(t, 60*time.Second, "B's own segments in its playlist", func() bool {
		lists = follow.lists()
		if len(lists) < 2 {
			return false
		}
		last := lists[len(lists)-1]
		return len(last.Segments) > 1 && prefix(last.Segments[len(last.Segments)-1].URI) != prefix(lists[0].Segments[len(lists[0].Segments)-1].URI)
	})
	checkContinued(t, lists)
	if v := metric(t, B, `livegate_cluster_takeovers_total{from="handoff"}`); v != 1 {
		t.Errorf("B's takeovers from a handoff: %v, want 1", v)
	}

	// the player goes on
	at, err := chromedp.Run(wctx, chromedp.Evaluate[float64](`document.getElementById("video").currentTime`))
	if err != nil {
		t.Fatal(err)
	}
	evalUntil(t, wctx, 60*time.Second, "5 s more of playback after the takeover",
		`document.getElementById("video").currentTime > `+formatFloat(at+5))
	if fatal, err := chromedp.Run(wctx, chromedp.Evaluate[[]string](`window.__livegate.errors`)); err != nil || len(fatal) > 0 {
		t.Errorf("hls.js errors through the takeover: %v %v", fatal, err)
	}
}

// prefix is the muxer prefix of a segment name: each gateway's muxers
// have their own.
func prefix(uri string) string {
	p, _, _ := strings.Cut(uri, "_")
	return p
}

// checkContinued checks a series of a media playlist's versions across a
// takeover: media sequence numbers never go back, the new gateway's
// first segment comes after every segment of the old one and is marked as
// a discontinuity.
func checkContinued(t *testing.T, lists []*playlist.Media) {
	t.Helper()
	oldPrefix := prefix(lists[0].Segments[len(lists[0].Segments)-1].URI)
	lastOld, firstNew := -1, -1
	seq := 0
	for _, pl := range lists {
		if pl.MediaSequence < seq {
			t.Errorf("media sequence went back from %d to %d", seq, pl.MediaSequence)
		}
		seq = pl.MediaSequence
		for i, s := range pl.Segments {
			msn := pl.MediaSequence + i
			if s.Gap {
				continue
			}
			if prefix(s.URI) == oldPrefix {
				lastOld = max(lastOld, msn)
			} else if firstNew < 0 || msn < firstNew {
				firstNew = msn
				if !s.Discontinuity {
					body, _ := pl.Marshal()
					t.Errorf("the new gateway's first segment %d is not a discontinuity:\n%s", msn, body)
				}
			}
		}
	}
	t.Logf("old gateway's last segment %d, new gateway's first %d", lastOld, firstNew)
	if firstNew <= lastOld || lastOld < 0 {
		t.Errorf("the new gateway's first segment %d does not follow the old one's last %d", firstNew, lastOld)
	}
}

// follower polls a media playlist and keeps every version it reads.
type follower struct {
	got  chan *playlist.Media
	seen []*playlist.Media
}

func followPlaylist(t *testing.T, url string) *follower {
	f := &follower{got: make(chan *playlist.Media, 10000)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		var last []byte
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var pl playlist.Media
				if resp.StatusCode == 200 && !bytes.Equal(body, last) && pl.Unmarshal(body) == nil && len(pl.Segments) > 0 {
					last = body
					f.got <- &pl
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return f
}

// lists returns every version read so far.
func (f *follower) lists() []*playlist.Media {
	for {
		select {
		case pl := <-f.got:
			f.seen = append(f.seen, pl)
		default:
			return f.seen
		}
	}
}
