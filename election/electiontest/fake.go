package electiontest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/replicar/replicar/election"
)

// ErrUnavailable is returned by every call while the fake is down
// (SetDown), as a NATS elector returns errors when NATS is unreachable.
var ErrUnavailable = errors.New("election unavailable")

// Fake is one group's election state, shared by the Electors it hands out.
type Fake struct {
	mu   sync.Mutex
	ttl  time.Duration
	now  time.Time
	rev  uint64
	down bool
	// membersExpire says whether member records expire one TTL after
	// they were published.
	membersExpire bool

	// The leader key: its value while held, and how it went away.
	leader        election.LeaderInfo // Node == "" when not held
	leaderRev     uint64
	leaderStored  time.Time
	leaderExpires time.Time
	released      bool // the last delete was a release
	holder        *Lease

	members map[string]memberEntry
	isr     election.ISR
	isrRev  uint64

	leaderWatches map[*watch[election.LeaderInfo]]struct{}
	memberWatches map[*watch[[]election.Member]]struct{}
	leases        map[*Lease]struct{}
}

type memberEntry struct {
	m       election.Member
	expires time.Time
}

// Start is the fake clock's initial time.
var Start = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns a Fake with lease TTL ttl, its clock at Start, and member
// records that expire.
func New(ttl time.Duration) *Fake {
	return &Fake{
		ttl:           ttl,
		now:           Start,
		membersExpire: true,
		members:       make(map[string]memberEntry),
		leaderWatches: make(map[*watch[election.LeaderInfo]]struct{}),
		memberWatches: make(map[*watch[[]election.Member]]struct{}),
		leases:        make(map[*Lease]struct{}),
	}
}

// TTL is the lease TTL.
func (f *Fake) TTL() time.Duration { return f.ttl }

// Now is the fake clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// SetMembersExpire says whether member records expire one TTL after they
// were published (the default, as on NATS); tests whose nodes do not
// publish on the fake clock may turn it off.
func (f *Fake) SetMembersExpire(expire bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.membersExpire = expire
	if !expire {
		for k, e := range f.members {
			e.expires = time.Time{}
			f.members[k] = e
		}
	}
}

// Advance moves the clock forward by d in steps of at most
// election.RenewInterval(TTL). At each step, keys and member records past
// their expiry go away and leases past their deadline are lost
// (ErrLeaseExpired); then leases that are neither paused nor cut off by
// SetDown renew.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.now.Add(d)
	step := election.RenewInterval(f.ttl)
	for f.now.Before(end) {
		f.now = minTime(f.now.Add(step), end)
		f.expireLocked()
		if !f.down {
			for l := range f.leases {
				if !l.paused && l.err == nil && l == f.holder {
					f.renewLocked(l)
				}
			}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (f *Fake) expireLocked() {
	for l := range f.leases {
		if l.err == nil && !f.now.Before(l.deadline) {
			f.loseLocked(l, fmt.Errorf("epoch %d: %w: no renewal before the fence deadline", l.info.Epoch, election.ErrLeaseExpired))
		}
	}
	if f.leader.Held() && !f.now.Before(f.leaderExpires) {
		f.clearLeaderLocked(false)
	}
	changed := false
	for k, e := range f.members {
		if !e.expires.IsZero() && !f.now.Before(e.expires) {
			delete(f.members, k)
			changed = true
		}
	}
	if changed {
		f.notifyMembersLocked()
	}
}

func (f *Fake) renewLocked(l *Lease) {
	f.rev++
	l.rev = f.rev
	l.deadline = f.now.Add(f.ttl - election.FenceMargin(f.ttl))
	f.leaderRev, f.leaderStored, f.leaderExpires = f.rev, f.now, f.now.Add(f.ttl)
	// Renewals are not leader changes: no notification.
}

// clearLeaderLocked removes the leader key, by a release or otherwise
// (expiry, a plain delete), and tells the watchers.
func (f *Fake) clearLeaderLocked(released bool) {
	f.rev++
	f.leader = election.LeaderInfo{}
	f.leaderRev, f.leaderStored, f.leaderExpires = f.rev, f.now, time.Time{}
	f.released = released
	f.holder = nil
	f.notifyLeaderLocked()
}

func (f *Fake) loseLocked(l *Lease, err error) bool {
	if l.err != nil {
		return false
	}
	l.err = err
	l.deadline = time.Time{}
	close(l.lost)
	delete(f.leases, l)
	return true
}

func (f *Fake) currentLeaderLocked() election.LeaderInfo {
	if !f.leader.Held() {
		return election.LeaderInfo{Revision: f.leaderRev, Stored: f.leaderStored}
	}
	li := f.leader
	li.Revision, li.Stored = f.leaderRev, f.leaderStored
	return li
}

// Leader returns the current leader key (the zero LeaderInfo, with the
// marker's revision, when not held).
func (f *Fake) Leader() election.LeaderInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.currentLeaderLocked()
}

// Expire makes the leader key expire now, as the server would after a TTL
// without renewals; the holder's next renewal fails, so its lease is lost
// at once with ErrLeaseLost. The next leader waits out a TTL, as a real
// candidate does when it did not see the holder's last renewal.
func (f *Fake) Expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leader.Held() {
		return
	}
	if h := f.holder; h != nil {
		f.loseLocked(h, fmt.Errorf("epoch %d: %w: the leader key expired", h.info.Epoch, election.ErrLeaseLost))
	}
	f.clearLeaderLocked(false)
}

// Overwrite writes li to the leader key outside any campaign, as another
// writer with a stale view would; the holder's lease is lost with
// ErrLeaseLost. It returns the new revision.
func (f *Fake) Overwrite(li election.LeaderInfo) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.holder; h != nil {
		f.loseLocked(h, fmt.Errorf("epoch %d: %w: overwritten by %s", h.info.Epoch, election.ErrLeaseLost, li.Node))
	}
	f.holder = nil
	f.rev++
	if li.Epoch == 0 {
		li.Epoch = f.rev
	}
	f.leader = li
	f.leaderRev, f.leaderStored, f.leaderExpires = f.rev, f.now, f.now.Add(f.ttl)
	f.notifyLeaderLocked()
	return f.rev
}

// SetDown cuts every Elector off (true) or reconnects them (false). While
// down, calls return ErrUnavailable and leases do not renew, so they are
// lost when Advance passes their deadline.
func (f *Fake) SetDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// Pause stops l from renewing, as a paused process would.
func (f *Fake) Pause(l election.Leadership) { f.setPaused(l, true) }

// Resume lets l renew again. A lease that was lost stays lost.
func (f *Fake) Resume(l election.Leadership) { f.setPaused(l, false) }

func (f *Fake) setPaused(l election.Leadership, paused bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l.(*Lease).paused = paused
}

// Elector returns a new Elector on this group, for one node.
func (f *Fake) Elector() *Elector { return &Elector{f: f} }

// Elector is one node's handle on a Fake.
type Elector struct {
	f      *Fake
	mu     sync.Mutex
	closed bool
	leases []*Lease
	stops  []func()
}

var _ election.Elector = (*Elector)(nil)

// check returns ErrClosed or ErrUnavailable; f.mu is held.
func (e *Elector) checkLocked() error {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return election.ErrClosed
	}
	if e.f.down {
		return ErrUnavailable
	}
	return nil
}

var nonces struct {
	sync.Mutex
	n int
}

func nextNonce() string {
	nonces.Lock()
	defer nonces.Unlock()
	nonces.n++
	return fmt.Sprintf("fake-%d", nonces.n)
}

// Campaign takes the lease if the leader key is not held.
func (e *Elector) Campaign(ctx context.Context, me election.LeaderInfo) (election.Leadership, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	if err := election.CheckNode(me.Node); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := e.checkLocked(); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	if f.leader.Held() {
		return nil, fmt.Errorf("campaign: %w: %s holds epoch %d", election.ErrLeaseHeld, f.leader.Node, f.leader.Epoch)
	}
	if me.Nonce == "" {
		me.Nonce = nextNonce()
	}
	f.rev++
	me.Epoch, me.Revision, me.Stored = f.rev, 0, time.Time{}
	l := &Lease{
		f:        f,
		info:     me,
		serveAt:  f.now,
		deadline: f.now.Add(f.ttl - election.FenceMargin(f.ttl)),
		rev:      f.rev,
		lost:     make(chan struct{}),
	}
	if !f.released {
		l.serveAt = f.now.Add(f.ttl)
	}
	f.leader, f.leaderRev, f.leaderStored, f.leaderExpires = me, f.rev, f.now, f.now.Add(f.ttl)
	f.holder = l
	f.leases[l] = struct{}{}
	e.mu.Lock()
	e.leases = append(e.leases, l)
	e.mu.Unlock()
	f.notifyLeaderLocked()
	return l, nil
}

// WatchLeader sends the current leader and every change of holder.
func (e *Elector) WatchLeader(ctx context.Context) (<-chan election.LeaderInfo, error) {
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := e.checkLocked(); err != nil {
		return nil, fmt.Errorf("watch leader: %w", err)
	}
	w := newWatch[election.LeaderInfo](ctx, func(w *watch[election.LeaderInfo]) {
		f.mu.Lock()
		delete(f.leaderWatches, w)
		f.mu.Unlock()
	})
	f.leaderWatches[w] = struct{}{}
	w.set(f.currentLeaderLocked())
	e.addStop(w.stop)
	return w.out, nil
}

func (f *Fake) notifyLeaderLocked() {
	li := f.currentLeaderLocked()
	for w := range f.leaderWatches {
		w.set(li)
	}
}

// Publish writes a member record; it expires one TTL later.
func (e *Elector) Publish(ctx context.Context, m election.Member) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish member: %w", err)
	}
	if err := election.CheckNode(m.Node); err != nil {
		return fmt.Errorf("publish member: %w", err)
	}
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := e.checkLocked(); err != nil {
		return fmt.Errorf("publish member %s: %w", m.Node, err)
	}
	f.rev++
	if m.Updated == 0 {
		m.Updated = f.now.UnixMilli()
	}
	m.Revision, m.Stored = f.rev, f.now
	entry := memberEntry{m: m}
	if f.membersExpire {
		entry.expires = f.now.Add(f.ttl)
	}
	f.members[m.Node] = entry
	f.notifyMembersLocked()
	return nil
}

func (f *Fake) membersLocked() []election.Member {
	ms := make([]election.Member, 0, len(f.members))
	for _, e := range f.members {
		ms = append(ms, e.m)
	}
	slices.SortFunc(ms, func(a, b election.Member) int { return strings.Compare(a.Node, b.Node) })
	return ms
}

func (f *Fake) notifyMembersLocked() {
	ms := f.membersLocked()
	for w := range f.memberWatches {
		w.set(ms)
	}
}

// Members lists the member records that have not expired.
func (e *Elector) Members(ctx context.Context) ([]election.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := e.checkLocked(); err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	return f.membersLocked(), nil
}

// WatchMembers sends the member list, then the whole list after every
// change, as NATSElector.WatchMembers does.
func (e *Elector) WatchMembers(ctx context.Context) (<-chan []election.Member, error) {
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := e.checkLocked(); err != nil {
		return nil, fmt.Errorf("watch members: %w", err)
	}
	w := newWatch[[]election.Member](ctx, func(w *watch[[]election.Member]) {
		f.mu.Lock()
		delete(f.memberWatches, w)
		f.mu.Unlock()
	})
	f.memberWatches[w] = struct{}{}
	w.set(f.membersLocked())
	e.addStop(w.stop)
	return w.out, nil
}

// ISR returns the ISR and its revision.
func (e *Elector) ISR(ctx context.Context) (election.ISR, uint64, error) {
	if err := ctx.Err(); err != nil {
		return election.ISR{}, 0, fmt.Errorf("read isr: %w", err)
	}
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := e.checkLocked(); err != nil {
		return election.ISR{}, 0, fmt.Errorf("read isr: %w", err)
	}
	isr := f.isr
	isr.Members = slices.Clone(isr.Members)
	return isr, f.isrRev, nil
}

// SetISR writes the ISR if it is still at prevRev.
func (e *Elector) SetISR(ctx context.Context, isr election.ISR, prevRev uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("set isr: %w", err)
	}
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := e.checkLocked(); err != nil {
		return 0, fmt.Errorf("set isr: %w", err)
	}
	if prevRev != f.isrRev {
		return 0, fmt.Errorf("set isr at revision %d: %w", prevRev, election.ErrConflict)
	}
	f.rev++
	f.isr = election.ISR{Epoch: isr.Epoch, Members: slices.Clone(isr.Members)}
	f.isrRev = f.rev
	return f.rev, nil
}

// ISRValue returns the ISR and its revision without an Elector.
func (f *Fake) ISRValue() (election.ISR, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	isr := f.isr
	isr.Members = slices.Clone(isr.Members)
	return isr, f.isrRev
}

// Close ends this node's leases (ErrClosed) without deleting the leader
// key, and its watches.
func (e *Elector) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	leases, stops := e.leases, e.stops
	e.leases, e.stops = nil, nil
	e.mu.Unlock()
	e.f.mu.Lock()
	for _, l := range leases {
		e.f.loseLocked(l, election.ErrClosed)
	}
	e.f.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	return nil
}

func (e *Elector) addStop(stop func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stops = append(e.stops, stop)
}

// Lease is the fake's Leadership.
type Lease struct {
	f *Fake
	// Guarded by f.mu.
	info     election.LeaderInfo
	serveAt  time.Time
	deadline time.Time
	rev      uint64
	err      error
	lost     chan struct{}
	paused   bool
}

var _ election.Leadership = (*Lease)(nil)

// Epoch is the revision of the winning Campaign.
func (l *Lease) Epoch() uint64 { return l.info.Epoch }

// ServeAt is the fake time at which the leader may serve.
func (l *Lease) ServeAt() time.Time { return l.serveAt }

// Deadline is the fence on the fake clock; zero once the lease is over.
func (l *Lease) Deadline() time.Time {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	return l.deadline
}

// Valid reports whether the fake clock is before Deadline.
func (l *Lease) Valid() bool {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	return l.err == nil && l.f.now.Before(l.deadline)
}

// Lost is closed when the lease ends.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err says why the lease ended, nil while it is held.
func (l *Lease) Err() error {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	return l.err
}

// Info is the leader value this lease wrote, with its epoch.
func (l *Lease) Info() election.LeaderInfo { return l.info }

// Release fences and deletes the leader key if it is still this lease's.
func (l *Lease) Release(ctx context.Context) error {
	f := l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	epoch := l.info.Epoch
	if l.err != nil {
		return fmt.Errorf("release epoch %d: %w", epoch, l.err)
	}
	f.loseLocked(l, fmt.Errorf("epoch %d: %w", epoch, election.ErrReleased))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("release epoch %d: %w", epoch, err)
	}
	if f.down {
		return fmt.Errorf("release epoch %d: %w", epoch, ErrUnavailable)
	}
	if f.holder != l || f.leaderRev != l.rev {
		return fmt.Errorf("release epoch %d: %w", epoch, election.ErrLeaseLost)
	}
	f.clearLeaderLocked(true)
	return nil
}

// watch delivers the latest value of something to a channel, coalescing
// values the reader has not taken yet.
type watch[T any] struct {
	out    chan T
	notify chan struct{}
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	latest  T
	pending bool
}

func newWatch[T any](ctx context.Context, unregister func(*watch[T])) *watch[T] {
	w := &watch[T]{out: make(chan T), notify: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(w.out)
		defer unregister(w)
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.done:
				return
			case <-w.notify:
			}
			for {
				w.mu.Lock()
				v, ok := w.latest, w.pending
				w.pending = false
				w.mu.Unlock()
				if !ok {
					break
				}
				select {
				case w.out <- v:
				case <-ctx.Done():
					return
				case <-w.done:
					return
				}
			}
		}
	}()
	return w
}

func (w *watch[T]) set(v T) {
	w.mu.Lock()
	w.latest, w.pending = v, true
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watch[T]) stop() { w.once.Do(func() { close(w.done) }) }
