package chat

import (
	"bufio"
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
)

// member is one connection. Its reading runs in serve; writing runs in a
// goroutine started only while frames wait, so an idle member costs one
// goroutine (with a small stack) and a small read buffer.
type member struct {
	srv      *Server
	conn     *websocket.Conn
	br       *bufio.Reader // conn's read buffer; nil: unknown
	roomName string
	room     *room
	user     User // set by join, changed by rename (under the room's lock)

	tokens     float64
	last       time.Time
	violations int

	// where this member's part of its room's unflushed batch begins (bytes,
	// frames): it joined after the events before it. Under the room's lock.
	from, fromN int

	mu      sync.Mutex
	pending net.Buffers    // frames to write; when closing, a close frame last
	queued  int            // frames in pending
	writing bool           // a writer goroutine runs
	closing bool           // a close frame is queued: nothing more is
	closed  bool           // the connection is done for: nothing is written
	writer  sync.WaitGroup // the writer goroutine; Add only under mu while !closed
}

// closeGrace is how long a connection may take to answer our close frame.
const closeGrace = time.Second

// outFrame is encoded WebSocket frames (frames of them, 0 meaning 1), the
// last one a close frame when close is set.
type outFrame struct {
	data   []byte
	frames int
	close  bool
}

// wsFrame encodes one final, unmasked (server) frame. The writer sends the
// frames of its queue with one writev, so a burst of events costs one
// system call per member, not one per event; and a broadcast frame is
// encoded once for every member.
func wsFrame(op byte, payload []byte) []byte {
	return appendFrame(make([]byte, 0, 10+len(payload)), op, payload)
}

// appendFrame appends the frame wsFrame encodes to b.
func appendFrame(b []byte, op byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|op, byte(n))
	case n < 1<<16:
		b = append(b, 0x80|op, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|op, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, payload...)
}

// Frame opcodes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// send queues frames; a member whose queue is full is dropped.
func (m *member) send(f outFrame) {
	m.mu.Lock()
	if m.closed || m.closing {
		m.mu.Unlock()
		return
	}
	if m.queued >= m.srv.SendQueue && !f.close {
		m.closed = true
		m.pending = nil
		m.mu.Unlock()
		m.conn.Close() // a slow reader never holds the room back
		return
	}
	m.pending = append(m.pending, f.data)
	m.queued += max(f.frames, 1)
	m.closing = f.close
	if !m.writing {
		m.writing = true
		m.writer.Add(1)
		go m.write()
	}
	m.mu.Unlock()
}

func (m *member) sendBytes(b []byte) {
	m.send(outFrame{data: wsFrame(opText, b)})
}

// closeWith queues a close frame after what is pending.
func (m *member) closeWith(code int, reason string) {
	m.send(closeFrame(code, reason))
}

func closeFrame(code int, reason string) outFrame {
	return outFrame{data: wsFrame(opClose, websocket.FormatCloseMessage(code, reason)), close: true}
}

// write drains the queue, then ends. It is the only writer of the
// connection (pings and pongs go through the queue too), but for the close
// frames gorilla/websocket sends itself on a protocol error or a frame over
// the read limit.
func (m *member) write() {
	defer m.writer.Done()
	nc := m.conn.UnderlyingConn()
	for {
		m.mu.Lock()
		batch, closing := m.pending, m.closing // nothing is queued after a close frame
		m.pending, m.queued = nil, 0
		if len(batch) == 0 || m.closed {
			m.writing = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		nc.SetWriteDeadline(time.Now().Add(m.srv.WriteTimeout))
		err := writev(nc, batch)
		if err != nil || closing {
			m.mu.Lock()
			m.closed = true
			m.writing = false
			m.pending = nil
			if err == nil {
				// the client has closeGrace to answer; serve reads until then
				nc.SetReadDeadline(time.Now().Add(closeGrace))
			}
			m.mu.Unlock()
			if err != nil {
				nc.Close()
			}
			return
		}
	}
}

// inbound is any client frame.
type inbound struct {
	Type string `json:"type"`
	Name string `json:"name"`
	Text string `json:"text"`
}

// serve reads the member's frames until the connection ends, then waits for
// its writer and tells the Server it is gone.
//
// An idle member's goroutine is most of its cost, so its stack is kept at
// the runtime's smallest (2 KiB): the runtime grows a stack as deep calls
// need and halves it at a collection only while less than a quarter is in
// use (plus 800 bytes of guard), so a member that ever decoded JSON, or
// that waits deep inside gorilla/websocket's frame reader, idles on 4 or 8
// KiB. So the member waits for input in waitReadable, a few small frames
// deep, answers the keepalive (pings and pongs) itself (control), and
// reads and handles each message on a short-lived goroutine (readOne),
// which it waits for: one goroutine reads at a time, frames are handled in
// order. gorilla's reader, which returns only at a data frame, is entered
// only when one (or a frame it must judge) is next.
func (m *member) serve() {
	defer m.finish()
	m.setup()
	nc := m.conn.UnderlyingConn()
	for {
		if m.br != nil {
			if m.br.Buffered() == 0 {
				waitReadable(nc)
			}
			if m.control() {
				continue
			}
		}
		ok := make(chan bool, 1)
		go func() { ok <- m.readOne() }()
		if !<-ok {
			return
		}
	}
}

// readOne reads and handles one client message; false: the connection
// failed.
func (m *member) readOne() bool {
	typ, r, err := m.conn.NextReader()
	if err != nil {
		return false // gorilla sends 1009 itself for a frame over the read limit
	}
	return m.receive(typ, r)
}

// control handles a ping or pong frame at the front of the read buffer
// (final, masked, at most 125 bytes: anything else is left to gorilla) as
// the handlers set up for gorilla do, and reports whether it did. It may
// wait for the rest of such a frame.
func (m *member) control() bool {
	h, err := m.br.Peek(2)
	if err != nil || h[0] != 0x80|opPing && h[0] != 0x80|opPong || h[1]&0x80 == 0 || h[1]&0x7f > 125 {
		return false
	}
	op, n := h[0]&0xf, int(h[1]&0x7f)
	f, err := m.br.Peek(6 + n)
	if err != nil {
		return false
	}
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = f[6+i] ^ f[2+i%4]
	}
	m.br.Discard(6 + n)
	if op == opPing {
		m.pong(payload)
	} else {
		m.extendDeadline()
	}
	return true
}

// pong answers a ping.
func (m *member) pong(data []byte) {
	m.send(outFrame{data: wsFrame(opPong, data)})
}

// setup sets the read limit, deadline and control-frame handlers.
func (m *member) setup() {
	m.conn.SetReadLimit(m.srv.MaxFrameBytes)
	m.extendDeadline()
	m.conn.SetPongHandler(func(string) error { m.extendDeadline(); return nil })
	m.conn.SetPingHandler(func(data string) error { m.pong([]byte(data)); return nil })
	m.conn.SetCloseHandler(func(code int, _ string) error {
		m.closeWith(websocket.CloseNormalClosure, "")
		return nil
	})
}

// receive reads and handles one client frame; false: the connection failed.
func (m *member) receive(typ int, r io.Reader) bool {
	data, err := io.ReadAll(r)
	if err != nil {
		return false
	}
	if !m.extendDeadline() {
		return true // closing: frames are read (and dropped) until the client's close
	}
	if typ != websocket.TextMessage {
		m.violation("bad_request", "frames are JSON text")
		return true
	}
	var in inbound
	if err := json.Unmarshal(data, &in); err != nil {
		m.violation("bad_request", "bad JSON: "+err.Error())
		return true
	}
	m.handle(in) // a connection to end is sent a close: the loop reads until the answer
	return true
}

// finish ends a served connection: the member leaves its room, a queued
// close frame goes out (within WriteTimeout), the writer ends, and the
// Server forgets the connection.
func (m *member) finish() {
	s := m.srv
	if m.room != nil {
		m.room.leave(m)
	}
	m.mu.Lock()
	flush := m.closing && !m.closed
	m.mu.Unlock()
	if flush {
		m.writer.Wait()
	}
	m.mu.Lock()
	m.closed = true // no writer starts after this
	m.mu.Unlock()
	m.conn.Close() // ends a writer blocked on a dead peer
	m.writer.Wait()
	s.mu.Lock()
	delete(s.conns, m)
	s.nconns.Add(-1)
	s.mu.Unlock()
	s.wg.Done()
}

// extendDeadline gives the client two ping intervals more to send something,
// unless the connection is closing; it reports whether it did.
func (m *member) extendDeadline() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing || m.closed {
		return false
	}
	m.conn.SetReadDeadline(time.Now().Add(2 * m.srv.PingInterval))
	return true
}

// handle runs one client frame. Messages and renames, which every member
// receives, share the rate limit.
func (m *member) handle(in inbound) {
	s := m.srv
	if m.room == nil && in.Type != "join" {
		if in.Type == "message" || in.Type == "nick" {
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
		name, ok := validName(in.Name)
		if !ok {
			m.violation("invalid_name", "names are 1 to 32 characters, no control characters")
			return
		}
		for {
			r := s.room(m.roomName)
			r.fillHistory()
			err := r.join(m, name)
			if errors.Is(err, errRoomFreed) {
				continue // emptied meanwhile: the next join makes it anew
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
			m.violation("rate_limited", fmt.Sprintf("at most %g messages or renames per second", s.RatePerSecond))
			return
		}
		m.rename(in.Name)
		return
	case "message":
		if !m.allow() {
			m.violation("rate_limited", fmt.Sprintf("at most %g messages or renames per second", s.RatePerSecond))
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
		m.room.say(m, in.Text)
	default:
		m.violation("bad_request", fmt.Sprintf("unknown type %q", in.Type))
		return
	}
	m.violations = 0
}

func (m *member) rename(raw string) {
	name, ok := validName(raw)
	if !ok {
		m.violation("invalid_name", "names are 1 to 32 characters, no control characters")
		return
	}
	if err := m.room.rename(m, name); errors.Is(err, errNameTaken) {
		m.violation("name_taken", "someone here is called "+name)
		return
	}
	m.violations = 0
}

// allow takes a token from the member's bucket.
func (m *member) allow() bool {
	now := time.Now()
	m.tokens = min(float64(m.srv.Burst), m.tokens+now.Sub(m.last).Seconds()*m.srv.RatePerSecond)
	m.last = now
	if m.tokens < 1 {
		return false
	}
	m.tokens--
	return true
}

// violation answers an error; too many in a row close the connection (1008).
func (m *member) violation(code, msg string) {
	m.sendOwn(outFrame{data: wsFrame(opText, frame(errorEvent{Type: "error", Code: code, Message: msg}))})
	m.violations++
	if m.violations > m.srv.MaxViolations {
		m.sendOwn(closeFrame(websocket.ClosePolicyViolation, "too many errors"))
	}
}

// sendOwn queues a frame for this member alone after the room's events
// that wait for it (see room.broadcast), which it would otherwise overtake.
// Only the member's reading goroutine calls it.
func (m *member) sendOwn(f outFrame) {
	r := m.room
	if r == nil {
		m.send(f)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut(m)
	m.send(f)
}
