package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is the kernel's USER_HZ, the unit of CPU times in /proc (100
// on Linux).
const clockTicks = 100

// procUsage is a process's CPU time and resident memory from /proc.
type procUsage struct {
	CPU float64 // seconds of user plus system time
	RSS int64   // bytes resident
}

// readProc reads /proc/PID/stat and /proc/PID/status.
func readProc(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, fmt.Errorf("proc %d: %w", pid, err)
	}
	u, _, err := parseStat(string(stat))
	if err != nil {
		return procUsage{}, fmt.Errorf("proc %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, fmt.Errorf("proc %d: %w", pid, err)
	}
	u.RSS = parseRSS(string(status))
	return u, nil
}

// parseStat reads utime and stime (fields 14 and 15) and the parent pid
// (field 4) from the text of /proc/PID/stat. The command name, field 2,
// may hold spaces and parentheses: fields are counted after its last ')'.
func parseStat(text string) (procUsage, int, error) {
	i := strings.LastIndexByte(text, ')')
	if i < 0 {
		return procUsage{}, 0, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(text[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return procUsage{}, 0, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseFloat(f[11], 64)
	st, err3 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procUsage{}, 0, fmt.Errorf("stat: bad number in %q", text)
	}
	return procUsage{CPU: (ut + st) / clockTicks}, ppid, nil
}

// parseRSS returns VmRSS in bytes from the text of /proc/PID/status, or 0.
func parseRSS(text string) int64 {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// children returns the pids whose parent is pid.
func children(pid int) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		_, ppid, err := parseStat(string(b))
		if err != nil || ppid != pid {
			continue
		}
		if n, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// treeUsage returns the usage of pid alone and of its direct children
// together (the gateway's transcoders), and how many children there are.
func treeUsage(pid int) (self, kids procUsage, n int, err error) {
	self, err = readProc(pid)
	if err != nil {
		return self, kids, 0, err
	}
	for _, c := range children(pid) {
		u, err := readProc(c)
		if err != nil {
			continue
		}
		kids.CPU += u.CPU
		kids.RSS += u.RSS
		n++
	}
	return self, kids, n, nil
}
