package proxy

import (
	"context"
	"net"
	"sync"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/fanout"
)

// Store is a node's protocol and backend as the group drives them: the
// front end that takes clients, the applier that writes the leader's
// entries into the node's own backend, the mark a leading store carries,
// the snapshot copies of a full resync, and, where the front end does not
// log writes itself, the capture that logs what the leader's backend
// commits. Election, roles, ISR, handover and resync are the group's
// (group.go) and the same for every protocol; each protocol implements
// Store once (store_redis.go, store_mysql.go).
//
// The group calls the leading hooks in this order: MarkLeading, then
// ReplLog.BecomeLeader, then StartCapture; on the way out the front end is
// drained (SetRoute to RouteNone, WaitWritesIdle), then StopCapture, then
// ReplLog.BecomeFollower, then SteppedDown with the backlog's last position.
type Store interface {
	// SetRoute tells the front end where client commands go.
	SetRoute(r Route)
	// WaitWritesIdle waits until no admitted write is executing or
	// waiting for its commit, or ctx ends.
	WaitWritesIdle(ctx context.Context) error
	// BackendUp says whether the backend works, as the leader's health
	// check and the member record see it.
	BackendUp() bool
	// Ping checks the backend on a connection of its own.
	Ping(ctx context.Context) error

	// Applier writes the leader's entries into the backend exactly once;
	// its position lives in the backend, written with the data.
	Applier() StoreApplier

	// Recover runs once at start, before the node takes part in the
	// group, with the backlog's last position as the WAL left it. It
	// waits for the backend (an unreachable one is retried, a
	// misconfigured one is an error naming the setting), and reports
	// whether the store was left leading by a crash with writes the
	// backlog may lack: such a store must full-resync before it follows.
	Recover(ctx context.Context, last backlog.Position) (needFull bool, err error)
	// MarkLeading marks the store as leading in epoch, before the node
	// takes writes, so that a crash while leading is known at restart.
	MarkLeading(ctx context.Context, epoch uint64) error
	// StartCapture starts logging what the backend commits into the
	// backlog, for a protocol whose front end does not (nil channel when
	// there is nothing to start). The channel receives the capture's
	// error if it stops on its own: the leader then steps down.
	StartCapture(ctx context.Context) (<-chan error, error)
	// StopCapture, once the front end is drained, waits until everything
	// the backend committed is in the backlog, then stops the capture. An
	// error means the backlog may lack some of the store's writes.
	StopCapture(ctx context.Context) error
	// SteppedDown records that the store holds exactly the backlog up to
	// last, and clears the leading mark.
	SteppedDown(ctx context.Context, last backlog.Position) error

	// LeaderSnapshot copies this leader's store into target (another
	// node's backend) for that node's full resync, with writes paused as
	// briefly as the protocol allows, and returns the position the copy
	// stands at.
	LeaderSnapshot(ctx context.Context, node, target string) (backlog.Position, error)
	// FollowerSnapshot copies this follower's store into target while its
	// applier is paused at pos. resume lets the applier go on; the store
	// may call it as soon as the copy no longer needs the pause (the
	// caller makes sure it is called in the end).
	FollowerSnapshot(ctx context.Context, node, target string, pos backlog.Position, resume func()) error

	// Close releases the store's connections and stops any capture.
	Close() error
}

// StoreApplier applies a leader's entries to a follower's store
// (fanout.Applier) and records a position without applying anything (after
// a full resync, or when a leader steps down).
type StoreApplier interface {
	fanout.Applier
	SetPosition(ctx context.Context, pos backlog.Position) error
	Close() error
}

// RouteMode says where a node's front end sends client commands.
type RouteMode uint8

const (
	// RouteNone: no leader is known (an election); commands wait up to
	// FAILOVER_WAIT, then get TRYAGAIN.
	RouteNone RouteMode = iota
	// RouteLocal: this node leads; commands run on its own backend.
	RouteLocal
	// RouteForward: another node leads; commands go to Route.Leader.
	RouteForward
)

// Route is where a node's front end sends client commands.
type Route struct {
	Mode RouteMode
	// Leader is the leader's client address when Mode is RouteForward.
	Leader string
	// LocalReads lets a forwarding node serve reads from its own store
	// (READ_POLICY=local, or bounded while the lag allows). A front end
	// that forwards whole sessions (MySQL) ignores it.
	LocalReads bool
}

// frontStats are a front end's counters in the form /metrics exports.
type frontStats struct {
	Commands, Connections, Rejected            int64
	WritesLogged, WritesRefused, WritesUnknown int64
	Uncommitted, ProtocolErrors                int64
}

// nodeStore is a Store with the parts the node's lifecycle needs besides
// the group: its client port and its counters.
type nodeStore interface {
	Store
	// listen opens the client port.
	listen() (net.Listener, error)
	// serve serves clients on ln until ctx ends.
	serve(ctx context.Context, ln net.Listener) error
	// stats are the front end's counters.
	stats() frontStats
	// attach lets the front end's status report the group's view.
	attach(g *Group)
}

// resumeOnce wraps unlock so that it runs once however often it is
// called: a snapshot source's pause ends either when the copy says it may
// or when the copy returns.
func resumeOnce(unlock func()) func() {
	var once sync.Once
	return func() { once.Do(unlock) }
}
