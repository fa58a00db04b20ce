//go:build linux

// The benchmark scripts read Linux's /proc (CPU times, cpuinfo, loadavg), so
// their smoke tests run on Linux only.

package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smoke runs ./script --smoke with OUT_DIR=dir/out and REPORT=dir/report.json
// and returns dir. It skips when a tool is missing, unless CI is set: there
// the smoke test must run.
func smoke(t *testing.T, script string, tools []string) string {
	t.Helper()
	for _, tool := range append(tools, "bash", "go") {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found, and CI is set: the smoke test must run in CI", tool)
			}
			t.Skipf("%s not found: skipping the smoke test (it runs in CI)", tool)
		}
	}
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	// The script bounds every phase; this is a last resort on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./"+script, "--smoke")
	cmd.Env = append(os.Environ(), "OUT_DIR="+filepath.Join(dir, "out"), "REPORT="+filepath.Join(dir, "report.json"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --smoke: %v\n%s", script, err, out.String())
	}
	t.Logf("%s --smoke took %s:\n%s", script, time.Since(start).Round(time.Second), out.String())
	return dir
}

// readJSON decodes a report file into v.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
}

// The smoke tests below check that each benchmark runs and reports its
// figures, never what the figures are.

func TestDeliverySmoke(t *testing.T) {
	dir := smoke(t, "delivery.sh", []string{"ffmpeg", "python3", "curl", "nginx"})
	type figures map[string]any
	var report struct {
		Modes map[string]struct {
			Livegate, Nginx figures
			Ratio           figures `json:"livegate/nginx"`
			// the private mode's
			Private      figures `json:"livegate-private"`
			PrivateRatio figures `json:"private/public"`
		}
	}
	readJSON(t, filepath.Join(dir, "report.json"), &report)
	keys := []string{"requests_per_s", "mb_per_s", "p50_ms", "p99_ms", "server_us_per_request"}
	for _, mode := range []string{"ended", "recording", "live-segments", "live-parts", "private"} {
		servers := []string{"livegate", "nginx"}
		if mode == "private" {
			servers = append(servers, "livegate-private")
		}
		for _, name := range servers {
			var r struct {
				URLs, Requests, Errors int
			}
			readJSON(t, filepath.Join(dir, "out", mode, name+".1.json"), &r)
			if r.URLs < 2 || r.Requests == 0 || r.Errors != 0 {
				t.Errorf("%s %s: %+v; want requests for at least 2 files, no errors", mode, name, r)
			}
		}
		m := report.Modes[mode]
		sides := map[string]figures{"livegate": m.Livegate, "nginx": m.Nginx, "livegate/nginx": m.Ratio}
		if mode == "private" {
			sides["livegate-private"], sides["private/public"] = m.Private, m.PrivateRatio
		}
		for side, fig := range sides {
			for _, k := range keys {
				if _, ok := fig[k]; !ok {
					t.Errorf("report: %s %s %s missing", mode, side, k)
				}
			}
		}
	}
}

func TestChatSmoke(t *testing.T) {
	dir := smoke(t, "chat.sh", []string{"node", "npm", "python3"})
	var r struct {
		Clients int
		Servers map[string]struct {
			Joined    int
			Delivered float64 `json:"delivered_per_sec"`
			P99       float64 `json:"p99_ms"`
			KiB       float64 `json:"kib_per_idle_conn"`
		}
	}
	readJSON(t, filepath.Join(dir, "report.json"), &r)
	for _, name := range []string{"livegate", "node"} {
		s, ok := r.Servers[name]
		if !ok || r.Clients == 0 || s.Joined != r.Clients || s.Delivered <= 0 || s.P99 <= 0 || s.KiB <= 0 {
			t.Errorf("%s: %+v of %d clients; want every client joined, deliveries, p99 and memory", name, s, r.Clients)
		}
	}
}

func TestPipelineSmoke(t *testing.T) {
	dir := smoke(t, "pipeline.sh", []string{"ffmpeg", "chromium"})
	type dist struct{ N int }
	var r struct {
		Livegate struct {
			Startup  float64 `json:"startup_s"`
			Listing  dist    `json:"listing_delay_s"`
			Distance *dist   `json:"player_distance_s"`
		}
	}
	readJSON(t, filepath.Join(dir, "report.json"), &r)
	// the player's samples are only required to be reported: on a machine
	// as loaded as a parallel test run, hls.js may not sample its distance
	// within the smoke run's 8 s
	if l := r.Livegate; l.Startup <= 0 || l.Listing.N == 0 || l.Distance == nil {
		t.Errorf("livegate: %+v; want a startup, listing delays and the player's distance", l)
	} else {
		t.Logf("player distance samples: %d", l.Distance.N)
	}
}

func TestLoadSmoke(t *testing.T) {
	dir := smoke(t, "load.sh", []string{"ffmpeg", "curl"})
	var r struct {
		Gateway struct {
			PerStream float64 `json:"rss_per_stream_mb"`
		}
		Streams []struct {
			Viewers, Requests int
			State             string `json:"publisher_state"`
		}
	}
	readJSON(t, filepath.Join(dir, "out", "smoke.json"), &r)
	if r.Gateway.PerStream <= 0 || len(r.Streams) != 1 || r.Streams[0].Viewers != 5 || r.Streams[0].Requests == 0 || r.Streams[0].State != "live" {
		t.Errorf("report: %+v; want the memory per stream and one live stream whose 5 viewers fetched", r)
	}
}

func TestEdgeSmoke(t *testing.T) {
	dir := smoke(t, "edge.sh", []string{"ffmpeg", "python3", "curl", "nginx"})
	var r struct {
		Machine string
		Steps   []struct {
			Path          string
			Viewers       int
			Delivered     int
			P50           *float64 `json:"delivery_p50_ms"`
			OriginPerFile *float64 `json:"origin_per_file"`
			GatewayCPU    *float64 `json:"gateway_cpu"`
			Load          string   `json:"load_after"`
		}
		Held map[string]struct {
			P99 *int `json:"p99"`
		}
	}
	readJSON(t, filepath.Join(dir, "report.json"), &r)
	paths := map[string]int{}
	for _, s := range r.Steps {
		paths[s.Path]++
		if s.Viewers <= 0 || s.Delivered == 0 || s.P50 == nil || s.OriginPerFile == nil || s.GatewayCPU == nil || s.Load == "" {
			t.Errorf("step %+v: want viewers, parts delivered, the delivery delay, origin requests per file, the gateway's CPU and the load", s)
		}
	}
	for _, p := range []string{"direct", "edge"} {
		if paths[p] == 0 || r.Held[p].P99 == nil {
			t.Errorf("report: no step of %s, or no verdict: %+v", p, r)
		}
	}
}

func TestSoakSmoke(t *testing.T) {
	dir := smoke(t, "soak.sh", []string{"ffmpeg", "python3", "curl"})
	type verdict struct {
		Samples int
		Flat    *bool
	}
	var r struct {
		Samples  int
		Gateways map[string]map[string]verdict
		Missing  []string `json:"missing_metrics"`
		Flat     *bool
		Load     map[string]struct {
			Viewers int
			Chat    struct{ Clients, Joined int }
		}
	}
	readJSON(t, filepath.Join(dir, "report.json"), &r)
	if r.Samples < 3 || r.Flat == nil {
		t.Errorf("report: %d samples, verdict %v; want 3 or more and a verdict", r.Samples, r.Flat)
	}
	for _, gw := range []string{"1", "2"} {
		for _, s := range []string{"rss", "threads", "proc_fds"} {
			if v, ok := r.Gateways[gw][s]; !ok || v.Samples < 3 || v.Flat == nil {
				t.Errorf("gateway %s: %s %+v; want samples and a verdict", gw, s, v)
			}
		}
	}
	for _, ab := range []string{"a", "b"} {
		if l := r.Load[ab]; l.Viewers != 100 || l.Chat.Clients != 250 || l.Chat.Joined != 250 {
			t.Errorf("load %s: %+v; want 100 viewers and 250 chat members joined", ab, l)
		}
	}
	// a figure of the gateway's wiring, not of the script: reported
	if len(r.Missing) > 0 {
		t.Logf("missing from the gateway's /metrics: %v (judged from /proc)", r.Missing)
	}
}
