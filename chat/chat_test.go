package chat

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startServer runs a chat server behind a test HTTP server; every path
// /{room} is a room.
func startServer(t testing.TB, s *Server) *httptest.Server {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeRoom(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(func() { s.Close(); hs.Close() })
	return hs
}

type client struct {
	t    *testing.T
	conn *websocket.Conn
}

func dial(t *testing.T, hs *httptest.Server, room string) *client {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/"+room, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t, conn}
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next event, failing after 5 s.
func (c *client) next() map[string]any {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		c.t.Fatalf("bad JSON from server: %s", msg)
	}
	return m
}

// expect reads until an event of that type and returns it.
func (c *client) expect(typ string) map[string]any {
	c.t.Helper()
	for {
		if m := c.next(); m["type"] == typ {
			return m
		}
	}
}

func (c *client) expectError(code string) {
	c.t.Helper()
	if m := c.expect("error"); m["code"] != code {
		c.t.Fatalf("error %v, want %s", m, code)
	}
}

func join(t *testing.T, hs *httptest.Server, room, name string) (*client, map[string]any) {
	t.Helper()
	c := dial(t, hs, room)
	c.send(map[string]string{"type": "join", "name": name})
	return c, c.expect("welcome")
}

func TestRoom(t *testing.T) {
	// batched: the default 150 ms, not scaled down for a small gateway
	t.Run("batched", func(t *testing.T) { testRoom(t, &Server{FlushPerConn: time.Second}) })
	t.Run("every event at once", func(t *testing.T) { testRoom(t, &Server{FlushInterval: -1}) })
}

func testRoom(t *testing.T, s *Server) {
	s.HistorySize = 3
	hs := startServer(t, s)
	alice, w := join(t, hs, "show", "alice")
	if w["count"] != 1.0 || w["you"].(map[string]any)["name"] != "alice" {
		t.Fatalf("welcome: %v", w)
	}
	bob, w := join(t, hs, "show", "  bob  ")
	if w["count"] != 2.0 || len(w["users"].([]any)) != 2 || w["you"].(map[string]any)["name"] != "bob" {
		t.Fatalf("welcome of the second: %v", w)
	}
	if j := alice.expect("join"); j["count"] != 2.0 || j["user"].(map[string]any)["name"] != "bob" {
		t.Fatalf("join notice: %v", j)
	}

	// every member, the sender included, gets each message once, verbatim
	xss := `<img src=x onerror=alert(1)>`
	alice.send(map[string]string{"type": "message", "text": xss})
	for _, c := range []*client{alice, bob} {
		m := c.expect("message")
		if m["text"] != xss || m["user"].(map[string]any)["name"] != "alice" || m["id"] == "" {
			t.Fatalf("message: %v", m)
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", m["ts"].(string)); err != nil {
			t.Fatalf("ts %v: %v", m["ts"], err)
		}
	}

	// renames, both forms; names are unique ignoring case
	bob.send(map[string]string{"type": "nick", "name": "ALICE"})
	bob.expectError("name_taken")
	bob.send(map[string]string{"type": "nick", "name": "robert"})
	for _, c := range []*client{alice, bob} {
		if n := c.expect("nick"); n["old"] != "bob" || n["user"].(map[string]any)["name"] != "robert" {
			t.Fatalf("nick: %v", n)
		}
	}
	alice.send(map[string]string{"type": "message", "text": "/nick al"})
	if n := bob.expect("nick"); n["old"] != "alice" || n["user"].(map[string]any)["name"] != "al" {
		t.Fatalf("/nick: %v", n)
	}

	// history: the last HistorySize messages
	for i := range 4 {
		alice.send(map[string]string{"type": "message", "text": fmt.Sprint("m", i)})
	}
	for range 4 {
		bob.expect("message")
	}
	_, w = join(t, hs, "show", "carol")
	hist := w["history"].([]any)
	if len(hist) != 3 || hist[2].(map[string]any)["text"] != "m3" || hist[0].(map[string]any)["text"] != "m1" {
		t.Fatalf("history: %v", hist)
	}

	// leave
	bob.conn.Close()
	if l := alice.expect("leave"); l["count"] != 2.0 || l["user"].(map[string]any)["name"] != "robert" {
		t.Fatalf("leave: %v", l)
	}
	if got := (&Server{}).Users("show"); got != 0 {
		t.Fatalf("an unstarted server has users: %d", got)
	}
}

// TestBatching holds the room's flush for an hour: the first event goes at
// once, later ones wait; a member's own error overtakes none of the events
// waiting for it; a newcomer gets waiting messages in its history, not
// twice; Close sends what waits before its close frame.
func TestBatching(t *testing.T) {
	s := &Server{FlushInterval: time.Hour, FlushPerConn: time.Hour}
	hs := startServer(t, s)
	alice, _ := join(t, hs, "r", "alice") // the room's first flush: at once
	bob, w := join(t, hs, "r", "bob")     // waits: alice hears nothing yet
	if w["count"] != 2.0 {
		t.Fatalf("welcome: %v", w)
	}
	type got struct {
		at   time.Time
		msgs []map[string]any
	}
	heard := make(chan got, 1)
	go func() { // alice, until the close
		var g got
		for {
			alice.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := alice.conn.ReadMessage()
			if err != nil {
				g.msgs = append(g.msgs, map[string]any{"close": websocket.IsCloseError(err, websocket.CloseGoingAway)})
				heard <- g
				return
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			if g.at.IsZero() {
				g.at = time.Now()
			}
			g.msgs = append(g.msgs, m)
		}
	}()
	bob.send(map[string]string{"type": "message", "text": "m1"})
	eventually(t, "m1 in the room's history", func() bool {
		r := s.room("r")
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.history) == 1
	})
	carol, w := join(t, hs, "r", "carol")
	if h := w["history"].([]any); len(h) != 1 || h[0].(map[string]any)["text"] != "m1" {
		t.Fatalf("carol's history: %v", h)
	}
	bob.send(map[string]string{"type": "dance"})
	var order []string
	for _, want := range []string{"message", "join", "error"} {
		m := bob.next()
		order = append(order, fmt.Sprint(m["type"]))
		if m["type"] != want {
			t.Fatalf("bob got %v, want message m1, join carol, error", order)
		}
	}
	errAt := time.Now()
	time.Sleep(200 * time.Millisecond)
	s.Close()
	g := <-heard
	var types []string
	for _, m := range g.msgs {
		if m["type"] != nil {
			types = append(types, fmt.Sprint(m["type"], " ", m["text"]))
		}
	}
	if fmt.Sprint(types) != "[join <nil> message m1 join <nil>]" || g.msgs[len(g.msgs)-1]["close"] != true {
		t.Fatalf("alice got %v, then %v; want join bob, m1, join carol, then 1001", types, g.msgs[len(g.msgs)-1])
	}
	if !g.at.After(errAt) {
		t.Fatalf("alice heard the room before bob's error, so it was not held")
	}
	carol.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, b, err := carol.conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("carol got %s %v, want only the close", b, err)
	}
}

// TestWelcomeUsersCap: a welcome lists the newcomer first, then up to
// WelcomeUsers-1 others, all of them members at that moment, once each,
// with the exact count: also when the others are a sample shared by
// several welcomes and sampled members leave or are renamed between them,
// and when the list is long enough (names of 32 characters) that the
// welcome goes out in parts.
func TestWelcomeUsersCap(t *testing.T) {
	for _, c := range []struct {
		welcomeUsers, members int
		name                  string
	}{
		{2, 3, "m%d"},
		{5, 12, "m%d"},
		{80, 100, "%030d"},
	} {
		t.Run(fmt.Sprint(c.welcomeUsers, " of ", c.members), func(t *testing.T) {
			s := &Server{WelcomeUsers: c.welcomeUsers, RatePerSecond: 1e6, Burst: 1e6}
			hs := startServer(t, s)
			present := map[string]*client{}
			check := func(name string, w map[string]any) {
				t.Helper()
				users := w["users"].([]any)
				if w["count"] != float64(len(present)) || len(users) != min(c.welcomeUsers, len(present)) ||
					users[0].(map[string]any)["name"] != name {
					t.Fatalf("%s's welcome: count %v, %d users, first %v; want %d, %d, %s",
						name, w["count"], len(users), users[0], len(present), min(c.welcomeUsers, len(present)), name)
				}
				seen := map[string]bool{}
				for _, u := range users {
					n := u.(map[string]any)["name"].(string)
					if present[n] == nil || seen[n] {
						t.Fatalf("%s's welcome lists %q: gone, renamed or twice", name, n)
					}
					seen[n] = true
				}
			}
			for i := range c.members {
				name := fmt.Sprintf(c.name, i)
				cl, w := join(t, hs, "big", name)
				present[name] = cl
				check(name, w)
				if i%3 == 2 { // one of the listed others leaves, another is renamed
					users := w["users"].([]any)
					gone := users[len(users)-1].(map[string]any)["name"].(string)
					present[gone].conn.Close()
					delete(present, gone)
					if len(users) > 2 {
						old := users[1].(map[string]any)["name"].(string)
						renamed := fmt.Sprint("renamed", i)
						present[old].send(map[string]string{"type": "nick", "name": renamed})
						// its own rename: the nick events of earlier renames may wait before it
						for n := present[old].expect("nick"); n["old"] != old; n = present[old].expect("nick") {
						}
						present[renamed] = present[old]
						delete(present, old)
					}
					eventually(t, "the leave of "+gone, func() bool { return s.Users("big") == len(present) })
				}
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	hs := startServer(t, &Server{MaxTextRunes: 10})
	c := dial(t, hs, "r")
	c.send(map[string]string{"type": "message", "text": "hi"})
	c.expectError("not_joined")
	c.conn.WriteMessage(websocket.TextMessage, []byte("{not json"))
	c.expectError("bad_request")
	for _, name := range []string{"", "   ", strings.Repeat("x", 33), "a\x00b", "tab\there"} {
		c.send(map[string]string{"type": "join", "name": name})
		c.expectError("invalid_name")
	}
	c.send(map[string]string{"type": "join", "name": strings.Repeat("é", 32)})
	c.expect("welcome")
	c.send(map[string]string{"type": "dance"})
	c.expectError("bad_request")
	c.send(map[string]string{"type": "message", "text": strings.Repeat("é", 11)})
	c.expectError("too_long")
	c.send(map[string]string{"type": "message", "text": "   "})
	c.expectError("bad_request")
	c.send(map[string]string{"type": "message", "text": "still here"})
	if m := c.expect("message"); m["text"] != "still here" {
		t.Fatalf("after errors: %v", m)
	}
}

func TestLimits(t *testing.T) {
	t.Run("frame too big closes 1009", func(t *testing.T) {
		hs := startServer(t, &Server{MaxFrameBytes: 512})
		c, _ := join(t, hs, "r", "a")
		c.send(map[string]string{"type": "message", "text": strings.Repeat("x", 600)})
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, _, err := c.conn.ReadMessage()
			if ce, ok := err.(*websocket.CloseError); ok {
				if ce.Code != websocket.CloseMessageTooBig {
					t.Fatalf("close %d", ce.Code)
				}
				return
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("rate limit, then 1008 for persistent abuse", func(t *testing.T) {
		hs := startServer(t, &Server{RatePerSecond: 1, Burst: 2, MaxViolations: 5})
		c, _ := join(t, hs, "r", "a")
		for range 10 {
			c.conn.WriteJSON(map[string]string{"type": "message", "text": "spam"})
		}
		limited, messages := 0, 0
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, msg, err := c.conn.ReadMessage()
			if ce, ok := err.(*websocket.CloseError); ok {
				if ce.Code != websocket.ClosePolicyViolation || messages != 2 || limited != 6 {
					t.Fatalf("close %d after %d messages, %d rate_limited", ce.Code, messages, limited)
				}
				return
			} else if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.Contains(string(msg), `"rate_limited"`):
				limited++
			case strings.Contains(string(msg), `"type":"message"`):
				messages++
			}
		}
	})
	t.Run("a slow reader is dropped, the room goes on", func(t *testing.T) {
		hs := startServer(t, &Server{SendQueue: 256, RatePerSecond: 1e6, Burst: 1e6, FlushInterval: time.Millisecond})
		// the slow one never reads again, with a small socket buffer
		d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				c.(*net.TCPConn).SetReadBuffer(4096)
			}
			return c, err
		}}
		slow, _, err := d.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/r", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		slow.WriteJSON(map[string]string{"type": "join", "name": "slow"})
		fast, _ := join(t, hs, "r", "fast")
		talker, _ := join(t, hs, "r", "talker")
		const n = 4000 // 6 MB: more than the socket buffers hold for the slow one
		text := strings.Repeat("€", 490)
		talker.conn.SetReadDeadline(time.Time{})
		go func() { // the talker reads its own echoes
			for {
				if _, _, err := talker.conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
		// in lockstep with the fast reader, so that only the slow one falls behind
		left := false
		for i := range n {
			talker.send(map[string]string{"type": "message", "text": fmt.Sprint(i, text)})
			for got := false; !got; {
				switch m := fast.next(); m["type"] {
				case "message":
					got = true
				case "leave":
					if m["user"].(map[string]any)["name"] != "slow" {
						t.Fatalf("leave: %v", m)
					}
					left = true
				}
			}
		}
		for !left {
			if m := fast.next(); m["type"] == "leave" {
				left = m["user"].(map[string]any)["name"] == "slow"
			}
		}
	})
	t.Run("foreign origin is refused", func(t *testing.T) {
		hs := startServer(t, &Server{CheckOrigin: func(r *http.Request) bool {
			return r.Header.Get("Origin") == "http://"+r.Host
		}})
		h := http.Header{"Origin": {"http://evil.example"}}
		_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/r", h)
		if err == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %v %v, want 403", resp, err)
		}
		h = http.Header{"Origin": {hs.URL}}
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/r", h)
		if err != nil {
			t.Fatalf("same origin refused: %v", err)
		}
		c.Close()
	})
}

func TestKeepalive(t *testing.T) {
	hs := startServer(t, &Server{PingInterval: 100 * time.Millisecond})
	c, _ := join(t, hs, "r", "a")
	pings := 0
	c.conn.SetPingHandler(func(data string) error {
		pings++
		return c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	// a client that reads nothing answers no ping: it is dropped after two
	// intervals, while the one that answers stays
	silent := dial(t, hs, "r")
	silent.send(map[string]string{"type": "join", "name": "silent"})
	c.expect("join")
	if l := c.expect("leave"); l["user"].(map[string]any)["name"] != "silent" {
		t.Fatalf("leave: %v", l)
	}
	if pings == 0 {
		t.Fatal("no ping reached the client")
	}
	// the client's own ping is answered with its payload, before what follows
	pong := make(chan string, 1)
	c.conn.SetPongHandler(func(data string) error { pong <- data; return nil })
	if err := c.conn.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	c.send(map[string]string{"type": "message", "text": "still here"})
	c.expect("message")
	select {
	case got := <-pong:
		if got != "hello" {
			t.Fatalf("pong %q, want hello", got)
		}
	default:
		t.Fatal("no pong before the message")
	}
}

// TestFlushScaling: the wait between flushes grows with the gateway's
// connections up to FlushInterval, and a lightly used gateway does not hold
// a burst back: with an hour's FlushInterval, every message of a burst in a
// room of two still arrives at once.
func TestFlushScaling(t *testing.T) {
	s := &Server{FlushInterval: 150 * time.Millisecond, FlushPerConn: 15 * time.Microsecond}
	for _, c := range []struct {
		conns int64
		want  time.Duration
	}{{0, 0}, {100, 1500 * time.Microsecond}, {10000, 150 * time.Millisecond}, {50000, 150 * time.Millisecond}} {
		s.nconns.Store(c.conns)
		if got := s.flushWait(); got != c.want {
			t.Errorf("%d connections: wait %s, want %s", c.conns, got, c.want)
		}
	}
	s.FlushInterval = -1
	if got := s.flushWait(); got >= 0 {
		t.Errorf("FlushInterval -1: wait %s, want < 0", got)
	}

	hs := startServer(t, &Server{FlushInterval: time.Hour, RatePerSecond: 1e6, Burst: 1e6})
	alice, _ := join(t, hs, "r", "alice")
	bob, _ := join(t, hs, "r", "bob")
	alice.expect("join")
	for i := range 5 {
		bob.send(map[string]string{"type": "message", "text": fmt.Sprint("m", i)})
		time.Sleep(2 * time.Millisecond) // apart by more than 2 × 15 µs
	}
	alice.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range 5 {
		if m := alice.expect("message"); m["text"] != fmt.Sprint("m", i) {
			t.Fatalf("message %d: %v", i, m)
		}
	}
}

// TestJoinStorm joins many members at once and then lets them all leave,
// watched by the first member. No one may lose their seat: a batch of
// events is one write for the slow-reader bound, however many events it
// holds (SendQueue 16 is less than a batch; TestSlowReaderCountsWrites
// holds the bound exactly). A room of at most PresenceLimit members gets
// a join or leave event for each; a bigger one a presence summary instead,
// at most one per flush, whose counts add up.
func TestJoinStorm(t *testing.T) {
	for _, c := range []struct {
		name          string
		members       int // joining after the watcher
		presenceLimit int
	}{
		{"events, batched", 60, 1000},
		{"summaries", 150, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			const flush = 100 * time.Millisecond
			s := &Server{SendQueue: 16, PresenceLimit: c.presenceLimit, FlushInterval: flush, FlushPerConn: time.Second}
			hs := startServer(t, s)
			watcher, _ := join(t, hs, "r", "watcher")
			type tally struct{ joins, leaves, joined, left, summaries, count int }
			var got tally
			// read returns once the room's count reaches want
			read := func(want int) {
				t.Helper()
				for got.count != want {
					m := watcher.next()
					switch m["type"] {
					case "join":
						got.joins++
					case "leave":
						got.leaves++
					case "presence":
						got.summaries++
						got.joined += int(m["joined"].(float64))
						got.left += int(m["left"].(float64))
						for _, k := range []string{"joined_users", "left_users"} {
							if us, _ := m[k].([]any); len(us) > presenceNames || len(us) == 0 && m[k] != nil {
								t.Fatalf("%s: %v", k, m)
							}
						}
					default:
						t.Fatalf("watcher got %v", m)
					}
					if m["type"] != "presence" && m["count"].(float64) > float64(c.presenceLimit) {
						t.Fatalf("a %s event in a room of %v over the limit %d", m["type"], m["count"], c.presenceLimit)
					}
					got.count = int(m["count"].(float64))
				}
			}

			start := time.Now()
			clients := make([]*client, c.members)
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/r", nil)
					if err != nil {
						t.Error(err)
						return
					}
					conn.WriteJSON(map[string]string{"type": "join", "name": fmt.Sprint("m", i)})
					clients[i] = &client{t, conn}
					go func() { // read everything, as a client does
						for {
							if _, _, err := conn.ReadMessage(); err != nil {
								return
							}
						}
					}()
				})
			}
			wg.Wait()
			read(c.members + 1)
			joinedIn := time.Since(start)
			if got.joins+got.joined != c.members || got.leaves+got.left != 0 {
				t.Fatalf("after the joins: %+v, want %d joins in all", got, c.members)
			}
			if max := int(joinedIn/flush) + 2; got.summaries > max {
				t.Errorf("%d summaries in %s: more than one a flush", got.summaries, joinedIn)
			}
			if c.members+1 > c.presenceLimit && (got.summaries == 0 || got.joins != c.presenceLimit-1) {
				t.Errorf("%+v: want a join event up to %d members, summaries beyond", got, c.presenceLimit)
			}
			if n := s.Users("r"); n != c.members+1 {
				t.Fatalf("%d members, want %d: someone was dropped", n, c.members+1)
			}

			got = tally{count: got.count}
			for _, cl := range clients {
				cl.conn.Close()
			}
			read(1)
			if got.leaves+got.left != c.members || got.joins+got.joined != 0 {
				t.Fatalf("after the leaves: %+v, want %d leaves in all", got, c.members)
			}
		})
	}
}

// TestSlowReaderCountsWrites: what waits for a slow reader is counted in
// writes, a flush of the room's events (however many) being one. A
// watcher that stops reading, with small socket buffers, gets batches of
// 250 big messages, one flush each (the test flushes; the room would wait
// an hour): the first blocks its writer; with SendQueue 3, three more may
// wait (counted in frames, the second would already be 250 of 3), and a
// fourth drops the watcher.
func TestSlowReaderCountsWrites(t *testing.T) {
	for _, c := range []struct {
		batches int
		dropped bool
	}{{4, false}, {5, true}} {
		t.Run(fmt.Sprint(c.batches, " batches"), func(t *testing.T) {
			s := &Server{SendQueue: 3, FlushInterval: time.Hour, FlushPerConn: time.Hour, RatePerSecond: 1e6, Burst: 1e6,
				WriteTimeout: time.Minute}
			hs := startServer(t, s)
			d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err == nil {
					c.(*net.TCPConn).SetReadBuffer(64 << 10)
				}
				return c, err
			}}
			conn, _, err := d.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/r", nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			watcher := &client{t, conn}
			watcher.send(map[string]string{"type": "join", "name": "watcher"})
			watcher.expect("welcome")
			for _, m := range s.room("r").localMembers() {
				m.nc.Conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
			}
			talker, _ := join(t, hs, "r", "talker")
			go func() { // the talker reads its echoes
				talker.conn.SetReadDeadline(time.Time{})
				for {
					if _, _, err := talker.conn.ReadMessage(); err != nil {
						return
					}
				}
			}()
			const perBatch = 250 // 375 KB: more than the socket buffers hold
			text := strings.Repeat("€", 490)
			for b := range c.batches {
				for i := range perBatch {
					talker.send(map[string]string{"type": "message", "text": fmt.Sprint(b, " ", i, text)})
				}
				r := s.room("r")
				want := perBatch
				if b == 0 {
					want++ // the talker's join
				}
				eventually(t, "the batch", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.out) == want })
				r.mu.Lock()
				r.flush()
				r.mu.Unlock()
			}
			if c.dropped {
				eventually(t, "the watcher to be dropped", func() bool { return s.Users("r") == 1 })
				return
			}
			time.Sleep(200 * time.Millisecond)
			if n := s.Users("r"); n != 2 {
				t.Fatalf("%d members: the watcher was dropped", n)
			}
			for range c.batches * perBatch {
				watcher.expect("message")
			}
		})
	}
}
