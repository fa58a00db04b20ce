package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// buildGateway compiles ./cmd/livegate of the module in the current
// directory into dir and returns the binary's path.
func buildGateway(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "livegate")
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
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
// 5 s, and kills any ffmpeg child seen that outlived it. Safe to call twice.
func (g *gatewayProc) stop() {
	g.cmd.Process.Signal(os.Interrupt)
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-g.pid(), syscall.SIGKILL)
		<-g.exited
	}
	for k := range g.seen {
		if st, err := readStat(k.pid); err == nil && st.start == k.start {
			syscall.Kill(k.pid, syscall.SIGKILL)
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

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which
// Linux fixes at 100 for user space on every architecture Go supports.
const userHZ = 100

// procStat is the part of /proc/PID/stat the benchmark uses.
type procStat struct {
	pid   int
	comm  string
	ppid  int
	ticks uint64 // utime + stime, in 1/userHZ s
	start uint64 // starttime, in clock ticks since boot
}

// procKey names a process across pid reuse.
type procKey struct {
	pid   int
	start uint64
}

// parseStat reads the contents of /proc/PID/stat.
func parseStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("proc stat: no (comm)")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("proc stat: pid: %w", err)
	}
	// fields from 3 (state) on
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("proc stat: %d fields after comm, want at least 20", len(f))
	}
	num := func(field int) uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		v, err = strconv.ParseUint(f[field-3], 10, 64)
		return v
	}
	st := procStat{pid: pid, comm: string(b[open+1 : end])}
	st.ppid = int(num(4))
	st.ticks = num(14) + num(15)
	st.start = num(22)
	if err != nil {
		return procStat{}, fmt.Errorf("proc stat: %w", err)
	}
	return st, nil
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// allProcs reads /proc/*/stat of every process.
func allProcs() []procStat {
	ents, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// descendants returns the processes of procs below root (not root itself),
// leaving out the subtrees of the pids in except.
func descendants(procs []procStat, root int, except ...int) []procStat {
	kids := map[int][]procStat{}
	for _, p := range procs {
		kids[p.ppid] = append(kids[p.ppid], p)
	}
	var out []procStat
	todo := []int{root}
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, c := range kids[pid] {
			if slices.Contains(except, c.pid) {
				continue
			}
			out = append(out, c)
			todo = append(todo, c.pid)
		}
	}
	return out
}

// peakRSS returns VmHWM (peak resident set size) of pid in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmHWM(string(b))
}

// parseVmHWM reads the VmHWM line of /proc/PID/status, in bytes.
func parseVmHWM(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("proc status: VmHWM %q: %w", v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("proc status: no VmHWM")
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
	procs := allProcs()
	s = cpuSample{at: time.Now(), ffmpeg: map[procKey]uint64{}, bench: map[procKey]uint64{}}
	self := os.Getpid()
	for _, p := range procs {
		switch {
		case gw != 0 && p.pid == gw:
			s.gateway, ok = p.ticks, true
		case gw != 0 && p.ppid == gw && p.comm == "ffmpeg":
			s.ffmpeg[procKey{p.pid, p.start}] = p.ticks
		case p.pid == self:
			s.bench[procKey{p.pid, p.start}] = p.ticks
		}
	}
	for _, p := range descendants(procs, self, gw) {
		s.bench[procKey{p.pid, p.start}] = p.ticks
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
		return float64(sum) / userHZ / wall
	}
	gateway = float64(b.gateway-min(a.gateway, b.gateway)) / userHZ / wall
	ffmpeg = group(func(s cpuSample) map[procKey]uint64 { return s.ffmpeg })
	bench = group(func(s cpuSample) map[procKey]uint64 { return s.bench })
	return gateway, ffmpeg, bench
}
