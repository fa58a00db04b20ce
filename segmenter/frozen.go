package segmenter

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// window is the finished window of an ended stream: its files in memory,
// shared by every request, each with its header values built once. A
// plain GET is answered with one Write of the whole body (net/http sends
// the header and body in as few writes as its buffer allows); HEAD and
// Range requests go through http.ServeContent.
type window struct {
	mu    sync.RWMutex
	files map[string]*frozenFile // nil once closed
}

// frozenFile is one file of the window and its header values.
type frozenFile struct {
	data   []byte
	ctype  []string // Content-Type
	length []string // Content-Length
}

// Header values shared by every answer of a window; never modified.
var (
	cacheFrozen  = []string{"max-age=60"}
	acceptRanges = []string{"bytes"}
)

func newWindow(files map[string][]byte) *window {
	w := &window{files: make(map[string]*frozenFile, len(files))}
	for name, data := range files {
		w.files[name] = &frozenFile{data: data, ctype: []string{contentType(name)},
			length: []string{strconv.Itoa(len(data))}}
	}
	return w
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
	h := rw.Header()
	h["Content-Type"] = f.ctype
	h["Cache-Control"] = cacheFrozen
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" {
		http.ServeContent(rw, r, "", time.Time{}, bytes.NewReader(f.data))
		return true
	}
	h["Accept-Ranges"] = acceptRanges
	h["Content-Length"] = f.length
	rw.WriteHeader(http.StatusOK)
	rw.Write(f.data)
	return true
}

// close drops the files; later requests are not answered. Idempotent.
func (w *window) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.files = nil
	w.mu.Unlock()
}
