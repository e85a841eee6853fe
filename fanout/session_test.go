package fanout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/internal/tlsconf/tlstest"
)

// memSource is a Source over a backlog.Log, guarded by a mutex, with a
// close-to-broadcast channel for appends.
type memSource struct {
	mu        sync.Mutex
	log       *backlog.Log
	epoch     uint64
	committed uint64
	appended  chan struct{}
}

func newMemSource(opts backlog.Options, epoch uint64) *memSource {
	return &memSource{log: backlog.NewLog(opts), epoch: epoch, appended: make(chan struct{})}
}

func payloadFor(off uint64) []byte {
	return fmt.Appendf(nil, "entry-%06d-%s", off, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
}

// append adds n entries; it is what "the leader appending" means here.
func (s *memSource) append(t testing.TB, n int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var off uint64
	for range n {
		var err error
		off, err = s.log.Append(s.epoch, payloadFor(s.log.Next()))
		if err != nil {
			t.Errorf("append: %v", err)
			return 0
		}
	}
	close(s.appended)
	s.appended = make(chan struct{})
	return off
}

func (s *memSource) Resume(lastEpoch, nextOffset uint64) backlog.Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Resume(lastEpoch, nextOffset)
}

func (s *memSource) Read(from uint64, maxBytes int, dst []backlog.Entry) ([]backlog.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := len(dst)
	dst, err := s.log.Read(from, maxBytes, dst)
	for i := start; i < len(dst); i++ {
		dst[i].Payload = append([]byte(nil), dst[i].Payload...)
	}
	return dst, err
}

func (s *memSource) Last() backlog.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.LastPosition()
}

func (s *memSource) Committed() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

func (s *memSource) setCommitted(c uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.committed = max(s.committed, c)
}

func (s *memSource) Epoch() uint64 { return s.epoch }

func (s *memSource) Appended() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appended
}

// fakeApplier is an in-memory store that insists on exactly-once, in-order
// apply and checks payloads.
type fakeApplier struct {
	mu      sync.Mutex
	pos     backlog.Position
	applied []uint64
	batches int
	bad     error
	// block, when set, makes Apply wait for it (or ctx): a stalled store.
	block chan struct{}
}

func (a *fakeApplier) Position(context.Context) (backlog.Position, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pos, nil
}

func (a *fakeApplier) Apply(ctx context.Context, entries []backlog.Entry) (backlog.Position, error) {
	if a.block != nil {
		select {
		case <-a.block:
		case <-ctx.Done():
			return a.Position(ctx)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.batches++
	for _, e := range entries {
		if e.Offset != a.pos.Offset+1 || string(e.Payload) != string(payloadFor(e.Offset)) {
			a.bad = fmt.Errorf("apply %d after %d (payload %q)", e.Offset, a.pos.Offset, e.Payload)
			return a.pos, a.bad
		}
		a.applied = append(a.applied, e.Offset)
		a.pos = backlog.Position{Epoch: e.Epoch, Offset: e.Offset}
	}
	return a.pos, nil
}

func (a *fakeApplier) offset() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pos.Offset
}

// check verifies the store holds exactly 1..last, once each.
func (a *fakeApplier) check(t *testing.T, last uint64) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bad != nil {
		t.Fatalf("applier: %v", a.bad)
	}
	if uint64(len(a.applied)) != last {
		t.Fatalf("applied %d entries, want %d", len(a.applied), last)
	}
	for i, off := range a.applied {
		if off != uint64(i+1) {
			t.Fatalf("applied[%d] = %d", i, off)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// leakCheck returns a func that waits for the goroutine count to settle back
// to what it was.
func leakCheck(t *testing.T) func() {
	base := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("goroutines: %d, want ≤ %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

type runningLeader struct {
	*Leader
	addr string
	stop func() error
}

func startLeader(t *testing.T, addr string, cfg LeaderConfig, src Source) *runningLeader {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLeader(cfg, src, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return &runningLeader{Leader: l, addr: ln.Addr().String(), stop: stop}
}

type runningFollower struct {
	*Follower
	app  *fakeApplier
	stop func() error
	done chan error
}

func startFollower(t *testing.T, cfg FollowerConfig, app *fakeApplier) *runningFollower {
	t.Helper()
	if cfg.Group == "" {
		cfg.Group = "g"
	}
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	f := NewFollower(cfg, app, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &runningFollower{Follower: f, app: app, stop: stop, done: done}
}

func leaderConfig() LeaderConfig {
	return LeaderConfig{
		Group:         "g",
		Node:          "leader",
		Heartbeat:     10 * time.Millisecond,
		MaxBatchBytes: 2048,
		Tracker:       Config{MaxLag: time.Minute, MaxInflightEntries: 64},
	}
}

func followerStatus(l *Leader, node string) FollowerStatus {
	for _, f := range l.Status().Followers {
		if f.Node == node {
			return f
		}
	}
	return FollowerStatus{}
}

func TestSessionCatchUpThenFollow(t *testing.T) {
	defer leakCheck(t)()
	src := newMemSource(backlog.Options{}, 1)
	src.append(t, 2000)
	l := startLeader(t, "127.0.0.1:0", leaderConfig(), src)
	f := startFollower(t, FollowerConfig{Node: "a", Addr: l.addr}, &fakeApplier{})

	waitFor(t, "catch-up", func() bool { return f.app.offset() == 2000 })
	for range 50 {
		src.append(t, 10)
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "live entries", func() bool { return f.app.offset() == 2500 })
	waitFor(t, "ack", func() bool { return followerStatus(l.Leader, "a").Acked == 2500 })
	waitFor(t, "heartbeat", func() bool { return f.Status().LeaderLast == 2500 && f.Status().HeartbeatAge > 0 })

	f.app.check(t, 2500)
	if b := f.app.batches; b < 50 {
		t.Errorf("catch-up in %d batches; want many (byte-capped)", b)
	}
	st := f.Status()
	if !st.Connected || st.LeaderEpoch != 1 || st.Applied.Offset != 2500 || st.LeaderNode != "leader" {
		t.Errorf("follower status %+v", st)
	}
	if err := f.stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if err := l.stop(); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestSessionAcksCommit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy ackpolicy.Policy
		// blockedByB: the policy cannot commit with only a.
		blockedByB bool
	}{
		{"quorum", ackpolicy.QuorumAcks(), false},
		{"all", ackpolicy.AllISRAcks(3), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer leakCheck(t)()
			src := newMemSource(backlog.Options{}, 1)
			src.append(t, 300)
			cfg := leaderConfig()
			var leader *Leader
			var lmu sync.Mutex
			cfg.OnAck = func() {
				lmu.Lock()
				l := leader
				lmu.Unlock()
				src.setCommitted(ackpolicy.Commit(tc.policy, l.State(3)))
			}
			lmu.Lock()
			l := startLeader(t, "127.0.0.1:0", cfg, src)
			leader = l.Leader
			lmu.Unlock()
			l.WithTracker(func(tr *Tracker) { tr.SetISR([]string{"leader", "a", "b"}, time.Now()) })

			a := startFollower(t, FollowerConfig{Node: "a", Addr: l.addr}, &fakeApplier{})
			waitFor(t, "a acked", func() bool { return followerStatus(l.Leader, "a").Acked == 300 })
			if tc.blockedByB {
				time.Sleep(50 * time.Millisecond)
				if c := src.Committed(); c != 0 {
					t.Fatalf("committed %d without b", c)
				}
			} else {
				waitFor(t, "quorum commit", func() bool { return src.Committed() == 300 })
			}
			b := startFollower(t, FollowerConfig{Node: "b", Addr: l.addr}, &fakeApplier{})
			waitFor(t, "commit", func() bool { return src.Committed() == 300 })
			waitFor(t, "b caught up", func() bool { return b.app.offset() == 300 })
			waitFor(t, "followers see commit", func() bool {
				return a.Status().Committed == 300 && b.Status().Committed == 300
			})
			a.app.check(t, 300)
			b.app.check(t, 300)
			_, _ = a.stop(), b.stop()
			_ = l.stop()
		})
	}
}

func TestSessionReconnectResumes(t *testing.T) {
	defer leakCheck(t)()
	src := newMemSource(backlog.Options{}, 1)
	src.append(t, 400)
	l1 := startLeader(t, "127.0.0.1:0", leaderConfig(), src)
	f := startFollower(t, FollowerConfig{Node: "a", Addr: l1.addr}, &fakeApplier{})
	waitFor(t, "first session", func() bool { return f.app.offset() == 400 })

	// The leader goes away mid-stream; the follower keeps retrying.
	if err := l1.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "disconnect", func() bool { return !f.Status().Connected })
	src.append(t, 400)
	l2 := startLeader(t, l1.addr, leaderConfig(), src)
	waitFor(t, "resumed", func() bool { return f.app.offset() == 800 })
	f.app.check(t, 800) // nothing applied twice, nothing missing
	if f.Status().Reconnects == 0 {
		t.Error("no reconnect counted")
	}
	if s := followerStatus(l2.Leader, "a"); !s.Connected {
		t.Errorf("leader 2 sees %+v", s)
	}
	_ = f.stop()
	_ = l2.stop()
}

func TestSessionOutOfRetentionFullResync(t *testing.T) {
	defer leakCheck(t)()
	src := newMemSource(backlog.Options{MaxBytes: 4096}, 2)
	src.append(t, 500)
	l := startLeader(t, "127.0.0.1:0", leaderConfig(), src)
	f := startFollower(t, FollowerConfig{Node: "a", Addr: l.addr}, &fakeApplier{})
	err := <-f.done
	var ve *VerdictError
	if !errors.Is(err, ErrNeedFullResync) || !errors.As(err, &ve) || ve.Decision.Verdict != backlog.FullResync {
		t.Fatalf("Run = %v, want a fullresync VerdictError", err)
	}
	if ve.LeaderEpoch != 2 || ve.LeaderNode != "leader" || ve.Decision.Reason == nil {
		t.Errorf("verdict %+v", ve)
	}
	f.done <- err // for stop
	_ = l.stop()
}

func TestSessionRefused(t *testing.T) {
	defer leakCheck(t)()
	src := newMemSource(backlog.Options{}, 1)
	cfg := leaderConfig()
	var asked sync.Map
	cfg.Allow = func(_ context.Context, node string) error {
		asked.Store(node, true)
		if node != "a" {
			return fmt.Errorf("node %q is not a member", node)
		}
		return nil
	}
	l := startLeader(t, "127.0.0.1:0", cfg, src)

	// Another group: refused for good.
	f := startFollower(t, FollowerConfig{Group: "other", Node: "a", Addr: l.addr}, &fakeApplier{})
	err := <-f.done
	var pe *PeerError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &pe) || pe.Code != ErrCodeGroup {
		t.Errorf("other group: Run = %v, want ErrRejected", err)
	}
	f.done <- err

	// Not a member: refused, but it may be one that has not published
	// itself yet, so it keeps knocking.
	m := startFollower(t, FollowerConfig{Node: "mallory", Addr: l.addr}, &fakeApplier{})
	waitFor(t, "mallory refused three times", func() bool { return m.Status().Reconnects >= 3 })
	if _, ok := asked.Load("mallory"); !ok {
		t.Error("Allow was not asked about mallory")
	}
	if st := m.Status(); st.Sessions != 0 || st.Connected {
		t.Errorf("mallory streamed: %+v", st)
	}
	if len(l.Status().Followers) != 0 {
		t.Errorf("leader tracks %+v", l.Status().Followers)
	}
	_ = m.stop()

	// The member streams.
	a := startFollower(t, FollowerConfig{Node: "a", Addr: l.addr}, &fakeApplier{})
	waitFor(t, "a streams", func() bool { return a.Status().Connected })
	_ = a.stop()
	_ = l.stop()
}

// TestSessionTLS streams over mutual TLS, and refuses a follower whose
// certificate another CA signed, and one with none.
func TestSessionTLS(t *testing.T) {
	defer leakCheck(t)()
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	leaderCert := ca.Loopback(t, "leader").TLSCertificate(t)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{leaderCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	peer := func(c *tlstest.CA) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{c.Loopback(t, "f").TLSCertificate(t)}, RootCAs: ca.Pool()}
	}

	src := newMemSource(backlog.Options{}, 1)
	src.append(t, 20)
	cfg := leaderConfig()
	cfg.TLS = srvTLS
	l := startLeader(t, "127.0.0.1:0", cfg, src)

	app := &fakeApplier{}
	good := startFollower(t, FollowerConfig{Node: "good", Addr: l.addr, TLS: peer(ca)}, app)
	waitFor(t, "good caught up over TLS", func() bool { return good.Status().Applied.Offset == src.Last().Offset })

	for name, fc := range map[string]*tls.Config{"other CA": peer(other), "no certificate": {RootCAs: ca.Pool()}} {
		f := startFollower(t, FollowerConfig{Node: "bad", Addr: l.addr, TLS: fc}, &fakeApplier{})
		waitFor(t, name+" refused twice", func() bool { return f.Status().Reconnects >= 2 })
		if st := f.Status(); st.Sessions != 0 {
			t.Errorf("%s: streamed %+v", name, st)
		}
		_ = f.stop()
	}
	// A plain-TCP follower gets nowhere either.
	plain := startFollower(t, FollowerConfig{Node: "plain", Addr: l.addr}, &fakeApplier{})
	waitFor(t, "plain refused twice", func() bool { return plain.Status().Reconnects >= 2 })
	_ = plain.stop()
	if st := followerStatus(l.Leader, "good"); !st.Connected {
		t.Errorf("good follower dropped meanwhile: %+v", st)
	}
	_ = good.stop()
	_ = l.stop()
}

func TestSessionStalledFollower(t *testing.T) {
	defer leakCheck(t)()
	src := newMemSource(backlog.Options{}, 1)
	src.append(t, 10)
	cfg := leaderConfig()
	cfg.Tracker = Config{MaxLag: 200 * time.Millisecond, MaxInflightEntries: 8}
	l := startLeader(t, "127.0.0.1:0", cfg, src)
	l.WithTracker(func(tr *Tracker) { tr.SetISR([]string{"leader", "fast", "stuck"}, time.Now()) })

	stuck := startFollower(t, FollowerConfig{Node: "stuck", Addr: l.addr}, &fakeApplier{block: make(chan struct{})})
	waitFor(t, "stuck connected", func() bool { return followerStatus(l.Leader, "stuck").Sent > 0 })
	fast := startFollower(t, FollowerConfig{Node: "fast", Addr: l.addr}, &fakeApplier{})

	// The leader appends at its own pace: nothing waits on followers.
	start := time.Now()
	for range 100 {
		src.append(t, 20)
		l.Appended(src.Last().Offset)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("appends took %v", d)
	}
	waitFor(t, "fast follower", func() bool { return fast.app.offset() == 2010 })
	fast.app.check(t, 2010)

	s := followerStatus(l.Leader, "stuck")
	if s.Acked != 0 || s.Sent > 2*8 || !s.Connected {
		t.Errorf("stuck follower %+v: want nothing acked and the window bounding what was sent", s)
	}
	waitFor(t, "ISR shrink proposal", func() bool {
		var c ISRChange
		var ok bool
		l.WithTracker(func(tr *Tracker) { c, ok = tr.Propose(time.Now()) })
		return ok && len(c.Removed) == 1 && c.Removed[0] == "stuck" && len(c.Added) == 0
	})
	_, _ = fast.stop(), stuck.stop()
	_ = l.stop()
}

// laggingLast is a source whose Last trails what Read returns by one entry,
// as when an append lands between the sender's Last and its Read.
type laggingLast struct{ *memSource }

func (s laggingLast) Last() backlog.Position {
	p := s.memSource.Last()
	if p.Offset > 0 {
		p.Offset--
	}
	return p
}

func TestSessionEntriesAppendedDuringRead(t *testing.T) {
	defer leakCheck(t)()
	src := newMemSource(backlog.Options{}, 1)
	src.append(t, 10)
	l := startLeader(t, "127.0.0.1:0", leaderConfig(), laggingLast{src})
	f := startFollower(t, FollowerConfig{Node: "a", Addr: l.addr}, &fakeApplier{})
	waitFor(t, "catch-up", func() bool { return f.app.offset() >= 9 })
	for range 20 {
		src.append(t, 1)
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "live entries", func() bool { return f.app.offset() >= 29 })
	f.app.check(t, f.app.offset())
	// The batch that held more than Last said did not end the session.
	if n := f.Status().Sessions; n != 1 {
		t.Errorf("%d sessions, want 1: the session restarted", n)
	}
	_ = f.stop()
	_ = l.stop()
}
