package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 123456789, 1<<40 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		up := bucketUpper(i)
		if up < v {
			t.Errorf("bucketUpper(bucketOf(%d)) = %d < value", v, up)
		}
		if v >= subBuckets && float64(up-v) > float64(v)/subBuckets {
			t.Errorf("value %d: bucket upper %d more than 1/%d above", v, up, subBuckets)
		}
		if i > 0 && bucketUpper(i-1) >= v {
			t.Errorf("value %d: previous bucket %d already reaches %d", v, i-1, bucketUpper(i-1))
		}
	}
	if got := bucketOf(1 << 50); got != numBuckets-1 {
		t.Errorf("bucketOf(2^50) = %d, want clamp to %d", got, numBuckets-1)
	}
}

func TestQuantile(t *testing.T) {
	uniform := func(n int) []time.Duration {
		var d []time.Duration
		for i := 1; i <= n; i++ {
			d = append(d, time.Duration(i)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{5 * time.Millisecond}, 0.99, 5 * time.Millisecond},
		{"p50 of 1..100ms", uniform(100), 0.50, 50 * time.Millisecond},
		{"p90 of 1..100ms", uniform(100), 0.90, 90 * time.Millisecond},
		{"p99 of 1..100ms", uniform(100), 0.99, 99 * time.Millisecond},
		{"max of 1..100ms", uniform(100), 1, 100 * time.Millisecond},
		{"small exact values", []time.Duration{1, 2, 3, 4}, 0.5, 2},
		{"negative counts as zero", []time.Duration{-time.Second}, 0.5, 0},
		{"outlier", append(uniform(99), time.Minute), 0.99, 99 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, s := range tt.samples {
				h.record(s)
			}
			got := quantile(h.snapshot(), tt.q, h.maxValue())
			if got < tt.want || float64(got-tt.want) > float64(tt.want)/subBuckets {
				t.Errorf("quantile(%v) = %v, want %v (+1/%d)", tt.q, got, tt.want, subBuckets)
			}
		})
	}
}

func TestQuantileDiff(t *testing.T) {
	var h histogram
	h.record(time.Second)
	before := h.snapshot()
	for i := 0; i < 10; i++ {
		h.record(time.Millisecond)
	}
	got := quantile(diff(h.snapshot(), before), 0.99, 0)
	if got < time.Millisecond || got > time.Millisecond+time.Millisecond/subBuckets {
		t.Errorf("interval p99 = %v, want about 1ms (the 1s sample is before the interval)", got)
	}
}

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
			_, err := checkURL(tt.url)
			if (err == nil) != tt.ok {
				t.Errorf("checkURL(%q) error = %v, want ok=%v", tt.url, err, tt.ok)
			}
		})
	}
}

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
		if err := loopbackOnly("tcp", tt.addr, nil); (err == nil) != tt.ok {
			t.Errorf("loopbackOnly(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
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
		{"ok", step{Expected: 100, Delivered: 100, DeliveredRatio: 1, P99ms: 20}, true},
		{"short", step{Expected: 100, Delivered: 90, DeliveredRatio: 0.9, P99ms: 20}, false},
		{"slow", step{Expected: 100, Delivered: 100, DeliveredRatio: 1, P99ms: 150}, false},
		{"nothing", step{}, false},
	}
	for _, tt := range tests {
		if pass, why := judge(tt.s, cfg); pass != tt.pass {
			t.Errorf("%s: judge = %v (%s), want %v", tt.name, pass, why, tt.pass)
		}
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
		if got := errKind(tt.err); got != tt.want {
			t.Errorf("errKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
