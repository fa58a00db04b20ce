package main

import (
	"errors"
	"runtime"
	"time"

	"github.com/livegate/livegate/bench/internal/loadgen"
)

// cpuSampler samples the gateway's and its ffmpeg children's CPU time every
// 500 ms, and the gateway's peak RSS. Whoever calls startCPUSampler must
// call stop.
type cpuSampler struct {
	gw      *gatewayProc
	quit    chan struct{}
	done    chan struct{}
	samples []cpuSample // owned by the sampling goroutine until done
	machine []machineCPU
	peakRSS int64
	errs    int
}

// startCPUSampler starts sampling gw, or only the benchmark and the machine
// when gw is nil. Off Linux, where there is no /proc to read the figures
// from, it returns nil and loadgen.ErrNoProc; stop on nil returns nil.
func startCPUSampler(gw *gatewayProc) (*cpuSampler, error) {
	if _, err := loadgen.ReadMachineCPU(); errors.Is(err, loadgen.ErrNoProc) {
		return nil, err
	}
	c := &cpuSampler{gw: gw, quit: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c, nil
}

func (c *cpuSampler) loop() {
	defer close(c.done)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.gw != nil {
			if s, err := c.gw.sample(); err == nil {
				c.samples = append(c.samples, s)
			} else {
				c.errs++
			}
			if rss, err := peakRSS(c.gw.pid()); err == nil {
				c.peakRSS = max(c.peakRSS, rss)
			}
		} else if s, ok := sampleCPU(0); ok {
			c.samples = append(c.samples, s)
		}
		if m, err := readMachineCPU(); err == nil {
			c.machine = append(c.machine, m)
		}
		select {
		case <-c.quit:
			return
		case <-tick.C:
		}
	}
}

// cpuReport is the CPU the gateway and its ffmpeg used in the steady state.
type cpuReport struct {
	Window      float64 `json:"window_s"`            // seconds of steady state sampled
	Gateway     float64 `json:"gateway_cpu_s_per_s"` // CPU seconds per second
	FFmpeg      float64 `json:"ffmpeg_cpu_s_per_s"`  // over its ffmpeg children
	Bench       float64 `json:"bench_cpu_s_per_s"`   // lgbench, its source ffmpeg, Chromium
	Ratio       float64 `json:"gateway_over_ffmpeg"` // Gateway / FFmpeg
	FFmpegProcs int     `json:"ffmpeg_processes"`    // ffmpeg children alive at the window's end
	PeakRSS     int64   `json:"gateway_peak_rss_bytes"`
	// MachineBusy is the share of all CPUs busy (any process) over the
	// window: other load on the machine disturbs the latencies.
	MachineBusy float64 `json:"machine_busy"`
	// MachineSteal is the share of all CPUs' time the hypervisor gave to
	// other guests over the window.
	MachineSteal float64 `json:"machine_steal"`
	// Other is the CPU seconds per second of every other process on the
	// machine.
	Other float64 `json:"other_cpu_s_per_s"`
}

// stop ends sampling and returns the CPU used between p's steady-state
// start and its end (the whole sampling when p is nil); nil when c is nil.
func (c *cpuSampler) stop(p *pass) *cpuReport {
	if c == nil {
		return nil
	}
	close(c.quit)
	<-c.done
	from, to := time.Time{}, time.Now()
	if p != nil {
		from, to = p.steadyFrom, p.end
	}
	ss := window(c.samples, from, to)
	r := &cpuReport{PeakRSS: c.peakRSS}
	if len(ss) < 2 {
		return r
	}
	r.Window = ss[len(ss)-1].at.Sub(ss[0].at).Seconds()
	r.Gateway, r.FFmpeg, r.Bench = cpuUse(ss)
	r.FFmpegProcs = len(ss[len(ss)-1].ffmpeg)
	var ms []machineCPU
	for _, m := range c.machine {
		if !m.at.Before(from) && !m.at.After(to) {
			ms = append(ms, m)
		}
	}
	if len(ms) >= 2 {
		r.MachineBusy, r.MachineSteal = busy(ms[0], ms[len(ms)-1])
		r.Other = max(0, r.MachineBusy*float64(runtime.NumCPU())-r.Gateway-r.FFmpeg-r.Bench)
	}
	if r.FFmpeg > 0 {
		r.Ratio = r.Gateway / r.FFmpeg
	}
	return r
}

// window returns the samples taken from from to to.
func window(ss []cpuSample, from, to time.Time) []cpuSample {
	var out []cpuSample
	for _, s := range ss {
		if !s.at.Before(from) && !s.at.After(to) {
			out = append(out, s)
		}
	}
	return out
}

// machineCPU is the machine's CPU time at one instant.
type machineCPU struct {
	at time.Time
	loadgen.MachineCPU
}

// readMachineCPU reads /proc/stat.
func readMachineCPU() (machineCPU, error) {
	m, err := loadgen.ReadMachineCPU()
	return machineCPU{time.Now(), m}, err
}

// busy returns the shares of CPU time between a and b spent running
// processes and stolen by the hypervisor.
func busy(a, b machineCPU) (running, stolen float64) {
	if b.Total <= a.Total {
		return 0, 0
	}
	t := float64(b.Total - a.Total)
	stolen = float64(b.Steal-a.Steal) / t
	return 1 - float64(b.Idle-a.Idle)/t - stolen, stolen
}
