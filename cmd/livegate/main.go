// Command livegate is the live-streaming gateway: browsers publish over a
// WebSocket, ffmpeg encodes an ABR ladder, viewers watch low-latency HLS and
// talk in a chat room per stream. With no arguments it serves on
// 127.0.0.1:8080 with embedded defaults; `livegate token` prints a token.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := mintToken(os.Args[2:], os.Getenv, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "livegate token:", err)
			os.Exit(2)
		}
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := load(os.Args[1:], os.Getenv)
	if errors.Is(err, errPrinted) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "livegate:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("livegate stopped", "error", err)
		os.Exit(1)
	}
}

// advertiseURL is how other gateways reach this one when --advertise is
// not given: the scheme served (https with TLS), the port listened on,
// and the host: the TLS certificate's first name (or ACME domain) if there is
// one, else the address listened on, an unspecified one (0.0.0.0, ::)
// replaced by the machine's first non-loopback address (a loopback one
// is kept: the gateways are then all on this machine).
func advertiseURL(addr net.Addr, tls bool, tlsHost string) string {
	host, port, _ := net.SplitHostPort(addr.String())
	scheme := "http"
	if tls {
		scheme = "https"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = firstAddress()
	}
	if tls && tlsHost != "" {
		host = tlsHost
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// firstAddress is the machine's first non-loopback unicast address,
// IPv4 first; "localhost" when it has none.
func firstAddress() string {
	addrs, _ := net.InterfaceAddrs()
	var v6 string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP.String()
		}
		if v6 == "" {
			v6 = n.IP.String()
		}
	}
	if v6 != "" {
		return v6
	}
	return "localhost"
}

// run serves until ctx ends, then shuts everything down in order. With
// tls_cert or acme_domains it serves HTTPS (and WSS) on the listener.
func run(ctx context.Context, cfg *config, log *slog.Logger) error {
	g := cfg.gateway(log)
	ln, err := net.Listen("tcp", g.listen) // first: a taken port is the likeliest error
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	tlsConf, host, err := g.tlsConfig(log.With("component", "tls"))
	if err != nil {
		ln.Close()
		return err
	}
	if g.natsURL != "" && g.dir.Advertise == "" {
		g.dir.Advertise = advertiseURL(ln.Addr(), tlsConf != nil, host)
	}
	if err := g.Start(); err != nil {
		ln.Close()
		return err
	}
	if g.natsURL != "" {
		log.Info("joined the other gateways", "nats", g.natsURL, "advertise", g.dir.Advertise, "gateway", g.dir.ID())
	}
	defer g.Close()
	srv := g.server
	if len(cfg.PublishKeys) == 0 {
		log.Warn("publishing is open to anyone who can reach this address: set --publish-key")
	}
	if w := plainWarning(ln.Addr(), tlsConf != nil); w != "" {
		log.Warn(w)
	}
	base := "http://" + ln.Addr().String()
	if tlsConf != nil {
		srv.TLSConfig = tlsConf
		base = "https://" + ln.Addr().String()
		if _, port, _ := net.SplitHostPort(ln.Addr().String()); host != "" {
			base = "https://" + net.JoinHostPort(host, port)
			if port == "443" {
				base = "https://" + host
			}
		}
	}
	log.Info("livegate serving", "addr", ln.Addr().String(), "tls", tlsConf != nil,
		"broadcast", base+"/broadcast", "watch", base+"/watch/{stream}", "home", base+"/")

	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			errc <- srv.ServeTLS(ln, "", "") // certificates from TLSConfig
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	// Publishers first (with NATS they are told to resume their sessions on
	// another gateway, which takes their streams over), while every other
	// part still runs: a viewer's request that comes here meanwhile is
	// answered as before, a stream handed off by proxying to the gateway
	// that took it. Then the listener closes and the requests in flight
	// end; then the rest (Shutdown does not wait for hijacked connections:
	// chat members are closed by g.Close).
	g.pub.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	g.Close()
	return nil
}
