//go:build unix

package loadgen

import (
	"os/exec"
	"syscall"
)

// OwnGroup makes cmd start in a process group of its own, so that a ^C on
// the tool's terminal reaches only the tool, which then stops the child in
// order with InterruptGroup and KillGroup. On Linux the child is also killed
// if the tool dies first (see DieWithParent).
func OwnGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	DieWithParent(cmd)
}

// InterruptGroup sends SIGINT to the process group pid leads: ffmpeg
// finishes its output and exits.
func InterruptGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGINT) }

// KillGroup sends SIGKILL to the process group pid leads.
func KillGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }
