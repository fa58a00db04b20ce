package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// testCert is a self-signed certificate made for a test.
type testCert struct {
	cert *x509.Certificate
	pem  []byte // certificate
	key  []byte // private key
}

// newTestCert makes a self-signed ECDSA certificate for the DNS names.
func newTestCert(t *testing.T, names ...string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{cert: cert,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
}

// spki is the base64 SHA-256 of the certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list wants it.
func (c testCert) spki() string {
	sum := sha256.Sum256(c.cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// write writes the pair into dir as cert.pem and key.pem (replacing
// them, as a renewal tool does) and returns their paths.
func (c testCert) write(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, c.pem)
	writeFile(t, keyFile, c.key)
	return certFile, keyFile
}

// writeFile replaces a file by renaming a new one over it.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects log output for tests to look into.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many lines match the regular expression.
func (l *logBuffer) count(re string) int {
	return len(regexp.MustCompile("(?m)"+re).FindAllStringIndex(l.String(), -1))
}

// servedCert returns the certificate a TLS server at addr presents for
// name (nil on a failed handshake).
func servedCert(t *testing.T, addr, name string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, InsecureSkipVerify: true}) // the test compares the certificate itself
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestCertFilesReload serves a pair from files and changes the files under
// it: a renewed pair is served without a restart, a broken one is logged
// once and leaves the previous one in service, and the files are not
// looked at more often than CheckEvery.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	a, b, c := newTestCert(t, "live.test"), newTestCert(t, "live.test"), newTestCert(t, "live.test")
	certFile, keyFile := a.write(t, dir)
	var logs logBuffer
	cf := &certFiles{CertFile: certFile, KeyFile: keyFile, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := cf.Load(); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: cf.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	addr := ln.Addr().String()
	serves := func(step string, want testCert) {
		t.Helper()
		got := servedCert(t, addr, "live.test")
		if got == nil || !got.Equal(want.cert) {
			t.Fatalf("%s: served %v, want serial %v\nlog:\n%s", step, serial(got), want.cert.SerialNumber, logs.String())
		}
	}
	serves("start", a)

	b.write(t, dir)
	serves("renewed", b)
	if n := logs.count(`msg="tls: certificate reloaded"`); n != 1 {
		t.Errorf("%d reloads logged, want 1", n)
	}

	// a certificate whose key is not there yet (two files are never
	// replaced at once): the previous pair stays, and the error is logged
	// once however many handshakes come
	writeFile(t, certFile, c.pem)
	serves("cert without its key", b)
	serves("cert without its key, again", b)
	if n := logs.count(`level=ERROR msg="tls: new certificate files do not load`); n != 1 {
		t.Errorf("%d errors logged for the half-written pair, want 1:\n%s", n, logs.String())
	}
	writeFile(t, keyFile, c.key)
	serves("key written", c)

	// the key file gone: the pair in memory goes on
	os.Remove(keyFile)
	serves("key file gone", c)
	if n := logs.count(`level=ERROR msg="tls: certificate files unreadable`); n != 1 {
		t.Errorf("%d errors logged for the missing key, want 1", n)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("key material in the log")
	}

	// not looked at more often than CheckEvery
	cf.mu.Lock()
	cf.CheckEvery = time.Hour
	cf.mu.Unlock()
	a.write(t, dir)
	serves("within CheckEvery", c)
}

func serial(c *x509.Certificate) any {
	if c == nil {
		return "nothing (handshake failed)"
	}
	return c.SerialNumber
}

func TestPlainWarning(t *testing.T) {
	cases := []struct {
		addr string
		tls  bool
		warn bool
	}{
		{"127.0.0.1:8080", false, false},
		{"127.0.0.2:8080", false, false},
		{"[::1]:8080", false, false},
		{"0.0.0.0:8080", false, true},
		{"[::]:8080", false, true},
		{"192.0.2.10:8080", false, true},
		{"0.0.0.0:443", true, false},
	}
	for _, c := range cases {
		addr, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if w := plainWarning(addr, c.tls); (w != "") != c.warn {
			t.Errorf("%s tls=%v: warning %q, want one: %v", c.addr, c.tls, w, c.warn)
		}
	}
}

func TestCacheName(t *testing.T) {
	for dir, want := range map[string]string{
		"https://acme-v02.api.letsencrypt.org/directory":         "acme-v02.api.letsencrypt.org_directory",
		"https://acme-staging-v02.api.letsencrypt.org/directory": "acme-staging-v02.api.letsencrypt.org_directory",
		"https://127.0.0.1:14000/dir":                            "127.0.0.1_14000_dir",
		"https://ca.internal/acme/acme/../directory":             "ca.internal_acme_acme_.._directory",
	} {
		if got := cacheName(dir); got != want {
			t.Errorf("cacheName(%q) = %q, want %q", dir, got, want)
		}
	}
}

// gatewayProc is a livegate binary started by a test, its log collected.
type gatewayProc struct {
	cmd  *exec.Cmd
	addr string
	logs *logBuffer
	done chan error // the exit
}

var servingRe = regexp.MustCompile(`msg="livegate serving" addr=(127\.0\.0\.1:\d+)`)

// startProc runs bin with env added and args after --listen 127.0.0.1:0,
// and returns once it serves; the end of the test kills it.
func startProc(t *testing.T, bin string, env []string, args ...string) *gatewayProc {
	t.Helper()
	p := startProcNoWait(t, bin, env, args...)
	deadline := time.After(30 * time.Second)
	for p.addr == "" {
		select {
		case err := <-p.done:
			t.Fatalf("the gateway ended before it served: %v\n%s", err, p.logs)
		case <-deadline:
			t.Fatalf("the gateway did not serve within 30 s\n%s", p.logs)
		case <-time.After(50 * time.Millisecond):
			if m := servingRe.FindStringSubmatch(p.logs.String()); m != nil {
				p.addr = m[1]
			}
		}
	}
	return p
}

func startProcNoWait(t *testing.T, bin string, env []string, args ...string) *gatewayProc {
	t.Helper()
	p := &gatewayProc{logs: &logBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("gateway log:\n%s", p.logs)
		}
	})
	return p
}

// stop ends the gateway with SIGTERM and waits for it.
func (p *gatewayProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("gateway exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway did not stop within 15 s of SIGTERM")
	}
}

// clientFor returns an HTTP client that trusts roots and reaches every
// host name at addr (the test's DNS).
func clientFor(roots *x509.CertPool, addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// TestTLSFiles runs the binary with --tls-cert and --tls-key: it serves
// HTTPS (HTTP/2) and WSS on --listen, prints https URLs, does not warn
// about plain HTTP; a bad pair stops the start with an error naming it.
// (Reloading the files is TestCertFilesReload's.)
func TestTLSFiles(t *testing.T) {
	needTools(t)
	bin := buildGateway(t)
	dir := t.TempDir()
	cert := newTestCert(t, "live.test")
	certFile, keyFile := cert.write(t, dir)
	p := startProc(t, bin, nil, "--tls-cert", certFile, "--tls-key", keyFile)
	_, port, _ := net.SplitHostPort(p.addr)
	if !strings.Contains(p.logs.String(), "broadcast=https://live.test:"+port+"/broadcast") {
		t.Errorf("no https URL for live.test in the log:\n%s", p.logs)
	}
	if strings.Contains(p.logs.String(), "plain HTTP") {
		t.Errorf("warned about plain HTTP while serving TLS:\n%s", p.logs)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.cert)
	client := clientFor(roots, p.addr)
	resp, err := client.Get("https://live.test:" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("healthz over HTTPS: %s %s, want 200 over HTTP/2", resp.Status, resp.Proto)
	}

	// WSS: the chat answers a join through the TLS listener
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "live.test"},
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, p.addr)
		}, HandshakeTimeout: 10 * time.Second}
	origin := http.Header{"Origin": {"https://live.test:" + port}}
	ws, resp, err := dialer.Dial("wss://live.test:"+port+"/chat/tlsroom", origin)
	if err != nil {
		t.Fatalf("wss: %v (%v)", err, resp)
	}
	defer ws.Close()
	ws.WriteJSON(map[string]string{"type": "join", "name": "alice"})
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var welcome map[string]any
	if err := ws.ReadJSON(&welcome); err != nil || welcome["type"] != "welcome" {
		t.Errorf("wss chat: %v %v", welcome, err)
	}

	// plain HTTP to the TLS port gets nothing useful
	if resp, err := http.Get("http://" + p.addr + "/healthz"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP on the TLS port answered 200: %s", body)
		}
	}

	t.Run("plain HTTP on loopback", func(t *testing.T) {
		// no warning: browsers treat loopback as secure (the warning beyond
		// loopback is TestPlainWarning's: tests listen on loopback only)
		p := startProc(t, bin, nil)
		if strings.Contains(p.logs.String(), "plain HTTP") || !strings.Contains(p.logs.String(), "tls=false broadcast=http://127.0.0.1:") {
			t.Errorf("unexpected start log on loopback:\n%s", p.logs)
		}
	})

	t.Run("bad pair", func(t *testing.T) {
		other := newTestCert(t, "live.test")
		otherKey := filepath.Join(t.TempDir(), "other-key.pem")
		os.WriteFile(otherKey, other.key, 0o600)
		for _, c := range []struct {
			name, cert, key, want string
		}{
			{"key of another certificate", certFile, otherKey, "tls_cert, tls_key:"},
			{"no certificate file", filepath.Join(dir, "missing.pem"), keyFile, "tls_cert:"},
			{"no key file", certFile, filepath.Join(dir, "missing.pem"), "tls_key:"},
		} {
			p := startProcNoWait(t, bin, nil, "--tls-cert", c.cert, "--tls-key", c.key)
			select {
			case err := <-p.done:
				p.done <- err
				if err == nil || !strings.Contains(p.logs.String(), c.want) {
					t.Errorf("%s: exit %v, want an error naming %q:\n%s", c.name, err, c.want, p.logs)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s: still running", c.name)
			}
		}
	})
}

// apiStream fetches /api/streams/{name} with client.
func apiStream(t *testing.T, client *http.Client, base, name string) (int, map[string]any) {
	t.Helper()
	resp, err := client.Get(base + "/api/streams/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&m)
	return resp.StatusCode, m
}
