package ingest

import (
	"errors"
	"sync"
	"time"
)

// errOverrun is returned by queue.put when the consumer did not make room
// in time.
var errOverrun = errors.New("publisher outruns the transcoder")

// queue is a bounded FIFO of byte chunks between a publisher's socket and
// its transcoder. It holds at most max bytes (one chunk more if that chunk
// alone is bigger).
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	size   int
	max    int
	closed bool
}

func newQueue(max int) *queue {
	q := &queue{max: max}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// put appends p, waiting up to wait for room. full is called once, with the
// queue locked and its size, if it has to wait. It returns errOverrun when
// the wait runs out.
func (q *queue) put(p []byte, wait time.Duration, full func(buffered int)) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.size > 0 && q.size+len(p) > q.max && !q.closed {
		full(q.size)
		// the timer's own flag, not a clock reading, ends the wait: a
		// deadline taken apart from the timer could still lie ahead when
		// the timer's wake-up comes, and nothing would wake the loop again
		expired := false
		timer := time.AfterFunc(wait, func() {
			q.mu.Lock()
			expired = true
			q.cond.Broadcast()
			q.mu.Unlock()
		})
		defer timer.Stop()
		for q.size > 0 && q.size+len(p) > q.max && !q.closed {
			if expired {
				return errOverrun
			}
			q.cond.Wait()
		}
	}
	if q.closed {
		return errClosed
	}
	q.chunks = append(q.chunks, p)
	q.size += len(p)
	q.cond.Broadcast()
	return nil
}

var errClosed = errors.New("queue closed")

// get removes the oldest chunk, waiting for one. ok is false once the queue
// is closed and empty.
func (q *queue) get() (p []byte, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.chunks) == 0 {
		if q.closed {
			return nil, false
		}
		q.cond.Wait()
	}
	p = q.chunks[0]
	q.chunks[0] = nil
	q.chunks = q.chunks[1:]
	q.size -= len(p)
	q.cond.Broadcast()
	return p, true
}

// buffered is how many bytes wait in the queue.
func (q *queue) buffered() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// close ends the queue: get returns what is left, then ok=false.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}
