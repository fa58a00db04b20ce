package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// buildGateway compiles ./cmd/livegate of the module in the current
// directory into dir and returns the binary's path.
func buildGateway(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "livegate")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/livegate/livegate/cmd/livegate")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build gateway (run from the repository or pass -gateway): %w\n%s", err, out)
	}
	return bin, nil
}

// gatewayProc is the gateway running as a child process. Whoever calls
// startGateway must call stop.
type gatewayProc struct {
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:PORT
	log    *os.File
	exited chan struct{}
	seen   map[procKey]bool // ffmpeg children seen, to clean up after
}

// startGateway runs bin on a free loopback port, with config when not "",
// logging into dir, and waits until /healthz answers.
func startGateway(ctx context.Context, bin, config, dir string) (*gatewayProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("gateway: free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--listen", addr}
	if config != "" {
		args = append(args, "--config", config)
	}
	logf, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	loadgen.OwnGroup(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("gateway: start %s: %w", bin, err)
	}
	g := &gatewayProc{cmd: cmd, addr: addr, log: logf, exited: make(chan struct{}), seen: map[procKey]bool{}}
	go func() { cmd.Wait(); close(g.exited) }()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		select {
		case <-g.exited:
			g.stop()
			return nil, fmt.Errorf("gateway: exited at start: %s", g.logTail(2000))
		case <-ctx.Done():
			g.stop()
			return nil, fmt.Errorf("gateway: wait for /healthz: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("gateway: no /healthz within 15 s: %s", g.logTail(2000))
		}
	}
}

// pid is the gateway's process id.
func (g *gatewayProc) pid() int { return g.cmd.Process.Pid }

// stop ends the gateway with SIGINT, then SIGKILL to its process group after
// 5 s, and kills any ffmpeg child seen that outlived it. Windows cannot send
// SIGINT: there the gateway is killed at once. Safe to call twice.
func (g *gatewayProc) stop() {
	if err := g.cmd.Process.Signal(os.Interrupt); err != nil {
		g.cmd.Process.Kill() // Windows, or the gateway has exited
	}
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
		loadgen.KillGroup(g.pid())
		<-g.exited
	}
	for k := range g.seen {
		if st, err := loadgen.ReadProcStat(k.pid); err == nil && st.Start == k.start {
			if p, err := os.FindProcess(k.pid); err == nil {
				p.Kill()
			}
		}
	}
	g.log.Close()
}

// logTail returns the last n bytes of the gateway's log.
func (g *gatewayProc) logTail(n int) string {
	b, _ := os.ReadFile(g.log.Name())
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// procKey names a process across pid reuse.
type procKey struct {
	pid   int
	start uint64
}

// descendants returns the processes of procs below root (not root itself),
// leaving out the subtrees of the pids in except.
func descendants(procs []loadgen.ProcStat, root int, except ...int) []loadgen.ProcStat {
	kids := map[int][]loadgen.ProcStat{}
	for _, p := range procs {
		kids[p.PPID] = append(kids[p.PPID], p)
	}
	var out []loadgen.ProcStat
	todo := []int{root}
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, c := range kids[pid] {
			if slices.Contains(except, c.PID) {
				continue
			}
			out = append(out, c)
			todo = append(todo, c.PID)
		}
	}
	return out
}

// peakRSS returns VmHWM (peak resident set size) of pid in bytes.
func peakRSS(pid int) (int64, error) {
	kib, err := loadgen.ReadStatusKiB(pid, "VmHWM")
	return kib * 1024, err
}

// cpuSample is the CPU time, in ticks, of the gateway, of each of its
// ffmpeg children and of each of the benchmark's own processes (itself, its
// source ffmpeg, Chromium) at one instant.
type cpuSample struct {
	at      time.Time
	gateway uint64
	ffmpeg  map[procKey]uint64
	bench   map[procKey]uint64
}

// sample reads the CPU times, and remembers the gateway's ffmpeg children
// for stop.
func (g *gatewayProc) sample() (cpuSample, error) {
	s, ok := sampleCPU(g.pid())
	if !ok {
		return cpuSample{}, fmt.Errorf("gateway cpu: process %d gone", g.pid())
	}
	for k := range s.ffmpeg {
		g.seen[k] = true
	}
	return s, nil
}

// sampleCPU reads the CPU times of the gateway gw (0 for none), of its
// ffmpeg children and of the benchmark's own processes; ok is false when gw
// is not running.
func sampleCPU(gw int) (s cpuSample, ok bool) {
	procs := loadgen.AllProcs()
	s = cpuSample{at: time.Now(), ffmpeg: map[procKey]uint64{}, bench: map[procKey]uint64{}}
	self := os.Getpid()
	for _, p := range procs {
		switch {
		case gw != 0 && p.PID == gw:
			s.gateway, ok = p.Ticks, true
		case gw != 0 && p.PPID == gw && p.Comm == "ffmpeg":
			s.ffmpeg[procKey{p.PID, p.Start}] = p.Ticks
		case p.PID == self:
			s.bench[procKey{p.PID, p.Start}] = p.Ticks
		}
	}
	for _, p := range descendants(procs, self, gw) {
		s.bench[procKey{p.PID, p.Start}] = p.Ticks
	}
	return s, ok || gw == 0
}

// cpuUse is CPU seconds per wall second over samples ss, in time order:
// the gateway's, the sum over its ffmpeg children, and the sum over the
// benchmark's own processes. A process counts the time it used between the
// first and last sample it appears in.
func cpuUse(ss []cpuSample) (gateway, ffmpeg, bench float64) {
	if len(ss) < 2 {
		return 0, 0, 0
	}
	a, b := ss[0], ss[len(ss)-1]
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return 0, 0, 0
	}
	group := func(of func(cpuSample) map[procKey]uint64) float64 {
		first, last := map[procKey]uint64{}, map[procKey]uint64{}
		for _, s := range ss {
			for k, t := range of(s) {
				if _, ok := first[k]; !ok {
					first[k] = t
				}
				last[k] = t
			}
		}
		var sum uint64
		for k, t := range last {
			sum += t - min(first[k], t)
		}
		return float64(sum) / loadgen.UserHZ / wall
	}
	gateway = float64(b.gateway-min(a.gateway, b.gateway)) / loadgen.UserHZ / wall
	ffmpeg = group(func(s cpuSample) map[procKey]uint64 { return s.ffmpeg })
	bench = group(func(s cpuSample) map[procKey]uint64 { return s.bench })
	return gateway, ffmpeg, bench
}
