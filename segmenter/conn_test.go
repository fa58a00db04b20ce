package segmenter

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// answerServer serves on a Listener whose Answer answers "GET /fast..."
// with body (from its memfd) and "GET /mem..." with a body in memory;
// net/http answers everything else with "net/http PATH".
func answerServer(t *testing.T, body *os.File, size int64, header, idle time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("net/http " + r.URL.Path))
	}))
	answer := func(dst, head []byte, remote string) ([]byte, *os.File, int64, bool) {
		switch {
		case remote == "":
			t.Error("no remote address")
		case bytes.HasPrefix(head, []byte("GET /fast")):
			return append(dst, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.FormatInt(size, 10)+"\r\n\r\n"...), body, size, true
		case bytes.HasPrefix(head, []byte("GET /mem")):
			return append(dst, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nmemory"...), nil, 0, true
		}
		return dst, nil, 0, false
	}
	srv.Listener = &Listener{Listener: srv.Listener, Answer: answer, HeaderTimeout: header, IdleTimeout: idle}
	srv.Config.ConnContext = ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// request sends the requests for paths on c (all at once when pipelined) and
// returns the bodies of the answers.
func request(t *testing.T, c net.Conn, r *bufio.Reader, pipelined bool, paths ...string) []string {
	t.Helper()
	var bodies []string
	send := func(p string) {
		if _, err := io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	if pipelined {
		for _, p := range paths {
			send(p)
		}
	}
	for _, p := range paths {
		if !pipelined {
			send(p)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		bodies = append(bodies, string(b))
	}
	return bodies
}

// TestAnswerer checks that the requests that open a connection go to the
// Answerer while it answers, and from the first it declines, every request
// goes to net/http, answerable or not, in order, pipelined or not.
func TestAnswerer(t *testing.T) {
	w, files := testWindow(t)
	defer w.close()
	seg := w.files["hi/seg7.mp4"]
	srv := answerServer(t, seg.file, seg.size, time.Second, time.Second)
	want := string(files["hi/seg7.mp4"])
	for _, pipelined := range []bool{false, true} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got := request(t, c, bufio.NewReader(c), pipelined, "/fast", "/mem", "/fast", "/slow", "/fast", "/mem")
		c.Close()
		for i, w := range []string{want, "memory", want, "net/http /slow", "net/http /fast", "net/http /mem"} {
			if got[i] != w {
				t.Errorf("pipelined %v: answer %d is %.40q, want %.40q", pipelined, i, got[i], w)
			}
		}
	}

	// a head longer than an Answerer is offered goes to net/http whole
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	long := "GET /fast HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("y", maxHead) + "\r\n\r\n"
	if _, err := io.WriteString(c, long); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "net/http /fast" {
		t.Errorf("long head answered %.40q", b)
	}
}

// TestAnswerClosedFile checks that an answer whose file was closed (its
// window gone) sends nothing and leaves the request to net/http.
func TestAnswerClosedFile(t *testing.T) {
	f, err := memfd("gone", []byte("gone"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := answerServer(t, f, 4, time.Second, time.Second)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := request(t, c, bufio.NewReader(c), false, "/fast", "/mem"); got[0] != "net/http /fast" || got[1] != "net/http /mem" {
		t.Errorf("answers %q", got)
	}
}

// TestAnswerCloseWaits closes the server's connections while an answer is
// being sent to a client that does not read yet: the answer still arrives
// whole, and then the connection ends.
func TestAnswerCloseWaits(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB: more than loopback buffers hold
	f, err := memfd("big", big)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv := answerServer(t, f, int64(len(big)), time.Second, time.Second)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if _, err := r.Peek(1); err != nil { // the answer has begun
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // and fills the buffers
	srv.CloseClientConnections()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, big) {
		t.Fatalf("%d of %d bytes, %v", len(body), len(big), err)
	}
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after the answer: %d bytes, %v; want EOF", n, err)
	}
}

// TestAnswerTimeouts checks that a connection whose requests went to the
// Answerer is closed when idle longer than IdleTimeout, or when a request
// takes longer than HeaderTimeout to arrive.
func TestAnswerTimeouts(t *testing.T) {
	srv := answerServer(t, nil, 0, 300*time.Millisecond, 300*time.Millisecond)
	for _, c := range []struct {
		name, then string
		least      time.Duration // left of the timeout that applies
	}{{"idle", "", 50 * time.Millisecond}, {"slow head", "GET /mem HTTP/1.1\r\n", 200 * time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			request(t, conn, r, false, "/mem")
			time.Sleep(200 * time.Millisecond)
			io.WriteString(conn, c.then) // a head that starts here has the whole header timeout
			start := time.Now()
			conn.SetReadDeadline(start.Add(10 * time.Second))
			if n, err := r.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("%d bytes, %v; want EOF", n, err)
			}
			if d := time.Since(start); d < c.least {
				t.Errorf("closed %v after: before its timeout", d)
			}
		})
	}
}

// TestAnswerShutdown checks that Shutdown, with CloseDirect registered,
// closes an idle connection whose requests all went to the Answerer at
// once (net/http alone would wait 5 s: it takes it for a new one), and
// leaves a connection that net/http has alone.
func TestAnswerShutdown(t *testing.T) {
	srv := answerServer(t, nil, 0, time.Minute, time.Minute)
	srv.Config.RegisterOnShutdown(srv.Listener.(*Listener).CloseDirect)
	dial := func(paths ...string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		r := bufio.NewReader(c)
		request(t, c, r, false, paths...)
		return c, r
	}
	direct, directR := dial("/mem")
	routed, routedR := dial("/mem", "/slow")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	for _, c := range []struct {
		name string
		conn net.Conn
		r    *bufio.Reader
	}{{"direct", direct, directR}, {"routed", routed, routedR}} {
		c.conn.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.r.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s connection after Shutdown: %d bytes, %v; want EOF", c.name, n, err)
		}
	}
}
