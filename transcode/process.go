package transcode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Process defaults used when a field is zero.
const (
	DefaultPath        = "ffmpeg"
	DefaultStopTimeout = 3 * time.Second
)

// stderrTail is how many of ffmpeg's last stderr lines an ExitError keeps.
const stderrTail = 20

// maxLine bounds one logged stderr line; longer lines are cut.
const maxLine = 1024

// Process supervises one ffmpeg (or any program) in its own process group,
// so a ^C meant for the gateway does not stop ffmpeg behind its back. Set
// the fields, then call Start. Whoever calls Start must call Close
// (idempotent) or Wait.
//
// Close asks the process to stop and kills it if it is still running after
// StopTimeout. On Unix the request is SIGINT to the process group (ffmpeg
// then finishes its output) and the kill is SIGKILL to the group. On Windows,
// which has no signals for a process group, the request is the closing of
// stdin (ffmpeg finishes at the end of its input) and the kill is
// Process.Kill of ffmpeg alone (see process_windows.go).
type Process struct {
	Path        string        // program; default "ffmpeg"
	Args        []string      // arguments without the program name, e.g. from Args
	Logger      *slog.Logger  // ffmpeg's stderr lines are logged at Warn level; default slog.Default()
	StopTimeout time.Duration // after Close asks it to stop, kill it after this; default 3s

	cmd      *exec.Cmd
	cancel   context.CancelFunc
	stdin    io.WriteCloser
	stdout   *os.File
	stderr   *lineLogger
	done     chan struct{} // closed when the process has been waited for
	err      error         // the exit error; read after done
	stopOnce sync.Once
	stopped  atomic.Bool   // Close asked the process to stop while it ran
	stopAt   time.Time     // when Close asked; written before stopped is set
	exitAt   time.Time     // when the process was reaped; read after done
	timeout  time.Duration // StopTimeout or its default
}

// ExitError reports a process that ended badly on its own.
type ExitError struct {
	Code   int      // exit code; -1 when a signal ended it
	Stderr []string // the last lines it wrote to stderr, oldest first
	Err    error    // the error from os/exec
}

// Error gives the exit code and the last stderr lines.
func (e *ExitError) Error() string {
	msg := fmt.Sprintf("ffmpeg exited with code %d", e.Code)
	if e.Code < 0 {
		msg = "ffmpeg ended: " + e.Err.Error()
	}
	if len(e.Stderr) > 0 {
		msg += ": " + strings.Join(e.Stderr, "; ")
	}
	return msg
}

// Unwrap returns the error from os/exec.
func (e *ExitError) Unwrap() error { return e.Err }

// Start starts the process with its stdin and stdout connected to the
// returned pipes. Closing stdin ends ffmpeg's input. Read stdout to EOF, then
// call Wait; or call Close to stop the process early. Start may be called
// once.
func (p *Process) Start() (stdin io.WriteCloser, stdout io.ReadCloser, err error) {
	if p.cmd != nil {
		return nil, nil, errors.New("transcode: process already started")
	}
	path := p.Path
	if path == "" {
		path = DefaultPath
	}
	logger := p.Logger
	if logger == nil {
		logger = slog.Default()
	}
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, p.Args...)
	newGroup(cmd)
	// Close cancels ctx: ask the whole group to stop as a user's ^C would.
	// Close itself kills the group after the timeout; WaitDelay bounds
	// waiting for the stderr copier if some child kept the pipe.
	cmd.Cancel = func() error {
		interrupt(cmd.Process)
		return nil
	}
	cmd.WaitDelay = timeout
	p.stderr = &lineLogger{logger: logger}
	cmd.Stderr = p.stderr

	// Our own stdout pipe, not cmd.StdoutPipe: the reaper below must not
	// close it before the caller has read everything.
	outR, outW, err := os.Pipe()
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("transcode: stdout pipe: %w", err)
	}
	cmd.Stdout = outW
	in, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		outR.Close()
		outW.Close()
		return nil, nil, fmt.Errorf("transcode: stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		outR.Close()
		outW.Close()
		return nil, nil, fmt.Errorf("transcode: start %s: %w", path, err)
	}
	outW.Close()

	p.cmd, p.cancel, p.stdin, p.stdout, p.timeout = cmd, cancel, in, outR, timeout
	p.done = make(chan struct{})
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = &ExitError{Code: ee.ExitCode(), Stderr: p.stderr.tail(), Err: err}
		} else if err != nil {
			err = fmt.Errorf("transcode: wait for %s: %w", path, err)
		}
		p.err, p.exitAt = err, time.Now()
		close(p.done)
		cancel()
	}()
	go func() {
		select {
		case <-p.done:
		case <-ctx.Done():
			select {
			case <-p.done:
			case <-time.After(timeout):
				// Not reaped before done, so its pid (and group id)
				// cannot have been reused.
				kill(cmd.Process)
			}
		}
	}()
	return in, outR, nil
}

// Wait waits for the process to exit and closes its pipes. Read stdout to EOF
// first. A process that ended badly gives an *ExitError with its exit code
// and last stderr lines; one stopped by Close gives nil unless it failed
// for another reason. Wait may be called
// more than once and together with Close.
func (p *Process) Wait() error {
	if p.done == nil {
		return errors.New("transcode: process not started")
	}
	<-p.done
	p.stdout.Close()
	if p.stopped.Load() && p.endedAsAsked() {
		return nil
	}
	return p.err
}

// endedAsAsked reports whether the process, which Close asked to stop,
// ended because of that. ffmpeg exits with 255 after SIGINT; -1 is death by
// SIGINT or SIGKILL itself; a clean exit (ffmpeg at the end of its closed
// stdin) shows as the cancelled context; and an exit after the stop timeout
// is Close's kill (on Windows a killed process exits with code 1). Call it
// after done.
func (p *Process) endedAsAsked() bool {
	if errors.Is(p.err, context.Canceled) {
		return true
	}
	var ee *ExitError
	return errors.As(p.err, &ee) &&
		(ee.Code == 255 || ee.Code < 0 || p.exitAt.Sub(p.stopAt) >= p.timeout)
}

// Close asks the process to stop (on Unix SIGINT to its process group; on
// every OS its stdin closed), kills it if it is still there after
// StopTimeout, and waits for it. It returns Wait's error: nil when the
// process stopped as asked. Close is idempotent and
// does nothing before Start.
func (p *Process) Close() error {
	if p.done == nil {
		return nil
	}
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.stopAt = time.Now()
		p.stopped.Store(true)
		p.cancel()
		_ = p.stdin.Close()
	})
	return p.Wait()
}

// lineLogger is ffmpeg's stderr: it logs each line and keeps the last few.
type lineLogger struct {
	logger  *slog.Logger
	mu      sync.Mutex
	partial []byte
	last    []string
}

// Write logs every complete line in b.
func (l *lineLogger) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			room := max(maxLine-len(l.partial), 0)
			l.partial = append(l.partial, b[:min(len(b), room)]...)
			break
		}
		room := max(maxLine-len(l.partial), 0)
		l.partial = append(l.partial, b[:min(i, room)]...)
		b = b[i+1:]
		l.flush()
	}
	return n, nil
}

// flush logs and keeps the pending line, if not blank. l.mu is held.
func (l *lineLogger) flush() {
	line := strings.TrimSpace(string(l.partial))
	l.partial = l.partial[:0]
	if line == "" {
		return
	}
	l.logger.Warn("ffmpeg", "stderr", line)
	if len(l.last) == stderrTail {
		l.last = append(l.last[:0], l.last[1:]...)
	}
	l.last = append(l.last, line)
}

// tail returns the last lines, including an unterminated one.
func (l *lineLogger) tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush()
	return append([]string(nil), l.last...)
}
