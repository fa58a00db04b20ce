package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/livegate/livegate/ingest"
	"github.com/nats-io/nats.go/jetstream"
)

// claim is a stream this gateway holds in the directory: the
// ingest.Claim of one publishing session. Its writes are serialized (wmu)
// so that each is made on the revision the last one left.
type claim struct {
	d      *Directory
	name   string
	resume *ingest.Resume
	lostFn func()

	wmu    sync.Mutex // held while writing the entry
	mu     sync.Mutex
	rev    uint64
	entry  Entry
	follow func() []byte
	done   bool // released, handed off or lost: never written again
	lostOn sync.Once
}

// Session implements ingest.Claim.
func (c *claim) Session() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entry.Session
}

// Resume implements ingest.Claim.
func (c *claim) Resume() *ingest.Resume { return c.resume }

// Follow implements ingest.Claim: the entry's Output is state() from the
// next refresh on.
func (c *claim) Follow(state func() []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.follow = state
}

// next is the entry to write next: the current state and renditions.
func (c *claim) next() (Entry, uint64, bool) {
	c.mu.Lock()
	e, rev, follow, done := c.entry, c.rev, c.follow, c.done
	c.mu.Unlock()
	if done {
		return Entry{}, 0, false
	}
	if follow != nil && e.State == StateLive {
		if out := follow(); out != nil {
			e.Output = out
		}
	}
	if c.d.Local != nil {
		if st := c.d.Local.Stream(c.name); st != nil {
			if info := st.Info(); info.Live {
				e.Renditions = info.Renditions
			}
		}
	}
	return e, rev, true
}

// write writes e on revision rev and keeps it as the claim's entry.
func (c *claim) write(ctx context.Context, e Entry, rev uint64) error {
	ttl := c.d.TTL
	if e.State == StateHandoff {
		ttl = c.d.Grace
	}
	ctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	rev, err := c.d.put(ctx, c.name, e, rev, ttl)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.entry, c.rev = e, rev
	c.mu.Unlock()
	return nil
}

// refresh rewrites the entry before it expires. An entry that expired
// (the server was out of reach, or this gateway too slow) is created
// again; one another gateway has written is lost.
func (c *claim) refresh() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	e, rev, ok := c.next()
	if !ok {
		return nil
	}
	err := c.write(c.d.ctx, e, rev)
	if err == nil || !conflict(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(c.d.ctx, c.d.Timeout)
	defer cancel()
	cur, curRev, found, err := c.d.get(ctx, c.name)
	switch {
	case err != nil:
		return err
	case found && cur.Gateway == c.d.id && cur.Session == e.Session:
		return c.write(c.d.ctx, e, curRev) // an earlier write of ours that came back late
	case found:
		c.lose()
		return nil
	}
	data, _ := json.Marshal(e)
	rev, err = c.d.kv.Create(ctx, c.name, data, jetstream.KeyTTL(c.d.TTL))
	if errors.Is(err, jetstream.ErrKeyExists) {
		c.lose()
		return nil
	}
	if err != nil {
		return err
	}
	c.d.Logger.Warn("directory: a claim had expired and was made again", "stream", c.name)
	c.mu.Lock()
	c.rev = rev
	c.mu.Unlock()
	return nil
}

// Stopping implements ingest.Claim: the entry says so before the
// publisher is told to go elsewhere.
func (c *claim) Stopping() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	e, rev, ok := c.next()
	if !ok {
		return
	}
	e.State = StateStopping
	if err := c.write(c.d.ctx, e, rev); err != nil {
		c.d.Logger.Warn("directory: could not mark the stream stopping (a resuming publisher may start it anew)",
			"stream", c.name, "error", err)
	}
}

// Handoff implements ingest.Claim: the entry keeps the session with the
// output's final state for Grace, and is not renewed from then on.
func (c *claim) Handoff(state []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	e, rev, done := c.entry, c.rev, c.done
	c.done = true
	c.mu.Unlock()
	c.d.forget(c)
	if done {
		return
	}
	e.State, e.Output = StateHandoff, state
	if err := c.write(c.d.ctx, e, rev); err != nil {
		c.d.Logger.Warn("directory: handoff not written (the stream ends)", "stream", c.name, "error", err)
		return
	}
	c.d.handoffs.Inc()
	c.d.Logger.Info("session handed off", "stream", c.name, "for", c.d.Grace)
}

// Release implements ingest.Claim: the entry is deleted, if it is still
// this claim's.
func (c *claim) Release() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	rev, done := c.rev, c.done
	c.done = true
	c.mu.Unlock()
	c.d.forget(c)
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(c.d.ctx, c.d.Timeout)
	defer cancel()
	err := c.d.kv.Delete(ctx, c.name, jetstream.LastRevision(rev))
	if err != nil && !conflict(err) {
		c.d.Logger.Warn("directory: release not written (the entry expires by itself)", "stream", c.name, "error", fmt.Errorf("delete: %w", err))
	}
}

// lose ends a claim another gateway has taken: ingest is told (on a
// goroutine of its own, which Close waits for).
func (c *claim) lose() {
	c.lostOn.Do(func() {
		c.mu.Lock()
		done := c.done
		c.done = true
		c.mu.Unlock()
		c.d.forget(c)
		if done {
			return
		}
		c.d.lost.Inc()
		c.d.Logger.Warn("another gateway took the stream", "stream", c.name)
		if c.lostFn != nil {
			c.d.wg.Add(1)
			go func() {
				defer c.d.wg.Done()
				c.lostFn()
			}()
		}
	})
}

// forget drops a claim that will not be renewed any more.
func (d *Directory) forget(c *claim) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.claims[c.name] == c {
		delete(d.claims, c.name)
	}
}
