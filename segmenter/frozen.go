package segmenter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// window is the finished window of an ended stream. Its media files live in
// sealed memfds (RAM, not disk) that every request reopens through
// /proc/self/fd, so each request has its own file offset and net/http sends
// the body with sendfile instead of copying it through user space. Files
// that cannot be held that way, and playlists, are served from memory.
type window struct {
	mu    sync.RWMutex
	files map[string]*frozenFile // nil once closed
}

// frozenFile is one file of the window: a memfd (fd >= 0) or plain bytes.
type frozenFile struct {
	data []byte // nil when held in the memfd
	size int
	fd   int
	path string // /proc/self/fd/N of the memfd
}

// newWindow moves the files into memfds; a file it cannot move stays in
// memory and the first error is returned with the (usable) window.
func newWindow(files map[string][]byte) (*window, error) {
	w := &window{files: make(map[string]*frozenFile, len(files))}
	var first error
	for name, data := range files {
		f := &frozenFile{data: data, size: len(data), fd: -1}
		w.files[name] = f
		if strings.HasSuffix(name, ".m3u8") {
			continue // small, and a memfd would cost more syscalls than it saves
		}
		fd, err := memfd(name, data)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		f.fd, f.path, f.data = fd, "/proc/self/fd/"+strconv.Itoa(fd), nil
	}
	return w, first
}

// memfd returns a read-only reopenable memfd holding data, sealed against
// any change.
func memfd(name string, data []byte) (int, error) {
	fd, err := unix.MemfdCreate("livegate:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd for %s: %w", name, err)
	}
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("memfd for %s: write: %w", name, err)
		}
		rest = rest[n:]
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("memfd for %s: seal: %w", name, err)
	}
	// check once that it reopens, which every request relies on
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("memfd for %s: reopen: %w", name, err)
	}
	unix.Close(rfd)
	return fd, nil
}

// serve answers one file of the window; it reports false, answering
// nothing, when the window is nil or closed.
func (w *window) serve(rw http.ResponseWriter, r *http.Request, name string) bool {
	if w == nil {
		return false
	}
	content, size, done, err := w.open(name)
	switch {
	case errors.Is(err, errClosed):
		return false
	case errors.Is(err, os.ErrNotExist):
		http.NotFound(rw, r)
		return true
	case err != nil:
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return true
	}
	defer done()
	h := rw.Header()
	h.Set("Content-Type", contentType(name))
	h.Set("Cache-Control", "max-age=60")
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" {
		http.ServeContent(rw, r, "", time.Time{}, content)
		return true
	}
	// the common case in fewer system calls than ServeContent (no seeks)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.Itoa(size))
	rw.WriteHeader(http.StatusOK)
	if _, ok := content.(*os.File); !ok {
		io.Copy(rw, content) // a bytes.Reader writes itself in one Write
		return true
	}
	// a memfd: the header goes out first so that net/http sends all of the
	// body with one sendfile rather than reading 512 bytes to sniff them
	http.NewResponseController(rw).Flush()
	io.CopyN(rw, content, int64(size))
	return true
}

var errClosed = errors.New("window closed")

// open returns a reader of its own for one file, its size, and what to
// call when done.
func (w *window) open(name string) (io.ReadSeeker, int, func(), error) {
	w.mu.RLock()
	defer w.mu.RUnlock() // held while opening: close waits, so no fd number is reused under us
	if w.files == nil {
		return nil, 0, nil, errClosed
	}
	f, ok := w.files[name]
	if !ok {
		return nil, 0, nil, os.ErrNotExist
	}
	if f.fd < 0 {
		return bytes.NewReader(f.data), f.size, func() {}, nil
	}
	fd, err := unix.Open(f.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("reopen %s: %w", name, err)
	}
	file := os.NewFile(uintptr(fd), name)
	return file, f.size, func() { file.Close() }, nil
}

// close frees the memfds; later requests are not answered. Idempotent.
func (w *window) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.files {
		if f.fd >= 0 {
			unix.Close(f.fd)
		}
	}
	w.files = nil
}
