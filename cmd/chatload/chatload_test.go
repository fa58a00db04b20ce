package main

import (
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/cmd/internal/loadgen"
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
		{[]string{"-rate", "fast"}, "-rate"},
		{[]string{"-ramp", "0/s"}, "-ramp"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"extra"}, "unexpected argument"},
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

func TestParseProc(t *testing.T) {
	status := "Name:\tnode\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t7\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 51234 {
		t.Errorf("parseVmRSS = %d, %v; want 51234", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("parseVmRSS without VmRSS: no error")
	}
	stat := "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0"
	if got, err := parseCPUTicks([]byte(stat)); err != nil || got != 175 {
		t.Errorf("parseCPUTicks = %d, %v; want 175", got, err)
	}
}

func TestParseProcStat(t *testing.T) {
	stat := "cpu  100 5 50 1000 7 3 20 9 0 0\ncpu0 50 2 25 500 3 1 10 4 0 0\n"
	busy, softirq, steal, err := parseProcStat([]byte(stat))
	if err != nil || busy != 178 || softirq != 20 || steal != 9 {
		t.Errorf("parseProcStat = %d %d %d %v; want 178 20 9", busy, softirq, steal, err)
	}
	if _, _, _, err := parseProcStat([]byte("intr 1 2\n")); err == nil {
		t.Error("parseProcStat without cpu line: no error")
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
