package test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A write that races an expiry: the primary runs INCR on a key just before
// it expires, a follower applies it just after its own copy expired and
// creates a fresh key with no expiry. The leader sends DEL once its primary
// expires the key (and only if the key is then absent there), so every
// store converges.
func TestWriteRacingExpiryConverges(t *testing.T) {
	g := startProcGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "leader"})
	leader := g.waitLeader(t, 20*time.Second)
	late := (leader + 1) % 3
	ctx := context.Background()
	c := g.client(t, leader)

	const ttl = 800 * time.Millisecond
	if err := c.Set(ctx, "k", 100, ttl).Err(); err != nil {
		t.Fatal(err)
	}
	expiresAt := time.Now().Add(ttl)
	g.waitCaughtUp(t, leader, 10*time.Second)
	// The late follower stops applying until after the expiry.
	if err := g.nodes[late].Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(expiresAt.Add(-250 * time.Millisecond)))
	if n, err := c.Incr(ctx, "k").Result(); err != nil || n != 101 {
		t.Fatalf("INCR before the expiry = %d, %v", n, err)
	}
	time.Sleep(time.Until(expiresAt.Add(300 * time.Millisecond)))
	if err := g.nodes[late].Cont(); err != nil {
		t.Fatal(err)
	}
	g.waitCaughtUp(t, leader, 10*time.Second)

	lateStore := redis.NewClient(&redis.Options{Addr: g.stores[late].Addr, Protocol: 2})
	defer lateStore.Close()
	// Touching the key on the primary expires it there at once, if its
	// active expiry has not already.
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Fatalf("k still exists on the primary after its expiry")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := lateStore.Exists(ctx, "k").Result()
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			v, _ := lateStore.Get(ctx, "k").Result()
			pt, _ := lateStore.PTTL(ctx, "k").Result()
			t.Fatalf("the late follower kept k = %q (pttl %v): the primary's expiry never reached it", v, pt)
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.sameData(t, leader)
}
