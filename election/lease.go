package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// natsLease is a Leadership won from a NATSElector. Times are kept as
// durations since the elector's base, read from the monotonic clock.
type natsLease struct {
	e       *NATSElector
	info    LeaderInfo // Epoch set
	value   []byte     // info as JSON, written by every renewal
	serveAt time.Duration
	log     zerolog.Logger

	// deadline is the fence, in nanoseconds since e.base; 0 once the
	// lease is over. Valid reads it without a lock.
	deadline atomic.Int64

	mu   sync.Mutex
	rev  uint64 // revision of the last write known to be ours
	err  error
	lost chan struct{}

	stopOnce sync.Once
	stop     chan struct{} // closed to end the renew loop
	done     chan struct{} // closed when the renew loop has ended
	// pause is a test hook: the renew loop stops or resumes renewing (as
	// if the process were paused) and closes the request's ack.
	pause chan pauseRequest
	// adoptions counts renewals found stored after their answer was lost.
	adoptions atomic.Int64
}

type pauseRequest struct {
	paused bool
	ack    chan struct{}
}

var _ Leadership = (*natsLease)(nil)

func (l *natsLease) Epoch() uint64 { return l.info.Epoch }

func (l *natsLease) ServeAt() time.Time { return l.e.base.Add(l.serveAt) }

func (l *natsLease) Deadline() time.Time {
	d := l.deadline.Load()
	if d == 0 {
		return time.Time{}
	}
	return l.e.base.Add(time.Duration(d))
}

func (l *natsLease) Valid() bool {
	d := l.deadline.Load()
	return d != 0 && l.e.since() < time.Duration(d)
}

func (l *natsLease) Lost() <-chan struct{} { return l.lost }

func (l *natsLease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// lose ends the lease: it fences at once, records why and closes Lost. It
// reports whether this call ended it.
func (l *natsLease) lose(err error) bool {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return false
	}
	l.deadline.Store(0)
	l.err = err
	close(l.lost)
	l.mu.Unlock()
	l.e.forget(l)
	if errors.Is(err, ErrReleased) {
		l.log.Info().Msg("lease released")
	} else {
		l.log.Warn().Err(err).Msg("lease lost")
	}
	return true
}

// renewed records a successful write of ours at rev, sent at sent: the
// server stored it after sent, so it expires no earlier than sent + TTL.
func (l *natsLease) renewed(sent time.Duration, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev > l.rev {
		l.rev = rev
	}
	if l.err != nil {
		return
	}
	ttl := l.e.opts.TTL
	if d := int64(sent + ttl - FenceMargin(ttl)); d > l.deadline.Load() {
		l.deadline.Store(d)
	}
}

func (l *natsLease) revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// adopt takes rev as ours without moving the deadline: a write whose
// answer was lost was stored after all, but when is not known.
func (l *natsLease) adopt(rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev > l.rev {
		l.rev = rev
	}
}

func (l *natsLease) stopRenewing() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

func (l *natsLease) untilDeadline() time.Duration {
	d := l.deadline.Load()
	if d == 0 {
		return 0
	}
	return max(time.Duration(d)-l.e.since(), 0)
}

// run renews every TTL/4, and sooner after a failure, until the lease is
// lost or stop is closed. A renewal is bounded by the current deadline.
func (l *natsLease) run() {
	defer close(l.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	ttl := l.e.opts.TTL
	interval := RenewInterval(ttl)
	retry := max(ttl/20, 20*time.Millisecond)
	next := time.NewTimer(interval)
	defer next.Stop()
	fence := time.NewTimer(l.untilDeadline())
	defer fence.Stop()
	paused := false
	for {
		select {
		case <-l.stop:
			return
		case req := <-l.pause:
			paused = req.paused
			if !paused {
				next.Reset(0)
			}
			close(req.ack)
		case <-fence.C:
			if l.Valid() {
				fence.Reset(l.untilDeadline())
				continue
			}
			l.lose(fmt.Errorf("epoch %d: %w: no renewal succeeded before the fence deadline", l.info.Epoch, ErrLeaseExpired))
			return
		case <-next.C:
			if paused {
				continue
			}
			ok, end := l.renew(ctx)
			if end {
				return
			}
			if ok {
				next.Reset(interval)
				fence.Reset(l.untilDeadline())
			} else {
				next.Reset(retry)
			}
		}
	}
}

// renew makes one Update at the last known revision. It reports whether
// it succeeded, and whether the loop should end (lease lost or stopping).
func (l *natsLease) renew(ctx context.Context) (ok, end bool) {
	dl := l.Deadline()
	if dl.IsZero() {
		return false, true
	}
	rev := l.revision()
	// A request sent just before the connection broke is never
	// answered: an attempt ends when the client sees the connection drop
	// (at once for a reset, within two pings, 2×TTL/3, for a silent
	// partition), and is retried then; otherwise a slow answer is worth
	// waiting for until the deadline. A retry after a stored but
	// unanswered attempt conflicts and adopts it (below).
	dctx, dcancel := l.e.untilDisconnect(ctx)
	defer dcancel()
	rctx, cancel := context.WithDeadline(dctx, dl)
	sent := l.e.since()
	newRev, err := l.e.kv.Update(rctx, leaderKey, l.value, rev)
	cancel()
	if err == nil {
		l.renewed(sent, newRev)
		l.log.Trace().Uint64("revision", newRev).Msg("renewed")
		return true, false
	}
	if ctx.Err() != nil {
		return false, true
	}
	if !isConflict(err) {
		l.log.Warn().Err(err).Uint64("revision", rev).Msg("renewal failed, retrying")
		return false, false
	}

	// The key is not at rev. It is still ours if an earlier renewal was
	// stored but its answer lost: the latest message carries our nonce.
	rctx, cancel = context.WithDeadline(ctx, dl)
	cur, rerr := l.e.lastMsg(rctx, leaderKey)
	cancel()
	if rerr != nil {
		l.log.Warn().Err(rerr).Msg("renewal conflict, and reading the leader key failed; retrying")
		return false, false
	}
	if cur != nil && cur.Sequence <= rev {
		// A lagging replica answered the read; ask again.
		return false, false
	}
	var why string
	switch {
	case cur == nil:
		why = "the leader key expired"
	case msgOp(cur.Header) != jetstream.KeyValuePut:
		why = fmt.Sprintf("the leader key was deleted or expired at revision %d", cur.Sequence)
	default:
		li, derr := decodeLeader(cur.Data, cur.Sequence, cur.Time)
		if derr == nil && li.Nonce == l.info.Nonce && li.Epoch == l.info.Epoch {
			l.adopt(cur.Sequence)
			l.adoptions.Add(1)
			l.log.Info().Uint64("revision", cur.Sequence).Msg("renewal stored although its answer was lost; continuing from it")
			return false, false
		}
		why = fmt.Sprintf("revision %d is %s's (epoch %d)", cur.Sequence, li.Node, li.Epoch)
	}
	l.lose(fmt.Errorf("epoch %d: renew at revision %d: %w: %s", l.info.Epoch, rev, ErrLeaseLost, why))
	return false, true
}

// Release fences, stops renewing and deletes the leader key by CAS at the
// lease's last revision, marking the delete as a release so that the next
// leader serves without waiting out a TTL. Call it only once the node has
// stopped taking writes.
func (l *natsLease) Release(ctx context.Context) error {
	epoch := l.info.Epoch
	if !l.lose(fmt.Errorf("epoch %d: %w", epoch, ErrReleased)) {
		return fmt.Errorf("release epoch %d: %w", epoch, l.Err())
	}
	l.stopRenewing() // a renewal in flight may still land; the CAS below sees it
	rev := l.revision()
	for range 5 {
		_, err := l.e.js.PublishMsg(ctx, l.e.releaseMsg(epoch), jetstream.WithExpectLastSequencePerSubject(rev))
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("release epoch %d: %w", epoch, err)
		}
		cur, rerr := l.e.lastMsg(ctx, leaderKey)
		if rerr != nil {
			return fmt.Errorf("release epoch %d: %w", epoch, rerr)
		}
		if cur != nil && cur.Sequence <= rev {
			continue // a lagging replica answered
		}
		if cur != nil && msgOp(cur.Header) == jetstream.KeyValuePut {
			if li, derr := decodeLeader(cur.Data, cur.Sequence, cur.Time); derr == nil && li.Nonce == l.info.Nonce {
				rev = cur.Sequence // our renewal landed after all
				continue
			}
		}
		return fmt.Errorf("release epoch %d: %w", epoch, ErrLeaseLost)
	}
	return fmt.Errorf("release epoch %d: leader key keeps moving", epoch)
}
