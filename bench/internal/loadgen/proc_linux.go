package loadgen

import (
	"fmt"
	"os"
	"strconv"
)

// ReadProcStat reads /proc/PID/stat.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcStat{}, err
	}
	return ParseProcStat(b)
}

// AllProcs reads /proc/*/stat of every process that can be read.
func AllProcs() []ProcStat {
	ents, _ := os.ReadDir("/proc")
	var out []ProcStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadProcStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// ReadStatusKiB reads the line key of /proc/PID/status, in KiB.
func ReadStatusKiB(pid int, key string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	kib, err := ParseStatusKiB(b, key)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return kib, nil
}

// ReadMachineCPU reads /proc/stat.
func ReadMachineCPU() (MachineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineCPU{}, err
	}
	return ParseMachineCPU(b)
}
