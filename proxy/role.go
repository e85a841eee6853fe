package proxy

import (
	"fmt"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
)

// Lease is what the election hands a leader: it may acknowledge only while
// the lease is valid. election.Leadership implements it.
type Lease interface {
	// Valid says whether the lease's fencing deadline is still ahead.
	Valid() bool
}

// ErrFenced means the leader's lease may have expired: it neither takes
// nor acknowledges writes until it wins again. It matches
// ackpolicy.ErrNotLeader, so clients see TRYAGAIN before execution and
// UNCOMMITTED after.
var ErrFenced = fmt.Errorf("%w: lease deadline passed (fenced)", ackpolicy.ErrNotLeader)

// errSteppingDown is a write or acknowledgement during a step-down.
var errSteppingDown = fmt.Errorf("%w: stepping down", ackpolicy.ErrNotLeader)

// errFollower is a write reaching a node that follows.
var errFollower = fmt.Errorf("%w: this node follows", ackpolicy.ErrNotLeader)

// role is how the ReplLog may be used now. A nil role (the default) is a
// static leader with no lease, as a node alone or in tests runs.
type role struct {
	leader bool
	// stepping is a leader on its way out: it takes and acknowledges
	// nothing new, but still logs the writes already executing, so that
	// its store and its backlog agree when it starts to follow.
	stepping bool
	lease    Lease
}

func (r *ReplLog) checkRole() error {
	ro := r.role.Load()
	switch {
	case ro == nil:
		return nil
	case !ro.leader:
		return errFollower
	case ro.stepping:
		return errSteppingDown
	case ro.lease != nil && !ro.lease.Valid():
		r.fencedTotal.Add(1)
		return ErrFenced
	}
	return nil
}

// AdmitRead fences reads that need the leader, as writes are.
func (r *ReplLog) AdmitRead() error { return r.checkRole() }

// IsLeader says whether the log takes writes now (a static leader, or an
// elected one whatever its lease).
func (r *ReplLog) IsLeader() bool {
	ro := r.role.Load()
	return ro == nil || ro.leader
}

// Fenced counts writes and reads refused because the lease had lapsed.
func (r *ReplLog) Fenced() uint64 { return r.fencedTotal.Load() }

// BecomeLeader starts a term: entries from now on carry epoch, which must
// be above every epoch in the log, and are acknowledged only while lease is
// valid. Entries before it count as committed for the new term's waiters:
// the election made sure this node holds every committed one.
func (r *ReplLog) BecomeLeader(epoch uint64, lease Lease) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last := r.log.LastEpoch(); epoch <= last || epoch < r.epoch {
		return fmt.Errorf("become leader at epoch %d: the log already holds epoch %d", epoch, max(last, r.epoch))
	}
	r.settleLocked()
	r.epoch = epoch
	r.followers = nil
	// A WAL write that failed last term took its entries back and
	// stopped that term; a new one may try again.
	r.broken = nil
	r.commits.Reset(r.log.Last())
	r.role.Store(&role{leader: true, lease: lease})
	return nil
}

// BeginStepDown stops taking and acknowledging writes at once, while the
// writes already executing are still logged.
func (r *ReplLog) BeginStepDown() {
	ro := r.role.Load()
	next := &role{leader: true, stepping: true}
	if ro != nil {
		next.lease = ro.lease
	}
	r.role.Store(next)
	r.commits.Abort(ackpolicy.ErrNotLeader)
}

// BecomeFollower ends a term: writes are refused from now on and every
// reply still waiting for its commit gets ErrNotLeader (UNCOMMITTED: the
// new leader may or may not hold it).
func (r *ReplLog) BecomeFollower() {
	r.role.Store(&role{leader: false})
	r.commits.Abort(ackpolicy.ErrNotLeader)
	r.mu.Lock()
	r.settleLocked()
	r.followers = nil
	r.mu.Unlock()
}

// settleLocked writes out buffered appends before the log changes hands
// (a role change, a reset, a close): the writes were executed on the
// primary, so the log must keep them. A failure takes them back and
// leaves the log broken, as Flush does.
func (r *ReplLog) settleLocked() {
	if r.unannounced > 0 {
		_ = r.flushLocked()
	}
}

// AppendReplicated adds entries a follower received from its leader and
// applied, keeping its own copy of the backlog so that it can serve
// followers once it leads. Entries it already holds are skipped; a gap
// (after a full resync) restarts the log just before the first entry.
func (r *ReplLog) AppendReplicated(entries []backlog.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settleLocked()
	// The new entries go to the WAL in one write per run: one per batch
	// received, unless a gap restarts the log part-way.
	var run []backlog.Entry
	writeRun := func() error {
		if r.wal == nil || len(run) == 0 {
			run = run[:0]
			return nil
		}
		if err := r.wal.Append(run...); err != nil {
			_ = r.log.TruncateAfter(run[0].Offset - 1)
			return fmt.Errorf("append replicated entries to wal: %w", err)
		}
		run = run[:0]
		return nil
	}
	for _, e := range entries {
		last := r.log.Last()
		if e.Offset <= last {
			continue
		}
		if e.Offset != last+1 {
			if err := writeRun(); err != nil {
				return err
			}
			if err := r.resetLocked(backlog.Position{Epoch: e.Epoch, Offset: e.Offset - 1}); err != nil {
				return err
			}
		}
		if err := r.log.AppendEntry(e); err != nil {
			if werr := writeRun(); werr != nil {
				return werr
			}
			return fmt.Errorf("append replicated entry: %w", err)
		}
		run = append(run, e)
		r.epoch = max(r.epoch, e.Epoch)
	}
	if err := writeRun(); err != nil {
		return err
	}
	if len(entries) > 0 {
		r.wakeStreamsLocked()
	}
	return nil
}

// ResetTo empties the backlog and places it at pos, as a full resync leaves
// the store there.
func (r *ReplLog) ResetTo(pos backlog.Position) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resetLocked(pos)
}

func (r *ReplLog) resetLocked(pos backlog.Position) error {
	r.settleLocked()
	r.log.Reset(pos)
	if r.wal != nil {
		if err := r.wal.Reset(pos); err != nil {
			return fmt.Errorf("reset wal to %v: %w", pos, err)
		}
		r.dropped = pos.Offset
	}
	r.epoch = max(r.epoch, pos.Epoch)
	return nil
}
