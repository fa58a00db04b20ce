//go:build unix

package transcode

import (
	"os"
	"os/exec"
	"syscall"
)

// On Unix the process leads its own process group: a ^C on the gateway's
// terminal reaches only the gateway, which then stops ffmpeg in order. Close
// sends SIGINT to the group (ffmpeg finishes its output and exits with 255)
// and SIGKILL to the group after StopTimeout, which also ends any child the
// process started.

// newGroup makes cmd start in a new process group that it leads.
func newGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// interrupt sends SIGINT to the process group p leads.
func interrupt(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGINT)
}

// kill sends SIGKILL to the process group p leads.
func kill(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
}
