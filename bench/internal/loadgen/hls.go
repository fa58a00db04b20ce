package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Resolve returns the playlist reference ref relative to base.
func Resolve(base, ref string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", base, err)
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", ref, err)
	}
	return b.ResolveReference(r).String(), nil
}

// Sleep waits for d or until ctx ends, as players pace their reloads.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// maxPlaylist bounds the body Get reads.
const maxPlaylist = 4 << 20

// Get fetches u within timeout and returns the status, the body (at most
// 4 MiB) and the wall time at which the body was complete.
func Get(ctx context.Context, client *http.Client, u string, timeout time.Duration) (int, []byte, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPlaylist))
	return resp.StatusCode, body, time.Now(), err
}

// WaitPlaylist polls the playlist at u, every after each failure, until it
// answers 200 with a body holding want, and returns that time and the
// body. Requests may be held by the server: each is bounded (12 s), and so
// is the wait, by ctx.
func WaitPlaylist(ctx context.Context, client *http.Client, u, want string, every time.Duration) (time.Time, string, error) {
	for {
		code, body, at, err := Get(ctx, client, u, 12*time.Second)
		if err == nil && code == http.StatusOK && strings.Contains(string(body), want) {
			return at, string(body), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, "", fmt.Errorf("wait for %s: %w (last: HTTP %d, %v)", u, ctx.Err(), code, err)
		case <-time.After(every):
		}
	}
}
