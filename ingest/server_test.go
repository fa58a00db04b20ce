package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// noBackend fails every stream: the refusals tested here come before it.
type noBackend struct{}

func (noBackend) Open(string) (Output, error) { return nil, errors.New("no backend in this test") }

func startServer(t *testing.T, edit func(*Server)) *httptest.Server {
	t.Helper()
	s := &Server{Backend: noBackend{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServePublish(w, r, strings.TrimPrefix(r.URL.Path, "/ingest/"))
	}))
	t.Cleanup(func() { s.Close(); srv.Close() })
	return srv
}

// TestRefusedWhileSending refuses publishers that keep sending after the
// refusal and are slow to answer the close: each gets the error frame and
// the close code of the contract, and the server keeps reading (and
// dropping) what comes until the client's own close. A server that closed
// the socket at once would have it reset by the kernel, which can lose the
// frames just written (the client then sees 1006 and no error).
func TestRefusedWhileSending(t *testing.T) {
	srv := startServer(t, func(s *Server) { s.MaxFrameBytes = 64 << 10 })
	garbage := bytes.Repeat([]byte("not a container "), 4096) // 64 KiB
	cases := []struct {
		name  string
		first []byte // the first frame; then garbage frames until told to stop
		code  string
		close int
	}{
		{"unsupported media", garbage, "unsupported_media", websocket.CloseUnsupportedData},
		{"frame too big", bytes.Repeat([]byte{0x1A}, 1<<20), "frame_too_big", websocket.CloseMessageTooBig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range 5 {
				url := fmt.Sprintf("ws%s/ingest/s%d", strings.TrimPrefix(srv.URL, "http"), i)
				conn, _, err := websocket.DefaultDialer.Dial(url, nil)
				if err != nil {
					t.Fatal(err)
				}
				conn.SetCloseHandler(func(int, string) error { return nil }) // busy: no answer yet
				stop, werr := make(chan struct{}), make(chan error, 1)
				go func() {
					frame := c.first
					for {
						select {
						case <-stop:
							werr <- nil
							return
						default:
						}
						conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
						if err := conn.WriteMessage(websocket.BinaryMessage, frame); err != nil {
							werr <- err
							return
						}
						frame = garbage
					}
				}()
				var got string
				var closeErr *websocket.CloseError
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					_, msg, err := conn.ReadMessage()
					if err != nil {
						errors.As(err, &closeErr)
						break
					}
					var m struct{ Type, Code string }
					if json.Unmarshal(msg, &m) == nil && m.Type == "error" {
						got = m.Code
					}
				}
				if got != c.code || closeErr == nil || closeErr.Code != c.close {
					t.Fatalf("try %d: error frame %q, close %v; want %q and %d", i, got, closeErr, c.code, c.close)
				}
				time.Sleep(300 * time.Millisecond) // still sending
				close(stop)
				if err := <-werr; err != nil {
					t.Fatalf("try %d: the server cut the connection before the client's close: %v", i, err)
				}
				// the client's close ends it at once
				start := time.Now()
				conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.close, ""), time.Now().Add(time.Second))
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				conn.UnderlyingConn().Read(make([]byte, 1))
				if d := time.Since(start); d > 500*time.Millisecond {
					t.Errorf("try %d: the server closed %s after the client's close", i, d)
				}
				conn.Close()
			}
		})
	}
}
