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
	if err := g.Start(); err != nil {
		ln.Close()
		return err
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
	// publishers and chat members first: Shutdown does not wait for hijacked
	// connections
	g.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}
