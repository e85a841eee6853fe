package fanout

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/replicar/replicar/ackpolicy"
)

// Sentinel errors of the Tracker.
var (
	// ErrUnknownFollower means an event names a follower the tracker has
	// never seen connect and that is not in the ISR.
	ErrUnknownFollower = errors.New("fanout: unknown follower")
	// ErrNotConnected means an event that needs a live session (Sent, Ack)
	// names a disconnected follower.
	ErrNotConnected = errors.New("fanout: follower not connected")
	// ErrAckBeyondSent means a follower acknowledged an offset the leader
	// has not sent it: a protocol violation, so the session should end.
	ErrAckBeyondSent = errors.New("fanout: ack beyond what was sent")
)

// samplesCap bounds the ring of (offset, append time) samples. With samples
// taken at most once per Config.LagResolution, a full ring spans at least
// samplesCap × LagResolution, twice MaxLag with the default resolution.
const samplesCap = 128

// Config sets the Tracker's rules.
type Config struct {
	// Leader is the leader's node id. It is always in the ISR and is listed
	// first by ISR, as /status shows it.
	Leader string
	// MaxLag is REPLICAR_MAX_LAG: a follower that has not been caught up
	// (or has been disconnected) for longer leaves the ISR.
	MaxLag time.Duration
	// CatchUpTolerance is how many entries behind the leader a follower may
	// be and still rejoin the ISR. 0 requires acked == leader last.
	CatchUpTolerance uint64
	// MaxInflightEntries and MaxInflightBytes bound what may be sent to a
	// follower and not yet acknowledged. Values ≤ 0 mean 1024 entries and
	// 8 MiB. They are the per-follower queue that keeps a slow follower
	// from holding back the leader: past them, the leader stops sending and
	// the follower catches up from the backlog later.
	MaxInflightEntries int
	MaxInflightBytes   int
	// LagResolution is the granularity of append-time samples, and so the
	// largest error in lag seconds (lag is overstated, never understated,
	// by less than it). 0 means MaxLag/64, at least 1ms.
	LagResolution time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxInflightEntries <= 0 {
		c.MaxInflightEntries = 1024
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = 8 << 20
	}
	if c.LagResolution <= 0 {
		c.LagResolution = max(c.MaxLag/64, time.Millisecond)
	}
	return c
}

// sample says entries from first on were appended at or after at (and
// before the next sample's at).
type sample struct {
	first uint64
	at    time.Time
}

// batch is one Sent call still partly unacknowledged.
type batch struct {
	last  uint64
	bytes int
}

type follower struct {
	node      string
	connected bool
	// downSince is when the follower disconnected (or was named by SetISR
	// without a session); it counts against MaxLag like lag does.
	downSince time.Time
	acked     uint64
	sent      uint64
	inflight  []batch
	bytes     int
	// behindSince is the append time of the first entry the follower lacks
	// (zero when caught up), as resolved while that entry was still in the
	// sample ring. It is Kafka's lastCaughtUpTime, seen from the other side.
	behindSince time.Time
	lastAck     time.Time
	isr         bool // in the confirmed (published) ISR
}

// FollowerStatus is one follower as /status and the metrics report it.
type FollowerStatus struct {
	Node       string  `json:"node"`
	Acked      uint64  `json:"acked"`
	Sent       uint64  `json:"sent"`
	LagEntries uint64  `json:"lag_entries"`
	LagSeconds float64 `json:"lag_seconds"`
	// InflightBytes is what the in-flight window holds (Sent−Acked is the
	// entry count).
	InflightBytes int  `json:"inflight_bytes"`
	InSync        bool `json:"in_sync"`
	Connected     bool `json:"connected"`
}

// ISRChange is a change of ISR the Tracker proposes. The caller publishes
// Members (a CAS in NATS KV) and, once that succeeded, calls SetISR with them.
type ISRChange struct {
	// Members is the proposed ISR, leader first, followers sorted.
	Members []string
	// Added and Removed are the followers that join and leave, sorted.
	Added   []string
	Removed []string
}

// Tracker is the leader's view of its followers: what each has acked, how far
// behind it is in entries and in time, what may still be sent to it, and
// which followers belong in the ISR. It does no I/O and never reads the clock:
// every event and query takes the time as an argument. It is not safe for
// concurrent use.
type Tracker struct {
	cfg       Config
	last      uint64
	samples   []sample // oldest first, at most samplesCap
	followers map[string]*follower
}

// NewTracker returns a tracker for a leader whose backlog ends at last at
// time now. Entries already in the backlog count as appended now: their true
// times are unknown, and this gives followers MaxLag to catch up after a
// failover, as Kafka does for a new leader's ISR.
func NewTracker(cfg Config, last uint64, now time.Time) *Tracker {
	t := &Tracker{
		cfg:       cfg.withDefaults(),
		last:      last,
		samples:   make([]sample, 0, samplesCap),
		followers: map[string]*follower{},
	}
	t.samples = append(t.samples, sample{first: 0, at: now})
	return t
}

// Last is the leader's last appended offset.
func (t *Tracker) Last() uint64 { return t.last }

// Appended records that the leader's backlog now ends at offset, the entries
// after the previous end having been appended at at. An offset at or below
// Last is ignored.
func (t *Tracker) Appended(offset uint64, at time.Time) {
	if offset <= t.last {
		return
	}
	prev := t.last
	t.last = offset
	if n := len(t.samples); n == 0 || at.Sub(t.samples[n-1].at) >= t.cfg.LagResolution {
		if n == samplesCap {
			// Only entries older than the ring's span are forgotten;
			// followers that lack them already have behindSince set.
			copy(t.samples, t.samples[1:])
			t.samples = t.samples[:n-1]
		}
		t.samples = append(t.samples, sample{first: prev + 1, at: at})
	}
	for _, f := range t.followers {
		if f.acked == prev {
			// It was caught up until this append.
			f.behindSince = t.appendTime(prev+1, at)
		}
	}
}

// appendTime is the earliest time the ring allows for the append of offset:
// the time of the last sample at or before it. When the ring no longer covers
// offset it returns def.
func (t *Tracker) appendTime(offset uint64, def time.Time) time.Time {
	i, found := slices.BinarySearchFunc(t.samples, offset, func(s sample, o uint64) int {
		switch {
		case s.first < o:
			return -1
		case s.first > o:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i < 0 {
		return def
	}
	return t.samples[i].at
}

// Connected records a follower's session starting at time at, after a
// handshake that put its applied position at acked. Nothing is in flight.
func (t *Tracker) Connected(node string, acked uint64, at time.Time) {
	f := t.followers[node]
	if f == nil {
		f = &follower{node: node}
		t.followers[node] = f
	}
	f.connected = true
	f.downSince = time.Time{}
	f.acked = min(acked, t.last)
	f.sent = f.acked
	f.inflight = f.inflight[:0]
	f.bytes = 0
	f.lastAck = at
	f.behindSince = time.Time{}
	if f.acked < t.last {
		// Older than the ring: the best bound is the oldest sample.
		f.behindSince = t.appendTime(f.acked+1, t.samples[0].at)
	}
}

// Disconnected records that a follower's session ended at time at. The
// follower stays known and keeps its ISR membership until a proposal that
// removes it is confirmed.
func (t *Tracker) Disconnected(node string, at time.Time) error {
	f := t.followers[node]
	if f == nil {
		return fmt.Errorf("%w: %s", ErrUnknownFollower, node)
	}
	if f.connected {
		f.connected = false
		f.downSince = at
		f.inflight = f.inflight[:0]
		f.bytes = 0
		f.sent = f.acked
	}
	return nil
}

// CanSend reports whether the follower's in-flight window has room for
// another batch. The window is checked before a batch, not after, so one batch
// may overshoot MaxInflightBytes: an entry larger than the window can still be
// sent.
func (t *Tracker) CanSend(node string) bool {
	f := t.followers[node]
	if f == nil || !f.connected {
		return false
	}
	return f.sent-f.acked < uint64(t.cfg.MaxInflightEntries) && f.bytes < t.cfg.MaxInflightBytes
}

// Sent records that entries up to offset, size bytes in all, were written to
// the follower's session.
func (t *Tracker) Sent(node string, offset uint64, size int) error {
	f := t.followers[node]
	if f == nil {
		return fmt.Errorf("%w: %s", ErrUnknownFollower, node)
	}
	if !f.connected {
		return fmt.Errorf("%w: %s", ErrNotConnected, node)
	}
	if offset <= f.sent || offset > t.last {
		return fmt.Errorf("fanout: sent %d to %s: want %d..%d", offset, node, f.sent+1, t.last)
	}
	f.sent = offset
	f.inflight = append(f.inflight, batch{last: offset, bytes: size})
	f.bytes += size
	return nil
}

// Ack records that the follower applied everything up to offset, reported at
// time at. An ack at or below the previous one is ignored.
func (t *Tracker) Ack(node string, offset uint64, at time.Time) error {
	f := t.followers[node]
	if f == nil {
		return fmt.Errorf("%w: %s", ErrUnknownFollower, node)
	}
	if !f.connected {
		return fmt.Errorf("%w: %s", ErrNotConnected, node)
	}
	if offset > f.sent {
		return fmt.Errorf("%w: %s acked %d, sent %d", ErrAckBeyondSent, node, offset, f.sent)
	}
	f.lastAck = at
	if offset <= f.acked {
		return nil
	}
	f.acked = offset
	// A batch frees its bytes once wholly acked; a partial ack keeps it,
	// which overstates the window a little rather than understate it.
	i := 0
	for ; i < len(f.inflight) && f.inflight[i].last <= offset; i++ {
		f.bytes -= f.inflight[i].bytes
	}
	f.inflight = f.inflight[:copy(f.inflight, f.inflight[i:])]
	if f.acked >= t.last {
		f.behindSince = time.Time{}
	} else {
		// If the ring no longer covers acked+1, the old bound stays: the
		// entry was appended no earlier than it.
		f.behindSince = t.appendTime(f.acked+1, f.behindSince)
	}
	return nil
}

// lag is how long the follower has not been caught up at now: since the
// oldest entry it lacks was appended, or since it disconnected if that is
// longer ago. It returns the two parts: lag in the sense of /status, and the
// time counted against MaxLag.
func (t *Tracker) lag(f *follower, now time.Time) (behind, outOfSync time.Duration) {
	if f.acked < t.last && !f.behindSince.IsZero() {
		behind = max(now.Sub(f.behindSince), 0)
	}
	outOfSync = behind
	if !f.connected {
		outOfSync = max(outOfSync, now.Sub(f.downSince))
	}
	return behind, outOfSync
}

// Followers reports every known follower at time now, sorted by node id.
func (t *Tracker) Followers(now time.Time) []FollowerStatus {
	out := make([]FollowerStatus, 0, len(t.followers))
	for _, f := range t.sorted() {
		behind, _ := t.lag(f, now)
		out = append(out, FollowerStatus{
			Node:          f.node,
			Acked:         f.acked,
			Sent:          f.sent,
			LagEntries:    t.last - min(f.acked, t.last),
			LagSeconds:    behind.Seconds(),
			InflightBytes: f.bytes,
			InSync:        f.isr,
			Connected:     f.connected,
		})
	}
	return out
}

func (t *Tracker) sorted() []*follower {
	fs := make([]*follower, 0, len(t.followers))
	for _, f := range t.followers {
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b *follower) int {
		switch {
		case a.node < b.node:
			return -1
		case a.node > b.node:
			return 1
		}
		return 0
	})
	return fs
}

// ISR is the confirmed ISR: the leader first, then the member followers
// sorted.
func (t *Tracker) ISR() []string {
	out := []string{t.cfg.Leader}
	for _, f := range t.sorted() {
		if f.isr {
			out = append(out, f.node)
		}
	}
	return out
}

// Propose computes, at time now, the ISR the rules call for, starting from
// the confirmed one. A member leaves when it has been behind or disconnected
// for longer than MaxLag; a non-member joins when it is connected, within
// CatchUpTolerance entries of the leader and not behind for MaxLag. ok is
// false when the ISR should stay as it is. Nothing changes until SetISR.
func (t *Tracker) Propose(now time.Time) (c ISRChange, ok bool) {
	c.Members = []string{t.cfg.Leader}
	for _, f := range t.sorted() {
		_, out := t.lag(f, now)
		keep := f.isr
		if f.isr && out > t.cfg.MaxLag {
			keep = false
			c.Removed = append(c.Removed, f.node)
		}
		if !f.isr && f.connected && t.last-min(f.acked, t.last) <= t.cfg.CatchUpTolerance && out <= t.cfg.MaxLag {
			keep = true
			c.Added = append(c.Added, f.node)
		}
		if keep {
			c.Members = append(c.Members, f.node)
		}
	}
	return c, len(c.Added)+len(c.Removed) > 0
}

// SetISR installs the ISR that was published, at time at. members may list
// the leader, which is ignored. A member the tracker has not seen connect (a
// new leader loading the ISR) is added as disconnected since at, so it has
// MaxLag to connect before a proposal removes it.
func (t *Tracker) SetISR(members []string, at time.Time) {
	for _, f := range t.followers {
		f.isr = false
	}
	for _, m := range members {
		if m == t.cfg.Leader {
			continue
		}
		f := t.followers[m]
		if f == nil {
			f = &follower{node: m, downSince: at}
			if t.last > 0 {
				// Its position is unknown until it connects, so it
				// counts as having nothing.
				f.behindSince = t.appendTime(1, t.samples[0].at)
			}
			t.followers[m] = f
		}
		f.isr = true
	}
}

// Remove forgets a follower that left the group. It is not in the ISR the
// tracker reports afterwards; publishing that is the caller's job.
func (t *Tracker) Remove(node string) { delete(t.followers, node) }

// State is the input of ackpolicy.Commit and ackpolicy.Accept: the leader's
// last appended offset and every known follower with its acked offset and its
// membership of the confirmed ISR. Commit maths must only count the confirmed
// ISR, never a proposal: a follower leaves the ISR for commit purposes only
// once the world can see it left, or a failover could elect a node that
// misses a committed entry. A caller whose policy means another leader offset
// (the durable one) replaces State.Leader.
func (t *Tracker) State(groupSize int) ackpolicy.State {
	s := ackpolicy.State{GroupSize: groupSize, Leader: t.last}
	for _, f := range t.sorted() {
		s.Followers = append(s.Followers, ackpolicy.Follower{ID: f.node, Applied: f.acked, InSync: f.isr})
	}
	return s
}
