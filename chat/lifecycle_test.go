package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestStartValidates(t *testing.T) {
	for _, c := range []struct {
		field string
		s     *Server
	}{
		{"MaxTextRunes", &Server{MaxTextRunes: -1}},
		{"MaxFrameBytes", &Server{MaxFrameBytes: 100}},
		{"HistorySize", &Server{HistorySize: -1}},
		{"WelcomeUsers", &Server{WelcomeUsers: -5}},
		{"RatePerSecond", &Server{RatePerSecond: -1}},
		{"Burst", &Server{Burst: -1}},
		{"MaxViolations", &Server{MaxViolations: -1}},
		{"SendQueue", &Server{SendQueue: -1}},
		{"PingInterval", &Server{PingInterval: -time.Second}},
		{"WriteTimeout", &Server{WriteTimeout: -time.Second}},
	} {
		t.Run(c.field, func(t *testing.T) {
			err := c.s.Start()
			if err == nil {
				c.s.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %q does not name %s", err, c.field)
			}
		})
	}
	var s Server
	if err := s.Start(); err != nil {
		t.Fatalf("zero value: %v", err)
	}
	s.Close()
	s.Close() // idempotent
	(&Server{}).Close()
}

// chatGoroutines lists the goroutines running code of this package, but for
// the tests themselves.
func chatGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "livegate/chat.(*") && !strings.Contains(g, "chat.Test") {
			out = append(out, g)
		}
	}
	return out
}

func TestCloseSaysGoingAwayAndWaits(t *testing.T) {
	s := &Server{PingInterval: time.Hour}
	hs := startServer(t, s)
	joined, _ := join(t, hs, "r", "a")
	other, _ := join(t, hs, "r", "b")
	joined.expect("join")
	idle := dial(t, hs, "r") // connected, never joined
	eventually(t, "three connections", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 3
	})
	// one client never reads nor answers: Close still ends within the grace
	other.conn.UnderlyingConn().(interface{ CloseRead() error }).CloseRead()

	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	for _, c := range []*client{joined, idle} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, _, err := c.conn.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if ce.Code != websocket.CloseGoingAway {
					t.Fatalf("close code %d, want 1001", ce.Code)
				}
				break
			}
			if err != nil {
				t.Fatalf("read: %v, want a close frame", err)
			}
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	// a goroutine may still be returning from its last deferred wg.Done
	deadline := time.Now().Add(2 * time.Second)
	for gs := chatGoroutines(); len(gs) > 0; gs = chatGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Close:\n%s", strings.Join(gs, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// a request after Close is refused before the upgrade
	if _, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/r", nil); err == nil || resp.StatusCode != 503 {
		t.Fatalf("after Close: %v %v, want 503", resp, err)
	}
}

func TestUnjoinedConnectionIsKeptAlive(t *testing.T) {
	// a page connects, then its user takes a while to pick a name. Pings
	// every 400 ms: a connection silent for 800 ms is dropped, and with 100 ms
	// a loaded machine running -race sometimes took longer than 200 ms to pong.
	hs := startServer(t, &Server{PingInterval: 400 * time.Millisecond})
	c := dial(t, hs, "r")
	pings := make(chan struct{}, 100)
	c.conn.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	frames := make(chan []byte, 10)
	go func() { // reading runs the ping handler
		defer close(frames)
		for {
			_, msg, err := c.conn.ReadMessage()
			if err != nil {
				return
			}
			frames <- msg
		}
	}()
	for range 6 { // three times as long as a silent connection is kept
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no ping for a connection that has not joined")
		}
	}
	c.send(map[string]string{"type": "join", "name": "slow typist"})
	select {
	case msg, ok := <-frames:
		if !ok || !strings.Contains(string(msg), `"type":"welcome"`) {
			t.Fatalf("got %q (open: %v), want a welcome", msg, ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no welcome")
	}
}

func TestRenameIsRateLimited(t *testing.T) {
	hs := startServer(t, &Server{RatePerSecond: 0.001, Burst: 3, MaxViolations: 100})
	a, _ := join(t, hs, "r", "a")
	for i := range 6 {
		a.send(map[string]string{"type": "nick", "name": fmt.Sprint("n", i)})
	}
	nicks, limited := 0, 0
	for nicks+limited < 6 {
		switch m := a.next(); m["type"] {
		case "nick":
			nicks++
		case "error":
			if m["code"] != "rate_limited" {
				t.Fatalf("error %v", m)
			}
			limited++
		}
	}
	if nicks != 3 || limited != 3 {
		t.Fatalf("%d renames and %d rate_limited, want 3 and 3", nicks, limited)
	}
}

func TestDefaultHistoryKeepsTheLast50(t *testing.T) {
	hs := startServer(t, &Server{RatePerSecond: 1000, Burst: 1000})
	a, _ := join(t, hs, "r", "a")
	for i := range 51 {
		a.send(map[string]string{"type": "message", "text": fmt.Sprint("m", i)})
		a.expect("message")
	}
	_, w := join(t, hs, "r", "b")
	hist := w["history"].([]any)
	if len(hist) != 50 {
		t.Fatalf("history of %d messages, want 50", len(hist))
	}
	for i, h := range hist {
		if got, want := h.(map[string]any)["text"], fmt.Sprint("m", i+1); got != want {
			t.Fatalf("history[%d] = %v, want %s", i, got, want)
		}
	}
}

func TestJoinNames(t *testing.T) {
	hs := startServer(t, &Server{})
	join(t, hs, "r", "Alice")
	for _, c := range []struct {
		name, code string
	}{
		{"alice", "name_taken"},
		{"  ALICE ", "name_taken"},
		{"", "invalid_name"},
		{"\t\n", "invalid_name"},
		{strings.Repeat("x", 33), "invalid_name"},
		{"bell\a", "invalid_name"},
		{"del\x7f", "invalid_name"},
		{"line\u2028sep", "invalid_name"},
		{"nel\u0085inside", "invalid_name"},
	} {
		t.Run(fmt.Sprintf("%q", c.name), func(t *testing.T) {
			cl := dial(t, hs, "r")
			cl.send(map[string]string{"type": "join", "name": c.name})
			cl.expectError(c.code)
			// the client may retry on the same connection
			cl.send(map[string]string{"type": "join", "name": "retry " + t.Name()[len(t.Name())-8:]})
			cl.expect("welcome")
		})
	}
}

func TestWelcomeCarriesTheTextLimit(t *testing.T) {
	hs := startServer(t, &Server{MaxTextRunes: 140})
	_, w := join(t, hs, "r", "a")
	if w["max_text"] != 140.0 {
		t.Fatalf("max_text %v, want 140", w["max_text"])
	}
}

// TestCloseWhileSending closes connections whose clients keep sending
// and read late: each must still read everything the server sent, the
// error frame (if any) and the close frame with its code. A client that
// reads late leaves the server's last frames in its socket's send queue;
// closing a socket with unread bytes in its receive queue sends a reset
// and discards that send queue, so the client would see 1006. So after its
// close frame the server reads (and drops) what comes until the client's
// answer (or closeGrace). Repeated, since a reset only sometimes wins.
func TestCloseWhileSending(t *testing.T) {
	for _, c := range []struct {
		name    string
		first   func(*websocket.Conn) error // sent once after the backlog, before the flood
		flood   string                      // then sent over and over
		code    int                         // the close code expected
		errCode string                      // the last text frame before it, an error; "": a message
		all     bool                        // every echo comes before the close
	}{
		{"too many violations", nil, `{"type":"dance"}`, websocket.ClosePolicyViolation, "bad_request", true},
		{"frame too big", func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, []byte(`{"type":"message","text":"`+strings.Repeat("x", 8000)+`"}`))
		}, `{"type":"dance"}`, websocket.CloseMessageTooBig, "too_long", true},
		{"protocol error", func(c *websocket.Conn) error {
			_, err := c.UnderlyingConn().Write([]byte{0x83, 0x80, 0, 0, 0, 0}) // reserved opcode 3, masked, empty
			return err
		}, `{"type":"dance"}`, websocket.CloseProtocolError, "", false}, // gorilla's close frame overtakes the echoes
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Server{MaxViolations: 5, RatePerSecond: 1e6, Burst: 1e6, SendQueue: 10000}
			hs := startServer(t, s)
			d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err == nil {
					c.(*net.TCPConn).SetReadBuffer(65536)
				}
				return c, err
			}}
			text := strings.Repeat("y", 500)
			for i := range 10 {
				conn, _, err := d.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/r", nil)
				if err != nil {
					t.Fatal(err)
				}
				cl := &client{t, conn}
				cl.send(map[string]string{"type": "join", "name": fmt.Sprint("n", i)})
				cl.expect("welcome")
				// a backlog of echoes that the client leaves unread for a while
				for range 200 {
					cl.send(map[string]string{"type": "message", "text": text})
				}
				if c.first != nil {
					if err := c.first(conn); err != nil {
						t.Fatal(err)
					}
				}
				flooding := make(chan struct{})
				go func() { // until the client answers the server's close frame
					defer close(flooding)
					for conn.WriteMessage(websocket.TextMessage, []byte(c.flood)) == nil {
					}
				}()
				time.Sleep(100 * time.Millisecond)
				var last map[string]any
				echoes := 0
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					_, msg, err := conn.ReadMessage()
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						if ce.Code != c.code {
							t.Fatalf("round %d: close %d (%v) after %d of 200 echoes, want %d", i, ce.Code, err, echoes, c.code)
						}
						break
					}
					if err != nil {
						t.Fatalf("round %d: read: %v after %d of 200 echoes, want close %d", i, err, echoes, c.code)
					}
					last = map[string]any{}
					json.Unmarshal(msg, &last)
					if last["type"] == "message" {
						echoes++
					}
				}
				if c.all && echoes != 200 {
					t.Fatalf("round %d: %d of 200 echoes", i, echoes)
				}
				if c.errCode != "" && (last["type"] != "error" || last["code"] != c.errCode) {
					t.Fatalf("round %d: last frame before the close %v, want error %s", i, last, c.errCode)
				}
				conn.Close()
				<-flooding
			}
			eventually(t, "every connection to end", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.conns) == 0
			})
		})
	}
}
