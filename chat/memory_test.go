package chat

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The idle-memory test runs its clients in a child process (this test
// binary again, selected by these variables) so that the parent's memory
// statistics hold the server alone.
const (
	envClientsAddr = "LIVEGATE_CHAT_TEST_CLIENTS_ADDR"
	envClientsN    = "LIVEGATE_CHAT_TEST_CLIENTS_N"
)

// idleMemoryLimit is the budget of server memory (heap and goroutine stacks,
// fragmentation included) for one idle member. Measured here: 12-14 KiB on
// a loaded machine, of which 4 KiB is the reader's stack: it waits in
// gorilla/websocket's frame reader, about 1,170 bytes deep, more than a
// 2 KiB stack holds above its guard.
const idleMemoryLimit = 16 << 10

func TestIdleMemoryPerMember(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	const n = 400
	s := &Server{}
	hs := startServer(t, s)
	addr := strings.TrimPrefix(hs.URL, "http://")
	base := inUse()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperIdleClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), envClientsAddr+"="+addr, envClientsN+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() }) // closing stdin ends the clients
	eventually(t, fmt.Sprint(n, " members"), func() bool { return s.Users("idle") == n })
	// idle: no writer left running
	eventually(t, "the join notices to be written", func() bool {
		for _, m := range s.room("idle").localMembers() {
			m.mu.Lock()
			busy := m.writing || len(m.queue) > 0
			m.mu.Unlock()
			if busy {
				return false
			}
		}
		return true
	})
	per := (inUse() - base) / n
	t.Logf("%d idle members: %d bytes of heap and stack each", n, per)
	if raceEnabled {
		t.Log("race detector on: its larger stacks are not held to the budget")
		return
	}
	// The figure for BENCHMARKS.md comes from this log and bench/chat.sh;
	// the test only catches a gross regression (twice the budget), since
	// the heap of a shared, noisy machine moves by a few KiB between runs.
	if per > 2*idleMemoryLimit {
		t.Fatalf("an idle member costs %d bytes, twice the budget of %d", per, idleMemoryLimit)
	}
}

// inUse is the heap and stack memory in use after a collection.
func inUse() int64 {
	var ms runtime.MemStats
	for range 6 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}

// TestHelperIdleClients is the child of TestIdleMemoryPerMember: it joins n
// members to room "idle", reads everything the server sends, and ends when
// its standard input closes.
func TestHelperIdleClients(t *testing.T) {
	addr := os.Getenv(envClientsAddr)
	if addr == "" {
		t.Skip("helper process of TestIdleMemoryPerMember")
	}
	n, _ := strconv.Atoi(os.Getenv(envClientsN))
	for i := range n {
		c, err := rawJoin(addr, "idle", fmt.Sprint("user", i))
		if err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, c)
	}
	io.Copy(io.Discard, os.Stdin)
}

// rawJoin opens a WebSocket by hand (a small client: no buffers kept) and
// sends a join.
func rawJoin(addr, room, name string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", room, addr, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || br.Buffered() > 0 {
		c.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	payload := []byte(fmt.Sprintf(`{"type":"join","name":%q}`, name))
	frame := []byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0} // masked with a zero key
	if _, err := c.Write(append(frame, payload...)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
