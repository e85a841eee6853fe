package election_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/test/harness"
)

// ttl is the lease TTL of these tests. The server's minimum is a second;
// a little more keeps the leases alive through the stalls of a busy
// two-core machine (a race-enabled link next door), which a real
// deployment's 3s TTL tolerates too.
const ttl = 1500 * time.Millisecond

// backend is a NATS deployment the elector runs against.
type backend struct {
	name     string
	url      string
	replicas int
	cluster  *harness.NATSCluster // nil unless a cluster
}

// TestNATS runs the elector against a nats-server process, an embedded
// server and a three-node cluster with R3 buckets.
func TestNATS(t *testing.T) {
	t.Parallel()
	setups := []struct {
		name  string
		start func(t *testing.T) backend
	}{
		{"server", func(t *testing.T) backend {
			n := harness.StartNATS(t)
			return backend{name: "server", url: n.URL, replicas: 1}
		}},
		{"embedded", func(t *testing.T) backend {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			e, err := election.StartEmbedded(ctx, election.EmbeddedOptions{
				Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Logger: testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Shutdown)
			return backend{name: "embedded", url: e.URL(), replicas: 1}
		}},
		{"cluster", func(t *testing.T) backend {
			c := harness.StartNATSCluster(t, 3)
			return backend{name: "cluster", url: c.URL(), replicas: 3, cluster: c}
		}},
	}
	// Subtests run from goroutines rather than with t.Parallel: they
	// mostly wait for leases to expire, and -parallel (GOMAXPROCS by
	// default) would serialise them.
	concurrently(t, len(setups), func(i int) {
		s := setups[i]
		t.Run(s.name, func(t *testing.T) {
			b := s.start(t)
			t.Run("group", func(t *testing.T) {
				tcs := []struct {
					name string
					f    func(*testing.T, backend)
				}{
					{"ConcurrentCampaign", testConcurrentCampaign},
					{"RenewalKeepsLease", testRenewalKeepsLease},
					{"PausedLeaderExpires", testPausedLeaderExpires},
					{"Release", testRelease},
					{"ForeignWriteLosesLease", testForeignWriteLosesLease},
					{"LostAnswerAdopted", testLostAnswerAdopted},
					{"Members", testMembers},
					{"ISR", testISR},
					{"WatchLeader", testWatchLeader},
					{"WatchLeaderConsumerLost", testWatchLeaderConsumerLost},
					{"BucketTTLMismatch", testBucketTTLMismatch},
				}
				// Run from goroutines rather than with t.Parallel: the
				// tests mostly wait for leases to expire, and -parallel
				// (GOMAXPROCS by default) would serialise them.
				// Make the buckets one by one first: making ten R3 streams
				// at once keeps a small cluster's meta layer busy for long
				// enough to stall lease renewals.
				for _, tc := range tcs {
					e := newElector(t, b, b.name+"_group_"+tc.name)
					_ = e.Close()
				}
				concurrently(t, len(tcs), func(i int) {
					t.Run(tcs[i].name, func(t *testing.T) { tcs[i].f(t, b) })
				})
			})
			if b.cluster != nil {
				// These kill servers, so they run after the others.
				t.Run("FollowerServerLoss", func(t *testing.T) { testFollowerServerLoss(t, b) })
				t.Run("StreamLeaderLoss", func(t *testing.T) { testStreamLeaderLoss(t, b) })
			}
		})
	})
}

// concurrently calls f(0)…f(n-1) in goroutines and waits for them.
func concurrently(t *testing.T, n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// testLogger logs to t until the test ends, and drops what comes later (a
// NATS callback may fire after the test).
func testLogger(t testing.TB) zerolog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs last
	return zerolog.New(zerolog.ConsoleWriter{Out: w, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}).
		Level(zerolog.DebugLevel).Hook(zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		e.Str("at", time.Now().Format("15:04:05.000"))
	}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

var nonGroup = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// group is a group name unique to the test.
func group(t *testing.T) string {
	return nonGroup.ReplaceAllString(strings.TrimPrefix(t.Name(), "TestNATS/"), "_")
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newElector(t *testing.T, b backend, grp string) *election.NATSElector {
	t.Helper()
	return newElectorURL(t, b, b.url, grp, ttl)
}

func newElectorURL(t *testing.T, b backend, url, grp string, lease time.Duration) *election.NATSElector {
	t.Helper()
	e, err := election.NewNATS(ctxT(t, 30*time.Second), election.Options{
		URL: url, Group: grp, TTL: lease, Replicas: b.replicas, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("new elector: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// jetStream is a JetStream client on a connection of its own.
func jetStream(t *testing.T, b backend) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(b.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// bucket opens the group's bucket on a connection of its own.
func bucket(t *testing.T, b backend, grp string) jetstream.KeyValue {
	t.Helper()
	kv, err := jetStream(t, b).KeyValue(ctxT(t, 10*time.Second), election.BucketName(grp))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func info(node string) election.LeaderInfo {
	return election.LeaderInfo{Node: node, Addrs: election.Addrs{
		Client: node + ":6380", Repl: node + ":7380", HTTP: node + ":9380",
	}}
}

func waitLost(t *testing.T, l election.Leadership, within time.Duration) time.Time {
	t.Helper()
	select {
	case <-l.Lost():
		return time.Now()
	case <-time.After(within):
		t.Fatalf("lease epoch %d not lost within %s (valid %v)", l.Epoch(), within, l.Valid())
		return time.Time{}
	}
}

func notLost(t *testing.T, l election.Leadership) {
	t.Helper()
	select {
	case <-l.Lost():
		t.Fatalf("lease epoch %d lost: %v", l.Epoch(), l.Err())
	default:
	}
	if !l.Valid() {
		t.Fatalf("lease epoch %d not valid (deadline %s)", l.Epoch(), l.Deadline())
	}
	if l.Err() != nil {
		t.Fatalf("lease epoch %d: err %v", l.Epoch(), l.Err())
	}
}

// next reads the next LeaderInfo from a watch.
func next(t *testing.T, ch <-chan election.LeaderInfo, within time.Duration) election.LeaderInfo {
	t.Helper()
	select {
	case li, ok := <-ch:
		if !ok {
			t.Fatal("leader watch closed")
		}
		return li
	case <-time.After(within):
		t.Fatalf("no leader change within %s", within)
		return election.LeaderInfo{}
	}
}

// campaignUntil campaigns until it wins or the time is up.
func campaignUntil(t *testing.T, e election.Elector, me election.LeaderInfo, within time.Duration) (election.Leadership, time.Time, time.Time) {
	t.Helper()
	end := time.Now().Add(within)
	for {
		before := time.Now()
		l, err := e.Campaign(ctxT(t, 5*time.Second), me)
		after := time.Now()
		if err == nil {
			return l, before, after
		}
		if !errors.Is(err, election.ErrLeaseHeld) {
			t.Logf("campaign %s: %v", me.Node, err)
		}
		if time.Now().After(end) {
			t.Fatalf("campaign %s: not won within %s: %v", me.Node, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testConcurrentCampaign(t *testing.T, b backend) {
	grp := group(t)
	const n = 5
	electors := make([]*election.NATSElector, n)
	for i := range electors {
		electors[i] = newElector(t, b, grp)
	}
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		leases  = make([]election.Leadership, n)
		errs    = make([]error, n)
		leaders int
	)
	for i, e := range electors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			leases[i], errs[i] = e.Campaign(context.Background(), info(fmt.Sprintf("n%d", i+1)))
		}()
	}
	close(start)
	wg.Wait()
	var winner election.Leadership
	var winnerNode string
	for i := range n {
		switch {
		case errs[i] == nil:
			leaders++
			winner, winnerNode = leases[i], fmt.Sprintf("n%d", i+1)
		case errors.Is(errs[i], election.ErrLeaseHeld):
			t.Logf("n%d: %v", i+1, errs[i])
		default:
			t.Errorf("n%d: want ErrLeaseHeld, got %v", i+1, errs[i])
		}
	}
	if leaders != 1 {
		t.Fatalf("%d winners, want exactly 1", leaders)
	}
	notLost(t, winner)

	// The epoch is the revision of the winning Create: the key is still
	// at it, without an epoch in the value, or renewals (History is 1, so
	// they replace it) carry it.
	kv := bucket(t, b, grp)
	entry, err := kv.Get(ctxT(t, 5*time.Second), "leader")
	if err != nil {
		t.Fatal(err)
	}
	var v election.LeaderInfo
	if err := json.Unmarshal(entry.Value(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Node != winnerNode ||
		(v.Epoch == 0 && entry.Revision() != winner.Epoch()) ||
		(v.Epoch != 0 && (v.Epoch != winner.Epoch() || entry.Revision() <= winner.Epoch())) {
		t.Fatalf("leader key at revision %d: %+v; winner %s epoch %d", entry.Revision(), v, winnerNode, winner.Epoch())
	}
	ch, err := electors[0].WatchLeader(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if li := next(t, ch, 5*time.Second); li.Node != winnerNode || li.Epoch != winner.Epoch() || li.Addrs.Repl != winnerNode+":7380" {
		t.Fatalf("watch: %+v, want %s epoch %d", li, winnerNode, winner.Epoch())
	}
	// A second round, against a held lease, has no winner.
	for i, e := range electors {
		if _, err := e.Campaign(ctxT(t, 5*time.Second), info(fmt.Sprintf("n%d", i+1))); !errors.Is(err, election.ErrLeaseHeld) {
			t.Fatalf("n%d against a held lease: %v", i+1, err)
		}
	}
}

func testRenewalKeepsLease(t *testing.T, b backend) {
	grp := group(t)
	a, c := newElector(t, b, grp), newElector(t, b, grp)
	l, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	for range 6 { // 3 TTL
		time.Sleep(ttl / 2)
		notLost(t, l)
		if until := time.Until(l.Deadline()); until <= 0 || until > ttl {
			t.Fatalf("deadline in %s, want within (0, %s]", until, ttl)
		}
	}
	if _, err := c.Campaign(ctxT(t, 5*time.Second), info("c")); !errors.Is(err, election.ErrLeaseHeld) {
		t.Fatalf("campaign against a renewed lease: %v", err)
	}
	entry, err := bucket(t, b, grp).Get(ctxT(t, 5*time.Second), "leader")
	if err != nil {
		t.Fatal(err)
	}
	var v election.LeaderInfo
	if err := json.Unmarshal(entry.Value(), &v); err != nil {
		t.Fatal(err)
	}
	if entry.Revision() <= l.Epoch() || v.Epoch != l.Epoch() || v.Node != "a" {
		t.Fatalf("leader key at revision %d holds %+v; want renewals after epoch %d carrying it", entry.Revision(), v, l.Epoch())
	}
	if err := l.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// watchedLeader has node a of the test's group take the lease and node c
// watch it, and returns a's lease, c, and c's watch past its first report.
func watchedLeader(t *testing.T, b backend) (election.Leadership, *election.NATSElector, <-chan election.LeaderInfo) {
	t.Helper()
	grp := group(t)
	a, c := newElector(t, b, grp), newElector(t, b, grp)
	la, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	watch, err := c.WatchLeader(ctxT(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if li := next(t, watch, 5*time.Second); li.Node != "a" {
		t.Fatalf("watch: %+v, want a", li)
	}
	return la, c, watch
}

func testPausedLeaderExpires(t *testing.T, b backend) {
	la, c, watch := watchedLeader(t, b)
	time.Sleep(ttl / 2) // let a renewal or two land

	election.PauseRenewals(la)
	deadline := la.Deadline()
	if !la.Valid() || deadline.IsZero() {
		t.Fatal("lease not valid right after pausing")
	}
	lostAt := waitLost(t, la, 2*ttl)
	if !errors.Is(la.Err(), election.ErrLeaseExpired) {
		t.Fatalf("err %v, want ErrLeaseExpired", la.Err())
	}
	if la.Valid() || lostAt.Before(deadline) {
		t.Fatalf("valid %v, lost at %s before deadline %s", la.Valid(), lostAt.Format(time.StampMicro), deadline.Format(time.StampMicro))
	}

	// The server expires the key (leaving a marker) only after the fence.
	gone := next(t, watch, 2*ttl)
	goneSeen := time.Now()
	if gone.Held() {
		t.Fatalf("watch: %+v, want the key gone", gone)
	}
	t.Logf("fence deadline %s, server expiry %s (%s later), seen %s",
		deadline.Format(time.StampMicro), gone.Stored.Format(time.StampMicro),
		gone.Stored.Sub(deadline.Round(0)), goneSeen.Format(time.StampMicro))
	if !deadline.Round(0).Before(gone.Stored) || !deadline.Before(goneSeen) {
		t.Fatalf("fence deadline %s is not before the server expiry %s", deadline, gone.Stored)
	}

	lc, before, after := campaignUntil(t, c, info("c"), 2*ttl)
	if lc.Epoch() <= la.Epoch() {
		t.Fatalf("new epoch %d, old %d", lc.Epoch(), la.Epoch())
	}
	// c watched a's renewals, so it serves one TTL after the last one
	// arrived: after a's fence, and, the key having expired a TTL after
	// that renewal, about at once.
	sa := lc.ServeAt()
	t.Logf("old fence %s, campaign %s…%s, serve at %s", deadline.Format(time.StampMicro),
		before.Format(time.StampMicro), after.Format(time.StampMicro), sa.Format(time.StampMicro))
	if !sa.After(deadline) {
		t.Fatalf("serve at %s, not after the old holder's fence %s", sa, deadline)
	}
	if sa.After(after.Add(ttl / 2)) {
		t.Fatalf("serve at %s, want about the campaign time %s: the renewal was seen", sa, after)
	}

	if li := next(t, watch, 5*time.Second); li.Node != "c" || li.Epoch != lc.Epoch() {
		t.Fatalf("watch: %+v, want c epoch %d", li, lc.Epoch())
	}

	// A node that never saw a renewal of c's lease waits one TTL after
	// its own Create.
	election.PauseRenewals(lc)
	waitLost(t, lc, 2*ttl)
	if gone := next(t, watch, 2*ttl); gone.Held() {
		t.Fatalf("watch: %+v, want the key gone", gone)
	}
	d := newElector(t, b, group(t))
	ld, before, after := campaignUntil(t, d, info("d"), 2*ttl)
	if sa := ld.ServeAt(); sa.Before(before.Add(ttl)) || sa.After(after.Add(ttl)) {
		t.Fatalf("serve at %s, want campaign time + %s (%s…%s)", sa, ttl, before.Add(ttl), after.Add(ttl))
	}
	if li := next(t, watch, 5*time.Second); li.Node != "d" || li.Epoch != ld.Epoch() {
		t.Fatalf("watch: %+v, want d epoch %d", li, ld.Epoch())
	}
	// Renewing a lost lease does not come back.
	election.ResumeRenewals(la)
	if la.Valid() {
		t.Fatal("lost lease valid again")
	}
}

func testRelease(t *testing.T, b backend) {
	grp := group(t)
	a, c := newElector(t, b, grp), newElector(t, b, grp)
	la, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	watch, err := c.WatchLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if li := next(t, watch, 5*time.Second); li.Node != "a" {
		t.Fatalf("watch: %+v", li)
	}
	time.Sleep(ttl / 2)
	if err := la.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if la.Valid() || !errors.Is(la.Err(), election.ErrReleased) || !la.Deadline().IsZero() {
		t.Fatalf("after release: valid %v, err %v, deadline %s", la.Valid(), la.Err(), la.Deadline())
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("Lost not closed by Release")
	}
	if err := la.Release(ctxT(t, 5*time.Second)); !errors.Is(err, election.ErrReleased) {
		t.Fatalf("second release: %v", err)
	}
	if li := next(t, watch, 5*time.Second); li.Held() {
		t.Fatalf("watch after release: %+v", li)
	}

	before := time.Now()
	lc, err := c.Campaign(ctxT(t, 5*time.Second), info("c"))
	if err != nil {
		t.Fatal(err)
	}
	// After a release, the new leader serves at once.
	if sa := lc.ServeAt(); sa.Before(before) || sa.After(time.Now()) {
		t.Fatalf("serve at %s, want now (campaign began %s)", sa, before)
	}
	if lc.Epoch() <= la.Epoch() {
		t.Fatalf("new epoch %d, old %d", lc.Epoch(), la.Epoch())
	}
	if li := next(t, watch, 5*time.Second); li.Node != "c" {
		t.Fatalf("watch: %+v", li)
	}

	// An operator's plain delete is not a release: the next leader waits
	// until c's fence, one TTL after it saw c's last renewal.
	election.PauseRenewals(lc)
	fence := lc.Deadline()
	kv := bucket(t, b, grp)
	if err := kv.Delete(ctxT(t, 5*time.Second), "leader"); err != nil {
		t.Fatal(err)
	}
	ld, _, after := campaignUntil(t, a, info("a"), 2*ttl)
	if sa := ld.ServeAt(); !sa.After(fence) || sa.After(after.Add(ttl)) {
		t.Fatalf("after a plain delete: serve at %s, want after c's fence %s and by campaign time + %s", sa, fence, ttl)
	}
	election.ResumeRenewals(lc)
	waitLost(t, lc, 2*ttl)
	if !errors.Is(lc.Err(), election.ErrLeaseLost) && !errors.Is(lc.Err(), election.ErrLeaseExpired) {
		t.Fatalf("deleted lease: %v", lc.Err())
	}
}

func testForeignWriteLosesLease(t *testing.T, b backend) {
	grp := group(t)
	a, c := newElector(t, b, grp), newElector(t, b, grp)
	la, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's write moves the key past the lease's revision.
	foreign, _ := json.Marshal(election.LeaderInfo{Node: "intruder", Nonce: "x"})
	if _, err := bucket(t, b, grp).Put(ctxT(t, 5*time.Second), "leader", foreign); err != nil {
		t.Fatal(err)
	}
	waitLost(t, la, ttl)
	if !errors.Is(la.Err(), election.ErrLeaseLost) || la.Valid() {
		t.Fatalf("err %v valid %v, want ErrLeaseLost and fenced", la.Err(), la.Valid())
	}
	t.Logf("lost: %v", la.Err())
	if _, err := c.Campaign(ctxT(t, 5*time.Second), info("c")); !errors.Is(err, election.ErrLeaseHeld) {
		t.Fatalf("campaign against the intruder: %v", err)
	}
	if err := la.Release(ctxT(t, 5*time.Second)); !errors.Is(err, election.ErrLeaseLost) {
		t.Fatalf("release of a lost lease: %v", err)
	}
}

func testLostAnswerAdopted(t *testing.T, b backend) {
	grp := group(t)
	a := newElector(t, b, grp)
	la, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	for election.Revision(la) == la.Epoch() {
		if time.Since(la.ServeAt().Add(-ttl)) > ttl {
			t.Fatalf("no renewal within %s", ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}
	election.PauseRenewals(la)
	rev := election.Revision(la)
	// As if the answer to the last renewal had been lost: the next Update
	// at the older revision conflicts, and the leader finds its own write.
	election.SetRevision(la, la.Epoch())
	election.ResumeRenewals(la)
	time.Sleep(3 * ttl / 2)
	notLost(t, la)
	if election.Adoptions(la) < 1 || election.Revision(la) <= rev {
		t.Fatalf("adoptions %d, revision %d (was %d)", election.Adoptions(la), election.Revision(la), rev)
	}
}

func testMembers(t *testing.T, b backend) {
	grp := group(t)
	e := newElector(t, b, grp)
	ctx := ctxT(t, 30*time.Second)
	if ms, err := e.Members(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("empty directory: %v %v", ms, err)
	}
	watch, err := e.WatchMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms := <-watch; len(ms) != 0 {
		t.Fatalf("watch: %v", ms)
	}
	publish := func(nodes ...string) {
		for i, n := range nodes {
			m := election.Member{Node: n, Addrs: info(n).Addrs, Role: "follower", Epoch: 7, LastEpoch: 6,
				Applied: uint64(100 + i), Healthy: true, ISRMember: i%2 == 0}
			if err := e.Publish(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	publish("n3", "n1", "n2")
	ms, err := e.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Node != "n1" || ms[1].Node != "n2" || ms[2].Node != "n3" {
		t.Fatalf("members: %+v", ms)
	}
	if m := ms[2]; m.Applied != 100 || m.LastEpoch != 6 || m.Epoch != 7 || !m.Healthy || !m.ISRMember ||
		m.Addrs.HTTP != "n3:9380" || m.Revision == 0 || m.Stored.Before(start.Add(-time.Second)) ||
		m.Updated < start.UnixMilli() {
		t.Fatalf("n3: %+v", m)
	}
	if err := e.Publish(ctx, election.Member{Node: "bad node"}); err == nil {
		t.Fatal("published a bad node id")
	}

	// n1 and n2 keep publishing every TTL/3; n3 stops and expires.
	stop := time.After(ttl + 600*time.Millisecond)
	tick := time.NewTicker(election.HeartbeatInterval(ttl))
	defer tick.Stop()
	sawN3, n3Gone := false, false
	for !n3Gone {
		select {
		case <-tick.C:
			publish("n1", "n2")
		case ms := <-watch:
			var nodes []string
			for _, m := range ms {
				nodes = append(nodes, m.Node)
			}
			has := slices.Contains(nodes, "n3")
			sawN3 = sawN3 || has
			n3Gone = sawN3 && !has
			if n3Gone && strings.Join(nodes, ",") != "n1,n2" {
				t.Fatalf("watch after n3 expired: %v", nodes)
			}
		case <-stop:
			t.Fatalf("n3 has not expired from the watch after %s", time.Since(start))
		}
	}
	ms, err = e.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Node != "n1" || ms[1].Node != "n2" {
		t.Fatalf("members after n3 stopped: %+v", ms)
	}
}

func testISR(t *testing.T, b backend) {
	grp := group(t)
	e, f := newElector(t, b, grp), newElector(t, b, grp)
	ctx := ctxT(t, 30*time.Second)
	isr, rev, err := e.ISR(ctx)
	if err != nil || rev != 0 || len(isr.Members) != 0 {
		t.Fatalf("no ISR yet: %+v %d %v", isr, rev, err)
	}
	r1, err := e.SetISR(ctx, election.ISR{Epoch: 3, Members: []string{"n1", "n2", "n3"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.SetISR(ctx, election.ISR{Epoch: 3, Members: []string{"n1"}}, 0); !errors.Is(err, election.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	r2, err := f.SetISR(ctx, election.ISR{Epoch: 3, Members: []string{"n1", "n2"}}, r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("update: %d %v", r2, err)
	}
	if _, err := e.SetISR(ctx, election.ISR{Epoch: 3, Members: []string{"n1", "n3"}}, r1); !errors.Is(err, election.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	// The ISR outlives the bucket's MaxAge: it must survive its leader.
	time.Sleep(3 * ttl / 2)
	isr, rev, err = e.ISR(ctx)
	if err != nil || rev != r2 || isr.Epoch != 3 || strings.Join(isr.Members, ",") != "n1,n2" {
		t.Fatalf("ISR after its MaxAge: %+v rev %d (want %d) %v", isr, rev, r2, err)
	}
}

func testWatchLeader(t *testing.T, b backend) {
	grp := group(t)
	a, c := newElector(t, b, grp), newElector(t, b, grp)
	watch, err := c.WatchLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if li := next(t, watch, 5*time.Second); li.Held() || li.Revision != 0 {
		t.Fatalf("no leader yet: %+v", li)
	}
	la, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	li := next(t, watch, 5*time.Second)
	if li.Node != "a" || li.Epoch != la.Epoch() || li.Addrs.Client != "a:6380" || li.Nonce == "" || li.Stored.IsZero() {
		t.Fatalf("watch: %+v", li)
	}
	// Renewals are not changes.
	select {
	case li := <-watch:
		t.Fatalf("renewal sent as a change: %+v", li)
	case <-time.After(ttl):
	}
	notLost(t, la)

	// A second watch starts with the current holder.
	w2, err := a.WatchLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if li := next(t, w2, 5*time.Second); li.Node != "a" || li.Epoch != la.Epoch() || li.Revision <= la.Epoch() {
		t.Fatalf("second watch: %+v", li)
	}

	// Expiry.
	election.PauseRenewals(la)
	if li := next(t, watch, 3*ttl); li.Held() {
		t.Fatalf("watch after expiry: %+v", li)
	}
	// A watch started after the expiry sees no holder.
	w3, err := a.WatchLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if li := next(t, w3, 5*time.Second); li.Held() {
		t.Fatalf("watch begun after expiry: %+v", li)
	}
	lc, _, _ := campaignUntil(t, c, info("c"), 2*ttl)
	if li := next(t, watch, 5*time.Second); li.Node != "c" || li.Epoch != lc.Epoch() {
		t.Fatalf("watch: %+v", li)
	}
	// Release.
	if err := lc.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if li := next(t, watch, 5*time.Second); li.Held() {
		t.Fatalf("watch after release: %+v", li)
	}
}

// testWatchLeaderConsumerLost takes away the server-side consumer behind a
// leader watch, as losing the NATS server it lived on does. The lease's
// expiry must still reach the watch, from the direct read that a quiet
// watch falls back to, well before the client would notice the loss on its
// own.
func testWatchLeaderConsumerLost(t *testing.T, b backend) {
	la, _, watch := watchedLeader(t, b)
	stream, err := jetStream(t, b).Stream(ctxT(t, 5*time.Second), "KV_"+election.BucketName(group(t)))
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctxT(t, 5*time.Second))
	deleted := 0
	for name := range names.Name() {
		if err := stream.DeleteConsumer(ctxT(t, 5*time.Second), name); err != nil {
			t.Fatalf("delete consumer %s: %v", name, err)
		}
		deleted++
	}
	if deleted == 0 {
		t.Fatal("no consumer behind the watches")
	}
	election.PauseRenewals(la)
	start := time.Now()
	if li := next(t, watch, 4*ttl); li.Held() {
		t.Fatalf("watch after expiry: %+v", li)
	}
	t.Logf("expiry seen %s after the renewals stopped, %d consumers deleted", time.Since(start).Round(time.Millisecond), deleted)
}

func testBucketTTLMismatch(t *testing.T, b backend) {
	grp := group(t)
	newElector(t, b, grp)
	_, err := election.NewNATS(ctxT(t, 10*time.Second), election.Options{
		URL: b.url, Group: grp, TTL: 2 * ttl, Replicas: b.replicas, Logger: testLogger(t),
	})
	if err == nil || !strings.Contains(err.Error(), "REPLICAR_LEASE_TTL") {
		t.Fatalf("want a ttl mismatch error, got %v", err)
	}
}

// streamLeader names the server leading the group's KV stream.
func streamLeader(t *testing.T, b backend, grp string) string {
	t.Helper()
	nc, err := nats.Connect(b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for range 50 {
		s, err := js.Stream(ctxT(t, 5*time.Second), "KV_"+election.BucketName(grp))
		if err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader != "" {
			return s.CachedInfo().Cluster.Leader
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no stream leader")
	return ""
}

// testFollowerServerLoss kills the server the leader is connected to,
// which is not the bucket's stream leader: the leader reconnects to
// another server and keeps its lease.
func testFollowerServerLoss(t *testing.T, b backend) {
	grp := group(t)
	setup := newElector(t, b, grp)
	leaderName := streamLeader(t, b, grp)
	var victim *harness.NATS
	for _, n := range b.cluster.Nodes {
		if n.Name != leaderName {
			victim = n
			break
		}
	}
	// Connected to the victim alone; the cluster tells the client about
	// the other servers.
	a := newElectorURL(t, b, victim.URL, grp, ttl)
	la, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl / 2)
	t.Logf("killing %s (stream leader is %s)", victim.Name, leaderName)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := victim.Start(); err != nil {
			t.Errorf("restart %s: %v", victim.Name, err)
		}
	})
	rev := election.Revision(la)
	for range 6 { // 3 TTL
		time.Sleep(ttl / 2)
		notLost(t, la)
	}
	if election.Revision(la) <= rev {
		t.Fatalf("no renewal after the kill: revision %d", rev)
	}
	if _, err := setup.Campaign(ctxT(t, 5*time.Second), info("c")); !errors.Is(err, election.ErrLeaseHeld) {
		t.Fatalf("campaign during the outage: %v", err)
	}
	if err := la.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// testStreamLeaderLoss kills the bucket's stream leader. Renewals stop
// until the remaining replicas elect a new one (a Raft election timeout,
// 4–9s), which is longer than the lease: the leader fences itself and the
// lease expires; once the stream has a leader again, a new leader is
// elected with a higher epoch.
func testStreamLeaderLoss(t *testing.T, b backend) {
	if err := b.cluster.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	grp := group(t)
	a, c := newElector(t, b, grp), newElector(t, b, grp)
	la, err := a.Campaign(ctxT(t, 5*time.Second), info("a"))
	if err != nil {
		t.Fatal(err)
	}
	leaderName := streamLeader(t, b, grp)
	var victim *harness.NATS
	for _, n := range b.cluster.Nodes {
		if n.Name == leaderName {
			victim = n
		}
	}
	time.Sleep(ttl / 2)
	t.Logf("killing the stream leader %s", victim.Name)
	killed := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := victim.Start(); err != nil {
			t.Errorf("restart %s: %v", victim.Name, err)
		}
	})
	select {
	case <-la.Lost():
		t.Logf("lease lost %s after the kill: %v", time.Since(killed).Round(time.Millisecond), la.Err())
		if la.Valid() {
			t.Fatal("lost lease still valid")
		}
	case <-time.After(15 * time.Second):
		// The stream elected a leader faster than the lease's TTL.
		t.Logf("lease survived the stream leader's loss")
		notLost(t, la)
		return
	}
	lc, _, _ := campaignUntil(t, c, info("c"), 30*time.Second)
	t.Logf("new leader %s after the kill, epoch %d (old %d)", time.Since(killed).Round(time.Millisecond), lc.Epoch(), la.Epoch())
	if lc.Epoch() <= la.Epoch() {
		t.Fatalf("new epoch %d, old %d", lc.Epoch(), la.Epoch())
	}
}
