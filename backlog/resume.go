package backlog

import "fmt"

// Verdict is the leader's answer to a follower's handshake.
type Verdict uint8

// The verdicts Resume can give.
const (
	// Continue: the follower's history is a prefix of the leader's; stream
	// from Decision.From.
	Continue Verdict = iota + 1
	// Diverged: the follower holds entries from Decision.DivergedAt on that
	// the leader does not have. A follower with a truncatable log drops them
	// and asks again (a second round finds any earlier divergence, as Kafka's
	// OffsetsForLeaderEpoch does); a store cannot drop applied writes, so it
	// full-resyncs.
	Diverged
	// FullResync: the leader cannot serve or cannot prove the follower's
	// position from its backlog. Decision.Reason says why.
	FullResync
	// Refuse: the follower has seen a newer epoch than this leader's. The
	// leader is stale and must not stream.
	Refuse
)

// String names the verdict.
func (v Verdict) String() string {
	switch v {
	case Continue:
		return "continue"
	case Diverged:
		return "diverged"
	case FullResync:
		return "fullresync"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Decision is the outcome of Log.Resume.
type Decision struct {
	Verdict Verdict
	// From is the first offset to stream (Continue only).
	From uint64
	// DivergedAt is the first follower offset that is not the leader's
	// (Diverged, and FullResync caused by divergence).
	DivergedAt uint64
	// Reason wraps ErrOutOfRetention, ErrDiverged, ErrHistoryTruncated or
	// ErrStaleLeader; nil for Continue.
	Reason error
}

// Resume answers a follower that reports the epoch of the last entry it holds
// and the next offset it wants. It uses Raft's log-matching rule: entries
// with the same epoch and offset are the same entry, and so is everything
// before them, because an epoch has one leader.
func (l *Log) Resume(lastEpoch, nextOffset uint64) Decision {
	if nextOffset == 0 {
		nextOffset = 1
	}
	last := nextOffset - 1
	if mine := l.hist.LastEpoch(); lastEpoch > mine {
		return Decision{Verdict: Refuse, Reason: fmt.Errorf("%w: follower epoch %d, leader epoch %d", ErrStaleLeader, lastEpoch, mine)}
	}
	if last == 0 {
		if l.base.Offset == 0 {
			return Decision{Verdict: Continue, From: 1}
		}
		return Decision{Verdict: FullResync, Reason: fmt.Errorf("%w: empty follower, oldest retained %d", ErrOutOfRetention, l.First())}
	}

	if last > l.Last() {
		// The follower has more than the leader: everything past the
		// leader's end of the follower's epoch is not the leader's.
		end, ok := l.hist.EndOffsetFor(lastEpoch, l.Last())
		if !ok {
			return l.historyTruncated(lastEpoch, last)
		}
		return l.diverged(min(end, l.Last()) + 1)
	}

	epoch, ok := l.hist.EpochAt(last)
	if !ok {
		return l.historyTruncated(lastEpoch, last)
	}
	if epoch != lastEpoch {
		end, ok := l.hist.EndOffsetFor(lastEpoch, l.Last())
		if !ok {
			return l.historyTruncated(lastEpoch, last)
		}
		return l.diverged(min(end+1, last))
	}
	if last < l.base.Offset {
		return Decision{Verdict: FullResync, Reason: fmt.Errorf("%w: follower at %d, oldest retained %d", ErrOutOfRetention, last, l.First())}
	}
	return Decision{Verdict: Continue, From: nextOffset}
}

func (l *Log) diverged(at uint64) Decision {
	if at <= l.base.Offset {
		// The shared prefix ends before what the backlog can replay.
		return Decision{Verdict: FullResync, DivergedAt: at,
			Reason: fmt.Errorf("%w: at offset %d, oldest retained %d", ErrDiverged, at, l.First())}
	}
	return Decision{Verdict: Diverged, DivergedAt: at, Reason: fmt.Errorf("%w: at offset %d", ErrDiverged, at)}
}

func (l *Log) historyTruncated(lastEpoch, last uint64) Decision {
	oldest := EpochStart{}
	if s := l.hist.Starts(); len(s) > 0 {
		oldest = s[0]
	}
	return Decision{Verdict: FullResync, Reason: fmt.Errorf("%w: follower at %d:%d, oldest epoch %d from %d",
		ErrHistoryTruncated, lastEpoch, last, oldest.Epoch, oldest.StartOffset)}
}
