package fanout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/backlog"
)

// Applier is the follower's store, as protocols/resp.Applier implements it:
// the applied position lives in the store, written with the data, so Apply is
// exactly-once across reconnects and crashes.
type Applier interface {
	// Position is the last entry applied to the store.
	Position(ctx context.Context) (backlog.Position, error)
	// Apply applies consecutive entries and returns the position reached.
	// Payloads are valid only during the call. On error the position is
	// the last the store is known to have reached.
	Apply(ctx context.Context, entries []backlog.Entry) (backlog.Position, error)
}

// Sentinel errors of Follower.Run.
var (
	// ErrNeedFullResync means the leader cannot stream to this follower
	// from its position (outside retention, or diverged where a store cannot
	// drop applied writes): the proxy must copy a snapshot, then run again.
	ErrNeedFullResync = errors.New("fanout: follower needs a full resync")
	// ErrLeaderStale means the dialled leader's epoch is older than one the
	// follower has seen: it was deposed and must not be followed.
	ErrLeaderStale = errors.New("fanout: leader epoch is stale")
)

// VerdictError is a VERDICT other than continue. errors.Is matches
// ErrNeedFullResync for fullresync and diverged (a store cannot truncate
// applied writes), and ErrLeaderStale for refuse.
type VerdictError struct {
	// Decision is the leader's verdict; Reason carries its text only.
	Decision    backlog.Decision
	LeaderEpoch uint64
	LeaderNode  string
}

// Error formats the verdict and its reason.
func (e *VerdictError) Error() string {
	return fmt.Sprintf("fanout: leader %s (epoch %d) says %v: %v", e.LeaderNode, e.LeaderEpoch, e.Decision.Verdict, e.Decision.Reason)
}

// Is matches the sentinels listed on VerdictError.
func (e *VerdictError) Is(target error) bool {
	switch e.Decision.Verdict {
	case backlog.FullResync, backlog.Diverged:
		return target == ErrNeedFullResync
	case backlog.Refuse:
		return target == ErrLeaderStale
	}
	return false
}

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	Group string
	Node  string
	// Addr is the leader's REPLICAR_REPL_LISTEN address. On failover the
	// proxy cancels Run and starts a Follower for the new leader.
	Addr string
	// Dial opens the connection; nil means a net.Dialer, wrapped in TLS
	// when TLS is set.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set (and Dial is not), makes the connection TLS. The
	// leader's certificate is checked for the host of Addr unless
	// TLS.ServerName says otherwise.
	TLS *tls.Config
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// (with jitter) from MinBackoff after each failed session. 0 means
	// 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// ReadTimeout is how long the leader may stay silent (it heartbeats)
	// before the follower reconnects. 0 means 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds one frame write. 0 means 10s.
	WriteTimeout time.Duration
}

func (c FollowerConfig) withDefaults() FollowerConfig {
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Dial == nil {
		c.Dial = dialer(c.TLS)
	}
	return c
}

// ReplicaStatus is a follower's own view of its session (FollowerStatus is
// the leader's view of it).
type ReplicaStatus struct {
	Connected   bool             `json:"connected"`
	LeaderEpoch uint64           `json:"leader_epoch"`
	LeaderNode  string           `json:"leader_node"`
	Applied     backlog.Position `json:"applied"`
	LeaderLast  uint64           `json:"leader_last"`
	Committed   uint64           `json:"committed"`
	// HeartbeatAge is the time since the last HEARTBEAT, or 0 if none.
	HeartbeatAge time.Duration `json:"heartbeat_age"`
	// Reconnects counts sessions that ended with an error.
	Reconnects int `json:"reconnects"`
	// Sessions counts sessions that got as far as streaming: each resumed
	// from the store's own position (a partial resync).
	Sessions int `json:"sessions"`
	// Staleness bounds how far the store is behind the leader: the time
	// since a heartbeat arrived whose Last the store has applied, so the
	// store holds every write the leader had made when it sent it. It is
	// -1 (unknown: treat as unbounded) when no such heartbeat is known.
	Staleness time.Duration `json:"staleness"`
}

// Follower streams a leader's backlog into an Applier, reconnecting with
// backoff when the connection fails.
type Follower struct {
	cfg    FollowerConfig
	app    Applier
	logger zerolog.Logger

	mu     sync.Mutex
	status ReplicaStatus
	lastHB time.Time
	// maxEpoch is the highest epoch seen; entries and leaders below it are
	// refused.
	maxEpoch uint64
	// caughtUpAt is when the newest heartbeat the store has caught up with
	// arrived; pendingHB are later heartbeats it has not, oldest first.
	caughtUpAt time.Time
	pendingHB  []heartbeatSeen
}

type heartbeatSeen struct {
	at   time.Time
	last uint64
}

// noteHeartbeat records a heartbeat for the staleness bound. f.mu held.
func (f *Follower) noteHeartbeat(at time.Time, last uint64) {
	if f.status.Applied.Offset >= last {
		f.caughtUpAt, f.pendingHB = at, f.pendingHB[:0]
		return
	}
	if len(f.pendingHB) >= 64 {
		// Far behind: keep the oldest ones, which are the next to clear.
		return
	}
	f.pendingHB = append(f.pendingHB, heartbeatSeen{at: at, last: last})
}

// noteApplied moves the staleness bound as the store catches up. f.mu held.
func (f *Follower) noteApplied(applied uint64) {
	n := 0
	for n < len(f.pendingHB) && f.pendingHB[n].last <= applied {
		f.caughtUpAt = f.pendingHB[n].at
		n++
	}
	f.pendingHB = append(f.pendingHB[:0], f.pendingHB[n:]...)
}

// NewFollower returns a Follower applying to app.
func NewFollower(cfg FollowerConfig, app Applier, logger zerolog.Logger) *Follower {
	return &Follower{cfg: cfg.withDefaults(), app: app, logger: logger.With().Str("leader", cfg.Addr).Logger()}
}

// Status is a snapshot of the follower's session.
func (f *Follower) Status() ReplicaStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	if !f.lastHB.IsZero() {
		s.HeartbeatAge = time.Since(f.lastHB)
	}
	s.Staleness = -1
	if s.Connected && !f.caughtUpAt.IsZero() {
		s.Staleness = time.Since(f.caughtUpAt)
	}
	return s
}

// Run follows the leader until ctx ends (returning ctx.Err()) or the leader
// gives an answer reconnecting cannot change: a *VerdictError
// (ErrNeedFullResync, ErrLeaderStale), a *PeerError matching ErrRejected, or
// ErrLeaderStale when the leader's epoch goes below one already seen.
// Connection and store errors are logged and retried with backoff.
func (f *Follower) Run(ctx context.Context) error {
	backoff := f.cfg.MinBackoff
	for {
		streamed, err := f.session(ctx)
		f.mu.Lock()
		f.status.Connected = false
		f.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ve *VerdictError
		if errors.As(err, &ve) || errors.Is(err, ErrRejected) || errors.Is(err, ErrLeaderStale) {
			return err
		}
		var pe *PeerError
		notYet := errors.As(err, &pe) && pe.Code == ErrCodeNotLeader
		if streamed || notYet {
			// A node that just won the lease answers "not the leader"
			// until it serves; it will serve within a lease TTL, so
			// keep knocking at the shortest interval.
			backoff = f.cfg.MinBackoff
		}
		f.mu.Lock()
		f.status.Reconnects++
		f.mu.Unlock()
		ev := f.logger.Warn()
		if notYet {
			ev = f.logger.Debug()
		}
		ev.Err(err).Dur("backoff", backoff).Msg("replication session ended")
		// Jitter in [backoff/2, backoff) keeps followers from reconnecting
		// in lockstep after a leader restart.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if !notYet {
			backoff = min(2*backoff, f.cfg.MaxBackoff)
		}
	}
}

// session runs one connection. streamed reports whether the handshake got
// as far as streaming, which resets the backoff.
func (f *Follower) session(ctx context.Context) (streamed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	pos, err := f.app.Position(ctx)
	if err != nil {
		return false, fmt.Errorf("read position: %w", err)
	}
	conn, err := f.cfg.Dial(ctx, "tcp", f.cfg.Addr)
	if err != nil {
		return false, fmt.Errorf("dial leader: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	w := &frameWriter{conn: conn, timeout: f.cfg.WriteTimeout}
	r := newFrameReader(conn)
	f.mu.Lock()
	f.maxEpoch = max(f.maxEpoch, pos.Epoch)
	f.mu.Unlock()

	hello := Hello{Protocol: ProtocolVersion, Group: f.cfg.Group, Node: f.cfg.Node,
		LastEpoch: pos.Epoch, NextOffset: pos.Offset + 1}
	if err := w.write(Frame{Type: TypeHello, Hello: hello}); err != nil {
		return false, err
	}
	fr, err := f.read(ctx, conn, r)
	if err != nil {
		return false, fmt.Errorf("read verdict: %w", err)
	}
	switch fr.Type {
	case TypeVerdict:
	case TypeError:
		return false, &PeerError{Code: fr.Error.Code, Message: fr.Error.Message}
	default:
		return false, fmt.Errorf("read verdict: unexpected %v", fr.Type)
	}
	v := fr.Verdict
	if v.Verdict != backlog.Continue {
		d := backlog.Decision{Verdict: v.Verdict, From: v.From, DivergedAt: v.DivergedAt}
		if v.Reason != "" {
			d.Reason = errors.New(v.Reason)
		}
		return false, &VerdictError{Decision: d, LeaderEpoch: v.LeaderEpoch, LeaderNode: v.LeaderNode}
	}
	if v.From != pos.Offset+1 {
		return false, fmt.Errorf("verdict: continue from %d, want %d", v.From, pos.Offset+1)
	}
	if err := f.observeEpoch(w, v.LeaderEpoch); err != nil {
		return false, err
	}
	f.mu.Lock()
	f.status.Connected = true
	f.status.Sessions++
	f.status.LeaderEpoch = v.LeaderEpoch
	f.status.LeaderNode = v.LeaderNode
	f.status.Applied = pos
	f.mu.Unlock()
	f.logger.Info().Str("leader_node", v.LeaderNode).Uint64("from", v.From).Msg("streaming from leader")

	var echo int64
	heartbeat := func(hb Heartbeat) error {
		if err := f.observeEpoch(w, hb.Epoch); err != nil {
			return err
		}
		echo = hb.SentUnixNano
		f.mu.Lock()
		f.lastHB = time.Now()
		f.status.LeaderLast = hb.Last
		f.status.Committed = max(f.status.Committed, hb.Committed)
		f.noteHeartbeat(f.lastHB, hb.Last)
		f.mu.Unlock()
		return nil
	}
	for {
		fr, err := f.read(ctx, conn, r)
		if err != nil {
			return true, err
		}
		switch fr.Type {
		case TypeEntries:
			// Everything already received goes into the same apply: one
			// store transaction and one ack for many frames, which is what
			// keeps a follower up with a leader that has many writers.
			batch := fr.Entries
			for {
				more, ok, err := r.nextBuffered()
				if err != nil {
					return true, err
				}
				if !ok {
					break
				}
				switch more.Type {
				case TypeEntries:
					batch.Entries = append(batch.Entries, more.Entries.Entries...)
					batch.Committed = max(batch.Committed, more.Entries.Committed)
				case TypeHeartbeat:
					if err := heartbeat(more.Heartbeat); err != nil {
						return true, err
					}
				case TypeError:
					return true, &PeerError{Code: more.Error.Code, Message: more.Error.Message}
				default:
					_ = w.write(errorFrame(ErrCodeProtocol, "unexpected %v", more.Type))
					return true, fmt.Errorf("stream: unexpected %v", more.Type)
				}
			}
			if pos, err = f.apply(ctx, w, pos, batch); err != nil {
				return true, err
			}
		case TypeHeartbeat:
			if err := heartbeat(fr.Heartbeat); err != nil {
				return true, err
			}
		case TypeError:
			return true, &PeerError{Code: fr.Error.Code, Message: fr.Error.Message}
		default:
			_ = w.write(errorFrame(ErrCodeProtocol, "unexpected %v", fr.Type))
			return true, fmt.Errorf("stream: unexpected %v", fr.Type)
		}
		f.mu.Lock()
		epoch := f.maxEpoch
		f.mu.Unlock()
		if err := w.write(Frame{Type: TypeAck, Ack: Ack{Applied: pos.Offset, Epoch: epoch, EchoUnixNano: echo}}); err != nil {
			return true, err
		}
	}
}

func (f *Follower) read(ctx context.Context, conn net.Conn, r *frameReader) (Frame, error) {
	if err := conn.SetReadDeadline(time.Now().Add(f.cfg.ReadTimeout)); err != nil {
		return Frame{}, fmt.Errorf("set read deadline: %w", err)
	}
	fr, err := r.next()
	if err != nil && ctx.Err() != nil {
		return Frame{}, ctx.Err()
	}
	return fr, err
}

// observeEpoch raises the highest epoch seen, or refuses a lower one with
// ERROR and ErrLeaderStale.
func (f *Follower) observeEpoch(w *frameWriter, epoch uint64) error {
	f.mu.Lock()
	seen := f.maxEpoch
	if epoch >= seen {
		f.maxEpoch = epoch
		f.status.LeaderEpoch = max(f.status.LeaderEpoch, epoch)
	}
	f.mu.Unlock()
	if epoch < seen {
		_ = w.write(errorFrame(ErrCodeStaleEpoch, "epoch %d, follower has seen %d", epoch, seen))
		return fmt.Errorf("%w: epoch %d, seen %d", ErrLeaderStale, epoch, seen)
	}
	return nil
}

// apply checks a batch (consecutive from pos, epochs not going down) and
// applies it, returning the store's new position.
func (f *Follower) apply(ctx context.Context, w *frameWriter, pos backlog.Position, b Entries) (backlog.Position, error) {
	next, prevEpoch := pos.Offset+1, pos.Epoch
	for _, e := range b.Entries {
		if e.Offset != next {
			_ = w.write(errorFrame(ErrCodeProtocol, "entry %d, want %d", e.Offset, next))
			return pos, fmt.Errorf("stream: entry %d, want %d: %w", e.Offset, next, backlog.ErrOffsetGap)
		}
		// A new leader streams entries from older epochs that it holds
		// (as Raft does); what must never happen is the log's epochs
		// going down. Leaders below the highest epoch seen are refused
		// at the handshake and on heartbeats.
		if e.Epoch < prevEpoch {
			_ = w.write(errorFrame(ErrCodeProtocol, "entry %d from epoch %d after epoch %d", e.Offset, e.Epoch, prevEpoch))
			return pos, fmt.Errorf("stream: entry %d from epoch %d after epoch %d: %w", e.Offset, e.Epoch, prevEpoch, ErrLeaderStale)
		}
		f.mu.Lock()
		if e.Epoch > f.maxEpoch {
			f.maxEpoch = e.Epoch
			f.status.LeaderEpoch = max(f.status.LeaderEpoch, e.Epoch)
		}
		f.mu.Unlock()
		prevEpoch = e.Epoch
		next++
	}
	f.mu.Lock()
	f.status.Committed = max(f.status.Committed, b.Committed)
	f.mu.Unlock()
	if len(b.Entries) == 0 {
		return pos, nil
	}
	got, err := f.app.Apply(ctx, b.Entries)
	if err != nil {
		return pos, fmt.Errorf("apply batch at %d: %w", pos.Offset+1, err)
	}
	f.mu.Lock()
	f.status.Applied = got
	f.noteApplied(got.Offset)
	f.status.LeaderLast = max(f.status.LeaderLast, got.Offset)
	f.mu.Unlock()
	return got, nil
}

// RequestSnapshot asks the leader at cfg.Addr for a full resync: it copies
// a consistent snapshot into target, the follower's own store, and answers
// the position the copy stands at, from which the follower then streams.
// It waits as long as the copy takes, until ctx ends.
func RequestSnapshot(ctx context.Context, cfg FollowerConfig, target string) (backlog.Position, error) {
	cfg = cfg.withDefaults()
	conn, err := cfg.Dial(ctx, "tcp", cfg.Addr)
	if err != nil {
		return backlog.Position{}, fmt.Errorf("dial leader: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	w := &frameWriter{conn: conn, timeout: cfg.WriteTimeout}
	req := Snapshot{Protocol: ProtocolVersion, Group: cfg.Group, Node: cfg.Node, Target: target}
	if err := w.write(Frame{Type: TypeSnapshot, Snapshot: req}); err != nil {
		return backlog.Position{}, err
	}
	fr, err := newFrameReader(conn).next()
	if err != nil {
		if ctx.Err() != nil {
			return backlog.Position{}, ctx.Err()
		}
		return backlog.Position{}, fmt.Errorf("read snapshot answer: %w", err)
	}
	switch fr.Type {
	case TypeSnapshotDone:
		return backlog.Position{Epoch: fr.SnapshotDone.Epoch, Offset: fr.SnapshotDone.Offset}, nil
	case TypeError:
		return backlog.Position{}, &PeerError{Code: fr.Error.Code, Message: fr.Error.Message}
	}
	return backlog.Position{}, fmt.Errorf("snapshot: unexpected %v", fr.Type)
}
