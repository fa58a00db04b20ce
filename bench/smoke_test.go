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
		}
	}
	readJSON(t, filepath.Join(dir, "report.json"), &report)
	keys := []string{"requests_per_s", "mb_per_s", "p50_ms", "p99_ms", "server_us_per_request"}
	for _, mode := range []string{"ended", "recording", "live-segments", "live-parts"} {
		for _, name := range []string{"livegate", "nginx"} {
			var r struct {
				URLs, Requests, Errors int
			}
			readJSON(t, filepath.Join(dir, "out", mode, name+".1.json"), &r)
			if r.URLs < 2 || r.Requests == 0 || r.Errors != 0 {
				t.Errorf("%s %s: %+v; want requests for at least 2 files, no errors", mode, name, r)
			}
		}
		m := report.Modes[mode]
		for side, fig := range map[string]figures{"livegate": m.Livegate, "nginx": m.Nginx, "livegate/nginx": m.Ratio} {
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
