package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
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
	loadgen.DieWithParent(cmd)
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
// timeslice delivers them) until r ends or ctx does, with loadgen.Pump.
// started receives the wall time just before the first chunk is sent. It
// returns the bytes sent.
func pump(ctx context.Context, r io.Reader, every time.Duration, send func([]byte) error, started chan<- time.Time) (int64, error) {
	var sent int64
	err := loadgen.Pump(ctx, r, every, func(b []byte) error {
		if sent == 0 {
			started <- time.Now()
		}
		if err := send(b); err != nil {
			return err
		}
		sent += int64(len(b))
		return nil
	})
	return sent, err
}
