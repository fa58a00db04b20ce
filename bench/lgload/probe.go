package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// listings records when each media file of a stream was first seen
// listed in a media playlist, by any client: the prober at the origin or
// a viewer. Files are keyed by URL path, which is the same through an
// edge as at the origin. Safe for concurrent use; the zero value is ready.
type listings struct {
	mu    sync.Mutex
	first map[string]time.Time
}

// note records that path was seen listed at t and returns the earliest
// time it was seen listed.
func (l *listings) note(path string, t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == nil {
		l.first = map[string]time.Time{}
	}
	if f, ok := l.first[path]; ok && !f.After(t) {
		return f
	}
	l.first[path] = t
	return t
}

// probeStats is what the prober of one stream counted. Safe for concurrent
// use.
type probeStats struct {
	mu       sync.Mutex
	requests int // playlist requests made to the origin
	parts    int // distinct parts first seen listed
	versions int // distinct playlist versions (media playlists changed)
	errors   int
	lastErr  string
	// gaps is the time between consecutive new parts of one playlist at
	// the origin, as the prober saw them: 200 ms apiece when the stream is
	// made in real time. A gap of more than 2 s is a stall of the origin
	// itself, which no edge can hide.
	gaps loadgen.Histogram
	// stalls counts those, longest the longest gap.
	stalls  int
	longest time.Duration
}

// gap records the time between two new parts of a playlist.
func (p *probeStats) gap(d time.Duration) {
	p.gaps.Record(d)
	if d > 2*time.Second {
		p.mu.Lock()
		p.stalls++
		p.longest = max(p.longest, d)
		p.mu.Unlock()
	}
}

func (p *probeStats) add(requests, parts, versions int) {
	p.mu.Lock()
	p.requests += requests
	p.parts += parts
	p.versions += versions
	p.mu.Unlock()
}

func (p *probeStats) fail(err error) {
	p.mu.Lock()
	p.errors++
	p.lastErr = err.Error()
	p.mu.Unlock()
}

// prober follows every media playlist of one stream at the origin with
// blocking reloads, as the fastest possible player would, and records
// when each part and segment is first listed (in Listed): the reference
// the viewers' delivery delays are measured from, wherever the viewers
// fetch. It fetches no media. It counts the parts listed and the playlist
// versions, which are what an edge in front of the origin should fetch
// once each.
type prober struct {
	Client *http.Client
	Index  string // the stream's multivariant playlist at the origin
	Listed *listings
	Stats  *probeStats
}

// run follows the stream until ctx ends or every playlist has ended.
func (p *prober) run(ctx context.Context) {
	_, body, _, err := loadgen.Get(ctx, p.Client, p.Index, 12*time.Second)
	p.Stats.add(1, 0, 0)
	if err != nil {
		p.Stats.fail(fmt.Errorf("probe %s: %w", p.Index, err))
		return
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(body); err != nil {
		p.Stats.fail(fmt.Errorf("probe %s: %w", p.Index, err))
		return
	}
	var wg sync.WaitGroup
	for _, u := range mediaPlaylists(&mv) {
		mu, err := loadgen.Resolve(p.Index, u)
		if err != nil {
			continue
		}
		wg.Go(func() { p.follow(ctx, mu) })
	}
	wg.Wait()
}

// mediaPlaylists returns the URIs of every media playlist of mv: each
// variant's and each rendition's that has one, once each.
func mediaPlaylists(mv *playlist.Multivariant) []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, v := range mv.Variants {
		add(v.URI)
	}
	for _, r := range mv.Renditions {
		if r.URI != nil {
			add(*r.URI)
		}
	}
	return out
}

// follow follows one media playlist with blocking reloads.
func (p *prober) follow(ctx context.Context, mediaURL string) {
	f := follower{LL: true, Back: 1 << 30} // the first reload: everything listed
	var query, last string
	var lastNew time.Time
	started := false
	for ctx.Err() == nil {
		u := mediaURL
		if query != "" {
			u += "?" + query
		}
		code, body, at, err := loadgen.Get(ctx, p.Client, u, 12*time.Second)
		p.Stats.add(1, 0, 0)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("HTTP %d", code)
		}
		if err != nil {
			if ctx.Err() == nil {
				p.Stats.fail(fmt.Errorf("probe %s: %w", u, err))
				query = ""
				loadgen.Sleep(ctx, 200*time.Millisecond)
			}
			continue
		}
		pl := &playlist.Media{}
		if err := pl.Unmarshal(body); err != nil {
			p.Stats.fail(fmt.Errorf("probe %s: %w", u, err))
			query = ""
			loadgen.Sleep(ctx, 200*time.Millisecond)
			continue
		}
		parts, versions := 0, 0
		if v := blockingQuery(pl); v != last {
			versions, last = 1, v
		}
		for _, it := range f.update(pl) {
			if path, err := itemPath(mediaURL, it.URI); err == nil {
				p.Listed.note(path, at)
			}
			if it.Part >= 0 && started { // the first reload's were made before
				parts++
			}
		}
		if parts > 0 {
			if !lastNew.IsZero() {
				p.Stats.gap(at.Sub(lastNew))
			}
			lastNew = at
		}
		started = true
		p.Stats.add(0, parts, versions)
		if pl.Endlist {
			return
		}
		if pl.PartInf == nil { // not low-latency: poll
			loadgen.Sleep(ctx, 500*time.Millisecond)
			query = ""
			continue
		}
		query = blockingQuery(pl)
	}
}

// itemPath returns the URL path of ref relative to the playlist at base:
// the key of listings.
func itemPath(base, ref string) (string, error) {
	u, err := loadgen.Resolve(base, ref)
	if err != nil {
		return "", err
	}
	pu, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	return pu.Path, nil
}
