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

// blockWaiter is one parked client. Its probes are submitted by the
// registry's queue, in wake order, and their results come back on probed.
type blockWaiter struct {
	// build makes the probe job and lane runs it.
	build  func() (*job, error)
	lane   *lane
	probed chan probeResult

	mu    sync.Mutex
	state waiterState
	// dirty records a wake while a probe was queued or running: the
	// probe may have run before the write that woke us, so probe again.
	dirty bool
	// submitted says the queued probe went to the writer: it will run,
	// and its result must be taken.
	submitted bool
}

type waiterState uint8

const (
	waiterArmed  waiterState = iota // parked, waiting for a wake
	waiterQueued                    // a probe is queued or running
	waiterDone                      // the client wants no more probes
)

type probeResult struct {
	j   *job
	err error
}

// newBlockWaiter starts queued: it is parked before its first probe goes
// out, and a wake in between must only ask for another probe after it. An
// armed waiter would probe from the waker too, and the two results would
// not fit the one-slot channel: the client would hang.
func newBlockWaiter(l *lane, build func() (*job, error)) *blockWaiter {
	return &blockWaiter{build: build, lane: l, probed: make(chan probeResult, 1), state: waiterQueued}
}

// firstProbe submits the probe a client makes when its command arrives,
// from the client's own goroutine, and queues its result.
func (w *blockWaiter) firstProbe() {
	w.mu.Lock()
	w.submitted = true
	w.mu.Unlock()
	j, err := w.build()
	if err == nil {
		w.lane.submit(j)
	}
	w.probed <- probeResult{j: j, err: err}
}

// reprobe submits a probe ahead of the lane's queue, after a wake: Redis
// serves the clients a command woke before any later command.
func (w *blockWaiter) reprobe() {
	j, err := w.build()
	if err == nil {
		w.lane.submitUrgent(j)
	}
	w.probed <- probeResult{j: j, err: err}
}

// cancel stops further probes. It reports false when a probe already went
// to the writer: the caller must take its result (it may have popped).
func (w *blockWaiter) cancel() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == waiterQueued && w.submitted {
		return false
	}
	w.state = waiterDone
	return true
}

// finish marks the waiter done once its last probe's result is taken.
func (w *blockWaiter) finish() {
	w.mu.Lock()
	w.state = waiterDone
	w.mu.Unlock()
}

type blockRegistry struct {
	mu      sync.Mutex
	waiters map[blockKey][]*blockWaiter
	count   atomic.Int64
}

// queueProbe probes again for w, woken by a write, or, when a probe is
// already on its way, asks for another after it. The probe goes ahead of
// everything queued on the lane, and it is built and queued here, in wake
// order: the longest-waiting client probes first, as Redis serves its
// blocked clients.
func (r *blockRegistry) queueProbe(w *blockWaiter) {
	w.mu.Lock()
	switch w.state {
	case waiterArmed:
		w.state, w.submitted = waiterQueued, true
		w.mu.Unlock()
		w.reprobe()
		return
	case waiterQueued:
		w.dirty = true
	}
	w.mu.Unlock()
}

// rearm is called after a probe found nothing: the waiter waits for the
// next wake, or probes again at once if one came meanwhile.
func (r *blockRegistry) rearm(w *blockWaiter) {
	w.mu.Lock()
	w.submitted = false
	if w.state != waiterQueued {
		w.mu.Unlock()
		return
	}
	if w.dirty {
		w.dirty = false
		w.submitted = true
		w.mu.Unlock()
		w.reprobe()
		return
	}
	w.state = waiterArmed
	w.mu.Unlock()
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
		r.queueProbe(w)
	}
	r.mu.Unlock()
}

// wakeDB fires every waiter on a key of db, or of every db when db is
// negative: FLUSHDB, FLUSHALL and SWAPDB change keys without naming them.
func (r *blockRegistry) wakeDB(db int) {
	r.mu.Lock()
	for bk, list := range r.waiters {
		if db >= 0 && bk.db != db {
			continue
		}
		for _, w := range list {
			r.queueProbe(w)
		}
	}
	r.mu.Unlock()
}

// unblockGate lets CLIENT UNBLOCK end another client's blocking command.
// It is open only while that command is parked, so an unblock never
// lingers to end a later one, and a client unblocked once reports 0 to a
// second CLIENT UNBLOCK, as on Redis.
type unblockGate struct {
	mu     sync.Mutex
	parked bool
	// ch carries the reason: false for TIMEOUT (the command's nil reply),
	// true for ERROR (-UNBLOCKED).
	ch chan bool
}

// open starts a blocking command's wait and returns the channel an unblock
// arrives on.
func (g *unblockGate) open() <-chan bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = make(chan bool, 1)
	}
	select {
	case <-g.ch:
	default:
	}
	g.parked = true
	return g.ch
}

// close ends the wait: later unblocks find the client not blocked.
func (g *unblockGate) close() {
	g.mu.Lock()
	g.parked = false
	g.mu.Unlock()
}

// fire unblocks a parked client, reporting whether it was parked.
func (g *unblockGate) fire(withError bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.parked {
		return false
	}
	g.parked = false
	g.ch <- withError
	return true
}
