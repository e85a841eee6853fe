package backlog

import "errors"

// Sentinel errors. Callers compare with errors.Is; the package wraps them with
// the offsets involved.
var (
	// ErrOutOfRetention means the requested offset is older than the oldest
	// retained entry. A follower that needs it must full-resync.
	ErrOutOfRetention = errors.New("backlog: offset out of retention")

	// ErrFutureOffset means the requested offset is past the next offset the
	// log would assign.
	ErrFutureOffset = errors.New("backlog: offset beyond the end of the log")

	// ErrOffsetGap means an appended entry's offset is not the log's next one.
	ErrOffsetGap = errors.New("backlog: offset is not the next in sequence")

	// ErrEpochRegression means an appended entry's epoch is lower than the
	// epoch of the entry before it. It is how a stale leader's entries are
	// refused.
	ErrEpochRegression = errors.New("backlog: epoch lower than the log's last epoch")

	// ErrEntryTooLarge means a payload exceeds MaxPayload.
	ErrEntryTooLarge = errors.New("backlog: entry payload too large")

	// ErrDiverged means a follower holds entries that the leader's history
	// does not have. Its store must be rebuilt from a snapshot.
	ErrDiverged = errors.New("backlog: follower history diverged from the leader's")

	// ErrHistoryTruncated means the follower's position predates the oldest
	// epoch the leader still remembers, so the leader cannot prove the two
	// histories agree.
	ErrHistoryTruncated = errors.New("backlog: epoch history no longer covers the follower's position")

	// ErrStaleLeader means a follower has seen a higher epoch than this log's
	// newest. The log belongs to a deposed leader.
	ErrStaleLeader = errors.New("backlog: follower has seen a newer epoch than this leader")

	// ErrCorruptRecord means bytes handed to DecodeRecord are not a whole,
	// well-formed record.
	ErrCorruptRecord = errors.New("backlog: corrupt record")

	// ErrShortRecord means the buffer ends before the record does; more bytes
	// may complete it.
	ErrShortRecord = errors.New("backlog: short record")
)
