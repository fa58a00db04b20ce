package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeStream struct {
	info  StreamInfo
	ready chan struct{}
}

func (f *fakeStream) Info() StreamInfo              { return f.info }
func (f *fakeStream) Ready() <-chan struct{}        { return f.ready }
func (f *fakeStream) Multivariant() ([]byte, error) { return []byte("#EXTM3U\n"), nil }
func (f *fakeStream) Thumbnail() ([]byte, error)    { return []byte{0xFF, 0xD8}, nil }
func (f *fakeStream) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	w.Write([]byte("file " + file))
}

type fakeCatalog map[string]*fakeStream

func (c fakeCatalog) Stream(name string) Stream {
	if s, ok := c[name]; ok {
		return s
	}
	return nil
}

func (c fakeCatalog) Names() []string {
	var out []string
	for n := range c {
		out = append(out, n)
	}
	return out
}

type fakePublisher struct{ live map[string]bool }

func (p fakePublisher) ServePublish(w http.ResponseWriter, r *http.Request, stream string) {
	w.Write([]byte("publish " + stream))
}
func (p fakePublisher) Live(stream string) bool { return p.live[stream] }

type fakeChat struct{}

func (fakeChat) ServeRoom(w http.ResponseWriter, r *http.Request, room string) {
	w.Write([]byte("room " + room))
}
func (fakeChat) Users(room string) int { return 3 }

func TestRoutes(t *testing.T) {
	ready := make(chan struct{})
	close(ready)
	cat := fakeCatalog{
		"on":    {info: StreamInfo{Name: "on", Live: true}, ready: ready},
		"ended": {info: StreamInfo{Name: "ended", Live: false}, ready: ready},
		"slow":  {info: StreamInfo{Name: "slow", Live: true}, ready: make(chan struct{})},
	}
	s := &Server{Catalog: cat, Publisher: fakePublisher{live: map[string]bool{"coming": true}}, Chat: fakeChat{},
		StartWait: 300 * time.Millisecond}
	h := started(t, s).Handler()
	cases := []struct {
		method, path string
		status       int
		body         string // substring
		cors         bool
	}{
		{"GET", "/ingest/ok", 200, "publish ok", false},
		{"GET", "/ingest/bad.name", 400, `"invalid_name"`, false},
		{"GET", "/ingest/" + strings.Repeat("x", 65), 400, `"invalid_name"`, false},
		{"GET", "/chat/room_1", 200, "room room_1", false},
		{"GET", "/chat/%3Cscript%3E", 400, `"invalid_name"`, false},
		{"GET", "/live/on/index.m3u8", 200, "#EXTM3U", true},
		{"GET", "/live/on/720p/seg.mp4", 200, "file 720p/seg.mp4", true},
		{"GET", "/live/on/thumb.jpg", 200, "\xFF\xD8", true},
		{"GET", "/live/nosuch/index.m3u8", 404, `"not_found"`, true},
		{"GET", "/live/coming/index.m3u8", 404, `"not_found"`, true}, // held StartWait, then gone
		{"GET", "/live/slow/index.m3u8", 503, `"starting"`, true},
		{"GET", "/live/..%2Fetc/index.m3u8", 400, `"invalid_name"`, true},
		{"OPTIONS", "/live/on/index.m3u8", 204, "", true},
		{"GET", "/api/streams", 200, `"name":"on"`, false},
		{"GET", "/api/streams/on", 200, `"chat_users":3`, false},
		{"GET", "/api/streams/nobody", 404, `"chat_users":3`, false},
		{"GET", "/healthz", 200, "ok", false},
		{"GET", "/metrics", 200, "livegate_streams_live 2", false},
		{"GET", "/", 200, "<title>livegate</title>", false},
		{"GET", "/watch/on", 200, "hls.min.js", false},
		{"GET", "/watch/bad.name", 400, "invalid_name", false},
		{"GET", "/broadcast", 200, "Go live", false},
		{"GET", "/assets/vendor/hls.min.js", 200, "", false},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
			if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.body) {
				t.Errorf("got %d %.200q, want %d containing %q", rec.Code, rec.Body.String(), c.status, c.body)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin") == "*"; got != c.cors {
				t.Errorf("CORS header present %v, want %v", got, c.cors)
			}
		})
	}
	// a preflight says what may be asked; media answers need not
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("OPTIONS", "/live/on/720p/seg.mp4", nil))
	if rec.Header().Get("Access-Control-Allow-Methods") != "GET, OPTIONS" || rec.Header().Get("Access-Control-Allow-Headers") != "Range" {
		t.Errorf("preflight headers: %v", rec.Header())
	}
	// the ended stream is not in the live list
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/streams", nil))
	var list []StreamInfo
	if json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list) != 2 {
		t.Errorf("live list: %s", rec.Body)
	}
}

// catalogOf is a Catalog of any Streams.
type catalogOf map[string]Stream

func (c catalogOf) Stream(name string) Stream { return c[name] }
func (c catalogOf) Names() []string           { return nil }

// recordedCatalog is a catalogOf that keeps recordings.
type recordedCatalog struct{ catalogOf }

func (c recordedCatalog) Recorded() []string { return []string{"old", "new", "on", "gone", "<b>"} }

// TestRecordings lists the streams not live whose /live/ serves a
// recording, newest first, at most RecordingsListed.
func TestRecordings(t *testing.T) {
	at := func(h int) *time.Time { t := time.Date(2026, 12, 1, h, 0, 0, 0, time.UTC); return &t }
	cat := recordedCatalog{catalogOf{
		"old": &fakeStream{info: StreamInfo{Name: "old", Recording: true, RecordedAt: at(8)}},
		"new": &fakeStream{info: StreamInfo{Name: "new", Recording: true, RecordedAt: at(9)}},
		"on":  &fakeStream{info: StreamInfo{Name: "on", Live: true}},
	}}
	for _, c := range []struct {
		listed int
		want   string
	}{{0, "new old"}, {1, "new"}} {
		h := started(t, &Server{Catalog: cat, RecordingsListed: c.listed}).Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/recordings", nil))
		var list []StreamInfo
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
			t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
		}
		var names []string
		for _, s := range list {
			names = append(names, s.Name)
		}
		if got := strings.Join(names, " "); got != c.want {
			t.Errorf("listed %d: %q, want %q", c.listed, got, c.want)
		}
	}
	// a catalog without recordings lists none
	rec := httptest.NewRecorder()
	started(t, &Server{Catalog: fakeCatalog{}}).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/recordings", nil))
	if strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("no recordings: %s", rec.Body)
	}
}

// BenchmarkLiveFile is the /live/ route's own cost per media request (name
// check, viewers, CORS, counter) around a stream that answers a few bytes.
func BenchmarkLiveFile(b *testing.B) {
	ready := make(chan struct{})
	close(ready)
	s := &Server{Catalog: fakeCatalog{"on": {info: StreamInfo{Name: "on", Live: true}, ready: ready}}}
	h := started(b, s).Handler()
	req := httptest.NewRequest("GET", "/live/on/720p/seg.mp4", nil)
	rec := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		rec.Body.Reset()
		h.ServeHTTP(rec, req)
	}
}

func TestViewers(t *testing.T) {
	s := &Server{Catalog: fakeCatalog{}, ViewerWindow: 100 * time.Millisecond, MaxViewersTracked: 3}
	started(t, s)
	req := clientKey
	s.viewers.seen("x", req("10.0.0.1:1000", "vlc"))
	s.viewers.seen("x", req("10.0.0.1:1001", "vlc")) // same client, new port
	s.viewers.seen("x", req("10.0.0.1:1002", "chrome"))
	s.viewers.seen("x", req("[::1]:5", "chrome"))
	s.viewers.seen("x", req("10.0.0.9:5", "chrome")) // over the cap: not counted
	if got := s.Viewers("x"); got != 3 {
		t.Errorf("viewers %d, want 3", got)
	}
	time.Sleep(150 * time.Millisecond)
	if got := s.Viewers("x"); got != 0 {
		t.Errorf("after the window: %d, want 0", got)
	}
}

func TestOriginChecker(t *testing.T) {
	cases := []struct {
		allowed []string
		host    string
		origin  string
		want    bool
	}{
		{nil, "live.example:8080", "http://live.example:8080", true},
		{nil, "live.example:8080", "https://live.example:8080", true},
		{nil, "live.example:8080", "http://evil.example", false},
		{nil, "live.example:8080", "http://live.example:8080.evil.example", false},
		{nil, "live.example:8080", "null", false},
		{[]string{"https://embed.example"}, "live.example", "https://embed.example", true},
		{[]string{"https://embed.example"}, "live.example", "https://other.example", false},
		{[]string{"*"}, "live.example", "https://other.example", true},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/chat/x", nil)
		r.Host = c.host
		r.Header.Set("Origin", c.origin)
		if got := OriginChecker(c.allowed)(r); got != c.want {
			t.Errorf("allowed %v, host %s, origin %s: %v, want %v", c.allowed, c.host, c.origin, got, c.want)
		}
	}
}

// started starts s, whose settings are valid.
func started(t testing.TB, s *Server) *Server {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}
