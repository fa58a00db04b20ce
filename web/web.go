// Package web holds every HTTP route of livegate in one place: the ingest
// and chat WebSockets, the HLS playlists and segments under /live/, the JSON
// API, metrics, and the pages with their embedded assets.
package web

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/streamname"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed assets
var assets embed.FS

// Publisher serves /ingest/{stream} for a valid name.
type Publisher interface {
	ServePublish(w http.ResponseWriter, r *http.Request, stream string)
	// Live reports whether the stream has a publisher (its output may not
	// exist yet).
	Live(stream string) bool
}

// Chat serves /chat/{stream} for a valid name and counts room members.
type Chat interface {
	ServeRoom(w http.ResponseWriter, r *http.Request, room string)
	Users(room string) int
}

// Catalog finds the streams that are live or have just ended, or else
// their recordings.
type Catalog interface {
	// Stream returns the named stream (maybe a recording), or nil.
	Stream(name string) Stream
	// Names lists the streams it holds.
	Names() []string
}

// Recorded is implemented by a Catalog that keeps recordings.
type Recorded interface {
	// Recorded lists the streams that may have one.
	Recorded() []string
}

// Stream is the HLS output of one stream.
type Stream interface {
	Info() StreamInfo
	// Private reports whether only holders of a view token may watch it.
	Private() bool
	// Ready is closed once the first segments of every rendition exist.
	Ready() <-chan struct{}
	// Multivariant returns the multivariant playlist.
	Multivariant() ([]byte, error)
	// ServeFile serves a file under the multivariant playlist's directory.
	ServeFile(w http.ResponseWriter, r *http.Request, file string)
	// Thumbnail is a small JPEG of a recent frame.
	Thumbnail() ([]byte, error)
}

// StreamInfo describes a stream for the API.
type StreamInfo struct {
	Name       string          `json:"name"`
	Live       bool            `json:"live"`
	StartedAt  time.Time       `json:"started_at"`
	EndedAt    *time.Time      `json:"ended_at,omitempty"`
	Viewers    int             `json:"viewers"`
	ChatUsers  int             `json:"chat_users"`
	Renditions []RenditionInfo `json:"renditions"`
	// Recording is true when the stream is not live and /live/ serves its
	// newest finished recording, as VOD.
	Recording bool `json:"recording"`
	// Private is true for a stream only holders of a view token may watch.
	Private bool `json:"private,omitempty"`
	// RecordedAt is when that recording started (its broadcast's start).
	RecordedAt *time.Time `json:"recorded_at,omitempty"`
	// Duration is that recording's length in seconds.
	Duration float64 `json:"duration,omitempty"`
}

// RenditionInfo describes one rendition for the API.
type RenditionInfo struct {
	Name      string `json:"name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Bandwidth int    `json:"bandwidth"`
}

// Access decides who may watch a private stream (access.Policy).
type Access interface {
	// PrivateByName reports whether a stream is private by its name alone.
	PrivateByName(stream string) bool
	// Require checks the request's token for role on stream: the refusal
	// is an *access.Error.
	Require(r *http.Request, stream string, role access.Role) (*access.Claims, error)
}

// Server routes requests. Set the fields, call Start, then serve Handler.
type Server struct {
	Publisher Publisher
	Chat      Chat
	Catalog   Catalog
	// Access guards private streams; nil: every stream is public.
	Access Access
	// AllowOrigin is the Access-Control-Allow-Origin of /live/ responses;
	// default "*". "-" sends none.
	AllowOrigin string
	// StartWait is how long a playlist request for a starting stream is
	// held; default 10 s.
	StartWait time.Duration
	// ViewerWindow is how far back distinct HLS clients are counted; default 10 s.
	ViewerWindow time.Duration
	// MaxViewersTracked bounds the viewer table of one stream; default 100000.
	MaxViewersTracked int
	// RecordingsListed bounds /api/recordings to the newest; default 50.
	RecordingsListed int
	// LatencyInterval is the least time between two latency reports of one
	// client address for one stream (POST /api/streams/{stream}/latency);
	// faster ones get 429. Default 5 s.
	LatencyInterval time.Duration
	// LatencyWindow is how long a client's last report counts in
	// ViewerLatency; default 30 s.
	LatencyWindow time.Duration
	// LatencyReporters bounds the client addresses whose last report a
	// stream keeps; a new one beyond it gets 503. Default 10000.
	LatencyReporters int
	// ClientAddr is a request's client address (latency reports are
	// counted per address); default the connection's peer address.
	ClientAddr func(r *http.Request) string
	// Metrics is where the server registers its metrics, and what
	// /metrics shows (every component's); default a new registry.
	Metrics *prometheus.Registry
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	viewers  viewers
	latency  latencies
	requests *prometheus.CounterVec
	tokened  tokenedPlaylists
}

// Start fills in the defaults and checks the settings; call it before
// Handler.
func (s *Server) Start() error {
	if s.Catalog == nil {
		return errors.New("web: no Catalog")
	}
	if s.AllowOrigin == "" {
		s.AllowOrigin = "*"
	}
	if s.StartWait == 0 {
		s.StartWait = 10 * time.Second
	}
	if s.ViewerWindow == 0 {
		s.ViewerWindow = 10 * time.Second
	}
	if s.MaxViewersTracked == 0 {
		s.MaxViewersTracked = 100000
	}
	if s.RecordingsListed == 0 {
		s.RecordingsListed = 50
	}
	if s.LatencyInterval == 0 {
		s.LatencyInterval = 5 * time.Second
	}
	if s.LatencyWindow == 0 {
		s.LatencyWindow = 30 * time.Second
	}
	if s.LatencyReporters == 0 {
		s.LatencyReporters = 10000
	}
	if s.ClientAddr == nil {
		s.ClientAddr = func(r *http.Request) string { host, _, _ := net.SplitHostPort(r.RemoteAddr); return host }
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.StartWait < 0 || s.ViewerWindow < 0 || s.MaxViewersTracked < 0 || s.RecordingsListed < 0 {
		return errors.New("web: StartWait, ViewerWindow, MaxViewersTracked or RecordingsListed negative")
	}
	if s.LatencyInterval < 0 || s.LatencyWindow < 0 || s.LatencyReporters < 0 {
		return errors.New("web: LatencyInterval, LatencyWindow or LatencyReporters negative")
	}
	s.latency.interval, s.latency.window, s.latency.max = s.LatencyInterval, s.LatencyWindow, s.LatencyReporters
	s.viewers.window, s.viewers.max = s.ViewerWindow, s.MaxViewersTracked
	if s.Metrics == nil {
		s.Metrics = prometheus.NewRegistry()
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "livegate_http_requests_total",
		Help: "Requests by route: playlist (multivariant playlists) and media (every other file under /live/)."}, []string{"route"})
	if err := s.Metrics.Register(s.requests); err != nil {
		return fmt.Errorf("web: metrics: %w", err)
	}
	if err := s.Metrics.Register(collector{s}); err != nil {
		return fmt.Errorf("web: metrics: %w", err)
	}
	return nil
}

// Close forgets the viewers counted. Idempotent.
func (s *Server) Close() {
	s.viewers.mu.Lock()
	s.viewers.seenAt = nil
	s.viewers.mu.Unlock()
}

// Handler returns every route of the contract.
func (s *Server) Handler() http.Handler {
	static, _ := fs.Sub(assets, "assets")
	mux := http.NewServeMux()
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; img-src 'self' data:; connect-src 'self' ws: wss:")
			http.ServeFileFS(w, r, static, name)
		}
	}
	mux.HandleFunc("GET /{$}", page("index.html"))
	mux.HandleFunc("GET /broadcast", page("broadcast.html"))
	mux.HandleFunc("GET /watch/{stream}", s.named(page("watch.html")))
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))

	mux.HandleFunc("GET /ingest/{stream}", s.named(func(w http.ResponseWriter, r *http.Request) {
		s.Publisher.ServePublish(w, r, r.PathValue("stream"))
	}))
	mux.HandleFunc("GET /chat/{stream}", s.named(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("stream")
		if s.allowed(w, r, name, s.Catalog.Stream(name)) {
			s.Chat.ServeRoom(w, r, name)
		}
	}))

	mux.HandleFunc("GET /live/{stream}/index.m3u8", s.cors(s.named(s.multivariant)))
	mux.HandleFunc("GET /live/{stream}/thumb.jpg", s.cors(s.named(s.thumbnail)))
	mux.HandleFunc("GET /live/{stream}/{file...}", s.cors(s.named(s.liveFile)))
	mux.HandleFunc("OPTIONS /live/{stream}/{file...}", s.cors(s.preflight))

	mux.HandleFunc("GET /api/streams", s.listStreams)
	mux.HandleFunc("GET /api/recordings", s.listRecordings)
	mux.HandleFunc("GET /api/streams/{stream}", s.named(s.oneStream))
	mux.HandleFunc("POST /api/streams/{stream}/latency", s.named(s.reportLatency))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

// OriginChecker returns the Origin check of the WebSockets: a browser
// request is allowed from the same host, or from one of the listed origins
// (scheme://host[:port], "*" for any).
func OriginChecker(allowed []string) func(r *http.Request) bool {
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		for _, a := range allowed {
			if a == "*" || strings.EqualFold(a, origin) {
				return true
			}
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
}

// jsonError answers with the contract's JSON error body.
func jsonError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}

// named rejects an invalid {stream} with 400 before anything else runs.
func (s *Server) named(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !streamname.Valid(r.PathValue("stream")) {
			jsonError(w, http.StatusBadRequest, "invalid_name", "stream names are 1 to 64 characters of A-Z a-z 0-9 _ -")
			return
		}
		h(w, r)
	}
}

// cors sets Access-Control-Allow-Origin on every answer of h.
func (s *Server) cors(h http.HandlerFunc) http.HandlerFunc {
	if s.AllowOrigin == "-" {
		return h
	}
	// built once: every media request pays for this header
	origin := []string{s.AllowOrigin}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Access-Control-Allow-Origin"] = origin
		h(w, r)
	}
}

// preflight answers a CORS preflight of /live/: the methods and request
// headers allowed matter there only, so media answers go without them.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	if s.AllowOrigin != "-" {
		w.Header().Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Range")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) count(route string) { s.requests.WithLabelValues(route).Inc() }

func (s *Server) multivariant(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	s.count("playlist")
	deadline := time.Now().Add(s.StartWait)
	st := s.Catalog.Stream(name)
	// a publisher that just connected has no output until its first bytes
	for st == nil && s.Publisher.Live(name) && time.Now().Before(deadline) {
		select {
		case <-time.After(50 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		st = s.Catalog.Stream(name)
	}
	if !s.allowed(w, r, name, st) {
		return
	}
	if st == nil {
		jsonError(w, http.StatusNotFound, "not_found", "stream "+name+" is not live")
		return
	}
	s.viewers.seen(name, clientKey(r.RemoteAddr, r.UserAgent()))
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-st.Ready():
	case <-timer.C:
		jsonError(w, http.StatusServiceUnavailable, "starting", "stream "+name+" has no segments yet")
		return
	case <-r.Context().Done():
		return
	}
	body, err := st.Multivariant()
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, "starting", err.Error())
		return
	}
	if token := r.URL.Query().Get("token"); token != "" {
		body = s.tokened.rewrite(token, name+"/index.m3u8", body)
	}
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(body)
}

func (s *Server) liveFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	s.count("media")
	st := s.Catalog.Stream(name)
	if !s.allowed(w, r, name, st) {
		return
	}
	if st == nil {
		jsonError(w, http.StatusNotFound, "not_found", "stream "+name+" is not live")
		return
	}
	s.viewers.seen(name, clientKey(r.RemoteAddr, r.UserAgent()))
	file := r.PathValue("file")
	if token := r.URL.Query().Get("token"); token != "" && strings.HasSuffix(file, ".m3u8") {
		s.tokened.serve(w, r, token, name+"/"+file, func(w http.ResponseWriter, r *http.Request) { st.ServeFile(w, r, file) })
		return
	}
	st.ServeFile(w, r, file)
}

func (s *Server) thumbnail(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	st := s.Catalog.Stream(name)
	if !s.allowed(w, r, name, st) {
		return
	}
	if st == nil {
		jsonError(w, http.StatusNotFound, "not_found", "stream "+name+" is not live")
		return
	}
	jpeg, err := st.Thumbnail()
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, "no_thumbnail", err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "max-age=5")
	w.Write(jpeg)
}

// allowed reports whether the request may see the named stream (st, nil
// when it is not there): a private one, or one private by its name, needs
// a view token for it. Otherwise it answers the refusal.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, name string, st Stream) bool {
	if s.Access == nil || !(st != nil && st.Private()) && !s.Access.PrivateByName(name) {
		return true
	}
	_, err := s.Access.Require(r, name, access.View)
	if err == nil {
		return true
	}
	var e *access.Error
	if !errors.As(err, &e) {
		e = access.ErrTokenInvalid
	}
	s.Logger.Info("viewer refused", "stream", name, "path", r.URL.Path, "code", e.Code) // never the token
	if r.Method == http.MethodHead {
		w.WriteHeader(e.Status)
		return false
	}
	jsonError(w, e.Status, e.Code, e.Message)
	return false
}

func (s *Server) info(st Stream) StreamInfo {
	info := st.Info()
	info.Viewers = s.Viewers(info.Name)
	if s.Chat != nil {
		info.ChatUsers = s.Chat.Users(info.Name)
	}
	if info.Renditions == nil {
		info.Renditions = []RenditionInfo{}
	}
	return info
}

func (s *Server) listStreams(w http.ResponseWriter, r *http.Request) {
	list := []StreamInfo{}
	for _, name := range s.Catalog.Names() {
		if st := s.Catalog.Stream(name); st != nil {
			if info := s.info(st); info.Live && !info.Private {
				list = append(list, info)
			}
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	writeJSON(w, list)
}

// listRecordings lists the streams not live now whose /live/ serves a
// recording, newest first.
func (s *Server) listRecordings(w http.ResponseWriter, r *http.Request) {
	list := []StreamInfo{}
	if c, ok := s.Catalog.(Recorded); ok {
		for _, name := range c.Recorded() {
			if st := s.Catalog.Stream(name); st != nil {
				if info := s.info(st); info.Recording && !info.Live && !info.Private && info.RecordedAt != nil {
					list = append(list, info)
				}
			}
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].RecordedAt.After(*list[j].RecordedAt) })
	writeJSON(w, list[:min(len(list), s.RecordingsListed)])
}

func (s *Server) oneStream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	st := s.Catalog.Stream(name)
	if !s.allowed(w, r, name, st) {
		return
	}
	if st == nil {
		info := StreamInfo{Name: name, Renditions: []RenditionInfo{}}
		if s.Chat != nil {
			info.ChatUsers = s.Chat.Users(name)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(info)
		return
	}
	writeJSON(w, s.info(st))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	json.NewEncoder(w).Encode(v)
}

// Viewers estimates the distinct HLS clients of a stream over the window.
func (s *Server) Viewers(stream string) int {
	return s.viewers.count(stream)
}

// collector reports the streams, their viewers and chat users when
// /metrics is read.
type collector struct{ s *Server }

var (
	streamsLiveDesc = prometheus.NewDesc("livegate_streams_live", "Streams being published.", nil, nil)
	viewersDesc     = prometheus.NewDesc("livegate_viewers", "Distinct HLS clients of a stream over the viewer window.", []string{"stream"}, nil)
	chatUsersDesc   = prometheus.NewDesc("livegate_chat_users", "Members of a stream's chat room, on every gateway.", []string{"stream"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- streamsLiveDesc
	ch <- viewersDesc
	ch <- chatUsersDesc
	ch <- viewerLatencyDesc
}

// Collect reports every stream the catalog holds; private ones count in
// livegate_streams_live, but their names are not shown.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	live := 0
	for _, name := range c.s.Catalog.Names() {
		st := c.s.Catalog.Stream(name)
		if st == nil {
			continue
		}
		info := c.s.info(st)
		if info.Live {
			live++
		}
		if info.Private {
			continue
		}
		ch <- prometheus.MustNewConstMetric(viewersDesc, prometheus.GaugeValue, float64(info.Viewers), name)
		ch <- prometheus.MustNewConstMetric(chatUsersDesc, prometheus.GaugeValue, float64(info.ChatUsers), name)
		if h, ok := c.s.latency.histogram(name); ok && info.Live {
			ch <- h
		}
	}
	c.s.latency.keep(c.s.live)
	ch <- prometheus.MustNewConstMetric(streamsLiveDesc, prometheus.GaugeValue, float64(live))
}

// viewers counts distinct clients (address and user agent) per stream over
// a sliding window.
type viewers struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	seenAt map[string]map[string]time.Time
}

// clientKey tells clients apart: remote is the client's HOST:PORT.
func clientKey(remote, agent string) string {
	if i := strings.LastIndexByte(remote, ':'); i >= 0 {
		remote = remote[:i]
	}
	return remote + "|" + agent
}

func (v *viewers) seen(stream, key string) {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seenAt == nil {
		v.seenAt = map[string]map[string]time.Time{}
	}
	m := v.seenAt[stream]
	if m == nil {
		m = map[string]time.Time{}
		v.seenAt[stream] = m
	}
	if _, ok := m[key]; !ok && len(m) >= v.max {
		v.prune(m, now)
		if len(m) >= v.max {
			return // table full of recent clients: count saturates
		}
	}
	m[key] = now
}

func (v *viewers) prune(m map[string]time.Time, now time.Time) {
	for k, t := range m {
		if now.Sub(t) > v.window {
			delete(m, k)
		}
	}
}

func (v *viewers) count(stream string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.seenAt[stream]
	v.prune(m, time.Now())
	if len(m) == 0 {
		delete(v.seenAt, stream)
	}
	return len(m)
}
