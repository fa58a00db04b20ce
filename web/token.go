package web

import (
	"bytes"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// tokenedPlaylists rewrites playlists fetched with ?token= so that every
// URI inside carries the token: hls.js, Safari and VLC then play a private
// stream from the one URL index.m3u8?token=.... The last rewrite of each
// token and playlist is kept, so the viewers sharing a token (a thousand
// viewers of one playlist version) cost one rewrite, not one each.
type tokenedPlaylists struct {
	mu    sync.Mutex
	cache map[string]tokened // token + "\x00" + stream/file
}

type tokened struct {
	src, out []byte // the playlist as served, and rewritten
}

// maxTokened bounds the cache; past it the cache starts anew.
const maxTokened = 10000

// rewrite returns playlist with token on every URI, from the cache when
// the playlist of that key has not changed.
func (t *tokenedPlaylists) rewrite(token, key string, playlist []byte) []byte {
	key = token + "\x00" + key
	t.mu.Lock()
	c, ok := t.cache[key]
	t.mu.Unlock()
	if ok && bytes.Equal(c.src, playlist) {
		return c.out
	}
	out := withToken(playlist, token)
	t.mu.Lock()
	if t.cache == nil || len(t.cache) >= maxTokened {
		t.cache = map[string]tokened{}
	}
	t.cache[key] = tokened{src: bytes.Clone(playlist), out: out}
	t.mu.Unlock()
	return out
}

// serve answers a playlist request through h, with every URI of a
// successful answer carrying token.
func (t *tokenedPlaylists) serve(w http.ResponseWriter, r *http.Request, token, key string, h http.HandlerFunc) {
	inner := r
	if r.Header.Get("Range") != "" || r.Method == http.MethodHead {
		inner = r.Clone(r.Context()) // the whole playlist, to rewrite
		inner.Method = http.MethodGet
		inner.Header.Del("Range")
	}
	var c captured
	h(&c, inner)
	for k, v := range c.header {
		w.Header()[k] = v
	}
	if c.code != http.StatusOK && c.code != 0 {
		w.WriteHeader(c.code)
		w.Write(c.body.Bytes())
		return
	}
	body := t.rewrite(token, key, c.body.Bytes())
	w.Header().Del("Content-Length")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// withToken appends token to every URI of a playlist: the URI lines and
// the URI="..." attributes of its tags.
func withToken(playlist []byte, token string) []byte {
	param := "token=" + url.QueryEscape(token)
	add := func(out []byte, uri []byte) []byte {
		out = append(out, uri...)
		if bytes.IndexByte(uri, '?') >= 0 {
			return append(append(out, '&'), param...)
		}
		return append(append(out, '?'), param...)
	}
	out := make([]byte, 0, len(playlist)+len(playlist)/4)
	for _, line := range bytes.SplitAfter(playlist, []byte("\n")) {
		text := bytes.TrimRight(line, "\r\n")
		eol := line[len(text):]
		switch {
		case len(bytes.TrimSpace(text)) == 0:
			out = append(out, line...)
			continue
		case text[0] != '#':
			out = add(out, text)
		default:
			for {
				i := bytes.Index(text, []byte(`URI="`))
				if i < 0 {
					break
				}
				i += len(`URI="`)
				j := bytes.IndexByte(text[i:], '"')
				if j < 0 {
					break
				}
				out = add(append(out, text[:i]...), text[i:i+j])
				text = text[i+j:]
			}
			out = append(out, text...)
		}
		out = append(out, eol...)
	}
	return out
}

// captured is an http.ResponseWriter that keeps an answer.
type captured struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (c *captured) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}

func (c *captured) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

func (c *captured) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return c.body.Write(p)
}
