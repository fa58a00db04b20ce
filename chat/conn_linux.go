package chat

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// maxIOV is the most buffers one writev(2) takes (Linux's IOV_MAX).
const maxIOV = 1024

// iovecs holds the iovec arrays of writev, shared by every connection.
var iovecs = sync.Pool{New: func() any { return new([]syscall.Iovec) }}

// writev writes bufs to nc with writev(2): one system call for the whole
// queue, more only after a partial write or beyond maxIOV buffers. It is
// what net.Buffers.WriteTo does, but its iovec array comes from a pool:
// WriteTo keeps its array (16 bytes a buffer, up to 16 KiB) on the socket
// for as long as the connection lasts, which for a member that once had a
// burst queued (a join storm) is kilobytes of idle memory. Write deadlines
// of nc apply.
func writev(nc net.Conn, bufs net.Buffers) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		_, err := bufs.WriteTo(nc)
		return err
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	p := iovecs.Get().(*[]syscall.Iovec)
	defer iovecs.Put(p)
	for len(bufs) > 0 {
		iov := (*p)[:0]
		for _, b := range bufs {
			if len(iov) == maxIOV {
				break
			}
			if len(b) > 0 {
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				iov = append(iov, v)
			}
		}
		*p = iov
		if len(iov) == 0 {
			return nil
		}
		var n uintptr
		var errno syscall.Errno
		err := rc.Write(func(fd uintptr) bool {
			for {
				n, _, errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
				if errno != syscall.EINTR {
					return errno != syscall.EAGAIN // false: wait until writable
				}
			}
		})
		clear(iov) // the pooled array must not keep frames alive
		if err == nil && errno != 0 {
			err = os.NewSyscallError("writev", errno)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		for n > 0 {
			if l := uintptr(len(bufs[0])); l <= n {
				n -= l
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return nil
}

// waitReadable blocks until nc has a byte to read, an end of file or an
// error (its read deadline included), without reading anything: an idle
// member waits here, in a shallow frame, rather than deep in
// gorilla/websocket's frame reader (see member.serve). Whatever the
// outcome, the next read reports it.
func waitReadable(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return errno != syscall.EAGAIN // false: wait until readable
	})
}
