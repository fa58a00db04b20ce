package web

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// goHead is what Go's client sends; browserHead what a browser's hls.js does.
const (
	goHead      = "GET /live/s_1/720p/seg3.mp4 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
	browserHead = "GET /live/s_1/720p/init.mp4 HTTP/1.1\r\nHost: live.example\r\nConnection: keep-alive\r\n" +
		"sec-ch-ua: \"Chromium\";v=\"120\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n" +
		"Origin: https://embed.example\r\nSec-Fetch-Mode: cors\r\nReferer: https://embed.example/\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\nIf-None-Match: \"x\"\r\n\r\n"
)

// finalCases drive TestParseFinalGet and seed FuzzParseFinalGet.
var finalCases = []struct {
	name, head string
	ok         bool
}{
	{"go client", goHead, true},
	{"browser", browserHead, true},
	{"no agent", "GET /live/a/b HTTP/1.1\r\nHost: x\r\n\r\n", true},
	{"deep path", "GET /live/a/b/c.d/e HTTP/1.1\r\nhost: x\r\n\r\n", true},
	{"spaces around value", "GET /live/a/b HTTP/1.1\r\nHost:x\r\nUser-Agent: \t vlc \t\r\n\r\n", true},
	{"HEAD", strings.Replace(goHead, "GET", "HEAD", 1), false},
	{"POST", strings.Replace(goHead, "GET", "POST", 1), false},
	{"lower-case method", strings.Replace(goHead, "GET", "get", 1), false},
	{"HTTP/1.0", strings.Replace(goHead, "HTTP/1.1", "HTTP/1.0", 1), false},
	{"not /live/", "GET /api/streams HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"absolute form", "GET http://x/live/a/b HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"query", "GET /live/a/b?_HLS_msn=3 HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"escape", "GET /live/a/%2e%2e/b HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"dot dot", "GET /live/a/x/../b HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"dot", "GET /live/a/./b HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"double slash", "GET /live/a//b HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"trailing slash", "GET /live/a/b/ HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"no file", "GET /live/a/ HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"bad stream", "GET /live/a.b/c HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"two spaces", "GET  /live/a/b HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"no Host", "GET /live/a/b HTTP/1.1\r\nUser-Agent: x\r\n\r\n", false},
	{"IPv6 Host", "GET /live/a/b HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", true},
	{"bad Host", "GET /live/a/b HTTP/1.1\r\nHost: a b\r\n\r\n", false},
	{"Host with a path", "GET /live/a/b HTTP/1.1\r\nHost: a/b\r\n\r\n", false},
	{"two Hosts", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", false},
	{"Range", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n", false},
	{"Content-Length", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", false},
	{"zero Content-Length", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nContent-length: 0\r\n\r\n", false},
	{"chunked", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	{"Expect", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", false},
	{"Upgrade", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", false},
	{"Connection close", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
	{"Connection upgrade", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n", false},
	{"bare LF ends head early", "GET /live/a/b HTTP/1.1\r\nHost: x\n\nGET /live/a/c HTTP/1.1\r\nUser-Agent: y\r\n\r\n", false},
	{"bare LF in request line", "GET /live/a/b\n HTTP/1.1\r\nHost: x\r\n\r\n", false},
	{"bare CR", "GET /live/a/b HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", false},
	{"folded line", "GET /live/a/b HTTP/1.1\r\nHost: x\r\n Range: bytes=0-1\r\n\r\n", false},
	{"space before colon", "GET /live/a/b HTTP/1.1\r\nHost : x\r\n\r\n", false},
	{"no colon", "GET /live/a/b HTTP/1.1\r\nHost x\r\n\r\n", false},
	{"control byte", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x00b\r\n\r\n", false},
	{"non-ASCII", "GET /live/a/b HTTP/1.1\r\nHost: x\r\nUser-Agent: \xc3\xa9\r\n\r\n", false},
}

func TestParseFinalGet(t *testing.T) {
	for _, c := range finalCases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, _, ok := parseFinalGet([]byte(c.head)); ok != c.ok {
				t.Errorf("parseFinalGet(%q) ok = %v, want %v", c.head, ok, c.ok)
			}
		})
	}
	stream, file, agent, _ := parseFinalGet([]byte(browserHead))
	if stream != "s_1" || file != "720p/init.mp4" || agent != "Mozilla/5.0 (X11; Linux x86_64)" {
		t.Errorf("browser head read as %q %q %q", stream, file, agent)
	}
}

// FuzzParseFinalGet checks that a head parseFinalGet accepts is one request
// to net/http too, of the same path, with no body, and that net/http reads
// the next request where the head ends: the connection never reads a
// stream of requests otherwise than net/http would.
func FuzzParseFinalGet(f *testing.F) {
	for _, c := range finalCases {
		f.Add([]byte(c.head))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		// as the connection offers it: up to its first blank line
		end := bytes.Index(head, []byte("\r\n\r\n"))
		if end < 0 {
			return
		}
		head = head[:end+4]
		stream, file, _, ok := parseFinalGet(head)
		if !ok {
			return
		}
		br := bufio.NewReader(bytes.NewReader(append(head, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"...)))
		r, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("accepted %q, net/http: %v", head, err)
		}
		if r.Method != "GET" || r.URL.Path != "/live/"+stream+"/"+file || r.URL.RawQuery != "" ||
			r.ContentLength != 0 || len(r.TransferEncoding) != 0 || r.Header.Get("Range") != "" || r.Close {
			t.Fatalf("accepted %q, net/http read %s %q query %q length %d encoding %v close %v",
				head, r.Method, r.URL.Path, r.URL.RawQuery, r.ContentLength, r.TransferEncoding, r.Close)
		}
		next, err := http.ReadRequest(br)
		if err != nil || next.URL.Path != "/next" {
			t.Fatalf("accepted %q, net/http's next request: %v %v", head, next, err)
		}
	})
}

// finalStream is a fakeStream with final files.
type finalStream struct {
	fakeStream
	files map[string]FinalFile
}

func (f *finalStream) FinalFile(file string) (FinalFile, bool) {
	ff, ok := f.files[file]
	return ff, ok
}

func TestAnswer(t *testing.T) {
	body, err := os.CreateTemp(t.TempDir(), "seg")
	if err != nil {
		t.Fatal(err)
	}
	fields := "Content-Length: 5\r\nContent-Type: video/mp4\r\n"
	st := &finalStream{files: map[string]FinalFile{
		"720p/seg3.mp4":   {Fields: []byte(fields), Body: body, Size: 5},
		"720p/media.m3u8": {Fields: []byte("Content-Length: 8\r\n"), Data: []byte("#EXTM3U\n")},
	}}
	cat := catalogOf{"s_1": st, "live": &fakeStream{}}
	for _, c := range []struct {
		origin, head, want string // want: the reply up to its Date field
		body               bool
	}{
		{"", goHead, "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\n" + fields, true},
		{"-", goHead, "HTTP/1.1 200 OK\r\n" + fields, true},
		{"", strings.Replace(goHead, "seg3.mp4", "media.m3u8", 1), "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 8\r\n", false},
		{"", strings.Replace(goHead, "seg3", "seg4", 1), "", false},  // not final: the route's
		{"", strings.Replace(goHead, "s_1", "live", 1), "", false},   // no final files at all
		{"", strings.Replace(goHead, "s_1", "nosuch", 1), "", false}, // no stream
		{"", strings.Replace(goHead, "GET", "HEAD", 1), "", false},   // not a plain GET
	} {
		s := &Server{Catalog: cat, AllowOrigin: c.origin}
		reply, file, size, ok := s.Answer([]byte("stale"), []byte(c.head), "10.0.0.1:5000")
		if ok != (c.want != "") {
			t.Errorf("%q: answered %v", c.head, ok)
			continue
		}
		if !ok {
			if s.Viewers("s_1") != 0 {
				t.Errorf("%q: declined but counted", c.head)
			}
			continue
		}
		reply = reply[len("stale"):] // appended to dst
		date, rest, found := strings.Cut(strings.TrimPrefix(string(reply), c.want), "\r\n\r\n")
		if !strings.HasPrefix(string(reply), c.want) || !found || !strings.HasPrefix(date, "Date: ") {
			t.Errorf("%q: reply %q", c.head, reply)
			continue
		}
		if when, err := http.ParseTime(strings.TrimPrefix(date, "Date: ")); err != nil || time.Since(when) > 2*time.Second {
			t.Errorf("%q: %s (%v)", c.head, date, err)
		}
		if c.body && (file != body || size != 5 || rest != "") || !c.body && (file != nil || rest != "#EXTM3U\n") {
			t.Errorf("%q: body %v %d, %q after the header", c.head, file, size, rest)
		}
		if s.Viewers("s_1") != 1 {
			t.Errorf("%q: viewers %d, want 1", c.head, s.Viewers("s_1"))
		}
	}
}

// catalogOf is a Catalog of any Streams.
type catalogOf map[string]Stream

func (c catalogOf) Stream(name string) Stream { return c[name] }
func (c catalogOf) Names() []string           { return nil }

// BenchmarkAnswer is Answer's own cost per request (parse, lookup,
// viewers, counters, header), beside BenchmarkLiveFile's route.
func BenchmarkAnswer(b *testing.B) {
	st := &finalStream{files: map[string]FinalFile{"720p/seg3.mp4": {Fields: []byte("Content-Length: 5\r\n"), Body: os.Stdin, Size: 5}}}
	s := &Server{Catalog: catalogOf{"s_1": st}}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, ok := s.Answer(dst, []byte(goHead), "127.0.0.1:5000"); !ok {
			b.Fatal("declined")
		}
	}
}
