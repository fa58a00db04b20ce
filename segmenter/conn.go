package segmenter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Listener wraps the TCP listener of the HTTP server that serves Handle so
// that the finished window goes out in fewer system calls and packets: a
// body read from a file through an io.SectionReader is sent with sendfile
// at the section's own offset (many requests share one descriptor), and a
// segment's header is held back with MSG_MORE to ride in the first packet
// of its body. Set the server's ConnContext to ConnContext too. Anything
// else passes through to the *net.TCPConn unchanged.
//
// With Answer set, the requests that open a connection may be answered
// before net/http sees them: see Answerer.
type Listener struct {
	net.Listener
	// Answer, if set, is offered every request that opens a connection.
	Answer Answerer
	// HeaderTimeout bounds the reading of a request that Answer is
	// offered, from its first byte, and IdleTimeout the wait for the next
	// one, as the http.Server's ReadHeaderTimeout and IdleTimeout do for
	// the others; 0 is no limit.
	HeaderTimeout, IdleTimeout time.Duration

	mu     sync.Mutex
	direct map[*conn]struct{} // the connections whose requests all went to Answer
}

// Answerer answers one request itself, or declines. head is the request's
// head, from its request line to its blank line (the whole request: one
// answered has no body), and remote the client's address. It appends the
// answer's status line and header to dst and returns them, with a body to
// send after them from offset 0 of a file shared by many answers (size
// bytes; nil for none). It declines with ok false, and from that request
// on the connection is net/http's: every byte not answered reaches
// net/http unchanged, so an Answerer can only pick requests, never change
// how net/http reads them.
type Answerer func(dst, head []byte, remote string) (reply []byte, body *os.File, size int64, ok bool)

// maxHead bounds the head of a request an Answerer is offered; a longer
// one goes to net/http (whose own limit is http.Server.MaxHeaderBytes).
const maxHead = 8 << 10

// heads holds the buffers of direct connections (*[]byte of cap maxHead),
// back once net/http has a connection: most connections (pages, chat,
// live players) are handed over at their first request.
var heads = sync.Pool{New: func() any { b := make([]byte, 0, maxHead); return &b }}

// Accept wraps each TCP connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		dc := &conn{TCPConn: tc, answer: l.Answer, headerTimeout: l.HeaderTimeout, idleTimeout: l.IdleTimeout}
		if dc.answer != nil {
			dc.l = l
			dc.remote = tc.RemoteAddr().String()
			dc.buf = (*heads.Get().(*[]byte))[:0]
			l.mu.Lock()
			if l.direct == nil {
				l.direct = map[*conn]struct{}{}
			}
			l.direct[dc] = struct{}{}
			l.mu.Unlock()
		}
		return dc, nil
	}
	return c, err
}

// CloseDirect closes the connections whose requests have all gone to
// Answer so far, each once the answer it is sending is sent. Call it when
// the server shuts down (http.Server.RegisterOnShutdown): net/http takes
// such a connection for a new one, which Shutdown leaves open for 5 s. A
// connection is not handed over meanwhile (handOver waits for l.mu).
func (l *Listener) CloseDirect() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.direct {
		c.close()
	}
}

// forget drops c from the direct connections.
func (l *Listener) forget(c *conn) {
	l.mu.Lock()
	delete(l.direct, c)
	l.mu.Unlock()
}

type connKey struct{}

// ConnContext is the http.Server.ConnContext of a server on a Listener: it
// lets Handle find the connection of a request.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if dc, ok := c.(*conn); ok {
		return context.WithValue(ctx, connKey{}, dc)
	}
	return ctx
}

// conn is one connection of a Listener. net/http writes to it from the
// request's goroutine only, so more needs no lock; Read runs on the
// connection's goroutine, which owns answer, buf and reply.
type conn struct {
	*net.TCPConn
	more bool // the next Write is a header that a sendfile follows

	answer                     Answerer // nil once net/http has the connection
	remote                     string
	buf                        []byte // read and not yet answered or given to net/http
	reply                      []byte
	headerTimeout, idleTimeout time.Duration

	l       *Listener
	mu      sync.Mutex
	busy    bool // an answer is being sent
	closing bool // Close came during it: the answer ends it
}

var blankLine = []byte("\r\n\r\n")

// Read gives net/http the connection's bytes, once the requests that open
// it have been answered by answer, or declined.
func (c *conn) Read(p []byte) (int, error) {
	for c.answer != nil {
		end := bytes.Index(c.buf, blankLine)
		if end < 0 {
			if len(c.buf) == cap(c.buf) {
				c.handOver()
				break
			}
			if err := c.fill(); err != nil {
				return 0, err // net/http too ends a connection that fails in a head
			}
			continue
		}
		head := c.buf[:end+len(blankLine)]
		reply, body, size, ok := c.answer(c.reply[:0], head, c.remote)
		c.reply = reply[:0]
		if ok {
			ok, err := c.send(reply, body, size)
			if err != nil {
				return 0, err
			}
			if ok {
				c.buf = c.buf[:copy(c.buf, c.buf[len(head):])]
				if len(c.buf) == 0 && c.idleTimeout > 0 {
					c.SetReadDeadline(time.Now().Add(c.idleTimeout))
				}
				continue
			}
		}
		c.handOver()
	}
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		if c.buf = c.buf[:copy(c.buf, c.buf[n:])]; len(c.buf) == 0 {
			b := c.buf[:0]
			heads.Put(&b)
			c.buf = nil
		}
		return n, nil
	}
	return c.TCPConn.Read(p)
}

// fill reads more of a request; its first bytes start the header timeout.
func (c *conn) fill() error {
	n, err := c.TCPConn.Read(c.buf[len(c.buf):cap(c.buf)])
	if n > 0 && len(c.buf) == 0 && c.headerTimeout > 0 {
		c.SetReadDeadline(time.Now().Add(c.headerTimeout))
	}
	c.buf = c.buf[:len(c.buf)+n]
	return err
}

// handOver leaves the connection to net/http from the request at the
// start of buf, with the header timeout that net/http set for it.
func (c *conn) handOver() {
	c.l.forget(c)
	c.answer, c.reply = nil, nil
	if c.headerTimeout > 0 {
		c.SetReadDeadline(time.Now().Add(c.headerTimeout))
	}
}

// send sends an answer; it reports false, having sent nothing, when the
// body's file has been closed (its window is gone).
func (c *conn) send(reply []byte, body *os.File, size int64) (sent bool, err error) {
	c.mu.Lock()
	c.busy = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.busy = false
		closing := c.closing
		c.mu.Unlock()
		if closing {
			c.TCPConn.Close()
			err = net.ErrClosed
		}
	}()
	if body == nil {
		_, err = c.TCPConn.Write(reply)
		return true, err
	}
	fc, err := body.SyscallConn()
	if err != nil {
		return false, nil
	}
	// Control holds a reference to the file, so its descriptor number is
	// not reused under the sendfile; it fails, calling nothing, once closed
	var written int64
	cerr := fc.Control(func(ffd uintptr) {
		sent = true
		c.more = true
		if _, err = c.Write(reply); err == nil {
			err = c.sendfile(int(ffd), 0, size, &written)
		}
	})
	if !sent {
		return false, nil
	}
	if err == nil && written < size {
		err = io.ErrShortWrite // the file is shorter than its header says: end the connection
	}
	return true, errors.Join(err, cerr)
}

// Close closes the connection, after the answer being sent if there is one
// (net/http's Shutdown takes a connection whose requests all went to Answer
// for an idle one).
func (c *conn) Close() error {
	if c.l != nil {
		c.l.forget(c)
	}
	return c.close()
}

// close closes the socket, or has the answer being sent close it.
func (c *conn) close() error {
	c.mu.Lock()
	if c.busy {
		c.closing = true
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.TCPConn.Close()
}

// holdHeader sends the next Write with MSG_MORE, if r came through a
// Listener: call it only when a body follows the header.
func holdHeader(ctx context.Context) {
	if c, ok := ctx.Value(connKey{}).(*conn); ok {
		c.more = true
	}
}

// Write sends p, with MSG_MORE after holdHeader.
func (c *conn) Write(p []byte) (int, error) {
	if !c.more {
		return c.TCPConn.Write(p)
	}
	c.more = false
	n := 0
	err := sendAll(c.TCPConn, "write", func() bool { return n < len(p) }, func(fd int) (int, error) {
		m, err := unix.SendmsgN(fd, p[n:], nil, nil, unix.MSG_MORE)
		n += max(m, 0)
		return m, err
	})
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

// sendAll calls send on the socket's descriptor while more reports true,
// waiting whenever the socket is full; send returns what it sent, and
// sending nothing ends the loop.
func sendAll(c *net.TCPConn, name string, more func() bool, send func(fd int) (int, error)) error {
	sc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = sc.Write(func(fd uintptr) bool {
		for more() {
			n, err := send(int(fd))
			switch {
			case errors.Is(err, unix.EAGAIN):
				return false
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				serr = fmt.Errorf("%s: %w", name, err)
				return true
			case n == 0:
				return true
			}
		}
		return true
	})
	return errors.Join(err, serr)
}

// ReadFrom sends a section of a file (possibly behind an io.LimitedReader,
// as io.CopyN makes it) with sendfile from the section's offset, leaving
// the file's own offset alone; other readers go to the TCPConn.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	lr, _ := r.(*io.LimitedReader)
	src := r
	if lr != nil {
		src = lr.R
	}
	sr, ok := src.(*io.SectionReader)
	var f *os.File
	var base, size int64
	if ok {
		var ra io.ReaderAt
		ra, base, size = sr.Outer()
		f, ok = ra.(*os.File)
	}
	if !ok {
		return c.TCPConn.ReadFrom(r)
	}
	pos, _ := sr.Seek(0, io.SeekCurrent)
	remain := size - pos
	if lr != nil {
		remain = min(remain, lr.N)
	}
	if remain <= 0 {
		return 0, nil
	}
	fc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	var serr error
	// Control holds a reference to the file: a concurrent Close waits, so
	// its descriptor number is not reused under the sendfile (which stops
	// early if the file is shorter than its section)
	err = fc.Control(func(ffd uintptr) {
		serr = c.sendfile(int(ffd), base+pos, remain, &written)
	})
	sr.Seek(written, io.SeekCurrent)
	if lr != nil {
		lr.N -= written
	}
	return written, errors.Join(err, serr)
}

// sendfile sends n bytes of the file ffd from off, adding what it sent to
// *written; it stops early if the file is shorter.
func (c *conn) sendfile(ffd int, off, n int64, written *int64) error {
	return sendAll(c.TCPConn, "sendfile", func() bool { return n > 0 }, func(fd int) (int, error) {
		m, err := unix.Sendfile(fd, ffd, &off, int(min(n, 1<<30)))
		n -= int64(max(m, 0))
		*written += int64(max(m, 0))
		return m, err
	})
}
