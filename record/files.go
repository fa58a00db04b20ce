package record

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultOpenFiles is the default of Store.OpenFiles.
const DefaultOpenFiles = 1024

// recheckAge is how long a kept file is served before its path is looked
// at again: a file deleted or replaced behind the Store's back (by hand)
// stops being served within that time. The Store's own deletions close
// the file's descriptors at once.
const recheckAge = time.Second

// files keeps descriptors of recorded files open between requests, so that
// a request for a file in use costs no open, stat or close, and each file's
// header values are built once. net/http sends an *os.File with sendfile,
// which reads from the descriptor's offset, so a descriptor serves one
// request at a time: each file has a free list of idle descriptors. The
// idle descriptors of all files are at most max, those of the least
// recently used files closed first; each request being answered holds one
// more. A nil *files opens the file for each request. Safe for concurrent
// use.
type files struct {
	recheck time.Duration // recheckAge but in tests
	mu      sync.Mutex
	max     int // idle descriptors kept at most; 0 once closed
	idle    int
	byPath  map[string]*file
	lru     list.List // of *file, the most recently used first
	// epoch counts forget calls: a descriptor opened across one may be of
	// a file deleted meanwhile, so it is not kept.
	epoch uint64
}

// file is one recorded file as served: its identity, its header values
// and its idle descriptors.
type file struct {
	path, dir string // dir: the recording's directory
	info      os.FileInfo
	size      int64
	elem      *list.Element // in files.lru; nil when not kept
	checked   time.Time     // when path was last found to be this file
	free      []*os.File
	busy      int  // descriptors serving a request
	gone      bool // not kept: its descriptors are closed after their request

	// header values, shared by every answer; never modified
	ctype, cache, etag, modified, length []string
}

// newFiles returns a cache keeping at most max idle descriptors.
func newFiles(max int) *files {
	return &files{max: max, recheck: recheckAge, byPath: map[string]*file{}}
}

// Header values of every answer.
var (
	cacheNone    = []string{"no-cache"}
	cacheHour    = []string{"max-age=3600"}
	acceptRanges = []string{"bytes"}
)

func newFile(path, dir, contentType string, info os.FileInfo) *file {
	f := &file{path: path, dir: dir, info: info, size: info.Size(), checked: time.Now(),
		ctype: []string{contentType}, cache: cacheHour,
		length:   []string{strconv.FormatInt(info.Size(), 10)},
		modified: []string{info.ModTime().UTC().Format(http.TimeFormat)},
		etag:     []string{fmt.Sprintf(`"%x-%x"`, info.ModTime().UnixNano(), info.Size())}}
	if strings.HasSuffix(path, ".m3u8") {
		f.cache = cacheNone // a new broadcast reuses the playlists' names
	}
	return f
}

// get returns path's entry and a descriptor of it for one request, at
// offset 0; give it back with put. dir is the recording's directory and
// contentType the file's Content-Type. The error is fs.ErrNotExist for a
// missing file or one that is not a regular file.
func (c *files) get(path, dir, contentType string) (*file, *os.File, error) {
	var epoch uint64
	if c != nil {
		f, fd, e := c.take(path)
		if fd != nil {
			return f, fd, nil
		}
		epoch = e
	}
	fd, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	info, err := fd.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file: %w", path, fs.ErrNotExist)
	}
	if err != nil {
		fd.Close()
		return nil, nil, err
	}
	if c == nil {
		f := newFile(path, dir, contentType, info)
		f.gone = true
		return f, fd, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.byPath[path]
	if f != nil && !os.SameFile(f.info, info) {
		c.drop(f) // replaced since (only by hand: recordings do not change)
		f = nil
	}
	if f == nil || epoch != c.epoch {
		f = newFile(path, dir, contentType, info)
		if epoch == c.epoch && c.max > 0 {
			c.byPath[path] = f
			f.elem = c.lru.PushFront(f)
		} else {
			f.gone = true // served once, then closed
		}
	}
	f.busy++
	return f, fd, nil
}

// take returns an idle descriptor of path, if there is one, after
// checking every c.recheck that path is still the same file; else the
// epoch to open one in.
func (c *files) take(path string) (*file, *os.File, uint64) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.byPath[path]
	if f == nil {
		return nil, nil, c.epoch
	}
	if now.Sub(f.checked) >= c.recheck {
		f.checked = now // the other requests meanwhile use it unchecked
		c.mu.Unlock()
		info, err := os.Stat(path)
		c.mu.Lock()
		if err != nil || !os.SameFile(info, f.info) {
			c.drop(f)
			return nil, nil, c.epoch
		}
	}
	if f.gone || len(f.free) == 0 {
		return nil, nil, c.epoch
	}
	fd := f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	c.idle--
	f.busy++
	c.lru.MoveToFront(f.elem)
	return f, fd, c.epoch
}

// put gives back a descriptor that get returned: kept idle, or closed if
// its file is not kept or the cache is full (then the least recently used
// file's idle descriptor is closed instead).
func (c *files) put(f *file, fd *os.File) {
	_, err := fd.Seek(0, io.SeekStart)
	if c == nil {
		fd.Close()
		return
	}
	var closing []*os.File
	c.mu.Lock()
	f.busy--
	if f.gone || err != nil || c.max == 0 {
		closing = append(closing, fd)
		c.tidy(f)
	} else {
		f.free = append(f.free, fd)
		c.idle++
		for c.idle > c.max {
			closing = append(closing, c.evict())
		}
	}
	c.mu.Unlock()
	for _, fd := range closing {
		fd.Close()
	}
}

// evict takes an idle descriptor of the least recently used file that has
// one, to be closed. Called with c.mu held and c.idle > 0.
func (c *files) evict() *os.File {
	for e := c.lru.Back(); ; e = e.Prev() {
		f := e.Value.(*file)
		if n := len(f.free); n > 0 {
			fd := f.free[n-1]
			f.free = f.free[:n-1]
			c.idle--
			c.tidy(f)
			return fd
		}
	}
}

// tidy forgets a kept file that has no descriptor left. Called with c.mu
// held.
func (c *files) tidy(f *file) {
	if !f.gone && f.busy == 0 && len(f.free) == 0 {
		c.remove(f)
	}
}

// remove takes f out of the map and the list. Called with c.mu held.
func (c *files) remove(f *file) {
	if f.elem != nil {
		c.lru.Remove(f.elem)
		f.elem = nil
		if c.byPath[f.path] == f {
			delete(c.byPath, f.path)
		}
	}
}

// drop stops keeping f: its idle descriptors are closed now, those
// serving a request when it ends. Called with c.mu held.
func (c *files) drop(f *file) {
	f.gone = true
	c.remove(f)
	for _, fd := range f.free {
		fd.Close()
	}
	c.idle -= len(f.free)
	f.free = nil
}

// forget stops keeping the files of the recording in dir, before and
// after it is deleted (Windows deletes no file that is open). A
// descriptor opened meanwhile is closed after its request.
func (c *files) forget(dir string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if f := e.Value.(*file); f.dir == dir {
			c.drop(f)
		}
		e = next
	}
}

// close closes every idle descriptor; from then on each request opens its
// file and closes it after. Idempotent.
func (c *files) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.max = 0
	for c.lru.Len() > 0 {
		c.drop(c.lru.Front().Value.(*file))
	}
}

// open counts the descriptors the cache holds: idle and serving.
func (c *files) open() (idle, busy int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; e = e.Next() {
		busy += e.Value.(*file).busy
	}
	return c.idle, busy
}

// serve answers req with the file open as fd. A plain GET gets the header
// values built once and the body through net/http's ReadFrom (sendfile
// where the platform has it); HEAD, Range and conditional requests go
// through http.ServeContent.
func (f *file) serve(w http.ResponseWriter, req *http.Request, fd *os.File) {
	h := w.Header()
	h["Content-Type"] = f.ctype
	h["Cache-Control"] = f.cache
	h["Etag"] = f.etag
	if req.Method != http.MethodGet || conditional(req.Header) {
		http.ServeContent(w, req, "", f.info.ModTime(), fd)
		return
	}
	h["Last-Modified"] = f.modified
	h["Accept-Ranges"] = acceptRanges
	h["Content-Length"] = f.length
	w.WriteHeader(http.StatusOK)
	// The header goes out now, so that net/http sends the whole body from
	// the file: it would otherwise read the body's first 512 bytes into a
	// buffer to go with the header (for Content-Type sniffing, which a
	// given Content-Type makes moot). Errors: a writer that cannot flush
	// sends the header with the body; a broken connection fails the copy.
	http.NewResponseController(w).Flush()
	io.CopyN(w, fd, f.size)
}

// conditional reports whether a request needs http.ServeContent: a Range,
// or a precondition.
func conditional(h http.Header) bool {
	for _, k := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// httpError answers an error of get as net/http's file server does.
func httpError(w http.ResponseWriter, req *http.Request, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		http.NotFound(w, req)
	case errors.Is(err, fs.ErrPermission):
		http.Error(w, "403 Forbidden", http.StatusForbidden)
	default:
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
	}
}
