package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Three real nodes elect a leader through NATS; writes sent to any node
// reach the leader and every store ends equal.
func TestGroupElectsAndReplicates(t *testing.T) {
	g := startProcGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "all", "REPLICAR_MIN_INSYNC": "2"})
	leader := g.waitLeader(t, 20*time.Second)
	ctx := context.Background()
	for i := range g.nodes {
		c := g.client(t, i)
		for j := range 50 {
			if err := c.Incr(ctx, "ctr").Err(); err != nil {
				t.Fatalf("INCR via node %d: %v", i, err)
			}
			if err := c.RPush(ctx, "list", fmt.Sprintf("%d-%d", i, j)).Err(); err != nil {
				t.Fatalf("RPUSH via node %d: %v", i, err)
			}
		}
	}
	g.waitCaughtUp(t, leader, 10*time.Second)
	want := dataDigest(t, g.stores[leader].Addr, 1)
	for i := range g.stores {
		if got := dataDigest(t, g.stores[i].Addr, 1); got != want {
			t.Fatalf("store %d differs from the leader's", i)
		}
	}
	if n, _ := g.client(t, leader).Get(ctx, "ctr").Int(); n != 150 {
		t.Fatalf("ctr = %d, want 150", n)
	}
}

// Killing the leader with SIGKILL during writes: a new leader serves, no
// acknowledged write is lost, and the old leader comes back as a follower
// (full resync: it crashed while leading) with equal data.
func TestLeaderKillFailover(t *testing.T) {
	g := startProcGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "all", "REPLICAR_MIN_INSYNC": "2"})
	leader := g.waitLeader(t, 20*time.Second)
	ctx := context.Background()

	var (
		mu     sync.Mutex
		acked  []string
		failed atomic.Int64
		stop   atomic.Bool
		wg     sync.WaitGroup
		// firstAfter is when the first write sent after the kill was
		// acknowledged (unix nanos): writes in flight at the kill do
		// not count.
		firstAfter atomic.Int64
		killedAt   atomic.Int64
	)
	for w := range 4 {
		// Writers on the followers, so their connections survive the kill.
		node := (leader + 1 + w%2) % 3
		c := g.client(t, node)
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				sent := time.Now().UnixNano()
				if err := c.RPush(ctx, "ids", id).Err(); err != nil {
					failed.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if k := killedAt.Load(); k != 0 && sent > k {
					firstAfter.CompareAndSwap(0, time.Now().UnixNano())
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	killed := time.Now()
	if err := g.nodes[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt.Store(killed.UnixNano())
	// Unavailability: from the kill to the first acknowledgement of a write
	// sent after it.
	deadline := time.Now().Add(15 * time.Second)
	for firstAfter.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if firstAfter.Load() == 0 {
		t.Fatal("no write acknowledged within 15s of the leader's death")
	}
	t.Logf("write unavailability after SIGKILL of the leader: %v", time.Unix(0, firstAfter.Load()).Sub(killed).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	newLeader := g.waitLeader(t, 20*time.Second)
	t.Logf("killed at %s", killed.UTC().Format(time.RFC3339Nano))
	g.timeline(t)
	if newLeader == leader {
		t.Fatal("the dead node still leads")
	}
	got, err := g.client(t, newLeader).LRange(ctx, "ids", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, id := range got {
		have[id] = true
	}
	lost := 0
	for _, id := range acked {
		if !have[id] {
			lost++
		}
	}
	t.Logf("acknowledged %d, failed %d, in the list %d, lost %d", len(acked), failed.Load(), len(got), lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged writes lost", lost)
	}

	// The old leader restarts and rejoins as a follower with equal data.
	if err := g.nodes[leader].Start(); err != nil {
		t.Fatal(err)
	}
	newLeader = g.waitLeader(t, 30*time.Second)
	g.waitCaughtUp(t, newLeader, 20*time.Second)
	want := dataDigest(t, g.stores[newLeader].Addr, 1)
	for i := range g.stores {
		if d := dataDigest(t, g.stores[i].Addr, 1); d != want {
			t.Fatalf("store %d differs from the leader's after the old leader rejoined", i)
		}
	}
	if !strings.Contains(g.nodes[leader].LogTail(400), "full resync") {
		t.Error("the old leader rejoined without a full resync, though it crashed while leading")
	}
}
