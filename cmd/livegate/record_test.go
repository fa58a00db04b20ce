package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/chromedp/chromedp"
	"github.com/livegate/livegate/record"
)

// finishedRecording waits for the newest finished recording of stream
// under data and returns its directory.
func finishedRecording(t *testing.T, data, stream string) string {
	t.Helper()
	var dir string
	waitFor(t, 20*time.Second, "a finished recording", func() bool {
		metas, _ := filepath.Glob(filepath.Join(data, "recordings", stream, "*", record.MetaFile))
		if len(metas) == 0 {
			return false
		}
		dir = filepath.Dir(metas[len(metas)-1])
		return true
	})
	return dir
}

// recordedPlaylists reads a recording's multivariant playlist and every
// media playlist it names (URI -> playlist), checking that each is a
// finished VOD.
func recordedPlaylists(t *testing.T, dir string) (*playlist.Multivariant, map[string]*playlist.Media) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(dir, record.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(body); err != nil {
		t.Fatalf("recorded multivariant: %v\n%s", err, body)
	}
	uris := []string{}
	for _, v := range mv.Variants {
		uris = append(uris, v.URI)
	}
	for _, r := range mv.Renditions {
		if r.URI != nil {
			uris = append(uris, *r.URI)
		}
	}
	media := map[string]*playlist.Media{}
	for _, uri := range uris {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(uri)))
		var pl playlist.Media
		if err != nil || pl.Unmarshal(b) != nil {
			t.Fatalf("recorded playlist %s: %v\n%s", uri, err, b)
		}
		if !pl.Endlist || pl.PlaylistType == nil || *pl.PlaylistType != playlist.MediaPlaylistTypeVOD {
			t.Errorf("%s is not a finished VOD:\n%s", uri, b)
		}
		media[uri] = &pl
	}
	return &mv, media
}

// TestRecording: a broadcast is recorded as it goes; after it ended and
// keep_ended passed, /live/ serves the recording as VOD, also after a
// restart of the gateway.
func TestRecording(t *testing.T) {
	needTools(t)
	const seconds = 6
	data := t.TempDir()
	edit := func(c *config) { c.Data = data; c.KeepEnded = duration(6 * time.Second) }
	srv := startGateway(t, edit)
	pub := publish(t, srv, "rec", "854x480", seconds)
	for m := range pub.status {
		if m["state"] == "live" {
			break
		}
	}
	if metas, _ := filepath.Glob(filepath.Join(data, "recordings", "rec", "*", "*", "*.m3u8")); len(metas) == 0 {
		waitFor(t, 10*time.Second, "media playlists while live", func() bool {
			metas, _ := filepath.Glob(filepath.Join(data, "recordings", "rec", "*", "*", "*.m3u8"))
			return len(metas) > 0
		})
	}
	pub.finish(t)
	dir := finishedRecording(t, data, "rec")
	if _, err := time.Parse(record.DirTime, filepath.Base(dir)); err != nil {
		t.Errorf("recording directory %s is not named by its UTC start: %v", dir, err)
	}
	mv, media := recordedPlaylists(t, dir)
	if len(mv.Variants) != 2 || len(mv.Renditions) != 1 {
		t.Fatalf("recorded %d variants and %d renditions, want 480p, 360p and the audio", len(mv.Variants), len(mv.Renditions))
	}
	// once the stream has ended, /live/ serves the recording: under
	// recordingDir while the last window is still held (a new viewer gets
	// the whole broadcast), as itself once keep_ended is over
	base := srv.URL + "/live/rec/"
	var info struct {
		Live       bool
		Recording  bool
		RecordedAt *time.Time `json:"recorded_at"`
		Duration   float64
		Renditions []struct{ Name string }
	}
	waitFor(t, 15*time.Second, "the API to describe the recording", func() bool {
		code, b := get(t, srv.URL+"/api/streams/rec")
		return code == http.StatusOK && json.Unmarshal(b, &info) == nil && info.Recording
	})
	if info.Live || info.RecordedAt == nil || info.RecordedAt.UTC().Format(record.DirTime) != filepath.Base(dir) ||
		info.Duration < seconds-1.5 || len(info.Renditions) != 2 {
		t.Errorf("api: %+v", info)
	}
	checkServed(t, base, dir, "recording.d/")
	checkThumbnail(t, base)
	if _, b := get(t, base+mv.Variants[0].URI); !bytes.Contains(b, []byte("#EXT-X-ENDLIST")) {
		t.Errorf("the last window's playlist is gone while held:\n%s", b)
	}
	var first *playlist.Media
	for _, v := range mv.Variants {
		pl := media[v.URI]
		if first == nil {
			first = pl
		}
		if pl.TargetDuration != 1 {
			t.Errorf("%s: target duration %d", v.URI, pl.TargetDuration)
		}
		if len(pl.Segments) != len(first.Segments) {
			t.Errorf("%s: %d segments, first rendition %d", v.URI, len(pl.Segments), len(first.Segments))
		}
		total := 0.0
		for j, seg := range pl.Segments {
			total += seg.Duration.Seconds()
			// one second each; the first half a second (hls_first_segment);
			// the last one, which the end completed, may be shorter
			if d := seg.Duration.Seconds(); d > 1.05 || (d < 0.95 && j < len(pl.Segments)-1 && (j > 0 || d < 0.45)) || d <= 0 {
				t.Errorf("%s segment %d: EXTINF %.3f", v.URI, j, d)
			}
		}
		checkRecordedVideo(t, filepath.Join(dir, filepath.FromSlash(v.URI)), pl)
		// at most the segment in progress when the encoder stopped is
		// missing
		t.Logf("%s: %d segments, %.3f s recorded of %d s published", v.URI, len(pl.Segments), total, seconds)
		if total < seconds-1.5 || total > seconds+0.5 {
			t.Errorf("%s: %.3f s recorded, published %d s", v.URI, total, seconds)
		}
	}
	checkAudio(t, filepath.Join(dir, filepath.FromSlash(*mv.Renditions[0].URI)))

	want, _ := os.ReadFile(filepath.Join(dir, record.IndexFile))
	waitFor(t, 20*time.Second, "keep_ended to end", func() bool {
		_, b := get(t, base+"index.m3u8")
		return bytes.Equal(b, want)
	})
	checkServed(t, base, dir, "")
	checkThumbnail(t, base)
	// a player that began under recordingDir goes on
	if code, b := get(t, base+"recording.d/"+mv.Variants[0].URI); code != http.StatusOK || !bytes.Contains(b, []byte("#EXT-X-ENDLIST")) {
		t.Errorf("%s after keep_ended: %d\n%s", "recording.d/"+mv.Variants[0].URI, code, b)
	}

	// a new gateway on the same data serves it too
	again := startGateway(t, edit)
	checkServed(t, again.URL+"/live/rec/", dir, "")
	checkThumbnail(t, again.URL+"/live/rec/")
	if code, _ := get(t, again.URL+"/live/other/index.m3u8"); code != http.StatusNotFound {
		t.Errorf("a stream without a recording: %d, want 404", code)
	}
}

// checkRecordedVideo decodes a recorded media playlist with ffprobe: every
// segment is there and decodes, each begins with a keyframe (one a second),
// and the frames add up to the playlist's length at 30 fps.
func checkRecordedVideo(t *testing.T, file string, pl *playlist.Media) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "frame=key_frame", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Errorf("%s: ffprobe: %v", file, err)
		return
	}
	frames := strings.Fields(string(out))
	length := 0.0
	for _, seg := range pl.Segments {
		length += seg.Duration.Seconds()
	}
	var keys []int
	for i, f := range frames {
		if key, _, _ := strings.Cut(f, ","); key == "1" { // the first frame's line may carry more fields
			keys = append(keys, i)
		}
	}
	if len(keys) != len(pl.Segments) || len(keys) == 0 || keys[0] != 0 {
		t.Errorf("%s: keyframes at frames %v, want one at the start of each of %d segments; first frames %q",
			file, keys, len(pl.Segments), frames[:min(3, len(frames))])
	}
	if d := float64(len(frames)) / 30; d < length-0.05 || d > length+0.05 {
		t.Errorf("%s: %d frames = %.3f s at 30 fps, playlist %.3f s", file, len(frames), d, length)
	}
}

// checkThumbnail checks that base serves a JPEG thumbnail.
func checkThumbnail(t *testing.T, base string) {
	t.Helper()
	if code, jpeg := get(t, base+"thumb.jpg"); code != http.StatusOK || !bytes.HasPrefix(jpeg, []byte{0xFF, 0xD8}) {
		t.Errorf("%sthumb.jpg: %d, %.40q", base, code, jpeg)
	}
}

// checkServed checks that base serves the recording in dir under prefix:
// its multivariant playlist, every URI under prefix, and every file it
// names, byte for byte.
func checkServed(t *testing.T, base, dir, prefix string) {
	t.Helper()
	code, body := get(t, base+"index.m3u8")
	want, _ := os.ReadFile(filepath.Join(dir, record.IndexFile))
	var served, recorded playlist.Multivariant
	if code != http.StatusOK || served.Unmarshal(body) != nil || recorded.Unmarshal(want) != nil ||
		len(served.Variants) != len(recorded.Variants) || len(served.Renditions) != len(recorded.Renditions) ||
		prefix == "" && !bytes.Equal(body, want) {
		t.Fatalf("index.m3u8: %d\n%s\nwant the recording's under %q\n%s", code, body, prefix, want)
	}
	for i, v := range served.Variants {
		if v.URI != prefix+recorded.Variants[i].URI || v.Bandwidth != recorded.Variants[i].Bandwidth {
			t.Errorf("variant %d: %+v, recorded %+v", i, v, recorded.Variants[i])
		}
	}
	for i, r := range served.Renditions {
		if r.URI == nil || recorded.Renditions[i].URI == nil || *r.URI != prefix+*recorded.Renditions[i].URI {
			t.Errorf("rendition %d: %+v, recorded %+v", i, r, recorded.Renditions[i])
		}
	}
	_, media := recordedPlaylists(t, dir)
	files := 0
	for uri, pl := range media {
		names := []string{uri}
		if pl.Map != nil {
			names = append(names, path.Dir(uri)+"/"+pl.Map.URI)
		}
		for _, seg := range pl.Segments {
			names = append(names, path.Dir(uri)+"/"+seg.URI)
		}
		for _, name := range names {
			code, got := get(t, base+prefix+name)
			want, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
			if code != http.StatusOK || !bytes.Equal(got, want) {
				t.Errorf("%s: %d, %d bytes, want 200 and the %d recorded", name, code, len(got), len(want))
			}
			files++
		}
	}
	t.Logf("%s: %d files served from the recording", base, files)
}

// TestBrowserRecording: the viewer page plays the recording of a stream
// that is not live as a seekable VOD from the start, and switches to live
// when a new broadcast starts.
func TestBrowserRecording(t *testing.T) {
	needTools(t)
	data := t.TempDir()
	srv := startGateway(t, func(c *config) { c.Data = data; c.KeepEnded = duration(time.Second) })
	browser := newBrowser(t)
	pub := publish(t, srv, "vod", "640x360", 6)
	pub.finish(t)
	waitFor(t, 20*time.Second, "the recording to be served", func() bool {
		_, b := get(t, srv.URL+"/api/streams/vod")
		return bytes.Contains(b, []byte(`"recording":true`))
	})

	ctx, cancel := chromedp.NewContext(browser)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/watch/vod")); err != nil {
		t.Fatal(err)
	}
	const video = `document.getElementById("video")`
	evalUntil(t, ctx, 30*time.Second, "the recording to play", video+`.currentTime > 0.5 && window.__livegate.recording === true`)
	evalUntil(t, ctx, 5*time.Second, "a seekable VOD of about 5 s",
		`isFinite(`+video+`.duration) && `+video+`.duration > 3.5 && `+video+`.seekable.length > 0 && `+video+`.seekable.start(0) < 0.5`)
	evalUntil(t, ctx, 5*time.Second, "the state to name the recording",
		`document.getElementById("state").textContent.startsWith("Recording of vod")`)
	// seek back to the start: it plays from there
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[float64](video+`.currentTime = 0.1`)); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 15*time.Second, "playback after the seek", video+`.currentTime > 1 && !`+video+`.seeking`)
	screenshot(t, ctx, "watch-recording")

	// home lists it under the recent broadcasts
	hctx, cancelH := chromedp.NewContext(browser)
	defer cancelH()
	if err := chromedp.Do(hctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, hctx, 15*time.Second, "the recording's card on the home page", `(() => {
		const a = document.querySelector('#recordings a[href="/watch/vod"]');
		const img = a && a.querySelector("img");
		return !!img && img.complete && img.naturalWidth > 0 && !document.getElementById("past").hidden &&
			/Recorded .* · 0:0[4-7]/.test(a.textContent);
	})()`)
	screenshot(t, hctx, "home-recordings")

	// a new broadcast: the page switches to live
	publish(t, srv, "vod", "640x360", 60)
	evalUntil(t, ctx, 60*time.Second, "the page to switch to live",
		`window.__livegate.recording === false && window.__livegate.hls.levels.some(l => l.details && l.details.live) && `+
			`!document.getElementById("state").textContent.startsWith("Recording")`)
	live, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](video+`.currentTime`))
	evalUntil(t, ctx, 30*time.Second, "live playback", video+`.currentTime > `+formatFloat(live+1))
	if errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__livegate.errors`)); err != nil || len(errs) > 0 {
		t.Errorf("player errors: %v %v", errs, err)
	}
}

// TestRecordingAfterKill: a gateway killed with SIGKILL in the middle of a
// broadcast leaves its recording unfinished; the next gateway on the same
// data finishes it at its start, and serves it as a VOD that decodes.
func TestRecordingAfterKill(t *testing.T) {
	needTools(t)
	data := t.TempDir()
	cmd, addr := runGateway(t, buildGateway(t), "--data", data)
	pub := publish(t, &httptest.Server{URL: "http://" + addr}, "crash", "854x480", 30)
	// the recovery cuts every playlist to the shortest: wait for all three
	// (480p, 360p, audio) to hold 3 segments
	waitFor(t, 30*time.Second, "3 recorded segments in every playlist", func() bool {
		lists, _ := filepath.Glob(filepath.Join(data, "recordings", "crash", "*", "*", "*.m3u8"))
		for _, l := range lists {
			if b, _ := os.ReadFile(l); bytes.Count(b, []byte("#EXTINF:")) < 3 {
				return false
			}
		}
		return len(lists) >= 3
	})
	cmd.Process.Kill()
	cmd.Wait()
	pub.conn.Close()
	if metas, _ := filepath.Glob(filepath.Join(data, "recordings", "crash", "*", record.MetaFile)); len(metas) != 0 {
		t.Fatalf("a killed gateway finished its recording: %v", metas)
	}

	srv := startGateway(t, func(c *config) { c.Data = data })
	dir := finishedRecording(t, data, "crash")
	mv, media := recordedPlaylists(t, dir)
	for _, v := range mv.Variants {
		if len(media[v.URI].Segments) < 3 {
			t.Errorf("%s: %d segments recovered, want at least 3", v.URI, len(media[v.URI].Segments))
		}
		checkRecordedVideo(t, filepath.Join(dir, filepath.FromSlash(v.URI)), media[v.URI])
	}
	checkServed(t, srv.URL+"/live/crash/", dir, "")
}

// TestBrowserLiveToRecording: a viewer who watches a live to its end is
// offered its recording once it is finished, and plays it from the start.
func TestBrowserLiveToRecording(t *testing.T) {
	needTools(t)
	data := t.TempDir()
	srv := startGateway(t, func(c *config) { c.Data = data; c.KeepEnded = duration(2 * time.Second) })
	browser := newBrowser(t)
	pub := publish(t, srv, "tovod", "640x360", 8)
	for m := range pub.status {
		if m["state"] == "live" {
			break
		}
	}
	ctx, cancel := chromedp.NewContext(browser)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/watch/tovod")); err != nil {
		t.Fatal(err)
	}
	const video = `document.getElementById("video")`
	const replay = `document.getElementById("replay")`
	evalUntil(t, ctx, 30*time.Second, "the live to play", video+`.currentTime > 0.5 && window.__livegate.recording === false`)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](replay+`.hidden`)); err != nil {
		t.Fatal(err)
	}
	pub.finish(t)
	evalUntil(t, ctx, 40*time.Second, "the offer of the recording",
		`!`+replay+`.hidden && document.getElementById("state").textContent.includes("recording is ready")`)
	screenshot(t, ctx, "watch-live-ended-recording-ready")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](replay+`.click()`)); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 30*time.Second, "the recording to play from the start",
		`window.__livegate.recording === true && `+replay+`.hidden && isFinite(`+video+`.duration) && `+
			video+`.duration > 5 && `+video+`.currentTime > 0.5 && `+video+`.currentTime < 5`)
}
