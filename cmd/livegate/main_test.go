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
	bin := filepath.Join(t.TempDir(), "livegate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addrRe := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "--listen", "127.0.0.1:0")
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			addr := ""
			sc := bufio.NewScanner(stderr)
			for addr == "" && sc.Scan() {
				if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
					addr = m[1]
				}
			}
			go func() {
				for sc.Scan() {
				}
			}()
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
