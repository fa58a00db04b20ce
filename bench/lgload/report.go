package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// report is the JSON report of one load run.
type report struct {
	Config  reportConfig `json:"config"`
	Window  float64      `json:"window_s"`   // seconds viewers watched
	LoadCPU float64      `json:"lgload_cpu"` // cores used by lgload itself during the window
	// SourcesCPU and SourcesRSSMB are the publishers' ffmpegs (with -gateway-pid).
	SourcesCPU   float64        `json:"sources_cpu,omitempty"`
	SourcesRSSMB float64        `json:"sources_rss_mb,omitempty"`
	Gateway      *gatewayReport `json:"gateway,omitempty"`
	Streams      []streamReport `json:"streams"`
	Total        streamReport   `json:"total"`
}

// reportConfig repeats the scenario.
type reportConfig struct {
	URL              string  `json:"url"`
	Publishers       int     `json:"publishers"`
	ViewersPerStream int     `json:"viewers_per_stream"`
	Duration         string  `json:"duration"`
	Mode             string  `json:"mode"`
	Replay           string  `json:"replay,omitempty"`
	Size             string  `json:"size"`
	Drawtext         bool    `json:"drawtext"`
	ChatPerStream    int     `json:"chat_per_stream"`
	ChatRate         float64 `json:"chat_rate"` // messages per second per room
	Origin           string  `json:"origin"`    // where the publishers and the prober went
	Publish          bool    `json:"publish"`   // false: the streams were someone else's
	Audio            bool    `json:"audio"`     // viewers followed the audio rendition too
	Probe            bool    `json:"probe"`     // the prober ran
	LateMs           float64 `json:"late_ms"`   // the delivery delay counted as late
}

// gatewayReport is the gateway's usage from /proc: idle (before
// publishing), with the streams live (before viewers) and at the end.
// RSS figures include its ffmpeg children unless named gateway_.
type gatewayReport struct {
	RSSIdleMB           float64 `json:"rss_idle_mb"`
	RSSStreamsMB        float64 `json:"rss_streams_mb"`
	RSSViewersMB        float64 `json:"rss_viewers_mb"`
	GatewayRSSStreamsMB float64 `json:"gateway_rss_streams_mb"`
	GatewayRSSViewersMB float64 `json:"gateway_rss_viewers_mb"`
	TranscodersRSSMB    float64 `json:"transcoders_rss_mb"`
	Transcoders         int     `json:"transcoders"`
	RSSPerStreamMB      float64 `json:"rss_per_stream_mb"` // (streams - idle) / publishers, children included
	RSSPerViewerKB      float64 `json:"rss_per_viewer_kb"` // gateway process only: (end - before viewers) / viewers
	GatewayCPU          float64 `json:"gateway_cpu"`       // cores, during the window
	TranscodersCPU      float64 `json:"transcoders_cpu"`   // cores, during the window
	// With -chat: RSS once the chat clients joined (before the viewers),
	// and the gateway's growth per chat client.
	RSSChatMB    float64 `json:"rss_chat_mb,omitempty"`
	RSSPerChatKB float64 `json:"rss_per_chat_client_kb,omitempty"`
}

// streamReport is one stream's figures (or all streams' together).
type streamReport struct {
	Name         string         `json:"name"`
	Ready        float64        `json:"ready_s,omitempty"` // publishing to playable
	State        string         `json:"publisher_state,omitempty"`
	SpeedMedian  float64        `json:"publisher_speed_median"`
	SpeedMin     float64        `json:"publisher_speed_min"`
	PublishedMB  float64        `json:"published_mb"`
	PubError     string         `json:"publisher_error,omitempty"`
	CloseCode    int            `json:"publisher_close_code,omitempty"`
	Viewers      int            `json:"viewers"`
	Renditions   map[string]int `json:"renditions,omitempty"`
	BytesPerSec  float64        `json:"viewer_bytes_per_s"`
	Bytes        int64          `json:"viewer_bytes"`
	ReqPerSec    float64        `json:"requests_per_s"`
	Requests     int            `json:"requests"`
	Errors       int            `json:"errors"`
	LastError    string         `json:"last_error,omitempty"`
	MediaP50     float64        `json:"media_p50_ms"`
	MediaP99     float64        `json:"media_p99_ms"`
	ReloadP50    float64        `json:"playlist_p50_ms"` // blocking reloads are held by design
	ReloadP99    float64        `json:"playlist_p99_ms"`
	EdgeP50      float64        `json:"live_edge_p50_s"`
	EdgeP99      float64        `json:"live_edge_p99_s"`
	Stalls       int            `json:"stalls"`
	StalledViews int            `json:"viewers_stalled"`
	LongestStall float64        `json:"longest_stall_s"`
	// Delivery delay: from a part's (or segment's) first listing, seen by
	// the prober at the origin or any viewer, to the end of a viewer's
	// download of it, over the files listed after each viewer's first
	// playlist. Late: delivered more than late_ms after their listing.
	DeliveryP50 float64 `json:"delivery_p50_ms"`
	DeliveryP99 float64 `json:"delivery_p99_ms"`
	DeliveryMax float64 `json:"delivery_max_ms"`
	Delivered   int     `json:"delivered"`
	Late        int     `json:"late"`
	// The prober's counts at the origin, over the whole run: the parts
	// that appeared (every media playlist), the playlist versions (each
	// new part makes one) and its own requests (playlists only), to
	// subtract from the origin's request count.
	PartsListed      int `json:"parts_listed"`
	PlaylistVersions int `json:"playlist_versions"`
	ProbeRequests    int `json:"probe_requests"`
	ProbeErrors      int `json:"probe_errors"`
	// The time between new parts of a playlist at the origin (200 ms when
	// the stream is made in real time), and the origin's own stalls (gaps
	// over 2 s): the stalls no edge can hide.
	ListingGapP50  float64        `json:"listing_gap_p50_ms"`
	ListingGapP99  float64        `json:"listing_gap_p99_ms"`
	ListingGapMax  float64        `json:"listing_gap_max_ms"`
	OriginStalls   int            `json:"origin_stalls"`
	OriginLongest  float64        `json:"origin_longest_stall_s"`
	ProbeLastError string         `json:"probe_last_error,omitempty"`
	EdgeCache      map[string]int `json:"edge_cache,omitempty"` // X-Cache headers the viewers got (HIT, MISS, ...)
	Chat           *chatReport    `json:"chat,omitempty"`       // with -chat
	speeds         []float64
}

// fill computes the per-stream and total figures.
func (r *report) fill(streams []*stream, window time.Duration) {
	var media, reloads, edge, delivery, gaps, chat loadgen.Histogram
	tot := streamReport{Name: "total", Renditions: map[string]int{}}
	var allSpeeds []float64
	secs := window.Seconds()
	for _, s := range streams {
		sr := streamReport{Name: s.name, Ready: round3(s.ready.Seconds()), Renditions: map[string]int{}}
		st, lastErr := s.pub.status()
		sr.State, sr.PubError, sr.CloseCode = st.State, lastErr, st.CloseCode
		_, _, sent := s.pub.snapshot()
		sr.PublishedMB = mb(sent)
		sr.SpeedMedian, sr.SpeedMin = speedSummary(st.Speeds)
		allSpeeds = append(allSpeeds, sr.SpeedMedian)
		for _, v := range s.viewers {
			v.mu.Lock()
			sr.Viewers++
			sr.Renditions[v.rendition]++
			sr.Bytes += v.bytes
			sr.Requests += v.requests
			sr.Errors += v.errors
			if v.lastErr != "" {
				sr.LastError = v.lastErr
			}
			sr.Stalls += v.stalls.count + v.astalls.count
			if v.stalls.count+v.astalls.count > 0 {
				sr.StalledViews++
			}
			sr.LongestStall = max(sr.LongestStall, round3(v.stalls.longest.Seconds()), round3(v.astalls.longest.Seconds()))
			sr.Delivered += v.delivered
			sr.Late += v.late
			for k, n := range v.cache {
				if sr.EdgeCache == nil {
					sr.EdgeCache = map[string]int{}
				}
				sr.EdgeCache[k] += n
			}
			v.mu.Unlock()
		}
		s.probe.mu.Lock()
		sr.PartsListed, sr.PlaylistVersions, sr.ProbeRequests = s.probe.parts, s.probe.versions, s.probe.requests
		sr.ProbeErrors, sr.ProbeLastError = s.probe.errors, s.probe.lastErr
		sr.OriginStalls, sr.OriginLongest = s.probe.stalls, round3(s.probe.longest.Seconds())
		s.probe.mu.Unlock()
		sr.setGaps(&s.probe.gaps)
		gaps.Merge(&s.probe.gaps)
		sr.setDelivery(&s.delivery)
		delivery.Merge(&s.delivery)
		sr.setRates(secs, &s.media, &s.reloads, &s.edge)
		if sr.Chat = roomReport(s); sr.Chat != nil {
			if tot.Chat == nil {
				tot.Chat = &chatReport{}
			}
			tot.Chat.add(sr.Chat)
			chat.Merge(s.chat.Latency(0))
		}
		media.Merge(&s.media)
		reloads.Merge(&s.reloads)
		edge.Merge(&s.edge)
		r.Streams = append(r.Streams, sr)
		tot.Viewers += sr.Viewers
		for k, n := range sr.Renditions {
			tot.Renditions[k] += n
		}
		tot.Bytes += sr.Bytes
		tot.Requests += sr.Requests
		tot.Errors += sr.Errors
		tot.Delivered += sr.Delivered
		tot.Late += sr.Late
		tot.PartsListed += sr.PartsListed
		tot.PlaylistVersions += sr.PlaylistVersions
		tot.ProbeRequests += sr.ProbeRequests
		tot.ProbeErrors += sr.ProbeErrors
		tot.OriginStalls += sr.OriginStalls
		tot.OriginLongest = max(tot.OriginLongest, sr.OriginLongest)
		if sr.ProbeLastError != "" {
			tot.ProbeLastError = sr.ProbeLastError
		}
		for k, n := range sr.EdgeCache {
			if tot.EdgeCache == nil {
				tot.EdgeCache = map[string]int{}
			}
			tot.EdgeCache[k] += n
		}
		tot.Stalls += sr.Stalls
		tot.StalledViews += sr.StalledViews
		tot.LongestStall = max(tot.LongestStall, sr.LongestStall)
		tot.PublishedMB += sr.PublishedMB
		if sr.LastError != "" {
			tot.LastError = sr.LastError
		}
		if sr.PubError != "" {
			tot.PubError = sr.PubError
		}
	}
	tot.SpeedMedian = median(allSpeeds)
	tot.SpeedMin = math.Inf(1)
	for _, s := range r.Streams {
		tot.SpeedMin = min(tot.SpeedMin, s.SpeedMin)
	}
	if math.IsInf(tot.SpeedMin, 1) {
		tot.SpeedMin = 0
	}
	tot.setRates(secs, &media, &reloads, &edge)
	tot.setDelivery(&delivery)
	tot.setGaps(&gaps)
	if tot.Chat != nil {
		tot.Chat.setLatency(&chat)
	}
	r.Total = tot
}

// setRates fills the rates and quantiles.
func (s *streamReport) setRates(secs float64, media, reloads, edge *loadgen.Histogram) {
	if secs > 0 {
		s.BytesPerSec = math.Round(float64(s.Bytes) / secs)
		s.ReqPerSec = round3(float64(s.Requests) / secs)
	}
	s.MediaP50, s.MediaP99 = loadgen.Ms(media.Quantile(0.5)), loadgen.Ms(media.Quantile(0.99))
	s.ReloadP50, s.ReloadP99 = loadgen.Ms(reloads.Quantile(0.5)), loadgen.Ms(reloads.Quantile(0.99))
	s.EdgeP50, s.EdgeP99 = round3(edge.Quantile(0.5).Seconds()), round3(edge.Quantile(0.99).Seconds())
}

// setDelivery fills the delivery quantiles.
func (s *streamReport) setDelivery(h *loadgen.Histogram) {
	s.DeliveryP50, s.DeliveryP99, s.DeliveryMax = loadgen.Ms(h.Quantile(0.5)), loadgen.Ms(h.Quantile(0.99)), loadgen.Ms(h.Max())
}

// setGaps fills the listing gap quantiles.
func (s *streamReport) setGaps(h *loadgen.Histogram) {
	s.ListingGapP50, s.ListingGapP99, s.ListingGapMax = loadgen.Ms(h.Quantile(0.5)), loadgen.Ms(h.Quantile(0.99)), loadgen.Ms(h.Max())
}

// printSummary writes a human summary of r.
func printSummary(w io.Writer, r *report) {
	fmt.Fprintf(w, "lgload: %d publishers x %d viewers (%s), %.1f s window, lgload used %.2f cores\n",
		r.Config.Publishers, r.Config.ViewersPerStream, r.Config.Mode, r.Window, r.LoadCPU)
	fmt.Fprintf(w, "%-10s %6s %6s %9s %8s %8s %8s %9s %9s %7s %6s\n",
		"stream", "speed", "min", "MB/s", "req/s", "p50 ms", "p99 ms", "edge p50", "edge p99", "stalls", "errors")
	rows := append(append([]streamReport(nil), r.Streams...), r.Total)
	for _, s := range rows {
		fmt.Fprintf(w, "%-10s %6.2f %6.2f %9.2f %8.1f %8.2f %8.2f %9.2f %9.2f %7d %6d\n",
			s.Name, s.SpeedMedian, s.SpeedMin, s.BytesPerSec/1e6, s.ReqPerSec, s.MediaP50, s.MediaP99,
			s.EdgeP50, s.EdgeP99, s.Stalls, s.Errors)
	}
	for _, s := range rows {
		fmt.Fprintf(w, "%-10s delivery after listing p50 %.0f ms p99 %.0f ms max %.0f ms, late (> %.0f ms) %d of %d; origin: %d parts, %d playlist versions listed (gaps p50 %.0f ms max %.0f ms, %d stalls), prober %d requests",
			s.Name, s.DeliveryP50, s.DeliveryP99, s.DeliveryMax, r.Config.LateMs, s.Late, s.Delivered, s.PartsListed, s.PlaylistVersions,
			s.ListingGapP50, s.ListingGapMax, s.OriginStalls, s.ProbeRequests)
		if len(s.EdgeCache) > 0 {
			keys := slices.Sorted(maps.Keys(s.EdgeCache))
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %d", k, s.EdgeCache[k]))
			}
			fmt.Fprintf(w, "; X-Cache %s", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
	}
	if g := r.Gateway; g != nil {
		fmt.Fprintf(w, "gateway: RSS idle %.1f MB, with streams %.1f MB (%.1f per stream, %d transcoders), with viewers %.1f MB (%.1f KB per viewer); CPU gateway %.2f + transcoders %.2f cores; sources %.2f cores\n",
			g.RSSIdleMB, g.RSSStreamsMB, g.RSSPerStreamMB, g.Transcoders, g.RSSViewersMB, g.RSSPerViewerKB,
			g.GatewayCPU, g.TranscodersCPU, r.SourcesCPU)
	}
	if c := r.Total.Chat; c != nil {
		fmt.Fprintf(w, "chat: %d clients per stream, %g msg/s per room: joined %d/%d, sent %d, delivered %d/%d, delivery p50 %.1f ms p99 %.1f ms, errors %d (rate_limited %d), unexpected closes %d\n",
			r.Config.ChatPerStream, r.Config.ChatRate, c.Joined, c.Clients, c.Sent, c.Delivered, c.Expected,
			c.P50, c.P99, c.Errors, c.RateLimited, c.Closes)
		if len(c.Kinds) > 0 {
			fmt.Fprintf(w, "chat errors: %s\n", strings.Join(c.Kinds, "; "))
		}
	}
	if g := r.Gateway; g != nil && g.RSSChatMB > 0 {
		fmt.Fprintf(w, "gateway: RSS with chat %.1f MB (%.1f KB per chat client)\n", g.RSSChatMB, g.RSSPerChatKB)
	}
	if r.Total.PubError != "" {
		fmt.Fprintf(w, "last publisher error: %s\n", r.Total.PubError)
	}
	if r.Total.LastError != "" {
		fmt.Fprintf(w, "last viewer error: %s\n", r.Total.LastError)
	}
}

// median returns the middle value of v, or 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// mb converts bytes to MB (10^6) rounded to 0.1.
func mb(b int64) float64 { return math.Round(float64(b)/1e5) / 10 }

// round3 rounds to three decimals.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
