package transcode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needFFmpeg skips the test when ffmpeg or ffprobe is not installed.
func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install -y ffmpeg): %v", tool, err)
		}
	}
}

// testLogger logs through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// media describes test media made by ffmpeg from lavfi sources.
type media struct {
	w, h    int
	rate    int     // frames per second of the source
	gaps    bool    // drop every 7th frame and keep the timestamps (variable frame rate)
	audio   bool    // add a sine wave
	muxer   string  // "webm" (vp8, opus) or "mp4" (fragmented, h264, aac)
	seconds float64 // duration
	live    bool    // produce in real time, in small clusters, as a browser does
}

// command returns ffmpeg making m on its stdout.
func (m media) command(t *testing.T) *exec.Cmd {
	args := []string{"-hide_banner", "-loglevel", "error"}
	if m.live {
		args = append(args, "-re")
	}
	args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", m.w, m.h, m.rate))
	if m.audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000")
	}
	args = append(args, "-t", strconv.FormatFloat(m.seconds, 'f', -1, 64))
	if m.gaps {
		args = append(args, "-vf", `select=not(eq(mod(n\,7)\,3))`, "-fps_mode", "vfr")
	}
	switch m.muxer {
	case "webm":
		args = append(args, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M")
		if m.audio {
			args = append(args, "-c:a", "libopus")
		}
		if m.live {
			args = append(args, "-cluster_time_limit", "100")
		}
		args = append(args, "-f", "webm", "pipe:1")
	case "mp4":
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", strconv.Itoa(m.rate))
		if m.audio {
			args = append(args, "-c:a", "aac")
		}
		args = append(args, "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "pipe:1")
	default:
		t.Fatalf("unknown muxer %s", m.muxer)
	}
	cmd := exec.Command("ffmpeg", args...)
	cmd.Stderr = testWriter{t}
	return cmd
}

// probeStream is what the test reads of one stream from ffprobe.
type probeStream struct {
	CodecType  string `json:"codec_type"`
	CodecName  string `json:"codec_name"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	SampleRate string `json:"sample_rate"`
	Channels   int    `json:"channels"`
	RFrameRate string `json:"r_frame_rate"`
}

func ffprobe(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("ffprobe", append([]string{"-hide_banner", "-loglevel", "error"}, args...)...).Output()
	if err != nil {
		t.Fatalf("ffprobe %v: %v", args, err)
	}
	return out
}

// transcode runs src into a Process running Args and returns the MPEG-TS
// path and the time from the first input byte to the first output byte.
func transcode(t *testing.T, l Ladder, format string, outs []Output, src *exec.Cmd) (string, time.Duration) {
	t.Helper()
	p := &Process{Args: Args(l, format, outs), Logger: testLogger(t)}
	stdin, stdout, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	media, err := src.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan time.Time, 1)
	copied := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := media.Read(buf)
		first <- time.Now()
		if err == nil {
			_, err = stdin.Write(buf[:n])
		}
		if err == nil {
			_, err = io.Copy(stdin, media)
		}
		stdin.Close()
		copied <- errors.Join(err, src.Wait())
	}()

	path := filepath.Join(t.TempDir(), "out.ts")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 188*64)
	n, err := stdout.Read(buf)
	latency := time.Since(<-first)
	if err != nil {
		t.Fatalf("no output: %v; ffmpeg: %v", err, p.Wait())
	}
	f.Write(buf[:n])
	if _, err := io.Copy(f, stdout); err != nil {
		t.Fatal(err)
	}
	if err := <-copied; err != nil {
		t.Fatalf("feeding ffmpeg: %v", err)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	return path, latency
}

// checkTS checks the streams of the MPEG-TS at path against outs and that
// every video stream has keyframes exactly every second, at the same times.
func checkTS(t *testing.T, path string, outs []Output, audio bool, seconds float64, firstGap time.Duration) {
	t.Helper()
	var probe struct{ Streams []probeStream }
	if err := json.Unmarshal(ffprobe(t, "-show_streams", "-of", "json", path), &probe); err != nil {
		t.Fatal(err)
	}
	want := len(outs)
	if audio {
		want++
	}
	if len(probe.Streams) != want {
		t.Fatalf("%d streams, want %d: %+v", len(probe.Streams), want, probe.Streams)
	}
	for i, o := range outs {
		s := probe.Streams[i]
		if s.CodecName != "h264" || s.Width != o.Width || s.Height != o.Height || s.RFrameRate != "30/1" {
			t.Errorf("stream %d: %s %dx%d at %s, want h264 %dx%d at 30/1", i, s.CodecName, s.Width, s.Height, s.RFrameRate, o.Width, o.Height)
		}
	}
	if audio {
		s := probe.Streams[len(outs)]
		if s.CodecName != "aac" || s.SampleRate != "48000" || s.Channels != 2 {
			t.Errorf("audio stream: %+v, want aac 48000 Hz stereo", s)
		}
	}
	var first []string
	for i := range outs {
		out := ffprobe(t, "-select_streams", "v:"+strconv.Itoa(i), "-skip_frame", "nokey",
			"-show_entries", "frame=pts_time", "-of", "csv=p=0", path)
		times := strings.Fields(string(out))
		if len(times) < int(seconds)-1 {
			t.Fatalf("stream %d: keyframes at %v, want about %v", i, times, seconds)
		}
		if i == 0 {
			first = times
		} else if strings.Join(times, " ") != strings.Join(first, " ") {
			t.Errorf("stream %d: keyframes at %v, stream 0 at %v", i, times, first)
		}
		for j := 1; j < len(times); j++ {
			a, _ := strconv.ParseFloat(strings.TrimSuffix(times[j-1], ","), 64)
			b, _ := strconv.ParseFloat(strings.TrimSuffix(times[j], ","), 64)
			want := 1.0
			if j == 1 && firstGap > 0 {
				want = firstGap.Seconds() // the short first segment
			}
			if math.Abs(b-a-want) > 0.001+1.0/30 {
				t.Errorf("stream %d: keyframes at %v and %v, want %v s apart (all: %v)", i, a, b, want, times)
			}
		}
	}
}

func TestFFmpegLadder(t *testing.T) {
	needFFmpeg(t)
	if testing.Short() {
		t.Skip("encodes several seconds of video")
	}
	tests := []struct {
		name   string
		src    media
		format string
	}{
		{"webm 720p with audio", media{w: 1280, h: 720, rate: 30, audio: true, muxer: "webm", seconds: 3}, "matroska"},
		{"webm portrait without audio", media{w: 480, h: 854, rate: 30, muxer: "webm", seconds: 3}, "matroska"},
		{"webm 20 fps with gaps", media{w: 640, h: 360, rate: 20, gaps: true, audio: true, muxer: "webm", seconds: 4}, "matroska"},
		{"fragmented mp4 probed", media{w: 640, h: 480, rate: 30, audio: true, muxer: "mp4", seconds: 3}, ""},
		{"webm, first segment 500ms", media{w: 640, h: 360, rate: 30, audio: true, muxer: "webm", seconds: 4}, "matroska"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := DefaultLadder()
			if strings.Contains(tt.name, "first segment") {
				l.FirstSegment = 500 * time.Millisecond
			}
			outs := l.Plan(tt.src.w, tt.src.h)
			path, _ := transcode(t, l, tt.format, outs, tt.src.command(t))
			checkTS(t, path, outs, tt.src.audio, tt.src.seconds, l.FirstSegment)
		})
	}
}

func TestFFmpegStartLatency(t *testing.T) {
	needFFmpeg(t)
	if testing.Short() {
		t.Skip("needs a few seconds of real time")
	}
	// A live feed: media arrives in real time in 100 ms clusters, as from
	// MediaRecorder with a small timeslice. Fast probing must start the
	// output well before the default probing's 2 s or so.
	for _, format := range []string{"matroska", ""} {
		t.Run("format "+strconv.Quote(format), func(t *testing.T) {
			src := media{w: 640, h: 360, rate: 30, audio: true, muxer: "webm", seconds: 2, live: true}
			l := DefaultLadder()
			_, latency := transcode(t, l, format, l.Plan(src.w, src.h), src.command(t))
			// a figure, not an assertion: this machine is shared and noisy;
			// bench/lgbench measures the startup of the whole pipeline
			t.Logf("first MPEG-TS bytes %v after the first input byte", latency)
		})
	}
}

func TestProcessCrash(t *testing.T) {
	needFFmpeg(t)
	l := DefaultLadder()
	p := &Process{Args: Args(l, "matroska", l.Plan(1280, 720)), Logger: testLogger(t)}
	stdin, stdout, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		stdin.Write(bytes.Repeat([]byte("this is not a webm stream\n"), 5000))
		stdin.Close()
	}()
	if _, err := io.Copy(io.Discard, stdout); err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code <= 0 {
		t.Fatalf("Wait() = %v, want an *ExitError with a positive exit code", err)
	}
	if !strings.Contains(err.Error(), "code "+strconv.Itoa(ee.Code)) || !strings.Contains(err.Error(), "EBML") {
		t.Errorf("Wait() = %q, want the exit code and ffmpeg's reason (EBML header)", err)
	}
	if err2 := p.Close(); err2 != err {
		t.Errorf("Close after Wait = %v, want Wait's error", err2)
	}
}

func TestProcessCloseRunning(t *testing.T) {
	needFFmpeg(t)
	l := DefaultLadder()
	p := &Process{Args: Args(l, "matroska", l.Plan(1280, 720)), Logger: testLogger(t)}
	stdin, stdout, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	src := media{w: 1280, h: 720, rate: 30, audio: true, muxer: "webm", seconds: 30, live: true}.command(t)
	media, err := src.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { src.Process.Kill(); src.Wait() }()
	go io.Copy(stdin, media)
	// Wait until ffmpeg produces output, then stop it mid-stream.
	if _, err := stdout.Read(make([]byte, 188)); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
	// SIGINT, then SIGKILL at StopTimeout: Close must not outlive that
	if d := time.Since(start); d > DefaultStopTimeout+5*time.Second {
		t.Errorf("Close took %v, past the stop timeout of %v", d, DefaultStopTimeout)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

func TestProcessStartError(t *testing.T) {
	p := &Process{Path: filepath.Join(t.TempDir(), "no-such-ffmpeg")}
	if _, _, err := p.Start(); err == nil {
		t.Fatal("Start of a missing program succeeded")
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close after a failed Start = %v", err)
	}
}
