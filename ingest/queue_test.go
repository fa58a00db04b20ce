package ingest

import (
	"errors"
	"testing"
	"time"
)

func TestQueue(t *testing.T) {
	q := newQueue(10)
	noWait := func(int) { t.Error("full called with room left") }
	for _, p := range []string{"abc", "defg", "hij"} {
		if err := q.put([]byte(p), time.Second, noWait); err != nil {
			t.Fatal(err)
		}
	}
	if q.buffered() != 10 {
		t.Fatalf("buffered %d, want 10", q.buffered())
	}
	// full: the callback runs (with the queue locked: it must not call back
	// into the queue) and the put fails after the wait
	var sawFull int
	start := time.Now()
	err := q.put([]byte("k"), 50*time.Millisecond, func(n int) { sawFull = n })
	if !errors.Is(err, errOverrun) || sawFull != 10 || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("put on a full queue: %v, full(%d) after %s", err, sawFull, time.Since(start))
	}
	// a get makes room for a waiting put
	done := make(chan error)
	go func() { done <- q.put([]byte("xy"), time.Second, func(int) {}) }()
	if p, ok := q.get(); !ok || string(p) != "abc" {
		t.Fatalf("get: %q %v", p, ok)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiting put: %v", err)
	}
	// one chunk bigger than the bound is accepted into an empty queue
	big := newQueue(4)
	if err := big.put(make([]byte, 100), time.Millisecond, noWait); err != nil {
		t.Fatalf("oversized chunk into an empty queue: %v", err)
	}
	// close: what is left drains in order, then ok=false; puts fail
	q.close()
	if err := q.put([]byte("z"), time.Second, noWait); !errors.Is(err, errClosed) {
		t.Errorf("put after close: %v", err)
	}
	var got string
	for {
		p, ok := q.get()
		if !ok {
			break
		}
		got += string(p)
	}
	if got != "defghijxy" {
		t.Errorf("drained %q", got)
	}
}
