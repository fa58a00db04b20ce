package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/chat"
	"github.com/livegate/livegate/cluster"
	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/segmenter"
	"github.com/livegate/livegate/stream"
	"github.com/livegate/livegate/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// gateway is every component of one livegate process, wired: the plain
// values of the configuration copied into each (gateway), then started in
// order (Start).
type gateway struct {
	listen  string
	data    string
	natsURL string

	tlsCert, tlsKey string   // serve HTTPS with this pair (tls.go)
	acmeDomains     []string // or with certificates from ACME for these names
	acmeDirectory   string
	acmeCA          string

	hub     *stream.Hub
	dir     *cluster.Directory // with natsURL: the stream directory (its Advertise set by run when empty)
	catalog *cluster.Catalog   // with natsURL: what web serves streams from
	rooms   *chat.Server
	pub     *ingest.Server
	site    *web.Server
	server  *http.Server // its Handler is set by Start

	started []interface{ Close() } // what Start started, in order
}

// gateway builds the components from the configuration, none started.
func (c *config) gateway(log *slog.Logger) *gateway {
	variant, _ := segmenter.ParseVariant(c.HLSVariant) // validated
	origins := web.OriginChecker(c.AllowedOrigins)
	policy := c.policy()
	proxies, _ := access.ParseProxies(c.TrustedProxies) // validated
	conns := &access.ConnLimit{Max: c.MaxConnsPerIP}
	maxStreams := c.MaxStreams
	if maxStreams == 0 {
		maxStreams = runtime.NumCPU()
	}
	g := &gateway{listen: c.Listen, data: c.Data, natsURL: c.NATSURL, tlsCert: c.TLSCert, tlsKey: c.TLSKey,
		acmeDomains: c.ACMEDomains, acmeDirectory: c.ACMEDirectory, acmeCA: c.ACMECA}
	g.hub = &stream.Hub{
		Ladder: c.transcodeLadder(), FFmpeg: c.FFmpeg, Variant: variant,
		SegmentCount: c.HLSSegmentCount, PartHoldBack: time.Duration(c.HLSPartHoldBack), KeepEnded: time.Duration(c.KeepEnded),
		RecordKeep: c.RecordKeep, RecordOpenFiles: c.RecordOpenFiles, Logger: log,
	}
	if c.RecordOpenFiles == 0 {
		g.hub.RecordOpenFiles = -1 // none kept (0 is the Hub's default)
	}
	if c.Data != "" && c.Record {
		g.hub.RecordDir = filepath.Join(c.Data, "recordings")
		g.hub.RecordShared = c.NATSURL != "" // a cluster's gateways may share it
	}
	g.rooms = &chat.Server{
		MaxTextRunes:  c.ChatMaxTextRunes,
		MaxFrameBytes: c.ChatMaxFrameBytes,
		HistorySize:   c.ChatHistory,
		WelcomeUsers:  c.ChatWelcomeUsers,
		PresenceLimit: c.ChatPresenceLimit,
		RatePerSecond: c.ChatRatePerSecond,
		Burst:         c.ChatBurst,
		SendQueue:     c.ChatSendQueue,
		MaxViolations: c.ChatMaxViolations,
		PingInterval:  time.Duration(c.ChatPingInterval),
		WriteTimeout:  time.Duration(c.ChatWriteTimeout),
		FlushInterval: chatWait(c.ChatFlushInterval),
		FlushPerConn:  chatWait(c.ChatFlushPerConn),
		MaxBans:       c.ChatMaxBans,
		MaxBan:        time.Duration(c.ChatMaxBan),
		MaxSlow:       time.Duration(c.ChatMaxSlow),
		Access:        policy,
		Keys:          policy,
		Conns:         conns,
		ClientAddr:    proxies.ClientAddr,
		CheckOrigin:   origins,
		Logger:        log.With("component", "chat"),
	}
	g.dir = &cluster.Directory{NATSURL: c.NATSURL, Advertise: c.Advertise, Bucket: c.ClusterBucket,
		Replicas: c.ClusterReplicas, TTL: time.Duration(c.ClusterTTL), Grace: time.Duration(c.IngestGrace),
		Timeout: time.Duration(c.ClusterTimeout), Wait: time.Duration(c.StartWait), Local: g.hub,
		Logger: log.With("component", "cluster")}
	g.catalog = &cluster.Catalog{Local: g.hub, Directory: g.dir, Tokens: policy.Tokens,
		Timeout: time.Duration(c.ClusterProxyTimeout), PlaylistKeep: time.Duration(c.ClusterPlaylistKeep),
		MediaKeep: time.Duration(c.ClusterMediaKeep), CacheBytes: c.ClusterCacheBytes, Wait: time.Duration(c.StartWait),
		Logger: log.With("component", "cluster")}
	metrics := prometheus.NewRegistry() // /metrics shows every component's
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.dir.Metrics, g.catalog.Metrics = metrics, metrics
	var catalog web.Catalog = g.hub
	if c.NATSURL != "" {
		catalog = g.catalog
	}
	g.site = &web.Server{Catalog: catalog, Chat: g.rooms, Access: policy, AllowOrigin: c.LiveAllowOrigin,
		StartWait: time.Duration(c.StartWait), ViewerWindow: time.Duration(c.ViewerWindow),
		MaxViewersTracked: c.MaxViewersTracked, RecordingsListed: c.RecordingsListed, Metrics: metrics,
		LatencyInterval: time.Duration(c.LatencyReportInterval), LatencyWindow: time.Duration(c.LatencyReportWindow),
		LatencyReporters: c.LatencyReporters, ClientAddr: proxies.ClientAddr, Logger: log}
	g.pub = &ingest.Server{
		Backend:        g.hub,
		Auth:           policy,
		MaxStreams:     maxStreams,
		Conns:          conns,
		ClientAddr:     proxies.ClientAddr,
		MaxFrameBytes:  c.IngestMaxFrameBytes,
		IdleTimeout:    time.Duration(c.IngestIdleTimeout),
		BufferBytes:    c.IngestBufferBytes,
		OverrunTimeout: time.Duration(c.IngestOverrunTimeout),
		Grace:          time.Duration(c.IngestGrace),
		StatusInterval: time.Duration(c.IngestStatusInterval),
		CheckOrigin:    origins,
		Viewers:        g.site.Viewers,
		ViewerLatency:  g.site.ViewerLatency,
		Logger:         log.With("component", "ingest"),
	}
	if c.NATSURL != "" {
		g.pub.Directory = g.dir
	}
	g.site.Publisher = g.pub
	g.server = &http.Server{
		// net/http reads 4096 bytes past MaxHeaderBytes before it answers
		// 431: this makes http_max_header_bytes the limit of the whole head
		MaxHeaderBytes:    c.HTTPMaxHeader - 4096,
		ReadHeaderTimeout: time.Duration(c.HTTPHeaderTimeout), IdleTimeout: time.Duration(c.HTTPIdleTimeout)}
	return g
}

// Start starts the components in order; on an error it closes the ones
// it started. Whoever calls Start must call Close.
func (g *gateway) Start() error {
	if g.data != "" {
		if err := os.MkdirAll(g.data, 0o755); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	if g.natsURL != "" {
		bus, err := chat.NewNATSBus(g.natsURL, g.hub.Logger.With("component", "nats"))
		if err != nil {
			return fmt.Errorf("nats_url: %w", err)
		}
		g.rooms.Bus = bus
	}
	components := []interface {
		Start() error
		Close()
	}{g.hub, g.rooms, g.site, g.pub}
	if g.natsURL != "" {
		// the directory before ingest, which hands its sessions off
		// through it when it closes; the catalog before the site
		components = []interface {
			Start() error
			Close()
		}{g.hub, g.dir, g.catalog, g.rooms, g.site, g.pub}
	}
	for _, c := range components {
		if err := c.Start(); err != nil {
			g.Close()
			return err
		}
		g.started = append(g.started, c)
	}
	g.server.Handler = g.site.Handler()
	return nil
}

// Close ends what Start started, last first: publishers (their streams
// end, or with NATS are handed off to other gateways), the site, chat
// members, the directory, then the streams' outputs. Idempotent.
func (g *gateway) Close() {
	for i := len(g.started) - 1; i >= 0; i-- {
		g.started[i].Close()
	}
	g.started = nil
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
