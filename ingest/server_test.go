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
	"github.com/livegate/livegate/access"
)

// noBackend fails every stream: the refusals tested here come before it.
type noBackend struct{}

func (noBackend) Open(string, bool, *Resume) (Output, error) {
	return nil, errors.New("no backend in this test")
}

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

// TestRefusals checks each refusal before the upgrade: its status and the
// contract's JSON error code.
func TestRefusals(t *testing.T) {
	tokens := access.Tokens{Secret: []byte("0123456789abcdef0123456789abcdef")}
	view, _ := tokens.Mint(access.Claims{Stream: "s", Role: access.View}, time.Minute)
	publish, _ := tokens.Mint(access.Claims{Stream: "s", Role: access.Publish}, time.Minute)
	policy := &access.Policy{Keys: []string{"k"}, Tokens: tokens}
	cases := []struct {
		server string // "a": MaxStreams 2; "b": 2 connections per address
		path   string
		status int
		code   string
	}{
		{"a", "s", 401, "token_missing"},
		{"a", "s?key=nope", 403, "key_wrong"},
		{"a", "s?token=" + view, 403, "token_wrong_role"},
		{"a", "t?token=" + publish, 403, "token_wrong_stream"},
		{"a", "s?token=" + publish, 101, ""}, // a publisher that stays
		{"a", "s?key=k", 409, "busy"},        // one publisher per stream
		{"a", "u?key=k", 101, ""},            // the second stream
		{"a", "v?key=k", 503, "busy"},        // beyond MaxStreams
		{"b", "s?key=k", 101, ""},            // first connection of 127.0.0.1
		{"b", "s?key=k", 409, "busy"},        // refused: holds no slot
		{"b", "u?key=k", 101, ""},            // second
		{"b", "v?key=k", 429, "too_many_connections"},
	}
	servers := map[string]*httptest.Server{
		"a": startServer(t, func(s *Server) { s.Auth, s.MaxStreams = policy, 2 }),
		"b": startServer(t, func(s *Server) { s.Auth, s.Conns = policy, &access.ConnLimit{Max: 2} }),
	}
	for _, c := range cases {
		url := "ws" + strings.TrimPrefix(servers[c.server].URL, "http") + "/ingest/" + c.path
		conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			defer conn.Close()
			resp.StatusCode = http.StatusSwitchingProtocols
		} else if resp == nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		var body struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != c.status || body.Error != c.code {
			t.Errorf("%s %s: %d %q, want %d %q", c.server, c.path[:1], resp.StatusCode, body.Error, c.status, c.code)
		}
	}
}
