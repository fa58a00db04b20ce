package chat

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
)

// TestWritev writes queues through a real loopback socket: more buffers
// than one writev takes, empty ones, and more bytes than the socket buffer
// holds (partial writes while the peer reads), and checks what arrives.
func TestWritev(t *testing.T) {
	for _, tc := range []struct {
		name    string
		buffers int
		size    int
	}{
		{"one", 1, 10},
		{"over IOV_MAX", 3*maxIOV + 7, 3},
		{"partial writes", 64, 64 << 10},
		{"empty ones", 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- nil
					return
				}
				defer c.Close()
				b, _ := io.ReadAll(c)
				got <- b
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).SetWriteBuffer(4096)
			var bufs net.Buffers
			var want []byte
			for i := range tc.buffers {
				b := bytes.Repeat([]byte{byte('a' + i%26)}, tc.size)
				if i%2 == 1 {
					b = append(b, fmt.Sprint(i)...)
				}
				bufs = append(bufs, b)
				want = append(want, b...)
			}
			if err := writev(c, bufs); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("received %d bytes, want %d (or different bytes)", len(b), len(want))
			}
		})
	}
}
