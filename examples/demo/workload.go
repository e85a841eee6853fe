package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kinds of unacknowledged writes. Only an acknowledged write must survive;
// these are counted to show what the client was told.
const (
	failTryAgain    = "TRYAGAIN (not executed)"
	failNoReplicas  = "NOREPLICAS (not executed)"
	failUncommitted = "UNCOMMITTED (executed, not committed)"
	failConnection  = "connection lost (outcome unknown)"
	failOther       = "other error"
)

// classify names the kind of a failed write from its error.
func classify(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "TRYAGAIN"):
		return failTryAgain
	case strings.HasPrefix(msg, "NOREPLICAS"):
		return failNoReplicas
	case strings.HasPrefix(msg, "UNCOMMITTED"):
		return failUncommitted
	case connLost(err), strings.Contains(msg, "may have been executed"):
		// The second is a node that forwarded the write to a leader that
		// died with it in flight.
		return failConnection
	default:
		return failOther
	}
}

// connLost reports whether err is the connection failing rather than an
// answer from the server.
func connLost(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, redis.ErrClosed)
}

// writer is one client writing SET demo:w<id>:<seq> v<seq> in a loop. It
// starts on one node and moves to the next when its connection fails,
// which is what a client with a list of addresses does; while a node
// answers, the node itself forwards the write to whoever leads.
type writer struct {
	id      int
	clients []*redis.Client // one per node
	cur     int             // the node it writes through

	mu      sync.Mutex
	acked   []uint32          // sequence numbers acknowledged
	unacked map[uint32]string // sequence number → kind of failure
	sample  map[string]string // kind → the first error message of that kind
}

// workload is the writers and their counters.
type workload struct {
	writers []*writer
	rate    float64 // writes per second over all writers; 0 for as fast as they go

	acked   atomic.Int64
	unacked atomic.Int64
	lastAck atomic.Int64 // unix nanos of the latest acknowledgement
	maxGap  atomic.Int64 // longest pause between two acknowledgements, nanos

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWorkload starts n writers spread over the nodes' client addresses.
func startWorkload(addrs []string, n int, rate float64) *workload {
	w := &workload{rate: rate}
	for i := range n {
		wr := &writer{id: i + 1, cur: i % len(addrs), unacked: map[uint32]string{}, sample: map[string]string{}}
		for _, a := range addrs {
			wr.clients = append(wr.clients, redis.NewClient(&redis.Options{
				Addr: a, Protocol: 2,
				// Each attempt is one write, sent once: a retry inside
				// the client would hide what the demo wants to count.
				MaxRetries: -1, PoolSize: 1,
				DialTimeout: 500 * time.Millisecond,
				// Longer than FAILOVER_WAIT plus ACK_TIMEOUT: a write may
				// wait for the next leader and then for its commit.
				ReadTimeout:  15 * time.Second,
				WriteTimeout: 2 * time.Second,
			}))
		}
		w.writers = append(w.writers, wr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.lastAck.Store(time.Now().UnixNano())
	for _, wr := range w.writers {
		w.wg.Go(func() { w.run(ctx, wr) })
	}
	return w
}

func (w *workload) run(ctx context.Context, wr *writer) {
	var interval time.Duration
	if w.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(w.writers)) / w.rate)
	}
	next := time.Now()
	for seq := uint32(1); ctx.Err() == nil; seq++ {
		if interval > 0 {
			next = next.Add(interval)
			// After a stall, pick the pace up again rather than burst to
			// make up for the lost time.
			if now := time.Now(); next.Before(now.Add(-100 * time.Millisecond)) {
				next = now
			}
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}
		// The write is not tied to ctx: stopping the workload lets the
		// last write finish, so that its outcome is known.
		err := wr.clients[wr.cur].Set(context.Background(), key(wr.id, seq), value(seq), 0).Err()
		now := time.Now().UnixNano()
		wr.mu.Lock()
		if err == nil {
			wr.acked = append(wr.acked, seq)
		} else {
			kind := classify(err)
			wr.unacked[seq] = kind
			if _, ok := wr.sample[kind]; !ok {
				wr.sample[kind] = err.Error()
			}
		}
		wr.mu.Unlock()
		if err == nil {
			w.acked.Add(1)
			if gap := now - w.lastAck.Swap(now); gap > w.maxGap.Load() {
				w.maxGap.Store(gap) // only writers race here, and a close second is as good
			}
			continue
		}
		w.unacked.Add(1)
		if connLost(err) {
			// Its node is gone or restarting: go on through the next one.
			wr.cur = (wr.cur + 1) % len(wr.clients)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// stop ends the writers after their current write and closes the clients.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
	for _, wr := range w.writers {
		for _, c := range wr.clients {
			c.Close()
		}
	}
}

func key(writer int, seq uint32) string { return fmt.Sprintf("demo:w%d:%06d", writer, seq) }
func value(seq uint32) string           { return fmt.Sprintf("v%d", seq) }

// verdict is what reading back the writes found.
type verdict struct {
	Acked   int               // writes acknowledged to the client
	Unacked map[string]int    // writes not acknowledged, by kind
	Sample  map[string]string // an error message of each kind
	// Lost counts acknowledged writes missing or wrong when read through
	// replicar (Lost) and on each store directly (LostOnStore).
	Lost        int
	LostOnStore []int
	// Landed counts unacknowledged writes found anyway: executed, but the
	// client was not told.
	Landed int
}

// verify reads every written key back through via (a node's client port)
// and directly from each store, and compares it with what the writers were
// told.
func (w *workload) verify(ctx context.Context, via string, stores []string) (verdict, error) {
	v := verdict{Unacked: map[string]int{}, Sample: map[string]string{}, LostOnStore: make([]int, len(stores))}
	var ackedKeys, ackedVals, unackedKeys []string
	for _, wr := range w.writers {
		for _, seq := range wr.acked {
			ackedKeys = append(ackedKeys, key(wr.id, seq))
			ackedVals = append(ackedVals, value(seq))
		}
		for seq, kind := range wr.unacked {
			unackedKeys = append(unackedKeys, key(wr.id, seq))
			v.Unacked[kind]++
		}
		for kind, msg := range wr.sample {
			if _, ok := v.Sample[kind]; !ok {
				v.Sample[kind] = msg
			}
		}
	}
	v.Acked = len(ackedKeys)
	missing := func(addr string, keys, want []string) (int, error) {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, ReadTimeout: 10 * time.Second})
		defer c.Close()
		n := 0
		for start := 0; start < len(keys); start += 500 {
			end := min(start+500, len(keys))
			got, err := c.MGet(ctx, keys[start:end]...).Result()
			if err != nil {
				return 0, fmt.Errorf("read back from %s: %w", addr, err)
			}
			for i, g := range got {
				s, ok := g.(string)
				if want == nil {
					if ok {
						n++ // counts the keys present
					}
				} else if !ok || s != want[start+i] {
					n++
				}
			}
		}
		return n, nil
	}
	var err error
	if v.Lost, err = missing(via, ackedKeys, ackedVals); err != nil {
		return v, err
	}
	for i, s := range stores {
		if v.LostOnStore[i], err = missing(s, ackedKeys, ackedVals); err != nil {
			return v, err
		}
	}
	if v.Landed, err = missing(via, unackedKeys, nil); err != nil {
		return v, err
	}
	return v, nil
}
