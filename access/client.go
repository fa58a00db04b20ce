package access

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// Proxies are the trusted proxies: whose X-Forwarded-For gives the
// client's address. The zero value trusts none.
type Proxies struct{ nets []netip.Prefix }

// ParseProxies reads CIDRs (or single addresses) such as "10.0.0.0/8".
func ParseProxies(cidrs []string) (Proxies, error) {
	var p Proxies
	for i, s := range cidrs {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return Proxies{}, fmt.Errorf("trusted_proxies[%d]: %q is not a CIDR or an address", i, s)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		p.nets = append(p.nets, pfx.Masked())
	}
	return p, nil
}

func (p Proxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address of the client that made r: the connection's
// peer, or, when that peer is a trusted proxy, the rightmost address of
// X-Forwarded-For that is not a trusted proxy (the ones to its left could
// be made up by the client).
func (p Proxies) ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !p.trusted(peer) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop: trust nothing further left
		}
		if !p.trusted(a) {
			return a.Unmap().String()
		}
		peer = a
	}
	return peer.Unmap().String()
}

// ConnLimit bounds the connections one client address holds at once.
// Set Max, then use it from any goroutine.
type ConnLimit struct {
	// Max is the most connections per address; 0 or less: no limit.
	Max int

	mu sync.Mutex
	n  map[string]int
}

// ErrTooManyConnections refuses a connection beyond ConnLimit.Max.
var ErrTooManyConnections = &Error{http.StatusTooManyRequests, "too_many_connections", "too many connections from your address"}

// Acquire takes a connection slot of addr; release gives it back (call it
// once, when the connection ends). ok is false, and release nil, when
// addr holds Max already.
func (l *ConnLimit) Acquire(addr string) (release func(), ok bool) {
	if l == nil || l.Max <= 0 {
		return func() {}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[addr] >= l.Max {
		return nil, false
	}
	if l.n == nil {
		l.n = map[string]int{}
	}
	l.n[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.n[addr]--; l.n[addr] <= 0 {
				delete(l.n, addr)
			}
		})
	}, true
}
