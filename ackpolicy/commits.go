package ackpolicy

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrAckTimeout means an offset did not commit within the ack timeout. The
// write was executed on the primary; whether it survives a failover is not
// known (the UNCOMMITTED error of the protocols).
var ErrAckTimeout = errors.New("ackpolicy: not committed within the ack timeout")

// Commits holds the committed offset of a leader term and the waiters parked
// on it. The committed offset only goes up. It is safe for concurrent use.
type Commits struct {
	mu        sync.Mutex
	committed uint64
	waiters   waiterHeap
	aborted   error
}

// NewCommits starts at committed offset start.
func NewCommits(start uint64) *Commits { return &Commits{committed: start} }

// Committed is the highest committed offset.
func (c *Commits) Committed() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed
}

// Advance raises the committed offset to offset, if higher, and releases the
// waiters it covers. It returns the committed offset after the call.
func (c *Commits) Advance(offset uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if offset <= c.committed {
		return c.committed
	}
	c.committed = offset
	for len(c.waiters) > 0 && c.waiters[0].offset <= offset {
		w := heap.Pop(&c.waiters).(*waiter)
		close(w.done)
	}
	return c.committed
}

// Abort releases every waiter with err, and makes later waits for offsets
// past the committed one fail with err too, until Reset. A leader calls it
// when it loses its lease: nothing it holds can commit under its epoch
// anymore.
func (c *Commits) Abort(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aborted = err
	for len(c.waiters) > 0 {
		w := heap.Pop(&c.waiters).(*waiter)
		w.err = err
		close(w.done)
	}
}

// Reset starts a new term at committed offset start and clears Abort.
// Waiters still parked are released with ErrTermEnded.
func (c *Commits) Reset(start uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.waiters) > 0 {
		w := heap.Pop(&c.waiters).(*waiter)
		w.err = ErrTermEnded
		close(w.done)
	}
	c.committed, c.aborted = start, nil
}

// ErrTermEnded is what waiters get when the term they waited in was reset.
var ErrTermEnded = errors.New("ackpolicy: leader term ended before the offset committed")

// Wait blocks until offset is committed, ctx is done, or the term is aborted.
// It returns nil once committed, the Abort error, or ctx's error wrapped.
func (c *Commits) Wait(ctx context.Context, offset uint64) error {
	c.mu.Lock()
	if offset <= c.committed {
		c.mu.Unlock()
		return nil
	}
	if err := c.aborted; err != nil {
		c.mu.Unlock()
		return err
	}
	w := &waiter{offset: offset, done: make(chan struct{})}
	heap.Push(&c.waiters, w)
	c.mu.Unlock()

	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		c.mu.Lock()
		defer c.mu.Unlock()
		if w.index >= 0 {
			heap.Remove(&c.waiters, w.index)
			return fmt.Errorf("wait for offset %d: %w", offset, context.Cause(ctx))
		}
		// Released while ctx ended: the release wins.
		return w.err
	}
}

// WaitFor is Wait with the ack timeout: it returns an error wrapping
// ErrAckTimeout when offset has not committed within timeout, and ctx's
// error when ctx ends first.
func (c *Commits) WaitFor(ctx context.Context, offset uint64, timeout time.Duration) error {
	// Most waits find the offset committed already: no timer for those.
	c.mu.Lock()
	done, aborted := offset <= c.committed, c.aborted
	c.mu.Unlock()
	if done {
		return nil
	}
	if aborted != nil {
		return aborted
	}
	tctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrAckTimeout)
	defer cancel()
	return c.Wait(tctx, offset)
}

// Waiting is the number of parked waiters.
func (c *Commits) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

type waiter struct {
	offset uint64
	done   chan struct{}
	err    error
	index  int // in the heap; -1 once popped
}

type waiterHeap []*waiter

func (h waiterHeap) Len() int           { return len(h) }
func (h waiterHeap) Less(i, j int) bool { return h[i].offset < h[j].offset }
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}

func (h *waiterHeap) Pop() any {
	old := *h
	n := len(old)
	w := old[n-1]
	old[n-1] = nil
	w.index = -1
	*h = old[:n-1]
	return w
}

// ErrNotLeader means this node cannot commit writes: it is not the leader,
// or it is a leader whose lease may have expired (fenced). A write refused
// with it was not executed (the TRYAGAIN error of the protocols).
var ErrNotLeader = errors.New("ackpolicy: not the leader or fenced")
