package segmenter

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// Segment is one finished media segment, as OnSegment receives it. Names
// are relative to the rendition's directory, as in the served playlists.
type Segment struct {
	// Rendition is the rendition directory, e.g. "720p".
	Rendition string
	// Playlist is the media playlist the segment belongs to, e.g.
	// "video1_stream.m3u8" (a rendition may have an audio playlist too).
	Playlist string
	// Sequence is the segment's media sequence number.
	Sequence uint64
	// Name and Data are the segment's file name and bytes.
	Name string
	Data []byte
	// InitName and Init are the init section the segment needs (fMP4);
	// empty for MPEG-TS.
	InitName string
	Init     []byte
	// Duration is the segment's EXTINF.
	Duration time.Duration
	// Discontinuity marks the first segment of a resumed transcoder run.
	Discontinuity bool
}

// reportInterval is how often the muxers' playlists are read for finished
// segments; far below the window they stay in (SegmentCount seconds).
const reportInterval = 250 * time.Millisecond

// reporter hands finished segments to OnSegment from one goroutine.
type reporter struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
	next map[string]uint64 // rendition/playlist -> next sequence number to report
}

// startReporting starts the reporter on the first muxers; called by attach
// with s.mu held.
func (s *Segmenter) startReporting() {
	if s.OnSegment == nil || s.report != nil {
		return
	}
	s.report = &reporter{stop: make(chan struct{}), done: make(chan struct{}), next: map[string]uint64{}}
	go func() {
		defer close(s.report.done)
		t := time.NewTicker(reportInterval)
		defer t.Stop()
		for {
			select {
			case <-s.report.stop:
				return
			case <-t.C:
				s.reportSegments()
			}
		}
	}()
}

// stopReporting stops the reporter before the muxers close. End and
// Close call it; only the first call does anything.
func (s *Segmenter) stopReporting() {
	s.mu.Lock()
	rep := s.report
	s.mu.Unlock()
	if rep == nil {
		return
	}
	rep.once.Do(func() {
		close(rep.stop)
		<-rep.done
	})
}

// reportSegments hands every finished segment of the muxers not reported
// yet to OnSegment, in order per playlist. Runs on the reporter's
// goroutine.
func (s *Segmenter) reportSegments() {
	s.mu.Lock()
	var muxers []*muxer
	for _, mx := range s.muxers {
		if mx.info != nil {
			muxers = append(muxers, mx)
		}
	}
	infos := make([]*playlist.Multivariant, len(muxers))
	for i, mx := range muxers {
		infos[i] = mx.info
	}
	discont := s.discontAt
	rep := s.report
	s.mu.Unlock()
	for i, mx := range muxers {
		fetch := func(name string) ([]byte, error) { return get(mx.m, name) }
		s.reportRendition(rep, mx.dir, infos[i], fetch, discont)
	}
}

// reportFrozen hands what the muxers finished since the last round, and
// the segments the end completed, to OnSegment, from the finished playlists
// Handle serves once End froze them. End runs it last.
func (s *Segmenter) reportFrozen() {
	s.mu.Lock()
	rep, final := s.report, s.final
	s.mu.Unlock()
	if rep == nil {
		return
	}
	for _, r := range final {
		fetch := func(name string) ([]byte, error) {
			var c capture
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "/"+r.Dir+"/"+name, nil)
			s.Handle(&c, req, r.Dir+"/"+name)
			if c.code != http.StatusOK || c.body == nil {
				return nil, fmt.Errorf("finished file %s/%s: status %d", r.Dir, name, c.code)
			}
			return *c.body, nil
		}
		s.reportRendition(rep, r.Dir, r.Playlist, fetch, nil)
	}
}

// reportRendition reports the new segments of every media playlist of a
// rendition, read with fetch.
func (s *Segmenter) reportRendition(rep *reporter, dir string, info *playlist.Multivariant,
	fetch func(string) ([]byte, error), discont []uint64) {
	if info == nil {
		return
	}
	for _, uri := range mediaPlaylists(info) {
		if err := s.reportPlaylist(rep, dir, uri, fetch, discont); err != nil {
			s.Logger.Warn("report segments", "rendition", dir, "playlist", uri, "error", err)
		}
	}
}

func (s *Segmenter) reportPlaylist(rep *reporter, dir, uri string, fetch func(string) ([]byte, error), discont []uint64) error {
	body, err := fetch(uri)
	if err != nil {
		return err
	}
	var pl playlist.Media
	if err := pl.Unmarshal(body); err != nil {
		return fmt.Errorf("parse media playlist: %w", err)
	}
	key := dir + "/" + uri
	for i, seg := range pl.Segments {
		msn := uint64(pl.MediaSequence + i)
		if seg.Gap || msn < rep.next[key] {
			continue
		}
		if next := rep.next[key]; next > 0 && msn > next {
			s.Logger.Warn("segments left the window before they were reported",
				"rendition", dir, "playlist", uri, "missed", msn-next)
		}
		out := Segment{Rendition: dir, Playlist: uri, Sequence: msn, Name: stripQuery(seg.URI),
			Duration: seg.Duration, Discontinuity: seg.Discontinuity || slices.Contains(discont, msn)}
		if out.Data, err = fetch(out.Name); err != nil {
			return err
		}
		if pl.Map != nil {
			out.InitName = stripQuery(pl.Map.URI)
			if out.Init, err = fetch(out.InitName); err != nil {
				return err
			}
		}
		rep.next[key] = msn + 1
		s.OnSegment(out)
	}
	return nil
}

// ContentType is the Content-Type of a served HLS file, by its name.
func ContentType(file string) string { return contentType(file) }
