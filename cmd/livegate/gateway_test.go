package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestHeaderLimit: a request head over http_max_header_bytes gets 431,
// one under it is served.
func TestHeaderLimit(t *testing.T) {
	srv := startGateway(t, nil)
	for _, c := range []struct {
		size int
		want int
	}{{15 << 10, 200}, {17 << 10, 431}} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", srv.URL+"/healthz", nil)
		req.Header.Set("X-Filler", strings.Repeat("a", c.size))
		req.Write(conn)
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatalf("%d bytes: %v", c.size, err)
		}
		if resp.StatusCode != c.want {
			t.Errorf("a head of %d KiB: %d, want %d", c.size>>10, resp.StatusCode, c.want)
		}
		conn.Close()
	}
}

// TestRuntimeMetrics: /metrics shows the Go runtime's and the process's
// metrics beside livegate's, for dashboards and the soak test.
func TestRuntimeMetrics(t *testing.T) {
	srv := startGateway(t, nil)
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_open_fds", "livegate_streams_live"} {
		if !strings.Contains(string(body), "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
