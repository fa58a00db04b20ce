package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// checkURL accepts only ws:// or wss:// URLs whose host is a loopback
// address (127.0.0.0/8, ::1) or the name localhost: chatload loads servers
// on this machine and nothing else.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse -url %q: %w", raw, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("-url %q: scheme must be ws or wss", raw)
	}
	if !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("-url %q: host %q is not a loopback address (127.0.0.0/8, ::1 or localhost); chatload only loads servers on this machine", raw, u.Hostname())
	}
	return u, nil
}

// isLoopbackHost reports whether h is localhost or a loopback IP literal.
// Other names are refused without being resolved.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// loopbackOnly is a net.Dialer Control function: it refuses to connect to
// any resolved address that is not loopback (say, localhost mapped elsewhere).
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("dial %s: refusing a non-loopback address", address)
	}
	return nil
}

// parseRamp reads a connect rate such as "500/s" or "500".
func parseRamp(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || v <= 0 || v > 1e6 {
		return 0, fmt.Errorf("-ramp %q: want connections per second like 500/s", s)
	}
	return v, nil
}

// parseRates reads the -rate list: messages-per-second totals, comma
// separated, each run as a step; an empty list runs no step (joins and the
// idle memory only).
func parseRates(s string) ([]float64, error) {
	var rates []float64
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 1e6 {
			return nil, fmt.Errorf("-rate %q: want messages per second (0 to 1e6), comma separated", s)
		}
		rates = append(rates, v)
	}
	if len(rates) > maxSteps {
		return nil, fmt.Errorf("-rate %q: at most %d steps", s, maxSteps)
	}
	return rates, nil
}

// parseVmRSS returns the VmRSS line of a /proc/PID/status file, in KiB.
func parseVmRSS(status []byte) (int64, error) {
	for _, line := range bytes.Split(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse VmRSS line %q", line)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, errors.New("no VmRSS line")
}

// parseCPUTicks returns utime+stime, in clock ticks, from a /proc/PID/stat
// line. The command name in parentheses may hold spaces.
func parseCPUTicks(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("parse stat: too few fields")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse stat: %w", err)
	}
	return u + s, nil
}

// parseProcStat reads the machine-wide "cpu" line of /proc/stat and returns
// busy ticks (all but idle, iowait and steal), softirq ticks and steal
// ticks.
func parseProcStat(stat []byte) (busy, softirq, steal int64, err error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, 0, errors.New("parse /proc/stat: no cpu line")
	}
	var v [8]int64 // user nice system idle iowait irq softirq steal
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
	}
	return v[0] + v[1] + v[2] + v[5] + v[6], v[6], v[7], nil
}
