package ingest

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// recorder is an Output whose runs keep every byte written to them.
type recorder struct {
	mu    sync.Mutex
	got   bytes.Buffer
	ended chan struct{}
	clock time.Time
}

func (r *recorder) Open(string, bool, *Resume) (Output, error) { return r, nil }
func (r *recorder) Transcode(Container, int, int) (Run, error) { return &recordRun{r}, nil }
func (r *recorder) Live() bool                                 { return true }
func (r *recorder) Speed() float64                             { return 1 }
func (r *recorder) End()                                       { close(r.ended) }
func (r *recorder) State() []byte                              { return nil }
func (r *recorder) Handoff() []byte                            { close(r.ended); return nil }

type recordRun struct{ r *recorder }

func (w *recordRun) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	time.Sleep(time.Millisecond) // a transcoder slower than the socket: chunks wait in the queue
	return w.r.got.Write(p)
}
func (w *recordRun) CloseInput() error { return nil }
func (w *recordRun) Wait() error       { return nil }
func (w *recordRun) Abort()            {}
func (w *recordRun) CaptureStart(t time.Time) {
	w.r.mu.Lock()
	w.r.clock = t
	w.r.mu.Unlock()
}

// TestBytesInOrder: what a publisher sends, in frames of every size with
// text frames between them, reaches the transcoder run byte for byte (the
// frame buffers are recycled: one given back while still queued would be
// overwritten by a later frame), and the run learns the capture clock.
func TestBytesInOrder(t *testing.T) {
	head, err := os.ReadFile("testdata/chrome-vp8-1280x720.webm")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	body := make([]byte, 600<<10)
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	stream := append(head, body...)

	rec := &recorder{ended: make(chan struct{})}
	s := &Server{Backend: rec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServePublish(w, r, strings.TrimPrefix(r.URL.Path, "/ingest/"))
	}))
	defer func() { s.Close(); srv.Close() }()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ingest/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	zero := time.Now().Add(-time.Second)
	c.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","mime":"video/webm","clock":`+itoa(zero.UnixMilli())+`}`))
	for rest := stream; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(70<<10))
		if err := c.WriteMessage(websocket.BinaryMessage, rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		if rng.IntN(4) == 0 {
			c.WriteMessage(websocket.TextMessage, []byte(`{"type":"clock","t":`+itoa(time.Now().UnixMilli())+`}`))
		}
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	select {
	case <-rec.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.got.Bytes(); !bytes.Equal(got, stream) {
		i := 0
		for i < min(len(got), len(stream)) && got[i] == stream[i] {
			i++
		}
		t.Errorf("the run got %d bytes, %d sent; they differ from byte %d", len(got), len(stream), i)
	}
	// the protocol's clock is in milliseconds: a millisecond either way
	if d := rec.clock.Sub(zero); d < -time.Millisecond || d > time.Second {
		t.Errorf("capture start %s, sent %s (%s apart)", rec.clock, zero, d)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
