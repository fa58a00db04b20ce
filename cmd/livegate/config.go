package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/livegate/livegate/access"
	"github.com/livegate/livegate/ingest"
	"github.com/livegate/livegate/segmenter"
	"github.com/livegate/livegate/stream"
	"github.com/livegate/livegate/transcode"
)

// defaultJSON is the embedded default configuration; every key is listed
// there and documented in the README.
//
//go:embed default.json
var defaultJSON []byte

// config is every setting of the gateway. It is read in one place (load):
// embedded defaults, then the --config file, then LIVEGATE_* environment
// variables, then flags, then validate.
type config struct {
	Listen          string   `json:"listen"`
	Data            string   `json:"data"`
	PublishKeys     []string `json:"publish_keys"`
	NATSURL         string   `json:"nats_url"`
	Advertise       string   `json:"advertise"`
	FFmpeg          string   `json:"ffmpeg"`
	Record          bool     `json:"record"`
	RecordKeep      int      `json:"record_keep"`
	RecordOpenFiles int      `json:"record_open_files"`

	TLSCert       string   `json:"tls_cert"`
	TLSKey        string   `json:"tls_key"`
	ACMEDomains   []string `json:"acme_domains"`
	ACMEDirectory string   `json:"acme_directory"`
	ACMECA        string   `json:"acme_ca"`

	TokenSecret    string   `json:"token_secret"`
	PrivateStreams []string `json:"private_streams"`
	TrustedProxies []string `json:"trusted_proxies"`
	MaxStreams     int      `json:"max_streams"`
	MaxConnsPerIP  int      `json:"max_conns_per_ip"`
	HTTPMaxHeader  int      `json:"http_max_header_bytes"`

	Ladder     []rung `json:"ladder"`
	AudioKbps  int    `json:"audio_kbps"`
	FrameRate  int    `json:"frame_rate"`
	X264Preset string `json:"x264_preset"`

	HLSVariant      string   `json:"hls_variant"`
	HLSSegmentCount int      `json:"hls_segment_count"`
	HLSPartHoldBack duration `json:"hls_part_hold_back"`
	HLSFirstSegment duration `json:"hls_first_segment"`
	KeepEnded       duration `json:"keep_ended"`
	LiveAllowOrigin string   `json:"live_allow_origin"`
	StartWait       duration `json:"start_wait"`

	ClusterBucket       string   `json:"cluster_bucket"`
	ClusterReplicas     int      `json:"cluster_replicas"`
	ClusterTTL          duration `json:"cluster_ttl"`
	ClusterTimeout      duration `json:"cluster_timeout"`
	ClusterProxyTimeout duration `json:"cluster_proxy_timeout"`
	ClusterPlaylistKeep duration `json:"cluster_playlist_keep"`
	ClusterMediaKeep    duration `json:"cluster_media_keep"`
	ClusterCacheBytes   int64    `json:"cluster_cache_bytes"`

	HTTPHeaderTimeout duration `json:"http_header_timeout"`
	HTTPIdleTimeout   duration `json:"http_idle_timeout"`

	IngestMaxFrameBytes  int64    `json:"ingest_max_frame_bytes"`
	IngestIdleTimeout    duration `json:"ingest_idle_timeout"`
	IngestBufferBytes    int      `json:"ingest_buffer_bytes"`
	IngestOverrunTimeout duration `json:"ingest_overrun_timeout"`
	IngestGrace          duration `json:"ingest_grace"`
	IngestStatusInterval duration `json:"ingest_status_interval"`
	AllowedOrigins       []string `json:"allowed_origins"`

	ChatMaxTextRunes  int      `json:"chat_max_text_runes"`
	ChatMaxFrameBytes int64    `json:"chat_max_frame_bytes"`
	ChatHistory       int      `json:"chat_history"`
	ChatRatePerSecond float64  `json:"chat_rate_per_second"`
	ChatBurst         int      `json:"chat_burst"`
	ChatSendQueue     int      `json:"chat_send_queue"`
	ChatWelcomeUsers  int      `json:"chat_welcome_users"`
	ChatPresenceLimit int      `json:"chat_presence_limit"`
	ChatMaxViolations int      `json:"chat_max_violations"`
	ChatPingInterval  duration `json:"chat_ping_interval"`
	ChatWriteTimeout  duration `json:"chat_write_timeout"`
	ChatFlushInterval duration `json:"chat_flush_interval"`
	ChatFlushPerConn  duration `json:"chat_flush_per_conn"`
	ChatMaxBans       int      `json:"chat_max_bans"`
	ChatMaxBan        duration `json:"chat_max_ban"`
	ChatMaxSlow       duration `json:"chat_max_slow"`

	ViewerWindow      duration `json:"viewer_window"`
	MaxViewersTracked int      `json:"max_viewers_tracked"`
	RecordingsListed  int      `json:"recordings_listed"`

	LatencyReportInterval duration `json:"latency_report_interval"`
	LatencyReportWindow   duration `json:"latency_report_window"`
	LatencyReporters      int      `json:"latency_reporters"`
}

// rung is one rendition of the ladder in config units.
type rung struct {
	Name         string `json:"name"`
	Height       int    `json:"height"`
	VideoKbps    int    `json:"video_kbps"`
	MaxrateKbps  int    `json:"maxrate_kbps"`
	BufsizeKbits int    `json:"bufsize_kbits"`
}

// duration is a time.Duration written as "10s" in JSON.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// load reads the configuration from args and the environment.
func load(args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	if err := decode(defaultJSON, c); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	fs := flag.NewFlagSet("livegate", flag.ContinueOnError)
	file := fs.String("config", getenv("LIVEGATE_CONFIG"), "JSON config file (keys as in the embedded default; see --print-config)")
	listen := fs.String("listen", "", "HOST:PORT to serve on (env LIVEGATE_LISTEN)")
	data := fs.String("data", "", "data directory (env LIVEGATE_DATA)")
	key := fs.String("publish-key", "", "require this key of every publisher (env LIVEGATE_PUBLISH_KEY)")
	nats := fs.String("nats-url", "", "join other gateways through this NATS server (env LIVEGATE_NATS_URL)")
	advertise := fs.String("advertise", "", "the `URL` other gateways reach this one at (default: from --listen; env LIVEGATE_ADVERTISE)")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate (chain) PEM `file`, read again when it changes (env LIVEGATE_TLS_CERT)")
	tlsKey := fs.String("tls-key", "", "the private key PEM `file` of --tls-cert (env LIVEGATE_TLS_KEY)")
	acmeDomain := new(string)
	fs.Func("acme-domain", "serve HTTPS with certificates from ACME (Let's Encrypt) for this `name`; repeat or separate with commas for several; needs --data (env LIVEGATE_ACME_DOMAIN)", func(v string) error {
		*acmeDomain = strings.TrimPrefix(*acmeDomain+","+v, ",")
		return nil
	})
	acmeDirectory := fs.String("acme-directory", "", "the ACME server's directory `URL` (default Let's Encrypt production; env LIVEGATE_ACME_DIRECTORY)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration as JSON and exit")
	printArgs := fs.String("print-ffmpeg-args", "", "print the ffmpeg arguments the gateway runs for a WebM source of size `WxH`, one a line, and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if err := decode(b, c); err != nil {
			return nil, fmt.Errorf("config file %s: %w", *file, err)
		}
	}
	for _, o := range []struct {
		flag *string
		env  string
		set  func(string)
	}{
		{listen, "LIVEGATE_LISTEN", func(v string) { c.Listen = v }},
		{data, "LIVEGATE_DATA", func(v string) { c.Data = v }},
		{key, "LIVEGATE_PUBLISH_KEY", func(v string) { c.PublishKeys = []string{v} }},
		{nats, "LIVEGATE_NATS_URL", func(v string) { c.NATSURL = v }},
		{advertise, "LIVEGATE_ADVERTISE", func(v string) { c.Advertise = v }},
		{tlsCert, "LIVEGATE_TLS_CERT", func(v string) { c.TLSCert = v }},
		{tlsKey, "LIVEGATE_TLS_KEY", func(v string) { c.TLSKey = v }},
		{acmeDomain, "LIVEGATE_ACME_DOMAIN", func(v string) { c.ACMEDomains = splitList(v) }},
		{acmeDirectory, "LIVEGATE_ACME_DIRECTORY", func(v string) { c.ACMEDirectory = v }},
		{new(string), "LIVEGATE_ACME_CA", func(v string) { c.ACMECA = v }},           // no flag
		{new(string), "LIVEGATE_TOKEN_SECRET", func(v string) { c.TokenSecret = v }}, // no flag: a secret in argv shows in ps
	} {
		if v := getenv(o.env); v != "" {
			o.set(v)
		}
		if *o.flag != "" {
			o.set(*o.flag)
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if *printConfig {
		b, _ := json.MarshalIndent(c, "", "  ")
		fmt.Println(string(b))
		return nil, errPrinted
	}
	if *printArgs != "" {
		args, err := c.ffmpegArgs(*printArgs)
		if err != nil {
			return nil, fmt.Errorf("print-ffmpeg-args: %w", err)
		}
		fmt.Println(strings.Join(args, "\n"))
		return nil, errPrinted
	}
	return c, nil
}

// sizeRE matches a picture size WxH.
var sizeRE = regexp.MustCompile(`^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$`)

// ffmpegArgs returns the arguments (without the program name) the gateway
// gives ffmpeg for a WebM/Matroska source of size "WxH": the same ladder plan
// and argument list as a live stream's, for benchmarks that run the
// transcoder alone (bench/transcode.sh).
func (c *config) ffmpegArgs(size string) ([]string, error) {
	m := sizeRE.FindStringSubmatch(size)
	if m == nil {
		return nil, fmt.Errorf("%q: want WxH, e.g. 1280x720", size)
	}
	w, _ := strconv.Atoi(m[1])
	h, _ := strconv.Atoi(m[2])
	l := c.transcodeLadder()
	return transcode.Args(l, stream.InputFormat(ingest.ContainerWebM), l.Plan(w, h)), nil
}

// errPrinted ends the program after --print-config.
var errPrinted = errors.New("configuration printed")

func decode(b []byte, c *config) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(c)
}

var validRungName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// validBucket is a JetStream bucket name.
var validBucket = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validate checks every value, naming the key of the first bad one.
func (c *config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not HOST:PORT: %w", c.Listen, err)
	}
	for i, k := range c.PublishKeys {
		if k == "" || strings.ContainsAny(k, " \t\r\n") {
			return fmt.Errorf("publish_keys[%d]: empty or contains white space", i)
		}
	}
	if c.NATSURL != "" && !strings.HasPrefix(c.NATSURL, "nats://") && !strings.HasPrefix(c.NATSURL, "tls://") {
		return fmt.Errorf("nats_url: %q must start with nats:// or tls://", c.NATSURL)
	}
	if c.Advertise != "" {
		u, err := url.Parse(c.Advertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("advertise: %q: want http(s)://HOST[:PORT], no path", c.Advertise)
		}
	}
	if !validBucket.MatchString(c.ClusterBucket) {
		return fmt.Errorf("cluster_bucket: %q: 1 to 64 of A-Z a-z 0-9 _ -", c.ClusterBucket)
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.policy().Validate(); err != nil {
		return err
	}
	if _, err := access.ParseProxies(c.TrustedProxies); err != nil {
		return err
	}
	if c.FFmpeg == "" {
		return errors.New("ffmpeg: empty")
	}
	for i, r := range c.Ladder {
		if !validRungName.MatchString(r.Name) {
			return fmt.Errorf("ladder[%d].name: %q must be 1-32 of A-Z a-z 0-9 _ -", i, r.Name)
		}
	}
	if err := c.transcodeLadder().Validate(); err != nil {
		return fmt.Errorf("ladder: %w", err)
	}
	if _, err := segmenter.ParseVariant(c.HLSVariant); err != nil {
		return fmt.Errorf("hls_variant: %w", err)
	}
	minSegments := 3
	if c.HLSVariant == "lowlatency" {
		minSegments = 7
	}
	checks := []struct {
		key string
		ok  bool
		msg string
	}{
		{"hls_segment_count", c.HLSSegmentCount >= minSegments, fmt.Sprintf("at least %d for this variant", minSegments)},
		{"hls_part_hold_back", c.HLSPartHoldBack >= duration(400*time.Millisecond) && c.HLSPartHoldBack <= duration(10*time.Second),
			"between 400ms (twice the 200ms part) and 10s"},
		{"hls_first_segment", c.HLSFirstSegment == 0 || c.HLSFirstSegment >= duration(500*time.Millisecond) && c.HLSFirstSegment <= duration(time.Second),
			"0s, or between 500ms and 1s (a playlist's target duration is its longest segment rounded)"},
		{"keep_ended", c.KeepEnded >= duration(time.Second), "at least 1s"},
		{"record_keep", c.RecordKeep >= 1, "at least 1"},
		{"record_open_files", c.RecordOpenFiles >= 0, "0 (none kept) or more"},
		{"live_allow_origin", !strings.ContainsFunc(c.LiveAllowOrigin, func(r rune) bool { return r <= ' ' || r >= 0x7f }),
			"*, - or an origin, without spaces or control characters"},
		{"start_wait", c.StartWait >= 0, "not negative"},
		{"http_header_timeout", c.HTTPHeaderTimeout >= duration(time.Second), "at least 1s"},
		{"http_idle_timeout", c.HTTPIdleTimeout >= duration(time.Second), "at least 1s"},
		{"ingest_max_frame_bytes", c.IngestMaxFrameBytes >= 1024 && c.IngestMaxFrameBytes <= 64<<20, "between 1024 and 64 MiB"},
		{"ingest_idle_timeout", c.IngestIdleTimeout >= duration(time.Second), "at least 1s"},
		{"ingest_buffer_bytes", c.IngestBufferBytes >= 64<<10, "at least 64 KiB"},
		{"ingest_overrun_timeout", c.IngestOverrunTimeout >= duration(100*time.Millisecond), "at least 100ms"},
		{"ingest_grace", c.IngestGrace >= duration(time.Second), "at least 1s"},
		{"ingest_status_interval", c.IngestStatusInterval >= duration(100*time.Millisecond) && c.IngestStatusInterval <= duration(2*time.Second), "between 100ms and 2s"},
		{"chat_max_text_runes", c.ChatMaxTextRunes > 0, "positive"},
		{"chat_max_frame_bytes", c.ChatMaxFrameBytes >= 256, "at least 256"},
		{"chat_history", c.ChatHistory >= 0, "not negative"},
		{"chat_rate_per_second", c.ChatRatePerSecond > 0, "positive"},
		{"chat_burst", c.ChatBurst > 0, "positive"},
		{"chat_send_queue", c.ChatSendQueue > 0, "positive"},
		{"chat_max_violations", c.ChatMaxViolations > 0, "positive"},
		{"chat_welcome_users", c.ChatWelcomeUsers > 0, "positive"},
		{"chat_presence_limit", c.ChatPresenceLimit > 0, "positive"},
		{"chat_ping_interval", c.ChatPingInterval >= duration(time.Second), "at least 1s"},
		{"chat_write_timeout", c.ChatWriteTimeout >= duration(100*time.Millisecond), "at least 100ms"},
		{"chat_flush_interval", c.ChatFlushInterval >= 0 && c.ChatFlushInterval <= duration(time.Second), "0s to 1s"},
		{"chat_flush_per_conn", c.ChatFlushPerConn >= 0 && c.ChatFlushPerConn <= duration(time.Second), "0s to 1s"},
		{"chat_max_bans", c.ChatMaxBans > 0, "positive"},
		{"chat_max_ban", c.ChatMaxBan >= duration(time.Second), "at least 1s"},
		{"chat_max_slow", c.ChatMaxSlow >= duration(time.Second), "at least 1s"},
		{"viewer_window", c.ViewerWindow >= duration(time.Second), "at least 1s"},
		{"max_viewers_tracked", c.MaxViewersTracked > 0, "positive"},
		{"recordings_listed", c.RecordingsListed > 0, "positive"},
		{"latency_report_interval", c.LatencyReportInterval >= duration(time.Second), "at least 1s"},
		{"latency_report_window", c.LatencyReportWindow >= c.LatencyReportInterval, "at least latency_report_interval"},
		{"latency_reporters", c.LatencyReporters > 0, "positive"},
		{"max_streams", c.MaxStreams >= 0, "0 (the number of CPU cores) or more"},
		{"max_conns_per_ip", c.MaxConnsPerIP >= 0, "0 (no limit) or more"},
		{"http_max_header_bytes", c.HTTPMaxHeader >= 4096 && c.HTTPMaxHeader <= 1<<20, "between 4096 and 1048576"},
		{"cluster_replicas", c.ClusterReplicas >= 1 && c.ClusterReplicas <= 5, "between 1 and 5"},
		{"cluster_ttl", c.ClusterTTL >= duration(time.Second) && c.ClusterTTL <= duration(time.Minute), "between 1s and 1m"},
		{"cluster_timeout", c.ClusterTimeout >= duration(100*time.Millisecond), "at least 100ms"},
		{"cluster_proxy_timeout", c.ClusterProxyTimeout >= duration(time.Second), "at least 1s"},
		{"cluster_playlist_keep", c.ClusterPlaylistKeep >= 0 && c.ClusterPlaylistKeep <= duration(10*time.Second), "0s to 10s"},
		{"cluster_media_keep", c.ClusterMediaKeep >= 0, "not negative"},
		{"cluster_cache_bytes", c.ClusterCacheBytes >= 0, "not negative"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return fmt.Errorf("%s: must be %s", ch.key, ch.msg)
		}
	}
	return nil
}

func (c *config) transcodeLadder() transcode.Ladder {
	l := transcode.Ladder{AudioBitrate: c.AudioKbps * 1000, FrameRate: c.FrameRate, Preset: c.X264Preset,
		FirstSegment: time.Duration(c.HLSFirstSegment)}
	for _, r := range c.Ladder {
		l.Renditions = append(l.Renditions, transcode.Rendition{
			Name: r.Name, Height: r.Height, VideoBitrate: r.VideoKbps * 1000,
			MaxRate: r.MaxrateKbps * 1000, BufSize: r.BufsizeKbits * 1000,
		})
	}
	return l
}

// policy is the access policy of the configuration.
func (c *config) policy() *access.Policy {
	return &access.Policy{Keys: c.PublishKeys, Tokens: access.Tokens{Secret: []byte(c.TokenSecret)}, PrivateStreams: c.PrivateStreams}
}
