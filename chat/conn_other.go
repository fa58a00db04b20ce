//go:build !linux

package chat

import "net"

// writev writes bufs to nc (with writev(2) where the platform has it).
func writev(nc net.Conn, bufs net.Buffers) error {
	_, err := bufs.WriteTo(nc)
	return err
}

// waitReadable returns at once here: the next read blocks instead.
func waitReadable(net.Conn) {}
