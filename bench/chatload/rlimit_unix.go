//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseNofile raises RLIMIT_NOFILE to its hard limit (Go already does this
// for the process since 1.19; this makes it explicit), stores the limits in
// soft and hard, and warns when they are too low for n clients.
func raiseNofile(n int, soft, hard *uint64) []string {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	*soft, *hard = uint64(rl.Cur), uint64(rl.Max)
	if *soft < uint64(n)+64 {
		return []string{fmt.Sprintf("RLIMIT_NOFILE is %d (hard %d), too low for %d clients: raise the hard limit (ulimit -Hn) to at least %d",
			*soft, *hard, n, n+64)}
	}
	return nil
}
