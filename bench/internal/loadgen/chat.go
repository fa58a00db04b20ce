package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Small per-connection buffers keep a client's own memory low (about
// 13 KiB per client with the goroutine stack). chatNetBuf is the socket
// read buffer: when the server falls behind, one read system call takes
// several queued frames, which matters where system calls are slow. Frames
// longer than chatHeadBuf (a welcome with its user list) are read whole
// during the join and only their head afterwards.
const (
	chatNetBuf        = 4096
	chatHeadBuf       = 512
	chatWriteTimeout  = 5 * time.Second
	chatQuietFor      = time.Second // no frames for this long: the room is idle
	chatMaxErrorKinds = 10
	chatStopWait      = 30 * time.Second
	chatMaxWelcome    = 1000 // frames read while waiting for the welcome
)

// ChatRoom is a crowd of clients in one chat room of livegate's
// /chat/{stream} protocol: they join with unique names and read every
// frame; in each rate step the first Senders of them send messages whose
// text carries their send time, so every delivery's latency is measured on
// this machine's clock. Set the fields, call Start, then Connect, and
// RunStep for each step; whoever calls Start must call Close.
type ChatRoom struct {
	// URL is the room, ws://HOST:PORT/chat/NAME; HOST must be loopback.
	URL string
	// Origin, when set, is sent as the Origin header of every upgrade, as a
	// browser would (livegate accepts its own host).
	Origin string
	// Clients is how many clients join; 1 to 1,000,000.
	Clients int
	// Senders is how many of the joined clients send during steps; 0 to
	// Clients.
	Senders int
	// Name is the prefix of the client names NAME0, NAME1...; "c" when
	// empty.
	Name string
	// Steps is how many rate steps will run; 1 when 0. A message names its
	// step, so late deliveries count for the step that sent them.
	Steps int
	// Ramp is the connect rate in clients per second; 500 when 0.
	Ramp float64
	// Pending is the most clients between dial and welcome at once (the
	// ramp slows down to what the server accepts); 100 when 0.
	Pending int
	// JoinTimeout bounds one client's join, dial to welcome; 30 s when 0.
	JoinTimeout time.Duration
	// ConnectMax bounds Connect; 1 min when 0.
	ConnectMax time.Duration
	// Deadline is when every connection stops at the latest: the run's
	// hard stop. Required.
	Deadline time.Time

	dialer   *websocket.Dialer
	header   http.Header
	ctx      context.Context // ends at Close or Deadline
	cancel   context.CancelFunc
	steps    []*chatStepStats
	cur      atomic.Int32 // running step, -1 outside steps
	stopping atomic.Bool
	wg       sync.WaitGroup

	started, connected, failed, open, closes atomic.Int64
	frames, joins, leaves, presence          atomic.Int64
	errFrames                                atomic.Int64
	rateLimited, foreign                     atomic.Int64

	mu     sync.Mutex
	phase  string
	conns  []*websocket.Conn // by client id, set once welcomed
	errs   map[string]int    // error text -> count, at most chatMaxErrorKinds kinds
	others int               // errors beyond chatMaxErrorKinds kinds
}

// chatStepStats are the live counters of one rate step.
type chatStepStats struct {
	sent, sendErrors, rejected atomic.Int64
	delivered                  atomic.Int64
	last                       atomic.Int64 // Unix ns of a recent delivery
	lat                        Histogram
}

// ChatCounts are a room's counters so far.
type ChatCounts struct {
	Started, Connected, Failed int64 // clients
	Open                       int64 // connections reading now
	Frames                     int64 // frames received
	JoinFrames, LeaveFrames    int64
	PresenceFrames             int64 // livegate's summaries of joins and leaves in a big room
	ErrorFrames, RateLimited   int64
	ForeignFrames              int64 // messages not sent by a ChatRoom of this run
	Closes                     int64 // connections that ended before Close
}

// ChatStep is the outcome of one rate step; the JSON names are chatload's
// report fields.
type ChatStep struct {
	Rate            float64 `json:"rate"`
	Seconds         float64 `json:"seconds"`
	Sent            int64   `json:"sent"`
	SendErrors      int64   `json:"send_errors"`
	Rejected        int64   `json:"rejected"`
	Receivers       int64   `json:"receivers"`
	Expected        int64   `json:"expected"`
	Delivered       int64   `json:"delivered"`
	DeliveredRatio  float64 `json:"delivered_ratio"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	P50ms           float64 `json:"p50_ms"`
	P90ms           float64 `json:"p90_ms"`
	P99ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
}

// Start checks the fields, fills in the defaults and prepares the clients.
func (r *ChatRoom) Start() error {
	if _, err := CheckURL(r.URL, "ws", "wss"); err != nil {
		return fmt.Errorf("chat room: %w", err)
	}
	switch {
	case r.Clients < 1 || r.Clients > 1_000_000:
		return fmt.Errorf("chat room: %d clients: want 1 to 1000000", r.Clients)
	case r.Senders < 0 || r.Senders > r.Clients:
		return fmt.Errorf("chat room: %d senders: want 0 to the clients (%d)", r.Senders, r.Clients)
	case r.Steps < 0 || r.Ramp < 0 || r.Pending < 0 || r.JoinTimeout < 0 || r.ConnectMax < 0:
		return errors.New("chat room: negative Steps, Ramp, Pending, JoinTimeout or ConnectMax")
	case r.Deadline.IsZero():
		return errors.New("chat room: no Deadline")
	}
	r.Name = cmp.Or(r.Name, "c")
	r.Steps = cmp.Or(r.Steps, 1)
	r.Ramp = cmp.Or(r.Ramp, 500)
	r.Pending = cmp.Or(r.Pending, 100)
	r.JoinTimeout = cmp.Or(r.JoinTimeout, 30*time.Second)
	r.ConnectMax = cmp.Or(r.ConnectMax, time.Minute)
	r.conns = make([]*websocket.Conn, r.Clients)
	r.errs = map[string]int{}
	r.phase = "start"
	r.cur.Store(-1)
	r.steps = nil
	for range r.Steps {
		r.steps = append(r.steps, &chatStepStats{})
	}
	if r.Origin != "" {
		r.header = http.Header{"Origin": {r.Origin}}
	}
	// A busy server (Node fanning out join broadcasts) may take long to
	// answer the upgrade: the whole join, dial included, gets JoinTimeout.
	nd := &net.Dialer{Timeout: 10 * time.Second, Control: LoopbackOnly}
	r.dialer = &websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: r.JoinTimeout,
		ReadBufferSize:   chatNetBuf,
		WriteBufferSize:  256,
		WriteBufferPool:  &sync.Pool{},
	}
	r.ctx, r.cancel = context.WithDeadline(context.Background(), r.Deadline)
	return nil
}

// Connect starts clients at the ramp rate, with at most Pending of them
// between dial and welcome, then waits until each has joined or failed,
// all within ConnectMax (and ctx).
func (r *ChatRoom) Connect(ctx context.Context) {
	r.setPhase("connect")
	ctx, cancel := context.WithTimeout(ctx, r.ConnectMax)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)()
	interval := time.Duration(float64(time.Second) / r.Ramp)
	pending := make(chan struct{}, r.Pending)
	t := time.NewTimer(time.Hour) // Reset discards a stale tick (Go 1.23+)
	defer t.Stop()
	next := time.Now()
	for i := 0; i < r.Clients; i++ {
		if d := time.Until(next); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case pending <- struct{}{}:
		}
		next = later(next, time.Now()).Add(interval)
		r.started.Add(1)
		r.wg.Add(1)
		go r.client(ctx, i, pending)
	}
	r.waitUntil(ctx, func() bool { return r.connected.Load()+r.failed.Load() >= r.started.Load() }, r.ConnectMax)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Settle waits until no frame has arrived for a second (the join
// broadcasts are over), at most max.
func (r *ChatRoom) Settle(ctx context.Context, max time.Duration) {
	r.setPhase("settle")
	last, quietSince := r.frames.Load(), time.Now()
	r.waitUntil(ctx, func() bool {
		if n := r.frames.Load(); n != last {
			last, quietSince = n, time.Now()
		}
		return time.Since(quietSince) >= chatQuietFor
	}, max)
}

// waitUntil polls cond every 20 ms until it holds, ctx or the room ends, or
// max passes.
func (r *ChatRoom) waitUntil(ctx context.Context, cond func() bool, max time.Duration) bool {
	deadline := time.Now().Add(max)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-r.ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// client joins the room and then reads every frame until the room stops.
func (r *ChatRoom) client(ctx context.Context, id int, pending <-chan struct{}) {
	defer r.wg.Done()
	conn, err := r.join(ctx, id)
	<-pending
	if err != nil {
		r.failed.Add(1)
		r.noteErr("join", err)
		return
	}
	r.connected.Add(1)
	r.readLoop(conn)
}

func (r *ChatRoom) join(ctx context.Context, id int) (*websocket.Conn, error) {
	deadline := time.Now().Add(r.JoinTimeout)
	conn, resp, err := r.dialer.DialContext(ctx, r.URL, r.header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("upgrade: %w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	_ = conn.SetWriteDeadline(time.Now().Add(chatWriteTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","name":"`+r.Name+strconv.Itoa(id)+`"}`)); err != nil {
		return nil, fmt.Errorf("send join: %w", err)
	}
	_ = conn.SetReadDeadline(deadline)
	for range chatMaxWelcome {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("wait for welcome: %w", err)
		}
		r.frames.Add(1)
		switch f := parseFrame(msg); f.kind {
		case frameWelcome:
			_ = conn.SetReadDeadline(r.Deadline)
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.stopping.Load() {
				return nil, errors.New("join: the room is closing")
			}
			r.conns[id] = conn
			ok = true
			return conn, nil
		case frameError:
			return nil, fmt.Errorf("join refused: %s", f.code)
		}
	}
	return nil, fmt.Errorf("join: no welcome in the first %d frames", chatMaxWelcome)
}

// readLoop reads frames until the connection fails or is closed by Close.
func (r *ChatRoom) readLoop(conn *websocket.Conn) {
	r.open.Add(1)
	defer r.open.Add(-1)
	buf := make([]byte, chatHeadBuf)
	for {
		_, rd, err := conn.NextReader()
		if err == nil {
			var n int
			n, err = io.ReadFull(rd, buf)
			switch {
			case err == nil: // longer than buf: its head is enough
				_, err = io.Copy(io.Discard, rd)
			case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
				err = nil
			}
			if err == nil {
				r.handle(buf[:n], time.Now().UnixNano())
				continue
			}
		}
		if !r.stopping.Load() {
			r.closes.Add(1)
			r.noteErr("read", err)
		}
		return
	}
}

func (r *ChatRoom) handle(b []byte, now int64) {
	r.frames.Add(1)
	f := parseFrame(b)
	switch f.kind {
	case frameMessage:
		if f.step < 0 || f.step >= len(r.steps) {
			r.foreign.Add(1)
			return
		}
		s := r.steps[f.step]
		s.delivered.Add(1)
		s.last.Store(now)
		s.lat.Record(time.Duration(now - f.sent))
	case frameForeign:
		r.foreign.Add(1)
	case frameJoin:
		r.joins.Add(1)
	case frameLeave:
		r.leaves.Add(1)
	case framePresence:
		r.presence.Add(1)
	case frameError:
		r.errFrames.Add(1)
		if f.code == "rate_limited" {
			r.rateLimited.Add(1)
		}
		if i := r.cur.Load(); i >= 0 {
			r.steps[i].rejected.Add(1)
		}
	}
}

// senderConns returns the first Senders joined connections.
func (r *ChatRoom) senderConns() []*websocket.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*websocket.Conn
	for _, c := range r.conns {
		if len(out) == r.Senders {
			break
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// RunStep runs step i (0 to Steps-1): the senders send rate messages per
// second in total for d, then it waits up to drain for the deliveries
// every open client should get, and returns what was sent and delivered
// and how late.
func (r *ChatRoom) RunStep(ctx context.Context, i int, rate float64, d, drain time.Duration) ChatStep {
	s := r.steps[i]
	r.setPhase(fmt.Sprintf("step %d/%d rate %g/s", i+1, len(r.steps), rate))
	r.cur.Store(int32(i))
	receivers := r.open.Load()
	senders := r.senderConns()
	start := time.Now()
	var wg sync.WaitGroup
	if rate > 0 {
		for j, c := range senders {
			wg.Go(func() { r.send(ctx, c, j, len(senders), rate, i, start, d) })
		}
	}
	wg.Wait()

	r.setPhase(fmt.Sprintf("drain %d/%d", i+1, len(r.steps)))
	r.waitUntil(ctx, func() bool {
		return s.delivered.Load() >= (s.sent.Load()-s.rejected.Load())*receivers
	}, drain)
	elapsed := time.Since(start)
	r.cur.Store(-1)

	res := ChatStep{
		Rate:       rate,
		Seconds:    elapsed.Seconds(),
		Sent:       s.sent.Load(),
		SendErrors: s.sendErrors.Load(),
		Rejected:   s.rejected.Load(),
		Receivers:  receivers,
		Delivered:  s.delivered.Load(),
	}
	res.Expected = (res.Sent - res.Rejected) * receivers
	if res.Expected > 0 {
		res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	}
	if span := time.Duration(s.last.Load() - start.UnixNano()); span > 0 {
		res.DeliveredPerSec = float64(res.Delivered) / span.Seconds()
	}
	counts, top := s.lat.Snapshot(), s.lat.Max()
	res.P50ms = Ms(counts.Quantile(0.50, top))
	res.P90ms = Ms(counts.Quantile(0.90, top))
	res.P99ms = Ms(counts.Quantile(0.99, top))
	res.MaxMs = Ms(top)
	return res
}

// send is one sender: sender j of k sends every k/rate seconds, offset by
// j/rate so the k senders together send evenly at rate, until d.
func (r *ChatRoom) send(ctx context.Context, conn *websocket.Conn, j, k int, rate float64, stepIdx int, start time.Time, d time.Duration) {
	s := r.steps[stepIdx]
	interval := max(time.Duration(float64(k)/rate*float64(time.Second)), 1)
	offset := time.Duration(float64(j) / rate * float64(time.Second))
	buf := make([]byte, 0, 80)
	t := time.NewTimer(time.Hour) // Reset discards a stale tick (Go 1.23+)
	defer t.Stop()
	for at := offset; at < d; at += interval {
		if w := time.Until(start.Add(at)); w > 0 {
			t.Reset(w)
			select {
			case <-ctx.Done():
				return
			case <-r.ctx.Done():
				return
			case <-t.C:
			}
		}
		buf = appendText(buf[:0], time.Now().UnixNano(), stepIdx)
		_ = conn.SetWriteDeadline(time.Now().Add(chatWriteTimeout))
		if err := conn.WriteMessage(websocket.TextMessage, buf); err != nil {
			s.sendErrors.Add(1)
			r.noteErr("send", err)
			return
		}
		s.sent.Add(1)
	}
}

// Close ends the room: no more joins, every connection closed, every
// client goroutine waited for (at most 30 s; they are all blocked on
// closed connections or cancelled dials by then). Safe to call twice.
func (r *ChatRoom) Close() error {
	if r.cancel == nil {
		return nil
	}
	r.setPhase("closing")
	r.stopping.Store(true)
	r.cancel()
	r.mu.Lock()
	for _, c := range r.conns {
		if c != nil {
			c.Close()
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(chatStopWait):
		return fmt.Errorf("chat room %s: some clients did not stop within %s", r.URL, chatStopWait)
	}
}

// Counts returns the room's counters so far.
func (r *ChatRoom) Counts() ChatCounts {
	return ChatCounts{
		Started: r.started.Load(), Connected: r.connected.Load(), Failed: r.failed.Load(),
		Open: r.open.Load(), Frames: r.frames.Load(),
		JoinFrames: r.joins.Load(), LeaveFrames: r.leaves.Load(), PresenceFrames: r.presence.Load(),
		ErrorFrames: r.errFrames.Load(), RateLimited: r.rateLimited.Load(),
		ForeignFrames: r.foreign.Load(), Closes: r.closes.Load(),
	}
}

// Current returns the running step, what it sent and delivered so far and
// its latency counts; ok is false outside steps.
func (r *ChatRoom) Current() (step int, sent, delivered int64, lat Counts, ok bool) {
	i := r.cur.Load()
	if i < 0 {
		return 0, 0, 0, nil, false
	}
	s := r.steps[i]
	return int(i), s.sent.Load(), s.delivered.Load(), s.lat.Snapshot(), true
}

// StepTotals returns what step i has sent and delivered so far.
func (r *ChatRoom) StepTotals(i int) (sent, delivered int64) {
	return r.steps[i].sent.Load(), r.steps[i].delivered.Load()
}

// Latency is the delivery latency histogram of step i, for merging rooms'
// figures; it is the room's own, to be read only.
func (r *ChatRoom) Latency(i int) *Histogram { return &r.steps[i].lat }

// Phase names what the room is doing: start, connect, settle, step,
// drain, closing.
func (r *ChatRoom) Phase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

func (r *ChatRoom) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

// noteErr counts an error by what failed and its kind, keeping at most
// chatMaxErrorKinds kinds.
func (r *ChatRoom) noteErr(what string, err error) {
	msg := what + ": " + ErrKind(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.errs[msg]; ok || len(r.errs) < chatMaxErrorKinds {
		r.errs[msg]++
		return
	}
	r.others++
}

// ErrKind shortens an error for counting: a network error names its
// addresses, which differ per connection, so only its operation and cause
// are kept.
func ErrKind(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return strings.Replace(err.Error(), op.Error(), op.Op+" "+op.Net+": "+op.Err.Error(), 1)
	}
	return err.Error()
}

// Errors lists the errors seen, "N× what: kind", sorted.
func (r *ChatRoom) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for msg, n := range r.errs {
		out = append(out, fmt.Sprintf("%d× %s", n, msg))
	}
	sort.Strings(out)
	if r.others > 0 {
		out = append(out, fmt.Sprintf("%d× other errors", r.others))
	}
	return out
}

// ErrorCount is the number of errors seen (joins, reads, sends).
func (r *ChatRoom) ErrorCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.others
	for _, c := range r.errs {
		n += c
	}
	return n
}
