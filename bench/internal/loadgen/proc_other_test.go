//go:build !linux

package loadgen

import (
	"errors"
	"os"
	"testing"
)

// TestReadProcUnavailable checks that the /proc readers say the figures are
// unavailable off Linux.
func TestReadProcUnavailable(t *testing.T) {
	if _, err := ReadProcStat(os.Getpid()); !errors.Is(err, ErrNoProc) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ReadProcStat(self) error = %v, want ErrNoProc", err)
	}
	if _, err := ReadMachineCPU(); !errors.Is(err, ErrNoProc) {
		t.Errorf("ReadMachineCPU() error = %v, want ErrNoProc", err)
	}
}
