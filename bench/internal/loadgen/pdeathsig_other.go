//go:build !linux

package loadgen

import "os/exec"

// DieWithParent does nothing: only Linux can kill a child when its parent
// dies (Pdeathsig). Elsewhere a tool killed outright leaves its children
// running until they end; a tool that stops normally stops them itself.
func DieWithParent(cmd *exec.Cmd) {}
