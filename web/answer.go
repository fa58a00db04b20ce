package web

import (
	"bytes"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// FinalFiler is implemented by a Stream whose files can be final: those of
// an ended stream's finished window, which no longer change.
type FinalFiler interface {
	// FinalFile returns the named file (as in ServeFile) if it is final.
	FinalFile(file string) (FinalFile, bool)
}

// FinalFile is a file that no longer changes, as Answer sends it.
type FinalFile struct {
	// Fields are its header fields, each line ending in CRLF.
	Fields []byte
	// Body holds its Size bytes from offset 0, shared by every answer; nil
	// when Data holds them.
	Body *os.File
	Size int64
	Data []byte
}

// Answer answers a plain GET of a final file under /live/ itself, without
// net/http: a segmenter.Listener offers it the requests that open a
// connection (see segmenter.Answerer). The answer is the one the route
// gives (same status, fields and body, counted alike); anything else, or
// anything unusual about the request, is declined and goes to the route.
func (s *Server) Answer(dst, head []byte, remote string) ([]byte, *os.File, int64, bool) {
	s.defaults()
	stream, file, agent, ok := parseFinalGet(head)
	if !ok {
		return dst, nil, 0, false
	}
	st, _ := s.Catalog.Stream(stream).(FinalFiler)
	if st == nil {
		return dst, nil, 0, false
	}
	f, ok := st.FinalFile(file)
	if !ok {
		return dst, nil, 0, false
	}
	s.count("media")
	s.direct.Add(1)
	s.viewers.seen(stream, clientKey(remote, agent))
	dst = append(dst, "HTTP/1.1 200 OK\r\n"...)
	if s.AllowOrigin != "-" {
		dst = append(dst, "Access-Control-Allow-Origin: "...)
		dst = append(dst, s.AllowOrigin...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, f.Fields...)
	dst = append(dst, dateField(&s.date)...)
	dst = append(dst, "\r\n"...)
	if f.Body == nil {
		return append(dst, f.Data...), nil, 0, true
	}
	return dst, f.Body, f.Size, true
}

// dated is the Date field of one second.
type dated struct {
	sec   int64
	field []byte
}

// dateField is the Date header field of now, formatted once a second.
func dateField(last *atomic.Pointer[dated]) []byte {
	now := time.Now().Unix()
	if d := last.Load(); d != nil && d.sec == now {
		return d.field
	}
	d := &dated{sec: now, field: []byte("Date: " + time.Unix(now, 0).UTC().Format(http.TimeFormat) + "\r\n")}
	last.Store(d)
	return d.field
}

// parseFinalGet reads a request head that Answer may answer: exactly
// "GET /live/{stream}/{file} HTTP/1.1", then well-formed header lines, one
// Host, and no field that gives the request a body or asks for anything
// but the whole file (Range, Expect, Upgrade, Connection other than
// keep-alive, ...). Anything else is declined: it is net/http's to read,
// and to answer or reject. file is a clean relative path of
// A-Z a-z 0-9 _ - . segments (no query, no escapes).
func parseFinalGet(head []byte) (stream, file, agent string, ok bool) {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	target, found := bytes.CutPrefix(line, []byte("GET /live/"))
	if !found {
		return "", "", "", false
	}
	target, found = bytes.CutSuffix(target, []byte(" HTTP/1.1"))
	if !found {
		return "", "", "", false
	}
	name, path, _ := bytes.Cut(target, []byte("/"))
	if !ValidName(string(name)) || !cleanPath(path) {
		return "", "", "", false
	}
	hosts := 0
	for len(rest) > 2 { // the last line is the blank one
		var field []byte
		field, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		key, value, found := bytes.Cut(field, []byte(":"))
		if !found || !token(key) || !fieldValue(value) {
			return "", "", "", false
		}
		value = bytes.Trim(value, " \t")
		is := func(names ...string) bool {
			return slices.ContainsFunc(names, func(n string) bool { return bytes.EqualFold(key, []byte(n)) })
		}
		switch {
		case is("Host"):
			if !hostValue(value) {
				return "", "", "", false // net/http's to reject
			}
			hosts++
		case is("User-Agent"):
			agent = string(value)
		case is("Connection"):
			if !bytes.EqualFold(value, []byte("keep-alive")) {
				return "", "", "", false
			}
		case is("Content-Length", "Transfer-Encoding", "Range", "If-Range", "Expect", "Upgrade", "Trailer", "TE"):
			return "", "", "", false
		}
	}
	if hosts != 1 || string(rest) != "\r\n" {
		return "", "", "", false
	}
	return string(name), string(path), agent, true
}

// cleanPath reports whether p is a relative path of one or more segments
// of A-Z a-z 0-9 _ - ., none empty, "." or "..".
func cleanPath(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	for _, seg := range bytes.Split(p, []byte("/")) {
		if len(seg) == 0 || string(seg) == "." || string(seg) == ".." {
			return false
		}
		for _, c := range seg {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
				return false
			}
		}
	}
	return true
}

// hostValue reports whether b is a plain host[:port] (name, IPv4 or
// [IPv6]): a subset of what net/http accepts in Host.
func hostValue(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || bytes.IndexByte([]byte(".:-_[]"), c) >= 0) {
			return false
		}
	}
	return true
}

// token reports whether b is a non-empty RFC 9110 token (a field name).
func token(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c > 0x7e || !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0) {
			return false
		}
	}
	return true
}

// fieldValue reports whether b holds only visible ASCII, spaces and tabs:
// no control byte (so no CR or LF of a line not split here), and nothing
// that a reader could take for an encoding.
func fieldValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c > 0x7e {
			return false
		}
	}
	return true
}
