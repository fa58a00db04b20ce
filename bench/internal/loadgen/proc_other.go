//go:build !linux

package loadgen

// ReadProcStat returns ErrNoProc: there is no /proc/PID/stat off Linux.
func ReadProcStat(pid int) (ProcStat, error) { return ProcStat{}, ErrNoProc }

// AllProcs returns nothing: there is no /proc off Linux.
func AllProcs() []ProcStat { return nil }

// ReadStatusKiB returns ErrNoProc: there is no /proc/PID/status off Linux.
func ReadStatusKiB(pid int, key string) (int64, error) { return 0, ErrNoProc }

// ReadMachineCPU returns ErrNoProc: there is no /proc/stat off Linux.
func ReadMachineCPU() (MachineCPU, error) { return MachineCPU{}, ErrNoProc }
