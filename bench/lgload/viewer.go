package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// viewerStats is what one viewer measured. Safe for concurrent use.
type viewerStats struct {
	mu        sync.Mutex
	rendition string
	bytes     int64
	requests  int
	errors    int
	lastErr   string
	// The histograms are the stream's, shared by its viewers.
	media   *loadgen.Histogram // media (part, segment, init) request latency
	reloads *loadgen.Histogram // playlist request latency (blocking reloads are held)
	edge    *loadgen.Histogram // distance from the live edge at each media fetch
	// delivery is the time from a file's first listing (by anyone, see
	// listings) to the end of its download, for the files that appeared
	// after the viewer's first playlist (the stream's, shared).
	delivery  *loadgen.Histogram
	delivered int            // files timed in delivery
	late      int            // of them, later than the viewer's Late
	stalls    stallClock     // the video track's
	astalls   stallClock     // the audio track's, when followed apart
	cache     map[string]int // X-Cache response headers (an edge's HIT, MISS...)
	ended     bool
}

// totals returns bytes and requests so far.
func (v *viewerStats) totals() (int64, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bytes, v.requests
}

// viewer plays one stream as an HLS player would: the variant it picks
// and, as players do, the audio rendition that variant names, each
// followed on its own.
type viewer struct {
	Client *http.Client
	Index  string // absolute URL of the multivariant playlist
	Pick   int    // picks variant Pick modulo their number
	LL     bool   // follow parts with blocking reloads; else poll segments
	Audio  bool   // also follow the variant's audio rendition, if it has its own playlist
	// Listed, if set, is where the stream's listings are noted and read:
	// each file's delivery delay is measured from its first listing.
	Listed *listings
	Late   time.Duration // a delivery slower than this counts as late
	Stats  *viewerStats
}

// get fetches u, reads the body and records the request. It returns the
// body when keep is true.
func (v *viewer) get(parent context.Context, u string, timeout time.Duration, lat *loadgen.Histogram, keep bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	var body []byte
	var n int64
	var xcache string
	resp, err := v.Client.Do(req)
	if err == nil {
		xcache = resp.Header.Get("X-Cache")
		if keep {
			body, err = io.ReadAll(io.LimitReader(resp.Body, 8<<20))
			n = int64(len(body))
		} else {
			n, err = io.Copy(io.Discard, resp.Body)
		}
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
	}
	d := time.Since(t0)
	v.Stats.mu.Lock()
	defer v.Stats.mu.Unlock()
	if err != nil {
		if parent.Err() != nil {
			return nil, fmt.Errorf("get %s: %w", u, parent.Err()) // stopping is no error
		}
		v.Stats.errors++
		v.Stats.lastErr = fmt.Sprintf("get %s: %v", u, err)
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	v.Stats.requests++
	v.Stats.bytes += n
	if xcache != "" {
		if v.Stats.cache == nil {
			v.Stats.cache = map[string]int{}
		}
		v.Stats.cache[xcache]++
	}
	lat.Record(d)
	return body, nil
}

// run plays until ctx ends or the playlists end. Every request has a
// deadline and failures are retried after a pause, so it always returns
// soon after ctx ends.
func (v *viewer) run(ctx context.Context) error {
	body, err := v.get(ctx, v.Index, 12*time.Second, v.Stats.reloads, true)
	if err != nil {
		return fmt.Errorf("viewer: multivariant: %w", err)
	}
	var mv playlist.Multivariant
	if err := mv.Unmarshal(body); err != nil {
		return fmt.Errorf("viewer: multivariant %s: %w", v.Index, err)
	}
	if len(mv.Variants) == 0 {
		return fmt.Errorf("viewer: multivariant %s: no variant", v.Index)
	}
	variant := mv.Variants[v.Pick%len(mv.Variants)]
	mediaURL, err := loadgen.Resolve(v.Index, variant.URI)
	if err != nil {
		return err
	}
	audioURL := ""
	if a := audioPlaylist(&mv, variant); v.Audio && a != "" && a != variant.URI {
		if audioURL, err = loadgen.Resolve(v.Index, a); err != nil {
			return err
		}
	}
	v.Stats.mu.Lock()
	v.Stats.rendition = variant.URI
	v.Stats.stalls = stallClock{limit: 2 * time.Second, last: time.Now()}
	v.Stats.astalls = stallClock{limit: 2 * time.Second, last: time.Now()}
	v.Stats.mu.Unlock()
	if audioURL == "" {
		return v.follow(ctx, mediaURL, &v.Stats.stalls)
	}
	var wg sync.WaitGroup
	var aerr error
	wg.Go(func() { aerr = v.follow(ctx, audioURL, &v.Stats.astalls) })
	err = v.follow(ctx, mediaURL, &v.Stats.stalls)
	wg.Wait()
	if err == nil {
		err = aerr
	}
	return err
}

// audioPlaylist returns the URI of the audio rendition variant plays with
// (its group's default, else the group's first), or "" when the audio is
// in the variant's own segments.
func audioPlaylist(mv *playlist.Multivariant, variant *playlist.MultivariantVariant) string {
	if variant.Audio == "" {
		return ""
	}
	uri := ""
	for _, r := range mv.Renditions {
		if r.Type != playlist.MultivariantRenditionTypeAudio || r.GroupID != variant.Audio || r.URI == nil || *r.URI == "" {
			continue
		}
		if r.Default {
			return *r.URI
		}
		if uri == "" {
			uri = *r.URI
		}
	}
	return uri
}

// follow plays one media playlist until ctx ends or the playlist ends,
// counting stalls on clock (guarded by Stats.mu).
func (v *viewer) follow(ctx context.Context, mediaURL string, clock *stallClock) error {
	f := follower{LL: v.LL}
	var query string
	var initDone, started bool
	var prev []byte
	for ctx.Err() == nil {
		u := mediaURL
		if query != "" {
			u += "?" + query
		}
		body, err := v.get(ctx, u, 10*time.Second, v.Stats.reloads, true)
		if err != nil {
			query = ""
			loadgen.Sleep(ctx, 500*time.Millisecond)
			continue
		}
		listedAt := time.Now()
		pl := &playlist.Media{} // Unmarshal appends: a fresh value every time
		if err := pl.Unmarshal(body); err != nil {
			v.Stats.mu.Lock()
			v.Stats.errors++
			v.Stats.lastErr = fmt.Sprintf("viewer: playlist %s: %v", u, err)
			v.Stats.mu.Unlock()
			query = ""
			loadgen.Sleep(ctx, 500*time.Millisecond)
			continue
		}
		if !initDone && pl.Map != nil {
			if mu, err := loadgen.Resolve(mediaURL, pl.Map.URI); err == nil {
				_, err = v.get(ctx, mu, 5*time.Second, v.Stats.media, false)
				initDone = err == nil
			}
		}
		for _, it := range f.update(pl) {
			mu, err := loadgen.Resolve(mediaURL, it.URI)
			if err != nil {
				continue
			}
			// the first playlist's files were listed before this viewer came
			var listed time.Time
			if v.Listed != nil && started {
				if path, err := itemPath(mediaURL, it.URI); err == nil {
					listed = v.Listed.note(path, listedAt)
				}
			}
			if _, err := v.get(ctx, mu, 5*time.Second, v.Stats.media, false); err != nil {
				continue
			}
			now := time.Now()
			v.Stats.mu.Lock()
			v.Stats.edge.Record(it.Edge)
			clock.media(now)
			if !listed.IsZero() && v.Stats.delivery != nil {
				d := now.Sub(listed)
				v.Stats.delivery.Record(d)
				v.Stats.delivered++
				if v.Late > 0 && d > v.Late {
					v.Stats.late++
				}
			}
			v.Stats.mu.Unlock()
		}
		started = true
		v.Stats.mu.Lock()
		clock.check(time.Now())
		v.Stats.mu.Unlock()
		if pl.Endlist {
			v.Stats.mu.Lock()
			v.Stats.ended = true
			v.Stats.mu.Unlock()
			return nil
		}
		switch {
		case v.LL && pl.PartInf != nil:
			query = blockingQuery(pl)
		case string(body) == string(prev):
			// unchanged: wait half a target duration (RFC 8216 6.3.4)
			loadgen.Sleep(ctx, time.Duration(max(pl.TargetDuration, 1))*time.Second/2)
		default:
			loadgen.Sleep(ctx, time.Duration(max(pl.TargetDuration, 1))*time.Second)
		}
		prev = body
	}
	return nil
}
