package election

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// renewalObserver watches the leader key for the whole life of an elector
// and remembers, for each removal of the key it sees (an expiry marker or
// a delete), when the last renewal before it arrived here.
//
// That is what lets a candidate start serving as soon as it wins instead of
// one more TTL later. A holder's fencing deadline is the send time of its
// last successful renewal plus TTL minus the fence margin, on its own
// monotonic clock. Every successful renewal is a put on the key that comes
// before the removal in the stream, and it arrives here after it was sent.
// So, with clock rates that differ by less than the margin over one TTL,
// the old holder is fenced by the time of that arrival plus TTL, measured
// on this node's monotonic clock alone: no NATS server clock is trusted.
//
// A candidate that did not see the renewal (it started after it, or its
// watch began with the removal already there) knows nothing and waits one
// TTL after its own Create, as before.
type renewalObserver struct {
	mu sync.Mutex
	// seen is the highest revision of the leader key delivered so far.
	seen uint64
	// putAt is when the last put (a Create or a renewal) arrived, on the
	// elector's clock; zero until one has.
	putAt time.Duration
	// removals maps the revision of a delete or expiry marker to the
	// arrival of the last put before it. Only the newest few are kept: a
	// campaign asks about the removal it has just read.
	removals map[uint64]time.Duration
	order    []uint64
	// changed is closed and replaced whenever seen grows.
	changed chan struct{}
}

// maxRemovals bounds renewalObserver.removals.
const maxRemovals = 8

func newRenewalObserver() *renewalObserver {
	return &renewalObserver{removals: map[uint64]time.Duration{}, changed: make(chan struct{})}
}

// observe records one entry of the leader key, arrived at on the
// elector's clock.
func (o *renewalObserver) observe(rev uint64, op jetstream.KeyValueOp, at time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if rev <= o.seen {
		return
	}
	o.seen = rev
	if op == jetstream.KeyValuePut {
		o.putAt = at
	} else if o.putAt > 0 {
		o.removals[rev] = o.putAt
		o.order = append(o.order, rev)
		if len(o.order) > maxRemovals {
			delete(o.removals, o.order[0])
			o.order = o.order[1:]
		}
		// A later put starts a new lease; until one arrives, a second
		// removal (an expired delete) has no renewal before it.
		o.putAt = 0
	}
	close(o.changed)
	o.changed = make(chan struct{})
}

// lastRenewalBefore returns when the last put before the removal at rev
// arrived, waiting up to wait for the watch to deliver rev. ok is false
// when this node did not see that put.
func (o *renewalObserver) lastRenewalBefore(ctx context.Context, rev uint64, wait time.Duration) (at time.Duration, ok bool) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		o.mu.Lock()
		seen, changed := o.seen, o.changed
		at, ok = o.removals[rev]
		o.mu.Unlock()
		if ok || seen >= rev {
			return at, ok
		}
		select {
		case <-changed:
		case <-timer.C:
			return 0, false
		case <-ctx.Done():
			return 0, false
		}
	}
}

// observeLeader feeds o from a watch of the leader key until ctx ends,
// rewatching after the watch ends early. A rewatch starts with the key's
// current entry, so nothing is assumed about what was missed in between:
// the first entry after a gap is recorded as a put arriving now (later
// than it was sent, which only delays serving) or a removal with no put
// before it.
func (e *NATSElector) observeLeader(ctx context.Context, o *renewalObserver) {
	for ctx.Err() == nil {
		w, err := e.kv.Watch(ctx, leaderKey)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(e.opts.TTL / 4):
			}
			continue
		}
		o.mu.Lock()
		o.putAt = 0
		o.mu.Unlock()
		for entry := range w.Updates() {
			if entry == nil {
				continue
			}
			o.observe(entry.Revision(), entry.Operation(), e.since())
		}
		_ = w.Stop()
	}
}
