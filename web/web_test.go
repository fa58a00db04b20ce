package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/access"
)

type fakeStream struct {
	info  StreamInfo
	ready chan struct{}
}

func (f *fakeStream) Info() StreamInfo              { return f.info }
func (f *fakeStream) Private() bool                 { return f.info.Private }
func (f *fakeStream) Ready() <-chan struct{}        { return f.ready }
func (f *fakeStream) Multivariant() ([]byte, error) { return []byte("#EXTM3U\n"), nil }
func (f *fakeStream) Thumbnail() ([]byte, error)    { return []byte{0xFF, 0xD8}, nil }
func (f *fakeStream) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	if strings.HasSuffix(file, ".m3u8") {
		w.Write([]byte(mediaPlaylist))
		return
	}
	w.Write([]byte("file " + file))
}

// mediaPlaylist has a URI in every place a low-latency media playlist can.
const mediaPlaylist = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PART:DURATION=0.2,URI="part1.mp4",INDEPENDENT=YES
#EXTINF:1.0,
seg1.mp4
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part2.mp4?x=1"
#EXT-X-RENDITION-REPORT:URI="../480p/media.m3u8",LAST-MSN=1
`

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

// BenchmarkLiveFile is the /live/ route's own cost per request (name
// check, viewers, CORS, counter) around a stream that answers a few
// bytes: a segment of a public stream; the same of a private stream with a
// view token (the real access.Policy: parse and verify); and a live media
// playlist, public, then private: fetched with the token, whose rewrite is
// cached (a viewer sharing the token with one who fetched that version),
// or first (a new version, or a token of its own: rewritten and kept).
func BenchmarkLiveFile(b *testing.B) {
	ready := make(chan struct{})
	close(ready)
	policy := &access.Policy{Tokens: access.Tokens{Secret: []byte("0123456789abcdef0123456789abcdef")}}
	token, err := policy.Tokens.Mint(access.Claims{Stream: "secret", Role: access.View}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	playlists := [2][]byte{livePlaylist(1000), livePlaylist(1001)}
	pub := &benchStream{fakeStream: fakeStream{info: StreamInfo{Name: "on", Live: true}, ready: ready}, playlists: playlists}
	priv := &benchStream{fakeStream: fakeStream{info: StreamInfo{Name: "secret", Live: true, Private: true}, ready: ready}, playlists: playlists}
	s := &Server{Catalog: catalogOf{"on": pub, "secret": priv}, Access: policy}
	h := started(b, s).Handler()
	for _, c := range []struct {
		name, path string
		st         *benchStream
		versions   bool // a new playlist version each request
	}{
		{"public", "/live/on/720p/seg.mp4", pub, false},
		{"private", "/live/secret/720p/seg.mp4?token=" + token, priv, false},
		{"public_playlist", "/live/on/720p/media.m3u8", pub, false},
		{"private_playlist_cached", "/live/secret/720p/media.m3u8?token=" + token, priv, false},
		{"private_playlist_first", "/live/secret/720p/media.m3u8?token=" + token, priv, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.st.versions = c.versions
			req := httptest.NewRequest("GET", c.path, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 || strings.Contains(c.path, "token=") && strings.HasSuffix(req.URL.Path, ".m3u8") &&
				!strings.Contains(rec.Body.String(), ".mp4?token=") {
				b.Fatalf("%d %.300s", rec.Code, rec.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				rec.Body.Reset()
				h.ServeHTTP(rec, req)
			}
		})
	}
}

// benchStream serves a live low-latency media playlist the size of the
// gateway's (7 one-second segments, parts of the newest three), built
// beforehand; with versions, each request gets another version than the
// last (the window moved on).
type benchStream struct {
	fakeStream
	playlists [2][]byte
	versions  bool
	n         int
}

func (s *benchStream) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	if !strings.HasSuffix(file, ".m3u8") {
		s.fakeStream.ServeFile(w, r, file)
		return
	}
	if s.versions {
		s.n++
	}
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	w.Write(s.playlists[s.n%2])
}

// livePlaylist is a media playlist as gohlslib writes it, its window
// starting at media sequence msn.
func livePlaylist(msn int) []byte {
	const name = "f3a1c2d4e5b6_video1_stream"
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.60000,CAN-SKIP-UNTIL=6.00000\n"+
		"#EXT-X-PART-INF:PART-TARGET=0.20000\n#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-MAP:URI=\"%s_init.mp4\"\n", msn, name)
	part := msn * 5
	for i := range 7 {
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:2026-12-04T18:%02d:%02d.000Z\n", (msn+i)/60%60, (msn+i)%60)
		if i >= 4 {
			for j := range 5 {
				fmt.Fprintf(&b, "#EXT-X-PART:DURATION=0.20000,URI=\"%s_part%d.mp4\"", name, part+j)
				if j == 0 {
					b.WriteString(",INDEPENDENT=YES")
				}
				b.WriteString("\n")
			}
		}
		part += 5
		fmt.Fprintf(&b, "#EXTINF:1.00000,\n%s_seg%d.mp4\n", name, msn+i)
	}
	fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%s_part%d.mp4\"\n", name, part)
	for _, r := range []string{"480p", "360p"} {
		fmt.Fprintf(&b, "#EXT-X-RENDITION-REPORT:URI=\"../%s/video1_stream.m3u8\",LAST-MSN=%d,LAST-PART=0\n", r, msn+6)
	}
	return []byte(b.String())
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

// TestPrivate checks a private stream and a name private by the policy:
// a view token for it is needed on every route that shows it, playlists
// fetched with a token carry it on every URI, and lists leave it out.
func TestPrivate(t *testing.T) {
	ready := make(chan struct{})
	close(ready)
	policy := &access.Policy{Tokens: access.Tokens{Secret: []byte("0123456789abcdef0123456789abcdef")}, PrivateStreams: []string{"team-*"}}
	mint := func(stream string, role access.Role) string {
		tok, err := policy.Tokens.Mint(access.Claims{Stream: stream, Role: role}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	view, other := mint("secret", access.View), mint("open", access.View)
	cat := fakeCatalog{
		"secret": {info: StreamInfo{Name: "secret", Live: true, Private: true}, ready: ready},
		"open":   {info: StreamInfo{Name: "open", Live: true}, ready: ready},
	}
	h := started(t, &Server{Catalog: cat, Access: policy, Publisher: fakePublisher{}, Chat: fakeChat{}}).Handler()
	get := func(path string, header ...string) (int, string) {
		req := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	for _, c := range []struct {
		path   string
		status int
		body   string // substring
	}{
		{"/live/secret/index.m3u8", 401, `"token_missing"`},
		{"/live/secret/index.m3u8?token=" + other, 403, `"token_wrong_stream"`},
		{"/live/secret/index.m3u8?token=garbage", 403, `"token_invalid"`},
		{"/live/secret/720p/seg1.mp4", 401, `"token_missing"`},
		{"/live/secret/720p/seg1.mp4?token=" + view, 200, "file 720p/seg1.mp4"},
		{"/live/secret/thumb.jpg", 401, `"token_missing"`},
		{"/api/streams/secret", 401, `"token_missing"`},
		{"/api/streams/secret?token=" + view, 200, `"private":true`},
		{"/chat/secret", 401, `"token_missing"`},
		{"/chat/secret?token=" + view, 200, "room secret"},
		{"/live/team-x/index.m3u8", 401, `"token_missing"`}, // private by name, not live: no hint that it is not
		{"/live/team-x/index.m3u8?token=" + mint("team-x", access.View), 404, "not_found"},
		{"/live/open/index.m3u8", 200, "#EXTM3U"},
	} {
		if status, body := get(c.path); status != c.status || !strings.Contains(body, c.body) {
			t.Errorf("%s: %d %q, want %d with %q", c.path[:min(len(c.path), 40)], status, body, c.status, c.body)
		}
	}
	if status, _ := get("/live/secret/720p/seg1.mp4", "Authorization", "Bearer "+view); status != 200 {
		t.Errorf("bearer token: %d", status)
	}
	// every URI of a playlist fetched with a token carries it
	_, body := get("/live/secret/720p/media.m3u8?token=" + view)
	for _, uri := range []string{`URI="init.mp4?token=` + view + `"`, `URI="part1.mp4?token=` + view + `"`, "seg1.mp4?token=" + view + "\n",
		`URI="part2.mp4?x=1&token=` + view + `"`, `URI="../480p/media.m3u8?token=` + view + `"`} {
		if !strings.Contains(body, uri) {
			t.Errorf("rewritten playlist lacks %s:\n%s", uri, body)
		}
	}
	for _, path := range []string{"/api/streams", "/metrics"} {
		if _, body := get(path); strings.Contains(body, "secret") {
			t.Errorf("%s shows the private stream: %s", path, body)
		}
	}
}

// TestTokenedCache: viewers sharing a token and a playlist version share
// one rewrite; a new version is rewritten.
func TestTokenedCache(t *testing.T) {
	var c tokenedPlaylists
	a := c.rewrite("tok", "s/m.m3u8", []byte("seg1.mp4\n"))
	b := c.rewrite("tok", "s/m.m3u8", []byte("seg1.mp4\n"))
	if &a[0] != &b[0] {
		t.Error("the same version was rewritten twice")
	}
	if n := c.rewrite("tok", "s/m.m3u8", []byte("seg2.mp4\n")); string(n) != "seg2.mp4?token=tok\n" {
		t.Errorf("new version: %q", n)
	}
}
