package resp

import (
	"sync"
	"sync/atomic"
)

// Blocking commands never block a backend connection: the proxy probes them
// without blocking through the ordered writer, and when there is nothing to
// pop it parks the client here until a write it logs touches one of the keys.
// Waking on the writes the proxy itself executes is exact, because every
// write goes through the ordered writer.

type blockKey struct {
	db  int
	key string
}

type blockWaiter struct {
	wake chan struct{}
	once sync.Once
}

func (w *blockWaiter) fire() { w.once.Do(func() { close(w.wake) }) }

type blockRegistry struct {
	mu      sync.Mutex
	waiters map[blockKey][]*blockWaiter
	count   atomic.Int64
}

// park registers w on every key. The keys are copied.
func (r *blockRegistry) park(w *blockWaiter, db int, keys [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		bk := blockKey{db, string(k)}
		r.waiters[bk] = append(r.waiters[bk], w)
	}
	r.count.Add(1)
}

// unpark removes w from every key.
func (r *blockRegistry) unpark(w *blockWaiter, db int, keys [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		bk := blockKey{db, string(k)}
		list := r.waiters[bk]
		for i, x := range list {
			if x == w {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(r.waiters, bk)
		} else {
			r.waiters[bk] = list
		}
	}
	r.count.Add(-1)
}

// wake fires every waiter on the key, oldest first. Each then probes again
// through the ordered writer in wake order, so the longest-waiting client
// gets the first element, as with Redis's FIFO of blocked clients.
func (r *blockRegistry) wake(db int, key []byte) {
	r.mu.Lock()
	list := r.waiters[blockKey{db, string(key)}]
	for _, w := range list {
		w.fire()
	}
	r.mu.Unlock()
}
