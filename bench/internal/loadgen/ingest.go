package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ingestWriteTimeout bounds every frame a publisher writes.
const ingestWriteTimeout = 5 * time.Second

// Ingest is a publisher's WebSocket to a gateway's /ingest/{stream}: it
// sends the container bytes and records the server's status and error
// frames. Whoever calls DialIngest must call Close.
type Ingest struct {
	conn   *websocket.Conn
	done   chan struct{} // closed when the reader ends
	closed sync.Once

	mu sync.Mutex
	st IngestStatus
}

// IngestStatus is what the server told a publisher so far.
type IngestStatus struct {
	State     string    // the last status frame's state
	Live      time.Time // first status with state "live"
	Speeds    []float64 // every speed reported while live
	LastError string    // the last error frame, "code: message"
	CloseCode int       // the server's close code, 0 if none seen
	CloseText string    // and its text
}

// DialIngest opens the publishing WebSocket at url (ws://.../ingest/NAME),
// which must be a loopback address.
func DialIngest(ctx context.Context, url string) (*Ingest, error) {
	if _, err := CheckURL(url, "ws"); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	nd := &net.Dialer{Timeout: 5 * time.Second, Control: LoopbackOnly}
	d := websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("ingest: dial %s: %w (HTTP %d)", url, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("ingest: dial %s: %w", url, err)
	}
	in := &Ingest{conn: conn, done: make(chan struct{})}
	go in.read()
	return in, nil
}

// read records the server's status and error frames and its close frame
// until the connection ends.
func (in *Ingest) read() {
	defer close(in.done)
	for {
		_, msg, err := in.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				in.mu.Lock()
				in.st.CloseCode, in.st.CloseText = ce.Code, ce.Text
				in.mu.Unlock()
			}
			return
		}
		var m struct {
			Type    string  `json:"type"`
			State   string  `json:"state"`
			Speed   float64 `json:"speed"`
			Code    string  `json:"code"`
			Message string  `json:"message"`
		}
		if json.Unmarshal(msg, &m) != nil {
			continue
		}
		in.mu.Lock()
		switch m.Type {
		case "status":
			in.st.State = m.State
			if m.State == "live" {
				if in.st.Live.IsZero() {
					in.st.Live = time.Now()
				}
				if m.Speed > 0 {
					in.st.Speeds = append(in.st.Speeds, m.Speed)
				}
			}
		case "error":
			in.st.LastError = m.Code + ": " + m.Message
		}
		in.mu.Unlock()
	}
}

// Hello sends the contract's optional first text frame, with the capture
// clock livegate reads: the wall time of the media's time zero.
func (in *Ingest) Hello(mime string, zero time.Time) error {
	b, _ := json.Marshal(map[string]any{"type": "hello", "mime": mime, "clock": zero.UnixMilli()})
	in.conn.SetWriteDeadline(time.Now().Add(ingestWriteTimeout))
	if err := in.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("ingest: hello: %w", err)
	}
	return nil
}

// Send writes b as one binary frame, within 5 s.
func (in *Ingest) Send(b []byte) error {
	select {
	case <-in.done:
		return errors.New("ingest: send: the server closed the connection")
	default:
	}
	in.conn.SetWriteDeadline(time.Now().Add(ingestWriteTimeout))
	if err := in.conn.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return fmt.Errorf("ingest: send: %w", err)
	}
	return nil
}

// Close ends publishing with close code 1000 and waits (up to 3 s) for the
// server to close too. Safe to call more than once.
func (in *Ingest) Close() {
	in.closed.Do(func() {
		in.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), time.Now().Add(time.Second))
		select {
		case <-in.done:
		case <-time.After(3 * time.Second):
		}
		in.conn.Close()
		<-in.done
	})
}

// Status returns a copy of what the server reported so far.
func (in *Ingest) Status() IngestStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := in.st
	st.Speeds = slices.Clone(st.Speeds)
	return st
}

// Pump copies r to send in chunks gathered over every, as a MediaRecorder
// timeslice delivers them, until r ends (nil at io.EOF) or ctx does (its
// error). Each chunk is sent whole or not at all.
func Pump(ctx context.Context, r io.Reader, every time.Duration, send func([]byte) error) error {
	type read struct {
		b   []byte
		err error
	}
	reads := make(chan read)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			buf := make([]byte, 64<<10)
			n, err := r.Read(buf)
			select {
			case reads <- read{buf[:n], err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var pending []byte
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := send(pending)
		pending = nil
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rd := <-reads:
			pending = append(pending, rd.b...)
			if rd.err != nil {
				err := flush()
				if err == nil && !errors.Is(rd.err, io.EOF) {
					err = rd.err
				}
				return err
			}
		case <-tick.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
