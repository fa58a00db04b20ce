package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// publisher is one publisher connection: the reading goroutine (run), a
// writer goroutine for status frames, and a feeder goroutine that drains the
// queue into the transcoder run.
type publisher struct {
	srv   *Server
	st    *stream
	conn  *websocket.Conn
	log   *slog.Logger
	out   chan outMsg
	done  chan struct{} // closed when the connection and its run are finished
	stop  chan struct{} // closed to stop the writer
	queue *queue

	bytes   atomic.Int64
	lagging atomic.Bool
	clock   captureClock // only the reading goroutine uses it

	endOnce sync.Once
	ending  ending
}

// ending says why a connection ends and what happens to its stream.
type ending struct {
	kind   endKind
	close  int    // close code to send, 0 for none
	code   string // contract error code
	reason string
}

type endKind int

const (
	endDrop     endKind = iota // connection lost: the session waits for a resume
	endClean                   // the publisher finished: the stream ends
	endFailed                  // bad input or a failed transcoder: the stream ends
	endReplaced                // a resuming connection took over
	endShutdown                // the server stops
	endRestart                 // the server stops, another gateway is to take the session over
	endLost                    // another gateway took the stream: it ends here
)

// end records the first reason the connection ends and, if it calls for a
// close frame, has the writer send the error and the close.
func (p *publisher) end(e ending) {
	p.endOnce.Do(func() {
		p.ending = e
		if e.close != 0 {
			var text []byte
			if e.code != "" {
				text, _ = json.Marshal(map[string]string{"type": "error", "code": e.code, "message": e.reason})
			}
			select {
			case p.out <- outMsg{text: text, closeCode: e.close, reason: e.code}:
			default:
				p.conn.Close()
			}
		} else {
			p.conn.Close()
		}
	})
}

func (p *publisher) replaced() {
	p.end(ending{kind: endReplaced, close: websocket.ClosePolicyViolation, code: "replaced", reason: "a newer connection resumed this session"})
	<-p.done
}

func (p *publisher) shutdown() {
	p.end(ending{kind: endShutdown, close: websocket.CloseGoingAway, code: "shutdown", reason: "server shutting down"})
}

func (p *publisher) restart() {
	p.end(ending{kind: endRestart, close: codeRestart, code: "restart",
		reason: "the gateway restarts: reconnect with your session to go on through another one"})
}

func (p *publisher) run() {
	defer close(p.done)
	writerDone := make(chan struct{})
	go p.writer(writerDone)
	fed := make(chan struct{})
	run := p.read(fed)
	p.end(ending{kind: endDrop}) // no-op if an ending was recorded
	if p.ending.close != 0 {
		p.drain()
	}
	started := run != nil
	p.queue.close()
	if started {
		// a failed publisher's media is not worth flushing, a restart's
		// goes on elsewhere from where it stops, and a transcoder that does
		// not finish in time is hung
		if p.ending.kind == endFailed || p.ending.kind == endRestart || p.ending.kind == endLost {
			run.Abort()
		}
		select {
		case <-fed:
		case <-time.After(p.srv.FlushTimeout):
			p.log.Warn("transcoder did not finish in time; aborting it")
			run.Abort()
			<-fed
		}
	}
	close(p.stop)
	<-writerDone
	p.conn.Close()

	e := p.ending
	p.log.Info("publisher gone", "why", e.code, "kind", e.kind, "bytes", p.bytes.Load())
	switch e.kind {
	case endClean, endFailed, endLost:
		p.srv.release(p.st, p)
	case endDrop:
		if started {
			p.srv.detach(p.st, p)
		} else {
			p.srv.release(p.st, p)
		}
	}
}

// read reads frames until the connection ends. It returns the transcoder
// run it started, if any (a feeder then runs, closing fed when done).
func (p *publisher) read(fed chan struct{}) (run Run) {
	s := p.srv
	var head []byte
	p.conn.SetPongHandler(func(string) error {
		return p.conn.SetReadDeadline(time.Now().Add(s.IdleTimeout))
	})
	for {
		p.conn.SetReadDeadline(time.Now().Add(s.IdleTimeout))
		typ, r, err := p.conn.NextReader()
		if err != nil {
			p.readError(err)
			return run
		}
		data, err := readFrame(r, s.MaxFrameBytes+1)
		if err != nil {
			p.readError(err)
			return run
		}
		if int64(len(data)) > s.MaxFrameBytes {
			p.end(ending{kind: endFailed, close: codeTooBig, code: "frame_too_big",
				reason: fmt.Sprintf("frames are limited to %d bytes", s.MaxFrameBytes)})
			return run
		}
		if typ == websocket.TextMessage {
			var msg struct {
				Type, Mime string
				Clock      float64 // hello: when media time zero was captured, ms since 1970 on the publisher's clock
				T          float64 // clock: the publisher's clock when it sent the frame, ms since 1970
			}
			err := json.Unmarshal(data, &msg)
			release(data)
			if err != nil {
				continue
			}
			now := time.Now()
			switch msg.Type {
			case "hello":
				p.log.Info("publisher hello", "mime", msg.Mime, "capture_clock", msg.Clock > 0)
				p.clock.hello(msg.Clock, now)
			case "clock":
				p.clock.sample(msg.T, now)
			}
			if t, ok := p.clock.start(); ok && run != nil {
				if c, ok := run.(Captured); ok {
					c.CaptureStart(t)
				}
			}
			continue
		}
		if len(data) == 0 {
			release(data)
			continue
		}
		p.bytes.Add(int64(len(data)))
		if run == nil {
			head = append(head, data...)
			release(data)
			var wait bool
			if run, wait = p.start(head); run == nil {
				if wait {
					continue // need more of the header
				}
				return nil
			}
			if t, ok := p.clock.start(); ok {
				if c, ok := run.(Captured); ok {
					c.CaptureStart(t)
				}
			}
			go p.feed(run, fed)
			data, head = head, nil
		}
		err = p.queue.put(data, s.OverrunTimeout, func(buffered int) {
			p.lagging.Store(true)
			p.log.Warn("publisher outruns the transcoder", "buffered", buffered)
		})
		if errors.Is(err, errOverrun) {
			p.end(ending{kind: endFailed, close: codePolicy, code: "overrun",
				reason: fmt.Sprintf("sending faster than real time: %d bytes waited more than %s", s.BufferBytes, s.OverrunTimeout)})
			return run
		}
		if err != nil {
			return run // the feeder stopped and said why
		}
	}
}

// start looks at the head of the stream and, once it knows the container
// (and the video size, or has looked far enough), starts the transcoder. It
// returns no run and wait=true while it needs more bytes, no run and
// wait=false when it ended the connection.
func (p *publisher) start(head []byte) (run Run, wait bool) {
	s := p.srv
	c, needMore, err := Sniff(head)
	if err == nil && needMore && len(head) > s.HeadBytes {
		err = ErrUnknownContainer
	}
	if err != nil {
		p.end(ending{kind: endFailed, close: codeUnsupported, code: "unsupported_media",
			reason: "expected WebM/Matroska or fragmented MP4: " + err.Error()})
		return nil, false
	}
	if needMore {
		return nil, true
	}
	w, h, needMore, err := VideoSize(c, head)
	if needMore && len(head) < s.HeadBytes {
		return nil, true
	}
	if err != nil || needMore {
		p.log.Warn("video size not found in the header; using the full ladder", "error", err)
		w, h = 0, 0
	}
	p.log.Info("publisher media", "container", c, "width", w, "height", h)
	fail := func(err error) (Run, bool) {
		p.end(ending{kind: endFailed, close: codeInternal, code: "transcoder_failed", reason: err.Error()})
		return nil, false
	}
	s.mu.Lock()
	out := p.st.out
	s.mu.Unlock()
	if out == nil {
		s.mu.Lock()
		resume := p.st.resume
		s.mu.Unlock()
		if out, err = s.Backend.Open(p.st.name, p.st.private, resume); err != nil {
			return fail(err)
		}
		s.mu.Lock()
		p.st.out = out
		claim := p.st.claim
		s.mu.Unlock()
		if claim != nil {
			claim.Follow(out.State)
		}
	}
	if run, err = out.Transcode(c, w, h); err != nil {
		return fail(err)
	}
	return run, false
}

// feed drains the queue into the run, then ends the run's input and waits.
func (p *publisher) feed(run Run, fed chan struct{}) {
	defer close(fed)
	var werr error
	for {
		chunk, ok := p.queue.get()
		if !ok {
			break
		}
		_, werr = run.Write(chunk)
		release(chunk) // written into the pipe: the buffer is free again
		if werr != nil {
			break
		}
	}
	p.queue.close()
	run.CloseInput()
	err := run.Wait()
	if err == nil && werr != nil {
		err = werr
	}
	if err == nil {
		return
	}
	p.log.Warn("transcoder run failed", "error", err)
	if p.st.out.Live() {
		p.end(ending{kind: endFailed, close: codeInternal, code: "transcoder_failed", reason: err.Error()})
	} else {
		p.end(ending{kind: endFailed, close: codeUnsupported, code: "undecodable",
			reason: "the media could not be decoded: " + err.Error()})
	}
}

// frames recycles the buffers that binary frames are read into: a
// buffer goes from the socket through the queue to the transcoder's pipe
// and back. io.ReadAll's new, growing buffer for every frame (about ten a
// second per publisher) cost more than a tenth of the gateway's CPU on a
// live stream, most of it clearing fresh memory and its page faults.
var frames = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// release gives a buffer back to frames. It takes the slice by value: a
// pointer to the caller's variable would follow whatever the caller
// assigns to it next (a queued chunk, written while another frame is
// read into it).
func release(b []byte) { frames.Put(&b) }

// readFrame reads r to its end into a buffer from frames, stopping after
// limit bytes (the caller checks the length).
func readFrame(r io.Reader, limit int64) ([]byte, error) {
	buf := (*frames.Get().(*[]byte))[:0]
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(int64(cap(buf)), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// closeGrace is how long a client may take to answer our close frame.
const closeGrace = time.Second

// drain reads and discards what the client still sends after our close
// frame, until its own close frame, an error or closeGrace: a socket
// closed while the client sends is reset by the kernel, which can discard
// the error and close frames just written to it.
func (p *publisher) drain() {
	p.conn.SetCloseHandler(func(int, string) error { return nil }) // ours is sent
	p.conn.SetReadDeadline(time.Now().Add(closeGrace))
	for {
		if _, _, err := p.conn.NextReader(); err != nil {
			return
		}
	}
}

// readError classifies how reading ended.
func (p *publisher) readError(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure:
		p.end(ending{kind: endClean, code: "ended"})
	case isTimeout(err):
		p.end(ending{kind: endDrop, close: codePolicy, code: "idle",
			reason: fmt.Sprintf("nothing received for %s", p.srv.IdleTimeout)})
	default:
		p.end(ending{kind: endDrop, code: "dropped", reason: err.Error()})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// status is the contract's status frame.
type status struct {
	Type     string  `json:"type"`
	Session  string  `json:"session"`
	State    string  `json:"state"`
	Bytes    int64   `json:"bytes"`
	Speed    float64 `json:"speed"`
	Viewers  int     `json:"viewers"`
	Buffered int     `json:"buffered"`
	Lagging  bool    `json:"lagging"`
	// ViewerLatency is how many seconds the viewers are behind the
	// camera (the median of their reports), absent while none reported.
	ViewerLatency *float64 `json:"viewer_latency,omitempty"`
}

func (p *publisher) status() []byte {
	st := status{Type: "status", Session: p.st.session, State: "starting",
		Bytes: p.bytes.Load(), Buffered: p.queue.buffered()}
	p.srv.mu.Lock()
	out := p.st.out
	p.srv.mu.Unlock()
	if out != nil && out.Live() {
		st.State = "live"
		st.Speed = out.Speed()
	}
	if p.srv.Viewers != nil {
		st.Viewers = p.srv.Viewers(p.st.name)
	}
	if p.srv.ViewerLatency != nil {
		if v, ok := p.srv.ViewerLatency(p.st.name); ok {
			v = math.Round(v*100) / 100
			st.ViewerLatency = &v
		}
	}
	st.Lagging = p.lagging.Load() && st.Buffered > p.srv.BufferBytes/2
	if !st.Lagging {
		p.lagging.Store(false)
	}
	b, _ := json.Marshal(st)
	return b
}

// writer is the only goroutine writing data frames: status on a ticker,
// then the error and close of the ending, if any.
func (p *publisher) writer(done chan struct{}) {
	defer close(done)
	const writeWait = 5 * time.Second
	tick := time.NewTicker(p.srv.StatusInterval)
	defer tick.Stop()
	write := func(b []byte) bool {
		p.conn.SetWriteDeadline(time.Now().Add(writeWait))
		if err := p.conn.WriteMessage(websocket.TextMessage, b); err != nil {
			p.conn.Close()
			return false
		}
		return true
	}
	closeWith := func(m outMsg) {
		if m.text != nil {
			write(m.text)
		}
		p.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(m.closeCode, m.reason), time.Now().Add(writeWait))
		// the client has closeGrace to answer (the reader drains until
		// then), then the connection is cut
		time.AfterFunc(closeGrace, func() { p.conn.Close() })
	}
	if !write(p.status()) {
		return
	}
	for {
		select {
		case m := <-p.out:
			closeWith(m)
			return
		case <-tick.C:
			if !write(p.status()) {
				return
			}
		case <-p.stop:
			select {
			case m := <-p.out: // an ending raced the stop
				closeWith(m)
			default:
			}
			return
		}
	}
}
