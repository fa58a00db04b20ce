package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/internal/natstest"
	"github.com/livegate/livegate/web"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startDirectory starts a Directory with a TTL of 1 s on url.
func startDirectory(t testing.TB, url string) *Directory {
	t.Helper()
	d := &Directory{NATSURL: url, Advertise: "http://127.0.0.1:1", TTL: time.Second, Grace: 5 * time.Second, Wait: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// eventually polls cond for up to within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func status(err error) int {
	var e *access.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// TestClaims: one publisher per name across gateways; a session resumed
// elsewhere is taken over (the old gateway's claim is lost); a stopping
// session makes its resumer wait for the handoff, which hands over the
// final state; a released or abandoned claim leaves the others' lists.
// BenchmarkClaim is what a publisher's claim of a name costs on the
// directory (the bucket's atomic create, on an embedded server over
// loopback) and its release, one name after the other.
func BenchmarkClaim(b *testing.B) {
	d := startDirectory(b, natstest.Start(b))
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		c, err := d.Claim(ctx, ingest.ClaimRequest{Stream: fmt.Sprint("s", i), Session: fmt.Sprint("S", i)})
		if err != nil {
			b.Fatal(err)
		}
		c.Release()
	}
}

func TestClaims(t *testing.T) {
	url := natstest.Start(t)
	d1, d2 := startDirectory(t, url), startDirectory(t, url)
	ctx := context.Background()
	lost1 := make(chan struct{})
	c1, err := d1.Claim(ctx, ingest.ClaimRequest{Stream: "s", Session: "S1", Lost: func() { close(lost1) }})
	if err != nil || c1.Session() != "S1" || c1.Resume() != nil {
		t.Fatalf("first claim: %v %v", c1, err)
	}
	for _, resume := range []string{"", "S2", "S1x"} {
		if _, err := d2.Claim(ctx, ingest.ClaimRequest{Stream: "s", Session: "S2", Resume: resume}); status(err) != http.StatusConflict {
			t.Errorf("second claim resuming %q: %v, want 409", resume, err)
		}
	}
	eventually(t, 5*time.Second, "d2 to list s", func() bool { _, ok := d2.listed()["s"]; return ok })
	c1.Follow(func() []byte { return []byte(`{"at":1}`) })
	eventually(t, 5*time.Second, "the state in the entry", func() bool { e, _ := d2.lookup("s"); return string(e.Output) == `{"at":1}` })

	// the publisher resumes its session on d2 while d1 still runs
	c2, err := d2.Claim(ctx, ingest.ClaimRequest{Stream: "s", Session: "S2", Resume: "S1"})
	if err != nil || c2.Session() != "S1" || c2.Resume() == nil || c2.Resume().Exact || string(c2.Resume().State) != `{"at":1}` {
		t.Fatalf("takeover: %v %+v", err, c2)
	}
	select {
	case <-lost1:
	case <-time.After(5 * time.Second):
		t.Fatal("d1 was not told it lost s")
	}

	// d2 stops: a resumer on d1 waits for the handoff and gets its state
	c2.Stopping()
	got := make(chan ingest.Claim, 1)
	go func() {
		c, err := d1.Claim(ctx, ingest.ClaimRequest{Stream: "s", Session: "S3", Resume: "S1"})
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	select {
	case <-got:
		t.Fatal("a resumer took a stopping session over before its handoff")
	case <-time.After(300 * time.Millisecond):
	}
	c2.Handoff([]byte(`{"final":1}`))
	var c3 ingest.Claim
	select {
	case c3 = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the resumer did not get the handed-off session")
	}
	if c3 == nil || c3.Session() != "S1" || !c3.Resume().Exact || string(c3.Resume().State) != `{"final":1}` {
		t.Fatalf("after handoff: %+v", c3)
	}
	if v := testutil.ToFloat64(d1.takeovers.WithLabelValues("handoff")); v != 1 {
		t.Errorf("takeovers from a handoff: %v", v)
	}
	c3.Release()
	eventually(t, 5*time.Second, "s to leave d2's list", func() bool { _, ok := d2.listed()["s"]; return !ok })
	if _, ok := d2.lookup("s"); ok {
		t.Error("a released stream is still in the directory")
	}

	// a gateway that dies: its claim expires (TTL 1 s)
	d3 := startDirectory(t, url)
	if _, err := d3.Claim(ctx, ingest.ClaimRequest{Stream: "dead", Session: "D"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "d1 to list dead", func() bool { _, ok := d1.listed()["dead"]; return ok })
	d3.Close()
	stopped := time.Now()
	eventually(t, 5*time.Second, "the dead gateway's stream to leave", func() bool { _, ok := d1.listed()["dead"]; return !ok })
	t.Logf("left %s after its gateway stopped (TTL 1 s)", time.Since(stopped))
	if _, err := d1.Claim(ctx, ingest.ClaimRequest{Stream: "dead", Session: "N"}); err != nil {
		t.Errorf("claim of an expired name: %v", err)
	}
}

// cutter is a TCP proxy to a NATS server whose connections can be cut
// (and new ones refused) and let through again: a network partition.
type cutter struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	down    bool
	conns   []net.Conn
}

func newCutter(t *testing.T, backend string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, backend: strings.TrimPrefix(backend, "nats://")}
	t.Cleanup(func() { ln.Close(); c.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			down := c.down
			c.mu.Unlock()
			if down {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", c.backend)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

func (c *cutter) url() string { return "nats://" + c.ln.Addr().String() }

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

func (c *cutter) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = false
}

// TestPartition cuts a gateway off NATS: new publishers there are refused
// with 503, its claim expires and another gateway's publisher takes the
// name; when the partition heals, the cut-off gateway learns it lost the
// claim (its publisher is to end): never two publishers once healed.
func TestPartition(t *testing.T) {
	url := natstest.Start(t)
	link := newCutter(t, url)
	cut, other := startDirectory(t, link.url()), startDirectory(t, url)
	ctx := context.Background()
	lost := make(chan struct{})
	if _, err := cut.Claim(ctx, ingest.ClaimRequest{Stream: "p", Session: "A", Lost: func() { close(lost) }}); err != nil {
		t.Fatal(err)
	}
	link.cut()
	eventually(t, 5*time.Second, "the cut-off gateway to notice", func() bool { return !cut.connected() })
	if _, err := cut.Claim(ctx, ingest.ClaimRequest{Stream: "q", Session: "Q"}); status(err) != http.StatusServiceUnavailable {
		t.Errorf("claim while cut off: %v, want 503", err)
	}
	// the name is free once the claim expired on the server
	var err error
	eventually(t, 10*time.Second, "the other gateway to claim p", func() bool {
		_, err = other.Claim(ctx, ingest.ClaimRequest{Stream: "p", Session: "B"})
		return err == nil
	})
	select {
	case <-lost:
		t.Fatal("lost while cut off: it cannot know")
	default:
	}
	link.heal()
	select {
	case <-lost:
	case <-time.After(15 * time.Second):
		t.Fatal("the healed gateway did not learn it lost p")
	}
	if e, ok := other.lookup("p"); !ok || e.Gateway != other.ID() || e.Session != "B" {
		t.Errorf("after the heal p is %+v %v, want the other gateway's", e, ok)
	}
}

// emptyLocal is a gateway with no stream of its own.
type emptyLocal struct{}

func (emptyLocal) Stream(string) web.Stream { return nil }
func (emptyLocal) Names() []string          { return nil }
func (emptyLocal) Live(string) bool         { return false }

// TestCollapse proxies a remote stream: twenty viewers blocked on the
// same playlist part make one upstream request (without their token, with
// the proxy's own view token for a private stream), one more just after
// gets the kept answer, and segments are fetched once.
func TestCollapse(t *testing.T) {
	url := natstest.Start(t)
	d := startDirectory(t, url)
	tokens := access.Tokens{Secret: []byte("0123456789abcdef0123456789abcdef")}
	release := make(chan struct{})
	var hits sync.Map // path?query -> *atomic.Int32
	var auth atomic.Value
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := hits.LoadOrStore(r.URL.RequestURI(), new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		auth.Store(r.Header.Get("Authorization"))
		if strings.HasSuffix(r.URL.Path, ".m3u8") {
			<-release
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
			w.Write([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:1\n"))
			return
		}
		w.Write([]byte("segment bytes"))
	}))
	defer owner.Close()
	e := Entry{Gateway: "other", URL: owner.URL, Session: "S", State: StateLive, Private: true, Started: time.Now()}
	data, _ := json.Marshal(e)
	if _, err := d.kv.Create(context.Background(), "s", data, jetstream.KeyTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the entry", func() bool { _, ok := d.lookup("s"); return ok })
	c := &Catalog{Local: emptyLocal{}, Directory: d, Tokens: tokens, Logger: d.Logger}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if names := c.Names(); len(names) != 1 || names[0] != "s" {
		t.Errorf("names %v", names)
	}
	st := c.Stream("s")
	if _, ok := st.(*remote); !ok || !st.Private() || !st.Info().Live {
		t.Fatalf("stream s: %T %+v", st, st.Info())
	}
	const viewers = 20
	const file = "360p/video1_stream.m3u8"
	ask := func(query string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		c.Stream("s").ServeFile(rec, httptest.NewRequest("GET", "/live/s/"+file+"?"+query, nil), file)
		return rec
	}
	answers := make(chan *httptest.ResponseRecorder, viewers)
	for i := range viewers {
		go func() { answers <- ask("_HLS_part=1&_HLS_msn=12&token=viewer" + string(rune('a'+i))) }()
	}
	eventually(t, 10*time.Second, "the viewers to wait on one request", func() bool {
		return testutil.ToFloat64(c.collapsed.WithLabelValues("waited")) == viewers-1
	})
	close(release)
	for range viewers {
		if rec := <-answers; rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "#EXTM3U") {
			t.Errorf("viewer: %d %s", rec.Code, rec.Body)
		}
	}
	if rec := ask("_HLS_msn=12&_HLS_part=1"); rec.Code != 200 || testutil.ToFloat64(c.collapsed.WithLabelValues("kept")) != 1 {
		t.Errorf("a viewer just after: %d, kept %v", rec.Code, testutil.ToFloat64(c.collapsed.WithLabelValues("kept")))
	}
	for range 3 {
		rec := httptest.NewRecorder()
		c.Stream("s").ServeFile(rec, httptest.NewRequest("GET", "/live/s/360p/seg7.mp4", nil), "360p/seg7.mp4")
		if rec.Body.String() != "segment bytes" {
			t.Errorf("segment: %d %s", rec.Code, rec.Body)
		}
	}
	var upstream []string
	hits.Range(func(k, v any) bool {
		upstream = append(upstream, k.(string))
		if n := v.(*atomic.Int32).Load(); n != 1 {
			t.Errorf("%s asked upstream %d times, want once", k, n)
		}
		return true
	})
	want := map[string]bool{"/live/s/" + file + "?_HLS_msn=12&_HLS_part=1": true, "/live/s/360p/seg7.mp4": true}
	if len(upstream) != 2 || !want[upstream[0]] || !want[upstream[1]] {
		t.Errorf("upstream requests %v, want %v", upstream, want)
	}
	tok, _ := strings.CutPrefix(auth.Load().(string), "Bearer ")
	if _, err := tokens.Check(tok, "s", access.View); err != nil {
		t.Errorf("the proxy's token: %v", err)
	}
	if v := testutil.ToFloat64(c.upstream.WithLabelValues("ok")); v != 2 {
		t.Errorf("upstream ok %v, want 2", v)
	}
}
