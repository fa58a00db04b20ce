package main

import (
	"bufio"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestSignals builds the binary, serves on a free port and stops cleanly on
// SIGINT and on SIGTERM.
func TestSignals(t *testing.T) {
	needTools(t)
	bin := buildGateway(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, addr := runGateway(t, bin)
			resp, err := http.Get("http://" + addr + "/healthz")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz on %q: %v", addr, err)
			}
			resp.Body.Close()
			cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("exit after %s: %v", sig, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("still running 10 s after %s", sig)
			}
		})
	}
}

// buildGateway builds the livegate binary into a temporary directory.
func buildGateway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "livegate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

var addrRe = regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)

// runGateway starts bin on a free loopback port with args and returns it
// and its address, once it listens; the test's end kills it.
func runGateway(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	addr := ""
	sc := bufio.NewScanner(stderr)
	for addr == "" && sc.Scan() {
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("the gateway stopped before it listened")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return cmd, addr
}
