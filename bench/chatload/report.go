package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// report is the outcome of a run; it is also the -json file.
type report struct {
	URL            string  `json:"url"`
	Clients        int     `json:"clients"`
	Senders        int     `json:"senders"`
	Connected      int64   `json:"connected"`
	Failed         int64   `json:"failed"`
	ConnectSeconds float64 `json:"connect_seconds"`
	SettleSeconds  float64 `json:"settle_seconds"`
	JoinFrames     int64   `json:"join_frames"`
	LeaveFrames    int64   `json:"leave_frames"`
	PresenceFrames int64   `json:"presence_frames"`
	ErrorFrames    int64   `json:"error_frames"`
	RateLimited    int64   `json:"rate_limited"`
	ForeignFrames  int64   `json:"foreign_messages"`
	Closes         int64   `json:"closes"`
	// ClosesJoining is how many of Closes came before the room settled:
	// clients the server dropped while the others joined.
	ClosesJoining int64    `json:"closes_joining"`
	Errors        []string `json:"errors,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
	NofileSoft    uint64   `json:"nofile_soft"`
	NofileHard    uint64   `json:"nofile_hard"`
	Memory        memory   `json:"memory"`
	Steps         []step   `json:"steps"`
	// Best is the passing step with the most delivered messages per
	// second, or nil when no step passed.
	Best *step `json:"best"`
}

// memory holds RSS samples in KiB; server figures are 0 without -server-pid.
type memory struct {
	ServerPID       int     `json:"server_pid,omitempty"`
	ServerBeforeKiB int64   `json:"server_rss_before_kib"`
	ServerIdleKiB   int64   `json:"server_rss_idle_kib"`
	ServerEndKiB    int64   `json:"server_rss_end_kib"`
	PerIdleConnKiB  float64 `json:"server_kib_per_idle_conn"`
	ClientIdleKiB   int64   `json:"client_rss_idle_kib"`
	ServerIdleNote  string  `json:"note,omitempty"`
}

// step is the outcome of one rate step: the room's figures, the CPU used
// meanwhile and the verdict.
type step struct {
	loadgen.ChatStep
	ServerCPU  float64 `json:"server_cpu_cores"`
	ClientCPU  float64 `json:"client_cpu_cores"`
	MachineCPU float64 `json:"machine_busy_cores"`
	SoftirqCPU float64 `json:"softirq_cores"`
	StealCPU   float64 `json:"steal_cores"`
	Pass       bool    `json:"pass"`
	Why        string  `json:"why,omitempty"`
}

// print writes the report for people.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "chatload report: %s\n", r.URL)
	fmt.Fprintf(w, "  clients   %d connected, %d failed of %d in %.1fs (settled %.1fs later); %d senders\n",
		r.Connected, r.Failed, r.Clients, r.ConnectSeconds, r.SettleSeconds, r.Senders)
	fmt.Fprintf(w, "  frames    join %d, leave %d, presence %d, error %d (rate_limited %d), foreign messages %d; unexpected closes %d (%d while joining)\n",
		r.JoinFrames, r.LeaveFrames, r.PresenceFrames, r.ErrorFrames, r.RateLimited, r.ForeignFrames, r.Closes, r.ClosesJoining)
	m := r.Memory
	if m.ServerPID != 0 {
		fmt.Fprintf(w, "  memory    server RSS %d KiB before, %d KiB idle, %d KiB end: %.1f KiB per idle connection\n",
			m.ServerBeforeKiB, m.ServerIdleKiB, m.ServerEndKiB, m.PerIdleConnKiB)
	}
	fmt.Fprintf(w, "  client    RSS %d KiB idle; RLIMIT_NOFILE %d/%d\n", m.ClientIdleKiB, r.NofileSoft, r.NofileHard)
	for _, s := range r.Steps {
		verdict := "pass"
		if !s.Pass {
			verdict = "FAIL: " + s.Why
		}
		fmt.Fprintf(w, "  rate %-7g sent %d (rejected %d), delivered %d/%d (%.2f%%), %.0f deliveries/s, "+
			"p50 %.1f p90 %.1f p99 %.1f max %.1f ms, cores: server %.2f client %.2f machine %.2f (softirq %.2f, steal %.2f): %s\n",
			s.Rate, s.Sent, s.Rejected, s.Delivered, s.Expected, 100*s.DeliveredRatio, s.DeliveredPerSec,
			s.P50ms, s.P90ms, s.P99ms, s.MaxMs, s.ServerCPU, s.ClientCPU, s.MachineCPU, s.SoftirqCPU, s.StealCPU, verdict)
	}
	if r.Best != nil {
		fmt.Fprintf(w, "  best      %.0f deliveries/s at %g msg/s, p99 %.1f ms\n", r.Best.DeliveredPerSec, r.Best.Rate, r.Best.P99ms)
	}
	for _, e := range r.Warnings {
		fmt.Fprintf(w, "  WARNING   %s\n", e)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors    %s\n", strings.Join(r.Errors, "; "))
	}
}
