// Package ingest receives publishers: the /ingest/{stream} WebSocket of the
// contract. It checks the key, keeps one publisher per stream, recognises the
// container, buffers the bytes (bounded) into a transcoder run, reports
// status, and lets a dropped publisher resume its session within a grace
// period.
package ingest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Backend makes the media pipeline of streams. Declared here, implemented by
// the binary that wires transcode and segmenter together.
type Backend interface {
	// Open prepares the output (HLS) of a stream that starts publishing.
	Open(stream string) (Output, error)
}

// Output is the HLS output of one stream, across publisher reconnects.
type Output interface {
	// Transcode starts a transcoder run for one publisher connection.
	Transcode(c Container, width, height int) (Run, error)
	// Live reports whether the first segments exist.
	Live() bool
	// Speed is media time produced per wall time over the last seconds.
	Speed() float64
	// End finishes the playlists (#EXT-X-ENDLIST). Called once.
	End()
}

// Run is one transcoder process fed by one publisher connection.
type Run interface {
	// Write takes container bytes in order.
	Write(p []byte) (int, error)
	// CloseInput signals the end of the input; the run flushes and ends.
	CloseInput() error
	// Wait waits for the run to end; a failure names its cause.
	Wait() error
	// Abort stops the run at once (a hung or unwanted transcoder); Wait
	// then returns soon.
	Abort()
}

// Close codes and error codes of the contract.
const (
	codeUnsupported = websocket.CloseUnsupportedData   // 1003
	codePolicy      = websocket.ClosePolicyViolation   // 1008
	codeTooBig      = websocket.CloseMessageTooBig     // 1009
	codeInternal    = websocket.CloseInternalServerErr // 1011
)

// Server serves publishers. Set the fields, call Start, then route
// requests to ServePublish. Whoever calls Start must call Close.
type Server struct {
	Backend Backend
	// Keys, when not empty, are the accepted publish keys.
	Keys []string
	// MaxFrameBytes is the largest binary frame accepted; default 1 MiB.
	MaxFrameBytes int64
	// IdleTimeout ends a publisher that sends nothing for that long; default 10 s.
	IdleTimeout time.Duration
	// BufferBytes bounds what waits between the socket and the transcoder; default 8 MiB.
	BufferBytes int
	// OverrunTimeout is how long a full buffer may stay full before the
	// publisher is ended; default 5 s.
	OverrunTimeout time.Duration
	// Grace is how long a dropped publisher may resume its session; default 10 s.
	Grace time.Duration
	// FlushTimeout is how long a finished publisher's transcoder may take to
	// flush before it is aborted; default 5 s.
	FlushTimeout time.Duration
	// StatusInterval is the period of status frames; default 1 s.
	StatusInterval time.Duration
	// HeadBytes is how much of the stream start is searched for the video
	// size before starting without it; default 1 MiB.
	HeadBytes int
	// CheckOrigin decides whether a browser request (one with an Origin
	// header) may publish; nil refuses every browser request. The gateway
	// sets web.OriginChecker.
	CheckOrigin func(r *http.Request) bool
	// Viewers, if set, reports a stream's viewer count for status frames.
	Viewers func(stream string) int
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	streams map[string]*stream
	closed  bool
	wg      sync.WaitGroup
}

// stream is one publishing session, which outlives a dropped connection by
// the grace period.
type stream struct {
	name    string
	session string
	out     Output
	pub     *publisher
	grace   *time.Timer
	started time.Time
}

// Start fills in the defaults and checks the settings; call it before
// ServePublish.
func (s *Server) Start() error {
	if s.Backend == nil {
		return errors.New("ingest: no Backend")
	}
	if s.MaxFrameBytes == 0 {
		s.MaxFrameBytes = 1 << 20
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = 10 * time.Second
	}
	if s.BufferBytes == 0 {
		s.BufferBytes = 8 << 20
	}
	if s.OverrunTimeout == 0 {
		s.OverrunTimeout = 5 * time.Second
	}
	if s.Grace == 0 {
		s.Grace = 10 * time.Second
	}
	if s.FlushTimeout == 0 {
		s.FlushTimeout = 5 * time.Second
	}
	if s.StatusInterval == 0 {
		s.StatusInterval = time.Second
	}
	if s.HeadBytes == 0 {
		s.HeadBytes = 1 << 20
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	for _, d := range []time.Duration{s.IdleTimeout, s.OverrunTimeout, s.Grace, s.FlushTimeout, s.StatusInterval} {
		if d < 0 {
			return errors.New("ingest: a timeout or interval is negative")
		}
	}
	if s.MaxFrameBytes < 0 || s.BufferBytes < 0 || s.HeadBytes < 0 {
		return errors.New("ingest: a size is negative")
	}
	s.streams = map[string]*stream{}
	return nil
}

// Live reports whether a stream has a publishing session.
func (s *Server) Live(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[name] != nil
}

// httpError answers a request before any upgrade with a JSON error.
func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}

func (s *Server) keyOK(key string) (status int, ok bool) {
	if len(s.Keys) == 0 {
		return 0, true
	}
	if key == "" {
		return http.StatusUnauthorized, false
	}
	for _, k := range s.Keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			return 0, true
		}
	}
	return http.StatusForbidden, false
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ServePublish runs one publisher of the named stream, which the caller has
// validated. It answers 401/403/409 before upgrading.
func (s *Server) ServePublish(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	if status, ok := s.keyOK(q.Get("key")); !ok {
		code := map[int]string{http.StatusUnauthorized: "key_required", http.StatusForbidden: "key_wrong"}[status]
		httpError(w, status, code, "publishing needs the right key (?key=...)")
		return
	}
	if r.Header.Get("Origin") != "" && (s.CheckOrigin == nil || !s.CheckOrigin(r)) {
		httpError(w, http.StatusForbidden, "origin", "origin not allowed")
		return
	}

	st, old, err := s.claim(name, q.Get("session"))
	if err != nil {
		httpError(w, http.StatusConflict, "busy", err.Error())
		return
	}
	up := websocket.Upgrader{
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 4 << 10,
		CheckOrigin:     func(*http.Request) bool { return true }, // checked above
	}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		s.release(st, nil)
		return
	}
	p := &publisher{
		srv:   s,
		st:    st,
		conn:  conn,
		log:   s.Logger.With("stream", name, "session", st.session),
		out:   make(chan outMsg, 4),
		done:  make(chan struct{}),
		stop:  make(chan struct{}),
		queue: newQueue(s.BufferBytes),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutting down"), time.Now().Add(time.Second))
		conn.Close()
		return
	}
	st.pub = p
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if old != nil {
		old.replaced()
	}
	p.run()
}

// claim reserves the stream for a new publisher, or for one resuming the
// session (returning the connection it replaces, if still there).
func (s *Server) claim(name, session string) (*stream, *publisher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errors.New("server shutting down")
	}
	st := s.streams[name]
	if st == nil {
		st = &stream{name: name, session: newID(), started: time.Now()}
		s.streams[name] = st
		return st, nil, nil
	}
	if session == "" || subtle.ConstantTimeCompare([]byte(session), []byte(st.session)) != 1 {
		return nil, nil, fmt.Errorf("stream %s already has a publisher", name)
	}
	if st.grace != nil {
		st.grace.Stop()
		st.grace = nil
	}
	old := st.pub
	st.pub = nil
	return st, old, nil
}

// release ends a stream's session: its output gets its end, the name is free.
func (s *Server) release(st *stream, p *publisher) {
	s.mu.Lock()
	if p != nil && st.pub != p && st.pub != nil {
		s.mu.Unlock() // a newer connection took over
		return
	}
	if s.streams[st.name] == st {
		delete(s.streams, st.name)
	}
	if st.grace != nil {
		st.grace.Stop()
	}
	out := st.out
	s.mu.Unlock()
	if out != nil {
		out.End()
	}
}

// detach starts the grace period of a stream whose connection dropped.
func (s *Server) detach(st *stream, p *publisher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.pub != p {
		return // replaced
	}
	st.pub = nil
	if s.closed {
		return
	}
	st.grace = time.AfterFunc(s.Grace, func() {
		s.mu.Lock()
		expired := st.pub == nil && s.streams[st.name] == st
		s.mu.Unlock()
		if expired {
			s.release(st, nil)
		}
	})
}

// Close ends every publisher (close 1001) and every stream. Idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var pubs []*publisher
	var streams []*stream
	for _, st := range s.streams {
		streams = append(streams, st)
		if st.pub != nil {
			pubs = append(pubs, st.pub)
		}
	}
	s.mu.Unlock()
	for _, p := range pubs {
		p.shutdown()
	}
	s.wg.Wait()
	for _, st := range streams {
		s.release(st, nil)
	}
}

// outMsg is a frame for the writer goroutine: a status/error text frame,
// and/or a close.
type outMsg struct {
	text      []byte
	closeCode int
	reason    string
}
