package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/livegate/livegate/internal/chromium"
)

// needTool returns the path of a program the test drives. Without it the
// test skips, unless CI is set: CI installs every tool (scripts/deps
// --test), so there a missing one fails.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found, and CI is set: scripts/deps --test installs it", name)
		}
		t.Skipf("%s not found: skipping (CI runs this test)", name)
	}
	return p
}

// builds holds the binaries built for this test process, each once.
var builds struct {
	mu   sync.Mutex
	dir  string
	done map[string]string
}

// build builds the main package pkg (relative to the repository root)
// into a directory shared by the tests of this process, once, and returns
// the binary's path.
func build(t *testing.T, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if p, ok := builds.done[pkg]; ok {
		return p
	}
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "livegate-deploy-test-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir, builds.done = d, map[string]string{}
	}
	bin := filepath.Join(builds.dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, "../"+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	builds.done[pkg] = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// gatewayBinary is the real gateway, built from ./cmd/livegate.
func gatewayBinary(t *testing.T) string { return build(t, "cmd/livegate") }

// lgloadBinary is the load generator, built from ./bench/lgload.
func lgloadBinary(t *testing.T) string { return build(t, "bench/lgload") }

// command is exec.Command with the environment's LIVEGATE_* variables
// left out, so that the caller's settings do not leak into the test.
func command(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	return commandContext(context.Background(), name, args...)
}

// commandContext is command, killed when ctx ends.
func commandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LIVEGATE_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	return cmd
}

// logBuffer keeps what a process writes, for failure messages.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gatewayProc is a running gateway.
type gatewayProc struct {
	URL    string // http://127.0.0.1:PORT
	Addr   string
	PID    int
	Log    *logBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// stop sends SIGTERM and waits for the gateway to exit, at most within;
// it reports whether it did.
func (g *gatewayProc) stop(within time.Duration) bool {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		return true
	case <-time.After(within):
		return false
	}
}

var servingRE = regexp.MustCompile(`msg="livegate serving" addr=(\S+)`)

// startGateway starts the gateway binary on a free loopback port (unless
// args has a --listen of its own) with args, waits until it serves, and stops it (SIGTERM) when the test ends.
// Its log is shown if the test fails.
func startGateway(t *testing.T, bin string, args ...string) *gatewayProc {
	t.Helper()
	cmd := command(t, bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	g := &gatewayProc{Log: &logBuffer{}, cmd: cmd, exited: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = g.Log, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	g.PID = cmd.Process.Pid
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			g.Log.Write([]byte(line + "\n"))
			if m := servingRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	exited := g.exited
	go func() {
		cmd.Wait()
		pw.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		if !g.stop(20 * time.Second) {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway %s log:\n%s", g.URL, tail(g.Log.String(), 60))
		}
	})
	select {
	case a := <-addr:
		g.Addr, g.URL = a, "http://"+a
	case <-exited:
		t.Fatalf("gateway exited at start:\n%s", g.Log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway not serving after 60 s:\n%s", g.Log.String())
	}
	return g
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// metrics reads a Prometheus text exposition at u: each sample's series
// (name{labels} as written) and value, and the metric names it shows
// (families and the sample names of histograms and summaries).
func metrics(t *testing.T, u string) (samples map[string]float64, names map[string]bool) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: HTTP %d", resp.StatusCode)
	}
	samples, names = map[string]float64{}, map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "#" && (f[1] == "TYPE" || f[1] == "HELP") {
			names[f[2]] = true
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series, val := line[:i], line[i+1:] // client_golang writes no timestamps
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("metrics: %q: %v", line, err)
		}
		samples[series] = v
		name := series
		if j := strings.IndexByte(series, '{'); j >= 0 {
			name = series[:j]
		}
		names[name] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return samples, names
}

// nginxEdge is a running nginx.
type nginxEdge struct {
	URL string
	Dir string // its prefix: config, cache, logs
}

// startNginx runs Debian's nginx with the repository's single.conf and
// locations.conf, the paths and addresses replaced as deploy/check.sh
// does (the upstream is the gateway at upstream, the listener a free
// loopback port), until the test ends. It fails if the files no longer
// have the lines it replaces.
func startNginx(t *testing.T, upstream string) *nginxEdge {
	t.Helper()
	return startNginxSite(t, "single.conf", [2]string{"server 127.0.0.1:8080;", "server " + upstream + ";"})
}

// startNginxSite is startNginx with the site file site of deploy/nginx,
// its upstream servers replaced as servers say (each pair: the line, its
// replacement).
func startNginxSite(t *testing.T, site string, servers ...[2]string) *nginxEdge {
	t.Helper()
	bin := needTool(t, "nginx")
	dir := t.TempDir()
	for _, d := range []string{"livegate", "cache", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// the repository's files, paths replaced as deploy/check.sh does
	paths := [][2]string{
		{"/etc/nginx/livegate/", dir + "/livegate/"},
		{"/var/cache/nginx/livegate", dir + "/cache"},
		{"/run/nginx-livegate-collapse.sock", dir + "/collapse.sock"},
	}
	for _, f := range []string{"locations.conf", "collapse.conf"} {
		b, err := os.ReadFile(filepath.Join("nginx", f))
		if err != nil {
			t.Fatal(err)
		}
		conf := string(b)
		for _, r := range paths {
			conf = strings.ReplaceAll(conf, r[0], r[1])
		}
		os.WriteFile(filepath.Join(dir, "livegate", f), []byte(conf), 0o644)
	}
	single, err := os.ReadFile(filepath.Join("nginx", site))
	if err != nil {
		t.Fatal(err)
	}
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		conf := string(single)
		for _, r := range append(append(paths[:2:2], servers...),
			[2]string{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port)},
		) {
			if !strings.Contains(conf, r[0]) {
				t.Fatalf("nginx/%s has no %q to replace", site, r[0])
			}
			conf = strings.ReplaceAll(conf, r[0], r[1])
		}
		os.WriteFile(filepath.Join(dir, "site.conf"), []byte(conf), 0o644)
		u, _ := user.Current()
		g, _ := user.LookupGroupId(u.Gid)
		main := fmt.Sprintf(`# the workers run as whoever runs the test (as root, nginx would
# otherwise make them nobody, who may not reach a private directory)
user %s %s;
worker_processes 2;
daemon off;
pid %[3]s/nginx.pid;
error_log %[3]s/error.log warn;
events { worker_connections 8192; }
http {
	log_format edge '$server_addr $upstream_cache_status $request_time $status $uri?$args';
	access_log %[3]s/access.log edge buffer=256k flush=1s;
	client_body_temp_path %[3]s/tmp/body;
	proxy_temp_path %[3]s/tmp/proxy;
	fastcgi_temp_path %[3]s/tmp/fastcgi;
	uwsgi_temp_path %[3]s/tmp/uwsgi;
	scgi_temp_path %[3]s/tmp/scgi;
	include %[3]s/site.conf;
}
`, u.Username, g.Name, dir)
		os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644)
		cmd := exec.Command(bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir)
		var out logBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start nginx: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		ready := false
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			select {
			case <-exited:
			default:
				if resp, err := http.Get(base + "/healthz"); err == nil {
					resp.Body.Close()
					ready = resp.StatusCode == http.StatusOK
				}
				if !ready {
					time.Sleep(100 * time.Millisecond)
					continue
				}
			}
			break
		}
		if ready {
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM) // fast shutdown: the master stops its workers
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					el, _ := os.ReadFile(filepath.Join(dir, "error.log"))
					t.Logf("nginx error.log:\n%s", tail(string(el), 30))
				}
			})
			return &nginxEdge{URL: base, Dir: dir}
		}
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		el, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		lastErr = out.String() + string(el)
		if !strings.Contains(lastErr, "in use") {
			break
		}
	}
	t.Fatalf("nginx did not start:\n%s", lastErr)
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// background runs cmd until the test ends (SIGTERM, then SIGKILL after
// 15 s) and returns a channel closed when it exits, and its output.
func background(t *testing.T, cmd *exec.Cmd) (<-chan struct{}, *logBuffer) {
	t.Helper()
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return exited, out
}

// waitHTTP polls u until it answers 200 with a body containing want.
func waitHTTP(t *testing.T, u, want string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	last := ""
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), want) {
				return
			}
			last = fmt.Sprintf("HTTP %d %.200s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: no 200 with %q within %s (last: %s)", u, want, within, last)
}

// newBrowser starts Debian's Chromium (at path) headless, with a fake
// camera and microphone and autoplay allowed, until the test ends, and
// returns its first tab.
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromium.Options(path, t.TempDir())...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}
