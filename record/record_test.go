package record

import (
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func seg(seq uint64, ms int, init string, discont bool) Segment {
	s := Segment{Rendition: "720p", Playlist: "video1_stream.m3u8", Sequence: seq,
		File:     File{"p_video1_seg" + string(rune('a'+seq)) + ".mp4", []byte{byte(seq)}},
		Duration: time.Duration(ms) * time.Millisecond, Discontinuity: discont}
	if init != "" {
		s.Init = File{init, []byte("init " + init)}
	}
	return s
}

func add(w *Writer, s Segment) { w.Add(s) }

func newStore(t *testing.T, keep int) *Store {
	t.Helper()
	st := &Store{Dir: filepath.Join(t.TempDir(), "recordings"), Keep: keep}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	return st
}

var start = time.Date(2026, 12, 1, 8, 45, 0, 0, time.UTC)

func TestPlaylists(t *testing.T) {
	cases := []struct {
		name string
		segs []Segment
	}{
		{"plain", []Segment{seg(7, 1000, "i.mp4", false), seg(8, 1000, "i.mp4", false), seg(9, 1033, "i.mp4", false)}},
		// the first segment of a resumed run; one at the start is not marked
		{"resumed", []Segment{seg(0, 1000, "i.mp4", true), seg(1, 1000, "i.mp4", false), seg(2, 1000, "i.mp4", true), seg(3, 1000, "i.mp4", false)}},
		// a late keyframe: the header is rewritten with a larger target
		{"long segment", []Segment{seg(0, 1000, "i.mp4", false), seg(1, 2400, "i.mp4", false), seg(2, 1000, "i.mp4", false)}},
		{"new init section", []Segment{seg(0, 1000, "a.mp4", false), seg(1, 1000, "b.mp4", true)}},
		{"mpegts", []Segment{seg(0, 1000, "", false), seg(1, 1000, "", false)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := newStore(t, 5)
			w, err := st.Create("s", start, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.segs {
				add(w, s)
			}
			if err := w.Err(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(w.Dir(), "720p", "video1_stream.m3u8")
			event, _ := os.ReadFile(path)
			rec, err := w.Finish([]byte("#EXTM3U\n"), []Rendition{{Name: "720p", Width: 1280, Height: 720, Bandwidth: 1}}, start.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			vod, _ := os.ReadFile(path)
			golden := filepath.Join("testdata", strings.ReplaceAll(c.name, " ", "_")+".m3u8")
			if *update {
				os.WriteFile(golden, vod, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(vod) != string(want) {
				t.Errorf("finished playlist:\n%s\nwant:\n%s", vod, want)
			}
			// appending while live gave the same playlist, as an EVENT
			asEvent := strings.Replace(strings.TrimSuffix(string(vod), "#EXT-X-ENDLIST\n"), "TYPE:VOD", "TYPE:EVENT", 1)
			if string(event) != asEvent {
				t.Errorf("live playlist:\n%s\nwant:\n%s", event, asEvent)
			}
			var pl playlist.Media
			if err := pl.Unmarshal(vod); err != nil || !pl.Endlist || len(pl.Segments) != len(c.segs) {
				t.Fatalf("parse: %v, endlist %t, %d segments", err, pl.Endlist, len(pl.Segments))
			}
			var total float64
			for i, s := range c.segs {
				total += s.Duration.Seconds()
				data, err := os.ReadFile(filepath.Join(w.Dir(), "720p", s.File.Name))
				if err != nil || data[0] != byte(s.Sequence) || pl.Segments[i].URI != s.File.Name {
					t.Errorf("segment %d: %v %v %s", i, err, data, pl.Segments[i].URI)
				}
				if d := pl.Segments[i].Duration - s.Duration; d < -time.Microsecond || d > time.Microsecond {
					t.Errorf("segment %d: EXTINF %s, want %s", i, pl.Segments[i].Duration, s.Duration)
				}
			}
			if rec.Duration != total || rec.StartedAt != start {
				t.Errorf("meta: %+v, want duration %v", rec.Meta, total)
			}
			latest, err := st.Latest("s")
			if err != nil || latest.Dir() != w.Dir() || latest.Renditions[0].Height != 720 || latest.Duration != total {
				t.Errorf("latest: %+v %v", latest, err)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	st := newStore(t, 2)
	var dirs []string
	for i, at := range []time.Time{start, start.Add(time.Hour), start.Add(time.Hour), start.Add(2 * time.Hour)} {
		w, err := st.Create("s", at, false)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, filepath.Base(w.Dir()))
		add(w, seg(uint64(i), 1000, "i.mp4", false))
		if _, err := w.Finish(nil, nil, at); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"20261201T084500Z", "20261201T094500Z", "20261201T094500Z-1", "20261201T104500Z"}
	if strings.Join(dirs, " ") != strings.Join(want, " ") {
		t.Errorf("directories %v, want %v", dirs, want)
	}
	left := recordings(filepath.Join(st.Dir, "s"))
	if strings.Join(left, " ") != strings.Join(want[2:], " ") {
		t.Errorf("kept %v, want the newest two %v", left, want[2:])
	}
	// a recording in progress is not served; the newest finished one is
	if _, err := st.Create("s", start.Add(3*time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Latest("s"); err != nil || filepath.Base(r.Dir()) != want[3] {
		t.Errorf("latest: %v %v, want %s", r, err, want[3])
	}
	if _, err := st.Latest("other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("latest of a stream never recorded: %v", err)
	}
}

func TestEmptyAndFailed(t *testing.T) {
	st := newStore(t, 5)
	w, _ := st.Create("empty", start, false)
	if _, err := w.Finish(nil, nil, start); !errors.Is(err, ErrEmpty) {
		t.Errorf("finish without segments: %v", err)
	}
	if _, err := os.Stat(w.Dir()); !os.IsNotExist(err) {
		t.Errorf("empty recording left behind: %v", err)
	}

	// a disk error stops the recording, and only it
	w, _ = st.Create("full", start, false)
	if err := os.WriteFile(filepath.Join(w.Dir(), "720p"), nil, 0o644); err != nil { // the rendition directory cannot be made
		t.Fatal(err)
	}
	add(w, seg(0, 1000, "i.mp4", false))
	add(w, seg(1, 1000, "i.mp4", false))
	if w.Err() == nil {
		t.Fatal("no error")
	}
	if _, err := w.Finish(nil, nil, start); err == nil {
		t.Error("a failed recording finished")
	}
	if _, err := st.Latest("full"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed recording is served: %v", err)
	}
}

func TestNames(t *testing.T) {
	st := newStore(t, 5)
	for _, name := range []string{"", "../x", "a/b", strings.Repeat("a", 65)} {
		if _, err := st.Create(name, start, false); err == nil {
			t.Errorf("create %q: no error", name)
		}
	}
	w, _ := st.Create("s", start, false)
	bad := seg(0, 1000, "i.mp4", false)
	bad.File.Name = "../../escape.mp4"
	add(w, bad)
	if w.Err() == nil {
		t.Error("a segment name with .. was written")
	}

	w, _ = st.Create("t", start, false)
	add(w, seg(0, 1000, "i.mp4", false))
	rec, err := w.Finish([]byte("#EXTM3U\n"), nil, start)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(st.Dir, "secret"), []byte("x"), 0o644)
	cases := []struct {
		file string
		code int
	}{
		{"720p/video1_stream.m3u8", 200},
		{"720p/" + seg(0, 0, "", false).File.Name, 200},
		{"720p/i.mp4", 200},
		{"720p/nosuch.mp4", 404},
		{"../../secret", 404},
		{"720p/../../../secret", 404},
		{"720p/.hidden", 404},
		{"recording.json", 404},
		{"a/b/c", 404},
	}
	for _, c := range cases {
		rr := httptest.NewRecorder()
		rec.ServeFile(rr, httptest.NewRequest(http.MethodGet, "/x", nil), c.file, "video/mp4")
		if rr.Code != c.code {
			t.Errorf("%s: %d, want %d", c.file, rr.Code, c.code)
		}
	}
}

// TestStreams lists the streams with recordings: directories with valid
// names only.
func TestStreams(t *testing.T) {
	st := newStore(t, 5)
	for _, name := range []string{"b", "a"} {
		if _, err := st.Create(name, start, false); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(st.Dir, "bad.name"), 0o755)
	os.WriteFile(filepath.Join(st.Dir, "file"), nil, 0o644)
	if got := strings.Join(st.Streams(), " "); got != "a b" {
		t.Errorf("streams %q, want \"a b\"", got)
	}
}

// TestAlignEnds: a rendition that finished one segment further than the
// others is cut to their end when the recording finishes.
func TestAlignEnds(t *testing.T) {
	st := newStore(t, 5)
	w, _ := st.Create("s", start, false)
	for i := range uint64(4) {
		add(w, seg(i, 1000, "i.mp4", false))
		if i < 3 {
			low := seg(i, 1000, "i.mp4", false)
			low.Rendition = "360p"
			add(w, low)
		}
	}
	if _, err := w.Finish(nil, nil, start); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"720p", "360p"} {
		var pl playlist.Media
		b, _ := os.ReadFile(filepath.Join(w.Dir(), dir, "video1_stream.m3u8"))
		if err := pl.Unmarshal(b); err != nil || len(pl.Segments) != 3 {
			t.Errorf("%s: %v, want 3 segments:\n%s", dir, err, b)
		}
	}
	if _, err := os.Stat(filepath.Join(w.Dir(), "720p", seg(3, 0, "", false).File.Name)); !os.IsNotExist(err) {
		t.Errorf("the cut segment is still on disk: %v", err)
	}
}
