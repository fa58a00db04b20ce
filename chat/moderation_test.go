package chat

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/internal/natstest"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// moderated sets s up as the gateway does: tokens and the publish key "k"
// checked by one access.Policy, and the client address taken from the
// test's X-Test-Addr header (the test's trusted proxy) when it is set.
func moderated(s *Server) *Server {
	p := &access.Policy{Keys: []string{"k"}, Tokens: access.Tokens{Secret: testSecret}}
	s.Access, s.Keys = p, p
	s.ClientAddr = func(r *http.Request) string {
		if a := r.Header.Get("X-Test-Addr"); a != "" {
			return a
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		return host
	}
	return s
}

func mint(t testing.TB, stream string, role access.Role, name string) string {
	t.Helper()
	tk := access.Tokens{Secret: testSecret}
	s, err := tk.Mint(access.Claims{Stream: stream, Role: role, Name: name}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// as is who a test client is: its address and query (token, key).
type as struct {
	addr  string
	query string
}

func dialAs(hs *httptest.Server, room string, who as) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if who.addr != "" {
		h.Set("X-Test-Addr", who.addr)
	}
	u := "ws" + strings.TrimPrefix(hs.URL, "http") + "/" + room
	if who.query != "" {
		u += "?" + who.query
	}
	return websocket.DefaultDialer.Dial(u, h)
}

// joinAs joins a room as who and returns the client and its welcome.
func joinAs(t *testing.T, hs *httptest.Server, room, name string, who as) (*client, map[string]any) {
	t.Helper()
	conn, _, err := dialAs(hs, room, who)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t, conn}
	c.send(map[string]string{"type": "join", "name": name})
	return c, c.expect("welcome")
}

// expectClose reads until the connection closes, which must be with code.
func (c *client) expectClose(code int) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.conn.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != code {
				c.t.Fatalf("closed with %d, want %d", ce.Code, code)
			}
			return
		}
		if err != nil {
			c.t.Fatalf("read: %v, want a close %d", err, code)
		}
	}
}

// expectBanned reads error banned, then the close 1008.
func (c *client) expectBanned() {
	c.t.Helper()
	c.expectError("banned")
	c.expectClose(websocket.ClosePolicyViolation)
}

func user(m map[string]any, key string) map[string]any {
	u, _ := m[key].(map[string]any)
	return u
}

func historyIDs(w map[string]any) []string {
	var ids []string
	for _, h := range w["history"].([]any) {
		ids = append(ids, h.(map[string]any)["id"].(string))
	}
	return ids
}

func TestModeratorRole(t *testing.T) {
	hs := startServer(t, moderated(&Server{}))
	cases := []struct {
		name  string
		query string
		mod   bool
		as    string // the name it gets
	}{
		{"no token", "", false, "n1"},
		{"view token", "token=" + mint(t, "show", access.View, ""), false, "n2"},
		{"moderate token", "token=" + mint(t, "show", access.Moderate, ""), true, "n3"},
		{"publish token", "token=" + mint(t, "show", access.Publish, ""), true, "n4"},
		{"token for any stream", "token=" + mint(t, "*", access.Moderate, ""), true, "n5"},
		{"publish key", "key=k", true, "n6"},
		{"name claim", "token=" + mint(t, "show", access.View, "Claimed"), false, "Claimed"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, w := joinAs(t, hs, "show", "n"+string(rune('1'+i)), as{query: c.query})
			you := user(w, "you")
			if got := you["role"] == RoleModerator; got != c.mod || you["name"] != c.as {
				t.Fatalf("you: %v, want moderator %v, name %s", you, c.mod, c.as)
			}
			if w["slow"] != 0.0 {
				t.Fatalf("welcome slow %v", w["slow"])
			}
			if c.name == "name claim" {
				cl.send(map[string]string{"type": "nick", "name": "other"})
				cl.expectError("invalid_name")
			}
		})
	}
}

func TestModerationRefusedBeforeUpgrade(t *testing.T) {
	hs := startServer(t, moderated(&Server{Conns: &access.ConnLimit{Max: 2}}))
	expired, _ := jwtExpired()
	cases := []struct {
		name   string
		who    as
		status int
		code   string
	}{
		{"garbage token", as{query: "token=nope"}, 403, "token_invalid"},
		{"expired token", as{query: "token=" + expired}, 403, "token_expired"},
		{"other stream", as{query: "token=" + mint(t, "other", access.Moderate, "")}, 403, "token_wrong_stream"},
		{"wrong key", as{query: "key=nope"}, 403, "key_wrong"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, resp, err := dialAs(hs, "show", c.who)
			if err == nil {
				t.Fatal("upgraded")
			}
			var body struct{ Error, Message string }
			b, _ := io.ReadAll(resp.Body)
			json.Unmarshal(b, &body)
			if resp.StatusCode != c.status || body.Error != c.code || strings.Contains(string(b), "token=") {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, b, c.status, c.code)
			}
		})
	}
	t.Run("too many connections from one address", func(t *testing.T) {
		one, _ := joinAs(t, hs, "show", "a", as{addr: "192.0.2.1"})
		joinAs(t, hs, "show", "b", as{addr: "192.0.2.1"})
		_, resp, err := dialAs(hs, "show", as{addr: "192.0.2.1"})
		if err == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("third connection: %v %v", resp, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `"too_many_connections"`) {
			t.Fatalf("body %s", b)
		}
		joinAs(t, hs, "show", "c", as{addr: "192.0.2.2"}) // another address
		one.conn.Close()
		eventually(t, "the slot to be given back", func() bool {
			c, _, err := dialAs(hs, "show", as{addr: "192.0.2.1"})
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	})
}

// jwtExpired is a token for "show" that expired an hour ago.
func jwtExpired() (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "show", "role": "moderate",
		"exp": time.Now().Add(-time.Hour).Unix()}).SignedString(testSecret)
}

// expectText reads until a message with that text.
func (c *client) expectText(text string) map[string]any {
	c.t.Helper()
	for {
		if m := c.expect("message"); m["text"] == text {
			return m
		}
	}
}

// TestModeration runs every command on one gateway.
func TestModeration(t *testing.T) {
	hs := startServer(t, moderated(&Server{HistorySize: 10, RatePerSecond: 1000, Burst: 1000}))
	modTok := mint(t, "show", access.Moderate, "Mod")
	mod, _ := joinAs(t, hs, "show", "x", as{addr: "192.0.2.100", query: "token=" + modTok})
	alice, _ := joinAs(t, hs, "show", "alice", as{addr: "192.0.2.1"})
	bobTok := mint(t, "show", access.View, "bob")
	bob, wb := joinAs(t, hs, "show", "bob", as{addr: "192.0.2.2", query: "token=" + bobTok})
	bobID := user(wb, "you")["id"].(string)
	aliceID := ""

	t.Run("forbidden to others", func(t *testing.T) {
		for _, cmd := range []map[string]any{
			{"type": "delete", "id": "x"}, {"type": "ban", "user": "x"}, {"type": "unban", "user": "x"},
			{"type": "slow", "seconds": 5}, {"type": "clear"},
		} {
			alice.send(cmd)
			alice.expectError("forbidden")
		}
	})

	t.Run("delete", func(t *testing.T) {
		alice.send(map[string]string{"type": "message", "text": "spam"})
		msg := mod.expect("message")
		aliceID = user(msg, "user")["id"].(string)
		alice.send(map[string]string{"type": "message", "text": "fine"})
		mod.expect("message")
		mod.send(map[string]string{"type": "delete", "id": msg["id"].(string)})
		for _, c := range []*client{mod, alice, bob} {
			d := c.expect("delete")
			if d["id"] != msg["id"] || user(d, "by")["name"] != "Mod" || user(d, "by")["role"] != RoleModerator {
				t.Fatalf("delete: %v", d)
			}
		}
		_, w := joinAs(t, hs, "show", "late", as{addr: "192.0.2.3"})
		if ids := historyIDs(w); len(ids) != 1 || ids[0] == msg["id"] {
			t.Fatalf("history after the delete: %v", w["history"])
		}
	})

	t.Run("slow", func(t *testing.T) {
		mod.send(map[string]any{"type": "slow", "seconds": 60})
		for _, c := range []*client{mod, alice, bob} {
			if s := c.expect("slow"); s["seconds"] != 60.0 || user(s, "by")["name"] != "Mod" {
				t.Fatalf("slow: %v", s)
			}
		}
		bob.send(map[string]string{"type": "message", "text": "one"})
		bob.expect("message")
		bob.send(map[string]string{"type": "message", "text": "two"})
		bob.expectError("slow_mode")
		for _, text := range []string{"m1", "m2"} { // moderators are not slowed
			mod.send(map[string]string{"type": "message", "text": text})
			mod.expectText(text)
		}
		_, w := joinAs(t, hs, "show", "late2", as{addr: "192.0.2.3"})
		if w["slow"] != 60.0 {
			t.Fatalf("welcome slow %v", w["slow"])
		}
		mod.send(map[string]any{"type": "slow", "seconds": 0})
		bob.expect("slow")
		bob.send(map[string]string{"type": "message", "text": "three"})
		bob.expectText("three")
		mod.send(map[string]any{"type": "slow", "seconds": -1})
		mod.expectError("bad_request")
	})

	t.Run("clear", func(t *testing.T) {
		mod.send(map[string]string{"type": "clear"})
		for _, c := range []*client{mod, alice, bob} {
			if m := c.expect("clear"); user(m, "by")["name"] != "Mod" {
				t.Fatalf("clear: %v", m)
			}
		}
		_, w := joinAs(t, hs, "show", "late3", as{addr: "192.0.2.3"})
		if ids := historyIDs(w); len(ids) != 0 {
			t.Fatalf("history after clear: %v", ids)
		}
	})

	t.Run("ban by address", func(t *testing.T) {
		mod.send(map[string]any{"type": "ban", "user": aliceID})
		for _, c := range []*client{mod, bob} {
			b := c.expect("ban")
			if user(b, "user")["name"] != "alice" || user(b, "by")["name"] != "Mod" || b["seconds"] != 86400.0 {
				t.Fatalf("ban: %v", b)
			}
		}
		alice.expect("ban")
		alice.expectBanned()
		// the same address, another name, no token: refused
		c, _, err := dialAs(hs, "show", as{addr: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		again := &client{t, c}
		again.send(map[string]string{"type": "join", "name": "alice2"})
		again.expectBanned()
		c.Close()
		joinAs(t, hs, "show", "alice3", as{addr: "192.0.2.4"}) // another address
		// the moderator moderates from any address
		joinAs(t, hs, "show", "x", as{addr: "192.0.2.1", query: "key=k"})
	})

	t.Run("ban by subject, unban", func(t *testing.T) {
		mod.send(map[string]any{"type": "ban", "user": bobID, "seconds": 300})
		if b := mod.expect("ban"); user(b, "user")["id"] != bobID || b["seconds"] != 300.0 {
			t.Fatalf("ban: %v", b)
		}
		bob.expect("ban")
		bob.expectBanned()
		for _, who := range []as{
			{addr: "192.0.2.9", query: "token=" + bobTok}, // his token from elsewhere
			{addr: "192.0.2.2"},                           // his address without it
		} {
			c, _, err := dialAs(hs, "show", who)
			if err != nil {
				t.Fatal(err)
			}
			again := &client{t, c}
			again.send(map[string]string{"type": "join", "name": "someone"})
			again.expectBanned()
			c.Close()
		}
		mod.send(map[string]any{"type": "ban", "user": "nobody"})
		mod.expectError("bad_request")
		mod.send(map[string]any{"type": "unban", "user": bobID})
		if u := mod.expect("unban"); user(u, "user")["id"] != bobID || user(u, "by")["name"] != "Mod" {
			t.Fatalf("unban: %v", u)
		}
		joinAs(t, hs, "show", "bob", as{addr: "192.0.2.9", query: "token=" + bobTok})
		mod.send(map[string]any{"type": "unban", "user": bobID})
		mod.expectError("bad_request")
	})

	t.Run("ban one who just left", func(t *testing.T) {
		hit, w := joinAs(t, hs, "show", "hitandrun", as{addr: "192.0.2.7"})
		id := user(w, "you")["id"]
		hit.conn.Close()
		for l := mod.expect("leave"); user(l, "user")["id"] != id; l = mod.expect("leave") {
		}
		mod.send(map[string]any{"type": "ban", "user": id, "seconds": 60})
		if b := mod.expect("ban"); user(b, "user")["name"] != "hitandrun" || b["seconds"] != 60.0 {
			t.Fatalf("ban: %v", b)
		}
		c, _, err := dialAs(hs, "show", as{addr: "192.0.2.7"})
		if err != nil {
			t.Fatal(err)
		}
		again := &client{t, c}
		again.send(map[string]string{"type": "join", "name": "back"})
		again.expectBanned()
		c.Close()
	})

	t.Run("moderators cannot be banned", func(t *testing.T) {
		_, w := joinAs(t, hs, "show", "mod2", as{query: "token=" + mint(t, "show", access.Publish, "")})
		mod.send(map[string]any{"type": "ban", "user": user(w, "you")["id"]})
		mod.expectError("bad_request")
	})
}

// TestModerationAcrossGateways: a moderator on one gateway moderates the
// members of another, and a gateway started later catches up with the
// bans and slow mode.
func TestModerationAcrossGateways(t *testing.T) {
	url := natstest.Start(t)
	s1, _ := natsGateway(t, url)
	s2, _ := natsGateway(t, url)
	hs1, hs2 := startServer(t, moderated(s1)), startServer(t, moderated(s2))
	mod, _ := joinAs(t, hs1, "show", "x", as{addr: "192.0.2.100", query: "token=" + mint(t, "show", access.Moderate, "Mod")})
	alice, wa := joinAs(t, hs2, "show", "alice", as{addr: "192.0.2.1"})
	bobTok := mint(t, "show", access.View, "bob")
	bob, wb := joinAs(t, hs2, "show", "bob", as{addr: "192.0.2.2", query: "token=" + bobTok})
	eventually(t, "gateway 1 to see everyone", func() bool { return s1.Users("show") == 3 })
	aliceID, bobID := user(wa, "you")["id"], user(wb, "you")["id"]

	// refused joins on either gateway
	refused := func(hs *httptest.Server, who as) {
		t.Helper()
		c, _, err := dialAs(hs, "show", who)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		again := &client{t, c}
		again.send(map[string]string{"type": "join", "name": "someone"})
		again.expectBanned()
	}

	alice.send(map[string]string{"type": "message", "text": "spam"})
	spam := mod.expectText("spam")
	alice.send(map[string]any{"type": "delete", "id": spam["id"]})
	alice.expectError("forbidden")
	mod.send(map[string]any{"type": "delete", "id": spam["id"]})
	for _, c := range []*client{alice, bob} {
		if d := c.expect("delete"); d["id"] != spam["id"] || user(d, "by")["name"] != "Mod" {
			t.Fatalf("delete on gateway 2: %v", d)
		}
	}
	if _, w := joinAs(t, hs2, "show", "carol", as{addr: "192.0.2.3"}); len(historyIDs(w)) != 0 {
		t.Fatalf("history on gateway 2 after the delete: %v", w["history"])
	}

	mod.send(map[string]any{"type": "slow", "seconds": 30})
	bob.expect("slow")
	bob.send(map[string]string{"type": "message", "text": "one"})
	bob.expectText("one")
	bob.send(map[string]string{"type": "message", "text": "two"})
	bob.expectError("slow_mode")
	mod.expectText("one")
	mod.send(map[string]string{"type": "clear"})
	bob.expect("clear")
	if _, w := joinAs(t, hs2, "show", "dave", as{addr: "192.0.2.4"}); len(historyIDs(w)) != 0 || w["slow"] != 30.0 {
		t.Fatalf("welcome on gateway 2 after clear: history %v, slow %v", w["history"], w["slow"])
	}

	mod.send(map[string]any{"type": "ban", "user": aliceID})
	alice.expect("ban")
	alice.expectBanned()
	mod.send(map[string]any{"type": "ban", "user": bobID, "seconds": 600})
	bob.expect("ban")
	bob.expectBanned()
	refused(hs2, as{addr: "192.0.2.1"})
	refused(hs1, as{addr: "192.0.2.1"})
	refused(hs2, as{addr: "192.0.2.9", query: "token=" + bobTok})

	// a late gateway knows the bans and slow mode from its first join
	s3, bus3 := natsGateway(t, url)
	bus3.HistoryWait = time.Minute // it ends with the answers of the gateways it knows: wait for both
	hs3 := startServer(t, moderated(s3))
	eventually(t, "gateway 3 to know the others", func() bool {
		bus3.mu.Lock()
		defer bus3.mu.Unlock()
		return len(bus3.seen) == 2
	})
	refused(hs3, as{addr: "192.0.2.1"})
	if _, w := joinAs(t, hs3, "show", "erin", as{addr: "192.0.2.5"}); w["slow"] != 30.0 {
		t.Fatalf("slow on the late gateway: %v", w["slow"])
	}
	refused(hs3, as{addr: "192.0.2.8", query: "token=" + bobTok})

	// unban on gateway 1 lifts the ban on gateway 2
	watcher, _ := joinAs(t, hs2, "show", "frank", as{addr: "192.0.2.6"})
	mod.send(map[string]any{"type": "unban", "user": bobID})
	if u := watcher.expect("unban"); user(u, "user")["id"] != bobID {
		t.Fatalf("unban on gateway 2: %v", u)
	}
	joinAs(t, hs2, "show", "bob", as{addr: "192.0.2.2", query: "token=" + bobTok})
	refused(hs2, as{addr: "192.0.2.1"}) // alice's still holds
}
