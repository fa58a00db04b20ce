package record

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testIndex = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=2000000,CODECS="avc1.64001f",RESOLUTION=1280x720
720p/video1_stream.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=600000,CODECS="avc1.64001e",RESOLUTION=640x360
360p/video1_stream.m3u8
`

// TestRecover: a gateway killed while recording leaves no recording.json;
// the next Start finishes the recording (VOD playlists cut to the same
// length, the last line the kill cut dropped, the metadata from the
// multivariant playlist), removes one with nothing to play, and leaves a
// finished one alone.
func TestRecover(t *testing.T) {
	st := newStore(t, 5)
	done, _ := st.Create("s", start.Add(-time.Hour), false)
	add(done, seg(0, 1000, "i.mp4", false))
	if _, err := done.Finish(nil, []Rendition{{Name: "720p"}}, start.Add(-time.Hour+time.Minute)); err != nil {
		t.Fatal(err)
	}
	w, _ := st.Create("s", start, true) // a private stream's
	for i := range uint64(3) {
		add(w, seg(i, 1000, "i.mp4", false))
		if i < 2 { // the kill came before 360p's third segment
			s := seg(i, 1000, "i.mp4", i == 1)
			s.Rendition = "360p"
			add(w, s)
		}
	}
	w.WriteIndex([]byte(testIndex))
	// an append cut short by the kill
	f, err := os.OpenFile(filepath.Join(w.Dir(), "360p", "video1_stream.m3u8"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("#EXTINF:1.00000,\np_video1_seg")
	f.Close()
	empty, _ := st.Create("s", start.Add(time.Hour), false) // killed before any rendition had a segment
	add(empty, seg(0, 1000, "i.mp4", false))

	st2 := &Store{Dir: st.Dir}
	if err := st2.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(empty.Dir()); !os.IsNotExist(err) {
		t.Errorf("recording without a multivariant playlist: %v, want removed", err)
	}
	r, err := st2.Latest("s")
	if err != nil {
		t.Fatalf("Latest after the restart: %v", err)
	}
	if !r.Private {
		t.Error("a private stream's recording is public once recovered")
	}
	if r.Dir() != w.Dir() || !r.StartedAt.Equal(start) || r.Duration != 2 || r.EndedAt.IsZero() {
		t.Errorf("recovered %s: start %s, end %s, duration %g; want %s, %s, 2", r.Dir(), r.StartedAt, r.EndedAt, r.Duration, w.Dir(), start)
	}
	if len(r.Renditions) != 2 || r.Renditions[0] != (Rendition{"720p", 1280, 720, 2000000}) || r.Renditions[1] != (Rendition{"360p", 640, 360, 600000}) {
		t.Errorf("renditions %+v", r.Renditions)
	}
	for _, rend := range []string{"720p", "360p"} {
		b, err := os.ReadFile(filepath.Join(w.Dir(), rend, "video1_stream.m3u8"))
		if err != nil {
			t.Fatal(err)
		}
		pl := string(b)
		if strings.Count(pl, "#EXTINF:") != 2 || !strings.Contains(pl, "#EXT-X-PLAYLIST-TYPE:VOD\n") || !strings.HasSuffix(pl, "#EXT-X-ENDLIST\n") {
			t.Errorf("%s playlist:\n%s", rend, pl)
		}
		if rend == "360p" && !strings.Contains(pl, "#EXT-X-DISCONTINUITY\n") {
			t.Errorf("360p lost its discontinuity:\n%s", pl)
		}
	}
	if _, err := os.Stat(filepath.Join(w.Dir(), "720p", seg(2, 0, "", false).File.Name)); !os.IsNotExist(err) {
		t.Errorf("720p's third segment, cut to align the renditions: %v, want removed", err)
	}
	if _, err := os.Stat(filepath.Join(done.Dir(), MetaFile)); err != nil {
		t.Errorf("the finished recording: %v", err)
	}
}

// TestContinue: a recording one gateway finished as it handed its
// broadcast off goes on in the same directory on another gateway sharing
// the Dir: one recording, the second part after a discontinuity in each
// playlist, its duration the sum; a name the Dir does not have is
// fs.ErrNotExist.
func TestContinue(t *testing.T) {
	a := newStore(t, 5)
	w, _ := a.Create("s", start, false)
	add(w, seg(0, 1000, "a.mp4", false))
	add(w, seg(1, 1000, "a.mp4", false))
	w.WriteIndex([]byte(testIndex))
	if _, err := w.Finish(nil, []Rendition{{Name: "720p"}}, start.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}

	b := &Store{Dir: a.Dir, Shared: true}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Continue("s", "20261201T084459Z"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("continue a recording that is not there: %v, want fs.ErrNotExist", err)
	}
	w2, err := b.Continue("s", w.Name())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Latest("s"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a continued recording is still served as finished: %v", err)
	}
	add(w2, seg(5, 2000, "b.mp4", false)) // the new gateway's muxer: its own init section
	add(w2, seg(6, 1000, "b.mp4", false))
	r, err := w2.Finish(nil, []Rendition{{Name: "720p"}}, start.Add(9*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if r.Dir() != w.Dir() || r.Duration != 5 || !r.EndedAt.Equal(start.Add(9*time.Second)) {
		t.Errorf("continued recording %s, %v s, ended %v; want %s, 5 s", r.Dir(), r.Duration, r.EndedAt, w.Dir())
	}
	body, _ := os.ReadFile(filepath.Join(w.Dir(), "720p", "video1_stream.m3u8"))
	want := `#EXT-X-MAP:URI="a.mp4"
#EXTINF:1.00000,
p_video1_sega.mp4
#EXTINF:1.00000,
p_video1_segb.mp4
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="b.mp4"
#EXTINF:2.00000,
p_video1_segf.mp4
#EXTINF:1.00000,
p_video1_segg.mp4
#EXT-X-ENDLIST
`
	if !strings.HasSuffix(string(body), want) || !strings.Contains(string(body), "#EXT-X-PLAYLIST-TYPE:VOD") {
		t.Errorf("continued playlist:\n%s\nwant it to end with:\n%s", body, want)
	}
	if names := recordings(filepath.Join(a.Dir, "s")); len(names) != 1 {
		t.Errorf("recordings %v, want one", names)
	}
}

// TestSharedCutOff: a Store sharing its Dir finishes an unfinished
// recording only once nothing was written to it for CutOffAfter, and never
// one of its own Writers'.
func TestSharedCutOff(t *testing.T) {
	a := newStore(t, 5)
	other := &Store{Dir: a.Dir} // another gateway's
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	mine, _ := a.Create("mine", start, false) // idle for a minute, but a's
	add(mine, seg(0, 1000, "i.mp4", false))
	mine.WriteIndex([]byte(testIndex))
	busy, _ := other.Create("busy", start, false) // written to now
	add(busy, seg(0, 1000, "i.mp4", false))
	busy.WriteIndex([]byte(testIndex))
	idle, _ := other.Create("idle", start, false) // left a minute ago: that gateway died
	add(idle, seg(0, 1000, "i.mp4", false))
	idle.WriteIndex([]byte(testIndex))
	old := time.Now().Add(-time.Minute)
	for _, d := range []string{idle.Dir(), mine.Dir()} {
		filepath.WalkDir(d, func(path string, _ fs.DirEntry, _ error) error { return os.Chtimes(path, old, old) })
	}
	a.Shared, a.CutOffAfter = true, 30*time.Second
	a.finishCutOff(a.CutOffAfter) // as b's Start or sweep would
	for stream, finished := range map[string]bool{"mine": false, "busy": false, "idle": true} {
		if _, err := a.Latest(stream); (err == nil) != finished {
			t.Errorf("%s: finished %v, want %v", stream, err == nil, finished)
		}
	}
}
