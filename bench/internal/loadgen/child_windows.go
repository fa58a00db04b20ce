package loadgen

import (
	"os"
	"os/exec"
	"syscall"
)

// OwnGroup makes cmd start in a console process group of its own, so that a
// ^C in the tool's console reaches only the tool, which then stops the child
// in order. Windows cannot kill a child when the tool dies (DieWithParent
// does nothing): a tool killed outright leaves its children running until
// they end.
func OwnGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// InterruptGroup kills the process pid: Windows has no signal to send to a
// process group, and the tools interrupt a child only once they no longer
// want its output.
func InterruptGroup(pid int) error { return kill(pid) }

// KillGroup kills the process pid. Processes it started live on: the tools'
// children (ffmpeg, the gateway's transcoders) start none that outlive them.
func KillGroup(pid int) error { return kill(pid) }

// kill terminates the process pid.
func kill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	defer p.Release()
	return p.Kill()
}
