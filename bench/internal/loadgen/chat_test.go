package loadgen

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:80", true},
		{"[::1]:80", true},
		{"10.1.2.3:80", false},
		{"93.184.216.34:443", false},
		{"nonsense", false},
	}
	for _, tt := range tests {
		if err := LoopbackOnly("tcp", tt.addr, nil); (err == nil) != tt.ok {
			t.Errorf("LoopbackOnly(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

func TestParseFrame(t *testing.T) {
	msg := string(appendText(nil, 1763841600123456789, 2))
	if want := `{"type":"message","text":"1763841600123456789 2 chatload"}`; msg != want {
		t.Fatalf("appendText = %s, want %s", msg, want)
	}
	tests := []struct {
		name  string
		frame string
		want  frame
	}{
		{"node message", `{"type":"message","id":"x","user":{"id":"u","name":"c1"},"text":"1763841600123456789 2 chatload","ts":"2026-11-22T20:00:00.000Z"}`,
			frame{kind: frameMessage, sent: 1763841600123456789, step: 2}},
		{"sorted keys", `{"id":"x","text":"5 0 chatload","ts":"t","type":"message","user":{"id":"u","name":"c1"}}`,
			frame{kind: frameMessage, sent: 5}},
		{"someone else's text", `{"type":"message","text":"hello","user":{}}`, frame{kind: frameForeign}},
		{"text with extra words", `{"type":"message","text":"5 0 chatload and more"}`, frame{kind: frameForeign}},
		{"truncated head", `{"type":"message","id":"x","user":{"id":"u","na`, frame{kind: frameForeign}},
		{"join", `{"type":"join","user":{"id":"u","name":"c9"},"count":10}`, frame{kind: frameJoin}},
		{"leave", `{"type":"leave","user":{"id":"u","name":"c9"},"count":9}`, frame{kind: frameLeave}},
		{"presence", `{"type":"presence","count":5012,"joined":37,"left":4,"joined_users":[{"id":"u","name":"c9"}]}`, frame{kind: framePresence}},
		{"error", `{"type":"error","code":"rate_limited","message":"slow down"}`, frame{kind: frameError, code: "rate_limited"}},
		{"welcome with history", `{"type":"welcome","you":{},"users":[],"count":1,"history":[{"type":"message","text":"1 0 chatload"}]}`,
			frame{kind: frameWelcome}},
		{"nick", `{"type":"nick","user":{"id":"u","name":"b"},"old":"a"}`, frame{kind: frameOther}},
		{"empty", ``, frame{kind: frameOther}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseFrame([]byte(tt.frame)); got != tt.want {
				t.Errorf("parseFrame = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestErrKind(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40123}
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("upgrade: %w", &net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: errors.New("connect: connection refused")}),
			"upgrade: dial tcp: connect: connection refused"},
		{&net.OpError{Op: "read", Net: "tcp", Source: addr, Addr: addr, Err: errors.New("i/o timeout")}, "read tcp: i/o timeout"},
		{errors.New("join refused: name_taken"), "join refused: name_taken"},
	}
	for _, tt := range tests {
		if got := ErrKind(tt.err); got != tt.want {
			t.Errorf("ErrKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
