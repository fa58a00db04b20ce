package segmenter

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
)

// makeTS has ffmpeg write what the transcoder writes: MPEG-TS with two
// H.264 tracks (keyframe every second) and AAC, not in real time.
func makeTS(t testing.TB, seconds string) []byte {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg missing in CI")
		}
		t.Skip("ffmpeg not installed")
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=sample_rate=48000",
		"-t", seconds, "-filter_complex", "[0:v]split=2[a][b];[b]scale=320:180[c]",
		"-map", "[a]", "-map", "[c]", "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-force_key_frames", "expr:gte(t,n_forced*1)", "-sc_threshold", "0",
		"-c:a", "aac", "-f", "mpegts", "pipe:1").Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	return out
}

func fetch(s *Segmenter, file string) (int, []byte) {
	rec := httptest.NewRecorder()
	s.Handle(rec, httptest.NewRequest(http.MethodGet, "/live/x/"+file, nil), file)
	return rec.Code, rec.Body.Bytes()
}

func TestVariants(t *testing.T) {
	ts := makeTS(t, "6")
	cases := []struct {
		variant string
		media   string // the first rendition's video playlist
		segExt  string
	}{
		{"lowlatency", "hi/video1_stream.m3u8", ".mp4"},
		{"fmp4", "hi/video1_stream.m3u8", ".mp4"},
		{"mpegts", "hi/main_stream.m3u8", ".ts"},
	}
	for _, c := range cases {
		t.Run(c.variant, func(t *testing.T) {
			v, err := ParseVariant(c.variant)
			if err != nil {
				t.Fatal(err)
			}
			s := &Segmenter{Names: []string{"hi", "lo"}, Variant: v}
			mustStart(s)
			defer s.Close()
			if err := s.Consume(bytes.NewReader(ts)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-s.Ready():
			case <-time.After(5 * time.Second):
				t.Fatal("not ready after 6 s of media")
			}
			rends := s.Renditions()
			if len(rends) != 2 || rends[0].Width != 640 || rends[1].Height != 180 {
				t.Fatalf("renditions: %+v", rends)
			}
			if code, _ := fetch(s, "hi/nosuch.mp4"); code != http.StatusNotFound {
				t.Errorf("unknown file: %d, want 404", code)
			}
			if code, _ := fetch(s, "nodir"); code != http.StatusNotFound {
				t.Errorf("file outside a rendition: %d, want 404", code)
			}
			// a player blocked on the next part when the stream ends gets the
			// finished playlist, not an error
			held := make(chan *httptest.ResponseRecorder, 1)
			var listed time.Duration // media the live playlist lists, parts included
			var inProgress []byte    // the parts of the segment in progress
			if c.variant == "lowlatency" {
				_, live := fetch(s, c.media)
				var pl playlist.Media
				if err := pl.Unmarshal(live); err != nil {
					t.Fatal(err)
				}
				for _, seg := range pl.Segments {
					if !seg.Gap {
						listed += seg.Duration
					}
				}
				for _, part := range pl.Parts {
					listed += part.Duration
					_, data := fetch(s, "hi/"+part.URI)
					inProgress = append(inProgress, data...)
				}
				next := fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", c.media, pl.MediaSequence+len(pl.Segments), len(pl.Parts))
				go func() {
					rec := httptest.NewRecorder()
					s.Handle(rec, httptest.NewRequest(http.MethodGet, "/live/x/"+next, nil), c.media)
					held <- rec
				}()
				time.Sleep(100 * time.Millisecond) // let it block
			}
			s.End()
			if c.variant == "lowlatency" {
				rec := <-held
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "#EXT-X-ENDLIST") {
					t.Errorf("held blocking reload at the end: %d %s", rec.Code, rec.Body)
				}
			}
			if after := s.Renditions(); len(after) != 2 || after[0].Playlist == nil {
				t.Fatalf("renditions after the end: %+v", after)
			}
			code, body := fetch(s, c.media)
			var pl playlist.Media
			if code != http.StatusOK || pl.Unmarshal(body) != nil || !pl.Endlist {
				t.Fatalf("final playlist: %d\n%s", code, body)
			}
			if len(pl.Segments) < 3 || pl.Segments[0].Gap {
				t.Fatalf("final playlist keeps %d segments, first gap %v", len(pl.Segments), pl.Segments[0].Gap)
			}
			var final time.Duration
			for _, seg := range pl.Segments {
				final += seg.Duration
				if !strings.HasSuffix(seg.URI, c.segExt) || len(seg.Parts) > 0 {
					t.Errorf("segment %s (parts %d)", seg.URI, len(seg.Parts))
				}
				if code, data := fetch(s, "hi/"+seg.URI); code != http.StatusOK || len(data) == 0 {
					t.Errorf("segment %s: %d, %d bytes", seg.URI, code, len(data))
				}
			}
			// what was listed live, the segment in progress included, stays
			if final < listed {
				t.Errorf("the finished playlist holds %v of media, the live one listed %v", final, listed)
			}
			if inProgress != nil {
				if _, last := fetch(s, "hi/"+pl.Segments[len(pl.Segments)-1].URI); !bytes.Equal(last, inProgress) {
					t.Errorf("the last segment (%d bytes) is not the parts of the one in progress (%d bytes)", len(last), len(inProgress))
				}
			}
		})
	}
}

func TestMarkDiscontinuities(t *testing.T) {
	seg := func(n int) []*playlist.MediaSegment {
		var out []*playlist.MediaSegment
		for range n {
			out = append(out, &playlist.MediaSegment{Duration: time.Second, URI: "s.mp4"})
		}
		return out
	}
	cases := []struct {
		name     string
		pl       playlist.Media
		at       []uint64
		marked   []int // indexes of marked segments
		sequence int   // EXT-X-DISCONTINUITY-SEQUENCE, 0 for none
	}{
		{"inside", playlist.Media{MediaSequence: 10, Segments: seg(5)}, []uint64{12}, []int{2}, 0},
		{"left the window", playlist.Media{MediaSequence: 10, Segments: seg(5)}, []uint64{5, 8, 14}, []int{4}, 2},
		{"first segment stays counted", playlist.Media{MediaSequence: 10, Segments: seg(5)}, []uint64{10}, []int{0}, 0},
		{"not yet", playlist.Media{MediaSequence: 10, Segments: seg(5)}, []uint64{15}, nil, 0},
		{"delta update", playlist.Media{MediaSequence: 10, Skip: &playlist.MediaSkip{SkippedSegments: 3}, Segments: seg(2)}, []uint64{13}, []int{0}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			markDiscontinuities(&c.pl, c.at, 0)
			var got []int
			for i, s := range c.pl.Segments {
				if s.Discontinuity {
					got = append(got, i)
				}
			}
			if len(got) != len(c.marked) || (len(got) > 0 && got[0] != c.marked[0]) {
				t.Errorf("marked %v, want %v", got, c.marked)
			}
			seq := 0
			if c.pl.DiscontinuitySequence != nil {
				seq = *c.pl.DiscontinuitySequence
			}
			if seq != c.sequence {
				t.Errorf("discontinuity sequence %d, want %d", seq, c.sequence)
			}
		})
	}
}

func TestAlignEnds(t *testing.T) {
	seg := func(uri string) *playlist.MediaSegment {
		return &playlist.MediaSegment{URI: uri, Duration: time.Second}
	}
	finals := map[string]*playlist.Media{
		"hi/v.m3u8": {MediaSequence: 7, Segments: []*playlist.MediaSegment{seg("s7.mp4"), seg("s8.mp4"), seg("last_p9.mp4")}},
		"hi/a.m3u8": {MediaSequence: 7, Segments: []*playlist.MediaSegment{seg("a7.mp4"), seg("a8.mp4"), seg("last_a9.mp4")}},
		"lo/v.m3u8": {MediaSequence: 7, Segments: []*playlist.MediaSegment{seg("s7.mp4"), seg("s8.mp4")}},
		"x/v.m3u8":  {MediaSequence: 9, Segments: []*playlist.MediaSegment{seg("s9.mp4")}},
	}
	files := map[string][]byte{"hi/s8.mp4": {1}, "hi/last_p9.mp4": {1}, "hi/last_a9.mp4": {1}, "lo/s8.mp4": {1}, "x/s9.mp4": {1}}
	alignEnds(finals, files)
	for _, file := range []string{"hi/v.m3u8", "hi/a.m3u8", "lo/v.m3u8"} {
		pl := finals[file]
		if pl == nil || len(pl.Segments) != 2 || pl.Segments[1].URI[1:] != "8.mp4" {
			t.Errorf("%s: %+v", file, pl)
		}
	}
	if finals["x/v.m3u8"] != nil {
		t.Errorf("a playlist left with no segment is kept")
	}
	want := map[string]bool{"hi/s8.mp4": true, "lo/s8.mp4": true}
	for f := range files {
		if !want[f] {
			t.Errorf("file %s of a segment cut is kept", f)
		}
	}
}

// BenchmarkLive serves the newest segment of a live (not ended) window over
// loopback HTTP, through gohlslib; the client runs in the same process.
func BenchmarkLive(b *testing.B) {
	s := &Segmenter{Names: []string{"hi", "lo"}}
	mustStart(s)
	defer s.Close()
	if err := s.Consume(bytes.NewReader(makeTS(&testing.T{}, "4"))); err != nil {
		b.Fatal(err)
	}
	<-s.Ready()
	_, media := fetch(s, "hi/video1_stream.m3u8")
	var pl playlist.Media
	if err := pl.Unmarshal(media); err != nil {
		b.Fatal(err)
	}
	file := "hi/" + pl.Segments[len(pl.Segments)-1].URI
	_, seg := fetch(s, file)
	benchGet(b, len(seg), func(w http.ResponseWriter, r *http.Request) { s.Handle(w, r, file) })
}

// benchGet has parallel keep-alive clients fetch what h serves, size bytes,
// over loopback HTTP.
func benchGet(b *testing.B, size int, h http.HandlerFunc) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	b.SetBytes(int64(size))
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 64<<10)
		for pb.Next() {
			resp, err := http.Get(srv.URL)
			if err != nil {
				b.Error(err)
				return
			}
			io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
			resp.Body.Close()
		}
	})
}

// BenchmarkConsume cuts 4 s of a two-rendition MPEG-TS into low-latency
// HLS: the gateway's own CPU per stream, most of it.
func BenchmarkConsume(b *testing.B) {
	ts := makeTS(b, "4")
	b.SetBytes(int64(len(ts)))
	for b.Loop() {
		s := &Segmenter{Names: []string{"hi", "lo"}}
		mustStart(s)
		if err := s.Consume(bytes.NewReader(ts)); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

func TestSplitAnnexB(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want [][]byte // nil: an error
	}{
		{"three-byte start codes", []byte{0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3}, [][]byte{{0x67, 1, 2}, {0x68, 3}}},
		{"four-byte start codes", []byte{0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65, 4, 5}, [][]byte{{0x67, 1}, {0x65, 4, 5}}},
		{"delimiter dropped", []byte{0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 4}, [][]byte{{0x65, 4}}},
		{"trailing zeros", []byte{0, 0, 1, 0x65, 4, 0, 0, 0, 0, 0, 1, 0x41, 7, 0}, [][]byte{{0x65, 4}, {0x41, 7}}},
		{"emulation prevention kept", []byte{0, 0, 1, 0x65, 0, 0, 3, 1, 9}, [][]byte{{0x65, 0, 0, 3, 1, 9}}},
		{"no start code", []byte{0x65, 1, 2, 3}, nil},
		{"late start code", []byte{7, 0, 0, 1, 0x65}, nil},
		{"start code only", []byte{0, 0, 0, 1}, nil},
		{"delimiter only", []byte{0, 0, 0, 1, 0x09, 0xf0}, nil},
		{"empty", nil, nil},
		{"too big", append([]byte{0, 0, 1, 0x65}, make([]byte, h264.MaxAccessUnitSize)...), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := splitAnnexB(c.in)
			if c.want == nil {
				if err == nil {
					t.Fatalf("got %x, want an error", got)
				}
				return
			}
			if err != nil || fmt.Sprintf("%x", got) != fmt.Sprintf("%x", c.want) {
				t.Fatalf("got %x, %v; want %x", got, err, c.want)
			}
		})
	}
}

// TestSplitAnnexBLikeMediacommon checks splitAnnexB against mediacommon's
// own splitting on every access unit of ffmpeg's output.
func TestSplitAnnexBLikeMediacommon(t *testing.T) {
	ts := makeTS(t, "2")
	read := func(raw bool) []string {
		rd := &mpegts.Reader{R: bytes.NewReader(ts)}
		if err := rd.Initialize(); err != nil {
			t.Fatal(err)
		}
		var aus []string
		for _, tr := range rd.Tracks() {
			if _, ok := tr.Codec.(*mpegts.CodecH264); !ok {
				continue
			}
			if raw {
				rd.OnDataMPEGxVideo(tr, func(_ int64, data []byte) error {
					au, err := splitAnnexB(data)
					aus = append(aus, fmt.Sprintf("%d %x %v", tr.PID, au, err))
					return nil
				})
			} else {
				rd.OnDataH264(tr, func(_, _ int64, au [][]byte) error {
					aus = append(aus, fmt.Sprintf("%d %x %v", tr.PID, au, nil))
					return nil
				})
			}
		}
		for rd.Read() == nil {
		}
		return aus
	}
	want, got := read(false), read(true)
	if len(want) < 100 {
		t.Fatalf("only %d access units", len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("%d access units, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("access unit %d differs:\n got %.200s\nwant %.200s", i, got[i], want[i])
		}
	}
}

// mustStart starts a Segmenter of a test, whose settings are valid.
func mustStart(s *Segmenter) {
	if err := s.Start(); err != nil {
		panic(err)
	}
}
