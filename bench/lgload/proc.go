package main

import (
	"fmt"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// procUsage is a process's CPU time and resident memory from /proc.
type procUsage struct {
	CPU float64 // seconds of user plus system time
	RSS int64   // bytes resident
}

// readProc reads /proc/PID/stat and /proc/PID/status.
func readProc(pid int) (procUsage, error) {
	st, err := loadgen.ReadProcStat(pid)
	if err != nil {
		return procUsage{}, fmt.Errorf("proc %d: %w", pid, err)
	}
	kib, err := loadgen.ReadStatusKiB(pid, "VmRSS")
	if err != nil {
		return procUsage{}, fmt.Errorf("proc %d: %w", pid, err)
	}
	return procUsage{CPU: st.CPU(), RSS: kib * 1024}, nil
}

// treeUsage returns the usage of pid alone and of its direct children
// together (the gateway's transcoders), and how many children there are.
func treeUsage(pid int) (self, kids procUsage, n int, err error) {
	self, err = readProc(pid)
	if err != nil {
		return self, kids, 0, err
	}
	for _, p := range loadgen.AllProcs() {
		if p.PPID != pid {
			continue
		}
		u, err := readProc(p.PID)
		if err != nil {
			continue
		}
		kids.CPU += u.CPU
		kids.RSS += u.RSS
		n++
	}
	return self, kids, n, nil
}
