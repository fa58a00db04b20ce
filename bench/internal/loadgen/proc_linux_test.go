package loadgen

import (
	"os"
	"testing"
)

// TestReadProc reads this process's and the machine's /proc files.
func TestReadProc(t *testing.T) {
	if st, err := ReadProcStat(os.Getpid()); err != nil || st.Comm == "" || st.PPID != os.Getppid() {
		t.Errorf("ReadProcStat(self) = %+v, %v", st, err)
	}
	if kib, err := ReadStatusKiB(os.Getpid(), "VmRSS"); err != nil || kib <= 0 {
		t.Errorf("ReadStatusKiB(self) = %d, %v", kib, err)
	}
	if m, err := ReadMachineCPU(); err != nil || m.Total == 0 {
		t.Errorf("ReadMachineCPU() = %+v, %v", m, err)
	}
}
