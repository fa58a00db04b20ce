package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoProc is the error of the /proc readers (ReadProcStat, ReadStatusKiB,
// ReadMachineCPU) off Linux: the CPU time and memory figures they give are
// unavailable there, and the tools leave them out of their reports.
var ErrNoProc = fmt.Errorf("CPU and memory figures are read from /proc, which only Linux has: %w", errors.ErrUnsupported)

// UserHZ is the unit of the CPU times in /proc: USER_HZ, 100 on Linux.
const UserHZ = 100

// ProcStat is the part of /proc/PID/stat the tools read.
type ProcStat struct {
	PID   int
	Comm  string
	PPID  int
	Ticks uint64 // utime + stime, in 1/UserHZ s
	Start uint64 // starttime, in clock ticks since boot; 0 when the line stops before it
}

// CPU returns the process's user plus system time in seconds.
func (p ProcStat) CPU() float64 { return float64(p.Ticks) / UserHZ }

// ParseProcStat reads the text of /proc/PID/stat. The command name, field
// 2, may hold spaces and parentheses: fields are counted after its last ')'.
func ParseProcStat(b []byte) (ProcStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return ProcStat{}, errors.New("proc stat: no (comm)")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return ProcStat{}, fmt.Errorf("proc stat: pid: %w", err)
	}
	f := strings.Fields(string(b[end+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return ProcStat{}, fmt.Errorf("proc stat: %d fields after comm, want at least 13", len(f))
	}
	num := func(field int) uint64 {
		if err != nil || field-3 >= len(f) {
			return 0
		}
		var v uint64
		v, err = strconv.ParseUint(f[field-3], 10, 64)
		return v
	}
	st := ProcStat{PID: pid, Comm: string(b[open+1 : end])}
	st.PPID = int(num(4))
	st.Ticks = num(14) + num(15)
	st.Start = num(22)
	if err != nil {
		return ProcStat{}, fmt.Errorf("proc stat: %w", err)
	}
	return st, nil
}

// ParseStatusKiB returns the value of the line key ("VmRSS", "VmHWM") of
// the text of /proc/PID/status, in KiB.
func ParseStatusKiB(status []byte, key string) (int64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte(key+":"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("proc status: %s line %q", key, line)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("proc status: no %s line", key)
}

// MachineCPU is the first line of /proc/stat: all CPUs' time, in ticks.
type MachineCPU struct {
	Total   uint64 // user, nice, system, idle, iowait, irq, softirq, steal
	Idle    uint64 // idle and iowait
	Softirq uint64
	Steal   uint64 // taken by the hypervisor for other guests
}

// Busy is the time spent running: all but idle, iowait and steal.
func (m MachineCPU) Busy() uint64 { return m.Total - m.Idle - m.Steal }

// ParseMachineCPU reads the "cpu" line of /proc/stat. Guest time (fields 9
// and 10) is counted in user already.
func ParseMachineCPU(stat []byte) (MachineCPU, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return MachineCPU{}, fmt.Errorf("proc stat: first line %q", line)
	}
	var m MachineCPU
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return MachineCPU{}, fmt.Errorf("proc stat: %q: %w", s, err)
		}
		m.Total += v
		switch i {
		case 3, 4:
			m.Idle += v
		case 6:
			m.Softirq = v
		case 7:
			m.Steal = v
		}
	}
	return m, nil
}
