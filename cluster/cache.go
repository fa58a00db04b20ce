package cluster

import (
	"container/list"
	"sync"
	"time"
)

// cache collapses upstream requests: the first viewer to ask for a key
// makes the request (the leader of its flight), the others wait for its
// answer, and a good answer is kept for a while for the viewers who ask
// just after. What is kept is bounded by max bytes, the oldest going
// first.
type cache struct {
	max int64

	mu      sync.Mutex
	flights map[string]*flight
	order   list.List // keys of the kept answers, oldest first
	bytes   int64
}

// flight is one upstream request and, once done, its answer.
type flight struct {
	done    chan struct{}
	a       *answer
	err     error
	expires time.Time     // once done: kept until then
	elem    *list.Element // in order, while kept
}

// join returns the flight of key: one in progress or kept (leader false,
// how says which), or a new one the caller must make and finish.
func (c *cache) join(key string) (f *flight, leader bool, how string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[key]; f != nil {
		select {
		case <-f.done:
			if time.Now().Before(f.expires) {
				return f, false, "kept"
			}
			c.drop(key, f)
		default:
			return f, false, "waited"
		}
	}
	f = &flight{done: make(chan struct{})}
	c.flights[key] = f
	return f, true, ""
}

// finish gives the flight its answer, kept for keep (not kept when keep
// is 0 or it failed), and wakes its waiters.
func (c *cache) finish(key string, f *flight, a *answer, err error, keep time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.a, f.err = a, err
	close(f.done)
	if err != nil || keep <= 0 || a == nil {
		c.drop(key, f)
		return
	}
	f.expires = time.Now().Add(keep)
	f.elem = c.order.PushBack(key)
	c.bytes += int64(len(a.body))
	for c.bytes > c.max && c.order.Len() > 0 {
		oldest := c.order.Front().Value.(string)
		c.drop(oldest, c.flights[oldest])
	}
}

// drop forgets key's flight f (if it is still the key's); c.mu held.
func (c *cache) drop(key string, f *flight) {
	if f == nil || c.flights[key] != f {
		return
	}
	delete(c.flights, key)
	if f.elem != nil {
		c.order.Remove(f.elem)
		f.elem = nil
		c.bytes -= int64(len(f.a.body))
	}
}

// sweep drops the answers kept past their time.
func (c *cache) sweep() {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, f := range c.flights {
		if f.elem != nil && now.After(f.expires) {
			c.drop(key, f)
		}
	}
}

func (c *cache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
