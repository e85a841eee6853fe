package verify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A read under READ_POLICY=leader must not return a write the ack policy
// has not committed: if it does and the write is then lost in a failover,
// a client saw a value the group went back on, which no linearizable
// register allows. The leader is cut from its followers and from NATS
// (its lease still runs for up to a TTL), a SET goes to it directly, and a
// GET follows while the SET waits for acks that cannot come. After the
// failover the new leader lacks the SET; the GET must not have shown it.
// This is the minimal form of what TestVerifyShort's register check finds
// under all and quorum.
func TestNoReadOfUncommittedWrite(t *testing.T) {
	for _, p := range policies[:2] { // all, quorum
		t.Run(p.name, func(t *testing.T) {
			c := StartCluster(t, 3, p.env)
			t.Cleanup(func() {
				if t.Failed() {
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
			ctx := context.Background()
			lc := c.Client(leader, 10*time.Second)
			defer lc.Close()
			if err := lc.Set(ctx, "k", "v0", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitCaughtUp(leader, 10*time.Second); err != nil {
				t.Fatal(err)
			}

			// Isolate the leader: NATS, replication and forwarding.
			for _, l := range []*Link{c.NATSLinks[leader], c.ReplLinks[leader], c.ClientLinks[leader]} {
				if err := l.Cut(Blackhole); err != nil {
					t.Fatal(err)
				}
			}
			setErr := make(chan error, 1)
			go func() { setErr <- lc.Set(ctx, "k", "v1", 0).Err() }()
			time.Sleep(50 * time.Millisecond)
			rc := c.Client(leader, 10*time.Second)
			defer rc.Close()
			during, derr := rc.Get(ctx, "k").Result()
			serr := <-setErr
			t.Logf("isolated leader %s: SET k v1 -> %v; GET k while it waited -> %q %v", c.Nodes[leader].Node, serr, during, derr)
			if serr == nil {
				t.Fatalf("SET acknowledged by an isolated leader under %s", p.name)
			}

			for _, l := range c.Net.Links() {
				if err := l.Heal(); err != nil {
					t.Fatal(err)
				}
			}
			newLeader, err := c.WaitSettled(60 * time.Second)
			if err != nil {
				for _, e := range timeline(c, nil) {
					t.Logf("timeline %s %s", e.At, e.What)
				}
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
				for _, e := range timeline(c, nil) {
					t.Logf("timeline %s %s", e.At, e.What)
				}
				t.Errorf("under %s the leader served a read of an uncommitted write (GET k -> v1 while SET k v1 waited for acks, and the SET ended with %q); after the failover k is %q: the value a client read was lost", p.name, serr, final)
			}
		})
	}
}
