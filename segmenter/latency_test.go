package segmenter

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// TestOfferHoldBack: the PART-HOLD-BACK attribute is replaced, whatever
// its length, and a playlist without one is left alone.
func TestOfferHoldBack(t *testing.T) {
	cases := []struct {
		holdBack time.Duration
		in, want string
	}{
		{800 * time.Millisecond, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.50000,CAN-SKIP-UNTIL=6.00000\n",
			"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.80000,CAN-SKIP-UNTIL=6.00000\n"},
		{12 * time.Second, "#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=0.50000\n#EXTINF:1,\n",
			"#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=12.00000\n#EXTINF:1,\n"},
		{time.Second, "#EXTM3U\n#EXT-X-TARGETDURATION:1\n", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n"},
	}
	for _, c := range cases {
		s := &Segmenter{PartHoldBack: c.holdBack}
		mustStart(s)
		if got := string(s.offerHoldBack([]byte(c.in))); got != c.want {
			t.Errorf("%s: %q, want %q", c.holdBack, got, c.want)
		}
	}
	if err := (&Segmenter{PartHoldBack: 300 * time.Millisecond}).Start(); err == nil {
		t.Error("a PART-HOLD-BACK under twice the part duration was accepted")
	}
}

// TestCaptureDates: the live playlists offer the configured PART-HOLD-BACK
// and date segments by the capture clock, media time after it.
func TestCaptureDates(t *testing.T) {
	ts := makeTS(t, "4")
	for _, c := range []struct {
		name    string
		capture CaptureClock
	}{
		{"captured", func() (time.Time, bool) { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), true }},
		{"uncaptured", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Segmenter{Names: []string{"hi", "lo"}, PartHoldBack: 700 * time.Millisecond}
			mustStart(s)
			defer s.Close()
			before := time.Now()
			if err := s.ConsumeCaptured(bytes.NewReader(ts), c.capture); err != nil {
				t.Fatal(err)
			}
			<-s.Ready()
			_, body := fetch(s, "hi/video1_stream.m3u8")
			if !strings.Contains(string(body), "PART-HOLD-BACK=0.70000,") {
				t.Errorf("playlist does not offer PART-HOLD-BACK=0.7:\n%s", body)
			}
			var pl playlist.Media
			if err := pl.Unmarshal(body); err != nil {
				t.Fatal(err)
			}
			var dated []*playlist.MediaSegment
			for _, seg := range pl.Segments {
				if seg.DateTime != nil {
					dated = append(dated, seg)
				}
			}
			if len(dated) == 0 {
				t.Fatalf("no #EXT-X-PROGRAM-DATE-TIME:\n%s", body)
			}
			for _, seg := range dated {
				if c.capture == nil {
					if seg.DateTime.Before(before.Add(-time.Second)) || seg.DateTime.After(time.Now()) {
						t.Errorf("%s dated %s, not when it was segmented", seg.URI, seg.DateTime)
					}
					continue
				}
				zero, _ := c.capture()
				off := seg.DateTime.Sub(zero)
				// segments start at whole seconds of media
				if r := off % time.Second; off < time.Second || off > 4*time.Second || (r > 50*time.Millisecond && r < 950*time.Millisecond) {
					t.Errorf("%s dated %s: %s after capture zero, want whole seconds of media", seg.URI, seg.DateTime, off)
				}
			}
		})
	}
}
