package transcode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"testing"
	"time"
)

// stubbornEnv makes the test binary, run as TestStubbornHelper, a process
// that ignores every request to stop.
const stubbornEnv = "TRANSCODE_TEST_STUBBORN"

// TestStubbornHelper is the child of TestProcessCloseKills: it ignores
// interrupts and its stdin, says so, and sleeps. It does nothing in a
// normal test run.
func TestStubbornHelper(t *testing.T) {
	if os.Getenv(stubbornEnv) != "1" {
		return
	}
	signal.Ignore(os.Interrupt)
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// TestProcessCloseKills holds Close to its promise on every OS: a process
// that ignores the request to stop is killed after StopTimeout, and Close
// returns nil because it ended as asked.
func TestProcessCloseKills(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(stubbornEnv, "1")
	p := &Process{
		Path:        exe,
		Args:        []string{"-test.run=^TestStubbornHelper$"},
		StopTimeout: 300 * time.Millisecond,
		Logger:      testLogger(t),
	}
	_, stdout, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper said %q, %v; want ready", line, err)
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
}

// TestEndedAsAsked covers how Wait tells a stop that Close asked for from a
// failure, including the exits only Windows gives (a clean exit at the end
// of stdin, code 1 from a kill).
func TestEndedAsAsked(t *testing.T) {
	const timeout = 3 * time.Second
	exit := func(code int) error { return &ExitError{Code: code, Err: errors.New("exit")} }
	canceled := fmt.Errorf("transcode: wait for ffmpeg: %w", context.Canceled)
	for _, tc := range []struct {
		name  string
		err   error
		after time.Duration // from Close's request to the exit
		want  bool
	}{
		{"clean exit after stdin closed", canceled, time.Second, true},
		{"ffmpeg after SIGINT", exit(255), time.Second, true},
		{"signal", exit(-1), time.Second, true},
		{"killed on Windows", exit(1), timeout + time.Millisecond, true},
		{"failed before the timeout", exit(1), time.Second, false},
		{"not an exit", errors.New("transcode: wait for ffmpeg: i/o"), timeout + time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := time.Now()
			p := &Process{err: tc.err, stopAt: stop, exitAt: stop.Add(tc.after), timeout: timeout}
			if got := p.endedAsAsked(); got != tc.want {
				t.Errorf("endedAsAsked() = %v, want %v", got, tc.want)
			}
		})
	}
}
