package verify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Minimal, deterministic reproductions of what the randomized suite finds.

// reproCluster starts a settled group whose node logs are kept when the
// test fails.
func reproCluster(t *testing.T, env map[string]string) (*Cluster, int) {
	t.Helper()
	c := StartCluster(t, 3, env)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range timeline(c, nil) {
				t.Logf("timeline %s %s", e.At, e.What)
			}
			if dir := artifactDir(t); dir != "" {
				saveNodeLogs(t, c, dir)
				t.Logf("node logs: %s", dir)
			}
		}
	})
	leader, err := c.WaitSettled(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, leader
}

// isolate cuts node i from NATS and from its peers.
func isolate(t *testing.T, c *Cluster, i int) {
	t.Helper()
	for _, l := range []*Link{c.NATSLinks[i], c.ReplLinks[i], c.ClientLinks[i]} {
		if err := l.Cut(Blackhole); err != nil {
			t.Fatal(err)
		}
	}
}

func healAll(t *testing.T, c *Cluster) {
	t.Helper()
	for _, l := range c.Net.Links() {
		if err := l.Heal(); err != nil {
			t.Fatal(err)
		}
	}
}

// A read under READ_POLICY=leader must not return a write the ack policy
// has not committed: if it does and the write is then lost in a failover,
// a client saw a value the group went back on, which no linearizable
// register allows. The leader is isolated (its lease still runs for up to
// a TTL), a SET goes to it directly, and a GET follows while the SET waits
// for acks that cannot come. The leader then crashes; another node takes
// over without the SET. The GET must not have shown it. This is the
// minimal form of the violation TestVerifyShort's register check finds
// under all and quorum.
func TestNoReadOfUncommittedWrite(t *testing.T) {
	for _, p := range policies[:2] { // all, quorum
		t.Run(p.name, func(t *testing.T) {
			c, leader := reproCluster(t, p.env)
			ctx := context.Background()
			lc := c.Client(leader, 10*time.Second)
			defer lc.Close()
			if err := lc.Set(ctx, "k", "v0", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitCaughtUp(leader, 10*time.Second); err != nil {
				t.Fatal(err)
			}

			isolate(t, c, leader)
			setErr := make(chan error, 1)
			go func() { setErr <- lc.Set(ctx, "k", "v1", 0).Err() }()
			time.Sleep(50 * time.Millisecond)
			rc := c.Client(leader, 10*time.Second)
			defer rc.Close()
			during, derr := rc.Get(ctx, "k").Result()
			if err := c.Nodes[leader].Kill(); err != nil {
				t.Fatal(err)
			}
			serr := <-setErr
			t.Logf("isolated leader %s: SET k v1 -> %v (killed while it waited); GET k meanwhile -> %q %v", c.Nodes[leader].Node, serr, during, derr)
			if serr == nil {
				t.Fatalf("SET acknowledged by an isolated leader under %s", p.name)
			}
			healAll(t, c)
			if err := c.Nodes[leader].Start(); err != nil {
				t.Fatal(err)
			}
			newLeader, err := c.WaitSettled(30 * time.Second)
			if err != nil {
				t.Fatalf("after healing: %v", err)
			}
			fc := c.Client(newLeader, 10*time.Second)
			defer fc.Close()
			final, ferr := fc.Get(ctx, "k").Result()
			if ferr != nil && !errors.Is(ferr, redis.Nil) {
				t.Fatal(ferr)
			}
			t.Logf("after the failover to %s: GET k -> %q", c.Nodes[newLeader].Node, final)
			if derr == nil && during == "v1" && final != "v1" {
				t.Errorf("under %s the leader served a read of an uncommitted write: GET k -> v1 while SET k v1 waited for acks "+
					"(the SET then failed: %v); after the failover k is %q, so a value a client read was lost", p.name, serr, final)
			}
		})
	}
}

// A leader that is cut off with a write its followers lack, and is then
// elected again at a new epoch (under quorum it must be: its fresh member
// record is ahead of theirs, so they do not stand), has to bring the
// followers back. It streams them the missing entry, which carries the old
// epoch; the followers, having seen the new epoch, must accept it from the
// current leader. The group must settle again.
func TestLeaderReelectedWithUnreplicatedWrite(t *testing.T) {
	for _, p := range policies[:2] { // all, quorum
		t.Run(p.name, func(t *testing.T) {
			c, leader := reproCluster(t, p.env)
			ctx := context.Background()
			lc := c.Client(leader, 10*time.Second)
			defer lc.Close()
			if err := lc.Set(ctx, "k", "v0", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitCaughtUp(leader, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			// Cut the followers off only: the leader keeps its lease and
			// writes an entry nobody else has; then it loses NATS too.
			for _, l := range []*Link{c.ReplLinks[leader], c.ClientLinks[leader]} {
				if err := l.Cut(Blackhole); err != nil {
					t.Fatal(err)
				}
			}
			err := lc.Set(ctx, "k", "v1", 0).Err()
			t.Logf("leader %s cut from its followers: SET k v1 -> %v", c.Nodes[leader].Node, err)
			if err == nil {
				t.Fatalf("SET acknowledged without followers under %s", p.name)
			}
			if err := c.NATSLinks[leader].Cut(Blackhole); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second) // the lease expires
			healAll(t, c)
			newLeader, err := c.WaitSettled(30 * time.Second)
			if err != nil {
				st, _ := c.Status(leader, time.Second)
				t.Fatalf("under %s the group did not settle after the partition healed (old leader %s now %s at epoch %d): %v",
					p.name, c.Nodes[leader].Node, st.Role, st.Epoch, err)
			}
			if err := c.WaitCaughtUp(newLeader, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			want, err := c.DataDigest(newLeader)
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.Stores {
				if got, err := c.DataDigest(i); err != nil || got != want {
					t.Errorf("store of %s differs from the leader's (%v)", c.Nodes[i].Node, err)
				}
			}
		})
	}
}
