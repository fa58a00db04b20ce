package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Small per-connection buffers keep the client's own memory low (about
// 13 KiB per client with the goroutine stack). netBuf is the socket read
// buffer: when the server falls behind, one read system call takes several
// queued frames, which matters where system calls are slow. Frames longer
// than headBuf (a welcome with its user list) are read whole during the
// join and only their head afterwards.
const (
	netBuf        = 4096
	headBuf       = 512
	writeTimeout  = 5 * time.Second
	quietFor      = time.Second // no frames for this long: the room is idle
	maxErrorKinds = 10
)

// stepStats are the live counters of one rate step.
type stepStats struct {
	sent, sendErrors, rejected atomic.Int64
	delivered                  atomic.Int64
	last                       atomic.Int64 // Unix ns of a recent delivery
	lat                        histogram
}

// runner owns the client connections of one run.
type runner struct {
	cfg      config
	dialer   *websocket.Dialer
	log      io.Writer
	hardStop time.Time
	steps    []*stepStats
	cur      atomic.Int32 // running step, -1 outside steps
	stopping atomic.Bool
	wg       sync.WaitGroup

	started, connected, failed, open, closes atomic.Int64
	frames, joins, leaves, errFrames         atomic.Int64
	rateLimited, foreign                     atomic.Int64

	mu     sync.Mutex
	phase  string
	conns  []*websocket.Conn // by client id, set once welcomed
	errs   map[string]int    // error text -> count, at most maxErrorKinds kinds
	others int               // errors beyond maxErrorKinds kinds
}

func newRunner(cfg config, log io.Writer) *runner {
	r := &runner{
		cfg:   cfg,
		log:   log,
		conns: make([]*websocket.Conn, cfg.clients),
		errs:  map[string]int{},
		phase: "start",
	}
	r.cur.Store(-1)
	// A busy server (Node fanning out join broadcasts) may take long to
	// answer the upgrade: the whole join, dial included, gets -join-timeout.
	nd := &net.Dialer{Timeout: 10 * time.Second, Control: loopbackOnly}
	r.dialer = &websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: cfg.joinTimeout,
		ReadBufferSize:   netBuf,
		WriteBufferSize:  256,
		WriteBufferPool:  &sync.Pool{},
	}
	for range cfg.rates {
		r.steps = append(r.steps, &stepStats{})
	}
	perStep := cfg.duration + cfg.drain
	r.hardStop = time.Now().Add(cfg.connectMax + cfg.settleMax +
		time.Duration(len(cfg.rates))*perStep + time.Minute)
	return r
}

// run connects the clients, waits for the room to go idle, runs the rate
// steps and closes everything. It returns a report even with an error.
func run(parent context.Context, cfg config, log io.Writer) (*report, error) {
	r := newRunner(cfg, log)
	rep := &report{URL: cfg.url, Clients: cfg.clients, Senders: cfg.senders}
	rep.Warnings = checkLimits(cfg.clients, &rep.NofileSoft, &rep.NofileHard)
	for _, w := range rep.Warnings {
		fmt.Fprintf(log, "chatload: WARNING: %s\n", w)
	}
	ctx, cancel := context.WithDeadline(parent, r.hardStop)
	defer cancel()

	m := &rep.Memory
	if cfg.serverPID != 0 {
		m.ServerPID = cfg.serverPID
		kib, err := readRSS(cfg.serverPID)
		if err != nil {
			return rep, err
		}
		m.ServerBeforeKiB = kib
	}

	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Add(1)
	go func() {
		defer progressWG.Done()
		r.progress(progressDone)
	}()

	start := time.Now()
	r.connectAll(ctx)
	rep.ConnectSeconds = time.Since(start).Seconds()
	settleStart := time.Now()
	r.settle(ctx)
	rep.SettleSeconds = time.Since(settleStart).Seconds()
	rep.Connected = r.connected.Load()
	rep.Failed = r.failed.Load()

	if cfg.serverPID != 0 {
		if kib, err := readRSS(cfg.serverPID); err == nil {
			m.ServerIdleKiB = kib
			if rep.Connected > 0 {
				m.PerIdleConnKiB = float64(kib-m.ServerBeforeKiB) / float64(rep.Connected)
			}
		}
	}
	m.ClientIdleKiB, _ = readRSS(os.Getpid())

	if rep.Connected > 0 {
		for i := range cfg.rates {
			if ctx.Err() != nil {
				break
			}
			s := r.runStep(ctx, i)
			rep.Steps = append(rep.Steps, s)
			if s.Pass && (rep.Best == nil || s.DeliveredPerSec > rep.Best.DeliveredPerSec) {
				best := s
				rep.Best = &best
			}
			if !s.Pass {
				break
			}
		}
	}
	if cfg.serverPID != 0 {
		m.ServerEndKiB, _ = readRSS(cfg.serverPID)
	}

	if ctx.Err() != nil && parent.Err() == nil {
		rep.Warnings = append(rep.Warnings, "the run hit its overall time limit")
	}
	r.setPhase("closing")
	r.stop(cancel)
	close(progressDone)
	progressWG.Wait()

	rep.JoinFrames, rep.LeaveFrames = r.joins.Load(), r.leaves.Load()
	rep.ErrorFrames, rep.RateLimited = r.errFrames.Load(), r.rateLimited.Load()
	rep.ForeignFrames, rep.Closes = r.foreign.Load(), r.closes.Load()
	rep.Errors = r.errorList()
	switch {
	case parent.Err() != nil:
		return rep, errors.New("interrupted")
	case rep.Connected == 0:
		return rep, fmt.Errorf("no client could join %s", cfg.url)
	}
	return rep, nil
}

// checkLimits raises RLIMIT_NOFILE to its hard limit (Go already does this
// for the process since 1.19; this makes it explicit) and warns when the
// descriptors or ephemeral ports are too few for n clients.
func checkLimits(n int, soft, hard *uint64) []string {
	var warn []string
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		if rl.Cur < rl.Max {
			rl.Cur = rl.Max
			_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		}
		*soft, *hard = rl.Cur, rl.Max
		if rl.Cur < uint64(n)+64 {
			warn = append(warn, fmt.Sprintf("RLIMIT_NOFILE is %d (hard %d), too low for %d clients: raise the hard limit (ulimit -Hn) to at least %d",
				rl.Cur, rl.Max, n, n+64))
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, _ := strconv.Atoi(f[0])
			hi, _ := strconv.Atoi(f[1])
			if hi-lo+1 < n+100 {
				warn = append(warn, fmt.Sprintf("only %d ephemeral ports (%d-%d) for %d clients", hi-lo+1, lo, hi, n))
			}
		}
	}
	return warn
}

// connectAll starts clients at the ramp rate, with at most -pending of
// them between dial and welcome (so the ramp slows down to what the server
// accepts), then waits until each has joined or failed, all within
// -connect-max.
func (r *runner) connectAll(ctx context.Context) {
	r.setPhase("connect")
	ctx, cancel := context.WithTimeout(ctx, r.cfg.connectMax)
	defer cancel()
	interval := time.Duration(float64(time.Second) / r.cfg.ramp)
	pending := make(chan struct{}, r.cfg.pending)
	t := time.NewTimer(time.Hour) // Reset discards a stale tick (Go 1.23+)
	defer t.Stop()
	next := time.Now()
	for i := 0; i < r.cfg.clients; i++ {
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
	r.waitUntil(ctx, func() bool { return r.connected.Load()+r.failed.Load() >= r.started.Load() }, r.cfg.connectMax)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// settle waits until no frame has arrived for quietFor (the join
// broadcasts are over), at most -settle.
func (r *runner) settle(ctx context.Context) {
	r.setPhase("settle")
	last, quietSince := r.frames.Load(), time.Now()
	r.waitUntil(ctx, func() bool {
		if n := r.frames.Load(); n != last {
			last, quietSince = n, time.Now()
		}
		return time.Since(quietSince) >= quietFor
	}, r.cfg.settleMax)
}

// waitUntil polls cond every 20 ms until it holds, ctx ends or max passes.
func (r *runner) waitUntil(ctx context.Context, cond func() bool, max time.Duration) bool {
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
		case <-tick.C:
		}
	}
	return true
}

// client joins the room and then reads every frame until the run stops.
func (r *runner) client(ctx context.Context, id int, pending <-chan struct{}) {
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

func (r *runner) join(ctx context.Context, id int) (*websocket.Conn, error) {
	deadline := time.Now().Add(r.cfg.joinTimeout)
	conn, resp, err := r.dialer.DialContext(ctx, r.cfg.url, nil)
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
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","name":"c`+strconv.Itoa(id)+`"}`)); err != nil {
		return nil, fmt.Errorf("send join: %w", err)
	}
	_ = conn.SetReadDeadline(deadline)
	for i := 0; i < 1000; i++ {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("wait for welcome: %w", err)
		}
		r.frames.Add(1)
		switch f := parseFrame(msg); f.kind {
		case frameWelcome:
			_ = conn.SetReadDeadline(r.hardStop)
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.stopping.Load() {
				return nil, errors.New("join: run is stopping")
			}
			r.conns[id] = conn
			ok = true
			return conn, nil
		case frameError:
			return nil, fmt.Errorf("join refused: %s", f.code)
		}
	}
	return nil, errors.New("join: no welcome in the first 1000 frames")
}

// readLoop reads frames until the connection fails or is closed by stop.
func (r *runner) readLoop(conn *websocket.Conn) {
	r.open.Add(1)
	defer r.open.Add(-1)
	buf := make([]byte, headBuf)
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

func (r *runner) handle(b []byte, now int64) {
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
		s.lat.record(time.Duration(now - f.sent))
	case frameForeign:
		r.foreign.Add(1)
	case frameJoin:
		r.joins.Add(1)
	case frameLeave:
		r.leaves.Add(1)
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

// senderConns returns the first -senders joined connections.
func (r *runner) senderConns() []*websocket.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*websocket.Conn
	for _, c := range r.conns {
		if len(out) == r.cfg.senders {
			break
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// runStep sends at the step's rate for -duration, waits up to -drain for
// the deliveries, and judges the step.
func (r *runner) runStep(ctx context.Context, i int) step {
	rate := r.cfg.rates[i]
	s := r.steps[i]
	r.setPhase(fmt.Sprintf("step %d/%d rate %g/s", i+1, len(r.steps), rate))
	r.cur.Store(int32(i))
	receivers := r.open.Load()
	senders := r.senderConns()
	srv0, cli0 := r.cpu()
	sys0, _ := readSystemCPU()
	start := time.Now()

	var wg sync.WaitGroup
	if rate > 0 {
		for j, c := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.send(ctx, c, j, len(senders), rate, i, start)
			}()
		}
	}
	wg.Wait()

	r.setPhase(fmt.Sprintf("drain %d/%d", i+1, len(r.steps)))
	r.waitUntil(ctx, func() bool {
		return s.delivered.Load() >= (s.sent.Load()-s.rejected.Load())*receivers
	}, r.cfg.drain)
	elapsed := time.Since(start)
	srv1, cli1 := r.cpu()
	sys1, _ := readSystemCPU()
	r.cur.Store(-1)
	cores := func(d time.Duration) float64 { return d.Seconds() / elapsed.Seconds() }

	res := step{
		Rate:       rate,
		Seconds:    elapsed.Seconds(),
		Sent:       s.sent.Load(),
		SendErrors: s.sendErrors.Load(),
		Rejected:   s.rejected.Load(),
		Receivers:  receivers,
		Delivered:  s.delivered.Load(),
		ServerCPU:  cores(srv1 - srv0),
		ClientCPU:  cores(cli1 - cli0),
		MachineCPU: cores(sys1.busy - sys0.busy),
		SoftirqCPU: cores(sys1.softirq - sys0.softirq),
		StealCPU:   cores(sys1.steal - sys0.steal),
	}
	if r.cfg.serverPID == 0 {
		res.ServerCPU = 0
	}
	res.Expected = (res.Sent - res.Rejected) * receivers
	if res.Expected > 0 {
		res.DeliveredRatio = float64(res.Delivered) / float64(res.Expected)
	}
	if span := time.Duration(s.last.Load() - start.UnixNano()); span > 0 {
		res.DeliveredPerSec = float64(res.Delivered) / span.Seconds()
	}
	counts, max := s.lat.snapshot(), s.lat.maxValue()
	res.P50ms = ms(quantile(counts, 0.50, max))
	res.P90ms = ms(quantile(counts, 0.90, max))
	res.P99ms = ms(quantile(counts, 0.99, max))
	res.MaxMs = ms(max)
	res.Pass, res.Why = judge(res, r.cfg)
	return res
}

// judge says whether a step kept up: enough deliveries, p99 in bound, no
// send errors.
func judge(s step, cfg config) (bool, string) {
	switch {
	case s.Expected == 0:
		return false, "nothing to deliver"
	case s.DeliveredRatio < cfg.minRatio:
		return false, fmt.Sprintf("delivered %.2f%% < %.2f%%", 100*s.DeliveredRatio, 100*cfg.minRatio)
	case s.P99ms > ms(cfg.maxP99):
		return false, fmt.Sprintf("p99 %.1f ms > %.1f ms", s.P99ms, ms(cfg.maxP99))
	case s.SendErrors > 0:
		return false, fmt.Sprintf("%d send errors", s.SendErrors)
	}
	return true, ""
}

// send is one sender: sender j of k sends every k/rate seconds, offset by
// j/rate so the k senders together send evenly at rate, until -duration.
func (r *runner) send(ctx context.Context, conn *websocket.Conn, j, k int, rate float64, stepIdx int, start time.Time) {
	s := r.steps[stepIdx]
	interval := time.Duration(float64(k) / rate * float64(time.Second))
	if interval <= 0 {
		interval = 1
	}
	offset := time.Duration(float64(j) / rate * float64(time.Second))
	buf := make([]byte, 0, 80)
	t := time.NewTimer(time.Hour) // Reset discards a stale tick (Go 1.23+)
	defer t.Stop()
	for at := offset; at < r.cfg.duration; at += interval {
		if d := time.Until(start.Add(at)); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		buf = appendText(buf[:0], time.Now().UnixNano(), stepIdx)
		_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := conn.WriteMessage(websocket.TextMessage, buf); err != nil {
			s.sendErrors.Add(1)
			r.noteErr("send", err)
			return
		}
		s.sent.Add(1)
	}
}

// stop ends the run: no more joins, every connection closed, every client
// goroutine waited for (at most 30 s; they are all blocked on closed
// connections or cancelled dials by then).
func (r *runner) stop(cancel context.CancelFunc) {
	r.stopping.Store(true)
	cancel()
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
	case <-time.After(30 * time.Second):
		fmt.Fprintln(r.log, "chatload: WARNING: some clients did not stop within 30s")
	}
}

// progress prints one line a second to the log until done is closed.
func (r *runner) progress(done <-chan struct{}) {
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastFrames, lastDelivered int64
	var lastCounts []uint64
	lastStep := int32(-1)
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		frames := r.frames.Load()
		line := fmt.Sprintf("chatload %5.0fs %-22s joined %d/%d failed %d open %d frames/s %d",
			time.Since(start).Seconds(), r.getPhase(), r.connected.Load(), r.cfg.clients,
			r.failed.Load(), r.open.Load(), frames-lastFrames)
		lastFrames = frames
		if i := r.cur.Load(); i >= 0 {
			s := r.steps[i]
			if i != lastStep {
				lastStep, lastDelivered, lastCounts = i, 0, nil
			}
			d := s.delivered.Load()
			counts := s.lat.snapshot()
			line += fmt.Sprintf(" sent %d delivered %d (%d/s) p99 %.1fms", s.sent.Load(), d, d-lastDelivered,
				ms(quantile(diff(counts, lastCounts), 0.99, 0)))
			lastDelivered, lastCounts = d, counts
		}
		if c := r.closes.Load(); c > 0 {
			line += fmt.Sprintf(" closes %d", c)
		}
		fmt.Fprintln(r.log, line)
	}
}

func (r *runner) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

func (r *runner) getPhase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// noteErr counts an error by what failed and its kind, keeping at most
// maxErrorKinds kinds.
func (r *runner) noteErr(what string, err error) {
	msg := what + ": " + errKind(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.errs[msg]; ok || len(r.errs) < maxErrorKinds {
		r.errs[msg]++
		return
	}
	r.others++
}

// errKind shortens an error for counting: a network error names its
// addresses, which differ per connection, so only its operation and cause
// are kept.
func errKind(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return strings.Replace(err.Error(), op.Error(), op.Op+" "+op.Net+": "+op.Err.Error(), 1)
	}
	return err.Error()
}

func (r *runner) errorList() []string {
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

// cpu returns the CPU time used so far by the server (0 without
// -server-pid) and by chatload itself.
func (r *runner) cpu() (server, self time.Duration) {
	if r.cfg.serverPID != 0 {
		server, _ = readCPU(r.cfg.serverPID)
	}
	self, _ = readCPU(os.Getpid())
	return server, self
}

// readRSS returns the resident set size of a process, in KiB.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read server memory: %w", err)
	}
	kib, err := parseVmRSS(b)
	if err != nil {
		return 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return kib, nil
}

// systemCPU is machine-wide CPU time from /proc/stat.
type systemCPU struct{ busy, softirq, steal time.Duration }

// readSystemCPU reads the machine's CPU times, assuming USER_HZ 100.
func readSystemCPU() (systemCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return systemCPU{}, fmt.Errorf("read machine cpu time: %w", err)
	}
	busy, softirq, steal, err := parseProcStat(b)
	tick := 10 * time.Millisecond
	return systemCPU{time.Duration(busy) * tick, time.Duration(softirq) * tick, time.Duration(steal) * tick}, err
}

// readCPU returns the user+system CPU time of a process. It assumes the
// usual Linux USER_HZ of 100.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	ticks, err := parseCPUTicks(b)
	if err != nil {
		return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
