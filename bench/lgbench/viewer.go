package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/livegate/livegate/internal/chromium"
)

// browser is a headless Chromium. Whoever calls startBrowser must call
// close.
type browser struct {
	ctx    context.Context
	cancel func()
}

// startBrowser starts Debian's Chromium with a fresh profile in dir, at
// the CPU niceness nice (0 for the default): on a small machine the
// viewer's software decoding would otherwise take CPU from the transcoder
// under test, which in production runs on another machine.
func startBrowser(dir string, nice int) (*browser, error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return nil, fmt.Errorf("browser: %w (apt-get install -y chromium, or -skip-browser)", err)
	}
	profile, err := os.MkdirTemp(dir, "chromium-")
	if err != nil {
		return nil, fmt.Errorf("browser: %w", err)
	}
	opts := append(chromium.Options(path, profile), chromedp.WindowSize(800, 600)) // small: less compositing work
	if nice != 0 {
		nicePath, err := exec.LookPath("nice")
		if err != nil {
			return nil, fmt.Errorf("browser: %w", err)
		}
		opts = append(opts, chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{"nice", "-n", strconv.Itoa(nice), cmd.Path}, cmd.Args[1:]...)
			cmd.Path = nicePath
		}))
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	b := &browser{ctx: ctx, cancel: func() { cancel(); cancelAlloc() }}
	// The first Run binds the browser's life to its context, so it gets
	// ctx itself and is bounded from outside.
	if err := within(30*time.Second, b.cancel, func() error { return chromedp.Do(ctx) }); err != nil {
		b.close()
		return nil, fmt.Errorf("browser: start %s: %w", path, err)
	}
	return b, nil
}

// within runs f and calls cancel if f has not returned after d, which must
// make f return.
func within(d time.Duration, cancel func(), f func() error) error {
	t := time.AfterFunc(d, cancel)
	defer t.Stop()
	err := f()
	if !t.Stop() && err == nil {
		err = fmt.Errorf("timed out after %s", d)
	}
	return err
}

// close stops Chromium and waits for it.
func (b *browser) close() { b.cancel() }

// viewing is what watching a page measured.
type viewing struct {
	Distance  []float64 // seconds: hls.latency, the player's distance from the live edge
	Target    []float64 // seconds: hls.targetLatency
	Buffer    []float64 // seconds: buffered media ahead of currentTime
	Glass     []float64 // seconds: now - hls.playingDate, capture to display where the playlist's PROGRAM-DATE-TIME is the capture time
	Stalls    int       // currentTime stood still for over 1 s while not ended
	Stalled   float64   // seconds spent in those stalls
	PlayStart float64   // seconds from navigation to the first advance of currentTime; -1 if never
	Samples   int       // samples taken while playing
	Errors    []string  // fatal hls.js errors the page recorded
	Err       string    // why watching failed, if it did
}

// pageState is one sample of the page, from sampleJS.
type pageState struct {
	Latency float64  `json:"lat"`
	Target  float64  `json:"target"`
	Time    float64  `json:"t"`
	Ended   bool     `json:"ended"`
	Buffer  float64  `json:"buf"`
	Glass   float64  `json:"glass"`
	Errors  []string `json:"errors"`
}

// sampleJS reads window.__livegate: {hls, video, errors}.
const sampleJS = `(() => {
  const d = window.__livegate || {}, h = d.hls, v = d.video;
  const num = (x) => (typeof x === "number" && isFinite(x)) ? x : -1;
  return {lat: h ? num(h.latency) : -1, target: h ? num(h.targetLatency) : -1,
    glass: h && h.playingDate ? (Date.now() - h.playingDate.getTime()) / 1000 : -1,
    t: v ? v.currentTime : -1, ended: !!(v && v.ended), errors: d.errors || [],
    buf: (() => { if (!v) return -1; const b = v.buffered;
      for (let i = 0; i < b.length; i++) if (b.start(i) <= v.currentTime + 0.1 && v.currentTime <= b.end(i)) return b.end(i) - v.currentTime;
      return 0; })()};
})()`

// tuneJS wraps a snippet of JavaScript that changes the page's player: it
// runs once, with hls and video bound, as soon as the Hls instance exists,
// and the expression tells whether it has run.
func tuneJS(snippet string) string {
	return `(() => {
  const d = window.__livegate;
  if (!d || !d.hls) return false;
  if (!d.hls.__lgbenchTuned) {
    d.hls.__lgbenchTuned = true;
    ((hls, video) => { ` + snippet + `
    })(d.hls, d.video);
  }
  return true;
})()`
}

// watch opens u in a new tab of b and samples the player every 500 ms until
// ctx ends. Distance samples are taken once the video has played for skip.
// A playerJS snippet, if not "", is run on the page's player first (see
// tuneJS).
func watch(ctx context.Context, b *browser, u string, skip time.Duration, playerJS string) (viewing, error) {
	res := viewing{PlayStart: -1}
	tab, cancel := chromedp.NewContext(b.ctx)
	defer cancel()
	if err := within(15*time.Second, cancel, func() error { return chromedp.Do(tab) }); err != nil {
		return res, fmt.Errorf("viewer: new tab: %w", err)
	}
	nav, cancelNav := context.WithTimeout(tab, 15*time.Second)
	begin := time.Now()
	err := chromedp.Do(nav, chromedp.Navigate(u))
	cancelNav()
	if err != nil {
		return res, fmt.Errorf("viewer: open %s: %w", u, err)
	}
	var (
		lastT       = -1.0
		lastAdvance time.Time
		playing     time.Time // first advance
		stalled     bool
		tuned       bool
	)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if stalled {
				res.Stalled += time.Since(lastAdvance).Seconds()
			}
			return res, nil
		case <-tick.C:
		}
		ectx, cancelEval := context.WithTimeout(tab, 2*time.Second)
		if playerJS != "" && !tuned {
			tuned, err = chromedp.Run(ectx, chromedp.Evaluate[bool](tuneJS(playerJS)))
			if err != nil {
				cancelEval()
				return res, fmt.Errorf("viewer: -player-js: %w", err)
			}
		}
		st, err := chromedp.Run(ectx, chromedp.Evaluate[pageState](sampleJS))
		cancelEval()
		if err != nil {
			continue
		}
		now := time.Now()
		res.Errors = st.Errors
		if st.Time > lastT+1e-3 {
			if lastT >= 0 && playing.IsZero() {
				playing = now
				res.PlayStart = now.Sub(begin).Seconds()
			}
			if stalled {
				res.Stalled += now.Sub(lastAdvance).Seconds()
				stalled = false
			}
			lastT, lastAdvance = st.Time, now
		} else if !playing.IsZero() && !st.Ended && !stalled && now.Sub(lastAdvance) > time.Second {
			res.Stalls++
			stalled = true
		}
		if playing.IsZero() || now.Sub(playing) < skip {
			continue
		}
		res.Samples++
		if st.Latency > 0 {
			res.Distance = append(res.Distance, st.Latency)
		}
		if st.Target > 0 {
			res.Target = append(res.Target, st.Target)
		}
		if st.Buffer >= 0 {
			res.Buffer = append(res.Buffer, st.Buffer)
		}
		if st.Glass > 0 {
			res.Glass = append(res.Glass, st.Glass)
		}
	}
}
