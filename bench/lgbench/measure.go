package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// endpoint is one system under test: where the published bytes go and where
// the result is watched.
type endpoint struct {
	name string
	// send delivers one chunk of the published stream.
	send func([]byte) error
	// playable waits until the stream can be played and returns when, and
	// the URL of the media playlist to follow.
	playable func(ctx context.Context) (time.Time, string, error)
	// finish ends publishing once the source has ended.
	finish func()
	// blocking is true when the media playlist supports low-latency
	// blocking reloads.
	blocking bool
	// page is the viewer page's URL.
	page string
}

// pass is what one publishing session measured.
type pass struct {
	w0         time.Time // first byte published
	end        time.Time // publishing stopped
	steadyFrom time.Time // steady state: from startup + 3 s
	Startup    float64   // seconds from w0 to playable
	Listing    listing
	Viewing    *viewing
	Bytes      int64
	Live       float64   // seconds from w0 to the publisher's first "live" status; 0 if none
	Speeds     []float64 // transcoding speeds the publisher was told
	cpu        *cpuReport
}

// skipMedia is the media, in seconds, left out at the start of listing
// delays and of playback before player distances are sampled.
const skipMedia = 3

// passConfig says how to run one pass.
type passConfig struct {
	ffmpeg string
	codec  string        // source, see sourceArgs
	dur    time.Duration // publishing time
	// join is how long after the stream is playable the viewer opens the
	// page, so that it joins a full playlist window as later viewers do.
	join time.Duration
	// browser watches the page; nil for none.
	browser *browser
	// playerJS is run on the page's player (see tuneJS); "" for none.
	playerJS string
	// startupOnly stops publishing once the stream is playable.
	startupOnly bool
}

// measure publishes the test pattern to ep as c says, measures the startup,
// follows the media playlist and watches the page.
func measure(ctx context.Context, ep endpoint, c passConfig, logf *log.Logger) (*pass, error) {
	ffmpeg, codec, dur, b := c.ffmpeg, c.codec, c.dur, c.browser
	srcCtx, cancelSrc := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancelSrc()
	src, err := startSource(srcCtx, ffmpeg, codec, dur.Seconds())
	if err != nil {
		return nil, err
	}
	defer src.wait()
	defer cancelSrc()

	started := make(chan time.Time, 1)
	type pumped struct {
		n   int64
		err error
	}
	pumpDone := make(chan pumped, 1)
	go func() {
		n, err := pump(srcCtx, src.out, 100*time.Millisecond, ep.send, started)
		pumpDone <- pumped{n, err}
	}()
	p := &pass{}
	select {
	case p.w0 = <-started:
	case r := <-pumpDone:
		return nil, fmt.Errorf("%s: source ended before its first byte: %v", ep.name, r.err)
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("%s: no source bytes within 15 s", ep.name)
	}
	logf.Printf("%s: publishing %s for %s", ep.name, codec, dur)

	wctx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	at, media, err := ep.playable(wctx)
	cancelWait()
	if err != nil {
		return nil, fmt.Errorf("%s: not playable: %w", ep.name, err)
	}
	p.Startup = at.Sub(p.w0).Seconds()
	p.steadyFrom = at.Add(skipMedia * time.Second)
	logf.Printf("%s: playable %.2f s after the first byte", ep.name, p.Startup)
	if c.startupOnly {
		cancelSrc()
		r := <-pumpDone
		p.Bytes, p.end = r.n, time.Now()
		ep.finish()
		return p, nil
	}

	stopAt := p.w0.Add(dur)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	fctx, cancelFollow := context.WithDeadline(ctx, stopAt.Add(5*time.Second))
	defer cancelFollow()
	listed := make(chan listing, 1)
	go func() { listed <- follow(fctx, client, media, ep.blocking, p.w0, skipMedia, stopAt) }()

	type viewed struct {
		v   viewing
		err error
	}
	views := make(chan viewed, 1)
	vctx, cancelView := context.WithDeadline(ctx, stopAt)
	defer cancelView()
	if b != nil {
		go func() {
			loadgen.Sleep(vctx, time.Until(at.Add(c.join)))
			v, err := watch(vctx, b, ep.page, min(skipMedia*time.Second, dur/8), c.playerJS)
			views <- viewed{v, err}
		}()
	}

	select {
	case r := <-pumpDone:
		p.Bytes, err = r.n, r.err
	case <-time.After(time.Until(stopAt) + 20*time.Second):
		err = fmt.Errorf("source still running 20 s after its end")
	}
	p.end = time.Now()
	ep.finish()
	if err != nil {
		// stop the follower and the viewer early, but wait for them
		cancelFollow()
		cancelView()
		err = fmt.Errorf("%s: publish: %w", ep.name, err)
	} else {
		logf.Printf("%s: published %.1f MB", ep.name, float64(p.Bytes)/1e6)
	}
	if b != nil {
		r := <-views
		if r.err != nil {
			logf.Printf("%s: %v", ep.name, r.err)
			r.v.Err = r.err.Error()
		}
		p.Viewing = &r.v
	}
	p.Listing = <-listed
	if err != nil {
		return nil, err
	}
	return p, nil
}

// masterPlayable returns the playable function of a gateway stream: its
// multivariant playlist answers 200 with a variant; the media playlist to
// follow is the 720p one.
func masterPlayable(client *http.Client, u string) func(context.Context) (time.Time, string, error) {
	return func(ctx context.Context) (time.Time, string, error) {
		at, body, err := loadgen.WaitPlaylist(ctx, client, u, "#EXT-X-STREAM-INF", 20*time.Millisecond)
		if err != nil {
			return at, "", err
		}
		ref, err := variantURI(body, 720)
		if err != nil {
			return at, "", err
		}
		media, err := loadgen.Resolve(u, ref)
		return at, media, err
	}
}

// mediaPlayable returns the playable function of a plain media playlist: it
// answers 200 with a segment.
func mediaPlayable(client *http.Client, u string) func(context.Context) (time.Time, string, error) {
	return func(ctx context.Context) (time.Time, string, error) {
		at, _, err := loadgen.WaitPlaylist(ctx, client, u, "#EXTINF", 20*time.Millisecond)
		return at, u, err
	}
}
