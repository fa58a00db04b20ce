package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// runner measures the steps of one run on a loadgen.ChatRoom.
type runner struct {
	cfg  config
	room *loadgen.ChatRoom
	log  io.Writer
}

// run connects the clients, waits for the room to go idle, runs the rate
// steps and closes everything. It returns a report even with an error.
func run(parent context.Context, cfg config, log io.Writer) (*report, error) {
	rep := &report{URL: cfg.url, Clients: cfg.clients, Senders: cfg.senders}
	rep.Warnings = checkLimits(cfg.clients, &rep.NofileSoft, &rep.NofileHard)
	for _, w := range rep.Warnings {
		fmt.Fprintf(log, "chatload: WARNING: %s\n", w)
	}
	perStep := cfg.duration + cfg.drain
	hardStop := time.Now().Add(cfg.connectMax + cfg.settleMax +
		time.Duration(len(cfg.rates))*perStep + time.Minute)
	r := &runner{cfg: cfg, log: log, room: &loadgen.ChatRoom{
		URL: cfg.url, Clients: cfg.clients, Senders: cfg.senders, Steps: len(cfg.rates),
		Ramp: cfg.ramp, Pending: cfg.pending, JoinTimeout: cfg.joinTimeout, ConnectMax: cfg.connectMax,
		Deadline: hardStop,
	}}
	if err := r.room.Start(); err != nil {
		return rep, err
	}
	ctx, cancel := context.WithDeadline(parent, hardStop)
	defer cancel()

	m := &rep.Memory
	if cfg.serverPID != 0 {
		m.ServerPID = cfg.serverPID
		kib, err := readRSS(cfg.serverPID)
		if err != nil {
			r.room.Close()
			return rep, err
		}
		m.ServerBeforeKiB = kib
	}

	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	progressWG.Go(func() { r.progress(progressDone) })

	start := time.Now()
	r.room.Connect(ctx)
	rep.ConnectSeconds = time.Since(start).Seconds()
	settleStart := time.Now()
	r.room.Settle(ctx, cfg.settleMax)
	rep.SettleSeconds = time.Since(settleStart).Seconds()
	c := r.room.Counts()
	rep.Connected, rep.Failed, rep.ClosesJoining = c.Connected, c.Failed, c.Closes

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
	cancel()
	if err := r.room.Close(); err != nil {
		fmt.Fprintf(log, "chatload: WARNING: %v\n", err)
	}
	close(progressDone)
	progressWG.Wait()

	c = r.room.Counts()
	rep.JoinFrames, rep.LeaveFrames, rep.PresenceFrames = c.JoinFrames, c.LeaveFrames, c.PresenceFrames
	rep.ErrorFrames, rep.RateLimited = c.ErrorFrames, c.RateLimited
	rep.ForeignFrames, rep.Closes = c.ForeignFrames, c.Closes
	rep.Errors = r.room.Errors()
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
	warn := raiseNofile(n, soft, hard)
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

// runStep runs step i on the room and measures the CPU the server,
// chatload and the machine used meanwhile, then judges the step.
func (r *runner) runStep(ctx context.Context, i int) step {
	srv0, cli0 := r.cpu()
	sys0, _ := readSystemCPU()
	cs := r.room.RunStep(ctx, i, r.cfg.rates[i], r.cfg.duration, r.cfg.drain)
	srv1, cli1 := r.cpu()
	sys1, _ := readSystemCPU()
	cores := func(d time.Duration) float64 { return d.Seconds() / cs.Seconds }
	res := step{
		ChatStep:   cs,
		ServerCPU:  cores(srv1 - srv0),
		ClientCPU:  cores(cli1 - cli0),
		MachineCPU: cores(sys1.busy - sys0.busy),
		SoftirqCPU: cores(sys1.softirq - sys0.softirq),
		StealCPU:   cores(sys1.steal - sys0.steal),
	}
	if r.cfg.serverPID == 0 {
		res.ServerCPU = 0
	}
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
	case s.P99ms > loadgen.Ms(cfg.maxP99):
		return false, fmt.Sprintf("p99 %.1f ms > %.1f ms", s.P99ms, loadgen.Ms(cfg.maxP99))
	case s.SendErrors > 0:
		return false, fmt.Sprintf("%d send errors", s.SendErrors)
	}
	return true, ""
}

// progress prints one line a second to the log until done is closed.
func (r *runner) progress(done <-chan struct{}) {
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastFrames, lastDelivered int64
	var lastCounts loadgen.Counts
	lastStep := -1
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		c := r.room.Counts()
		line := fmt.Sprintf("chatload %5.0fs %-22s joined %d/%d failed %d open %d frames/s %d",
			time.Since(start).Seconds(), r.room.Phase(), c.Connected, r.cfg.clients,
			c.Failed, c.Open, c.Frames-lastFrames)
		lastFrames = c.Frames
		if i, sent, d, counts, ok := r.room.Current(); ok {
			if i != lastStep {
				lastStep, lastDelivered, lastCounts = i, 0, nil
			}
			line += fmt.Sprintf(" sent %d delivered %d (%d/s) p99 %.1fms", sent, d, d-lastDelivered,
				loadgen.Ms(counts.Sub(lastCounts).Quantile(0.99, 0)))
			lastDelivered, lastCounts = d, counts
		}
		if c.Closes > 0 {
			line += fmt.Sprintf(" closes %d", c.Closes)
		}
		fmt.Fprintln(r.log, line)
	}
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
	kib, err := loadgen.ReadStatusKiB(pid, "VmRSS")
	if err != nil {
		return 0, fmt.Errorf("read memory: %w", err)
	}
	return kib, nil
}

// tick is one clock tick of /proc's CPU times.
const tick = time.Second / loadgen.UserHZ

// systemCPU is machine-wide CPU time from /proc/stat.
type systemCPU struct{ busy, softirq, steal time.Duration }

// readSystemCPU reads the machine's CPU times.
func readSystemCPU() (systemCPU, error) {
	m, err := loadgen.ReadMachineCPU()
	if err != nil {
		return systemCPU{}, fmt.Errorf("read machine cpu time: %w", err)
	}
	return systemCPU{time.Duration(m.Busy()) * tick, time.Duration(m.Softirq) * tick, time.Duration(m.Steal) * tick}, nil
}

// readCPU returns the user+system CPU time of a process.
func readCPU(pid int) (time.Duration, error) {
	st, err := loadgen.ReadProcStat(pid)
	if err != nil {
		return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	return time.Duration(st.Ticks) * tick, nil
}
