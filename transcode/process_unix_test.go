//go:build unix

package transcode

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcessCloseKillsGroup(t *testing.T) {
	// A shell that ignores SIGINT, with a child in its group that does too.
	p := &Process{
		Path:        "sh",
		Args:        []string{"-c", "trap '' INT; sleep 60 & echo $!; wait"},
		StopTimeout: 300 * time.Millisecond,
		Logger:      testLogger(t),
	}
	_, stdout, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 32)
	n, err := stdout.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("child pid %q: %v", line[:n], err)
	}
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Errorf("Close() = %v, want nil (killed as asked)", err)
	}
	d := time.Since(start)
	t.Logf("Close took %v", d)
	if d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("Close took %v with StopTimeout 300ms", d)
	}
	// The child was killed with the group: gone, or a zombie until init
	// reaps it.
	deadline := time.Now().Add(2 * time.Second)
	for running(child) {
		if time.Now().After(deadline) {
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("child %d still runs after Close", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
