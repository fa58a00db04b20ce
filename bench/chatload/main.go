// Command chatload loads a chat server speaking livegate's /chat/{stream}
// WebSocket protocol: it connects many clients to one room, has some of them
// send messages at a fixed total rate, and measures how many deliveries
// arrive and how late. It is used by bench/chat.sh against livegate and a
// reference Node.js server.
//
// Every client joins with a unique name and reads every frame; senders put
// their send time in the message text, so each delivery's latency is
// measured on this machine's clock. -rate takes a list (for example
// "50,100,200"): each rate runs for -duration on the same connections, and
// the run stops after the first rate whose p99 exceeds -max-p99 or whose
// deliveries fall short. An empty -rate only joins the clients and measures
// the server's idle memory.
//
// -mode moderation measures instead how long one moderator's delete takes
// to reach every member of a room of -members (5,000 by default): see
// fanout.go. The moderator joins with -key (the publish key, when
// publishing is not open) or a moderate -token.
//
// Only loopback servers are accepted (-url host 127.0.0.0/8, ::1 or
// localhost), and every phase is bounded in time: the tool stops by itself.
//
// Usage:
//
//	chatload -url ws://127.0.0.1:8080/chat/bench -clients 10000 -senders 1000 \
//	    -rate 100,200,400 -duration 10s -ramp 500/s -server-pid PID -json out.json
//	chatload -mode moderation -url ws://127.0.0.1:8080/chat/bench -key KEY -members 5000 -rounds 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// maxSteps bounds the -rate list.
const maxSteps = 30

// config holds the parsed flags.
type config struct {
	url         string
	clients     int
	senders     int
	rates       []float64
	duration    time.Duration
	drain       time.Duration
	ramp        float64
	joinTimeout time.Duration
	settleMax   time.Duration
	maxP99      time.Duration
	minRatio    float64
	jsonPath    string
	serverPID   int
	pending     int
	connectMax  time.Duration
	cpuProfile  string
	mode        string // "rate" or "moderation"
	members     int
	rounds      int
	key, token  string
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.url, "url", "ws://127.0.0.1:8080/chat/bench", "chat room URL (loopback hosts only)")
	fs.IntVar(&c.clients, "clients", 1000, "clients to connect, all in the room")
	fs.IntVar(&c.senders, "senders", 100, "how many of the clients send messages")
	rate := fs.String("rate", "100", "total messages per second across senders; a comma-separated list runs steps; empty: join and measure idle memory only")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "sending time of each rate step")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "how long to wait for late deliveries after each step")
	ramp := fs.String("ramp", "500/s", "connect rate, connections per second")
	fs.DurationVar(&c.joinTimeout, "join-timeout", 120*time.Second, "per client: longest wait from dial to welcome")
	fs.DurationVar(&c.settleMax, "settle", 300*time.Second, "longest wait for the join traffic to stop before measuring idle memory")
	fs.DurationVar(&c.maxP99, "max-p99", time.Second, "a step passes when its p99 latency is at most this")
	fs.Float64Var(&c.minRatio, "min-delivered", 0.99, "a step passes when at least this fraction of expected deliveries arrive")
	fs.StringVar(&c.jsonPath, "json", "", "write the report as JSON to this file")
	fs.IntVar(&c.serverPID, "server-pid", 0, "server process to sample RSS and CPU of (optional)")
	fs.DurationVar(&c.connectMax, "connect-max", 45*time.Minute, "longest connect phase; clients not joined by then count as not started or failed")
	fs.IntVar(&c.pending, "pending", 100, "most clients dialing or waiting for welcome at once (the ramp slows to what the server accepts)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write chatload's own CPU profile to this file")
	fs.StringVar(&c.mode, "mode", "rate", "rate: message rate steps; moderation: the fan-out of a moderator's delete")
	fs.IntVar(&c.members, "members", 5000, "moderation mode: members in the room")
	fs.IntVar(&c.rounds, "rounds", 5, "moderation mode: deletes to time, one after the other")
	fs.StringVar(&c.key, "key", "", "moderation mode: the publish key that makes the moderator")
	fs.StringVar(&c.token, "token", "", "moderation mode: a moderate token instead")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if _, err := loadgen.CheckURL(c.url, "ws", "wss"); err != nil {
		return c, fmt.Errorf("-url: %w", err)
	}
	var err error
	if c.rates, err = parseRates(*rate); err != nil {
		return c, err
	}
	if c.ramp, err = parseRamp(*ramp); err != nil {
		return c, err
	}
	switch {
	case c.clients < 1 || c.clients > 1_000_000:
		return c, fmt.Errorf("-clients %d: want 1 to 1000000", c.clients)
	case c.senders < 0 || c.senders > c.clients:
		return c, fmt.Errorf("-senders %d: want 0 to -clients (%d)", c.senders, c.clients)
	case c.duration <= 0 || c.duration > time.Hour:
		return c, fmt.Errorf("-duration %v: want more than 0 and at most 1h", c.duration)
	case c.drain < 0 || c.drain > 10*time.Minute:
		return c, fmt.Errorf("-drain %v: want 0 to 10m", c.drain)
	case c.joinTimeout <= 0 || c.settleMax < 0 || c.connectMax <= 0:
		return c, errors.New("-join-timeout, -connect-max and -settle must be positive")
	case c.pending < 1:
		return c, fmt.Errorf("-pending %d: want at least 1", c.pending)
	case c.minRatio < 0 || c.minRatio > 1:
		return c, fmt.Errorf("-min-delivered %v: want 0 to 1", c.minRatio)
	case c.mode != "rate" && c.mode != "moderation":
		return c, fmt.Errorf("-mode %q: want rate or moderation", c.mode)
	case c.mode == "moderation" && (c.members < 1 || c.members > 1_000_000 || c.rounds < 1 || c.rounds > 100):
		return c, errors.New("-members must be 1 to 1000000, -rounds 1 to 100")
	case c.mode == "moderation" && c.key == "" && c.token == "":
		return c, errors.New("-mode moderation needs -key or -token (the moderator's)")
	}
	return c, nil
}

func main() { os.Exit(mainCode()) }

// mainCode runs chatload and returns its exit code: 0 when clients joined,
// 1 on a run error, 2 on bad flags.
func mainCode() int {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chatload: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "chatload: cpu profile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	var rep interface{ print(io.Writer) }
	var runErr error
	if cfg.mode == "moderation" {
		r, err := runFanout(ctx, cfg, os.Stderr)
		if r != nil {
			rep = r
		}
		runErr = err
	} else {
		r, err := run(ctx, cfg, os.Stderr)
		if r != nil {
			rep = r
		}
		runErr = err
	}
	code := 0
	if rep != nil {
		rep.print(os.Stdout)
		if cfg.jsonPath != "" {
			if err := loadgen.WriteJSON(cfg.jsonPath, rep); err != nil {
				fmt.Fprintf(os.Stderr, "chatload: %v\n", err)
				code = 1
			}
		}
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "chatload: %v\n", runErr)
		code = 1
	}
	return code
}
