package record

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// finished records n segments of size bytes each (and an init section)
// in st under stream, finished, and returns the recording and the
// segments' names.
func finished(t testing.TB, st *Store, stream string, at time.Time, n, size int) (*Recording, []string) {
	t.Helper()
	w, err := st.Create(stream, at, false)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range n {
		s := seg(uint64(i), 1000, "init.mp4", false)
		s.File.Data = bytes.Repeat([]byte{byte('a' + i%26)}, size)
		s.File.Data[0] = byte(i) // each segment its own bytes
		s.Init.Data = bytes.Repeat([]byte("I"), 700)
		w.Add(s)
		names = append(names, s.File.Name)
	}
	rec, err := w.Finish([]byte("#EXTM3U\n"), nil, at.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return rec, names
}

// serveAt answers one request for file of rec as the /live/ route does.
func serveAt(rec *Recording, req *http.Request, file string) *httptest.ResponseRecorder {
	rr := httptest.NewRecorder()
	rec.ServeFile(rr, req, file, "video/mp4")
	return rr
}

func get(rec *Recording, file string) *httptest.ResponseRecorder {
	return serveAt(rec, httptest.NewRequest(http.MethodGet, "/x", nil), file)
}

// openHere lists the descriptors of this process open on files under dir,
// where the system tells (Linux); nil elsewhere.
func openHere(t *testing.T, dir string) []string {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, dir) {
			open = append(open, target)
		}
	}
	return open
}

// TestServeAnswers: every kind of request answered as http.ServeContent
// answers it, by a kept descriptor, by one opened for the request, and
// again by a descriptor a Range request used (its offset moved).
func TestServeAnswers(t *testing.T) {
	st := newStore(t, 5)
	defer st.Close()
	rec, names := finished(t, st, "s", start, 2, 100_000)
	body, _ := os.ReadFile(filepath.Join(rec.Dir(), "720p", names[1]))
	segment := "720p/" + names[1]
	etag := get(rec, segment).Header().Get("Etag")
	lastMod := get(rec, segment).Header().Get("Last-Modified")
	if etag == "" || lastMod == "" {
		t.Fatalf("etag %q, last-modified %q", etag, lastMod)
	}
	cases := []struct {
		name, method, file string
		header             map[string]string
		code               int
		body               []byte // nil: empty
		want               map[string]string
	}{
		{"get", "GET", segment, nil, 200, body,
			map[string]string{"Content-Length": "100000", "Cache-Control": "max-age=3600", "Content-Type": "video/mp4", "Accept-Ranges": "bytes", "Etag": etag, "Last-Modified": lastMod}},
		{"head", "HEAD", segment, nil, 200, nil,
			map[string]string{"Content-Length": "100000", "Cache-Control": "max-age=3600", "Etag": etag}},
		{"range", "GET", segment, map[string]string{"Range": "bytes=10-19"}, 206, body[10:20],
			map[string]string{"Content-Range": "bytes 10-19/100000", "Content-Length": "10"}},
		{"open range", "GET", segment, map[string]string{"Range": "bytes=99990-"}, 206, body[99990:],
			map[string]string{"Content-Range": "bytes 99990-99999/100000"}},
		{"suffix range", "GET", segment, map[string]string{"Range": "bytes=-5"}, 206, body[99995:],
			map[string]string{"Content-Range": "bytes 99995-99999/100000"}},
		{"head range", "HEAD", segment, map[string]string{"Range": "bytes=0-99"}, 206, nil,
			map[string]string{"Content-Range": "bytes 0-99/100000", "Content-Length": "100"}},
		{"range past the end", "GET", segment, map[string]string{"Range": "bytes=100000-"}, 416, []byte("invalid range: failed to overlap\n"),
			map[string]string{"Content-Range": "bytes */100000"}},
		{"if-none-match", "GET", segment, map[string]string{"If-None-Match": etag}, 304, nil, map[string]string{"Etag": etag}},
		{"if-modified-since", "GET", segment, map[string]string{"If-Modified-Since": lastMod}, 304, nil, nil},
		{"if-range stale", "GET", segment, map[string]string{"Range": "bytes=0-9", "If-Range": `"other"`}, 200, body, nil},
		{"if-range", "GET", segment, map[string]string{"Range": "bytes=0-9", "If-Range": etag}, 206, body[:10], nil},
		{"playlist", "GET", "720p/video1_stream.m3u8", nil, 200, nil, map[string]string{"Cache-Control": "no-cache"}},
		{"init", "GET", "720p/init.mp4", nil, 200, bytes.Repeat([]byte("I"), 700), map[string]string{"Cache-Control": "max-age=3600"}},
		{"missing", "GET", "720p/nosuch.mp4", nil, 404, []byte("404 page not found\n"), nil},
		{"directory", "GET", "720p/x", nil, 404, []byte("404 page not found\n"), nil},
	}
	os.Mkdir(filepath.Join(rec.Dir(), "720p", "x"), 0o755)
	for _, kept := range []bool{true, false} {
		r := *rec
		if !kept {
			r.files = nil
		}
		for _, c := range cases {
			for round := range 2 { // the second from the descriptor the first used
				t.Run(fmt.Sprintf("kept=%t/%s/%d", kept, c.name, round), func(t *testing.T) {
					req := httptest.NewRequest(c.method, "/x", nil)
					for k, v := range c.header {
						req.Header.Set(k, v)
					}
					rr := serveAt(&r, req, c.file)
					if rr.Code != c.code {
						t.Fatalf("status %d, want %d", rr.Code, c.code)
					}
					if c.body != nil && !bytes.Equal(rr.Body.Bytes(), c.body) ||
						c.body == nil && c.file == segment && rr.Body.Len() != 0 {
						t.Errorf("body of %d bytes, want %d", rr.Body.Len(), len(c.body))
					}
					for k, v := range c.want {
						if got := rr.Header().Get(k); got != v {
							t.Errorf("%s: %q, want %q", k, got, v)
						}
					}
				})
			}
		}
	}
	if idle, busy := st.files.open(); idle == 0 || busy != 0 {
		t.Errorf("kept descriptors: %d idle, %d busy; want some idle, none busy", idle, busy)
	}
}

// TestServeLoopback: through a real server (sendfile on Linux), many
// clients at once, whole bodies and ranges, and no descriptor left busy.
func TestServeLoopback(t *testing.T) {
	st := &Store{Dir: filepath.Join(t.TempDir(), "recordings"), OpenFiles: 4}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, names := finished(t, st, "s", start, 6, 300_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.ServeFile(w, r, strings.TrimPrefix(r.URL.Path, "/"), "video/mp4")
	}))
	defer srv.Close()
	want := map[string][]byte{}
	for _, n := range names {
		want[n], _ = os.ReadFile(filepath.Join(rec.Dir(), "720p", n))
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for k := range 30 {
				name := names[(i+k)%len(names)]
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/720p/"+name, nil)
				w := want[name]
				if k%3 == 1 {
					req.Header.Set("Range", "bytes=1000-1999")
					w = w[1000:2000]
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, w) {
					t.Errorf("%s: %v, %d bytes, want %d", name, err, len(got), len(w))
					return
				}
			}
		})
	}
	wg.Wait()
	idle, busy := st.files.open()
	if idle > 4 || busy != 0 {
		t.Errorf("%d idle, %d busy descriptors; want at most 4 idle (OpenFiles), none busy", idle, busy)
	}
	if open := openHere(t, st.Dir); len(open) != idle {
		t.Errorf("%d descriptors open on recordings, %d idle in the cache: %v", len(open), idle, open)
	}
}

// TestPruneClosesDescriptors: a pruned recording's kept descriptors are
// closed, and it is no longer served.
func TestPruneClosesDescriptors(t *testing.T) {
	st := newStore(t, 1)
	defer st.Close()
	old, names := finished(t, st, "s", start, 3, 1000)
	for _, n := range append(names, "init.mp4", "video1_stream.m3u8") {
		if rr := get(old, "720p/"+n); rr.Code != 200 {
			t.Fatalf("%s: %d", n, rr.Code)
		}
	}
	if open := openHere(t, old.Dir()); runtime.GOOS == "linux" && len(open) != 5 {
		t.Fatalf("descriptors kept: %v, want 5", open)
	}
	if _, err := st.Create("s", start.Add(time.Hour), false); err != nil { // prunes old
		t.Fatal(err)
	}
	if _, err := os.Stat(old.Dir()); !os.IsNotExist(err) {
		t.Fatalf("old recording not deleted: %v", err)
	}
	if open := openHere(t, old.Dir()); len(open) != 0 {
		t.Errorf("descriptors left open on a deleted recording: %v", open)
	}
	if idle, busy := st.files.open(); idle != 0 || busy != 0 {
		t.Errorf("cache holds %d idle, %d busy", idle, busy)
	}
	for _, n := range names {
		if rr := get(old, "720p/"+n); rr.Code != 404 {
			t.Errorf("deleted %s served: %d", n, rr.Code)
		}
	}
}

// TestDeletedByHand: a recording deleted behind the Store's back stops
// being served within the recheck age, and its descriptors are closed.
func TestDeletedByHand(t *testing.T) {
	st := newStore(t, 5)
	defer st.Close()
	st.files.recheck = 50 * time.Millisecond
	rec, names := finished(t, st, "s", start, 2, 1000)
	file := "720p/" + names[0]
	if rr := get(rec, file); rr.Code != 200 {
		t.Fatal(rr.Code)
	}
	if err := os.RemoveAll(rec.Dir()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if rr := get(rec, file); rr.Code != 404 {
		t.Errorf("deleted file served: %d", rr.Code)
	}
	if open := openHere(t, rec.Dir()); len(open) != 0 {
		t.Errorf("descriptors left open: %v", open)
	}

	// replaced by hand: the new file is served
	rec, names = finished(t, st, "t", start, 2, 1000)
	file = "720p/" + names[0]
	get(rec, file)
	if err := os.WriteFile(filepath.Join(rec.Dir(), file)+".new", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(rec.Dir(), file)+".new", filepath.Join(rec.Dir(), file)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if rr := get(rec, file); rr.Body.String() != "new" {
		t.Errorf("replaced file: %q, want \"new\"", rr.Body.String())
	}
}

// TestCloseAndBound: Close closes every kept descriptor and later requests
// keep none; OpenFiles bounds the idle descriptors; negative keeps none.
func TestCloseAndBound(t *testing.T) {
	for _, limit := range []int{3, -1} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			st := &Store{Dir: filepath.Join(t.TempDir(), "recordings"), OpenFiles: limit}
			if err := st.Start(); err != nil {
				t.Fatal(err)
			}
			rec, names := finished(t, st, "s", start, 10, 1000)
			for _, n := range names {
				get(rec, "720p/"+n)
			}
			want := max(limit, 0)
			if idle, _ := st.files.open(); idle != want {
				t.Errorf("%d idle descriptors, want %d", idle, want)
			}
			if open := openHere(t, st.Dir); runtime.GOOS == "linux" && len(open) != want {
				t.Errorf("%d open, want %d: %v", len(open), want, open)
			}
			st.Close()
			st.Close()
			for _, n := range names {
				if rr := get(rec, "720p/"+n); rr.Code != 200 {
					t.Errorf("after Close: %d", rr.Code)
				}
			}
			if open := openHere(t, st.Dir); len(open) != 0 {
				t.Errorf("after Close: open %v", open)
			}
		})
	}
}

// BenchmarkServeFile: GETs of one recorded file over loopback, 8 keep-alive
// clients per CPU: kept descriptors (ServeFile), a file
// opened per request (ServeFile without a Store), and the way before
// (http.ServeFileFS on os.DirFS, which copies through user space).
func BenchmarkServeFile(b *testing.B) {
	for _, size := range []int{1300, 300_000} {
		st := &Store{Dir: filepath.Join(b.TempDir(), "recordings")}
		if err := st.Start(); err != nil {
			b.Fatal(err)
		}
		rec, names := finished(b, st, "s", start, 1, size)
		open := *rec
		open.files = nil
		file := "720p/" + names[0]
		for _, c := range []struct {
			name  string
			serve func(w http.ResponseWriter, r *http.Request)
		}{
			{"kept", func(w http.ResponseWriter, r *http.Request) { rec.ServeFile(w, r, file, "video/mp4") }},
			{"open", func(w http.ResponseWriter, r *http.Request) { open.ServeFile(w, r, file, "video/mp4") }},
			{"ServeFileFS", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "video/mp4")
				w.Header().Set("Cache-Control", "max-age=3600")
				http.ServeFileFS(w, r, os.DirFS(rec.Dir()), file)
			}},
		} {
			b.Run(fmt.Sprintf("%s/%d", c.name, size), func(b *testing.B) {
				srv := httptest.NewServer(http.HandlerFunc(c.serve))
				defer srv.Close()
				b.SetBytes(int64(size))
				b.SetParallelism(8) // clients enough to keep the server busy
				b.RunParallel(func(pb *testing.PB) {
					client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
					buf := make([]byte, 64<<10)
					for pb.Next() {
						resp, err := client.Get(srv.URL)
						if err != nil {
							b.Error(err)
							return
						}
						n, _ := io.CopyBuffer(io.Discard, resp.Body, buf)
						resp.Body.Close()
						if resp.StatusCode != 200 || n != int64(size) {
							b.Errorf("%d, %d bytes", resp.StatusCode, n)
							return
						}
					}
					client.CloseIdleConnections()
				})
			})
		}
		st.Close()
	}
}

// TestNameRules: the checks without a regexp say what the regexps of
// their doc comment say.
func TestNameRules(t *testing.T) {
	rules := []struct {
		name  string
		check func(string) bool
		re    *regexp.Regexp
	}{
		{"stream", validStream, regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)},
		{"dir", validDir, regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)},
		{"file", validFile, regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)},
	}
	inputs := []string{"", ".", "..", "a", "720p", "-x", "_x", ".hidden", "a.b", "a/b", "a\\b", "a b", "é",
		"seg1.mp4", "x\x00", strings.Repeat("a", 32), strings.Repeat("a", 33), strings.Repeat("a", 64),
		strings.Repeat("a", 65), strings.Repeat("a", 128), strings.Repeat("a", 129)}
	rnd := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09_-./\\ :\x00é"
	for range 20000 {
		b := make([]byte, rnd.IntN(6))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for _, r := range rules {
		for _, in := range inputs {
			if got, want := r.check(in), r.re.MatchString(in); got != want {
				t.Errorf("%s %q: %t, want %t", r.name, in, got, want)
			}
		}
	}
}
