package segmenter

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// segments collects what OnSegment receives.
type segments struct {
	mu  sync.Mutex
	got []Segment
}

func (r *segments) add(s Segment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
}

// sequences lists the reported sequence numbers of one playlist, checking
// that none comes twice.
func (r *segments) sequences(t *testing.T, playlist string) []uint64 {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[uint64]bool{}
	var out []uint64
	for _, s := range r.got {
		if s.Rendition+"/"+s.Playlist != playlist {
			continue
		}
		if seen[s.Sequence] {
			t.Errorf("%s: segment %d reported twice", playlist, s.Sequence)
		}
		seen[s.Sequence] = true
		out = append(out, s.Sequence)
	}
	return out
}

func served(t *testing.T, s *Segmenter, file string) *playlist.Media {
	t.Helper()
	code, body := fetch(s, file)
	var pl playlist.Media
	if code != http.StatusOK || pl.Unmarshal(body) != nil {
		t.Fatalf("%s: %d\n%s", file, code, body)
	}
	return &pl
}

// hold asks for file (with a query) in a goroutine: a blocking reload.
func hold(s *Segmenter, file, query string) chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		s.Handle(rec, httptest.NewRequest(http.MethodGet, "/live/x/"+file+"?"+query, nil), file)
		done <- rec
	}()
	return done
}

func answer(t *testing.T, what string, c chan *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	t.Helper()
	select {
	case rec := <-c:
		return rec
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer in 10 s", what)
		return nil
	}
}

// TestContinue moves a stream from one segmenter to another, as a gateway
// handing a stream to another does: the second one's media sequence
// numbers go on after the first one's segment in progress, its first
// segment is a discontinuity after the earlier ones, its gap segments are
// left out, a player blocked on the first one's next part is answered at
// once, its own blocking reloads work in its numbers, and its finished
// playlists and recorded segments keep those numbers.
func TestContinue(t *testing.T) {
	ts := makeTS(t, "5")
	const media = "hi/video1_stream.m3u8"
	var recA, recB segments
	a := &Segmenter{Names: []string{"hi", "lo"}, OnSegment: recA.add}
	mustStart(a)
	defer a.Close()
	if err := a.Consume(bytes.NewReader(ts)); err != nil {
		t.Fatal(err)
	}
	<-a.Ready()
	plA := served(t, a, media)
	inProgress := uint64(plA.MediaSequence + len(plA.Segments))
	blocked := hold(a, media, fmt.Sprintf("_HLS_msn=%d&_HLS_part=%d", inProgress, len(plA.Parts)))
	time.Sleep(100 * time.Millisecond) // held until Stop; if it is not held yet, it is answered 404
	cont, ok := a.Stop()
	if !ok || cont.Sequence != inProgress+1 || cont.Discontinuities != 0 || cont.Time <= 0 {
		t.Fatalf("Stop: %+v %v; the segment in progress was %d", cont, ok, inProgress)
	}
	if rec := answer(t, "blocked on the stopped segmenter", blocked); rec.Code == http.StatusOK {
		t.Errorf("a reload held when the segmenter stopped got 200 (an end?), want an error:\n%s", rec.Body)
	}
	if code, _ := fetch(a, media); code != http.StatusNotFound {
		t.Errorf("stopped segmenter serves its playlist: %d", code)
	}
	if got := recA.sequences(t, media); len(got) == 0 || got[len(got)-1] >= inProgress {
		t.Errorf("first segmenter reported %v, want the finished segments before %d", got, inProgress)
	}

	cont.Discontinuities = 2 // as if it had resumed twice before
	b := &Segmenter{Names: []string{"hi", "lo"}, Continue: &cont, OnSegment: recB.add}
	mustStart(b)
	defer b.Close()
	if err := b.Consume(bytes.NewReader(ts)); err != nil {
		t.Fatal(err)
	}
	<-b.Ready()
	if b.MediaTime() <= time.Duration(cont.Time)*time.Second/90000 {
		t.Errorf("timestamps do not follow on: %v after %d", b.MediaTime(), cont.Time)
	}
	pl := served(t, b, media)
	if uint64(pl.MediaSequence) != cont.Sequence || len(pl.Segments) == 0 || !pl.Segments[0].Discontinuity ||
		pl.DiscontinuitySequence == nil || *pl.DiscontinuitySequence != 2 {
		body, _ := pl.Marshal()
		t.Fatalf("continued playlist does not begin at %d with a discontinuity after 2:\n%s", cont.Sequence, body)
	}
	for _, seg := range pl.Segments {
		if seg.Gap {
			t.Errorf("continued playlist lists a gap segment")
		}
	}
	if pl.ServerControl == nil || pl.ServerControl.CanSkipUntil != nil || !pl.ServerControl.CanBlockReload {
		t.Errorf("server control %+v: blocking reloads, no delta updates", pl.ServerControl)
	}
	// a player of the first segmenter, waiting for its segment in progress
	rec := answer(t, "blocked on the old segment in progress", hold(b, media, fmt.Sprintf("_HLS_msn=%d&_HLS_part=3", inProgress)))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), fmt.Sprintf("#EXT-X-MEDIA-SEQUENCE:%d", cont.Sequence)) {
		t.Errorf("old segment in progress: %d\n%s", rec.Code, rec.Body)
	}
	// a blocking reload in the continued numbers: the next part, held
	// until the end, which answers it with the finished playlist
	next := pl.MediaSequence + len(pl.Segments)
	blocked = hold(b, media, fmt.Sprintf("_HLS_msn=%d&_HLS_part=%d", next, len(pl.Parts)))
	// the part before it is there: answered at once, in served numbers
	if len(pl.Parts) > 0 {
		rec := answer(t, "a part that exists", hold(b, media, fmt.Sprintf("_HLS_msn=%d&_HLS_part=%d", next, len(pl.Parts)-1)))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), fmt.Sprintf("#EXT-X-MEDIA-SEQUENCE:%d", pl.MediaSequence)) {
			t.Errorf("blocking reload of an existing part: %d\n%s", rec.Code, rec.Body)
		}
	}
	again, ok := b.Continuity()
	if !ok || again.Sequence != uint64(next)+1 || again.Discontinuities != 3 {
		t.Errorf("continuity of the continuation: %+v, want sequence %d after 3 discontinuities", again, next+1)
	}
	time.Sleep(100 * time.Millisecond)
	b.End()
	if rec := answer(t, "blocked at the end", blocked); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "#EXT-X-ENDLIST") {
		t.Errorf("held reload at the end: %d\n%s", rec.Code, rec.Body)
	}
	final := served(t, b, media)
	if !final.Endlist || uint64(final.MediaSequence) != cont.Sequence || !final.Segments[0].Discontinuity {
		body, _ := final.Marshal()
		t.Errorf("finished playlist:\n%s", body)
	}
	got := recB.sequences(t, media)
	if len(got) != len(final.Segments) || got[0] != cont.Sequence {
		t.Errorf("recorded %v, finished playlist has %d segments from %d", got, len(final.Segments), final.MediaSequence)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Errorf("recorded sequence jumps from %d to %d", got[i-1], got[i])
		}
	}
}
