package loadgen

import (
	"os/exec"
	"syscall"
)

// DieWithParent makes Linux kill cmd's process with SIGKILL if the tool dies
// first (Pdeathsig), so that a killed benchmark leaves no ffmpeg or gateway
// running. Call it after setting cmd.SysProcAttr, if at all.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
