package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/web"
	"github.com/prometheus/client_golang/prometheus"
)

// Local is the gateway's own streams (stream.Hub).
type Local interface {
	web.Catalog
	// Live reports whether a stream has a broadcast here that has not
	// ended.
	Live(name string) bool
}

// Catalog is the web.Catalog of a gateway in a cluster: a stream another
// gateway ingests is served by proxying to it (net/http/httputil's
// ReverseProxy to its advertised URL), one upstream request for any
// number of viewers asking for the same playlist version, part or segment
// at once (the answer is kept PlaylistKeep, or MediaKeep for segments and
// parts, which never change); its own streams, and recordings, come from
// Local. A request for a stream that is changing hands (its gateway is
// handing it off, or this one is taking it over and has no segments yet)
// is held until its new gateway serves it, at most Wait; a request that
// fails because its gateway went away is tried again where the stream
// went. Private streams are checked by package web (every gateway has
// the token secret) before they get here; upstream, the proxy presents a
// view token of its own. Set the fields, call Start; whoever calls Start
// must call Close.
type Catalog struct {
	// Local is this gateway's streams; required.
	Local Local
	// Directory says where the others are; required, started.
	Directory *Directory
	// Tokens mints the view tokens the proxy presents for private
	// streams; the zero value presents none.
	Tokens access.Tokens
	// Timeout bounds one upstream request, a blocking reload's wait
	// included; default 15 s.
	Timeout time.Duration
	// PlaylistKeep is how long a playlist answer is kept for the viewers
	// who ask for it just after; default 500 ms.
	PlaylistKeep time.Duration
	// MediaKeep is how long a segment, part or init section is kept;
	// default 30 s.
	MediaKeep time.Duration
	// CacheBytes bounds what is kept; default 256 MiB.
	CacheBytes int64
	// MaxBodyBytes bounds one upstream answer; default 64 MiB.
	MaxBodyBytes int64
	// Wait bounds how long a request for a stream changing hands is
	// held; default 10 s.
	Wait time.Duration
	// Metrics, if set, gets the proxy's metrics.
	Metrics *prometheus.Registry
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	proxy     *httputil.ReverseProxy
	transport *http.Transport
	cache     cache
	tokens    tokenCache
	stop      chan struct{}
	wg        sync.WaitGroup
	once      sync.Once

	upstream  *prometheus.CounterVec
	collapsed *prometheus.CounterVec
	held      prometheus.Counter
}

// thumbKeep is how long a remote stream's thumbnail is kept, as long as
// its own gateway reuses one.
const thumbKeep = 5 * time.Second

// Start fills in the defaults and checks the settings.
func (c *Catalog) Start() error {
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.PlaylistKeep == 0 {
		c.PlaylistKeep = 500 * time.Millisecond
	}
	if c.MediaKeep == 0 {
		c.MediaKeep = 30 * time.Second
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 256 << 20
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 20
	}
	if c.Wait == 0 {
		c.Wait = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Local == nil || c.Directory == nil {
		return errors.New("cluster: catalog needs Local and Directory")
	}
	if c.Timeout < 0 || c.PlaylistKeep < 0 || c.MediaKeep < 0 || c.CacheBytes < 0 || c.MaxBodyBytes <= 0 || c.Wait < 0 {
		return errors.New("cluster: catalog: a duration or size is negative")
	}
	c.transport = &http.Transport{
		Proxy:                 nil, // the gateways reach each other directly
		MaxIdleConnsPerHost:   256, // blocking reloads wait in parallel, one per playlist at least
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: c.Timeout,
		ForceAttemptHTTP2:     true,
	}
	c.proxy = &httputil.ReverseProxy{
		Rewrite:   func(*httputil.ProxyRequest) {}, // the outgoing request is built whole by fetch
		Transport: c.transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.(*captured).err = err
		},
	}
	c.cache = cache{max: c.CacheBytes, flights: map[string]*flight{}}
	c.stop = make(chan struct{})
	if err := c.register(); err != nil {
		return err
	}
	c.wg.Add(1)
	go c.janitor()
	return nil
}

// Close stops the cache's janitor and closes idle upstream connections.
// Idempotent.
func (c *Catalog) Close() {
	c.once.Do(func() {
		if c.stop == nil {
			return
		}
		close(c.stop)
		c.wg.Wait()
		c.transport.CloseIdleConnections()
	})
}

func (c *Catalog) janitor() {
	defer c.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.cache.sweep()
		}
	}
}

// Stream implements web.Catalog: a stream another gateway has is served
// through it; one changing hands waits for its new gateway; else the
// local stream or recording.
func (c *Catalog) Stream(name string) web.Stream {
	st, settled, e := c.resolve(name)
	if settled {
		return st
	}
	return &moving{c: c, name: name, e: e}
}

// resolve finds what serves a stream now; settled is false while the
// stream changes hands (then e is its entry).
func (c *Catalog) resolve(name string) (st web.Stream, settled bool, e known) {
	e, ok := c.Directory.lookup(name)
	switch {
	case !ok:
		return nilIfNil(c.Local.Stream(name)), true, e
	case e.Gateway == c.Directory.ID():
		if e.State == StateHandoff || !c.Local.Live(name) {
			return nil, false, e // handed off, or claimed and not opened yet
		}
		st := c.Local.Stream(name)
		if st == nil {
			return nil, false, e
		}
		select {
		case <-st.Ready():
			return st, true, e
		default:
			return st, false, e // taken over here, no segments yet
		}
	case e.State == StateHandoff:
		return nil, false, e
	}
	return &remote{c: c, name: name, e: e}, true, e
}

// nilIfNil turns a nil pointer in an interface into a nil interface.
func nilIfNil(st web.Stream) web.Stream {
	if st == nil {
		return nil
	}
	return st
}

// Names implements web.Catalog: this gateway's streams and the others'.
func (c *Catalog) Names() []string {
	names := c.Local.Names()
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		seen[n] = true
	}
	for n := range c.Directory.listed() {
		if !seen[n] {
			names = append(names, n)
		}
	}
	return names
}

// Recorded implements web.Recorded: this gateway's recordings.
func (c *Catalog) Recorded() []string {
	if r, ok := c.Local.(web.Recorded); ok {
		return r.Recorded()
	}
	return nil
}

// settle waits until the stream is settled somewhere (or gone), at most
// until deadline or the end of ctx; nil when it did not settle.
func (c *Catalog) settle(ctx context.Context, name string, deadline time.Time) web.Stream {
	counted := false
	for {
		changed := c.Directory.changed(name)
		st, settled, e := c.resolve(name)
		if settled {
			if st == nil {
				return gone{}
			}
			return st
		}
		if !counted {
			c.held.Inc()
			counted = true
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		var ready <-chan struct{}
		if st != nil && e.Gateway == c.Directory.ID() {
			ready = st.Ready()
		}
		select {
		case <-changed:
		case <-ready:
		case <-time.After(min(wait, 100*time.Millisecond)): // this gateway's broadcast opening
		case <-ctx.Done():
			return nil
		}
	}
}

// gone is a stream that went while a request waited for it.
type gone struct{}

func (gone) Info() web.StreamInfo          { return web.StreamInfo{} }
func (gone) Private() bool                 { return false }
func (gone) Ready() <-chan struct{}        { return closed }
func (gone) Multivariant() ([]byte, error) { return nil, errors.New("the stream ended") }
func (gone) Thumbnail() ([]byte, error)    { return nil, errors.New("the stream ended") }
func (gone) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	jsonError(w, http.StatusNotFound, "not_found", "the stream ended")
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// moving is a stream changing hands: every request waits (Catalog.Wait)
// for its new gateway, then is served there.
type moving struct {
	c    *Catalog
	name string
	e    known
}

func (m *moving) Info() web.StreamInfo {
	return web.StreamInfo{Name: m.name, Live: true, StartedAt: m.e.Started, Private: m.e.Private, Renditions: m.e.Renditions}
}

func (m *moving) Private() bool { return m.e.Private }

// Ready is closed: Multivariant does the waiting.
func (m *moving) Ready() <-chan struct{} { return closed }

func (m *moving) Multivariant() ([]byte, error) {
	st := m.c.settle(context.Background(), m.name, time.Now().Add(m.c.Wait))
	if st == nil {
		return nil, fmt.Errorf("stream %s is moving to another gateway", m.name)
	}
	return st.Multivariant()
}

func (m *moving) Thumbnail() ([]byte, error) {
	st := m.c.settle(context.Background(), m.name, time.Now().Add(m.c.Wait))
	if st == nil {
		return nil, fmt.Errorf("stream %s is moving to another gateway", m.name)
	}
	return st.Thumbnail()
}

func (m *moving) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	st := m.c.settle(r.Context(), m.name, time.Now().Add(m.c.Wait))
	if st == nil {
		jsonError(w, http.StatusServiceUnavailable, "moving", "stream "+m.name+" is moving to another gateway")
		return
	}
	st.ServeFile(w, r, file)
}

// remote is a stream another gateway ingests.
type remote struct {
	c    *Catalog
	name string
	e    known
}

func (s *remote) Info() web.StreamInfo {
	return web.StreamInfo{Name: s.name, Live: true, StartedAt: s.e.Started, Private: s.e.Private, Renditions: s.e.Renditions}
}

func (s *remote) Private() bool { return s.e.Private }

// Ready is closed: the stream's gateway holds the multivariant playlist
// until it has segments.
func (s *remote) Ready() <-chan struct{} { return closed }

func (s *remote) Multivariant() ([]byte, error) {
	return s.body(context.Background(), "index.m3u8", s.c.PlaylistKeep)
}

func (s *remote) Thumbnail() ([]byte, error) {
	return s.body(context.Background(), "thumb.jpg", thumbKeep)
}

// body gets a whole file of the stream, wherever it is.
func (s *remote) body(ctx context.Context, file string, keep time.Duration) ([]byte, error) {
	a, moved, err := s.c.follow(ctx, s, file, "", keep)
	if moved != nil {
		var c captured
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/live/"+s.name+"/"+file, nil)
		if file == "index.m3u8" {
			return moved.Multivariant()
		}
		moved.ServeFile(&c, req, file)
		a, err = c.answer(), nil
	}
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("stream %s: %s from its gateway: %d %s", s.name, file, a.status, bytes.TrimSpace(a.body))
	}
	return a.body, nil
}

// ServeFile proxies the file to the stream's gateway: playlists (a
// blocking reload's query kept) are kept PlaylistKeep, the rest
// MediaKeep.
func (s *remote) ServeFile(w http.ResponseWriter, r *http.Request, file string) {
	keep, query := s.c.MediaKeep, ""
	if strings.HasSuffix(file, ".m3u8") {
		keep, query = s.c.PlaylistKeep, hlsQuery(r.URL.Query())
	}
	a, moved, err := s.c.follow(r.Context(), s, file, query, keep)
	if moved != nil {
		moved.ServeFile(w, r, file)
		return
	}
	if err != nil {
		if r.Context().Err() == nil {
			jsonError(w, http.StatusBadGateway, "gateway_unreachable", "the gateway that has stream "+s.name+" did not answer")
		}
		return
	}
	a.write(w, r)
}

// hlsQuery is the query a playlist request passes on: every parameter
// but the token (the proxy presents its own; package web puts the
// client's into the playlist), sorted, so that players asking the same
// thing share one upstream request.
func hlsQuery(q url.Values) string {
	q.Del("token")
	return q.Encode()
}

// follow fetches a file of a remote stream through the collapsing cache.
// When the fetch fails because the stream is changing hands or its
// gateway went away, it waits for the stream to settle (Wait) and tries
// again where it went; moved is the stream to serve from instead when it
// settled on this gateway (or ended).
func (c *Catalog) follow(ctx context.Context, s *remote, file, query string, keep time.Duration) (a *answer, moved web.Stream, err error) {
	deadline := time.Now().Add(c.Wait)
	for {
		a, err = c.fetch(ctx, s, file, query, keep)
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		failed := err != nil || a.status >= 500 || a.status == http.StatusNotFound
		if !failed || time.Now().After(deadline) {
			return a, nil, err
		}
		cur, ok := c.Directory.lookup(s.name)
		if ok && cur.Gateway == s.e.Gateway && cur.State == StateLive {
			if err == nil && a.status == http.StatusNotFound {
				return a, nil, nil // a file the stream's gateway does not have
			}
			// its gateway fails and still holds the stream: it may be
			// dying; its publisher may be about to resume elsewhere
			select {
			case <-c.Directory.changed(s.name):
			case <-time.After(time.Until(deadline)):
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		st := c.settle(ctx, s.name, deadline)
		if st == nil {
			return a, nil, err
		}
		next, ok := st.(*remote)
		if !ok {
			return nil, st, nil
		}
		if next.e.Gateway == s.e.Gateway && next.e.State == s.e.State {
			return a, nil, err // nothing changed
		}
		s = next
	}
}

// fetch gets one file of a remote stream: from the cache, from the
// upstream request another viewer made for it, or with a request of its
// own. Playlists are cached per gateway, as their contents are; the
// other files have unique names.
func (c *Catalog) fetch(ctx context.Context, s *remote, file, query string, keep time.Duration) (*answer, error) {
	key := s.name + "/" + file
	if strings.HasSuffix(file, ".m3u8") || file == "thumb.jpg" {
		key = s.e.Gateway + "|" + key + "?" + query
	}
	f, leader, how := c.cache.join(key)
	if !leader {
		c.collapsed.WithLabelValues(how).Inc()
		select {
		case <-f.done:
			return f.a, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	u := strings.TrimSuffix(s.e.URL, "/") + "/live/" + url.PathEscape(s.name) + "/" + file
	if query != "" {
		u += "?" + query
	}
	a, err := c.get(u, s.name, s.e.Private)
	if a != nil && a.status != http.StatusOK {
		keep = 0
	}
	c.cache.finish(key, f, a, err, keep)
	return a, err
}

// get makes one upstream request through the reverse proxy, detached
// from any one viewer (others may wait for it), bounded by Timeout.
func (c *Catalog) get(u, stream string, private bool) (*answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if private && c.Tokens.Enabled() {
		tok, err := c.tokens.get(&c.Tokens, stream)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	cw := &captured{max: c.MaxBodyBytes}
	c.proxy.ServeHTTP(cw, req)
	switch {
	case cw.err != nil:
		c.upstream.WithLabelValues("unreachable").Inc()
		return nil, fmt.Errorf("upstream %s: %w", u, cw.err)
	case cw.tooBig:
		c.upstream.WithLabelValues("error_status").Inc()
		return nil, fmt.Errorf("upstream %s: more than %d bytes", u, c.MaxBodyBytes)
	}
	a := cw.answer()
	switch {
	case a.status < 400:
		c.upstream.WithLabelValues("ok").Inc()
	case a.status == http.StatusNotFound:
		c.upstream.WithLabelValues("not_found").Inc()
	default:
		c.upstream.WithLabelValues("error_status").Inc()
	}
	return a, nil
}

// answer is an upstream answer, shared by every viewer it serves.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// write serves the answer: Range and HEAD requests through
// http.ServeContent.
func (a *answer) write(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range a.header {
		switch k {
		case "Content-Length", "Access-Control-Allow-Origin", "Date":
		default:
			h[k] = v
		}
	}
	if a.status == http.StatusOK && (r.Method != http.MethodGet || r.Header.Get("Range") != "") {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// captured is the http.ResponseWriter the reverse proxy writes an
// upstream answer into.
type captured struct {
	header http.Header
	status int
	body   bytes.Buffer
	max    int64
	tooBig bool
	err    error // the proxy's transport error
}

func (c *captured) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}

func (c *captured) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *captured) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if c.max > 0 && int64(c.body.Len()+len(p)) > c.max {
		c.tooBig = true
		return 0, io.ErrShortWrite
	}
	return c.body.Write(p)
}

func (c *captured) answer() *answer {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return &answer{status: c.status, header: c.header, body: c.body.Bytes()}
}

// jsonError answers with the contract's JSON error body.
func jsonError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}

// tokenCache keeps the view token the proxy presents for each private
// stream until shortly before it expires.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[string]mintedToken
}

type mintedToken struct {
	token   string
	expires time.Time
}

// tokenLife is how long a minted token is valid; it is minted again a
// minute before it expires.
const tokenLife = 5 * time.Minute

func (t *tokenCache) get(tokens *access.Tokens, stream string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.tokens[stream]; ok && time.Until(m.expires) > time.Minute {
		return m.token, nil
	}
	tok, err := tokens.Mint(access.Claims{Stream: stream, Role: access.View}, tokenLife)
	if err != nil {
		return "", fmt.Errorf("view token for the proxy: %w", err)
	}
	if t.tokens == nil || len(t.tokens) > 10000 {
		t.tokens = map[string]mintedToken{}
	}
	t.tokens[stream] = mintedToken{tok, time.Now().Add(tokenLife)}
	return tok, nil
}

// register adds the proxy's metrics to Metrics.
func (c *Catalog) register() error {
	c.upstream = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "livegate_cluster_proxy_requests_total",
		Help: "Requests this gateway made to the gateway of a stream, by result: ok, not_found, error_status, unreachable."},
		[]string{"result"})
	c.collapsed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "livegate_cluster_proxy_collapsed_total",
		Help: "Viewer requests for a remote stream answered without a request of their own: waited (for one in flight) or kept (an answer just made)."},
		[]string{"how"})
	c.held = prometheus.NewCounter(prometheus.CounterOpts{Name: "livegate_cluster_held_total",
		Help: "Requests held while their stream changed hands (a handoff, a takeover starting)."})
	for _, l := range []string{"ok", "not_found", "error_status", "unreachable"} {
		c.upstream.WithLabelValues(l)
	}
	c.collapsed.WithLabelValues("waited")
	c.collapsed.WithLabelValues("kept")
	if c.Metrics == nil {
		return nil
	}
	for _, m := range []prometheus.Collector{c.upstream, c.collapsed, c.held,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "livegate_cluster_proxy_cache_bytes",
			Help: "Bytes of remote streams' answers kept."}, func() float64 { return float64(c.cache.size()) }),
	} {
		if err := c.Metrics.Register(m); err != nil {
			return fmt.Errorf("cluster: metrics: %w", err)
		}
	}
	return nil
}
