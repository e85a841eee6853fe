package mysql

import (
	"context"
	"fmt"
)

// Log is what the front end needs from the node core: admission of writes
// and reads, and the ack policy. The proxy package implements it. In row
// mode the front end appends nothing itself: the binlog capture does, and
// GTIDOffsets tells the front end where a client's transaction landed.
//
// Errors are the core's sentinels (ackpolicy.ErrNoReplicas,
// ackpolicy.ErrNotLeader, ackpolicy.ErrAckTimeout …); this package turns
// them into MySQL errors: 1290 for TRYAGAIN and NOREPLICAS, 1105 for
// UNCOMMITTED.
type Log interface {
	// Admit says whether a write may be executed now. It is called before
	// execution, so a refusal means the write was not executed.
	Admit() error
	// AdmitRead says whether this node may serve a read that needs the
	// leader (READ_POLICY=leader): a leader past its lease deadline is
	// fenced for reads as for writes.
	AdmitRead() error
	// WaitCommitted blocks until offset is committed under the ack policy,
	// ctx ends, or the policy gives up (ackpolicy.ErrAckTimeout after the
	// node's ack timeout).
	WaitCommitted(ctx context.Context, offset uint64) error
	// WaitReadable blocks until every entry logged so far is committed, or
	// the policy gives up: a read then shows nothing the log holds that the
	// group could lose.
	WaitReadable(ctx context.Context) error
	// Status reports the node's replication state for SHOW REPLICAR STATUS.
	Status() Status
}

// GTIDOffsets maps a committed transaction to its backlog entry. The row
// capture implements it: OffsetOf blocks until the transaction with that
// GTID (as the primary reports it: "domain-server-seq" on MariaDB,
// "uuid:n" on MySQL) has been appended to the backlog, and returns the
// entry's offset. It returns an error when ctx ends first or when the
// capture knows the GTID will never be logged (it stopped, say).
type GTIDOffsets interface {
	OffsetOf(ctx context.Context, gtid string) (uint64, error)
}

// Status is the part of a node's state SHOW REPLICAR STATUS shows. Field
// names follow the /status contract and RESP's REPLICAR INFO.
type Status struct {
	Node         string
	Group        string
	Protocol     string
	Role         string
	State        string
	Epoch        uint64
	Leader       string
	LeaderAddr   string
	Offset       uint64
	Committed    uint64
	Applied      uint64
	BacklogFirst uint64
	BacklogBytes int64
	BacklogLimit int64
	ISR          []string
	AckPolicy    string
	// Followers is filled in on the leader only.
	Followers []FollowerStatus
}

// FollowerStatus is one follower as the leader sees it.
type FollowerStatus struct {
	Node       string
	Acked      uint64
	LagEntries uint64
	LagSeconds float64
	InSync     bool
	Connected  bool
}

// RouteMode says where client sessions go.
type RouteMode uint8

const (
	// RouteLocal: this node leads; sessions run on its own backend, writes
	// are admitted here and COMMITs are held until their entry commits.
	RouteLocal RouteMode = iota
	// RouteForward: another node leads; each session is proxied whole to
	// Route.Leader, the leader's client port, which admits and holds.
	RouteForward
	// RouteNone: no leader is known (an election is on). A statement waits
	// up to Config.FailoverWait for a route, then gets TRYAGAIN (1290): it
	// was not executed.
	RouteNone
)

func (m RouteMode) String() string {
	switch m {
	case RouteLocal:
		return "local"
	case RouteForward:
		return "forward"
	case RouteNone:
		return "none"
	}
	return fmt.Sprintf("RouteMode(%d)", m)
}

// Route is where sessions go.
type Route struct {
	Mode RouteMode
	// Leader is the leader's client address (its REPLICAR_LISTEN) when Mode
	// is RouteForward.
	Leader string
}

// target is the address a session's statements go to under the route, ""
// for none.
func (r Route) target() string {
	switch r.Mode {
	case RouteLocal:
		return localTarget
	case RouteForward:
		return r.Leader
	}
	return ""
}

// localTarget names the node's own backend among route targets; a leader
// address is host:port and never takes this form.
const localTarget = "(local backend)"
