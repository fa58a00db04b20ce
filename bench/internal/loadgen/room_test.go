package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/chat"
	"github.com/livegate/livegate/web"
)

// startChat runs livegate's chat server, with the gateway's Origin rule,
// on a loopback port; every path /chat/{room} is a room.
func startChat(t *testing.T) *httptest.Server {
	t.Helper()
	s := &chat.Server{CheckOrigin: web.OriginChecker(nil)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeRoom(w, r, strings.TrimPrefix(r.URL.Path, "/chat/"))
	}))
	t.Cleanup(func() { s.Close(); hs.Close() })
	return hs
}

// TestChatRoom joins a real chat server, sends one step and checks that
// every member got every message once, with a latency; and that a foreign
// Origin is refused.
func TestChatRoom(t *testing.T) {
	hs := startChat(t)
	wsURL := "ws" + strings.TrimPrefix(hs.URL, "http") + "/chat/room1"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("step", func(t *testing.T) {
		r := &ChatRoom{URL: wsURL, Origin: hs.URL, Clients: 6, Senders: 3, Deadline: time.Now().Add(time.Minute)}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.Connect(ctx)
		if c := r.Counts(); c.Connected != 6 || c.Failed != 0 {
			t.Fatalf("joined %d, failed %d (%v), want 6 and 0", c.Connected, c.Failed, r.Errors())
		}
		st := r.RunStep(ctx, 0, 10, time.Second, 20*time.Second)
		if st.Sent < 5 || st.Rejected != 0 || st.Receivers != 6 {
			t.Errorf("step %+v: want about 10 sent to 6 receivers, none rejected", st)
		}
		if st.Expected != st.Sent*6 || st.Delivered != st.Expected {
			t.Errorf("delivered %d of %d expected (sent %d): every member gets each message once", st.Delivered, st.Expected, st.Sent)
		}
		if st.P50ms <= 0 || st.P99ms < st.P50ms || st.MaxMs < st.P99ms {
			t.Errorf("latency p50 %v p99 %v max %v", st.P50ms, st.P99ms, st.MaxMs)
		}
		if sent, delivered := r.StepTotals(0); sent != st.Sent || delivered != st.Delivered || r.Latency(0).N() != uint64(delivered) {
			t.Errorf("StepTotals %d %d, latency samples %d", sent, delivered, r.Latency(0).N())
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if c := r.Counts(); c.Closes != 0 || c.ErrorFrames != 0 || c.ForeignFrames != 0 || r.ErrorCount() != 0 {
			t.Errorf("counts %+v, errors %v: want none", c, r.Errors())
		}
	})

	t.Run("foreign origin", func(t *testing.T) {
		r := &ChatRoom{URL: wsURL, Origin: "http://evil.example", Clients: 2, Deadline: time.Now().Add(time.Minute)}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.Connect(ctx)
		if c := r.Counts(); c.Connected != 0 || c.Failed != 2 {
			t.Errorf("joined %d, failed %d: want every join refused", c.Connected, c.Failed)
		}
		if errs := strings.Join(r.Errors(), "; "); !strings.Contains(errs, "403") {
			t.Errorf("errors %q: want the 403", errs)
		}
	})
}

func TestChatRoomStart(t *testing.T) {
	soon := time.Now().Add(time.Minute)
	for _, c := range []struct {
		name string
		r    *ChatRoom
		want string
	}{
		{"not loopback", &ChatRoom{URL: "ws://10.0.0.1/chat/x", Clients: 1, Deadline: soon}, "loopback"},
		{"http", &ChatRoom{URL: "http://127.0.0.1/chat/x", Clients: 1, Deadline: soon}, "ws://"},
		{"no clients", &ChatRoom{URL: "ws://127.0.0.1/chat/x", Deadline: soon}, "clients"},
		{"senders", &ChatRoom{URL: "ws://127.0.0.1/chat/x", Clients: 1, Senders: 2, Deadline: soon}, "senders"},
		{"no deadline", &ChatRoom{URL: "ws://127.0.0.1/chat/x", Clients: 1}, "Deadline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.r.Start()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Start = %v, want an error about %q", err, c.want)
			}
		})
	}
}
