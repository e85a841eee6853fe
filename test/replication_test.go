package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/fanout"
	"github.com/replicar/replicar/protocols/resp"
	"github.com/replicar/replicar/proxy"
)

// group is a leader node and its followers, each with its own real
// redis-server, replicating in-process over loopback TCP.
type group struct {
	replAddr  string
	leader    *respNode
	primary   string
	replicas  []string
	followers []*followerHandle
}

type followerHandle struct {
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	f      *fanout.Follower
}

func (h *followerHandle) applied() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return 0
	}
	return h.f.Status().Applied.Offset
}

func (h *followerHandle) stop(t *testing.T) {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("follower: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("follower did not stop")
	}
}

func startGroup(t *testing.T, policy ackpolicy.Policy, followers int, maxLag, ackTimeout time.Duration, opts ...nodeOption) *group {
	t.Helper()
	g := &group{}
	primary := startRedis(t)
	g.primary = primary.Addr
	size := followers + 1
	n := startRESPNode(t, primary.Addr, append([]nodeOption{func(_ *resp.Config, o *proxy.ReplLogOptions) {
		o.Policy, o.GroupSize, o.AckTimeout = policy, size, ackTimeout
	}}, opts...)...)
	g.leader = n
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.replAddr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	lr := proxy.NewLeaderReplication(n.Node.ReplLog, proxy.ReplicationConfig{
		Group: "g", Node: "n1", GroupSize: size, MaxLag: maxLag, Heartbeat: 100 * time.Millisecond,
	}, testLogger(t))
	n.Node.Repl = lr
	go func() { served <- lr.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	for i := range followers {
		r := startRedis(t)
		g.replicas = append(g.replicas, r.Addr)
		g.followers = append(g.followers, g.startFollower(t, fmt.Sprintf("n%d", i+2), ln.Addr().String(), r.Addr))
	}
	// Writes are refused (NOREPLICAS) until enough followers joined the
	// ISR for the policy.
	c := n.client(t, 0)
	waitFor(t, func() bool { return c.Set(context.Background(), "group:ready", "1", 0).Err() == nil })
	return g
}

func (g *group) startFollower(t *testing.T, node, leaderAddr, backend string) *followerHandle {
	ctx, cancel := context.WithCancel(context.Background())
	h := &followerHandle{cancel: cancel, done: make(chan error, 1)}
	go func() {
		h.done <- proxy.RunFollower(ctx, proxy.FollowerConfig{Group: "g", Node: node, LeaderAddr: leaderAddr, Backend: backend,
			Resync: func(ctx context.Context, target string) (backlog.Position, error) {
				return g.leader.Node.SnapshotInto(ctx, g.leader.Srv, target, testLogger(t))
			}},
			testLogger(t), func(f *fanout.Follower) { h.mu.Lock(); h.f = f; h.mu.Unlock() })
	}()
	t.Cleanup(func() { cancel() })
	return h
}

// caughtUp waits until every running follower has applied the leader's
// last entry.
func (g *group) caughtUp(t *testing.T, hs ...*followerHandle) {
	t.Helper()
	last := g.leader.Node.Snapshot().Last
	waitFor(t, func() bool {
		for _, h := range hs {
			if h.applied() < last {
				return false
			}
		}
		return true
	})
}

// sameData stops the followers, drops their position markers, and requires
// every replica to hold exactly the primary's data, expiry times included.
func (g *group) sameData(t *testing.T) {
	t.Helper()
	for _, h := range g.followers {
		h.stop(t)
	}
	want := digest(t, g.primary)
	for _, r := range g.replicas {
		c := redis.NewClient(&redis.Options{Addr: r, Protocol: 2})
		if err := c.Del(context.Background(), "__replicar:pos").Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if got := digest(t, r); got != want {
			diffKeys(t, g.primary, r, 3)
			t.Fatalf("replica %s digest %s, primary %s", r, got, want)
		}
	}
}

// TestReplicationWorkload: under every ack policy, the randomized workload
// through a leader reaches two followers, every reply is committed under the
// policy when it is sent, and the replicas end identical to the primary.
func TestReplicationWorkload(t *testing.T) {
	for _, p := range []ackpolicy.Policy{ackpolicy.NoAck(), ackpolicy.LeaderAck(), ackpolicy.FollowerAcks(1),
		ackpolicy.FollowerAcks(2), ackpolicy.QuorumAcks(), ackpolicy.AllISRAcks(3)} {
		t.Run(p.String(), func(t *testing.T) { replicationWorkload(t, p) })
	}
}

func replicationWorkload(t *testing.T, policy ackpolicy.Policy) {
	g := startGroup(t, policy, 2, 2*time.Second, 5*time.Second)
	ctx := context.Background()
	script := redis.NewScript(`redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SADD', KEYS[2], ARGV[1])`)
	lib := "#!lua name=replicartest\nredis.register_function('bump', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)"
	if err := g.leader.client(t, 0).Do(ctx, "FUNCTION", "LOAD", "REPLACE", lib).Err(); err != nil {
		t.Fatalf("FUNCTION LOAD: %v", err)
	}
	var wg sync.WaitGroup
	var acked atomic.Int64
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			clients := []*redis.Client{g.leader.client(t, 0), g.leader.client(t, 1), g.leader.client(t, 2)}
			for i := range 100 {
				err := randomOp(ctx, rng, clients[rng.IntN(3)], script, w, i)
				if err != nil && err != redis.Nil && !expectedErr(err) {
					t.Errorf("worker %d op %d: %v", w, i, err)
					return
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	snap := g.leader.Node.Snapshot()
	if policy.Replicated() && snap.Committed != snap.Last {
		t.Fatalf("committed %d, last %d after every reply", snap.Committed, snap.Last)
	}
	g.caughtUp(t, g.followers...)
	t.Logf("%d operations, %d entries replicated to 2 followers", acked.Load(), snap.Last)
	g.checkStatus(t, snap.Last)
	g.sameData(t)
}

// checkStatus reads /status, /readyz, /metrics and REPLICAR INFO from the
// leader and requires both followers caught up and in sync.
func (g *group) checkStatus(t *testing.T, last uint64) {
	t.Helper()
	h := proxy.NewHTTPHandler(func() proxy.Status {
		return proxy.StatusFromRESP(g.leader.Node.Status(), g.leader.Srv.BackendUp())
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	var st proxy.Status
	waitFor(t, func() bool {
		res, err := http.Get(srv.URL + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		st = proxy.Status{}
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		if len(st.Followers) != 2 || len(st.ISR) != 3 {
			return false
		}
		for _, f := range st.Followers {
			if f.Acked != last || f.LagEntries != 0 || !f.InSync || !f.Connected {
				return false
			}
		}
		return st.Offset == last && st.Committed == last
	})
	if st.Role != "leader" || st.State != "streaming" {
		t.Fatalf("status: %+v", st)
	}
	if res, err := http.Get(srv.URL + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %v %v", res, err)
	}
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`replicar_follower_lag_entries{follower="n2"} 0`, "replicar_isr_size 3", fmt.Sprintf("replicar_committed_offset %d", last)} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	info, err := g.leader.client(t, 0).Do(context.Background(), "REPLICAR", "INFO").Text()
	if err != nil || !strings.Contains(info, "connected_followers:2") || !strings.Contains(info, "follower1:node=n3,acked="+fmt.Sprint(last)) {
		t.Errorf("REPLICAR INFO:\n%s", info)
	}
}

// TestReplicationAckPolicies: under all with min insync 3 a stalled
// follower first holds replies (UNCOMMITTED after the ack timeout), then
// leaves the ISR after MAX_LAG and writes are refused before execution
// (NOREPLICAS); when it comes back it catches up from its own position
// and rejoins, and writes flow again.
func TestReplicationAckPolicies(t *testing.T) {
	g := startGroup(t, ackpolicy.AllISRAcks(3), 2, 500*time.Millisecond, 300*time.Millisecond)
	ctx := context.Background()
	c := g.leader.client(t, 0)
	for i := range 50 {
		if err := c.Set(ctx, fmt.Sprintf("ap:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("write with a full ISR: %v", err)
		}
	}
	// Stop one follower: writes are held, then UNCOMMITTED or NOREPLICAS.
	g.followers[1].stop(t)
	sawUncommitted, sawNoReplicas := false, false
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline) && !sawNoReplicas; i++ {
		err := c.Set(ctx, fmt.Sprintf("ap:down:%d", i), i, 0).Err()
		switch {
		case err == nil:
		case strings.HasPrefix(err.Error(), "UNCOMMITTED"):
			sawUncommitted = true
		case strings.HasPrefix(err.Error(), "NOREPLICAS"):
			sawNoReplicas = true
			if exists := redis.NewClient(&redis.Options{Addr: g.primary}).Exists(ctx, fmt.Sprintf("ap:down:%d", i)).Val(); exists != 0 {
				t.Fatal("a write refused with NOREPLICAS was executed")
			}
		default:
			t.Fatalf("write with a follower down: %v", err)
		}
	}
	if !sawUncommitted || !sawNoReplicas {
		t.Fatalf("follower down: UNCOMMITTED seen %v, NOREPLICAS seen %v", sawUncommitted, sawNoReplicas)
	}
	// Restart it on its own store: partial resync from its marker.
	g.followers[1] = g.startFollower(t, "n3", g.replAddr, g.replicas[1])
	waitFor(t, func() bool { return c.Set(ctx, "ap:back", "1", 0).Err() == nil })
	g.caughtUp(t, g.followers...)
	g.sameData(t)
}

// TestReplicationFullResync: a follower that was away while the backlog
// moved past its position, and one whose store was wiped, are rebuilt from
// a snapshot while writes go on, and end equal to the primary. The writes
// are INCR and LPUSH, which would show any entry applied twice or missed.
func TestReplicationFullResync(t *testing.T) {
	g := startGroup(t, ackpolicy.QuorumAcks(), 2, 2*time.Second, 5*time.Second,
		func(_ *resp.Config, o *proxy.ReplLogOptions) { o.BacklogBytes = 16 << 10 })
	ctx := context.Background()
	c := g.leader.client(t, 0)
	write := func(i int) error {
		if err := c.Incr(ctx, "fr:counter").Err(); err != nil {
			return err
		}
		return c.LPush(ctx, fmt.Sprintf("fr:list:%d", i%7), i).Err()
	}
	for i := range 100 {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	g.caughtUp(t, g.followers...)
	// n3 goes away; n2 stays, so quorum still commits.
	g.followers[1].stop(t)
	for i := range 2000 {
		if err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	if first := g.leader.Node.Snapshot().First; first <= 202 {
		t.Fatalf("backlog still holds offset %d; the test needs it evicted", first)
	}
	// n2 goes away too and its store is wiped. Quorum needs it back: keep
	// writing from a goroutine that retries until then.
	g.followers[0].stop(t)
	wipe := redis.NewClient(&redis.Options{Addr: g.replicas[0], Protocol: 2})
	if err := wipe.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	wipe.Close()
	stop := make(chan struct{})
	var writes sync.WaitGroup
	var during atomic.Int64
	writes.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := write(i); err == nil {
				during.Add(1)
			}
		}
	})
	g.followers[0] = g.startFollower(t, "n2", g.replAddr, g.replicas[0])
	g.followers[1] = g.startFollower(t, "n3", g.replAddr, g.replicas[1])
	waitFor(t, func() bool { return during.Load() > 200 })
	close(stop)
	writes.Wait()
	g.caughtUp(t, g.followers...)
	t.Logf("%d writes succeeded while both followers resynced", during.Load())
	g.sameData(t)
}

// TestReplicationPartialResyncAndPubSub: a follower stopped and restarted
// while INCR and LPUSH keep coming resumes from the position in its own
// store (no full resync), applying every entry exactly once; and a PUBLISH
// through the leader reaches a subscriber of a follower's store.
func TestReplicationPartialResyncAndPubSub(t *testing.T) {
	g := startGroup(t, ackpolicy.QuorumAcks(), 2, 2*time.Second, 5*time.Second)
	ctx := context.Background()
	sub := redis.NewClient(&redis.Options{Addr: g.replicas[1], Protocol: 2}).Subscribe(ctx, "news")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	c := g.leader.client(t, 0)
	if err := c.Publish(ctx, "news", "from the leader").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.Channel():
		if m.Payload != "from the leader" {
			t.Fatalf("message %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a subscriber on a follower's store got no message")
	}

	stop := make(chan struct{})
	var writes sync.WaitGroup
	writes.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Incr(ctx, "pr:counter")
			c.LPush(ctx, "pr:list", i)
		}
	})
	for range 3 {
		time.Sleep(200 * time.Millisecond)
		g.followers[1].stop(t)
		time.Sleep(200 * time.Millisecond)
		g.followers[1] = g.startFollower(t, "n3", g.replAddr, g.replicas[1])
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	writes.Wait()
	g.caughtUp(t, g.followers...)
	if n := g.leader.Node.Snapshot().First; n != 1 {
		t.Fatalf("the backlog dropped entries (first %d): this test needs partial resyncs only", n)
	}
	g.sameData(t)
}

// TestReplicationMinInsync: under all with MIN_INSYNC=2, stopping both
// followers turns writes into NOREPLICAS, refused before execution (nothing
// is half-written); restarting one follower brings writes back.
func TestReplicationMinInsync(t *testing.T) {
	g := startGroup(t, ackpolicy.AllISRAcks(2), 2, 300*time.Millisecond, 200*time.Millisecond)
	ctx := context.Background()
	c := g.leader.client(t, 0)
	primary := redis.NewClient(&redis.Options{Addr: g.primary, Protocol: 2})
	defer primary.Close()
	g.followers[0].stop(t)
	g.followers[1].stop(t)
	refused, attempt := 0, 0
	waitFor(t, func() bool {
		attempt++
		key := fmt.Sprintf("mi:%d", attempt)
		err := c.Incr(ctx, key).Err()
		if err != nil && strings.HasPrefix(err.Error(), "NOREPLICAS") {
			if primary.Exists(ctx, key).Val() != 0 {
				t.Fatalf("%s was refused with NOREPLICAS but executed", key)
			}
			refused++
		}
		return refused >= 20
	})
	// The ISR is the leader alone now; before it shrank, held writes got
	// UNCOMMITTED. Bring one follower back.
	g.followers[0] = g.startFollower(t, "n2", g.replAddr, g.replicas[0])
	waitFor(t, func() bool { return c.Incr(ctx, "mi:back").Err() == nil })
	for i := range 20 {
		if err := c.Incr(ctx, "mi:back").Err(); err != nil {
			t.Fatalf("write %d with one follower back: %v", i, err)
		}
	}
	g.caughtUp(t, g.followers[0])
	g.followers = g.followers[:1]
	g.replicas = g.replicas[:1]
	g.sameData(t)
}
