package segmenter

import (
	"bytes"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// TestOnSegment: every segment of every finished playlist was reported
// once, in order, with its bytes, init section, duration and
// discontinuity, across a resumed transcoder run.
func TestOnSegment(t *testing.T) {
	ts := makeTS(t, "3") // twice: within the window, which Consume fills faster than real time
	for _, name := range []string{"lowlatency", "fmp4", "mpegts"} {
		variant, _ := ParseVariant(name)
		t.Run(name, func(t *testing.T) {
			reported := map[string]Segment{} // rendition/name -> segment
			last := map[string]uint64{}      // rendition/playlist -> last sequence reported
			s := &Segmenter{Names: []string{"hi", "lo"}, Variant: variant}
			mustStart(s)
			s.OnSegment = func(seg Segment) {
				key := seg.Rendition + "/" + seg.Playlist
				if prev, ok := last[key]; ok && seg.Sequence <= prev {
					t.Errorf("%s: sequence %d reported after %d", key, seg.Sequence, prev)
				}
				last[key] = seg.Sequence
				if _, dup := reported[seg.Rendition+"/"+seg.Name]; dup {
					t.Errorf("segment %s reported twice", seg.Name)
				}
				reported[seg.Rendition+"/"+seg.Name] = seg
			}
			defer s.Close()
			for run := range 2 { // the second run continues the stream
				if err := s.Consume(bytes.NewReader(ts)); err != nil {
					t.Fatalf("run %d: %v", run, err)
				}
				select {
				case <-s.Ready():
				case <-time.After(5 * time.Second):
					t.Fatal("not ready")
				}
				time.Sleep(2 * reportInterval)
			}
			s.End()
			checked, discont := 0, 0
			for _, r := range s.Renditions() {
				for _, uri := range mediaPlaylists(r.Playlist) {
					_, body := fetch(s, r.Dir+"/"+uri)
					var pl playlist.Media
					if err := pl.Unmarshal(body); err != nil {
						t.Fatalf("%s/%s: %v", r.Dir, uri, err)
					}
					for _, seg := range pl.Segments {
						_, data := fetch(s, r.Dir+"/"+seg.URI)
						got, ok := reported[r.Dir+"/"+seg.URI]
						if !ok || !bytes.Equal(got.Data, data) || got.Duration != seg.Duration || got.Discontinuity != seg.Discontinuity ||
							got.Playlist != uri {
							t.Errorf("%s/%s: reported %t, same bytes %t, duration %s want %s, discontinuity %t want %t",
								r.Dir, seg.URI, ok, bytes.Equal(got.Data, data), got.Duration, seg.Duration, got.Discontinuity, seg.Discontinuity)
						}
						if (pl.Map != nil) != (got.InitName != "" && len(got.Init) > 0) {
							t.Errorf("%s/%s: init %q (%d bytes), playlist map %v", r.Dir, seg.URI, got.InitName, len(got.Init), pl.Map)
						}
						if seg.Discontinuity {
							discont++
						}
						checked++
					}
				}
			}
			if checked < 8 || discont == 0 {
				t.Errorf("%d finished segments checked, %d discontinuities: the test saw too little", checked, discont)
			}
		})
	}
}

// BenchmarkReportRound is one round of the OnSegment reporter when no
// segment finished since the last: what recording costs every 250 ms per
// stream besides writing (two renditions and the audio here).
func BenchmarkReportRound(b *testing.B) {
	ts := makeTS(b, "6")
	n := 0
	s := &Segmenter{Names: []string{"hi", "lo"}, OnSegment: func(Segment) { n++ }}
	mustStart(s)
	defer s.Close()
	if err := s.Consume(bytes.NewReader(ts)); err != nil {
		b.Fatal(err)
	}
	<-s.Ready()
	s.stopReporting()
	s.reportSegments()
	if n == 0 {
		b.Fatal("nothing reported")
	}
	b.ResetTimer()
	for range b.N {
		s.reportSegments()
	}
}
