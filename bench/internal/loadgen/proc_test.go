package loadgen

import "testing"

func TestParseProcStat(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    ProcStat
		wantErr bool
	}{
		{
			name: "ffmpeg",
			in:   "6146 (ffmpeg) S 6084 6146 5376 0 -1 4194560 9855 0 0 0 412 37 0 0 20 0 5 0 561234 900000000 30000 18446744073709551615",
			want: ProcStat{PID: 6146, Comm: "ffmpeg", PPID: 6084, Ticks: 449, Start: 561234},
		},
		{
			name: "comm with spaces and parentheses",
			in:   "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 99 0 0",
			want: ProcStat{PID: 77, Comm: "a (b) c", PPID: 1, Ticks: 15, Start: 99},
		},
		{
			name: "stops before starttime",
			in:   "123 (ff mpeg (x)) S 77 1 1 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0",
			want: ProcStat{PID: 123, Comm: "ff mpeg (x)", PPID: 77, Ticks: 300},
		},
		{
			name: "odd name, short line",
			in:   "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0",
			want: ProcStat{PID: 1234, Comm: "my (odd) name", PPID: 1, Ticks: 175},
		},
		{name: "truncated", in: "1 (x) S 0 1 1", wantErr: true},
		{name: "no comm", in: "1 x S", wantErr: true},
		{name: "bad number", in: "1 (x) S 0 1 1 0 -1 0 0 0 0 0 zz 5 0 0 20 0 1 0 99 0", wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseProcStat([]byte(c.in))
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			if !c.wantErr && got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
	if st := (ProcStat{Ticks: 300}); st.CPU() != 3 {
		t.Errorf("CPU() = %v, want 3", st.CPU())
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tlivegate\nVmPeak:\t 1000 kB\nVmHWM:\t   34400 kB\nVmRSS:\t   51234 kB\nThreads:\t7\n"
	for key, want := range map[string]int64{"VmHWM": 34400, "VmRSS": 51234} {
		if got, err := ParseStatusKiB([]byte(status), key); err != nil || got != want {
			t.Errorf("ParseStatusKiB(%s) = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := ParseStatusKiB([]byte("Name:\tx\n"), "VmRSS"); err == nil {
		t.Error("no error without VmRSS")
	}
}

func TestParseMachineCPU(t *testing.T) {
	m, err := ParseMachineCPU([]byte("cpu  100 5 50 1000 7 3 20 9 0 0\ncpu0 50 2 25 500 3 1 10 4 0 0\n"))
	if err != nil || m.Busy() != 178 || m.Softirq != 20 || m.Steal != 9 || m.Idle != 1007 || m.Total != 1194 {
		t.Errorf("ParseMachineCPU = %+v (busy %d), %v; want busy 178 softirq 20 steal 9", m, m.Busy(), err)
	}
	if _, err := ParseMachineCPU([]byte("intr 1 2\n")); err == nil {
		t.Error("no error without the cpu line")
	}
}
