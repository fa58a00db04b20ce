// Command livegate is the live-streaming gateway: browsers publish over a
// WebSocket, ffmpeg encodes an ABR ladder, viewers watch low-latency HLS and
// talk in a chat room per stream. With no arguments it serves on
// 127.0.0.1:8080 with embedded defaults.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/livegate/livegate/chat"
	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/segmenter"
	"github.com/livegate/livegate/stream"
	"github.com/livegate/livegate/web"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := load(os.Args[1:], os.Getenv)
	if errors.Is(err, errPrinted) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "livegate:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("livegate stopped", "error", err)
		os.Exit(1)
	}
}

// gateway is every component of one livegate process, wired.
type gateway struct {
	hub   *stream.Hub
	rooms *chat.Server
	pub   *ingest.Server
	site  *web.Server
}

// newGateway builds the components from the configuration. Whoever calls it
// must call Close.
func newGateway(cfg *config, log *slog.Logger) (*gateway, error) {
	if cfg.Data != "" {
		if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	variant, _ := segmenter.ParseVariant(cfg.HLSVariant) // validated
	g := &gateway{}
	g.hub = &stream.Hub{
		Ladder: cfg.transcodeLadder(), FFmpeg: cfg.FFmpeg, Variant: variant,
		SegmentCount: cfg.HLSSegmentCount, KeepEnded: time.Duration(cfg.KeepEnded),
		RecordKeep: cfg.RecordKeep, Logger: log,
	}
	if cfg.Data != "" && cfg.Record {
		g.hub.RecordDir = filepath.Join(cfg.Data, "recordings")
	}
	if err := g.hub.Start(); err != nil {
		return nil, err
	}
	g.rooms = &chat.Server{
		MaxTextRunes:  cfg.ChatMaxTextRunes,
		MaxFrameBytes: cfg.ChatMaxFrameBytes,
		HistorySize:   cfg.ChatHistory,
		RatePerSecond: cfg.ChatRatePerSecond,
		Burst:         cfg.ChatBurst,
		SendQueue:     cfg.ChatSendQueue,
		MaxViolations: cfg.ChatMaxViolations,
		PingInterval:  time.Duration(cfg.ChatPingInterval),
		WriteTimeout:  time.Duration(cfg.ChatWriteTimeout),
		FlushInterval: chatWait(cfg.ChatFlushInterval),
		FlushPerConn:  chatWait(cfg.ChatFlushPerConn),
		CheckOrigin:   web.OriginChecker(cfg.AllowedOrigins),
		Logger:        log.With("component", "chat"),
	}
	if cfg.NATSURL != "" {
		bus, err := chat.NewNATSBus(cfg.NATSURL, log.With("component", "nats"))
		if err != nil {
			return nil, fmt.Errorf("nats_url: %w", err)
		}
		g.rooms.Bus = bus
	}
	if err := g.rooms.Start(); err != nil {
		return nil, err
	}
	g.site = &web.Server{Catalog: g.hub, Chat: g.rooms, AllowOrigin: cfg.LiveAllowOrigin,
		StartWait: time.Duration(cfg.StartWait), ViewerWindow: time.Duration(cfg.ViewerWindow),
		MaxViewersTracked: cfg.MaxViewersTracked, RecordingsListed: cfg.RecordingsListed, Logger: log}
	g.pub = &ingest.Server{
		Backend:        g.hub,
		Keys:           cfg.PublishKeys,
		MaxFrameBytes:  cfg.IngestMaxFrameBytes,
		IdleTimeout:    time.Duration(cfg.IngestIdleTimeout),
		BufferBytes:    cfg.IngestBufferBytes,
		OverrunTimeout: time.Duration(cfg.IngestOverrunTimeout),
		Grace:          time.Duration(cfg.IngestGrace),
		StatusInterval: time.Duration(cfg.IngestStatusInterval),
		CheckOrigin:    web.OriginChecker(cfg.AllowedOrigins),
		Viewers:        g.site.Viewers,
		Logger:         log.With("component", "ingest"),
	}
	g.site.Publisher = g.pub
	return g, nil
}

// Handler serves every route.
func (g *gateway) Handler() http.Handler { return g.site.Handler() }

// Close ends publishers (their streams end) and chat members, then the
// streams' outputs. Idempotent.
func (g *gateway) Close() {
	g.pub.Close()
	g.rooms.Close()
	g.hub.Close()
}

// newServer is the gateway's HTTP server.
func newServer(g *gateway, cfg *config) *http.Server {
	return &http.Server{Handler: g.Handler(), ReadHeaderTimeout: time.Duration(cfg.HTTPHeaderTimeout),
		IdleTimeout: time.Duration(cfg.HTTPIdleTimeout)}
}

// run serves until ctx ends, then shuts everything down in order.
func run(ctx context.Context, cfg *config, log *slog.Logger) error {
	g, err := newGateway(cfg, log)
	if err != nil {
		return err
	}
	defer g.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := newServer(g, cfg)
	if len(cfg.PublishKeys) == 0 {
		log.Warn("publishing is open to anyone who can reach this address: set --publish-key")
	}
	base := "http://" + ln.Addr().String()
	log.Info("livegate serving", "addr", ln.Addr().String(),
		"broadcast", base+"/broadcast", "watch", base+"/watch/{stream}", "home", base+"/")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	// publishers and chat members first: Shutdown does not wait for hijacked
	// connections
	g.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// chatWait maps chat_flush_interval or chat_flush_per_conn to the
// chat.Server field, whose "every event at once" is negative (0 there is
// its default).
func chatWait(d duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}
