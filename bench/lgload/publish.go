package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// sourceArgs returns ffmpeg's arguments for one publisher, writing WebM to
// stdout for seconds of media at native rate (-re). With replay set, the
// recorded file is remuxed without re-encoding (-c copy) and looped, paced
// by its own timestamps. Otherwise a moving testsrc2 pattern of size with a
// sine tone is encoded as a browser would (libvpx realtime, libopus), with
// the wall-clock time burnt in when drawtext is true.
func sourceArgs(size, replay string, seconds float64, drawtext bool) []string {
	args := []string{"-hide_banner", "-nostats", "-loglevel", "error", "-re"}
	t := strconv.FormatFloat(seconds, 'f', 1, 64)
	if replay != "" {
		args = append(args, "-stream_loop", "-1", "-i", replay, "-t", t, "-c", "copy")
	} else {
		args = append(args,
			"-f", "lavfi", "-i", "testsrc2=size="+size+":rate=30",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
			"-t", t)
		if drawtext {
			args = append(args, "-vf", `drawtext=text='%{localtime\:%T}':fontsize=48:fontcolor=white:box=1:boxcolor=black@0.6:x=20:y=20`)
		}
		args = append(args, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
			"-b:v", "2500k", "-g", "60", "-c:a", "libopus", "-b:a", "128k")
	}
	return append(args, "-cluster_time_limit", "100", "-flush_packets", "1", "-f", "webm", "pipe:1")
}

// hasDrawtext reports whether ffmpeg lists the drawtext filter.
func hasDrawtext(ctx context.Context, ffmpeg string) bool {
	out, err := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-filters").Output()
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == "drawtext" {
			return true
		}
	}
	return false
}

// pubStats is what one publisher saw. Safe for concurrent use.
type pubStats struct {
	mu        sync.Mutex
	in        *loadgen.Ingest // nil until dialed
	bytes     int64           // bytes sent
	lastErr   string          // last local error
	ffmpegPID int
}

// status returns what the server reported so far (zero before the dial)
// and the last error, local or reported.
func (p *pubStats) status() (st loadgen.IngestStatus, lastErr string) {
	p.mu.Lock()
	in, lastErr := p.in, p.lastErr
	p.mu.Unlock()
	if in != nil {
		st = in.Status()
	}
	if lastErr == "" {
		lastErr = st.LastError
	}
	return st, lastErr
}

// snapshot returns the last state, the last speed and the bytes sent.
func (p *pubStats) snapshot() (state string, speed float64, bytes int64) {
	st, _ := p.status()
	if n := len(st.Speeds); n > 0 {
		speed = st.Speeds[n-1]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return st.State, speed, p.bytes
}

// setErr records err as the last error, unless it is nil.
func (p *pubStats) setErr(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	p.lastErr = err.Error()
	p.mu.Unlock()
}

// publisher pushes one ffmpeg source over the ingest WebSocket.
type publisher struct {
	FFmpeg   string        // ffmpeg binary
	Args     []string      // from sourceArgs
	URL      string        // ws://.../ingest/NAME
	Chunk    time.Duration // send what ffmpeg wrote every Chunk (100 ms)
	Stats    *pubStats
	Deadline time.Duration // at most this long in all
}

// run starts ffmpeg in its own process group, pushes its stdout until
// ctx ends or ffmpeg does, then closes the WebSocket with 1000 and stops
// ffmpeg (SIGINT to the group, then SIGKILL after 2 s; on Windows it is
// killed at once).
func (p *publisher) run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.Deadline)
	defer cancel()
	in, err := loadgen.DialIngest(ctx, p.URL)
	if err != nil {
		err = fmt.Errorf("publish: %w", err)
		p.Stats.setErr(err)
		return err
	}
	defer in.Close()
	p.Stats.mu.Lock()
	p.Stats.in = in
	p.Stats.mu.Unlock()

	cmd := exec.Command(p.FFmpeg, p.Args...)
	loadgen.OwnGroup(cmd)
	cmd.Stderr = os.Stderr
	// Our own pipe rather than StdoutPipe: Wait must not close the read end
	// while the last bytes are still being read.
	out, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("publish %s: %w", p.URL, err)
	}
	defer out.Close()
	cmd.Stdout = w
	err = cmd.Start()
	zero := time.Now() // ffmpeg's media time zero (-re), as a browser's capture clock says it
	w.Close()
	if err != nil {
		err = fmt.Errorf("publish %s: start %s: %w", p.URL, p.FFmpeg, err)
		p.Stats.setErr(err)
		return err
	}
	p.Stats.mu.Lock()
	p.Stats.ffmpegPID = cmd.Process.Pid
	p.Stats.mu.Unlock()
	// the contract's optional hello, with the capture clock the broadcaster
	// page sends: the stream's segments are dated by it, and viewers may
	// report their latency
	if err := in.Hello("video/webm;codecs=vp8,opus", zero); err != nil {
		p.Stats.setErr(err)
	}
	waited := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(stopped)
		waited <- err
	}()
	defer stopGroup(cmd.Process.Pid, stopped)

	sendErr := loadgen.Pump(ctx, out, p.Chunk, func(b []byte) error {
		if err := in.Send(b); err != nil {
			return err
		}
		p.Stats.mu.Lock()
		p.Stats.bytes += int64(len(b))
		p.Stats.mu.Unlock()
		return nil
	})
	in.Close()
	stopGroup(cmd.Process.Pid, stopped)
	werr := <-waited
	if sendErr != nil && !errors.Is(sendErr, context.Canceled) && !errors.Is(sendErr, context.DeadlineExceeded) {
		err := fmt.Errorf("publish %s: %w", p.URL, sendErr)
		p.Stats.setErr(err)
		return err
	}
	if werr != nil && ctx.Err() == nil {
		err := fmt.Errorf("publish %s: ffmpeg: %w", p.URL, werr)
		p.Stats.setErr(err)
		return err
	}
	return nil
}

// stopGroup sends SIGINT to the process group pgid, then SIGKILL if it has
// not ended (stopped not closed) within 2 s (see loadgen.InterruptGroup for
// Windows). Safe to call more than once.
func stopGroup(pgid int, stopped <-chan struct{}) {
	select {
	case <-stopped:
		return
	default:
	}
	loadgen.InterruptGroup(pgid)
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		loadgen.KillGroup(pgid)
		<-stopped
	}
}

// speedSummary returns the median and the minimum of the speeds reported,
// leaving out the first 2 (the start of a stream is slower), or zeros.
func speedSummary(speeds []float64) (median, least float64) {
	if len(speeds) > 4 {
		speeds = speeds[2:]
	}
	if len(speeds) == 0 {
		return 0, 0
	}
	s := slices.Clone(speeds)
	slices.Sort(s)
	return s[len(s)/2], s[0]
}
