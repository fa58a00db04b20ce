package stream

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/record"
	"github.com/livegate/livegate/transcode"
	"github.com/livegate/livegate/web"
)

// needFFmpeg skips when ffmpeg is missing locally; CI installs it, so there
// the test always runs.
func needFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg missing in CI")
		}
		t.Skip("ffmpeg not installed")
	}
}

// testLadder is one small rendition, cheap to encode.
var testLadder = transcode.Ladder{
	Renditions:   []transcode.Rendition{{Name: "360p", Height: 360, VideoBitrate: 400_000, MaxRate: 440_000, BufSize: 800_000}},
	AudioBitrate: 64_000, FrameRate: 30, Preset: "ultrafast",
}

// startHub starts a Hub with testLadder; edit may change it first.
func startHub(t *testing.T, edit func(*Hub)) *Hub {
	t.Helper()
	needFFmpeg(t)
	h := &Hub{Ladder: testLadder, KeepEnded: time.Minute,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(h)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var (
	mediaOnce sync.Once
	media     []byte
	mediaErr  error
)

// webm is 4 s of a 640x360 test pattern with a tone as a browser records
// it (VP8, Opus, WebM), made once.
func webm(t *testing.T) []byte {
	t.Helper()
	mediaOnce.Do(func() {
		media, mediaErr = exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
			"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
			"-t", "4", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "800k", "-g", "60",
			"-c:a", "libopus", "-f", "webm", "pipe:1").Output()
	})
	if mediaErr != nil {
		t.Fatal(mediaErr)
	}
	return media
}

// feed runs one transcoder run of out on data, to its end.
func feed(t *testing.T, out ingest.Output, data []byte) error {
	t.Helper()
	run, err := out.Transcode(ingest.ContainerWebM, 640, 360)
	if err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 32<<10) // in chunks, as a publisher's frames come
		if _, err := run.Write(rest[:n]); err != nil {
			break // Wait says why
		}
		rest = rest[n:]
	}
	run.CloseInput()
	return run.Wait()
}

// get serves one file of a stream as the /live/ route does.
func get(t *testing.T, st web.Stream, file string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	st.ServeFile(rec, httptest.NewRequest("GET", "/live/x/"+file, nil), file)
	return rec.Code, rec.Body.Bytes()
}

// mediaPlaylist reads the first variant's media playlist of st's
// multivariant playlist, and returns it with its URI.
func mediaPlaylist(t *testing.T, st web.Stream) (*playlist.Media, string) {
	t.Helper()
	body, err := st.Multivariant()
	if err != nil {
		t.Fatal(err)
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(body); err != nil {
		t.Fatalf("multivariant: %v\n%s", err, body)
	}
	code, b := get(t, st, mv.Variants[0].URI)
	var pl playlist.Media
	if code != http.StatusOK || pl.Unmarshal(b) != nil {
		t.Fatalf("%s: %d\n%s", mv.Variants[0].URI, code, b)
	}
	return &pl, mv.Variants[0].URI
}

// TestLife runs a stream from its first byte to its end and past
// KeepEnded, without recording.
func TestLife(t *testing.T) {
	h := startHub(t, func(h *Hub) { h.KeepEnded = 2 * time.Second })
	out, err := h.Open("life", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, out, webm(t)); err != nil {
		t.Fatalf("run: %v", err)
	}
	st := h.Stream("life")
	if st == nil || !out.Live() {
		t.Fatal("no live stream after 4 s of media")
	}
	info := st.Info()
	if !info.Live || len(info.Renditions) != 1 || info.Renditions[0].Height != 360 || info.Renditions[0].Bandwidth <= 0 {
		t.Errorf("info %+v", info)
	}
	if names := h.Names(); len(names) != 1 || names[0] != "life" {
		t.Errorf("names %v", names)
	}
	if jpeg, err := st.Thumbnail(); err != nil || !bytes.HasPrefix(jpeg, []byte{0xFF, 0xD8}) {
		t.Errorf("thumbnail: %d bytes, %v", len(jpeg), err)
	}

	out.End()
	pl, uri := mediaPlaylist(t, st)
	if !pl.Endlist || len(pl.Segments) < 3 {
		t.Errorf("finished playlist %s: endlist %v, %d segments", uri, pl.Endlist, len(pl.Segments))
	}
	dir := uri[:strings.LastIndex(uri, "/")+1]
	for _, seg := range pl.Segments {
		if code, b := get(t, st, dir+seg.URI); code != http.StatusOK || len(b) == 0 {
			t.Errorf("%s: %d, %d bytes", seg.URI, code, len(b))
		}
	}
	if st.Info().Live || st.Info().Recording {
		t.Errorf("ended info %+v", st.Info())
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.Stream("life") != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if h.Stream("life") != nil {
		t.Error("an ended stream without a recording is still served after KeepEnded")
	}
}

// TestResume gives one broadcast two transcoder runs, as a publisher that
// reconnects within its grace period does: the playlists go on, the second
// run's first segment marked as a discontinuity.
func TestResume(t *testing.T) {
	h := startHub(t, func(h *Hub) { h.SegmentCount = 20 })
	out, err := h.Open("again", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, out, webm(t)); err != nil {
		t.Fatalf("first run: %v", err)
	}
	first, _ := mediaPlaylist(t, h.Stream("again"))
	if err := feed(t, out, webm(t)); err != nil {
		t.Fatalf("second run: %v", err)
	}
	out.End()
	pl, _ := mediaPlaylist(t, h.Stream("again"))
	// the segment in progress when the first run ended is finished by the
	// second run's first keyframe; the one after it is the second run's
	want := first.MediaSequence + len(first.Segments) + 1
	var got []int
	for i, seg := range pl.Segments {
		if seg.Discontinuity {
			got = append(got, pl.MediaSequence+i)
		}
	}
	if len(got) != 1 || got[0] != want || pl.MediaSequence+len(pl.Segments) < want+3 {
		t.Errorf("discontinuities at %v of segments %d to %d, want one at %d and 3 or more after",
			got, pl.MediaSequence, pl.MediaSequence+len(pl.Segments)-1, want)
	}
}

// TestRecordingHandover records a broadcast: once it ends, the stream
// serves the finished recording (under recordingDir while the last window
// is held, then as itself), with a thumbnail, also to a new Hub on the
// same directory.
func TestRecordingHandover(t *testing.T) {
	dir := t.TempDir()
	h := startHub(t, func(h *Hub) { h.RecordDir, h.KeepEnded = dir, 2*time.Second })
	out, err := h.Open("kept", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, out, webm(t)); err != nil {
		t.Fatalf("run: %v", err)
	}
	out.End()
	st := h.Stream("kept")
	body, _ := st.Multivariant()
	if !bytes.Contains(body, []byte(recordingDir)) {
		t.Errorf("multivariant of the ended stream does not name its recording:\n%s", body)
	}
	pl, _ := mediaPlaylist(t, st)
	if !pl.Endlist || len(pl.Segments) < 3 {
		t.Errorf("recording under %s: endlist %v, %d segments", recordingDir, pl.Endlist, len(pl.Segments))
	}
	info := st.Info()
	if !info.Recording || info.RecordedAt == nil || info.Duration < 3 {
		t.Errorf("info %+v", info)
	}
	if jpeg, err := st.Thumbnail(); err != nil || !bytes.HasPrefix(jpeg, []byte{0xFF, 0xD8}) {
		t.Errorf("recording's thumbnail: %d bytes, %v", len(jpeg), err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := h.Stream("kept").(vod); ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, hub := range map[string]*Hub{"same hub": h, "new hub": startHub(t, func(h *Hub) { h.RecordDir = dir })} {
		st, ok := hub.Stream("kept").(vod)
		if !ok {
			t.Fatalf("%s: not served as its recording after KeepEnded", name)
		}
		body, _ := st.Multivariant()
		if bytes.Contains(body, []byte(recordingDir)) {
			t.Errorf("%s: the recording's multivariant names %s", name, recordingDir)
		}
		vodPl, uri := mediaPlaylist(t, st)
		if len(vodPl.Segments) != len(pl.Segments) || !vodPl.Endlist {
			t.Errorf("%s: %s has %d segments, the ended stream %d", name, uri, len(vodPl.Segments), len(pl.Segments))
		}
		// a player that began under recordingDir goes on
		if code, _ := get(t, st, recordingDir+uri); code != http.StatusOK {
			t.Errorf("%s: %s%s: %d", name, recordingDir, uri, code)
		}
		if recorded := hub.Recorded(); len(recorded) != 1 || recorded[0] != "kept" {
			t.Errorf("%s: recorded %v", name, recorded)
		}
	}
}

// TestCrash: a gateway that dies mid-broadcast (its Hub never closed,
// its ffmpeg killed) leaves a recording that the next Hub on the same
// directory finishes and serves; a transcoder fed what it cannot decode
// fails its run with ffmpeg's own error.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	h := &Hub{Ladder: testLadder, RecordDir: dir, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	needFFmpeg(t)
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	out, err := h.Open("cut", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, err := out.Transcode(ingest.ContainerWebM, 640, 360)
	if err != nil {
		t.Fatal(err)
	}
	run.Write(webm(t))
	// wait for recorded segments, then die without ending anything
	b := out.(*broadcast)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if pl, err := os.ReadFile(b.rec.Dir() + "/360p/video1_stream.m3u8"); err == nil && bytes.Count(pl, []byte("#EXTINF")) >= 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	run.Abort()
	run.Wait()

	after := startHub(t, func(h *Hub) { h.RecordDir = dir })
	st, ok := after.Stream("cut").(vod)
	if !ok {
		t.Fatal("the cut-off recording is not served by the next hub")
	}
	if pl, _ := mediaPlaylist(t, st); !pl.Endlist || len(pl.Segments) < 3 {
		t.Errorf("finished after the crash: endlist %v, %d segments", pl.Endlist, len(pl.Segments))
	}
	h.Close()

	bad := startHub(t, nil)
	out, err = bad.Open("garbage", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	noise := append([]byte{0x1A, 0x45, 0xDF, 0xA3}, bytes.Repeat([]byte{0xA5, 0x5A, 0x13}, 100000)...) // EBML magic, then noise
	if err := feed(t, out, noise); err == nil {
		t.Error("a run of garbage ended without an error")
	}
	if out.Live() {
		t.Error("garbage went live")
	}
}

// TestHandoff moves a broadcast from one Hub to another, as a gateway that
// restarts hands its streams to another: the first one's output stops
// without #EXT-X-ENDLIST and leaves the Hub (its part is recorded); the
// second continues from its State: the same renditions, media sequence
// numbers after the first one's, a discontinuity, the same start.
func TestHandoff(t *testing.T) {
	a := startHub(t, func(h *Hub) { h.RecordDir = t.TempDir() })
	b := startHub(t, func(h *Hub) { h.RecordDir = t.TempDir() }) // each its own: two recordings
	out, err := a.Open("moving", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.State() != nil {
		t.Error("a state before any segment")
	}
	if err := feed(t, out, webm(t)); err != nil {
		t.Fatalf("run: %v", err)
	}
	before, _ := mediaPlaylist(t, a.Stream("moving"))
	started := a.Stream("moving").Info().StartedAt
	if out.State() == nil {
		t.Fatal("no state with segments")
	}
	state := out.Handoff()
	if a.Live("moving") || len(a.Names()) != 0 {
		t.Errorf("the handed-off stream is still held: live %v, names %v", a.Live("moving"), a.Names())
	}
	deadline := time.Now().Add(30 * time.Second) // finished after Handoff returned
	for st := a.Stream("moving"); st == nil || !st.Info().Recording; st = a.Stream("moving") {
		if time.Now().After(deadline) {
			t.Fatal("the part made before the handoff is not served as a recording")
		}
		time.Sleep(50 * time.Millisecond)
	}

	next, err := b.Open("moving", false, &ingest.Resume{State: state, Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, next, webm(t)); err != nil {
		t.Fatalf("continued run: %v", err)
	}
	st := b.Stream("moving")
	pl, _ := mediaPlaylist(t, st)
	want := before.MediaSequence + len(before.Segments) + 1 // after the segment in progress
	if pl.MediaSequence != want || !pl.Segments[0].Discontinuity || pl.Endlist {
		body, _ := pl.Marshal()
		t.Errorf("continued playlist does not begin at %d with a discontinuity:\n%s", want, body)
	}
	if info := st.Info(); !info.StartedAt.Equal(started) || len(info.Renditions) != 1 {
		t.Errorf("continued info %+v, started %v", info, started)
	}
	next.End()
}

// TestHandoffSharedRecording: with a recordings directory both Hubs
// share, the broadcast handed off goes on in the recording it had: one
// recording of both parts, the second after a discontinuity. A takeover
// that is not a handoff (the first gateway may still write) starts a new
// one.
func TestHandoffSharedRecording(t *testing.T) {
	dir := t.TempDir()
	shared := func(h *Hub) { h.RecordDir, h.RecordShared = dir, true }
	a, b := startHub(t, shared), startHub(t, shared)
	out, err := a.Open("moving", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, out, webm(t)); err != nil {
		t.Fatalf("run: %v", err)
	}
	next, err := b.Open("moving", false, &ingest.Resume{State: out.Handoff(), Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, next, webm(t)); err != nil {
		t.Fatalf("continued run: %v", err)
	}
	last := next.State()
	next.End()
	metas, _ := filepath.Glob(filepath.Join(dir, "moving", "*", record.MetaFile))
	if len(metas) != 1 {
		t.Fatalf("recordings %v, want one", metas)
	}
	var meta record.Meta
	if body, err := os.ReadFile(metas[0]); err != nil || json.Unmarshal(body, &meta) != nil {
		t.Fatalf("%s: %v", metas[0], err)
	}
	body, _ := os.ReadFile(filepath.Join(filepath.Dir(metas[0]), "360p", "video1_stream.m3u8"))
	var pl playlist.Media
	if err := pl.Unmarshal(body); err != nil {
		t.Fatal(err)
	}
	discont := 0
	for _, s := range pl.Segments {
		if s.Discontinuity {
			discont++
		}
	}
	if meta.Duration < 6 || discont != 1 || !pl.Endlist {
		t.Errorf("recording of %.1f s with %d discontinuities, want both parts (about 8 s) and one:\n%s", meta.Duration, discont, body)
	}

	// a takeover from a gateway that did not hand off: a new recording
	again, err := a.Open("moving", false, &ingest.Resume{State: last, Exact: false})
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, again, webm(t)); err != nil {
		t.Fatalf("run: %v", err)
	}
	again.End()
	if metas, _ := filepath.Glob(filepath.Join(dir, "moving", "*", record.MetaFile)); len(metas) != 2 {
		t.Errorf("recordings after an inexact takeover %v, want two", metas)
	}
}

// TestPrivateRecording: a private stream's recording stays private, also
// for a new Hub on the same directory.
func TestPrivateRecording(t *testing.T) {
	dir := t.TempDir()
	h := startHub(t, func(h *Hub) { h.RecordDir, h.KeepEnded = dir, time.Second })
	out, err := h.Open("hidden", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, out, webm(t)); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !h.Stream("hidden").Private() || !h.Stream("hidden").Info().Private {
		t.Error("a private broadcast is public")
	}
	out.End()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := h.Stream("hidden").(vod); ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, hub := range map[string]*Hub{"same hub": h, "new hub": startHub(t, func(h *Hub) { h.RecordDir = dir })} {
		st, ok := hub.Stream("hidden").(vod)
		if !ok || !st.Private() || !st.Info().Private {
			t.Errorf("%s: the recording of a private stream is served as %T, private %v", name, hub.Stream("hidden"), ok && st.Private())
		}
	}
}
