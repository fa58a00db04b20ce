package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/gorilla/websocket"
)

// needTools skips when ffmpeg is missing locally; CI installs it, so there
// the test always runs.
func needTools(t *testing.T) {
	t.Helper()
	needTool(t, "ffmpeg")
	needTool(t, "ffprobe")
}

// needTool returns the path of a program, skipping the test when it is
// missing locally and failing it in CI (where scripts/deps installs it).
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing in CI", name)
		}
		t.Skipf("%s not installed", name)
	}
	return path
}

// startGateway runs a gateway with the embedded defaults on a test server.
func startGateway(t *testing.T, edit func(*config)) *httptest.Server {
	t.Helper()
	cfg, err := load(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeepEnded = duration(time.Minute)
	cfg.StartWait = duration(30 * time.Second) // shared, noisy machines: more than the default 10 s
	cfg.MaxStreams = 64                        // subtests' dropped sessions hold their names for ingest_grace
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g := cfg.gateway(log)
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil) // served as run serves it
	srv.Config = g.server
	srv.Start()
	t.Cleanup(func() { g.Close(); srv.Close() })
	return srv
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

// publisher is ffmpeg making a real-time WebM test pattern with a tone,
// pushed over the ingest WebSocket.
type publisher struct {
	conn   *websocket.Conn
	cmd    *exec.Cmd
	done   chan error
	status chan map[string]any // every frame from the server; closed at the end
	err    error               // why reading ended (a *websocket.CloseError), once status is closed
}

func publish(t *testing.T, srv *httptest.Server, path string, size string, seconds int) *publisher {
	return publishAs(t, srv, path, size, seconds, "webm")
}

// publishAs publishes WebM (VP8/Opus, as Chrome and Firefox record) or
// fragmented MP4 (H.264/AAC, as Safari records).
func publishAs(t *testing.T, srv *httptest.Server, path string, size string, seconds int, container string) *publisher {
	t.Helper()
	return publishTo(t, wsURL(srv, "/ingest/"+path), size, seconds, container)
}

// publishAt is publishAs (WebM) to a WebSocket URL.
func publishAt(t *testing.T, url, size string, seconds int) *publisher {
	t.Helper()
	return publishTo(t, url, size, seconds, "webm")
}

// publishTo publishes an ffmpeg test pattern in container (webm or mp4)
// to the ingest WebSocket at url, in real time, for seconds.
func publishTo(t *testing.T, url, size string, seconds int, container string) *publisher {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.Itoa(seconds)}
	if container == "mp4" {
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac",
			"-movflags", "frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "200000", "-f", "mp4", "pipe:1")
	} else {
		args = append(args, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1500k", "-g", "60",
			"-c:a", "libopus", "-cluster_time_limit", "100", "-f", "webm", "pipe:1")
	}
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &publisher{conn: conn, cmd: cmd, done: make(chan error, 1), status: make(chan map[string]any, 1000)}
	go func() {
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				p.err = err
				close(p.status)
				return
			}
			var m map[string]any
			json.Unmarshal(msg, &m)
			p.status <- m
		}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := out.Read(buf)
			if n > 0 {
				if werr := conn.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
					cancel()
					p.done <- werr
					return
				}
			}
			if err != nil {
				p.done <- cmd.Wait()
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); conn.Close() })
	return p
}

// finish waits for ffmpeg to end and closes the socket normally.
func (p *publisher) finish(t *testing.T) {
	t.Helper()
	if err := <-p.done; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	p.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), time.Now().Add(time.Second))
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPipeline(t *testing.T) {
	needTools(t)
	cases := []struct {
		size       string
		container  string
		renditions []string // RESOLUTION of each variant, highest first
	}{
		{"1280x720", "webm", []string{"1280x720", "854x480", "640x360"}},
		{"854x480", "webm", []string{"854x480", "640x360"}},
		{"360x640", "mp4", []string{"360x640"}}, // Safari's fragmented MP4, portrait
	}
	srv := startGateway(t, nil)
	for _, c := range cases {
		t.Run(c.size+"_"+c.container, func(t *testing.T) {
			stream := "t" + strings.ReplaceAll(c.size, "x", "_")
			pub := publishAs(t, srv, stream, c.size, 7, c.container)
			base := srv.URL + "/live/" + stream + "/"
			code, body := get(t, base+"index.m3u8") // held until the first segments exist
			if code != http.StatusOK {
				t.Fatalf("index.m3u8: %d %s", code, body)
			}
			var mv playlist.Multivariant
			if err := mv.Unmarshal(body); err != nil {
				t.Fatalf("multivariant: %v\n%s", err, body)
			}
			var got []string
			for _, v := range mv.Variants {
				got = append(got, v.Resolution)
				if v.Bandwidth <= 0 || v.AverageBandwidth == nil || v.FrameRate == nil || len(v.Codecs) == 0 {
					t.Errorf("variant lacks attributes: %+v", v)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.renditions, " ") {
				t.Fatalf("renditions %v, want %v\n%s", got, c.renditions, body)
			}
			var info struct {
				Live       bool
				Renditions []struct{ Width, Height int }
			}
			if _, b := get(t, srv.URL+"/api/streams/"+stream); json.Unmarshal(b, &info) != nil || !info.Live || len(info.Renditions) != len(c.renditions) {
				t.Errorf("api: %s", b)
			}
			if code, jpeg := get(t, base+"thumb.jpg"); code != http.StatusOK || !bytes.HasPrefix(jpeg, []byte{0xFF, 0xD8}) {
				t.Errorf("thumbnail: %d, %d bytes", code, len(jpeg))
			}
			pub.finish(t)

			checkEnded(t, base, &mv)
			// a player that starts after the end still gets the finished playlists
			if code, b := get(t, base+"index.m3u8"); code != http.StatusOK || bytes.Count(b, []byte("#EXT-X-STREAM-INF")) != len(c.renditions) {
				t.Errorf("index.m3u8 after the end: %d\n%s", code, b)
			}
			if _, b := get(t, srv.URL+"/api/streams"); bytes.Contains(b, []byte(`"`+stream+`"`)) {
				t.Errorf("an ended stream is still listed live: %s", b)
			}
		})
	}
}

// checkEnded waits for #EXT-X-ENDLIST in every media playlist of the
// multivariant mv (served under base), then checks that the renditions are
// aligned, that every segment decodes (starting with a keyframe, one second
// long but for the last) and that the one audio rendition decodes.
func checkEnded(t *testing.T, base string, mv *playlist.Multivariant) {
	t.Helper()
	var media []*playlist.Media
	var uris []string
	waitFor(t, 15*time.Second, "#EXT-X-ENDLIST in every playlist", func() bool {
		media, uris = nil, nil
		for _, v := range mv.Variants {
			_, b := get(t, base+v.URI)
			var pl playlist.Media // Unmarshal appends: a new one each time
			if pl.Unmarshal(b) != nil || !pl.Endlist {
				return false
			}
			media, uris = append(media, &pl), append(uris, v.URI)
		}
		return true
	})
	for i, pl := range media {
		if pl.MediaSequence != media[0].MediaSequence || len(pl.Segments) != len(media[0].Segments) {
			t.Errorf("%s: sequence %d (%d segments), first rendition %d (%d)", uris[i],
				pl.MediaSequence, len(pl.Segments), media[0].MediaSequence, len(media[0].Segments))
		}
		if pl.TargetDuration != 1 {
			t.Errorf("%s: target duration %d", uris[i], pl.TargetDuration)
		}
		if len(pl.Segments) < 3 {
			t.Fatalf("%s: only %d segments", uris[i], len(pl.Segments))
		}
		dir := uris[i][:strings.LastIndex(uris[i], "/")+1]
		_, init := get(t, base+dir+pl.Map.URI)
		for j, seg := range pl.Segments {
			// the last one is the segment in progress at the end: up to 1 s
			want := 1.0
			if j == len(pl.Segments)-1 {
				want = seg.Duration.Seconds()
			}
			if j == 0 && math.Abs(seg.Duration.Seconds()-0.5) < 0.05 {
				want = 0.5 // the stream's first segment (hls_first_segment)
			}
			if d := seg.Duration.Seconds(); d < 0.95*want || d > 1.05 || d <= 0 {
				t.Errorf("%s segment %d: EXTINF %.3f", uris[i], j, d)
			}
			_, data := get(t, base+dir+seg.URI)
			checkSegment(t, fmt.Sprintf("%s#%d", uris[i], j), append(append([]byte{}, init...), data...), want)
		}
	}
	if len(mv.Renditions) != 1 || mv.Renditions[0].URI == nil {
		t.Fatalf("want one audio rendition, got %+v", mv.Renditions)
	}
	checkAudio(t, base+*mv.Renditions[0].URI)
}

// checkSegment decodes one fMP4 segment with ffprobe: it starts with a
// keyframe and holds seconds ± 5 % of 30 fps video.
func checkSegment(t *testing.T, name string, data []byte, seconds float64) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "seg.mp4")
	os.WriteFile(file, data, 0o644)
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "frame=key_frame,pts_time", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Errorf("%s: ffprobe: %v", name, err)
		return
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Errorf("%s: no frames", name)
		return
	}
	if !strings.HasPrefix(lines[0], "1,") {
		t.Errorf("%s: first frame is not a keyframe: %s", name, lines[0])
	}
	if d := float64(len(lines)) / 30; d < seconds-0.05 || d > seconds+0.05 {
		t.Errorf("%s: %d frames = %.3f s at 30 fps", name, len(lines), d)
	}
}

// checkAudio decodes the audio rendition's playlist with ffmpeg.
func checkAudio(t *testing.T, url string) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate",
		"-of", "csv=p=0", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "aac") {
		t.Errorf("audio %s: %v %s", url, err, out)
	}
}

func TestBadInput(t *testing.T) {
	needTools(t)
	srv := startGateway(t, func(c *config) { c.PublishKeys = []string{"secret"} })

	t.Run("names and keys", func(t *testing.T) {
		cases := []struct {
			path string
			want int
		}{
			{"/ingest/bad.name?key=secret", 400},
			{"/ingest/" + strings.Repeat("a", 65) + "?key=secret", 400},
			{"/ingest/ok", 401},
			{"/ingest/ok?key=wrong", 403},
			{"/live/bad.name/index.m3u8", 400},
			{"/live/nosuch/index.m3u8", 404},
			{"/chat/bad.name", 400},
		}
		for _, c := range cases {
			_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, c.path), nil)
			if err == nil || resp == nil || resp.StatusCode != c.want {
				t.Errorf("%s: got %v %v, want %d", c.path, resp, err, c.want)
				continue
			}
			var body map[string]any
			if json.NewDecoder(resp.Body).Decode(&body) != nil || body["error"] == nil {
				t.Errorf("%s: no JSON error body", c.path)
			}
		}
	})

	t.Run("random bytes while another stream plays", func(t *testing.T) {
		keyed := func(stream string) string { return wsURL(srv, "/ingest/"+stream+"?key=secret") }
		good, _, err := websocket.DefaultDialer.Dial(keyed("good"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer good.Close()
		// a second publisher on a live stream gets 409
		if _, resp, err := websocket.DefaultDialer.Dial(keyed("good"), nil); err == nil || resp.StatusCode != 409 {
			t.Errorf("second publisher: %v %v, want 409", resp, err)
		}
		bad, _, err := websocket.DefaultDialer.Dial(keyed("bad"), nil)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 4096)
		rand.Read(junk)
		junk[0] = 0 // never an EBML or ftyp start
		start := time.Now()
		bad.WriteMessage(websocket.BinaryMessage, junk)
		var errFrame map[string]any
		bad.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, msg, err := bad.ReadMessage()
			if ce, ok := err.(*websocket.CloseError); ok {
				if ce.Code != websocket.CloseUnsupportedData {
					t.Errorf("close code %d, want 1003", ce.Code)
				}
				break
			}
			if err != nil {
				t.Fatalf("no close within 5 s: %v", err)
			}
			var m map[string]any
			json.Unmarshal(msg, &m)
			if m["type"] == "error" {
				errFrame = m
			}
		}
		if errFrame == nil || errFrame["code"] != "unsupported_media" {
			t.Errorf("error frame before close: %v", errFrame)
		}
		t.Logf("closed 1003 after %s", time.Since(start))
		// the good connection is untouched
		good.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, msg, err := good.ReadMessage(); err != nil || !bytes.Contains(msg, []byte(`"status"`)) {
			t.Errorf("good publisher affected: %v %s", err, msg)
		}
	})

	t.Run("frame too big", func(t *testing.T) {
		c, _, err := websocket.DefaultDialer.Dial(wsURL(srv, "/ingest/big?key=secret"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.WriteMessage(websocket.BinaryMessage, make([]byte, 2<<20))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, _, err := c.ReadMessage()
			if ce, ok := err.(*websocket.CloseError); ok {
				if ce.Code != websocket.CloseMessageTooBig {
					t.Errorf("close code %d, want 1009", ce.Code)
				}
				return
			}
			if err != nil {
				t.Fatalf("no close: %v", err)
			}
		}
	})
}

// TestResume: a publisher whose connection drops resumes its session with a
// new connection (and a new container header); the playlists go on with a
// discontinuity and end with #EXT-X-ENDLIST.
func TestResume(t *testing.T) {
	needTools(t)
	data := t.TempDir()
	srv := startGateway(t, func(c *config) { c.Data = data })
	first := publish(t, srv, "r", "640x360", 30)
	var session string
	for m := range first.status {
		if m["state"] == "live" {
			session, _ = m["session"].(string)
			break
		}
	}
	if session == "" {
		t.Fatal("no live status with a session")
	}
	time.Sleep(2 * time.Second)
	first.conn.UnderlyingConn().Close() // the network path dies: no close frame
	first.cmd.Process.Kill()

	if _, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "/ingest/r"), nil); err == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("publisher without the session during the grace period: %v %v, want 409", resp, err)
	}
	second := publish(t, srv, "r?session="+session, "640x360", 4)
	second.finish(t)

	url := srv.URL + "/live/r/360p/video1_stream.m3u8"
	var pl playlist.Media
	waitFor(t, 20*time.Second, "#EXT-X-ENDLIST", func() bool {
		_, b := get(t, url)
		pl = playlist.Media{} // Unmarshal appends
		return pl.Unmarshal(b) == nil && pl.Endlist
	})
	discont := 0
	for _, seg := range pl.Segments {
		if seg.Discontinuity {
			discont++
		}
	}
	if discont != 1 || pl.Segments[0].Discontinuity || len(pl.Segments) < 3 {
		b, _ := pl.Marshal()
		t.Errorf("want one discontinuity between the runs' segments:\n%s", b)
	}

	// both runs are one recording, with the same discontinuity
	dirs, _ := filepath.Glob(filepath.Join(data, "recordings", "r", "*"))
	_, media := recordedPlaylists(t, finishedRecording(t, data, "r"))
	rec := media["360p/video1_stream.m3u8"]
	if len(dirs) != 1 || rec == nil {
		t.Fatalf("want one recording with 360p/video1_stream.m3u8, got %v %v", dirs, media)
	}
	var at []string
	for _, seg := range rec.Segments {
		if seg.Discontinuity {
			at = append(at, seg.URI)
		}
	}
	want := ""
	for _, seg := range pl.Segments {
		if seg.Discontinuity {
			want = seg.URI
		}
	}
	if len(at) != 1 || at[0] != want || len(rec.Segments) < len(pl.Segments) {
		t.Errorf("recording: discontinuity at %v, live playlist at %s; %d segments recorded, %d in the window",
			at, want, len(rec.Segments), len(pl.Segments))
	}
}

// fakeFFmpeg writes a shell script that stands in for ffmpeg.
func fakeFFmpeg(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ffmpeg")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// closeOf reads until the close frame and returns it with the last error frame.
func closeOf(t *testing.T, conn *websocket.Conn, within time.Duration) (*websocket.CloseError, map[string]any) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	var last map[string]any
	for {
		_, msg, err := conn.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce, last
		}
		if err != nil {
			t.Fatalf("no close frame within %s: %v", within, err)
		}
		var m map[string]any
		json.Unmarshal(msg, &m)
		if m["type"] == "error" {
			last = m
		}
	}
}

func TestTranscoderFailures(t *testing.T) {
	needTools(t)
	t.Run("crash ends the stream with 1011 naming the cause", func(t *testing.T) {
		// the real ffmpeg, killed once the test says so (the stream is live)
		marker := filepath.Join(t.TempDir(), "crash-now")
		ff := fakeFFmpeg(t, `exec 3<&0  # a background job would get /dev/null
ffmpeg "$@" <&3 & pid=$!
while [ ! -e `+marker+` ]; do sleep 0.1; done
kill -9 $pid; echo "simulated crash" >&2; exit 3`)
		srv := startGateway(t, func(c *config) { c.FFmpeg = ff })
		pub := publish(t, srv, "crash", "640x360", 30)
		for m := range pub.status {
			if m["state"] == "live" {
				break
			}
		}
		os.WriteFile(marker, nil, 0o644)
		var errFrame map[string]any
		for m := range pub.status {
			if m["type"] == "error" {
				errFrame = m
			}
		}
		ce, ok := pub.err.(*websocket.CloseError)
		if !ok {
			t.Fatalf("no close frame: %v", pub.err)
		}
		if ce.Code != websocket.CloseInternalServerErr || errFrame["code"] != "transcoder_failed" ||
			!strings.Contains(fmt.Sprint(errFrame["message"]), "simulated crash") {
			t.Errorf("close %d, error %v", ce.Code, errFrame)
		}
	})
	t.Run("a hung transcoder: overrun closes 1008 and frees the stream", func(t *testing.T) {
		ff := fakeFFmpeg(t, `exec sleep 60`)
		srv := startGateway(t, func(c *config) {
			c.FFmpeg = ff
			c.IngestBufferBytes = 64 << 10
			c.IngestOverrunTimeout = duration(200 * time.Millisecond)
			c.IngestMaxFrameBytes = 64 << 10
		})
		file := filepath.Join(t.TempDir(), "in.webm")
		if out, err := exec.Command("ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
			"-t", "10", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M", file).CombinedOutput(); err != nil {
			t.Fatalf("make webm: %v %s", err, out)
		}
		data, _ := os.ReadFile(file)
		conn, _, err := websocket.DefaultDialer.Dial(wsURL(srv, "/ingest/hung"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() {
			for len(data) > 0 {
				n := min(len(data), 16<<10)
				if conn.WriteMessage(websocket.BinaryMessage, data[:n]) != nil {
					return
				}
				data = data[n:]
			}
		}()
		ce, errFrame := closeOf(t, conn, 15*time.Second)
		if ce.Code != websocket.ClosePolicyViolation || errFrame["code"] != "overrun" {
			t.Errorf("close %d, error %v", ce.Code, errFrame)
		}
		waitFor(t, 10*time.Second, "the stream to be free again", func() bool {
			c, _, err := websocket.DefaultDialer.Dial(wsURL(srv, "/ingest/hung"), nil)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	})
}
