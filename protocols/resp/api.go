package resp

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/rs/zerolog"
)

// Log is what the front end needs from the node core: admission of writes,
// the backlog, and the ack policy. The proxy package implements it.
//
// Errors are the core's sentinels (ackpolicy.ErrNoReplicas,
// ackpolicy.ErrNotLeader, ackpolicy.ErrAckTimeout …); this package turns them
// into NOREPLICAS, TRYAGAIN and UNCOMMITTED replies.
type Log interface {
	// Admit says whether a write may be executed now. It is called before
	// execution, so a refusal means the write was not executed.
	Admit() error
	// AdmitRead says whether this node may serve a read that needs the
	// leader (READ_POLICY=leader): a leader past its lease deadline is
	// fenced for reads as for writes.
	AdmitRead() error
	// AppendBuffered records one entry and returns its offset. The front
	// end calls it from a single goroutine, in the order the primary
	// executed the writes. The entry may wait in memory for Flush: it is
	// not sent to followers, and cannot commit, before.
	AppendBuffered(payload []byte) (uint64, error)
	// Flush writes out the entries appended since the last Flush (one WAL
	// write for them all) and lets them commit. The writer calls it after
	// each round trip to the primary, before any reply can be released.
	// When it fails, the entries are not in the backlog and the replies
	// waiting on them get the error.
	Flush() error
	// WaitCommitted blocks until offset is committed under the ack policy,
	// ctx ends, or the policy gives up (ackpolicy.ErrAckTimeout after the
	// node's ack timeout).
	WaitCommitted(ctx context.Context, offset uint64) error
	// WaitReadable blocks until every entry logged so far is committed, or
	// the policy gives up: a read then shows nothing the group could lose.
	WaitReadable(ctx context.Context) error
	// WaitReplicas implements WAIT: it blocks until n replicas have
	// acknowledged offset or ctx ends, and returns how many have.
	WaitReplicas(ctx context.Context, offset uint64, n int) int
	// Status reports the node's replication state for REPLICAR INFO.
	Status() Status
}

// Status is the part of a node's state REPLICAR INFO shows. Field names
// follow the /status contract.
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

// Config configures a Server.
type Config struct {
	// Listen is the client address (REPLICAR_LISTEN).
	Listen string
	// Backend is the Redis primary, host:port (REPLICAR_BACKEND).
	Backend string
	// BackendUser and BackendPassword authenticate to the backend.
	BackendUser, BackendPassword string
	// BackendTLS, when set, makes backend connections TLS
	// (REPLICAR_BACKEND_TLS).
	BackendTLS *tls.Config
	// ForwardTLS, when set, makes connections to the leader's client port
	// TLS (the group's nodes serve clients over TLS).
	ForwardTLS *tls.Config
	// User and Password are the proxy's own credentials that clients AUTH
	// with. An empty Password means no AUTH is required.
	User, Password string
	// Users are more accounts clients may AUTH as, user → password
	// (REPLICAR_USERS_FILE, read by internal/users with ValidUser). They do not make
	// AUTH required: only Password does, as Redis's default user does.
	Users map[string]string
	// MaxClients caps client connections; 0 means no cap.
	MaxClients int
	// ReadConns is the size of the read connection pool (default 2: on a
	// small machine fewer, fuller bursts beat more connections).
	ReadConns int
	// Limits bound client requests (default DefaultLimits).
	Limits Limits
	// AckTimeoutDegrade, when set, answers a write that missed the ack
	// timeout with its primary's reply and a warning in the log, instead of
	// UNCOMMITTED (REPLICAR_ACK_TIMEOUT_MODE=degrade).
	AckTimeoutDegrade bool
	// FailoverWait is how long a command that needs the leader waits for
	// one during an election before it gets TRYAGAIN (default 5s).
	FailoverWait time.Duration
	// DialTimeout bounds one backend connection attempt (default 2s).
	DialTimeout time.Duration
	// Now is the clock that absolute expiry times are computed from
	// (default time.Now).
	Now func() time.Time
	// Logger receives the front end's logs.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.ReadConns <= 0 {
		c.ReadConns = 2
	}
	if c.Limits == (Limits{}) {
		c.Limits = DefaultLimits
	}
	if c.FailoverWait <= 0 {
		c.FailoverWait = 5 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.User == "" {
		c.User = "default"
	}
}
