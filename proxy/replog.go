package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/backlog/wal"
)

// ReplLog is a node's replication log and ack state: the backlog in memory,
// its WAL on disk when a data dir is set, the ack policy and the committed
// offset. The protocols append to it in execution order and park replies on
// it until they commit. It is safe for concurrent use.
type ReplLog struct {
	mu      sync.Mutex
	log     *backlog.Log
	wal     *wal.WAL
	epoch   uint64
	dropped uint64 // WAL segments before this offset have been dropped

	policy     ackpolicy.Policy
	groupSize  int
	commits    *ackpolicy.Commits
	ackTimeout time.Duration

	// appended is closed by the next append, to wake follower streams;
	// watched says a stream holds it, so that an append with nobody
	// waiting does not pay for a new channel.
	appended chan struct{}
	watched  bool
	// followers is the followers' progress and the confirmed ISR, as the
	// replication layer last reported it; nil while the node has none.
	// It is a copy, not a callback, so that no other lock is ever taken
	// under mu.
	followers *ackpolicy.State
	// onAppend tells the replication layer an entry was appended; it is
	// called without mu held.
	onAppend func(offset uint64)

	// role says whether the log takes writes, and under which lease
	// (role.go); read without mu on every command.
	role        atomic.Pointer[role]
	fencedTotal atomic.Uint64
	// ackLatency times the replies held for the ack policy
	// (replicar_ack_latency_seconds, metrics.go).
	ackLatency prometheus.Histogram
}

// ReplLogOptions configures OpenReplLog.
type ReplLogOptions struct {
	Policy       ackpolicy.Policy
	GroupSize    int
	AckTimeout   time.Duration
	BacklogBytes int64
	// DataDir holds the WAL; empty keeps the backlog in memory only.
	DataDir string
	Fsync   wal.SyncPolicy
	// Epoch is the epoch new entries are written under when the WAL holds
	// none newer (a static leader; the election supplies it later).
	Epoch uint64
}

// OpenReplLog opens the WAL, if any, and rebuilds the backlog from it.
func OpenReplLog(ctx context.Context, opts ReplLogOptions) (*ReplLog, wal.Recovery, error) {
	r := &ReplLog{
		log:        backlog.NewLog(backlog.Options{MaxBytes: opts.BacklogBytes}),
		epoch:      max(opts.Epoch, 1),
		policy:     opts.Policy,
		groupSize:  max(opts.GroupSize, 1),
		ackTimeout: opts.AckTimeout,
		appended:   make(chan struct{}),
		ackLatency: newAckLatency(opts.Policy),
	}
	var rec wal.Recovery
	if opts.DataDir != "" {
		w, recovery, err := wal.Open(ctx, wal.Options{Dir: opts.DataDir, Sync: opts.Fsync})
		if err != nil {
			return nil, rec, fmt.Errorf("open wal: %w", err)
		}
		rec = recovery
		r.wal = w
		if base := w.Base(); base.Offset > 0 {
			// The WAL starts after a snapshot or after retention dropped
			// its head: the backlog starts there too.
			r.log.Reset(base)
		}
		err = w.Replay(ctx, w.FirstOffset(), func(e backlog.Entry) error { return r.log.AppendEntry(e) })
		if err != nil {
			w.Close()
			return nil, rec, fmt.Errorf("replay wal: %w", err)
		}
		r.epoch = max(r.epoch, r.log.LastEpoch())
	}
	r.commits = ackpolicy.NewCommits(r.log.Last())
	return r, rec, nil
}

// Close syncs and closes the WAL.
func (r *ReplLog) Close() error {
	r.commits.Abort(ackpolicy.ErrNotLeader)
	if r.wal != nil {
		return r.wal.Close()
	}
	return nil
}

// stateLocked is the ack-policy input: the followers' progress and ISR as
// the replication layer reports them, with the leader's own offset taken
// from the backlog (an entry is in the leader's backlog, durable as FSYNC
// says, once Append returns).
func (r *ReplLog) stateLocked() ackpolicy.State {
	st := ackpolicy.State{GroupSize: r.groupSize}
	if r.followers != nil {
		st = *r.followers
		st.Followers = append([]ackpolicy.Follower(nil), st.Followers...)
		st.GroupSize = max(st.GroupSize, r.groupSize)
	}
	st.Leader = r.log.Last()
	return st
}

// OnAppend registers the replication layer's append hook.
func (r *ReplLog) OnAppend(fn func(offset uint64)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onAppend = fn
}

// UpdateFollowers records the followers' progress and the confirmed ISR
// after acks or an ISR change, and recomputes the committed offset,
// releasing the replies it covers.
func (r *ReplLog) UpdateFollowers(st ackpolicy.State) {
	r.mu.Lock()
	r.followers = &st
	cur := r.stateLocked()
	r.mu.Unlock()
	r.commits.Advance(ackpolicy.Commit(r.policy, cur))
}

// Admit says whether a write may execute under the ack policy now.
func (r *ReplLog) Admit() error {
	if err := r.checkRole(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return ackpolicy.Accept(r.policy, r.stateLocked())
}

// walDropEvery is how far the backlog's head must move before the WAL is
// asked to drop whole segments behind it.
const walDropEvery = 1024

// Append writes one entry under the current epoch and returns its offset.
func (r *ReplLog) Append(payload []byte) (uint64, error) {
	off, st, onAppend, err := r.appendLocked(payload)
	if err != nil {
		return 0, err
	}
	if onAppend != nil {
		onAppend(off)
	}
	r.commits.Advance(ackpolicy.Commit(r.policy, st))
	return off, nil
}

func (r *ReplLog) appendLocked(payload []byte) (uint64, ackpolicy.State, func(uint64), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ro := r.role.Load(); ro != nil && !ro.leader {
		// A write admitted before the step-down finished executing
		// after it; the node drains its writer before following, so
		// this is reported, never silently kept.
		return 0, ackpolicy.State{}, nil, errFollower
	}
	off, err := r.log.Append(r.epoch, payload)
	if err != nil {
		return 0, ackpolicy.State{}, nil, fmt.Errorf("append to backlog: %w", err)
	}
	if r.wal != nil {
		if err := r.wal.Append(backlog.Entry{Epoch: r.epoch, Offset: off, Payload: payload}); err != nil {
			// Keep memory and disk the same log. After a failed fsync the
			// WAL refuses every append (wal.ErrFailed) until the node
			// restarts and recovers from what is on disk: writes fail
			// loudly rather than go unlogged.
			_ = r.log.TruncateAfter(off - 1)
			return 0, ackpolicy.State{}, nil, fmt.Errorf("append to wal: %w", err)
		}
		if first := r.log.First(); first > r.dropped+walDropEvery {
			if err := r.wal.DropBefore(first); err == nil {
				r.dropped = first
			}
		}
	}
	r.wakeStreamsLocked()
	return off, r.stateLocked(), r.onAppend, nil
}

// WaitCommitted blocks until offset commits, for at most the ack timeout.
// Each acknowledgement's wait is observed in the ack latency histogram.
func (r *ReplLog) WaitCommitted(ctx context.Context, offset uint64) error {
	start := time.Now()
	err := r.waitCommitted(ctx, offset)
	if err == nil {
		r.ackLatency.Observe(time.Since(start).Seconds())
	}
	return err
}

func (r *ReplLog) waitCommitted(ctx context.Context, offset uint64) error {
	if err := r.commits.WaitFor(ctx, offset, r.ackTimeout); err != nil {
		return err
	}
	// The lease is checked again right before the acknowledgement: a
	// leader paused past its deadline must not acknowledge what it
	// committed before the pause.
	return r.checkRole()
}

// WaitReadable blocks until every entry logged so far is committed (and
// this node may still acknowledge), for at most the ack timeout.
func (r *ReplLog) WaitReadable(ctx context.Context) error {
	r.mu.Lock()
	last := r.log.Last()
	r.mu.Unlock()
	return r.waitCommitted(ctx, last)
}

// WaitReplicas implements WAIT. A group without followers has no replica
// to wait for: it answers 0 once ctx ends, or at once when n is 0.
func (r *ReplLog) WaitReplicas(ctx context.Context, offset uint64, n int) int {
	if n <= 0 {
		return 0
	}
	<-ctx.Done()
	return 0
}

// Committed is the highest committed offset.
func (r *ReplLog) Committed() uint64 { return r.commits.Committed() }

// Snapshot describes the log for status reports.
type Snapshot struct {
	Epoch, First, Last, Committed uint64
	Bytes, MaxBytes               int64
	Policy                        string
}

// Snapshot returns the log's positions.
func (r *ReplLog) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Snapshot{
		Epoch: r.epoch, First: r.log.First(), Last: r.log.Last(), Committed: r.commits.Committed(),
		Bytes: r.log.Bytes(), MaxBytes: r.log.MaxBytes(), Policy: r.policy.String(),
	}
}

// Entries copies up to maxBytes of entries from offset from on.
func (r *ReplLog) Entries(from uint64, maxBytes int) ([]backlog.Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, err := r.log.Read(from, maxBytes, nil)
	if err != nil {
		return nil, err
	}
	for i := range got {
		got[i].Payload = append([]byte(nil), got[i].Payload...)
	}
	return got, nil
}

// The fanout.Source methods: followers stream the backlog through them.

// Resume answers a follower's handshake from the backlog.
func (r *ReplLog) Resume(lastEpoch, nextOffset uint64) backlog.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Resume(lastEpoch, nextOffset)
}

// Read appends copies of the entries from offset from on to dst, so they
// stay valid after the lock is released.
func (r *ReplLog) Read(from uint64, maxBytes int, dst []backlog.Entry) ([]backlog.Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := len(dst)
	dst, err := r.log.Read(from, maxBytes, dst)
	for i := start; i < len(dst); i++ {
		dst[i].Payload = append([]byte(nil), dst[i].Payload...)
	}
	return dst, err
}

// Last is the position of the newest entry.
func (r *ReplLog) Last() backlog.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.LastPosition()
}

// Next is the epoch and offset the next Append gives its entry, for a
// front end that records them in the same backend transaction as the
// write (MySQL statement mode); only valid while nothing else appends.
func (r *ReplLog) Next() (epoch, offset uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch, r.log.Last() + 1
}

// Has says whether the log holds the entry at offset with epoch; an offset
// older than the log retains counts as held (the log agreed with it once).
func (r *ReplLog) Has(epoch, offset uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if offset < r.log.First() {
		return true
	}
	e, err := r.log.Entry(offset)
	return err == nil && e.Epoch == epoch
}

// Epoch is the epoch new entries are written under.
func (r *ReplLog) Epoch() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch
}

// wakeStreamsLocked closes the channel Appended handed out, if it did.
func (r *ReplLog) wakeStreamsLocked() {
	if r.watched {
		close(r.appended)
		r.appended = make(chan struct{})
		r.watched = false
	}
}

// Appended returns a channel closed by the next append.
func (r *ReplLog) Appended() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watched = true
	return r.appended
}

// ErrNotImplemented marks a configuration the node cannot run yet.
var ErrNotImplemented = errors.New("not implemented yet")
