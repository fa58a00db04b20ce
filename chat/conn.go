package chat

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// writevMax is the most buffers one flush hands the socket at a time. A
// TCP socket keeps the array of its largest writev (16 bytes a buffer) for
// as long as it lives; with this cap, a member that once got a long batch
// idles on at most 1 KiB of it.
const writevMax = 64

// flushConn is the net.Conn a connection's websocket.Conn writes to. It
// writes through during the handshake; once the member's writer takes it
// over (start), a write only collects the frame, and flush sends what was
// collected at once: net.Buffers.WriteTo, one writev on a TCP connection,
// for a batch of frames. So frames are encoded by gorilla/websocket, and a
// burst of them still costs one system call.
//
// Collected frames are kept, not copied (they are prepared messages,
// encoded once for every member, or control frames gorilla allocates for
// each write), except while a message of the member's own is written
// (copying): gorilla frames its start in a pooled write buffer, which
// another connection may reuse before the flush, and passes the rest of a
// long part on as it is; such a tail of one of the message's parts
// (stable) is kept. The first
// write after a flush calls kick, which starts the writer unless it runs:
// a write from elsewhere than the writer (gorilla's own close frame on a
// protocol error) is flushed too.
type flushConn struct {
	net.Conn
	collecting atomic.Bool // set by start: writes are collected
	kick       func()      // set by start

	mu      sync.Mutex
	copying bool
	stable  [][]byte // while copying: the parts of the message being written
	bufs    net.Buffers
}

// collect appends frames to c.bufs; it reports whether they are the first
// since the last flush. Called with c.mu held.
func (c *flushConn) collect(frames ...[]byte) bool {
	first := len(c.bufs) == 0
	c.bufs = append(c.bufs, frames...)
	return first
}

// start makes writes collect; the first after a flush calls kick.
func (c *flushConn) start(kick func()) {
	c.kick = kick
	c.collecting.Store(true)
}

// Write collects p, or writes it through before start.
func (c *flushConn) Write(p []byte) (int, error) {
	if !c.collecting.Load() {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	if c.copying && !isTail(p, c.stable) {
		p = bytes.Clone(p)
	}
	first := c.collect(p)
	c.mu.Unlock()
	if first {
		c.kick()
	}
	return len(p), nil
}

// add collects frames framed before (see member.writeEvents).
func (c *flushConn) add(frames ...[]byte) {
	c.mu.Lock()
	first := c.collect(frames...)
	c.mu.Unlock()
	if first {
		c.kick()
	}
}

// last is the frame collected last, nil for none.
func (c *flushConn) last() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bufs) == 0 {
		return nil
	}
	return c.bufs[len(c.bufs)-1]
}

// SetWriteDeadline applies only before start: flush sets its own.
func (c *flushConn) SetWriteDeadline(t time.Time) error {
	if c.collecting.Load() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// setCopying says whether the writes that follow must be copied, but for
// tails of the stable parts.
func (c *flushConn) setCopying(on bool, stable [][]byte) {
	c.mu.Lock()
	c.copying, c.stable = on, stable
	c.mu.Unlock()
}

// isTail reports whether p is the end of one of bs, in its own memory.
func isTail(p []byte, bs [][]byte) bool {
	for _, b := range bs {
		if len(p) > 0 && len(p) <= len(b) && &p[len(p)-1] == &b[len(b)-1] {
			return true
		}
	}
	return false
}

// pending reports whether frames wait for a flush.
func (c *flushConn) pending() bool {
	c.mu.Lock()
	n := len(c.bufs)
	c.mu.Unlock()
	return n > 0
}

// flush writes the collected frames within timeout: with writev on a TCP
// connection, as one write on any other (a TLS connection would otherwise
// make a record of each frame).
func (c *flushConn) flush(timeout time.Duration) error {
	c.mu.Lock()
	bufs := c.bufs
	c.bufs = nil
	c.mu.Unlock()
	if len(bufs) == 0 {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, tcp := c.Conn.(*net.TCPConn); !tcp {
		bufs = net.Buffers{bytes.Join(bufs, nil)}
	}
	for len(bufs) > 0 {
		n := min(len(bufs), writevMax)
		part := bufs[:n:n]
		if _, err := part.WriteTo(c.Conn); err != nil {
			return err
		}
		bufs = bufs[n:]
	}
	return nil
}
