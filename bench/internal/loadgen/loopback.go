package loadgen

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"
)

// CheckURL parses raw and accepts it only when its scheme is one of
// schemes and its host is a loopback address (127.0.0.0/8, ::1) or the name
// localhost: the tools load this machine and nothing else.
func CheckURL(raw string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", raw, err)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return nil, fmt.Errorf("%q: want a %s:// URL", raw, strings.Join(schemes, ":// or "))
	}
	if !LoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("%q: host %q is not a loopback address: only this machine is loaded (127.0.0.0/8, ::1, localhost)", raw, u.Hostname())
	}
	return u, nil
}

// CheckAddr accepts HOST:PORT only when HOST is a loopback address or
// localhost.
func CheckAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if !LoopbackHost(host) {
		return fmt.Errorf("%q is not a loopback address", host)
	}
	return nil
}

// LoopbackHost reports whether h is localhost or a loopback IP literal.
// Other names are refused without being resolved.
func LoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// LoopbackOnly is a net.Dialer Control function: it refuses to connect to
// any resolved address that is not loopback (say, localhost mapped
// elsewhere).
func LoopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("dial %s: refusing a non-loopback address", address)
	}
	return nil
}
