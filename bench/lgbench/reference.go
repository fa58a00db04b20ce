package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// referenceArgs returns ffmpeg's arguments for the reference: the published
// Matroska/WebM from stdin, encoded once at 720p with the gateway's default
// x264 settings (superfast, zerolatency, no B-frames, a keyframe every
// second), written by ffmpeg's own HLS muxer with one-second segments into
// dir.
func referenceArgs(dir string) []string {
	return []string{"-hide_banner", "-nostats", "-loglevel", "error",
		"-probesize", "32768", "-analyzeduration", "0", "-i", "pipe:0",
		"-map", "0:v:0", "-map", "0:a:0?",
		"-vf", "fps=30,scale=1280:720,setsar=1",
		"-c:v", "libx264", "-preset", "superfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-bf", "0",
		"-force_key_frames", "expr:gte(t,n_forced*1)", "-sc_threshold", "0", "-g", "60",
		"-b:v", "2500k", "-maxrate", "2675k", "-bufsize", "5000k",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
		"-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
		"-hls_flags", "delete_segments+independent_segments",
		"-hls_segment_filename", filepath.Join(dir, "seg%d.ts"),
		filepath.Join(dir, "index.m3u8")}
}

// referencePage is a plain hls.js player with its default configuration,
// exposing window.__livegate like the gateway's viewer page. It plays
// /hls/index.m3u8, or the URL in its query's src: a stream of the gateway
// embedded on another origin, the way a third-party site plays it.
const referencePage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ffmpeg HLS reference</title></head>
<body>
<video id="video" muted autoplay playsinline controls width="640"></video>
<script src="/hls.min.js"></script>
<script>
"use strict";
const video = document.getElementById("video");
const hls = new Hls();
window.__livegate = { hls, video, errors: [] };
hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.__livegate.errors.push(d.type + ":" + d.details); });
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
hls.loadSource(new URLSearchParams(location.search).get("src") || "/hls/index.m3u8");
hls.attachMedia(video);
</script>
</body></html>
`

// refServer serves the reference: the page at /, hls.js at /hls.min.js and
// the HLS directory at /hls/, on a loopback port. Whoever calls
// startRefServer must call close.
type refServer struct {
	srv  *http.Server
	base string // http://127.0.0.1:PORT
	done chan struct{}
}

// startRefServer serves dir and the hls.js file hlsjs.
func startRefServer(dir, hlsjs string) (*refServer, error) {
	if _, err := os.Stat(hlsjs); err != nil {
		return nil, fmt.Errorf("reference: hls.js: %w (run from the repository or pass -hlsjs)", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, referencePage)
	})
	mux.HandleFunc("GET /hls.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, hlsjs)
	})
	files := http.StripPrefix("/hls/", http.FileServer(http.Dir(dir)))
	mux.HandleFunc("GET /hls/", func(w http.ResponseWriter, r *http.Request) {
		// as for any live playlist: never from a cache
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("reference: listen: %w", err)
	}
	s := &refServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		base: "http://" + ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() { defer close(s.done); s.srv.Serve(ln) }()
	return s, nil
}

// close stops serving and waits.
func (s *refServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		s.srv.Close()
	}
	<-s.done
}

// segmenter is the reference ffmpeg. Whoever calls startSegmenter must call
// finish.
type segmenter struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr strings.Builder
}

// startSegmenter starts the reference ffmpeg writing into dir; it is killed
// when ctx ends.
func startSegmenter(ctx context.Context, ffmpeg, dir string) (*segmenter, error) {
	s := &segmenter{cmd: exec.CommandContext(ctx, ffmpeg, referenceArgs(dir)...)}
	loadgen.DieWithParent(s.cmd)
	s.cmd.WaitDelay = 2 * time.Second
	s.cmd.Stderr = &s.stderr
	in, err := s.cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("reference: %w", err)
	}
	s.stdin = in
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("reference: start %s: %w", ffmpeg, err)
	}
	return s, nil
}

// send writes published bytes to ffmpeg.
func (s *segmenter) send(b []byte) error {
	if _, err := s.stdin.Write(b); err != nil {
		return fmt.Errorf("reference: write: %w", err)
	}
	return nil
}

// finish closes ffmpeg's input and waits up to 10 s for it to end, then
// kills it.
func (s *segmenter) finish() error {
	s.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("reference: ffmpeg: %w: %s", err, strings.TrimSpace(s.stderr.String()))
		}
		return nil
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
		return errors.New("reference: ffmpeg did not end within 10 s of its input")
	}
}
