package segmenter

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// testWindow holds a playlist and two media files of random bytes.
func testWindow(t testing.TB) (*window, map[string][]byte) {
	t.Helper()
	rnd := rand.New(rand.NewSource(1))
	files := map[string][]byte{"hi/index.m3u8": []byte("#EXTM3U\n#EXT-X-ENDLIST\n")}
	for _, name := range []string{"hi/init.mp4", "hi/seg7.mp4"} {
		b := make([]byte, 300<<10)
		rnd.Read(b)
		files[name] = b
	}
	return newWindow(files), files
}

func TestWindowServe(t *testing.T) {
	w, files := testWindow(t)
	defer w.close()
	seg := files["hi/seg7.mp4"]
	cases := []struct {
		name, method, file, rangeHdr string
		code                         int
		body                         []byte
		length, contentType          string
	}{
		{"segment", "GET", "hi/seg7.mp4", "", 200, seg, fmt.Sprint(len(seg)), "video/mp4"},
		{"init", "GET", "hi/init.mp4", "", 200, files["hi/init.mp4"], fmt.Sprint(300 << 10), "video/mp4"},
		{"playlist", "GET", "hi/index.m3u8", "", 200, files["hi/index.m3u8"], fmt.Sprint(len(files["hi/index.m3u8"])), "application/vnd.apple.mpegurl"},
		{"range", "GET", "hi/seg7.mp4", "bytes=1000-1999", 206, seg[1000:2000], "1000", "video/mp4"},
		{"open range", "GET", "hi/seg7.mp4", "bytes=300000-", 206, seg[300000:], fmt.Sprint(len(seg) - 300000), "video/mp4"},
		{"range past the end", "GET", "hi/seg7.mp4", fmt.Sprintf("bytes=%d-", len(seg)), 416, nil, "", ""},
		{"head", "HEAD", "hi/seg7.mp4", "", 200, nil, fmt.Sprint(len(seg)), "video/mp4"},
		{"unknown", "GET", "hi/seg8.mp4", "", 404, nil, "", ""},
	}
	// the same answers in a recorder and over a real connection
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !w.serve(rw, r, strings.TrimPrefix(r.URL.Path, "/live/x/")) {
			t.Error("open window did not answer")
		}
	}))
	defer srv.Close()
	for _, c := range cases {
		for _, via := range []string{"recorder", "server"} {
			t.Run(c.name+" "+via, func(t *testing.T) {
				req := httptest.NewRequest(c.method, "/live/x/"+c.file, nil)
				if c.rangeHdr != "" {
					req.Header.Set("Range", c.rangeHdr)
				}
				rec := httptest.NewRecorder()
				if via == "recorder" {
					if !w.serve(rec, req, c.file) {
						t.Fatal("open window did not answer")
					}
				} else {
					fetchInto(t, rec, srv.URL, req)
				}
				if rec.Code != c.code {
					t.Fatalf("status %d, want %d", rec.Code, c.code)
				}
				if c.body != nil && !bytes.Equal(rec.Body.Bytes(), c.body) {
					t.Errorf("body: %d bytes, want %d", rec.Body.Len(), len(c.body))
				}
				if c.method == "HEAD" && rec.Body.Len() != 0 {
					t.Errorf("HEAD body: %d bytes", rec.Body.Len())
				}
				if c.length != "" && rec.Header().Get("Content-Length") != c.length {
					t.Errorf("Content-Length %q, want %q", rec.Header().Get("Content-Length"), c.length)
				}
				if c.contentType != "" && rec.Header().Get("Content-Type") != c.contentType {
					t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), c.contentType)
				}
				if c.code == 200 && rec.Header().Get("Cache-Control") != "max-age=60" {
					t.Errorf("Cache-Control %q", rec.Header().Get("Cache-Control"))
				}
			})
		}
	}
}

// fetchInto sends req to the server at url and records the answer in rec.
func fetchInto(t *testing.T, rec *httptest.ResponseRecorder, url string, req *http.Request) {
	t.Helper()
	out, _ := http.NewRequest(req.Method, url+req.URL.Path, nil)
	out.Header = req.Header
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	for k, v := range resp.Header {
		rec.Header()[k] = v
	}
	if resp.ContentLength >= 0 { // net/http moves it out of the header
		rec.Header().Set("Content-Length", fmt.Sprint(resp.ContentLength))
	}
	rec.WriteHeader(resp.StatusCode)
	rec.Write(body)
}

// TestWindowConcurrent fetches files from many clients at once over real
// connections: every answer is the whole file, whole ranges included, and
// the connections stay reusable.
func TestWindowConcurrent(t *testing.T) {
	w, files := testWindow(t)
	defer w.close()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.serve(rw, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 20}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				file, rng := "hi/seg7.mp4", ""
				if (i+j)%3 == 1 {
					file = "hi/init.mp4"
				}
				if (i+j)%4 == 2 {
					rng = fmt.Sprintf("bytes=%d-%d", 1000*j, 1000*j+70000)
				}
				if err := getWhole(client, srv.URL+"/"+file, rng, files[file]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// a closing answer would cost a connection per request (200); the
	// client may open a few more than 20 when one is not back in its pool
	if n := conns.Load(); n > 40 {
		t.Errorf("%d connections for 20 clients and 200 requests: answers closed them", n)
	}
}

// getWhole fetches url (a range of it when rng is set) and compares the
// answer with the file.
func getWhole(client *http.Client, url, rng string, file []byte) error {
	req, _ := http.NewRequest("GET", url, nil)
	want := file
	if rng != "" {
		req.Header.Set("Range", rng)
		var from, to int
		fmt.Sscanf(rng, "bytes=%d-%d", &from, &to)
		want = file[from : to+1]
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.ContentLength != int64(len(want)) || !bytes.Equal(body, want) {
		return fmt.Errorf("%s %s: got %d bytes (status %d, Content-Length %d, err %v), want %d",
			url, rng, len(body), resp.StatusCode, resp.ContentLength, err, len(want))
	}
	return nil
}

func TestWindowClose(t *testing.T) {
	w, _ := testWindow(t)
	w.close()
	w.close()
	if w.serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/hi/seg7.mp4", nil), "hi/seg7.mp4") {
		t.Error("closed window answered")
	}
	var none *window
	if none.serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/hi/seg7.mp4", nil), "hi/seg7.mp4") {
		t.Error("nil window answered")
	}
	none.close()
}

// TestWindowCloseServing closes a window while clients fetch from it:
// every answer is whole or refused, never wrong bytes.
func TestWindowCloseServing(t *testing.T) {
	w, files := testWindow(t)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !w.serve(rw, r, strings.TrimPrefix(r.URL.Path, "/")) {
			http.Error(rw, "closed", http.StatusGone)
		}
	}))
	defer srv.Close()
	want := files["hi/seg7.mp4"]
	var wg sync.WaitGroup
	var whole, gone atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 400 {
				resp, err := http.Get(srv.URL + "/hi/seg7.mp4")
				if err != nil {
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusGone:
					gone.Add(1)
					return
				case err == nil && !bytes.Equal(body, want):
					t.Errorf("status %d, %d bytes differ from the file", resp.StatusCode, len(body))
					return
				case err == nil:
					whole.Add(1)
				}
			}
		}()
	}
	for deadline := time.Now().Add(20 * time.Second); whole.Load() < 8 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	w.close()
	wg.Wait()
	if whole.Load() == 0 || gone.Load() == 0 {
		t.Errorf("%d whole answers, %d after close: the close did not fall among the requests", whole.Load(), gone.Load())
	}
}

// BenchmarkWindow serves one 300 KB segment of a finished window over
// loopback HTTP; the client runs in the same process.
func BenchmarkWindow(b *testing.B) {
	w, files := testWindow(b)
	defer w.close()
	benchGet(b, len(files["hi/seg7.mp4"]), func(rw http.ResponseWriter, r *http.Request) {
		w.serve(rw, r, "hi/seg7.mp4")
	})
}

// TestLiveLength checks that the live window's files (through gohlslib) get
// a Content-Length, Range and HEAD like the finished window's.
func TestLiveLength(t *testing.T) {
	s := &Segmenter{Names: []string{"hi", "lo"}}
	mustStart(s)
	defer s.Close()
	if err := s.Consume(bytes.NewReader(makeTS(t, "4"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not ready after 4 s of media")
	}
	_, media := fetch(s, "hi/video1_stream.m3u8")
	var pl playlist.Media
	if err := pl.Unmarshal(media); err != nil {
		t.Fatalf("media playlist: %v\n%s", err, media)
	}
	last := pl.Segments[len(pl.Segments)-1]
	files := []string{"hi/video1_stream.m3u8", "hi/" + pl.Map.URI, "hi/" + last.URI}
	if len(last.Parts) > 0 {
		files = append(files, "hi/"+last.Parts[0].URI)
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.Handle(rec, httptest.NewRequest("GET", "/live/x/"+file, nil), file)
			body := rec.Body.Bytes()
			if rec.Code != 200 || len(body) == 0 || rec.Header().Get("Content-Length") != fmt.Sprint(len(body)) {
				t.Fatalf("status %d, %d bytes, Content-Length %q", rec.Code, len(body), rec.Header().Get("Content-Length"))
			}
			if rec.Header().Get("Content-Type") == "" {
				t.Error("no Content-Type")
			}
			req := httptest.NewRequest("GET", "/live/x/"+file, nil)
			req.Header.Set("Range", "bytes=2-9")
			rec = httptest.NewRecorder()
			s.Handle(rec, req, file)
			if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), body[2:10]) {
				t.Errorf("range: status %d, %q", rec.Code, rec.Body.Bytes())
			}
			rec = httptest.NewRecorder()
			s.Handle(rec, httptest.NewRequest("HEAD", "/live/x/"+file, nil), file)
			if rec.Code != 200 || rec.Header().Get("Content-Length") != fmt.Sprint(len(body)) {
				t.Errorf("head: status %d, Content-Length %q", rec.Code, rec.Header().Get("Content-Length"))
			}
		})
	}
}
