package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// TestACME gets a certificate for live.test from a real ACME server on
// loopback (pebble, the tool dependency in go.mod) over TLS-ALPN-01 on the
// gateway's --listen address, serves HTTPS with it (the client trusts only
// pebble's root), keeps it in DATA/acme, and serves it again after a
// restart with pebble gone. A name whose validation fails (fail.test, which
// does not resolve) fails its handshakes, is logged once, and is not asked
// for again at once.
func TestACME(t *testing.T) {
	needTools(t)
	pebble, pebbleDir := buildPebble(t)
	bin := buildGateway(t)
	dns := startDNS(t, "live.test")
	data := t.TempDir()
	minica := filepath.Join(pebbleDir, "test", "certs", "pebble.minica.pem")
	acmePort, mgmtPort := freePort(t), freePort(t)
	directory := fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	env := []string{"LIVEGATE_ACME_CA=" + minica}
	args := []string{"--data", data, "--acme-domain", "live.test,fail.test", "--acme-directory", directory}

	gw := startProc(t, bin, env, args...)
	_, port, _ := net.SplitHostPort(gw.addr)
	if !strings.Contains(gw.logs.String(), "broadcast=https://live.test:"+port+"/broadcast") {
		t.Errorf("no https URL for live.test in the log:\n%s", gw.logs)
	}
	// pebble validates TLS-ALPN-01 on the gateway's port, live.test
	// resolved by the test's DNS to 127.0.0.1
	gwPort, _ := strconv.Atoi(port)
	stopPebble, pebbleLog := startPebble(t, pebble, pebbleDir, dns, acmePort, mgmtPort, gwPort, minica)
	roots := pebbleRoots(t, mgmtPort, minica)

	client := clientFor(roots, gw.addr)
	start := time.Now()
	resp, err := client.Get("https://live.test:" + port + "/healthz")
	if err != nil {
		t.Fatalf("https with a certificate from pebble: %v\ngateway log:\n%s", err, gw.logs)
	}
	resp.Body.Close()
	leaf := resp.TLS.PeerCertificates[0]
	t.Logf("certificate from pebble in %s: %v, issuer %q", time.Since(start).Round(time.Millisecond), leaf.DNSNames, leaf.Issuer.CommonName)
	if resp.StatusCode != 200 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "live.test" {
		t.Errorf("healthz: %s, certificate for %v", resp.Status, leaf.DNSNames)
	}
	if _, err := os.Stat(filepath.Join(data, "acme", cacheName(directory), "live.test")); err != nil {
		t.Errorf("certificate not cached in the data directory: %v", err)
	}
	if gw.logs.count(`msg="acme: certificate ready" component=tls domain=live.test`) != 1 {
		t.Errorf("certificate not logged once:\n%s", gw.logs)
	}

	// a name the CA cannot validate: the handshake fails, the failure is
	// logged, and the next handshake does not ask the CA again at once
	if _, err := client.Get("https://fail.test:" + port + "/healthz"); err == nil {
		t.Error("fail.test got a certificate")
	}
	orders := pebbleLog.count(`POST /order-plz`)
	if _, err := client.Get("https://fail.test:" + port + "/healthz"); err == nil {
		t.Error("fail.test got a certificate at the second try")
	}
	if n := pebbleLog.count(`POST /order-plz`); n != orders {
		t.Errorf("the second handshake for fail.test asked the CA again (%d orders, then %d)", orders, n)
	}
	if n := gw.logs.count(`level=ERROR msg="acme: no certificate" component=tls domain=fail.test failures=1 next_attempt=1m0s`); n != 1 {
		t.Errorf("%d failures logged for fail.test, want 1:\n%s", n, gw.logs)
	}

	// a restart serves the cached certificate without the CA
	gw.stop(t)
	stopPebble()
	gw = startProc(t, bin, env, args...)
	_, port, _ = net.SplitHostPort(gw.addr)
	resp, err = clientFor(roots, gw.addr).Get("https://live.test:" + port + "/healthz")
	if err != nil {
		t.Fatalf("after a restart without the CA: %v", err)
	}
	resp.Body.Close()
	if !resp.TLS.PeerCertificates[0].Equal(leaf) {
		t.Error("after a restart: another certificate than the cached one")
	}
}

// TestACMEBackoff drives acmeCerts with a fake clock and a fake autocert:
// failures are logged once each, attempts wait 1, 2, 4... minutes (at most
// an hour) after failures in a row, a success ends the waiting, and a
// certificate near its end is warned about at most hourly.
func TestACMEBackoff(t *testing.T) {
	clock := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	calls, fail := 0, true
	leaf := &x509.Certificate{NotAfter: clock.Add(90 * 24 * time.Hour)}
	var logs logBuffer
	a := &acmeCerts{
		log: slog.New(slog.NewTextHandler(&logs, nil)), domains: map[string]bool{"live.example.com": true},
		now:    func() time.Time { return clock },
		failed: map[string]acmeFailure{}, ready: map[string]bool{}, warned: map[string]time.Time{},
		get: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			calls++
			if fail {
				return nil, errors.New("acme/autocert: unable to satisfy the CA")
			}
			return &tls.Certificate{Leaf: leaf}, nil
		},
	}
	hello := func(name string) error {
		_, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{"h2", "http/1.1"}})
		return err
	}
	steps := []struct {
		after   time.Duration
		name    string
		asks    bool // whether autocert is asked
		fail    bool
		logs    int // errors logged so far
		wantErr bool
	}{
		{0, "live.example.com", true, true, 1, true},
		{30 * time.Second, "live.example.com", false, true, 1, true},
		{31 * time.Second, "Live.Example.com.", true, true, 2, true},  // 1 min after: asks, fails again
		{119 * time.Second, "live.example.com", false, true, 2, true}, // waits 2 min now
		{time.Second, "live.example.com", true, true, 3, true},
		{4 * time.Minute, "live.example.com", true, false, 3, false}, // a success
		{time.Second, "live.example.com", true, true, 4, true},       // fails again: 1 min again
		{time.Second, "live.example.com", false, false, 4, true},
		{0, "other.example.com", true, true, 4, true}, // not ours: autocert answers, nothing logged
		{0, "other.example.com", true, true, 4, true},
	}
	for i, s := range steps {
		clock = clock.Add(s.after)
		fail = s.fail
		before := calls
		err := hello(s.name)
		if asked := calls > before; asked != s.asks {
			t.Errorf("step %d (%s): autocert asked %v, want %v", i, s.name, asked, s.asks)
		}
		if (err != nil) != s.wantErr {
			t.Errorf("step %d (%s): error %v, want one: %v", i, s.name, err, s.wantErr)
		}
		if n := logs.count(`level=ERROR msg="acme: no certificate" domain=live.example.com`); n != s.logs {
			t.Errorf("step %d: %d errors logged, want %d", i, n, s.logs)
		}
	}
	if n := logs.count(`failures=3 next_attempt=4m0s`); n != 1 {
		t.Errorf("third failure in a row not logged with a 4 min wait:\n%s", logs.String())
	}

	// a certificate that should have been renewed: a warning, hourly
	clock = clock.Add(time.Hour)
	leaf.NotAfter = clock.Add(5 * 24 * time.Hour)
	fail = false
	for range 3 {
		hello("live.example.com")
		clock = clock.Add(20 * time.Minute)
	}
	hello("live.example.com")
	if n := logs.count(`level=WARN msg="acme: the certificate ends soon`); n != 2 {
		t.Errorf("%d warnings about the near end in 80 minutes, want 2:\n%s", n, logs.String())
	}
	if n := logs.count(`msg="acme: certificate ready"`); n != 1 {
		t.Errorf("certificate ready logged %d times, want once", n)
	}
}

// buildPebble builds pebble (a tool dependency in go.mod) and returns the
// binary and the module's directory (its test certificates).
func buildPebble(t *testing.T) (bin, dir string) {
	t.Helper()
	bin = filepath.Join(t.TempDir(), "pebble")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/letsencrypt/pebble/v2/cmd/pebble").CombinedOutput()
	if err == nil {
		out, err = exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("pebble: %v\n%s", err, out)
		}
		t.Skipf("pebble cannot be built here (module not downloaded?): %v\n%s", err, out)
	}
	return bin, strings.TrimSpace(string(out))
}

// freePort returns a loopback TCP port free a moment ago, for pebble,
// which cannot listen on port 0 and tell which port it got.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble runs pebble with its ACME API and management API on the
// given ports, validating TLS-ALPN-01 on tlsPort with names resolved by
// dns, and returns once its directory answers, with a function that stops
// it (the test's end does too) and its log.
func startPebble(t *testing.T, bin, dir, dns string, acmePort, mgmtPort, tlsPort int, minica string) (func(), *logBuffer) {
	t.Helper()
	var conf struct {
		Pebble map[string]any `json:"pebble"`
	}
	conf.Pebble = map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":             filepath.Join(dir, "test", "certs", "localhost", "cert.pem"),
		"privateKey":              filepath.Join(dir, "test", "certs", "localhost", "key.pem"),
		"httpPort":                0, // no HTTP-01
		"tlsPort":                 tlsPort,
		"keyAlgorithm":            "ecdsa",
	}
	b, _ := json.Marshal(conf)
	file := filepath.Join(t.TempDir(), "pebble.json")
	os.WriteFile(file, b, 0o644)
	var logs logBuffer
	cmd := exec.Command(bin, "-config", file, "-dnsserver", dns)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("pebble log:\n%s", logs.String())
		}
	})
	client := clientTrusting(t, minica)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("pebble ended: %v\n%s", err, logs.String())
		default:
		}
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stop, &logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble's directory did not answer within 30 s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clientTrusting returns an HTTP client that trusts the roots of a PEM file.
func clientTrusting(t *testing.T, pemFile string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// pebbleRoots fetches the root that pebble made at its start and issues
// under, from its management API.
func pebbleRoots(t *testing.T, mgmtPort int, minica string) *x509.CertPool {
	t.Helper()
	resp, err := clientTrusting(t, minica).Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if resp.StatusCode != 200 || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %s %q", resp.Status, b)
	}
	return pool
}

// startDNS serves DNS over TCP (as pebble asks) on a loopback port: an A
// query for one of names is answered 127.0.0.1, an AAAA query for them with
// no address, any other name does not exist. It returns the server's
// address.
func startDNS(t *testing.T, names ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	known := map[string]bool{}
	for _, n := range names {
		known[n+"."] = true
	}
	answer := func(query []byte) []byte {
		var p dnsmessage.Parser
		h, err := p.Start(query)
		if err != nil {
			return nil
		}
		q, err := p.Question()
		if err != nil {
			return nil
		}
		m := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired},
			Questions: []dnsmessage.Question{q},
		}
		switch {
		case !known[strings.ToLower(q.Name.String())]:
			m.Header.RCode = dnsmessage.RCodeNameError
		case q.Type == dnsmessage.TypeA:
			m.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}},
			}}
		}
		out, _ := m.Pack()
		return out
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				for { // messages with a two-byte length before each
					var n [2]byte
					if _, err := io.ReadFull(conn, n[:]); err != nil {
						return
					}
					query := make([]byte, binary.BigEndian.Uint16(n[:]))
					if _, err := io.ReadFull(conn, query); err != nil {
						return
					}
					out := answer(query)
					if out == nil {
						return
					}
					conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
				}
			}()
		}
	}()
	return ln.Addr().String()
}
