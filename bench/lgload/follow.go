package main

import (
	"fmt"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// item is one media file a viewer fetches: a part (ll mode) or a whole
// segment (segments mode, or a segment whose parts are no longer listed).
type item struct {
	URI      string
	MSN      int
	Part     int // index in its segment, -1 for a whole segment
	Duration time.Duration
	// Edge is the media listed after this item when it was picked: its
	// distance from the live edge.
	Edge time.Duration
}

// follower decides what a player fetches next from successive reloads of
// one media playlist. It is pure: it does no I/O. The zero value is not
// ready: set LL.
type follower struct {
	// LL follows parts (low-latency); otherwise whole segments.
	LL bool
	// Back is how many parts (LL) or segments a player starts behind the
	// live edge; 3 when 0.
	Back int

	started  bool
	nextMSN  int // segment of the next item
	nextPart int // LL: index of the next part in that segment
}

// pos is a listed part or segment with its place in the playlist.
type pos struct {
	item
	gap   bool
	start time.Duration // media start from the top of the playlist
}

// listing returns what pl lists in order: in LL mode every part (a
// segment without listed parts as a whole), else every complete segment;
// and the media end of the playlist.
func listing(pl *playlist.Media, ll bool) ([]pos, time.Duration) {
	var out []pos
	var at time.Duration
	for i, s := range pl.Segments {
		msn := pl.MediaSequence + i
		if ll && len(s.Parts) > 0 && !s.Gap {
			pat := at
			for j, p := range s.Parts {
				out = append(out, pos{item: item{URI: p.URI, MSN: msn, Part: j, Duration: p.Duration}, start: pat})
				pat += p.Duration
			}
		} else {
			out = append(out, pos{item: item{URI: s.URI, MSN: msn, Part: -1, Duration: s.Duration}, gap: s.Gap, start: at})
		}
		at += s.Duration
	}
	tail := pl.MediaSequence + len(pl.Segments)
	for j, p := range pl.Parts {
		if ll {
			out = append(out, pos{item: item{URI: p.URI, MSN: tail, Part: j, Duration: p.Duration}, start: at})
		}
		at += p.Duration
	}
	return out, at
}

// update returns the items pl lists that the player has not taken yet, in
// order, with their distance from the live edge, and moves past them. The
// first call starts Back items behind the edge. Gap segments are skipped.
// A reload older than what was already taken returns nothing.
func (f *follower) update(pl *playlist.Media) []item {
	list, end := listing(pl, f.LL)
	if len(list) == 0 {
		return nil
	}
	if !f.started {
		f.started = true
		back := f.Back
		if back <= 0 {
			back = 3
		}
		first := max(len(list)-back, 0)
		for first < len(list)-1 && list[first].gap {
			first++
		}
		f.nextMSN, f.nextPart = list[first].MSN, max(list[first].Part, 0)
	}
	var out []item
	for _, p := range list {
		if p.MSN < f.nextMSN || (p.MSN == f.nextMSN && p.Part >= 0 && p.Part < f.nextPart) {
			continue
		}
		if p.Part < 0 {
			f.nextMSN, f.nextPart = p.MSN+1, 0
		} else {
			f.nextMSN, f.nextPart = p.MSN, p.Part+1
		}
		if p.gap {
			continue
		}
		it := p.item
		it.Edge = end - (p.start + p.Duration)
		out = append(out, it)
	}
	// A part index past the end of a completed segment means the next
	// segment's part 0.
	for i, s := range pl.Segments {
		if pl.MediaSequence+i == f.nextMSN && f.nextPart >= len(s.Parts) && f.nextPart > 0 {
			f.nextMSN, f.nextPart = f.nextMSN+1, 0
		}
	}
	return out
}

// blockingQuery returns the query of a low-latency blocking reload that
// asks for the part after the last one pl lists.
func blockingQuery(pl *playlist.Media) string {
	return fmt.Sprintf("_HLS_msn=%d&_HLS_part=%d", pl.MediaSequence+len(pl.Segments), len(pl.Parts))
}

// stallClock counts stalls: periods longer than limit with no new media
// while the stream is live. The zero value is not ready: set limit and
// last (the time following began).
type stallClock struct {
	limit   time.Duration
	last    time.Time // last new media
	stalled bool      // the current gap was counted
	count   int
	longest time.Duration
}

// media records new media at t.
func (s *stallClock) media(t time.Time) {
	s.check(t)
	s.last, s.stalled = t, false
}

// check counts a stall once the gap since the last media exceeds limit.
func (s *stallClock) check(t time.Time) {
	gap := t.Sub(s.last)
	if gap > s.limit {
		if !s.stalled {
			s.count++
			s.stalled = true
		}
		s.longest = max(s.longest, gap)
	}
}
