package chat

import (
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
// goroutine and a small read buffer.
type member struct {
	srv      *Server
	conn     *websocket.Conn
	roomName string
	room     *room
	user     User // set by join, changed by rename (under the room's lock)

	tokens     float64
	last       time.Time
	violations int

	mu      sync.Mutex
	pending []outFrame
	writing bool
	closed  bool
}

// outFrame is an encoded WebSocket frame, the last one when close is set.
type outFrame struct {
	data  []byte
	close bool
}

// wsFrame encodes one final, unmasked (server) frame. The writer sends the
// frames of its queue with one writev, so a burst of events costs one
// system call per member, not one per event; and a broadcast frame is
// encoded once for every member.
func wsFrame(op byte, payload []byte) []byte {
	n := len(payload)
	var h []byte
	switch {
	case n < 126:
		h = []byte{0x80 | op, byte(n)}
	case n < 1<<16:
		h = []byte{0x80 | op, 126, byte(n >> 8), byte(n)}
	default:
		h = []byte{0x80 | op, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(h, payload...)
}

// Frame opcodes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// send queues a frame; a member whose queue is full is dropped.
func (m *member) send(f outFrame) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	if len(m.pending) >= m.srv.SendQueue && !f.close {
		m.closed = true
		m.mu.Unlock()
		m.conn.Close() // a slow reader never holds the room back
		return
	}
	m.pending = append(m.pending, f)
	if !m.writing {
		m.writing = true
		go m.write()
	}
	m.mu.Unlock()
}

func (m *member) sendBytes(b []byte) {
	m.send(outFrame{data: wsFrame(opText, b)})
}

func (m *member) sendError(code, msg string) {
	m.sendBytes(frame(errorEvent{Type: "error", Code: code, Message: msg}))
}

// closeWith queues a close frame after what is pending.
func (m *member) closeWith(code int, reason string) {
	m.send(outFrame{data: wsFrame(opClose, websocket.FormatCloseMessage(code, reason)), close: true})
}

// write drains the queue, then ends. It is the only writer of the
// connection (pings and pongs go through the queue too).
func (m *member) write() {
	nc := m.conn.UnderlyingConn()
	for {
		m.mu.Lock()
		batch := m.pending
		m.pending = nil
		if len(batch) == 0 || m.closed {
			m.writing = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		bufs := make(net.Buffers, 0, len(batch))
		closing := false
		for _, f := range batch {
			bufs = append(bufs, f.data)
			if closing = f.close; closing {
				break
			}
		}
		nc.SetWriteDeadline(time.Now().Add(m.srv.WriteTimeout))
		_, err := bufs.WriteTo(nc)
		if err != nil || closing {
			m.mu.Lock()
			m.closed = true
			m.writing = false
			m.mu.Unlock()
			if err != nil {
				nc.Close()
			} else {
				time.AfterFunc(time.Second, func() { nc.Close() }) // let the client read the close
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

// serve reads the member's frames until the connection ends.
func (m *member) serve() {
	s := m.srv
	defer func() {
		if m.room != nil {
			m.room.leave(m)
		}
		m.conn.Close()
	}()
	m.conn.SetReadLimit(s.MaxFrameBytes)
	wait := 2 * s.PingInterval
	m.conn.SetReadDeadline(time.Now().Add(wait))
	m.conn.SetPongHandler(func(string) error { return m.conn.SetReadDeadline(time.Now().Add(wait)) })
	m.conn.SetPingHandler(func(data string) error {
		m.send(outFrame{data: wsFrame(opPong, []byte(data))})
		return nil
	})
	m.conn.SetCloseHandler(func(code int, _ string) error {
		m.closeWith(websocket.CloseNormalClosure, "")
		return nil
	})
	for {
		typ, r, err := m.conn.NextReader()
		if err != nil {
			return // gorilla sends 1009 itself for a frame over the read limit
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return
		}
		m.conn.SetReadDeadline(time.Now().Add(wait))
		if typ != websocket.TextMessage {
			m.violation("bad_request", "frames are JSON text")
			continue
		}
		var in inbound
		if err := json.Unmarshal(data, &in); err != nil {
			m.violation("bad_request", "bad JSON: "+err.Error())
			continue
		}
		if m.handle(in) {
			m.flush()
			return
		}
	}
}

// handle runs one client frame; it reports whether the connection must end.
func (m *member) handle(in inbound) (stop bool) {
	s := m.srv
	if m.room == nil && in.Type != "join" {
		if in.Type == "message" || in.Type == "nick" {
			return m.violation("not_joined", "send join first")
		}
		return m.violation("bad_request", fmt.Sprintf("unknown type %q", in.Type))
	}
	switch in.Type {
	case "join":
		if m.room != nil {
			return m.violation("bad_request", "already joined")
		}
		name, ok := validName(in.Name)
		if !ok {
			return m.violation("invalid_name", "names are 1 to 32 characters, no control characters")
		}
		r := s.room(m.roomName)
		if err := r.join(m, name); err != nil {
			return m.violation("name_taken", "someone here is called "+name)
		}
		m.room = r
	case "nick":
		return m.rename(in.Name)
	case "message":
		if !m.allow() {
			return m.violation("rate_limited", fmt.Sprintf("at most %g messages per second", s.RatePerSecond))
		}
		if rest, ok := strings.CutPrefix(in.Text, "/nick "); ok {
			return m.rename(rest)
		}
		if strings.TrimSpace(in.Text) == "" || !utf8.ValidString(in.Text) {
			return m.violation("bad_request", "empty message")
		}
		if utf8.RuneCountInString(in.Text) > s.MaxTextRunes {
			return m.violation("too_long", fmt.Sprintf("messages are at most %d characters", s.MaxTextRunes))
		}
		m.room.say(m, in.Text)
	default:
		return m.violation("bad_request", fmt.Sprintf("unknown type %q", in.Type))
	}
	m.violations = 0
	return false
}

func (m *member) rename(raw string) bool {
	name, ok := validName(raw)
	if !ok {
		return m.violation("invalid_name", "names are 1 to 32 characters, no control characters")
	}
	if err := m.room.rename(m, name); errors.Is(err, errNameTaken) {
		return m.violation("name_taken", "someone here is called "+name)
	}
	m.violations = 0
	return false
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
func (m *member) violation(code, msg string) (stop bool) {
	m.sendError(code, msg)
	m.violations++
	if m.violations > m.srv.MaxViolations {
		m.closeWith(websocket.ClosePolicyViolation, "too many errors")
		return true
	}
	return false
}

// flush waits (up to WriteTimeout) for queued frames, such as a last error
// and a close, to be written.
func (m *member) flush() {
	deadline := time.Now().Add(m.srv.WriteTimeout)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		busy := m.writing
		m.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
