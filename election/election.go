package election

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Sentinel errors. Functions wrap them with short context; test with
// errors.Is.
var (
	// ErrLeaseHeld is returned by Campaign when another node holds the
	// lease, or won the race for it.
	ErrLeaseHeld = errors.New("lease held by another node")
	// ErrLeaseLost is Leadership.Err after a renewal or a release found the
	// leader key written by someone else: this node is no longer leader.
	ErrLeaseLost = errors.New("lease lost")
	// ErrLeaseExpired is Leadership.Err after the fence deadline passed
	// without a successful renewal.
	ErrLeaseExpired = errors.New("lease expired")
	// ErrReleased is Leadership.Err after Release.
	ErrReleased = errors.New("lease released")
	// ErrConflict is returned by SetISR when the ISR key is no longer at the
	// revision the caller read.
	ErrConflict = errors.New("revision conflict")
	// ErrClosed is returned by an Elector after Close, and is
	// Leadership.Err for a lease that was still held when its Elector closed.
	ErrClosed = errors.New("elector closed")
)

// Addrs are the addresses a node advertises.
type Addrs struct {
	// Client is where clients (and forwarding nodes) send commands.
	Client string `json:"client,omitempty"`
	// Repl is the replication listener followers dial.
	Repl string `json:"repl,omitempty"`
	// HTTP serves /status, /metrics and the health checks.
	HTTP string `json:"http,omitempty"`
}

// LeaderInfo is the value of the leader key: who holds the lease and where
// to reach it. The zero LeaderInfo (Node == "") means no node holds it.
type LeaderInfo struct {
	// Node is the holder's node id.
	Node string `json:"node"`
	// Addrs are the holder's addresses.
	Addrs Addrs `json:"addrs"`
	// Nonce is unique per won lease; it tells one leadership of a node from
	// the next, and lets a leader recognise its own write after a timeout.
	Nonce string `json:"nonce"`
	// Epoch is the revision of the winning Create. The Create itself
	// cannot carry it, so it is written from the first renewal on; a
	// reader of a value without it takes the entry's revision.
	Epoch uint64 `json:"epoch,omitempty"`

	// Revision is the KV revision this observation was read at: the
	// latest renewal, or the delete or expiry marker when Node is "".
	Revision uint64 `json:"-"`
	// Stored is the server's timestamp of that revision (zero when the
	// key has never been written or its marker has expired too).
	Stored time.Time `json:"-"`
}

// Held reports whether the info names a holder.
func (l LeaderInfo) Held() bool { return l.Node != "" }

// Member is a node's entry in the member directory, published by the node
// itself at least every TTL/3; an entry not refreshed within TTL expires.
type Member struct {
	// Node is the node id.
	Node string `json:"node"`
	// Addrs are the node's addresses.
	Addrs Addrs `json:"addrs"`
	// Role is the node's role: leader, follower, candidate or router.
	Role string `json:"role,omitempty"`
	// Epoch is the highest leader epoch the node has seen.
	Epoch uint64 `json:"epoch"`
	// LastEpoch is the epoch of the last entry the node has applied.
	LastEpoch uint64 `json:"last_epoch"`
	// Applied is the offset of the last entry the node has applied.
	Applied uint64 `json:"applied"`
	// Healthy says whether the node's backend passes its health checks.
	Healthy bool `json:"healthy"`
	// ISRMember says whether the node believes it is in the ISR.
	ISRMember bool `json:"isr_member"`
	// Updated is the publisher's clock, unix milliseconds; Publish fills
	// it in when zero.
	Updated int64 `json:"updated"`

	// Revision is the KV revision of this record (set by Members).
	Revision uint64 `json:"-"`
	// Stored is the server's timestamp of this record (set by Members). It
	// is the clock freshness is judged by, since every node reads the
	// same server clock.
	Stored time.Time `json:"-"`
}

// When returns the time the record was written: Stored when known, else
// Updated.
func (m Member) When() time.Time {
	if !m.Stored.IsZero() {
		return m.Stored
	}
	if m.Updated == 0 {
		return time.Time{}
	}
	return time.UnixMilli(m.Updated)
}

// ISR is the in-sync replica set. Members includes the leader.
type ISR struct {
	// Epoch is the epoch of the leader that wrote it.
	Epoch uint64 `json:"epoch"`
	// Members are node ids.
	Members []string `json:"members"`
}

// Contains reports whether node is a member.
func (s ISR) Contains(node string) bool {
	for _, m := range s.Members {
		if m == node {
			return true
		}
	}
	return false
}

// Leadership is a won lease. The holder may acknowledge writes (and serve
// fenced reads) only while ServeAt has passed and Valid is true, checked
// right before each acknowledgement.
type Leadership interface {
	// Epoch is the revision of the winning Create, the leader epoch.
	Epoch() uint64
	// ServeAt is when the new leader may start serving: once the previous
	// holder has fenced itself. That is the time of the Create when the
	// holder released the lease; one TTL after this node saw the holder's
	// last renewal arrive, when it saw it; otherwise one TTL after the
	// Create was sent.
	ServeAt() time.Time
	// Deadline is the fence: the monotonic time after which the lease may
	// have expired on the server. It is the send time of the last
	// successful Create or Update plus TTL minus a margin, and is the zero
	// time once the lease is lost or released.
	Deadline() time.Time
	// Valid reports whether time.Now() is before Deadline.
	Valid() bool
	// Lost is closed when the lease is lost, expired or released; Err
	// then says why.
	Lost() <-chan struct{}
	// Err is nil while the lease is held; then it wraps ErrLeaseLost,
	// ErrLeaseExpired, ErrReleased or ErrClosed.
	Err() error
	// Release fences at once (Valid turns false), stops renewing and
	// deletes the leader key at the lease's revision, so that the next
	// leader may serve at once. It returns an error wrapping ErrLeaseLost
	// if the key was no longer this lease's.
	Release(ctx context.Context) error
}

// Elector is the group's election, member directory and ISR store.
type Elector interface {
	// Campaign makes one attempt to take the lease for me (me.Nonce is
	// generated when empty; me.Epoch is ignored). It returns an error
	// wrapping ErrLeaseHeld if another node holds the lease or won it
	// first.
	Campaign(ctx context.Context, me LeaderInfo) (Leadership, error)
	// WatchLeader sends the current holder (the zero LeaderInfo when none)
	// and then every change of holder, epoch or nonce, including release
	// and expiry. Renewals are not sent. A reader that falls behind sees
	// the latest state. The channel closes when ctx ends or the elector
	// closes.
	WatchLeader(ctx context.Context) (<-chan LeaderInfo, error)
	// Publish writes the node's member record.
	Publish(ctx context.Context, m Member) error
	// Members lists the current member records, sorted by node.
	Members(ctx context.Context) ([]Member, error)
	// ISR returns the ISR and its revision; (ISR{}, 0, nil) when none has
	// been written.
	ISR(ctx context.Context) (ISR, uint64, error)
	// SetISR writes the ISR if its revision is still prevRev (0: if there
	// is none yet) and returns the new revision, or an error wrapping
	// ErrConflict. Only a leader whose lease is Valid should call it.
	SetISR(ctx context.Context, isr ISR, prevRev uint64) (uint64, error)
	// Close ends every lease still held (Err wraps ErrClosed) without
	// deleting the leader key, and closes the connection.
	Close() error
}

// Timing derived from the lease TTL; the NATS elector and the fake share it.

// RenewInterval is how often a leader renews its lease: TTL/4.
func RenewInterval(ttl time.Duration) time.Duration { return ttl / 4 }

// HeartbeatInterval is how often a node should Publish its member record
// so that it outlives the bucket's TTL: TTL/3.
func HeartbeatInterval(ttl time.Duration) time.Duration { return ttl / 3 }

// FenceMargin is subtracted from send time + TTL to get the fence deadline:
// max(TTL/10, 100ms). It covers clock-rate differences between this host and
// the NATS server, and the time between Valid and the acknowledgement.
func FenceMargin(ttl time.Duration) time.Duration {
	return max(ttl/10, 100*time.Millisecond)
}

// MinTTL is the shortest lease TTL: the server's subject delete markers
// live whole seconds, at least one, and it checks ages every 250ms.
const MinTTL = time.Second

var (
	groupRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	nodeRe  = regexp.MustCompile(`^[-_=A-Za-z0-9]+(\.[-_=A-Za-z0-9]+)*$`)
)

// CheckGroup returns an error unless group is a valid group name:
// letters, digits, '_', '-' and '.'.
func CheckGroup(group string) error {
	if !groupRe.MatchString(group) {
		return fmt.Errorf("group %q: want letters, digits, '_', '-' and '.'", group)
	}
	return nil
}

// CheckNode returns an error unless node is a valid node id: letters,
// digits, '_', '-' and '=', in dot-separated parts.
func CheckNode(node string) error {
	if !nodeRe.MatchString(node) {
		return fmt.Errorf("node id %q: want letters, digits, '_', '-', '=' and inner dots", node)
	}
	return nil
}

// BucketName is the KV bucket of a group: "replicar_" followed by the group
// name with '.' mapped to '_' (bucket names allow no dots), so "a.b" and
// "a_b" share a bucket.
func BucketName(group string) string {
	return "replicar_" + strings.ReplaceAll(group, ".", "_")
}
