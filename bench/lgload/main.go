// Command lgload loads a livegate gateway with many publishers, HLS
// viewers and chat clients at once and reports what each saw: publisher
// speed, viewer bytes/s, requests/s, request latency (p50/p99), stalls and
// distance from the live edge, chat deliveries and their latency, plus the
// gateway's CPU and memory when its pid is given.
//
//	lgload -url http://127.0.0.1:8080 -publishers 2 -viewers 20 -chat 50 -chat-rate 5 -duration 30s -json out.json
//
// Viewers play as players do (a variant and its audio rendition; parts
// and blocking reloads with -mode ll). A prober follows every media
// playlist of each stream at the origin with blocking reloads and notes
// when each part is first listed: each viewer's delivery delay of a part
// is the time from that listing to the end of its download. With -origin,
// the publishers and the prober use the origin (the gateway) while the
// viewers and chat clients use -url (an edge, or another gateway of the
// cluster); with -publish=false the streams are someone else's.
//
// With -bench-get it is instead a plain HTTP load generator: C concurrent
// keep-alive clients fetch the URLs of a list, round-robin, for a duration.
//
// It only talks to loopback hosts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// config is what the flags set.
type config struct {
	URL         string        // gateway base URL, loopback only
	Origin      string        // the gateway publishers and the prober use; default URL
	Publish     bool          // start the publishers (else the streams must be live)
	Audio       bool          // viewers follow the audio rendition too
	Probe       bool          // run the prober (listing times, parts and versions at the origin)
	Late        time.Duration // a part delivered later than this after its listing is late
	Publishers  int           // streams load0..N-1 (Prefix0..)
	Viewers     int           // HLS viewers per stream
	Duration    time.Duration // how long viewers watch
	Mode        string        // "ll" or "segments"
	Replay      string        // a recorded WebM to publish instead of the test pattern
	JSON        string        // where to write the report
	Size        string        // WxH of the test pattern
	GatewayPID  int           // read the gateway's CPU and memory from /proc
	FFmpeg      string        // ffmpeg binary
	Prefix      string        // stream name prefix
	StartWait   time.Duration // how long a stream may take to become playable
	BenchGet    string        // file of URLs: run the plain GET load instead
	Concurrency int           // -bench-get clients
	Chat        int           // chat clients per stream, in the stream's room
	ChatRate    float64       // chat messages per second in all, per room
	Key         string        // publish key, when the gateway requires one
}

// Chat limits: clients per room and in all (one socket each), and the
// total message rate of one room.
const (
	maxChatPerStream = 10000
	maxChatClients   = 20000
	maxChatRate      = 1000
	// gatewayChatRate is the gateway's default chat_rate_per_second: a
	// client sending faster is answered rate_limited.
	gatewayChatRate = 5
)

// parseFlags reads args into a config and validates it.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("lgload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "gateway base URL (loopback hosts only): viewers and chat clients")
	fs.StringVar(&c.Origin, "origin", "", "the gateway the publishers publish to and the prober reads listings from, when -url is an edge or another gateway (default -url)")
	fs.BoolVar(&c.Publish, "publish", true, "start the publishers; with -publish=false the streams PREFIX0..N-1 must already be live (published by another lgload)")
	fs.BoolVar(&c.Audio, "audio", true, "viewers also follow the audio rendition of their variant, as players do")
	fs.BoolVar(&c.Probe, "probe", true, "follow each stream's playlists at the origin with blocking reloads (4 to 8 requests/s per playlist) for the delivery delays and the counts of parts and playlist versions; -probe=false for a publisher-only run")
	fs.DurationVar(&c.Late, "late", 250*time.Millisecond, "a part delivered later than this after its first listing counts as late")
	fs.IntVar(&c.Publishers, "publishers", 1, "publishers, on streams PREFIX0..N-1")
	fs.IntVar(&c.Viewers, "viewers", 10, "HLS viewers per stream")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long viewers watch (or -bench-get runs)")
	fs.StringVar(&c.Mode, "mode", "ll", "viewer behaviour: ll (parts, blocking reloads) or segments (poll, whole segments)")
	fs.StringVar(&c.Replay, "replay", "", "publish this recorded WebM, looped in real time (remuxed by ffmpeg -c copy), instead of a test pattern")
	fs.StringVar(&c.JSON, "json", "", "write the JSON report to this file")
	fs.StringVar(&c.Size, "size", "1280x720", "test pattern size WxH")
	fs.IntVar(&c.GatewayPID, "gateway-pid", 0, "gateway pid: report its CPU and memory (and its ffmpeg children's) from /proc (Linux only)")
	fs.StringVar(&c.FFmpeg, "ffmpeg", "ffmpeg", "ffmpeg binary")
	fs.StringVar(&c.Prefix, "prefix", "load", "stream name prefix")
	fs.DurationVar(&c.StartWait, "start-wait", 30*time.Second, "how long each stream may take to become playable")
	fs.StringVar(&c.BenchGet, "bench-get", "", "file of URLs (one a line): fetch them with -concurrency clients for -duration instead")
	fs.IntVar(&c.Concurrency, "concurrency", 50, "-bench-get: concurrent keep-alive clients")
	fs.StringVar(&c.Key, "key", os.Getenv("LIVEGATE_PUBLISH_KEY"), "publish key sent as ?key= (default $LIVEGATE_PUBLISH_KEY, so it stays off the command line)")
	fs.IntVar(&c.Chat, "chat", 0, "chat clients per stream: they join /chat/{stream} while the viewers watch")
	fs.Float64Var(&c.ChatRate, "chat-rate", 2, "chat messages per second in all per room, sent evenly by its -chat clients, each carrying its send time")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("lgload: unexpected argument %q", fs.Arg(0))
	}
	return c, c.validate()
}

// sizeRE matches a WxH size.
var sizeRE = regexp.MustCompile(`^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$`)

// prefixRE matches a stream name prefix that leaves room for the index.
var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,60}$`)

// validate checks the values and names the flag at fault.
func (c config) validate() error {
	if c.BenchGet != "" {
		if c.Concurrency < 1 || c.Concurrency > 10000 {
			return fmt.Errorf("lgload: -concurrency %d: want 1 to 10000", c.Concurrency)
		}
		if c.Duration <= 0 || c.Duration > time.Hour {
			return fmt.Errorf("lgload: -duration %s: want more than 0 and at most 1h", c.Duration)
		}
		return nil
	}
	if _, err := loadgen.CheckURL(c.URL, "http"); err != nil {
		return fmt.Errorf("lgload: -url: %w", err)
	}
	if c.Origin != "" {
		if _, err := loadgen.CheckURL(c.Origin, "http"); err != nil {
			return fmt.Errorf("lgload: -origin: %w", err)
		}
	}
	switch {
	case c.Late < 0:
		return fmt.Errorf("lgload: -late %s: want 0 or more", c.Late)
	case c.Publishers < 1 || c.Publishers > 100:
		return fmt.Errorf("lgload: -publishers %d: want 1 to 100", c.Publishers)
	case c.Viewers < 0 || c.Viewers > 10000:
		return fmt.Errorf("lgload: -viewers %d: want 0 to 10000", c.Viewers)
	case c.Duration <= 0 || c.Duration > time.Hour:
		return fmt.Errorf("lgload: -duration %s: want more than 0 and at most 1h", c.Duration)
	case c.Mode != "ll" && c.Mode != "segments":
		return fmt.Errorf("lgload: -mode %q: want ll or segments", c.Mode)
	case !sizeRE.MatchString(c.Size):
		return fmt.Errorf("lgload: -size %q: want WxH", c.Size)
	case !prefixRE.MatchString(c.Prefix):
		return fmt.Errorf("lgload: -prefix %q: want 1 to 60 of A-Z a-z 0-9 _ -", c.Prefix)
	case c.StartWait <= 0 || c.StartWait > 5*time.Minute:
		return fmt.Errorf("lgload: -start-wait %s: want more than 0 and at most 5m", c.StartWait)
	case c.Chat < 0 || c.Chat > maxChatPerStream:
		return fmt.Errorf("lgload: -chat %d: want 0 to %d", c.Chat, maxChatPerStream)
	case c.Chat*c.Publishers > maxChatClients:
		return fmt.Errorf("lgload: -chat %d x -publishers %d: at most %d chat clients in all", c.Chat, c.Publishers, maxChatClients)
	case c.ChatRate < 0 || c.ChatRate > maxChatRate:
		return fmt.Errorf("lgload: -chat-rate %g: want 0 to %d messages per second", c.ChatRate, maxChatRate)
	}
	if c.Replay != "" {
		if _, err := os.Stat(c.Replay); err != nil {
			return fmt.Errorf("lgload: -replay: %w", err)
		}
	}
	return nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.BenchGet != "" {
		err = runBenchGet(ctx, cfg, os.Stdout, os.Stderr)
	} else {
		err = runLoad(ctx, cfg, os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
