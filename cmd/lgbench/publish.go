package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// sourceArgs returns ffmpeg's arguments for the live test pattern: testsrc2
// at 1280x720 and 30 fps with a 440 Hz tone, read at native rate (-re) for
// seconds, encoded as a browser's MediaRecorder would on stdout: "vp8" is
// WebM with VP8 (libvpx realtime) and Opus, "h264" Matroska with H.264
// (x264 ultrafast, zerolatency) and Opus, like Chrome's
// video/webm;codecs=h264 recording. Clusters close every 100 ms.
func sourceArgs(codec string, seconds float64) ([]string, error) {
	args := []string{"-hide_banner", "-nostats", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.FormatFloat(seconds, 'f', 3, 64)}
	switch codec {
	case "vp8":
		args = append(args, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
			"-b:v", "2500k", "-g", "60", "-c:a", "libopus", "-b:a", "128k", "-f", "webm")
	case "h264":
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
			"-pix_fmt", "yuv420p", "-b:v", "2500k", "-g", "60", "-c:a", "libopus", "-b:a", "128k",
			"-f", "matroska")
	default:
		return nil, fmt.Errorf("source: unknown codec %q (want vp8 or h264)", codec)
	}
	return append(args, "-cluster_time_limit", "100", "-flush_packets", "1", "pipe:1"), nil
}

// source is a running test-pattern ffmpeg. Whoever calls startSource must
// call wait.
type source struct {
	cmd *exec.Cmd
	out io.ReadCloser
}

// startSource starts ffmpeg with sourceArgs; it is killed when ctx ends.
func startSource(ctx context.Context, ffmpeg, codec string, seconds float64) (*source, error) {
	args, err := sourceArgs(codec, seconds)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, ffmpeg, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("source: start %s: %w", ffmpeg, err)
	}
	return &source{cmd: cmd, out: out}, nil
}

// wait waits for ffmpeg to end.
func (s *source) wait() error {
	if err := s.cmd.Wait(); err != nil {
		return fmt.Errorf("source: ffmpeg: %w", err)
	}
	return nil
}

// pump copies r to send in chunks gathered over every (as a MediaRecorder
// timeslice delivers them) until r ends or ctx does. started receives the
// wall time just before the first chunk is sent. It returns the bytes sent.
func pump(ctx context.Context, r io.Reader, every time.Duration, send func([]byte) error, started chan<- time.Time) (int64, error) {
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
	var sent int64
	first := true
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if first {
			started <- time.Now()
			first = false
		}
		if err := send(pending); err != nil {
			return err
		}
		sent += int64(len(pending))
		pending = nil
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case rd := <-reads:
			pending = append(pending, rd.b...)
			if rd.err != nil {
				err := flush()
				if err == nil && !errors.Is(rd.err, io.EOF) {
					err = rd.err
				}
				return sent, err
			}
		case <-tick.C:
			if err := flush(); err != nil {
				return sent, err
			}
		}
	}
}

// ingest is a publisher's WebSocket to the gateway. Whoever calls dialIngest
// must call close.
type ingest struct {
	conn   *websocket.Conn
	done   chan struct{} // closed when the reader ends
	closed sync.Once

	mu       sync.Mutex
	live     time.Time // first status with state "live"
	speeds   []float64
	lastErr  string
	closeMsg string
}

// dialIngest opens the publishing WebSocket at url (ws://.../ingest/NAME).
func dialIngest(ctx context.Context, url string) (*ingest, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("ingest: dial %s: %w (HTTP %d)", url, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("ingest: dial %s: %w", url, err)
	}
	in := &ingest{conn: conn, done: make(chan struct{})}
	go in.read()
	return in, nil
}

// read records the server's status and error frames until the connection
// ends.
func (in *ingest) read() {
	defer close(in.done)
	for {
		_, msg, err := in.conn.ReadMessage()
		if err != nil {
			in.mu.Lock()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				in.closeMsg = fmt.Sprintf("%d %s", ce.Code, ce.Text)
			}
			in.mu.Unlock()
			return
		}
		var m struct {
			Type    string  `json:"type"`
			State   string  `json:"state"`
			Speed   float64 `json:"speed"`
			Message string  `json:"message"`
		}
		if json.Unmarshal(msg, &m) != nil {
			continue
		}
		in.mu.Lock()
		switch m.Type {
		case "status":
			if m.State == "live" && in.live.IsZero() {
				in.live = time.Now()
			}
			if m.Speed > 0 {
				in.speeds = append(in.speeds, m.Speed)
			}
		case "error":
			in.lastErr = m.Message
		}
		in.mu.Unlock()
	}
}

// send writes one binary frame.
func (in *ingest) send(b []byte) error {
	in.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := in.conn.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return fmt.Errorf("ingest: send: %w", err)
	}
	return nil
}

// close ends publishing with close code 1000 and waits (up to 3 s) for the
// server to close too. Safe to call twice.
func (in *ingest) close() {
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

// status returns when the publisher first saw "live", the speeds reported,
// and the last error message and close frame, if any.
func (in *ingest) status() (live time.Time, speeds []float64, lastErr, closeMsg string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.live, append([]float64(nil), in.speeds...), in.lastErr, in.closeMsg
}
