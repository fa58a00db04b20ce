package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets the pipeline is held to.
const (
	targetCPURatio = 0.05 // gateway CPU / ffmpeg CPU
	targetTotal    = 1.0  // seconds, livegate total latency p50 on its watch page
	targetTotalP95 = 1.5  // seconds, livegate total latency p95 on its watch page
	targetExternal = 1.5  // seconds, total latency p50 of a default hls.js on another origin
	targetVsFFmpeg = 0.4  // that total / ffmpeg-hls total, p50
	targetStartup  = 1.0  // seconds, first byte to playable
)

// report is everything one run measured.
type report struct {
	Time      time.Time          `json:"time"`
	Machine   machine            `json:"machine"`
	Duration  string             `json:"duration"`
	Codec     string             `json:"codec"`
	PlayerJS  string             `json:"player_js,omitempty"`
	Nice      int                `json:"browser_nice"`
	Config    string             `json:"gateway_config,omitempty"`
	Startup   map[string]float64 `json:"startup_s"` // by source codec, livegate
	Livegate  *side              `json:"livegate,omitempty"`
	Reference *side              `json:"ffmpeg_hls,omitempty"`
	External  *side              `json:"livegate_hlsjs_default,omitempty"` // the gateway in a default hls.js page on another origin
	CPU       *cpuReport         `json:"cpu,omitempty"`
	RefCPU    *cpuReport         `json:"ffmpeg_hls_cpu,omitempty"` // the machine during the reference pass
	Ratio     float64            `json:"total_p50_livegate_over_ffmpeg,omitempty"`
	Targets   []target           `json:"targets"`
}

// side is the latency of one system.
type side struct {
	Startup   float64      `json:"startup_s"`
	Live      float64      `json:"publisher_live_s,omitempty"`
	Listing   dist         `json:"listing_delay_s"`
	Player    dist         `json:"player_distance_s"`
	Target    dist         `json:"hlsjs_target_latency_s"`
	Buffer    dist         `json:"player_buffer_ahead_s"`
	Total     dist         `json:"total_s"`
	Glass     dist         `json:"pdt_latency_s"` // now - hls.playingDate: capture to display when PROGRAM-DATE-TIME is the capture time
	Stalls    int          `json:"stalls"`
	Stalled   float64      `json:"stalled_s"`
	PlayStart float64      `json:"play_start_s"`
	Reloads   int          `json:"playlist_reloads"`
	Errors    int          `json:"playlist_errors"`
	LastErr   string       `json:"playlist_last_error,omitempty"`
	Missed    int          `json:"segments_missed"`
	Holes     [][2]uint64  `json:"segments_missed_msn,omitempty"`
	MediaEnd  float64      `json:"media_listed_s"`
	Final     string       `json:"final_playlist,omitempty"`
	Series    [][2]float64 `json:"listing_series"` // seconds since the first byte, media end
	Ended     bool         `json:"endlist_seen"`
	Speed     dist         `json:"publisher_speed"`
	PageErr   []string     `json:"page_errors,omitempty"`
	ViewErr   string       `json:"viewer_error,omitempty"`
	Browser   bool         `json:"browser"`
}

// target is one goal and whether the run met it.
type target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Met   bool    `json:"met"`
}

// machine describes where the run happened.
type machine struct {
	CPUs     int    `json:"nproc"`
	Model    string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	FFmpeg   string `json:"ffmpeg"`
}

// newReport starts a report for o.
func newReport(o options) *report {
	return &report{Time: time.Now().UTC(), Machine: thisMachine(o.ffmpeg), Duration: o.duration.String(),
		Codec: o.codec, Startup: map[string]float64{}, PlayerJS: o.playerJS, Config: o.config, Nice: o.browserNice}
}

// newSide summarises a pass.
func newSide(p *pass) *side {
	s := &side{Startup: p.Startup, Live: p.Live, Listing: summarize(p.Listing.Delays),
		Reloads: p.Listing.Reloads, Errors: p.Listing.Errors, LastErr: p.Listing.LastErr, Missed: p.Listing.Missed, Holes: p.Listing.Holes, MediaEnd: p.Listing.MediaEnd, Final: p.Listing.Final,
		Ended: p.Listing.Ended, Speed: summarize(p.Speeds), PlayStart: -1, Series: p.Listing.Series}
	if v := p.Viewing; v != nil {
		s.Browser = true
		s.Player, s.Target, s.Buffer, s.Glass = summarize(v.Distance), summarize(v.Target), summarize(v.Buffer), summarize(v.Glass)
		s.Total = sumDist(s.Listing, s.Player)
		s.Stalls, s.Stalled, s.PlayStart, s.PageErr, s.ViewErr = v.Stalls, v.Stalled, v.PlayStart, v.Errors, v.Err
	}
	return s
}

// judge checks the targets the run has numbers for.
func (r *report) judge() {
	r.Targets = nil
	if r.CPU != nil && r.CPU.FFmpeg > 0 {
		r.Targets = append(r.Targets, target{"gateway CPU / ffmpeg CPU", r.CPU.Ratio, targetCPURatio, r.CPU.Ratio <= targetCPURatio})
	}
	if r.Livegate != nil && r.Livegate.Startup > 0 {
		v := r.Livegate.Startup
		r.Targets = append(r.Targets, target{"startup, first byte to playable (s)", v, targetStartup, v <= targetStartup})
	}
	if r.Livegate != nil && r.Livegate.Total.N > 0 {
		v := r.Livegate.Total.P50
		r.Targets = append(r.Targets, target{"watch page total latency p50 (s)", v, targetTotal, v <= targetTotal})
		v = r.Livegate.Total.P95
		r.Targets = append(r.Targets, target{"watch page total latency p95 (s)", v, targetTotalP95, v <= targetTotalP95})
	}
	if r.External != nil && r.External.Total.N > 0 {
		v := r.External.Total.P50
		r.Targets = append(r.Targets, target{"default hls.js, other origin, p50 (s)", v, targetExternal, v <= targetExternal})
		if r.Reference != nil && r.Reference.Total.N > 0 {
			r.Ratio = v / r.Reference.Total.P50
			r.Targets = append(r.Targets, target{"default hls.js p50 / ffmpeg-hls p50", r.Ratio, targetVsFFmpeg, r.Ratio <= targetVsFFmpeg})
		}
	}
}

// print writes the summary table.
func (r *report) print(out io.Writer) {
	fmt.Fprintf(out, "\nlgbench %s: %s source, %s per pass; %d CPUs (%s), %s RAM\n\n",
		r.Time.Format("2006-01-02 15:04Z"), r.Codec, r.Duration, r.Machine.CPUs, r.Machine.Model, r.Machine.MemTotal)
	if r.Config != "" {
		fmt.Fprintf(out, "gateway config: %s\n", r.Config)
	}
	if r.PlayerJS != "" {
		fmt.Fprintf(out, "player tuned with: %s\n", r.PlayerJS)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	lg, ext, ref := r.Livegate, r.External, r.Reference
	// the columns: the watch page, a default hls.js on another origin,
	// ffmpeg's muxer, and the second over the third
	line := func(name string, f func(*side) string, v func(*side) float64) {
		cells := []string{name}
		for _, s := range []*side{lg, ext, ref} {
			if s == nil {
				cells = append(cells, "-")
			} else {
				cells = append(cells, f(s))
			}
		}
		rt := "-"
		if v != nil && ext != nil && ref != nil && v(ref) > 0 && v(ext) > 0 {
			rt = fmt.Sprintf("%.2f", v(ext)/v(ref))
		}
		row(append(cells, rt)...)
	}
	row("", "livegate /watch", "livegate, hls.js default", "ffmpeg-hls", "ratio")
	line("startup: first byte to playable", func(s *side) string { return secs(s.Startup) }, func(s *side) float64 { return s.Startup })
	line("listing delay p50 / p95 / max", func(s *side) string { return d3(s.Listing) }, func(s *side) float64 { return s.Listing.P50 })
	line("player distance p50 / p95", func(s *side) string { return d2(s.Player) }, func(s *side) float64 { return s.Player.P50 })
	line("hls.js target latency p50", func(s *side) string { return p50(s.Target) }, nil)
	line("player buffer ahead p50", func(s *side) string { return p50(s.Buffer) }, nil)
	line("total latency p50 / p95", func(s *side) string { return d2(s.Total) }, func(s *side) float64 { return s.Total.P50 })
	line("now - PROGRAM-DATE-TIME p50 / p95", func(s *side) string { return d2(s.Glass) }, nil)
	line("stalls (> 1 s) / stalled time", func(s *side) string {
		if !s.Browser {
			return "-"
		}
		return fmt.Sprintf("%d / %.1f s", s.Stalls, s.Stalled)
	}, nil)
	line("navigation to playback", func(s *side) string { return secs(s.PlayStart) }, nil)
	line("playlist reloads / errors", func(s *side) string { return fmt.Sprintf("%d / %d", s.Reloads, s.Errors) }, nil)
	if lg != nil && lg.Speed.N > 0 {
		row("transcoding speed told the publisher, p50", fmt.Sprintf("%.2f", lg.Speed.P50), "-", "-", "-")
	}
	for _, c := range sortedKeys(r.Startup) {
		row("startup, "+c+" source", secs(r.Startup[c]), "-", "-", "-")
	}
	if c := r.CPU; c != nil {
		row("gateway CPU (s/s)", fmt.Sprintf("%.4f", c.Gateway), "-", "-", "-")
		row("ffmpeg CPU (s/s)", fmt.Sprintf("%.3f", c.FFmpeg), "-", "-", "-")
		row("gateway / ffmpeg CPU", fmt.Sprintf("%.2f %%", 100*c.Ratio), "-", "-", "-")
		row("gateway peak RSS", fmt.Sprintf("%.1f MiB", float64(c.PeakRSS)/(1<<20)), "-", "-", "-")
		row("bench's own CPU: source ffmpeg, Chromium (s/s)", fmt.Sprintf("%.3f", c.Bench), "-", "-", "-")
		row("other processes' CPU (s/s)", fmt.Sprintf("%.3f", c.Other), "-", "-", "-")
		row("machine CPU: busy / stolen by hypervisor", fmt.Sprintf("%.0f %% / %.0f %%", 100*c.MachineBusy, 100*c.MachineSteal), "-", "-", "-")
	}
	tw.Flush()
	if c := r.RefCPU; c != nil {
		fmt.Fprintf(out, "during the ffmpeg-hls pass: bench's own CPU %.3f s/s, other processes %.3f s/s, machine busy %.0f %% / stolen %.0f %%\n",
			c.Bench, c.Other, 100*c.MachineBusy, 100*c.MachineSteal)
	}
	for _, c := range []*cpuReport{r.CPU, r.RefCPU} {
		if c != nil && (c.Other > 0.2 || c.MachineSteal > 0.1) {
			fmt.Fprintf(out, "\nwarning: other processes used %.2f of %d CPUs and the hypervisor stole %.0f %% during a pass: the numbers are disturbed\n",
				c.Other, r.Machine.CPUs, 100*c.MachineSteal)
		}
	}
	if lg != nil && lg.Speed.N > 0 && lg.Speed.P50 < 0.95 {
		fmt.Fprintf(out, "warning: the gateway's transcoder ran at %.2fx real time (p50): listing delays grow with the backlog\n", lg.Speed.P50)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(out, "\ntargets:")
		for _, t := range r.Targets {
			verdict := "met"
			if !t.Met {
				verdict = "MISSED"
			}
			fmt.Fprintf(out, "  %-34s %8.3f  (limit %.3f)  %s\n", t.Name, t.Value, t.Limit, verdict)
		}
	}
	fmt.Fprintln(out)
}

func secs(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f s", v)
}

func d3(d dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f / %.2f / %.2f s", d.P50, d.P95, d.Max)
}

func d2(d dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f / %.2f s", d.P50, d.P95)
}

func p50(d dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f s", d.P50)
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// thisMachine reads the CPU model, memory and kernel from /proc.
func thisMachine(ffmpeg string) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(v), &kb)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(ffmpeg, "-hide_banner", "-version").Output(); err == nil {
		m.FFmpeg, _, _ = strings.Cut(string(out), "\n")
	}
	return m
}
