package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/bench/internal/loadgen"
	"github.com/livegate/livegate/chat"
)

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"ws://127.0.0.1:8080/chat/bench", true},
		{"ws://127.1.2.3:9/chat/x", true},
		{"ws://localhost:8080/chat/bench", true},
		{"ws://LOCALHOST/chat/bench", true},
		{"ws://[::1]:8080/chat/bench", true},
		{"wss://127.0.0.1/chat/bench", true},
		{"ws://10.0.0.1:8080/chat/bench", false},
		{"ws://192.168.1.10/chat/bench", false},
		{"ws://8.8.8.8/chat/bench", false},
		{"ws://example.com/chat/bench", false},
		{"ws://localhost.example.com/chat/bench", false},
		{"ws://127.0.0.1.nip.io/chat/bench", false},
		{"ws://0.0.0.0:8080/chat/bench", false},
		{"ws://[::ffff:10.0.0.1]/chat/bench", false},
		{"http://127.0.0.1:8080/chat/bench", false},
		{"127.0.0.1:8080", false},
		{"ws://%zz", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := loadgen.CheckURL(tt.url, "ws", "wss")
			if (err == nil) != tt.ok {
				t.Errorf("CheckURL(%q) error = %v, want ok=%v", tt.url, err, tt.ok)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-clients", "10", "-senders", "2", "-rate", "5,10", "-ramp", "100/s"}, ""},
		{[]string{"-url", "ws://10.0.0.2:8080/chat/x"}, "not a loopback"},
		{[]string{"-clients", "10", "-senders", "11"}, "-senders"},
		{[]string{"-rate", ""}, ""},
		{[]string{"-rate", "fast"}, "-rate"},
		{[]string{"-rate", "5,"}, "-rate"},
		{[]string{"-ramp", "0/s"}, "-ramp"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"-mode", "moderation", "-key", "k"}, ""},
		{[]string{"-mode", "moderation"}, "-key or -token"},
		{[]string{"-mode", "moderation", "-key", "k", "-members", "0"}, "-members"},
		{[]string{"-mode", "fast"}, "-mode"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseFlags(tt.args, &strings.Builder{})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("parseFlags error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	cfg := config{maxP99: 100 * time.Millisecond, minRatio: 0.99}
	tests := []struct {
		name string
		s    step
		pass bool
	}{
		{"ok", step{ChatStep: loadgen.ChatStep{Expected: 100, Delivered: 100, DeliveredRatio: 1, P99ms: 20}}, true},
		{"short", step{ChatStep: loadgen.ChatStep{Expected: 100, Delivered: 90, DeliveredRatio: 0.9, P99ms: 20}}, false},
		{"slow", step{ChatStep: loadgen.ChatStep{Expected: 100, Delivered: 100, DeliveredRatio: 1, P99ms: 150}}, false},
		{"nothing", step{}, false},
	}
	for _, tt := range tests {
		if pass, why := judge(tt.s, cfg); pass != tt.pass {
			t.Errorf("%s: judge = %v (%s), want %v", tt.name, pass, why, tt.pass)
		}
	}
}

// TestFanout runs the moderation mode against a chat server in the test:
// every member gets each delete.
func TestFanout(t *testing.T) {
	p := &access.Policy{Keys: []string{"k"}}
	s := &chat.Server{Keys: p, Access: p}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.ServeRoom(w, r, "bench") }))
	defer func() { s.Close(); hs.Close() }()
	cfg, err := parseFlags([]string{"-mode", "moderation", "-url", "ws" + strings.TrimPrefix(hs.URL, "http") + "/chat/bench",
		"-key", "k", "-members", "50", "-rounds", "2"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := runFanout(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Joined != 50 || len(rep.Rounds) != 2 || rep.Arrived != 100 || rep.Missing != 0 || rep.MaxMs <= 0 {
		t.Fatalf("report %+v", rep)
	}
}
