package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runScript runs deploy/loadtest/run.sh with args and extra environment,
// using an lgload built from this package, and returns its stdout, stderr
// and error.
func runScript(t *testing.T, lgload string, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"../../deploy/loadtest/run.sh"}, args...)...)
	cmd.Env = append(append(os.Environ(), "LGLOAD="+lgload), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestLoadtestScript: deploy/loadtest/run.sh refuses a gateway that is not
// on this machine, and runs the small scenario (shortened) against a real
// gateway, printing the summary and saving a report with the viewer and
// chat figures filled.
func TestLoadtestScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found")
	}
	dir := t.TempDir()
	lgload := filepath.Join(dir, "lgload")
	if out, err := exec.Command("go", "build", "-o", lgload, ".").CombinedOutput(); err != nil {
		t.Fatalf("build lgload: %v\n%s", err, out)
	}

	t.Run("refuses non-loopback", func(t *testing.T) {
		out := t.TempDir()
		_, stderr, err := runScript(t, lgload, []string{"URL=http://192.0.2.1:8080", "OUT_DIR=" + out}, "small")
		if err == nil || !strings.Contains(stderr, "not a loopback") {
			t.Errorf("run.sh against 192.0.2.1: err %v, stderr:\n%s", err, stderr)
		}
		if _, err := os.Stat(filepath.Join(out, "small.json")); err == nil {
			t.Error("a report was written")
		}
	})
	t.Run("unknown scenario", func(t *testing.T) {
		_, stderr, err := runScript(t, lgload, nil, "no-such-scenario")
		if err == nil || !strings.Contains(stderr, "no scenario") {
			t.Errorf("err %v, stderr:\n%s", err, stderr)
		}
	})

	t.Run("small", func(t *testing.T) {
		addr, _ := startGateway(t)
		out := t.TempDir()
		stdout, stderr, err := runScript(t, lgload, []string{"URL=http://" + addr, "OUT_DIR=" + out, "DURATION=6s"},
			"small", "-start-wait", "60s")
		if err != nil {
			t.Fatalf("run.sh small: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		t.Logf("summary:\n%s", stdout)
		if !strings.Contains(stdout, "chat: 10 clients per stream") {
			t.Errorf("summary lacks the chat line:\n%s", stdout)
		}
		if saved, err := os.ReadFile(filepath.Join(out, "small.txt")); err != nil || string(saved) != stdout {
			t.Errorf("summary not saved as small.txt: %v", err)
		}
		rep := readReport(t, filepath.Join(out, "small.json"))
		if rep.Config.Duration != "6s" || rep.Config.ChatPerStream != 10 {
			t.Errorf("report config %+v: want the scenario with DURATION=6s", rep.Config)
		}
		checkReport(t, rep, 5, 10)
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr)
		}
	})
}
