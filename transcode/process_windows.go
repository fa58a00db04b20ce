package transcode

import (
	"os"
	"os/exec"
	"syscall"
)

// On Windows there are no signals to send to a process group. The process
// starts in a new console process group (CREATE_NEW_PROCESS_GROUP), which
// keeps a ^C in the gateway's console from reaching it, as Setpgid does on
// Unix. Close asks it to stop by closing its stdin: ffmpeg finishes at the
// end of its input, writes its trailer and exits 0. If it is still running
// after StopTimeout, Close ends it with Process.Kill (TerminateProcess,
// exit code 1). That kills the process alone, not processes it started:
// ffmpeg as livegate runs it starts none, so a job object to kill a whole
// tree is not worth its code.

// newGroup makes cmd start in a new console process group.
func newGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// interrupt does nothing: Close closes the process's stdin, which is the
// request to stop.
func interrupt(p *os.Process) {}

// kill terminates the process.
func kill(p *os.Process) {
	_ = p.Kill()
}
