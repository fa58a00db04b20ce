// Package chat serves the chat room of each stream over WebSocket: names
// unique in a room, presence with join and leave notices (summaries in a
// big room), renames, history, moderation, and limits on size, rate,
// connections per address and slow readers. A room's members may be spread
// over several gateways: room traffic goes through a Bus, in-process by
// default or over NATS.
//
// Moderation: a connection holding a moderate or publish token for the
// stream (Access), or giving its publish key when publishing is not open
// (Keys), is a moderator: its user object carries "role":"moderator", and
// it may delete messages, ban and unban members, set slow mode and clear
// the history (moderation.go has the rules); anyone else gets error
// forbidden. A token's name claim is its holder's name: it replaces the
// name given to join, and renames are refused (invalid_name). Bans match
// a client address (Server.ClientAddr, behind trusted proxies) or a token
// identity: the token's name claim when it has one, else a hash of the
// token itself (the contract's sub is the stream, which every viewer's
// token shares). Moderators are never banned nor slowed. Moderation holds
// on every gateway: its events travel over the Bus, and a gateway whose
// room is new catches up with the room's bans and slow mode as with its
// history.
//
// Frames are read and written by gorilla/websocket. Each connection has one
// writer goroutine, running only while something waits to be written; it
// hands gorilla the room's events (each encoded once for every member, as a
// websocket.PreparedMessage), its own messages and control frames, and
// sends what gorilla framed with one write (net.Buffers: writev on a TCP
// connection).
package chat

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/livegate/livegate/access"
	"golang.org/x/time/rate"
)

// User is a room member as the protocol shows it.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Role is RoleModerator for a moderator, else empty (absent in JSON).
	Role string `json:"role,omitempty"`
}

// RoleModerator is the Role of a moderator.
const RoleModerator = "moderator"

// Access checks a chat connection's token (access.Policy).
type Access interface {
	// Check checks the request's token (?token= or Authorization: Bearer)
	// for role on stream: its claims, nil when it has none, or the
	// refusal (an *access.Error).
	Check(r *http.Request, stream string, role access.Role) (*access.Claims, error)
}

// KeyChecker knows the publish keys (access.Policy): the holder of a
// stream's publish key moderates its room.
type KeyChecker interface {
	// Open reports whether publishing is open (no keys, no token secret):
	// a key then proves nothing.
	Open() bool
	// Publish checks a publisher of stream by the request's key (or
	// token): nil, or the refusal (an *access.Error).
	Publish(r *http.Request, stream string) (private bool, err error)
}

// Limiter bounds the connections of one client address (access.ConnLimit).
type Limiter interface {
	// Acquire takes a slot of addr; release gives it back.
	Acquire(addr string) (release func(), ok bool)
}

// Server serves chat rooms. Set the fields, call Start, route requests to
// ServeRoom. Whoever calls Start must call Close.
type Server struct {
	// Bus carries room traffic between gateways; default NewLocalBus().
	Bus Bus
	// MaxTextRunes is the longest message text; default 500.
	MaxTextRunes int
	// MaxFrameBytes is the largest message a client may send (bigger: an
	// error too_long, then close 1009); default 4096.
	MaxFrameBytes int64
	// HistorySize is how many recent messages a newcomer gets; default 50.
	HistorySize int
	// WelcomeUsers bounds the online list in a welcome (the newcomer first;
	// count stays exact): a full list for every newcomer of a room of
	// thousands would cost the square of its size; default 1000. The
	// others listed are a sample of the room, encoded once and kept while
	// none of them leaves or is renamed.
	WelcomeUsers int
	// RatePerSecond and Burst bound each connection's messages and renames
	// (token bucket); defaults 5 and 10.
	RatePerSecond float64
	Burst         int
	// MaxViolations is how many errors in a row (rate limit, bad input)
	// a connection may cause before it is closed with 1008; default 20.
	MaxViolations int
	// SendQueue is how many writes may wait for one slow reader before it
	// is dropped: a flush of its room's events (however many), a message
	// of its own, a ping or pong each count one, and what waits together
	// is written together; default 256. WriteTimeout also drops a reader
	// whose socket takes no byte for that long.
	SendQueue int
	// PresenceLimit is the largest room whose members get a join or leave
	// event for each member; a bigger room gets instead one presence
	// summary per flush that has any ({"type":"presence","count":N,
	// "joined":J,"left":L,"joined_users":[...],"left_users":[...]}, naming
	// the first few; a room that shrinks to the limit gets the summary of
	// what came before its next event at once). Notices for each member
	// cost the square of a room's size as it fills (5,000 joins send 12.5
	// million of them), and beyond a couple of hundred names they say
	// little: the chat panel lists 200. Default 200.
	PresenceLimit int
	// PingInterval is the keepalive period (a connection silent for two is
	// dropped); default 30 s. WriteTimeout bounds each write; default 10 s.
	PingInterval time.Duration
	WriteTimeout time.Duration
	// FlushInterval is the least time between two writes of a room's
	// traffic to a member: events closer together are written together
	// (the first after a quiet interval at once), so a busy room costs one
	// system call per member per interval, not per event. It is the most
	// an event waits for that; default 150 ms, negative: every event is
	// written at once.
	FlushInterval time.Duration
	// FlushPerConn scales that wait down while the gateway is lightly
	// used: a room waits min(FlushInterval, connections on this gateway ×
	// FlushPerConn) between flushes, so that all rooms together make at
	// most about one write per FlushPerConn (default 15 µs: 66,000 a
	// second, FlushInterval from 10,000 connections), and a gateway with
	// few connections writes almost at once. Negative: no wait from it,
	// every event is written at once.
	FlushPerConn time.Duration
	// CheckOrigin decides whether a browser request (one with an Origin
	// header) may join; nil refuses every browser request. The gateway sets
	// web.OriginChecker.
	CheckOrigin func(r *http.Request) bool
	// Access checks tokens: a moderate or publish token for the stream
	// makes a moderator, a token's name claim fixes its holder's name, and
	// a wrong token is refused before the upgrade. nil: tokens are
	// ignored, nobody moderates by token.
	Access Access
	// Keys, if set, makes the holder of the stream's publish key (?key=)
	// a moderator (the broadcaster without tokens); a wrong key is
	// refused before the upgrade. Ignored while publishing is open.
	Keys KeyChecker
	// Conns, if set, bounds the connections of one client address (the
	// gateway shares one with ingest): beyond it, 429 before the upgrade.
	Conns Limiter
	// ClientAddr is a request's client address (for Conns and bans);
	// default the connection's peer address.
	ClientAddr func(r *http.Request) string
	// MaxBans bounds the bans a room keeps; a ban beyond it replaces the
	// one that would end first. Default 1000.
	MaxBans int
	// MaxBan is the longest ban; a ban asked for longer, or for 0 (24
	// hours) when this is shorter, lasts MaxBan. Default 7 days.
	MaxBan time.Duration
	// MaxSlow is the longest slow-mode interval a moderator may set;
	// default 1 hour.
	MaxSlow time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	upgrader websocket.Upgrader
	mu       sync.Mutex
	rooms    map[string]*room
	conns    map[*member]struct{} // every connection, joined or not
	nconns   atomic.Int64         // len(conns), read without s.mu
	closed   bool
	wg       sync.WaitGroup // the connections' goroutines and the keepalive
	stop     chan struct{}
}

// Start fills in defaults, checks the settings and starts the keepalive.
func (s *Server) Start() error {
	if s.Bus == nil {
		s.Bus = NewLocalBus()
	}
	if s.MaxTextRunes == 0 {
		s.MaxTextRunes = 500
	}
	if s.MaxFrameBytes == 0 {
		s.MaxFrameBytes = 4096
	}
	if s.HistorySize == 0 {
		s.HistorySize = 50
	}
	if s.WelcomeUsers == 0 {
		s.WelcomeUsers = 1000
	}
	if s.RatePerSecond == 0 {
		s.RatePerSecond = 5
	}
	if s.Burst == 0 {
		s.Burst = 10
	}
	if s.MaxViolations == 0 {
		s.MaxViolations = 20
	}
	if s.SendQueue == 0 {
		s.SendQueue = 256
	}
	if s.PresenceLimit == 0 {
		s.PresenceLimit = 200
	}
	if s.PingInterval == 0 {
		s.PingInterval = 30 * time.Second
	}
	if s.WriteTimeout == 0 {
		s.WriteTimeout = 10 * time.Second
	}
	if s.FlushInterval == 0 {
		s.FlushInterval = 150 * time.Millisecond
	}
	if s.FlushPerConn == 0 {
		s.FlushPerConn = 15 * time.Microsecond
	}
	if s.MaxBans == 0 {
		s.MaxBans = 1000
	}
	if s.MaxBan == 0 {
		s.MaxBan = 7 * 24 * time.Hour
	}
	if s.MaxSlow == 0 {
		s.MaxSlow = time.Hour
	}
	if s.ClientAddr == nil {
		s.ClientAddr = func(r *http.Request) string {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				return r.RemoteAddr
			}
			return host
		}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"MaxTextRunes", s.MaxTextRunes > 0}, {"MaxFrameBytes", s.MaxFrameBytes >= 256},
		{"HistorySize", s.HistorySize >= 0}, {"WelcomeUsers", s.WelcomeUsers > 0}, {"RatePerSecond", s.RatePerSecond > 0},
		{"Burst", s.Burst > 0}, {"MaxViolations", s.MaxViolations > 0}, {"SendQueue", s.SendQueue > 0},
		{"PresenceLimit", s.PresenceLimit > 0},
		{"PingInterval", s.PingInterval > 0}, {"WriteTimeout", s.WriteTimeout > 0},
		{"MaxBans", s.MaxBans > 0}, {"MaxBan", s.MaxBan >= time.Second}, {"MaxSlow", s.MaxSlow >= time.Second},
	} {
		if !c.ok {
			return fmt.Errorf("chat: %s: out of range", c.name)
		}
	}
	s.upgrader = websocket.Upgrader{
		// ReadBufferSize 0: gorilla reads through the reader our hijack
		// hands it (readBufferSize). Its write buffer serves only a
		// member's own messages, briefly: from a pool, so no idle
		// connection keeps one.
		WriteBufferSize: 1024,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     s.originOK,
	}
	s.rooms = map[string]*room{}
	s.conns = map[*member]struct{}{}
	s.stop = make(chan struct{})
	if err := s.Bus.Start(handler{s}); err != nil {
		return fmt.Errorf("chat: start bus: %w", err)
	}
	s.wg.Add(1)
	go s.keepalive()
	return nil
}

func (s *Server) originOK(r *http.Request) bool {
	if r.Header.Get("Origin") == "" {
		return true // not a browser
	}
	return s.CheckOrigin != nil && s.CheckOrigin(r)
}

// flushWait is the least time between two flushes of a room now (see
// FlushInterval and FlushPerConn); not positive: at once.
func (s *Server) flushWait() time.Duration {
	return min(s.FlushInterval, time.Duration(s.nconns.Load())*s.FlushPerConn)
}

// Close closes every connection with 1001 and stops the bus. Idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed || s.stop == nil {
		s.closed = true
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	members := s.connections()
	for _, r := range s.rooms {
		r.mu.Lock()
		r.flush() // what waits goes out before the close frames
		r.mu.Unlock()
	}
	s.mu.Unlock()
	for _, m := range members {
		m.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	s.wg.Wait()
	s.Bus.Close()
}

// connections lists every connection. Called with s.mu held.
func (s *Server) connections() []*member {
	out := make([]*member, 0, len(s.conns))
	for m := range s.conns {
		out = append(out, m)
	}
	return out
}

// Users is the number of members of a room, on every gateway.
func (s *Server) Users(name string) int {
	s.mu.Lock()
	r := s.rooms[name]
	s.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.count()
}

// room returns the named room, creating it.
func (s *Server) room(name string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	if r == nil {
		r = newRoom(s, name)
		s.rooms[name] = r
	}
	return r
}

// dropIfEmpty frees a room nobody is in, unless it holds bans in force or
// slow mode (which outlive its members). Whoever holds a freed room gets
// false or errRoomFreed from it and asks for the room again.
func (s *Server) dropIfEmpty(r *room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.rooms[r.name] == r && len(r.users) == 0 && !r.moderated(time.Now()) {
		delete(s.rooms, r.name)
		r.freed = true
	}
}

// ServeRoom upgrades the request and runs one member of the room, whose
// name the caller has validated. Every refusal comes before the upgrade,
// with a JSON body {"error":"<code>","message":"..."}: 403 origin, 401/403
// for a wrong token or key (Access, Keys), 429 too_many_connections
// (Conns), 503 shutdown. It returns once the connection is upgraded: the
// member runs in a goroutine of the Server (Close waits for it), so the
// HTTP server's buffers and request are freed while the connection lasts.
func (s *Server) ServeRoom(w http.ResponseWriter, r *http.Request, room string) {
	s.mu.Lock()
	closed := s.closed || s.stop == nil
	s.mu.Unlock()
	if closed {
		s.refuse(w, r, room, errShutdown)
		return
	}
	if !s.originOK(r) {
		s.refuse(w, r, room, errOrigin)
		return
	}
	who, err := s.identify(r, room)
	if err != nil {
		s.refuse(w, r, room, err)
		return
	}
	addr := s.ClientAddr(r)
	release := func() {}
	if s.Conns != nil {
		var ok bool
		if release, ok = s.Conns.Acquire(addr); !ok {
			s.refuse(w, r, room, access.ErrTooManyConnections)
			return
		}
	}
	h := &hijacker{ResponseWriter: w}
	conn, err := s.upgrader.Upgrade(h, r, nil)
	if err != nil {
		release()
		return // the upgrader answered
	}
	m := &member{srv: s, conn: conn, nc: h.nc, roomName: room, mod: who.mod, nameClaim: who.name,
		addr: addr, subject: who.subject, expires: who.expires, release: release,
		lim: rate.NewLimiter(rate.Limit(s.RatePerSecond), s.Burst)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"),
			time.Now().Add(s.WriteTimeout))
		conn.Close()
		release()
		return
	}
	s.conns[m] = struct{}{}
	s.nconns.Add(1)
	s.wg.Add(1) // under s.mu and before closed is set: never after Close's Wait began
	s.mu.Unlock()
	go m.serve() // serve calls s.wg.Done
}

// Refusals of ServeRoom besides the token's and key's.
var (
	errShutdown = &access.Error{Status: http.StatusServiceUnavailable, Code: "shutdown", Message: "server shutting down"}
	errOrigin   = &access.Error{Status: http.StatusForbidden, Code: "origin", Message: "origin not allowed"}
)

// refuse answers a refusal (an *access.Error) before the upgrade with the
// contract's JSON body, and logs it (never the request's token or key).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, room string, err error) {
	var e *access.Error
	if !errors.As(err, &e) {
		e = access.ErrTokenInvalid
	}
	if e != errShutdown {
		s.Logger.Info("chat refused", "room", room, "client", s.ClientAddr(r), "status", e.Status, "code", e.Code)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(map[string]string{"error": e.Code, "message": e.Message})
}

// identity is what a chat connection's token or key makes it.
type identity struct {
	mod     bool      // a moderator
	name    string    // the name it must use; "" for any
	subject string    // its token identity for bans (see Member.Subject)
	expires time.Time // when its moderator token expires; zero: never
}

// identify reads a connection's token and key: what it is, or the refusal
// of a wrong one.
func (s *Server) identify(r *http.Request, room string) (identity, error) {
	var id identity
	if token := access.FromRequest(r); token != "" && s.Access != nil {
		c, err := s.Access.Check(r, room, access.View)
		if err != nil {
			return id, err
		}
		if c != nil {
			id.name = strings.TrimSpace(c.Name)
			id.subject = tokenSubject(token, c)
			if c.For(room, access.Moderate) {
				id.mod, id.expires = true, c.Expires
			}
		}
	}
	if key := r.URL.Query().Get("key"); key != "" && s.Keys != nil && !s.Keys.Open() {
		// the key alone: a token was checked above
		kr := &http.Request{Method: http.MethodGet, URL: &url.URL{RawQuery: url.Values{"key": {key}}.Encode()}, Header: http.Header{}}
		if _, err := s.Keys.Publish(kr, room); err != nil {
			return id, err
		}
		id.mod, id.expires = true, time.Time{}
	}
	return id, nil
}

// tokenSubject is the identity a ban of a token's holder matches: its name
// claim, or else the token itself (a hash of it: tokens are never kept).
func tokenSubject(token string, c *access.Claims) string {
	if name := strings.TrimSpace(c.Name); name != "" {
		return "name:" + name
	}
	sum := sha256.Sum256([]byte(token))
	return "token:" + hex.EncodeToString(sum[:16])
}

// readBufferSize is each connection's read buffer. Client frames are small
// (a join, a message of at most MaxTextRunes) and rare (rate-limited); a
// bigger one is read with a few more system calls. gorilla/websocket takes
// a hijacked reader of more than 256 bytes as its own.
const readBufferSize = 512

// hijacker hands gorilla/websocket the connection wrapped in a flushConn
// (nc), through which the member's writer sends every frame, and a read
// buffer of readBufferSize instead of net/http's 4 KiB one.
type hijacker struct {
	http.ResponseWriter
	nc *flushConn
}

// Hijack hijacks the connection, wraps it and replaces its reader.
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("chat: response does not implement http.Hijacker")
	}
	c, brw, err := hj.Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return c, brw, err // gorilla refuses a client that sent data early
	}
	h.nc = &flushConn{Conn: c}
	return h.nc, bufio.NewReadWriter(bufio.NewReaderSize(h.nc, readBufferSize), brw.Writer), nil
}

// Unwrap gives http.ResponseController the original writer.
func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// keepalive pings every connection, joined or not, each PingInterval, and
// forgets the bans that have ended.
func (s *Server) keepalive() {
	defer s.wg.Done()
	t := time.NewTicker(s.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		members := s.connections()
		rooms := make([]*room, 0, len(s.rooms))
		for _, r := range s.rooms {
			rooms = append(rooms, r)
		}
		s.mu.Unlock()
		for _, m := range members {
			m.send(outItem{ctl: websocket.PingMessage})
		}
		for _, r := range rooms { // bans end; rooms left with nothing go
			r.mu.Lock()
			r.expireBans(time.Now())
			r.mu.Unlock()
			s.dropIfEmpty(r)
		}
	}
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// validName trims a name and checks it: 1-32 runes, no control characters.
func validName(raw string) (string, bool) {
	name := strings.TrimSpace(raw)
	n := utf8.RuneCountInString(name)
	if n < 1 || n > 32 || !utf8.ValidString(name) {
		return "", false
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", false
		}
	}
	return name, true
}

// Errors of a room.
var (
	// errNameTaken: another member of the room has the name (ignoring case).
	errNameTaken = errors.New("name taken")
	// errRoomFreed: the room was freed (empty) before the call: ask the
	// Server for the room again.
	errRoomFreed = errors.New("room freed")
)

// frame encodes a server event.
func frame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("chat: encode %T: %v", v, err)) // only our own types are encoded
	}
	return b
}

type errorEvent struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Wait is, for slow_mode, the seconds until the member may send again
	// (rounded up).
	Wait int `json:"wait,omitempty"`
}

type messageEvent struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	User User   `json:"user"`
	Text string `json:"text"`
	TS   string `json:"ts"`
}

type presenceEvent struct {
	Type  string `json:"type"`
	User  User   `json:"user"`
	Count int    `json:"count"`
}

// presenceSummary is what a room over PresenceLimit gets instead of join
// and leave events: at most one a flush.
type presenceSummary struct {
	Type        string `json:"type"` // "presence"
	Count       int    `json:"count"`
	Joined      int    `json:"joined"` // since the last summary
	Left        int    `json:"left"`
	JoinedUsers []User `json:"joined_users,omitempty"` // the first presenceNames of them
	LeftUsers   []User `json:"left_users,omitempty"`
}

type nickEvent struct {
	Type string `json:"type"`
	User User   `json:"user"`
	Old  string `json:"old"`
}
