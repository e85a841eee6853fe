package ackpolicy

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNoReplicas means the ISR is too small for the policy: a write would never
// commit, so it must not be executed.
var ErrNoReplicas = errors.New("ackpolicy: not enough in-sync replicas")

// Level is the kind of acknowledgement a policy waits for.
type Level uint8

// The levels, in the order of how much they wait for.
const (
	None Level = iota + 1
	Leader
	One
	Quorum
	All
)

// String is the level's name as REPLICAR_ACK_POLICY spells it.
func (l Level) String() string {
	switch l {
	case None:
		return "none"
	case Leader:
		return "leader"
	case One:
		return "one"
	case Quorum:
		return "quorum"
	case All:
		return "all"
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

// Policy is an ack policy. Build one with the constructors or Parse.
type Policy struct {
	level     Level
	acks      int // followers needed for One
	minInsync int // ISR size needed for All, leader included
}

// NoAck commits as soon as the primary has replied (Kafka acks=0). Logging
// and streaming happen in the background.
func NoAck() Policy { return Policy{level: None} }

// LeaderAck commits once the entry is in the leader's backlog, durable as
// REPLICAR_FSYNC says (Kafka acks=1).
func LeaderAck() Policy { return Policy{level: Leader} }

// FollowerAcks commits once the leader and k in-sync followers have the entry
// (MySQL semi-sync for k=1). k below 1 is taken as 1.
func FollowerAcks(k int) Policy { return Policy{level: One, acks: max(k, 1)} }

// QuorumAcks commits once a majority of the group's nodes have the entry.
func QuorumAcks() Policy { return Policy{level: Quorum} }

// AllISRAcks commits once every ISR member has the entry, and refuses writes
// while the ISR, leader included, has fewer than minInsync members (Kafka
// acks=all with min.insync.replicas). minInsync below 1 is taken as 1.
func AllISRAcks(minInsync int) Policy { return Policy{level: All, minInsync: max(minInsync, 1)} }

// Parse builds the policy named by REPLICAR_ACK_POLICY with REPLICAR_ACKS and
// REPLICAR_MIN_INSYNC. acks only matters for "one", minInsync for "all".
func Parse(name string, acks, minInsync int) (Policy, error) {
	switch name {
	case "none":
		return NoAck(), nil
	case "leader":
		return LeaderAck(), nil
	case "one":
		return FollowerAcks(acks), nil
	case "quorum":
		return QuorumAcks(), nil
	case "all":
		return AllISRAcks(minInsync), nil
	}
	return Policy{}, fmt.Errorf("ack policy %q: want one of none, leader, one, quorum, all", name)
}

// Level is the policy's level.
func (p Policy) Level() Level { return p.level }

// Acks is the number of followers One waits for.
func (p Policy) Acks() int { return p.acks }

// MinInsync is the ISR size All requires, leader included.
func (p Policy) MinInsync() int { return p.minInsync }

// Replicated reports whether the policy waits for any follower.
func (p Policy) Replicated() bool { return p.level >= One }

// String describes the policy with its parameters.
func (p Policy) String() string {
	switch p.level {
	case One:
		return fmt.Sprintf("one(acks=%d)", p.acks)
	case All:
		return fmt.Sprintf("all(min_insync=%d)", p.minInsync)
	}
	return p.level.String()
}

// Follower is what the leader knows of one follower.
type Follower struct {
	ID string
	// Applied is the last offset the follower acknowledged as applied to
	// its store.
	Applied uint64
	// InSync is whether the follower is in the ISR the leader published.
	InSync bool
}

// State is the input of the commit maths.
type State struct {
	// GroupSize is the number of nodes in the group, the leader included.
	// Quorum counts a majority of it; a follower the leader has not heard
	// from is still a member and counts as having nothing.
	GroupSize int
	// Leader is the leader's own offset: the last entry the primary executed
	// (for NoAck) or the last entry durable in its backlog (for the others).
	// The caller passes the one its policy means.
	Leader uint64
	// Followers are the followers the leader knows of.
	Followers []Follower
}

// ISRSize counts the in-sync replicas, the leader included.
func (s State) ISRSize() int {
	n := 1
	for _, f := range s.Followers {
		if f.InSync {
			n++
		}
	}
	return n
}

// Majority is the number of nodes that make a majority of the group.
func (s State) Majority() int { return max(s.GroupSize, 1+len(s.Followers))/2 + 1 }

// Accept reports whether a new write may be executed under p. It returns an
// error wrapping ErrNoReplicas when the ISR could not commit it.
func Accept(p Policy, s State) error {
	isr := s.ISRSize()
	switch p.level {
	case One:
		if isr-1 < p.acks {
			return fmt.Errorf("%w: %d in-sync followers, policy one needs %d", ErrNoReplicas, isr-1, p.acks)
		}
	case Quorum:
		if m := s.Majority(); isr < m {
			return fmt.Errorf("%w: %d in-sync of %d nodes, quorum needs %d", ErrNoReplicas, isr, max(s.GroupSize, 1+len(s.Followers)), m)
		}
	case All:
		if isr < p.minInsync {
			return fmt.Errorf("%w: isr %d, min insync %d", ErrNoReplicas, isr, p.minInsync)
		}
	}
	return nil
}

// Commit returns the highest offset committed under p in state s. It is a
// pure function of its inputs and can go down when the inputs do (a follower
// leaves the ISR under One); Commits keeps the published value monotonic.
func Commit(p Policy, s State) uint64 {
	switch p.level {
	case None, Leader:
		return s.Leader
	case One:
		return kthHighest(s.Leader, s.Followers, p.acks, true)
	case Quorum:
		// The leader is one of the majority, so majority-1 followers.
		return kthHighest(s.Leader, s.Followers, s.Majority()-1, false)
	case All:
		if s.ISRSize() < p.minInsync {
			// Kafka's NotEnoughReplicasAfterAppend: nothing past this point
			// commits until the ISR grows back.
			return 0
		}
		c := s.Leader
		for _, f := range s.Followers {
			if f.InSync {
				c = min(c, f.Applied)
			}
		}
		return c
	}
	return 0
}

// kthHighest is the k-th highest applied offset among the followers (only
// in-sync ones if insyncOnly), capped by the leader's offset: an offset counts
// as held by k followers once k of them are at or past it. k of 0 means the
// leader alone.
func kthHighest(leader uint64, followers []Follower, k int, insyncOnly bool) uint64 {
	if k <= 0 {
		return leader
	}
	// Groups are small (3 to 7 nodes), so a stack array avoids allocating.
	var buf [16]uint64
	offs := buf[:0]
	for _, f := range followers {
		if !insyncOnly || f.InSync {
			offs = append(offs, f.Applied)
		}
	}
	if len(offs) < k {
		return 0
	}
	slices.Sort(offs)
	return min(leader, offs[len(offs)-k])
}
