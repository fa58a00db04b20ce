package chat

import (
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/natstest"
)

func natsGateway(t *testing.T, url string) (*Server, *NATSBus) {
	t.Helper()
	bus, err := NewNATSBus(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus.HeartbeatInterval = 200 * time.Millisecond
	return &Server{Bus: bus, RatePerSecond: 1000, Burst: 1000}, bus
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoGateways(t *testing.T) {
	url := natstest.Start(t)
	s1, _ := natsGateway(t, url)
	s2, bus2 := natsGateway(t, url)
	hs1, hs2 := startServer(t, s1), startServer(t, s2)

	alice, _ := join(t, hs1, "show", "alice")
	eventually(t, "gateway 2 to see alice", func() bool { return s2.Users("show") == 1 })
	bob, w := join(t, hs2, "show", "bob")
	if w["count"] != 2.0 || len(w["users"].([]any)) != 2 {
		t.Fatalf("bob's welcome does not see alice: %v", w)
	}
	if j := alice.expect("join"); j["user"].(map[string]any)["name"] != "bob" || j["count"] != 2.0 {
		t.Fatalf("alice sees %v", j)
	}
	eventually(t, "both gateways to count 2", func() bool { return s1.Users("show") == 2 && s2.Users("show") == 2 })

	// the same online list on both sides
	for _, hs := range []*httptest.Server{hs1, hs2} {
		c, w := join(t, hs, "show", "carol")
		var names []string
		for _, u := range w["users"].([]any) {
			names = append(names, u.(map[string]any)["name"].(string))
		}
		sort.Strings(names)
		if w["count"] != 3.0 || strings.Join(names, ",") != "alice,bob,carol" {
			t.Fatalf("carol's welcome: count %v, users %v", w["count"], names)
		}
		c.conn.Close()
		if l := alice.expect("leave"); l["user"].(map[string]any)["name"] != "carol" {
			t.Fatalf("alice: %v", l)
		}
		eventually(t, "carol to leave gateway 2", func() bool { return s2.Users("show") == 2 })
	}

	// a name taken on the other gateway is taken here too
	c := dial(t, hs1, "show")
	c.send(map[string]string{"type": "join", "name": "BOB"})
	c.expectError("name_taken")

	// every message once on both sides, in order per sender
	const n = 50
	for i := range n {
		alice.send(map[string]string{"type": "message", "text": fmt.Sprint("a", i)})
		bob.send(map[string]string{"type": "message", "text": fmt.Sprint("b", i)})
	}
	for _, cl := range []*client{alice, bob} {
		next := map[string]int{"a": 0, "b": 0}
		for next["a"] < n || next["b"] < n {
			m := cl.expect("message")
			text := m["text"].(string)
			from := text[:1]
			if want := fmt.Sprint(from, next[from]); text != want {
				t.Fatalf("got %s, want %s (out of order or duplicated)", text, want)
			}
			next[from]++
		}
	}

	// renames cross too
	bob.send(map[string]string{"type": "nick", "name": "robert"})
	if m := alice.expect("nick"); m["old"] != "bob" {
		t.Fatalf("nick: %v", m)
	}

	// gateway 2 dies without a word: its members leave gateway 1's room
	bus2.nc.Close()
	if l := alice.expect("leave"); l["user"].(map[string]any)["name"] != "robert" || l["count"] != 1.0 {
		t.Fatalf("leave: %v", l)
	}
	if got := s1.Users("show"); got != 1 {
		t.Fatalf("gateway 1 counts %d", got)
	}
}

func TestLateGatewayGetsHistory(t *testing.T) {
	url := natstest.Start(t)
	s1, _ := natsGateway(t, url)
	hs1 := startServer(t, s1)
	alice, _ := join(t, hs1, "show", "alice")
	for i := range 5 {
		alice.send(map[string]string{"type": "message", "text": fmt.Sprint("early", i)})
		alice.expect("message")
	}

	// a gateway started after those messages: its first join asks gateway 1
	s2, _ := natsGateway(t, url)
	hs2 := startServer(t, s2)
	bob, w := join(t, hs2, "show", "bob")
	hist := w["history"].([]any)
	if len(hist) != 5 {
		t.Fatalf("history on the late gateway: %v", hist)
	}
	for i, h := range hist {
		if got, want := h.(map[string]any)["text"], fmt.Sprint("early", i); got != want {
			t.Fatalf("history[%d] = %v, want %s", i, got, want)
		}
	}
	// and what follows is kept once on both
	alice.send(map[string]string{"type": "message", "text": "later"})
	if m := bob.expect("message"); m["text"] != "later" {
		t.Fatalf("bob got %v", m)
	}
	_, w = join(t, hs2, "show", "carol")
	if n := len(w["history"].([]any)); n != 6 {
		t.Fatalf("history after a new message: %d messages, want 6", n)
	}
}

// TestBigRoomAcrossGateways: a gateway applies the presence limit to the
// members of other gateways too: their joins and leaves, over the limit,
// reach its members as summaries.
func TestBigRoomAcrossGateways(t *testing.T) {
	url := natstest.Start(t)
	s1, _ := natsGateway(t, url)
	s2, _ := natsGateway(t, url)
	s1.PresenceLimit, s2.PresenceLimit = 3, 3
	hs1, hs2 := startServer(t, s1), startServer(t, s2)
	alice, _ := join(t, hs1, "show", "alice")
	eventually(t, "gateway 2 to see alice", func() bool { return s2.Users("show") == 1 })

	// count follows alice's view until it reaches want; it returns the
	// joins and leaves she was told of, one by one and summed up
	count := 1
	follow := func(want int) (events, summed int) {
		t.Helper()
		for count != want {
			m := alice.next()
			switch m["type"] {
			case "join", "leave":
				events++
			case "presence":
				summed += int(m["joined"].(float64)) + int(m["left"].(float64))
			default:
				t.Fatalf("alice got %v", m)
			}
			count = int(m["count"].(float64))
		}
		return events, summed
	}
	var others []*client
	for i := range 8 {
		c, _ := join(t, hs2, "show", fmt.Sprint("m", i))
		others = append(others, c)
	}
	if events, summed := follow(9); events != 2 || summed != 6 {
		t.Fatalf("joins: %d events and %d in summaries, want 2 (to 3 members) and 6", events, summed)
	}
	for _, c := range others {
		c.conn.Close()
	}
	if events, summed := follow(1); events+summed != 8 || events > 3 {
		t.Fatalf("leaves: %d events and %d in summaries, want 8 in all, events only from 3 members down", events, summed)
	}
}
