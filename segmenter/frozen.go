package segmenter

import (
	"bytes"
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
// sealed memfds (RAM, not disk), one descriptor each that every request
// shares: reads go through an io.SectionReader (pread, its own offset), and
// on a connection of a Listener the body goes out with one sendfile from
// the section's offset, without a copy through user space. Files that
// cannot be held that way, and playlists, are served from memory.
type window struct {
	mu    sync.RWMutex
	files map[string]*frozenFile // nil once closed
}

// frozenFile is one file of the window: a memfd (file != nil) or plain
// bytes, and its header values, built once.
type frozenFile struct {
	data   []byte   // nil when held in the memfd
	file   *os.File // the memfd
	size   int64
	ctype  []string // Content-Type
	length []string // Content-Length
	fields []byte   // the header fields of a GET's answer, as Final gives them
}

// inMemory holds a file of the window as plain bytes.
func inMemory(name string, data []byte) *frozenFile {
	f := &frozenFile{data: data, size: int64(len(data)), ctype: []string{contentType(name)}, length: []string{strconv.Itoa(len(data))}}
	f.fields = []byte("Accept-Ranges: " + acceptRanges[0] + "\r\nCache-Control: " + cacheFrozen[0] +
		"\r\nContent-Length: " + f.length[0] + "\r\nContent-Type: " + f.ctype[0] + "\r\n")
	return f
}

// Final is a file of the finished window, for a server that answers a
// plain GET of it without net/http, as Handle would.
type Final struct {
	// Fields are the header fields of the answer, each line ending in CRLF.
	Fields []byte
	// File is the memfd that holds the body (Size bytes from offset 0),
	// shared by every answer: read it only at offsets of your own (pread,
	// sendfile). It is closed when the window goes, which ends any use
	// through SyscallConn. nil when Data holds the body.
	File *os.File
	Size int64
	Data []byte
}

// Final returns a file of the finished window, once the stream has ended.
func (s *Segmenter) Final(file string) (Final, bool) {
	s.mu.Lock()
	w := s.frozen
	s.mu.Unlock()
	if w == nil {
		return Final{}, false
	}
	w.mu.RLock()
	f := w.files[file]
	w.mu.RUnlock()
	if f == nil {
		return Final{}, false
	}
	return Final{Fields: f.fields, File: f.file, Size: f.size, Data: f.data}, true
}

// Header values shared by every answer of a window; never modified.
var (
	cacheFrozen  = []string{"max-age=60"}
	acceptRanges = []string{"bytes"}
)

// newWindow moves the files into memfds; a file it cannot move stays in
// memory and the first error is returned with the (usable) window.
func newWindow(files map[string][]byte) (*window, error) {
	w := &window{files: make(map[string]*frozenFile, len(files))}
	var first error
	for name, data := range files {
		f := inMemory(name, data)
		w.files[name] = f
		if strings.HasSuffix(name, ".m3u8") {
			continue // small, and a memfd would cost more syscalls than it saves
		}
		file, err := memfd(name, data)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		f.file, f.data = file, nil
	}
	return w, first
}

// memfd returns a memfd holding data, sealed against any change.
func memfd(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("livegate:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd for %s: %w", name, err)
	}
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("memfd for %s: write: %w", name, err)
		}
		rest = rest[n:]
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("memfd for %s: seal: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// serve answers one file of the window; it reports false, answering
// nothing, when the window is nil or closed.
func (w *window) serve(rw http.ResponseWriter, r *http.Request, name string) bool {
	if w == nil {
		return false
	}
	w.mu.RLock()
	if w.files == nil {
		w.mu.RUnlock()
		return false
	}
	f := w.files[name]
	w.mu.RUnlock()
	if f == nil {
		http.NotFound(rw, r)
		return true
	}
	// a close from here on fails the reads: the answer is cut short, and
	// the closed file's descriptor is not reused under them
	h := rw.Header()
	h["Content-Type"] = f.ctype
	h["Cache-Control"] = cacheFrozen
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" {
		var content io.ReadSeeker = bytes.NewReader(f.data)
		if f.file != nil {
			content = f.section()
		}
		http.ServeContent(rw, r, "", time.Time{}, content)
		return true
	}
	// the common case in fewer system calls than ServeContent (no seeks)
	h["Accept-Ranges"] = acceptRanges
	h["Content-Length"] = f.length
	if f.file == nil {
		rw.WriteHeader(http.StatusOK)
		rw.Write(f.data)
		return true
	}
	// a memfd: the header goes out first (held for the body's first packet
	// on a Listener's connection) so that net/http sends all of the body
	// with one sendfile rather than reading 512 bytes to sniff them
	if f.size > 0 {
		holdHeader(r.Context())
	}
	rw.WriteHeader(http.StatusOK)
	http.NewResponseController(rw).Flush()
	io.CopyN(rw, f.section(), f.size)
	return true
}

// section reads the memfd from its start at an offset of its own.
func (f *frozenFile) section() *io.SectionReader {
	return io.NewSectionReader(f.file, 0, f.size)
}

// close frees the memfds; later requests are not answered. Idempotent.
func (w *window) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.files {
		if f.file != nil {
			f.file.Close()
		}
	}
	w.files = nil
}
