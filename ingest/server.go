// Package ingest receives publishers: the /ingest/{stream} WebSocket of the
// contract. It checks the key, keeps one publisher per stream, recognises the
// container, buffers the bytes (bounded) into a transcoder run, reports
// status, and lets a dropped publisher resume its session within a grace
// period.
//
// With a Directory (several gateways), a stream name is claimed across the
// gateways before the upgrade, a publisher may resume on this gateway a
// session that another one held (the output then continues that stream),
// a session that another gateway takes over ends here, and Close hands
// every session off (close 1012 "restart") for the publishers to resume on
// another gateway instead of ending the streams.
package ingest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/livegate/livegate/access"
)

// Backend makes the media pipeline of streams (package stream).
type Backend interface {
	// Open prepares the output (HLS) of a stream that starts publishing;
	// a private stream is served only to holders of a view token. resume,
	// when not nil, is what the gateway that held the session before left:
	// the output continues that stream.
	Open(stream string, private bool, resume *Resume) (Output, error)
}

// Resume is what another gateway left of a session taken over here.
type Resume struct {
	// State is that gateway's Output.State or Output.Handoff, opaque
	// here; nil when its output had none.
	State []byte
	// Exact is false when State may lag behind what that output made (it
	// was not handed off: that gateway died, or the publisher came here
	// while it still ran): the new output leaves room.
	Exact bool
}

// Directory reserves stream names across gateways (package cluster).
type Directory interface {
	// Claim reserves a stream for a new session, or takes over the
	// session another gateway holds when req.Resume names it. A refusal
	// is an *access.Error (409 busy, 503 when the directory is
	// unreachable).
	Claim(ctx context.Context, req ClaimRequest) (Claim, error)
}

// ClaimRequest asks a Directory for a stream.
type ClaimRequest struct {
	Stream string
	// Session is the new session's id, used when the stream is free.
	Session string
	// Resume is the session the publisher asks to resume (?session=), ""
	// for none.
	Resume  string
	Private bool
	// Lost is called once, on a goroutine of the Directory, when another
	// gateway has taken the stream: the session must end here. It must
	// not block.
	Lost func()
}

// Claim is a stream reserved for a session on this gateway.
type Claim interface {
	// Session is the session's id: ClaimRequest.Session, or the one taken
	// over.
	Session() string
	// Resume is what the gateway that held the session left, for
	// Backend.Open; nil for a new stream.
	Resume() *Resume
	// Follow gives the claim the output's State, which the directory
	// keeps current for a gateway that may take the session over.
	Follow(state func() []byte)
	// Stopping says the session is about to be handed off: a publisher
	// resuming it on another gateway waits for Handoff.
	Stopping()
	// Handoff keeps the session, with the output's final state, for
	// another gateway to take over within its grace period, and lets go
	// of it here.
	Handoff(state []byte)
	// Release frees the name: the session ended. Idempotent.
	Release()
}

// Authorizer checks a publisher before the upgrade (access.Policy).
type Authorizer interface {
	// Publish returns whether the stream is to be private, or the
	// refusal, an *access.Error.
	Publish(r *http.Request, stream string) (private bool, err error)
}

// Limiter bounds the connections of one client address (access.ConnLimit).
type Limiter interface {
	// Acquire takes a slot of addr; release gives it back.
	Acquire(addr string) (release func(), ok bool)
}

// Output is the HLS output of one stream, across publisher reconnects.
type Output interface {
	// Transcode starts a transcoder run for one publisher connection.
	Transcode(c Container, width, height int) (Run, error)
	// Live reports whether the first segments exist.
	Live() bool
	// Speed is media time produced per wall time over the last seconds.
	Speed() float64
	// End finishes the playlists (#EXT-X-ENDLIST). Called once, unless
	// Handoff is.
	End()
	// State is where the output stands, for another gateway to continue
	// it (opaque here); nil before it has segments.
	State() []byte
	// Handoff ends the output for another gateway to continue it, instead
	// of End: the playlists are not finished. It returns the final State.
	// Called once, after the last run ended.
	Handoff() []byte
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

// Captured is implemented by a Run that dates its media by the publisher's
// capture clock (package stream's runs do).
type Captured interface {
	// CaptureStart tells the wall time, on this machine's clock, at which
	// the media time zero of the run's input was captured. It may be
	// called again with a better estimate.
	CaptureStart(t time.Time)
}

// Close codes and error codes of the contract.
const (
	codeUnsupported = websocket.CloseUnsupportedData   // 1003
	codePolicy      = websocket.ClosePolicyViolation   // 1008
	codeTooBig      = websocket.CloseMessageTooBig     // 1009
	codeInternal    = websocket.CloseInternalServerErr // 1011
	codeRestart     = websocket.CloseServiceRestart    // 1012
)

// Server serves publishers. Set the fields, call Start, then route
// requests to ServePublish. Whoever calls Start must call Close.
type Server struct {
	Backend Backend
	// Auth checks publishers; nil: publishing is open.
	Auth Authorizer
	// MaxStreams bounds the streams being published at once, sessions
	// within their grace period counted; 0: no bound.
	MaxStreams int
	// Conns, if set, bounds the connections of one client address.
	Conns Limiter
	// ClientAddr is a request's client address (for Conns); default the
	// connection's peer address.
	ClientAddr func(r *http.Request) string
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
	// ViewerLatency, if set, reports how far behind the publisher a
	// stream's viewers are (their reported latency from camera to screen,
	// seconds) for status frames; ok false when none reported lately.
	ViewerLatency func(stream string) (seconds float64, ok bool)
	// Directory, if set, claims each stream across gateways before the
	// upgrade, and Close hands the sessions off to them (close 1012
	// "restart") instead of ending the streams.
	Directory Directory
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
	private bool
	claim   Claim   // with a Directory, once claimed
	resume  *Resume // what another gateway left, for Backend.Open
	done    bool    // released, handed off or lost: nothing more to do
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
	if s.ClientAddr == nil {
		s.ClientAddr = func(r *http.Request) string { host, _, _ := net.SplitHostPort(r.RemoteAddr); return host }
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

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ServePublish runs one publisher of the named stream, which the caller has
// validated. Every refusal comes before the upgrade: 401/403 (Auth), 429
// (Conns), 409 (the stream has a publisher), 503 (MaxStreams).
func (s *Server) ServePublish(w http.ResponseWriter, r *http.Request, name string) {
	if r.Header.Get("Origin") != "" && (s.CheckOrigin == nil || !s.CheckOrigin(r)) {
		httpError(w, http.StatusForbidden, "origin", "origin not allowed")
		return
	}
	var private bool
	if s.Auth != nil {
		var err error
		if private, err = s.Auth.Publish(r, name); err != nil {
			s.refuse(w, r, name, err)
			return
		}
	}
	if s.Conns != nil {
		release, ok := s.Conns.Acquire(s.ClientAddr(r))
		if !ok {
			s.refuse(w, r, name, access.ErrTooManyConnections)
			return
		}
		defer release()
	}
	st, old, err := s.claim(name, r.URL.Query().Get("session"), private)
	if err != nil {
		s.refuse(w, r, name, err)
		return
	}
	if old == nil && st.pub == nil && st.claim == nil && s.Directory != nil {
		if err := s.claimAcross(r.Context(), st, r.URL.Query().Get("session")); err != nil {
			s.forget(st)
			s.refuse(w, r, name, err)
			return
		}
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

// Refusals of ServePublish besides the Authorizer's.
var (
	errBusy     = &access.Error{Status: http.StatusServiceUnavailable, Code: "busy", Message: "this gateway publishes as many streams as it may"}
	errShutdown = &access.Error{Status: http.StatusServiceUnavailable, Code: "shutdown", Message: "server shutting down"}
)

// refuse answers a refusal (an *access.Error) before the upgrade, and
// logs it (never the request's key or token).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, stream string, err error) {
	var e *access.Error
	if !errors.As(err, &e) {
		e = &access.Error{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
	}
	s.Logger.Info("publisher refused", "stream", stream, "client", s.ClientAddr(r), "status", e.Status, "code", e.Code)
	httpError(w, e.Status, e.Code, e.Message)
}

// claim reserves the stream for a new publisher, or for one resuming the
// session (returning the connection it replaces, if still there).
func (s *Server) claim(name, session string, private bool) (*stream, *publisher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errShutdown
	}
	st := s.streams[name]
	if st == nil {
		if s.MaxStreams > 0 && len(s.streams) >= s.MaxStreams {
			return nil, nil, errBusy
		}
		st = &stream{name: name, session: newID(), started: time.Now(), private: private}
		s.streams[name] = st
		return st, nil, nil
	}
	if session == "" || subtle.ConstantTimeCompare([]byte(session), []byte(st.session)) != 1 {
		return nil, nil, &access.Error{Status: http.StatusConflict, Code: "busy",
			Message: fmt.Sprintf("stream %s already has a publisher", name)}
	}
	if st.grace != nil {
		st.grace.Stop()
		st.grace = nil
	}
	old := st.pub
	st.pub = nil
	return st, old, nil
}

// claimAcross claims a new session's stream in the Directory, or takes
// over there the session the publisher asks to resume.
func (s *Server) claimAcross(ctx context.Context, st *stream, resume string) error {
	c, err := s.Directory.Claim(ctx, ClaimRequest{Stream: st.name, Session: st.session, Resume: resume,
		Private: st.private, Lost: func() { s.lost(st) }})
	if err != nil {
		return err
	}
	s.mu.Lock()
	st.claim, st.session, st.resume = c, c.Session(), c.Resume()
	s.mu.Unlock()
	if st.resume != nil {
		s.Logger.Info("publisher resumes a session of another gateway", "stream", st.name, "exact", st.resume.Exact)
	}
	return nil
}

// forget drops a stream whose claim failed before it had a connection.
func (s *Server) forget(st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[st.name] == st {
		delete(s.streams, st.name)
	}
	st.done = true
}

// release ends a stream's session: its output gets its end, the name is free.
func (s *Server) release(st *stream, p *publisher) {
	s.mu.Lock()
	if p != nil && st.pub != p && st.pub != nil {
		s.mu.Unlock() // a newer connection took over
		return
	}
	out, claim, ok := s.takeOut(st)
	s.mu.Unlock()
	if !ok {
		return
	}
	if out != nil {
		out.End()
	}
	if claim != nil {
		claim.Release()
	}
}

// takeOut marks st done and takes it out of the server, its grace timer
// stopped: its output and claim, or ok false if it was done already.
// Called with s.mu held.
func (s *Server) takeOut(st *stream) (out Output, claim Claim, ok bool) {
	if st.done {
		return nil, nil, false
	}
	st.done = true
	if s.streams[st.name] == st {
		delete(s.streams, st.name)
	}
	if st.grace != nil {
		st.grace.Stop()
	}
	return st.out, st.claim, true
}

// lost ends a session that another gateway took over: its connection (if
// any) closes with 1008 "replaced", and its output ends; the name is the
// other gateway's.
func (s *Server) lost(st *stream) {
	s.mu.Lock()
	if st.done || s.streams[st.name] != st {
		s.mu.Unlock()
		return
	}
	p := st.pub
	s.mu.Unlock()
	s.Logger.Warn("another gateway took the stream over: it ends here", "stream", st.name)
	if p != nil {
		p.end(ending{kind: endLost, close: codePolicy, code: "replaced", reason: "another gateway took this stream over"})
		return // the connection's end releases the stream
	}
	s.release(st, nil)
}

// handoff ends a session on this gateway for another to take it over:
// the output stops without finishing its playlists and the claim keeps
// its final state.
func (s *Server) handoff(st *stream) {
	s.mu.Lock()
	out, claim, ok := s.takeOut(st)
	s.mu.Unlock()
	if !ok {
		return
	}
	var state []byte
	if out != nil {
		state = out.Handoff()
	}
	if claim != nil {
		claim.Handoff(state)
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

// Close ends every publisher and every stream: close 1001 "shutdown" and
// the streams end, or with a Directory close 1012 "restart" and the
// sessions are handed off (Claim.Stopping before the close frames,
// Claim.Handoff once the transcoders stopped). Idempotent.
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
	restart := s.Directory != nil
	if restart {
		var wg sync.WaitGroup
		for _, st := range streams {
			if st.claim != nil {
				wg.Add(1)
				go func() { defer wg.Done(); st.claim.Stopping() }()
			}
		}
		wg.Wait()
	}
	for _, p := range pubs {
		if restart {
			p.restart()
		} else {
			p.shutdown()
		}
	}
	s.wg.Wait()
	for _, st := range streams {
		if restart {
			s.handoff(st)
		} else {
			s.release(st, nil)
		}
	}
}

// outMsg is a frame for the writer goroutine: a status/error text frame,
// and/or a close.
type outMsg struct {
	text      []byte
	closeCode int
	reason    string
}
