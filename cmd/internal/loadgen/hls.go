package loadgen

import (
	"context"
	"fmt"
	"net/url"
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
