// Command floor is the delivery benchmark's lower bound, not a web server:
// it answers GET requests for the files under a directory from memfds with
// one sendmsg (the header, MSG_MORE) and one sendfile each, on keep-alive
// connections, with nothing else per request (no header parsing beyond the
// request line, no Range, no HEAD, no allocation). bench/delivery.sh runs
// it beside livegate and nginx, so that the gap between livegate and nginx
// can be read against what any server must pay the kernel for the same
// requests on this machine.
//
//	floor -root DIR -listen 127.0.0.1:PORT
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// file is one file held in a memfd, with its answer's header.
type file struct {
	fd     int
	size   int64
	header []byte
}

func main() {
	root := flag.String("root", ".", "directory whose files are served, by their paths under it")
	listen := flag.String("listen", "127.0.0.1:0", "address (loopback)")
	flag.Parse()
	files, err := load(*root)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("floor: %d files on %s", len(files), ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c.(*net.TCPConn), files)
	}
}

// load reads every regular file under root into a memfd.
func load(root string) (map[string]*file, error) {
	files := map[string]*file{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fd, err := unix.MemfdCreate(d.Name(), unix.MFD_CLOEXEC)
		if err != nil {
			return err
		}
		for rest := data; len(rest) > 0; {
			n, err := unix.Write(fd, rest)
			if err != nil {
				return err
			}
			rest = rest[n:]
		}
		rel, _ := filepath.Rel(root, path)
		files["/"+filepath.ToSlash(rel)] = &file{fd: fd, size: int64(len(data)), header: []byte(
			"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nAccept-Ranges: bytes\r\nContent-Length: " +
				strconv.Itoa(len(data)) + "\r\n\r\n")}
		return nil
	})
	return files, err
}

var notFound = []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

// serve answers the requests of one connection until it fails or sends a
// request head longer than its buffer.
func serve(c *net.TCPConn, files map[string]*file) {
	defer c.Close()
	sc, err := c.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 8192)
	n := 0
	for {
		end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if end < 0 {
			if n == len(buf) {
				return
			}
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			continue
		}
		// "GET /path HTTP/1.1"
		line, _, _ := bytes.Cut(buf[:end], []byte("\r\n"))
		f := (*file)(nil)
		if method, rest, ok := bytes.Cut(line, []byte(" ")); ok && string(method) == "GET" {
			path, _, _ := bytes.Cut(rest, []byte(" "))
			f = files[string(path)]
		}
		if err := answer(sc, f); err != nil {
			return
		}
		n = copy(buf, buf[end+4:n])
	}
}

// answer sends f (or a 404 when f is nil): its header with MSG_MORE, then
// its body with sendfile, waiting whenever the socket is full.
func answer(sc syscall.RawConn, f *file) error {
	header, size, sent := notFound, int64(0), 0
	if f != nil {
		header, size = f.header, f.size
	}
	var off int64
	var serr error
	err := sc.Write(func(fd uintptr) bool {
		for sent < len(header) {
			m, err := unix.SendmsgN(int(fd), header[sent:], nil, nil, unix.MSG_MORE)
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			if err != nil {
				serr = err
				return true
			}
			sent += m
		}
		for off < size {
			m, err := unix.Sendfile(int(fd), f.fd, &off, int(size-off))
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			if err != nil || m == 0 {
				serr = fmt.Errorf("sendfile: %v", err)
				return true
			}
		}
		return true
	})
	return errors.Join(err, serr)
}
