package chat

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// countingConn counts the writes that reach a connection which is not TCP
// (as a TLS connection is not).
type countingConn struct {
	net.Conn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.Conn.Write(p)
}

// TestFlushConn writes through a flushConn: before start, writes pass
// through; then they are collected (kick called for the first) and flush sends
// them, over a real loopback socket (more buffers than one writev takes,
// empty ones, more bytes than the socket buffer holds, so partial writes
// while the peer reads) or, on any other connection, as one write. A
// write made while copying is set arrives as it was, though its buffer
// changes after; but for the tail of the message being written, which is
// kept.
func TestFlushConn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		buffers int
		size    int
		tcp     bool
	}{
		{"one", 1, 10, true},
		{"more than one writev takes", 3*writevMax + 7, 3, true},
		{"partial writes", 64, 64 << 10, true},
		{"empty ones", 5, 0, true},
		{"not TCP: one write", 200, 50, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var client, server net.Conn
			if tc.tcp {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				if client, err = net.Dial("tcp", ln.Addr().String()); err != nil {
					t.Fatal(err)
				}
				if server, err = ln.Accept(); err != nil {
					t.Fatal(err)
				}
				server.(*net.TCPConn).SetWriteBuffer(64 << 10)
			} else {
				client, server = net.Pipe()
			}
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(client)
				got <- b
			}()
			counted := &countingConn{Conn: server}
			c := &flushConn{Conn: server}
			if !tc.tcp {
				c.Conn = counted
			}

			want := []byte("before start;")
			c.Write(want)
			kicks := 0
			c.start(func() { kicks++ })
			var bufs [][]byte
			for i := range tc.buffers {
				b := bytes.Repeat([]byte{byte('a' + i%26)}, tc.size)
				if i%2 == 1 {
					b = append(b, fmt.Sprint(i)...)
				}
				bufs = append(bufs, b)
				want = append(want, b...)
			}
			for _, b := range bufs {
				c.Write(b)
			}
			head, msg := []byte("head"), []byte("message")
			c.setCopying(true, [][]byte{msg})
			c.Write(head)
			c.Write(msg[2:])
			c.setCopying(false, nil)
			copy(head, "HEAD")   // after the write: not what is sent
			copy(msg, "MESSAGE") // its tail is kept: what is sent
			want = append(want, "headSSAGE"...)
			if kicks != 1 {
				t.Errorf("%d kicks for the writes of one flush, want 1", kicks)
			}
			if !c.pending() {
				t.Fatal("nothing pending after writes")
			}
			if err := c.flush(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if c.pending() {
				t.Fatal("still pending after a flush")
			}
			if c.Write([]byte{}); kicks != 2 {
				t.Errorf("the first write after a flush: %d kicks in all, want 2", kicks)
			}
			if !tc.tcp && counted.writes != 2 {
				t.Errorf("%d writes reached the connection, want 2 (one before start, one flush)", counted.writes)
			}
			c.Close()
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("received %d bytes, want %d (or different bytes)", len(b), len(want))
			}
		})
	}
}

// TestFramedOnce: events batched to several members are framed by
// gorilla/websocket on the first member's connection only; the others
// get that frame, and every member reads each event whole and in order.
func TestFramedOnce(t *testing.T) {
	s := &Server{FlushInterval: time.Hour, FlushPerConn: time.Hour}
	hs := startServer(t, s)
	var cs []*client
	for _, name := range []string{"a", "b", "c", "d"} {
		c, _ := join(t, hs, "r", name) // the first flush is at once, the others wait an hour
		cs = append(cs, c)
	}
	for i := range 3 {
		cs[0].send(map[string]string{"type": "message", "text": fmt.Sprint("m", i)})
	}
	r := s.room("r")
	var evs []*event
	eventually(t, "the messages waiting for the flush", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		evs = slices.Clone(r.out)
		return len(r.history) == 3
	})
	r.mu.Lock()
	r.flush()
	r.mu.Unlock()
	for _, c := range cs {
		for i := range 3 {
			if m := c.expect("message"); m["text"] != fmt.Sprint("m", i) {
				t.Fatalf("message %d: %v", i, m)
			}
		}
	}
	for i, ev := range evs {
		if f := ev.frame.Load(); f == nil || !bytes.HasSuffix(*f, ev.data) {
			t.Errorf("event %d (%s) not kept framed: %v", i, ev.data, f)
		}
	}
}
