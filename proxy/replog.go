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

	// pending are the entries AppendBuffered put in the memory log that
	// the WAL does not hold yet (their payloads are pendBuf[start:end]).
	// Until Flush writes them they do not count as in the leader's
	// backlog: followers are not sent them and they cannot commit, so a
	// failed write can take them back before anyone saw them.
	pending []pendingEntry
	pendBuf []byte
	// pendBase is the log's last position before the first pending entry.
	pendBase backlog.Position
	// unannounced counts the entries appended since the last Flush whose
	// append the replication layer and the waiters have not heard of.
	unannounced int
	// broken is set when a Flush failed: the entries it took back were
	// executed on the primary and their clients told so, and the log
	// refuses writes until the next term rather than reuse their offsets.
	broken error

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
	r.mu.Lock()
	r.settleLocked()
	r.mu.Unlock()
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
	st.Leader = r.flushedLocked().Offset
	return st
}

// pendingEntry is an entry appended to the memory log but not yet to the
// WAL.
type pendingEntry struct {
	epoch, offset uint64
	start, end    int
}

// flushedLocked is the position of the newest entry the WAL holds (all of
// them without a WAL): what followers may be sent and what may commit.
func (r *ReplLog) flushedLocked() backlog.Position {
	if len(r.pending) == 0 {
		return r.log.LastPosition()
	}
	return r.pendBase
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
	if r.broken != nil {
		return r.broken
	}
	return ackpolicy.Accept(r.policy, r.stateLocked())
}

// walDropEvery is how far the backlog's head must move before the WAL is
// asked to drop whole segments behind it.
const walDropEvery = 1024

// Append writes one entry under the current epoch and returns its offset.
// The entry is in the backlog (and its WAL) when Append returns.
func (r *ReplLog) Append(payload []byte) (uint64, error) {
	off, err := r.AppendBuffered(payload)
	if err != nil {
		return 0, err
	}
	return off, r.Flush()
}

// AppendBuffered appends one entry to the memory log and returns its
// offset; the WAL write, the followers' wake-up and the commit wait for
// Flush. A front end that logs many writes per round trip to its primary
// (the RESP writer) appends them all, then flushes once: one WAL write
// instead of one per entry.
func (r *ReplLog) AppendBuffered(payload []byte) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ro := r.role.Load(); ro != nil && !ro.leader {
		// A write admitted before the step-down finished executing
		// after it; the node drains its writer before following, so
		// this is reported, never silently kept.
		return 0, errFollower
	}
	if r.broken != nil {
		return 0, r.broken
	}
	if r.wal != nil && len(payload) > backlog.MaxPayload {
		// Refused now rather than by the WAL at Flush, with a batch.
		return 0, fmt.Errorf("append to wal: %d bytes: %w", len(payload), backlog.ErrEntryTooLarge)
	}
	base := r.log.LastPosition()
	off, err := r.log.Append(r.epoch, payload)
	if err != nil {
		return 0, fmt.Errorf("append to backlog: %w", err)
	}
	if r.wal != nil {
		if len(r.pending) == 0 {
			r.pendBase = base
		}
		start := len(r.pendBuf)
		r.pendBuf = append(r.pendBuf, payload...)
		r.pending = append(r.pending, pendingEntry{epoch: r.epoch, offset: off, start: start, end: len(r.pendBuf)})
	}
	r.unannounced++
	return off, nil
}

// Flush writes the entries appended since the last Flush to the WAL in one
// write, then wakes the followers and commits what the policy allows. If
// the WAL refuses them they are taken back off the memory log (no follower
// was sent them) and the log refuses writes until the next term; the
// replies waiting on the log get the error.
func (r *ReplLog) Flush() error {
	r.mu.Lock()
	if r.unannounced == 0 {
		r.mu.Unlock()
		return nil
	}
	err := r.flushLocked()
	last, st, onAppend := r.log.Last(), r.stateLocked(), r.onAppend
	r.mu.Unlock()
	if err != nil {
		r.commits.Abort(err)
		return err
	}
	if onAppend != nil {
		onAppend(last)
	}
	r.commits.Advance(ackpolicy.Commit(r.policy, st))
	return nil
}

// maxKeptPendBuf bounds the pending buffer kept between flushes.
const maxKeptPendBuf = 1 << 20

func (r *ReplLog) flushLocked() error {
	r.unannounced = 0
	if len(r.pending) == 0 {
		r.wakeStreamsLocked()
		return nil
	}
	entries := make([]backlog.Entry, len(r.pending))
	for i, p := range r.pending {
		entries[i] = backlog.Entry{Epoch: p.epoch, Offset: p.offset, Payload: r.pendBuf[p.start:p.end]}
	}
	first := r.pending[0].offset
	r.pending = r.pending[:0]
	defer func() {
		if cap(r.pendBuf) > maxKeptPendBuf {
			r.pendBuf = nil
		} else {
			r.pendBuf = r.pendBuf[:0]
		}
	}()
	if err := r.wal.Append(entries...); err != nil {
		// Keep memory and disk the same log. After a failed fsync the
		// WAL refuses every append (wal.ErrFailed) until the node
		// restarts and recovers from what is on disk: writes fail
		// loudly rather than go unlogged.
		_ = r.log.TruncateAfter(first - 1)
		r.broken = fmt.Errorf("append to wal: %w", err)
		return r.broken
	}
	if first := r.log.First(); first > r.dropped+walDropEvery {
		if err := r.wal.DropBefore(first); err == nil {
			r.dropped = first
		}
	}
	r.wakeStreamsLocked()
	return nil
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
		Epoch: r.epoch, First: r.log.First(), Last: r.flushedLocked().Offset, Committed: r.commits.Committed(),
		Bytes: r.log.Bytes(), MaxBytes: r.log.MaxBytes(), Policy: r.policy.String(),
	}
}

// Entries copies up to maxBytes of entries from offset from on.
func (r *ReplLog) Entries(from uint64, maxBytes int) ([]backlog.Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, err := r.readFlushedLocked(from, maxBytes, nil)
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
	dst, err := r.readFlushedLocked(from, maxBytes, dst)
	for i := start; i < len(dst); i++ {
		dst[i].Payload = append([]byte(nil), dst[i].Payload...)
	}
	return dst, err
}

// readFlushedLocked reads from the memory log, leaving out the entries the
// WAL does not hold yet.
func (r *ReplLog) readFlushedLocked(from uint64, maxBytes int, dst []backlog.Entry) ([]backlog.Entry, error) {
	start := len(dst)
	dst, err := r.log.Read(from, maxBytes, dst)
	if len(r.pending) > 0 {
		limit := r.pending[0].offset
		for i := start; i < len(dst); i++ {
			if dst[i].Offset >= limit {
				clear(dst[i:])
				dst = dst[:i]
				break
			}
		}
	}
	return dst, err
}

// Last is the position of the newest entry the backlog holds (a buffered
// append counts once flushed).
func (r *ReplLog) Last() backlog.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushedLocked()
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
