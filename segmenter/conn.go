package segmenter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Listener wraps the TCP listener of the HTTP server that serves Handle so
// that the finished window goes out in fewer system calls and packets: a
// body read from a file through an io.SectionReader is sent with sendfile
// at the section's own offset (many requests share one descriptor), and a
// segment's header is held back with MSG_MORE to ride in the first packet
// of its body. Set the server's ConnContext to ConnContext too. Anything
// else passes through to the *net.TCPConn unchanged.
type Listener struct {
	net.Listener
}

// Accept wraps each TCP connection.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		return &conn{TCPConn: tc}, nil
	}
	return c, err
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
// request's goroutine only, so more needs no lock.
type conn struct {
	*net.TCPConn
	more bool // the next Write is a header that a sendfile follows
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
	off := base + pos
	var written int64
	var serr error
	// Control holds a reference to the file: a concurrent Close waits, so
	// its descriptor number is not reused under the sendfile (which stops
	// early if the file is shorter than its section)
	err = fc.Control(func(ffd uintptr) {
		serr = sendAll(c.TCPConn, "sendfile", func() bool { return remain > 0 }, func(fd int) (int, error) {
			n, err := unix.Sendfile(fd, int(ffd), &off, int(min(remain, 1<<30)))
			written += int64(max(n, 0))
			remain -= int64(max(n, 0))
			return n, err
		})
	})
	sr.Seek(written, io.SeekCurrent)
	if lr != nil {
		lr.N -= written
	}
	return written, errors.Join(err, serr)
}
