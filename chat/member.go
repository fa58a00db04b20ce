package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

// member is one connection. Its reading runs in serve, through
// gorilla/websocket's reader; its writing runs in write, a goroutine
// started only while something waits to be written, so an idle member
// costs one goroutine and a small read buffer. write is the only writer of
// the connection: every frame, the close frames included, goes through it.
type member struct {
	srv      *Server
	conn     *websocket.Conn
	nc       *flushConn // conn's net.Conn
	roomName string
	room     *room
	user     User // set by join, changed by rename (under the room's lock)

	// Who it is, from its token or key and its address (set before serve).
	mod       bool      // a moderator
	nameClaim string    // the name its token makes it use; "" for any
	addr      string    // client address, for bans
	subject   string    // token identity, for bans (see Member.Subject)
	expires   time.Time // its moderator token's expiry; zero: none
	release   func()    // gives back its slot of Server.Conns

	lim        *rate.Limiter // messages, renames and moderation
	lastSaid   time.Time     // its last accepted message, for slow mode (under the room's lock)
	violations int

	// from is where this member's part of its room's unflushed batch
	// begins: it joined after the events before it. Under the room's lock.
	from int

	mu      sync.Mutex
	queue   []outItem      // writes waiting; when closing, a close frame last
	writing bool           // a writer goroutine runs
	closing bool           // a close frame is queued: nothing more is
	closed  bool           // the connection is done for: nothing is written
	writer  sync.WaitGroup // the writer goroutine; Add only under mu while !closed
}

// closeGrace is how long a connection may take to answer our close frame.
const closeGrace = time.Second

// outItem is one write a member owes its client: text messages (a room's
// batch, prepared once for every member), or one message of its own, or a
// control frame.
type outItem struct {
	batch []*event
	parts [][]byte // a message for this member alone, in parts
	ctl   int      // websocket.PingMessage, PongMessage or CloseMessage; 0: none
	data  []byte   // the control frame's payload
}

// text is a message of the member's own.
func text(b []byte) outItem {
	return outItem{parts: [][]byte{b}}
}

// closeItem is a close frame.
func closeItem(code int, reason string) outItem {
	return outItem{ctl: websocket.CloseMessage, data: websocket.FormatCloseMessage(code, reason)}
}

// send queues a write. A member whose queue holds SendQueue writes is
// dropped: its writer has been stuck that long on a full socket.
func (m *member) send(it outItem) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.closing {
		return
	}
	if len(m.queue) >= m.srv.SendQueue && it.ctl != websocket.CloseMessage {
		m.closed = true
		m.queue = nil
		m.nc.Close() // a slow reader never holds the room back
		m.srv.Logger.Debug("chat: slow reader dropped", "room", m.roomName)
		return
	}
	m.queue = append(m.queue, it)
	m.closing = it.ctl == websocket.CloseMessage
	m.startWriter()
}

// kick starts the writer for frames gorilla/websocket wrote itself.
func (m *member) kick() {
	m.mu.Lock()
	if !m.closed {
		m.startWriter()
	}
	m.mu.Unlock()
}

// startWriter starts the writer unless it runs. Called with m.mu held.
func (m *member) startWriter() {
	if !m.writing {
		m.writing = true
		m.writer.Add(1)
		go m.write()
	}
}

// closeWith queues a close frame after what is pending.
func (m *member) closeWith(code int, reason string) {
	m.send(closeItem(code, reason))
}

// write drains the queue, then ends: each round hands what waits to
// gorilla/websocket, which frames it into m.nc, and flushes that with one
// write. After a close frame, the client has closeGrace to answer (serve
// reads and drops what it sends meanwhile).
func (m *member) write() {
	defer m.writer.Done()
	for {
		items, ok := m.take()
		if !ok {
			return
		}
		for i := range items {
			m.encode(&items[i]) // an error here is gorilla's own close, already sent
		}
		if !m.flush(len(items) > 0 && items[len(items)-1].ctl == websocket.CloseMessage) {
			return
		}
	}
}

// take takes the queue for a writer round; false: nothing waits (neither
// in the queue nor in m.nc), the writer ends.
func (m *member) take() ([]outItem, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := m.queue
	m.queue = nil
	if m.closed || len(items) == 0 && !m.nc.pending() {
		m.writing = false
		return nil, false
	}
	return items, true
}

// flush sends what a round framed; false: the writer ends, the connection
// being done for (a failed write, or a close frame sent: its socket closes
// once the client answers, or after closeGrace).
func (m *member) flush(closing bool) bool {
	err := m.nc.flush(m.srv.WriteTimeout)
	if err == nil && !closing {
		return true
	}
	m.mu.Lock()
	m.closed = true
	m.writing = false
	m.queue = nil
	m.mu.Unlock()
	if err != nil {
		m.nc.Close()
	} else {
		m.nc.SetReadDeadline(time.Now().Add(closeGrace))
	}
	return false
}

// encode frames one queued write into m.nc.
func (m *member) encode(it *outItem) error {
	switch {
	case it.batch != nil:
		return m.writeEvents(it.batch)
	case it.parts != nil:
		m.nc.setCopying(true, it.parts)
		defer m.nc.setCopying(false, nil)
		w, err := m.conn.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		for _, p := range it.parts {
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
		return w.Close()
	default:
		return m.conn.WriteControl(it.ctl, it.data, time.Now().Add(m.srv.WriteTimeout))
	}
}

// writeEvents frames a room's events into m.nc. The first member to write
// an event does so with gorilla/websocket's WritePreparedMessage, which
// hands m.nc the event's frame in one Write; that frame is the same for
// every member (a server's, never compressed), so the others take it as
// it is, without going through gorilla's writer frame by frame: a batch
// to thousands of members costs one framing of each event.
func (m *member) writeEvents(evs []*event) error {
	for len(evs) > 0 {
		// the frames there are, at once
		var framed [16][]byte
		n := 0
		for n < len(framed) && n < len(evs) {
			f := evs[n].frame.Load()
			if f == nil {
				break
			}
			framed[n] = *f
			n++
		}
		if n > 0 {
			m.nc.add(framed[:n]...)
			evs = evs[n:]
			continue
		}
		ev := evs[0]
		evs = evs[1:]
		if err := m.conn.WritePreparedMessage(ev.pm); err != nil {
			return err
		}
		// the frame is the header (at most 10 bytes) and the event as it
		// is: anything else (a close frame gorilla wrote meanwhile) is
		// not kept
		if f := m.nc.last(); bytes.HasSuffix(f, ev.data) && len(f)-len(ev.data) <= 10 {
			ev.frame.CompareAndSwap(nil, &f)
		}
	}
	return nil
}

// inbound is any client frame.
type inbound struct {
	Type    string `json:"type"`
	Name    string `json:"name"`    // join, nick
	Text    string `json:"text"`    // message
	ID      string `json:"id"`      // delete: the message
	User    string `json:"user"`    // ban, unban: the user id
	Seconds int    `json:"seconds"` // ban, slow
}

// serve reads the member's messages until the connection ends, then ends
// the member (finish).
func (m *member) serve() {
	var err error
	defer func() { m.finish(err) }()
	m.setup()
	for {
		var typ int
		var r io.Reader
		if typ, r, err = m.conn.NextReader(); err != nil {
			return
		}
		if err = m.receive(typ, r); err != nil {
			return
		}
	}
}

// setup makes m.nc collect the writes and sets the read deadline and the
// control-frame handlers, which queue their answers for the writer.
func (m *member) setup() {
	m.nc.start(m.kick)
	// Compression is never negotiated, so the level only names the frame a
	// prepared message holds: 0 is the one NewPreparedMessage encodes,
	// the connection's default (1) would encode each event a second time.
	m.conn.SetCompressionLevel(0)
	m.extendDeadline()
	m.conn.SetPongHandler(func(string) error { m.extendDeadline(); return nil })
	m.conn.SetPingHandler(func(data string) error {
		m.send(outItem{ctl: websocket.PongMessage, data: []byte(data)})
		return nil
	})
	m.conn.SetCloseHandler(func(code int, _ string) error {
		m.closeWith(code, "") // an answer, unless we closed first
		return nil
	})
}

// receive reads and handles one client message; an error ends the
// connection.
func (m *member) receive(typ int, r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, m.srv.MaxFrameBytes+1))
	if err != nil {
		return err
	}
	if !m.extendDeadline() {
		return nil // closing: messages are read (and dropped) until the client's close
	}
	if int64(len(data)) > m.srv.MaxFrameBytes {
		// the rest of it is skipped by the next read
		m.sendOwn(text(frame(errorEvent{Type: "error", Code: "too_long",
			Message: fmt.Sprintf("frames are at most %d bytes", m.srv.MaxFrameBytes)})))
		m.sendOwn(closeItem(websocket.CloseMessageTooBig, "frame too big"))
		return nil
	}
	if typ != websocket.TextMessage {
		m.violation("bad_request", "frames are JSON text")
		return nil
	}
	var in inbound
	if err := json.Unmarshal(data, &in); err != nil {
		m.violation("bad_request", "bad JSON: "+err.Error())
		return nil
	}
	m.handle(in) // a connection to end is sent a close: the loop reads until the answer
	return nil
}

// finish ends a served connection whose reading failed with err: the
// member leaves its room; a close frame that waits (ours, an answer to the
// client's, or gorilla's on a protocol error) goes out, within
// WriteTimeout; after gorilla's, what the client still sends is read and
// dropped for closeGrace, so that closing the socket on unread bytes (a
// reset) does not discard the close frame before the client reads it;
// then the socket closes, the writer ends, and the Server forgets the
// connection.
func (m *member) finish(err error) {
	s := m.srv
	if m.room != nil {
		m.room.leave(m)
	}
	protocolError := readFailedOnBytes(err)
	m.mu.Lock()
	flush := m.writing && !m.closed && (m.closing || protocolError)
	m.closing = true // nothing more is queued: no writer starts but for flush's
	m.mu.Unlock()
	if flush {
		m.writer.Wait()
	}
	if protocolError {
		m.nc.SetReadDeadline(time.Now().Add(closeGrace))
		io.Copy(io.Discard, m.nc)
	}
	m.mu.Lock()
	m.closed = true // no writer starts after this
	m.mu.Unlock()
	m.nc.Close() // ends a writer blocked on a dead peer
	m.writer.Wait()
	m.release()
	s.mu.Lock()
	delete(s.conns, m)
	s.nconns.Add(-1)
	s.mu.Unlock()
	s.wg.Done()
}

// readFailedOnBytes reports whether a read error is gorilla/websocket's
// judgement of what the client sent (a protocol error, answered with a
// close frame), rather than the client's close, the end of the connection
// or a deadline.
func readFailedOnBytes(err error) bool {
	var ce *websocket.CloseError
	var ne net.Error
	return err != nil && !errors.As(err, &ce) && !errors.As(err, &ne) && !errors.Is(err, io.EOF)
}

// extendDeadline gives the client two ping intervals more to send something,
// unless the connection is closing; it reports whether it did.
func (m *member) extendDeadline() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing || m.closed {
		return false
	}
	m.nc.SetReadDeadline(time.Now().Add(2 * m.srv.PingInterval))
	return true
}

// handle runs one client frame. Messages, renames and moderation, which
// every member receives, share the rate limit.
func (m *member) handle(in inbound) {
	s := m.srv
	if m.room == nil && in.Type != "join" {
		if in.Type == "message" || in.Type == "nick" || isModeration(in.Type) {
			m.violation("not_joined", "send join first")
		} else {
			m.violation("bad_request", fmt.Sprintf("unknown type %q", in.Type))
		}
		return
	}
	switch in.Type {
	case "join":
		if m.room != nil {
			m.violation("bad_request", "already joined")
			return
		}
		name, ok := m.checkName(in.Name, true)
		if !ok {
			return
		}
		for {
			r := s.room(m.roomName)
			r.catchup()
			err := r.join(m, name)
			if errors.Is(err, errRoomFreed) {
				continue // emptied meanwhile: the next join makes it anew
			}
			var banned *banError
			if errors.As(err, &banned) {
				m.sendOwn(text(frame(errorEvent{Type: "error", Code: "banned", Message: banned.Error()})))
				m.sendOwn(closeItem(websocket.ClosePolicyViolation, "banned"))
				return
			}
			if err != nil {
				m.violation("name_taken", "someone here is called "+name)
				return
			}
			m.room = r
			break
		}
	case "nick":
		if !m.allow() {
			return
		}
		m.rename(in.Name)
		return
	case "message":
		if !m.allow() {
			return
		}
		if rest, ok := strings.CutPrefix(in.Text, "/nick "); ok {
			m.rename(rest)
			return
		}
		if strings.TrimSpace(in.Text) == "" {
			m.violation("bad_request", "empty message")
			return
		}
		if utf8.RuneCountInString(in.Text) > s.MaxTextRunes {
			m.violation("too_long", fmt.Sprintf("messages are at most %d characters", s.MaxTextRunes))
			return
		}
		if wait := m.room.say(m, in.Text); wait > 0 {
			secs := int((wait + time.Second - 1) / time.Second)
			m.sendOwn(text(frame(errorEvent{Type: "error", Code: "slow_mode", Wait: secs,
				Message: fmt.Sprintf("slow mode: one message every %d seconds; wait %d more", m.room.slowMode(), secs)})))
			m.strike()
			return
		}
	default:
		if !isModeration(in.Type) {
			m.violation("bad_request", fmt.Sprintf("unknown type %q", in.Type))
			return
		}
		if !m.moderate(in) {
			return
		}
	}
	m.violations = 0
}

// allow takes a token from the member's rate limit, or answers
// rate_limited.
func (m *member) allow() bool {
	if m.lim.Allow() {
		return true
	}
	m.violation("rate_limited", fmt.Sprintf("at most %g messages, renames or commands per second", m.srv.RatePerSecond))
	return false
}

// checkName checks a name to join or rename with; a token's name claim
// replaces the name given to join, and forbids renames. It answers
// invalid_name when the name will not do.
func (m *member) checkName(raw string, joining bool) (string, bool) {
	if m.nameClaim != "" {
		name, ok := validName(m.nameClaim)
		switch {
		case !ok:
			m.violation("invalid_name", "your token's name is not a valid chat name (1 to 32 characters, no control characters): ask for another token")
			return "", false
		case !joining:
			m.violation("invalid_name", fmt.Sprintf("your token names you %q: you cannot rename", name))
			return "", false
		}
		return name, true
	}
	name, ok := validName(raw)
	if !ok {
		m.violation("invalid_name", "names are 1 to 32 characters, no control characters")
		return "", false
	}
	return name, true
}

func (m *member) rename(raw string) {
	name, ok := m.checkName(raw, false)
	if !ok {
		return
	}
	if err := m.room.rename(m, name); errors.Is(err, errNameTaken) {
		m.violation("name_taken", "someone here is called "+name)
		return
	}
	m.violations = 0
}

// violation answers an error; too many in a row close the connection (1008).
func (m *member) violation(code, msg string) {
	m.sendOwn(text(frame(errorEvent{Type: "error", Code: code, Message: msg})))
	m.strike()
}

// strike counts an error the member caused; too many in a row close the
// connection (1008).
func (m *member) strike() {
	m.violations++
	if m.violations > m.srv.MaxViolations {
		m.sendOwn(closeItem(websocket.ClosePolicyViolation, "too many errors"))
	}
}

// sendOwn queues a write for this member alone after the room's events
// that wait for it (see room.broadcast), which it would otherwise overtake.
// Only the member's reading goroutine calls it.
func (m *member) sendOwn(it outItem) {
	r := m.room
	if r == nil {
		m.send(it)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut(m)
	m.send(it)
}
