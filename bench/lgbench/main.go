// Command lgbench measures livegate's pipeline on loopback in one run: the
// startup from the first published byte to a playable multivariant
// playlist, the listing delay of the low-latency playlist, the distance of a
// headless Chromium hls.js player from the live edge, the CPU the gateway
// uses next to its ffmpeg, and the same latency for ffmpeg's own HLS muxer
// served as files with a plain hls.js page, side by side.
//
//	go run ./bench/lgbench -duration 30s -json report.json
//
// It publishes an ffmpeg test pattern itself, runs the gateway as a child
// process (built with go build unless -gateway names a binary), stops by
// itself and kills whatever it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// options are lgbench's flags.
type options struct {
	duration      time.Duration
	jsonPath      string
	skipBrowser   bool
	skipReference bool
	skipExternal  bool   // no pass with a default hls.js page on another origin
	gateway       string // binary; "" builds ./cmd/livegate
	config        string // gateway --config; "" for its defaults
	addr          string // a gateway already running on loopback; "" starts one
	ffmpeg        string
	codec         string   // the source of the main pass: h264 or vp8
	startupCodecs []string // other sources measured for startup only
	hlsjs         string
	join          time.Duration // viewer opens the page this long after playable
	playerJS      string        // run on both pages' hls.js; "" for none
	browserNice   int           // Chromium's CPU niceness
}

func main() {
	logf := log.New(os.Stderr, "lgbench: ", log.Lmsgprefix|log.Ltime)
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lgbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// every phase is bounded; this bounds the whole run too
	ctx, cancel := context.WithTimeout(ctx, 3*o.duration+5*time.Minute)
	defer cancel()
	rep, err := run(ctx, o, logf)
	if rep != nil {
		rep.print(os.Stdout)
		if o.jsonPath != "" {
			if werr := loadgen.WriteJSON(o.jsonPath, rep); werr != nil {
				logf.Print(werr)
				err = errors.Join(err, werr)
			}
		}
	}
	if err != nil {
		logf.Print(err)
		os.Exit(1)
	}
}

// parseFlags reads the command line.
func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("lgbench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "publishing time of each measured pass")
	fs.StringVar(&o.jsonPath, "json", "", "write the report as JSON to this file")
	fs.BoolVar(&o.skipBrowser, "skip-browser", false, "do not measure the player in Chromium")
	fs.BoolVar(&o.skipReference, "skip-reference", false, "do not measure ffmpeg's HLS muxer for reference")
	fs.BoolVar(&o.skipExternal, "skip-external", false, "do not measure the gateway's stream in a default hls.js page on another origin")
	fs.StringVar(&o.gateway, "gateway", "", "gateway binary (default: go build ./cmd/livegate into a temporary directory)")
	fs.StringVar(&o.config, "config", "", "gateway --config file (default: its embedded defaults)")
	fs.StringVar(&o.addr, "addr", "", "measure a gateway already running at this loopback HOST:PORT (no CPU figures)")
	fs.StringVar(&o.ffmpeg, "ffmpeg", "ffmpeg", "ffmpeg binary for the source and the reference")
	fs.StringVar(&o.codec, "codec", "h264", "source of the main pass: h264 (Matroska, like Chrome's webm;codecs=h264) or vp8 (WebM)")
	startup := fs.String("startup-codecs", "vp8", "comma-separated sources measured for startup only after the main pass (\"\" for none)")
	fs.DurationVar(&o.join, "join", -1, "open the viewer this long after the stream is playable (default min(6s, duration/4))")
	fs.StringVar(&o.playerJS, "player-js", "", "experiment: JavaScript run on each page's player once it exists, with hls and video bound\n(e.g. 'hls.config.maxLiveSyncPlaybackRate = 1.5')")
	fs.IntVar(&o.browserNice, "browser-nice", 10, "CPU niceness of Chromium, so that the viewer does not starve the transcoder on a small machine (0: as is)")
	fs.StringVar(&o.hlsjs, "hlsjs", "web/assets/vendor/hls.min.js", "hls.js for the reference page")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.duration < 5*time.Second || o.duration > time.Hour {
		return o, fmt.Errorf("-duration %s: want 5s to 1h", o.duration)
	}
	if o.browserNice < -20 || o.browserNice > 19 {
		return o, fmt.Errorf("-browser-nice %d: want -20 to 19", o.browserNice)
	}
	if o.join < 0 {
		o.join = min(6*time.Second, o.duration/4)
	}
	for _, c := range strings.Split(*startup, ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.startupCodecs = append(o.startupCodecs, c)
		}
	}
	for _, c := range append([]string{o.codec}, o.startupCodecs...) {
		if _, err := sourceArgs(c, 1); err != nil {
			return o, fmt.Errorf("-codec/-startup-codecs: %w", err)
		}
	}
	if o.addr != "" {
		if err := loadgen.CheckAddr(o.addr); err != nil {
			return o, fmt.Errorf("-addr: %w", err)
		}
	}
	return o, nil
}
