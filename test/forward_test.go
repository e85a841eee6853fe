package test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/protocols/resp"
)

// A node that does not lead forwards writes, transactions, blocking pops
// and leader reads to the leader's client port over the client's own
// connection, and keeps serving connection state itself.
func TestForwardToLeader(t *testing.T) {
	leaderStore := startRedis(t)
	followerStore := startRedis(t)
	leader := startRESPNode(t, leaderStore.Addr)
	follower := startRESPNode(t, followerStore.Addr)
	follower.Srv.SetRoute(resp.Route{Mode: resp.RouteForward, Leader: leader.Addr})
	ctx := context.Background()

	c := follower.client(t, 3)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through follower: %v", err)
	}
	direct := redis.NewClient(&redis.Options{Addr: leaderStore.Addr, DB: 3, Protocol: 2})
	defer direct.Close()
	if got, _ := direct.Get(ctx, "k").Result(); got != "v" {
		t.Fatalf("leader store db3 k = %q, want v", got)
	}
	if n, _ := redis.NewClient(&redis.Options{Addr: followerStore.Addr, DB: 3, Protocol: 2}).DBSize(ctx).Result(); n != 0 {
		t.Fatalf("follower's own store got %d keys: writes must go to the leader only", n)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET through follower (READ_POLICY=leader) = %q, %v", got, err)
	}
	// Logged on the leader, with the db.
	if leader.Node.Last().Offset == 0 {
		t.Fatal("leader logged nothing for a forwarded write")
	}

	// Pipelined writes then reads on one connection keep their order.
	pipe := c.Pipeline()
	for i := range 100 {
		pipe.Incr(ctx, "ctr")
		if i%10 == 0 {
			pipe.Get(ctx, "ctr")
		}
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	seen := 0
	for _, cmd := range cmds {
		if cmd.Name() == "incr" {
			seen++
		}
		if g, ok := cmd.(*redis.StringCmd); ok && g.Val() != itoa(seen) {
			t.Fatalf("GET after %d INCRs saw %s", seen, g.Val())
		}
	}

	// MULTI/EXEC and WATCH run on the leader connection.
	tx := c.TxPipeline()
	tx.Incr(ctx, "t")
	tx.Incr(ctx, "t")
	if _, err := tx.Exec(ctx); err != nil {
		t.Fatalf("MULTI/EXEC through follower: %v", err)
	}
	if got, _ := direct.Get(ctx, "t").Result(); got != "2" {
		t.Fatalf("t = %q after MULTI INCR INCR", got)
	}
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		// Another client changes the watched key before EXEC.
		if err := follower.client(t, 3).Set(ctx, "w", "other", 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "w", "mine", 0)
			return nil
		})
		return err
	}, "w")
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("WATCH through follower: want TxFailedErr, got %v", err)
	}
	if got, _ := direct.Get(ctx, "w").Result(); got != "other" {
		t.Fatalf("w = %q: the aborted transaction ran", got)
	}

	// A blocking pop on the follower is woken by a push on the leader.
	var wg sync.WaitGroup
	var popped []string
	var popErr error
	wg.Go(func() { popped, popErr = c.BLPop(ctx, 5*time.Second, "q").Result() })
	time.Sleep(100 * time.Millisecond)
	if err := leader.client(t, 3).RPush(ctx, "q", "job").Err(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if popErr != nil || len(popped) != 2 || popped[1] != "job" {
		t.Fatalf("BLPOP through follower = %v, %v", popped, popErr)
	}

	// Local reads, when allowed, come from the follower's own store.
	if err := redis.NewClient(&redis.Options{Addr: followerStore.Addr, DB: 3, Protocol: 2}).Set(ctx, "only-local", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	follower.Srv.SetRoute(resp.Route{Mode: resp.RouteForward, Leader: leader.Addr, LocalReads: true})
	if got, err := c.Get(ctx, "only-local").Result(); err != nil || got != "x" {
		t.Fatalf("local read = %q, %v", got, err)
	}
}

// With no leader, a command that needs one waits up to FailoverWait for a
// route, and is served once a leader appears within it; past it, TRYAGAIN,
// not executed.
func TestForwardWaitsForLeader(t *testing.T) {
	leaderStore := startRedis(t)
	followerStore := startRedis(t)
	leader := startRESPNode(t, leaderStore.Addr)
	follower := startRESPNode(t, followerStore.Addr)
	follower.Srv.SetRoute(resp.Route{Mode: resp.RouteNone})
	ctx := context.Background()
	c := follower.client(t, 0)

	start := time.Now()
	err := c.Set(ctx, "k", "v", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Fatalf("SET with no leader: want TRYAGAIN, got %v", err)
	}
	if waited := time.Since(start); waited < 4*time.Second || waited > 8*time.Second {
		t.Fatalf("waited %v; want about FailoverWait (5s)", waited)
	}
	if n, _ := redis.NewClient(&redis.Options{Addr: leaderStore.Addr, Protocol: 2}).Exists(ctx, "k").Result(); n != 0 {
		t.Fatal("a TRYAGAIN write was executed")
	}
	// Reads that do not need the leader still work; PING is local.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	// A leader that appears during the wait serves the waiting command.
	go func() {
		time.Sleep(500 * time.Millisecond)
		follower.Srv.SetRoute(resp.Route{Mode: resp.RouteForward, Leader: leader.Addr})
	}()
	start = time.Now()
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatalf("SET during election: %v", err)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond || waited > 3*time.Second {
		t.Fatalf("served after %v; want just after the leader appeared", waited)
	}

	// The route moving to another leader moves idle connections with it.
	other := startRESPNode(t, startRedis(t).Addr)
	follower.Srv.SetRoute(resp.Route{Mode: resp.RouteForward, Leader: other.Addr})
	if err := c.Set(ctx, "moved", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := other.client(t, 0).Exists(ctx, "moved").Result(); n != 1 {
		t.Fatal("write did not follow the route to the new leader")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// SELECT inside a MULTI that a follower forwards is queued on the leader
// with the transaction, as Redis does: once EXEC runs it, the connection's
// later commands go to the selected database; an aborted EXEC (WATCH)
// leaves the database as it was.
func TestForwardSelectInsideMulti(t *testing.T) {
	leaderStore := startRedis(t)
	leader := startRESPNode(t, leaderStore.Addr)
	follower := startRESPNode(t, startRedis(t).Addr)
	follower.Srv.SetRoute(resp.Route{Mode: resp.RouteForward, Leader: leader.Addr})
	ctx := context.Background()
	db := func(n int) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: leaderStore.Addr, DB: n, Protocol: 2})
		t.Cleanup(func() { c.Close() })
		return c
	}

	conn := follower.client(t, 0).Conn()
	defer conn.Close()
	if _, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "sel:before", "db0", 0)
		p.Select(ctx, 5)
		p.Set(ctx, "sel:in", "db5", 0)
		return nil
	}); err != nil {
		t.Fatalf("MULTI SET SELECT 5 SET EXEC through a follower: %v", err)
	}
	if err := conn.Set(ctx, "sel:after", "db5", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		db        int
		key, want string
	}{{0, "sel:before", "db0"}, {5, "sel:in", "db5"}, {5, "sel:after", "db5"}, {0, "sel:in", ""}, {0, "sel:after", ""}} {
		if got, _ := db(c.db).Get(ctx, c.key).Result(); got != c.want {
			t.Errorf("db %d %s = %q, want %q", c.db, c.key, got, c.want)
		}
	}

	// An aborted transaction's SELECT does not take effect.
	abortedSelectTx(t, conn, db(5), "sel:w", 7)
	if err := conn.Set(ctx, "sel:after-abort", "db5", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := db(5).Get(ctx, "sel:after-abort").Result(); got != "db5" {
		t.Fatalf("after an aborted EXEC with SELECT 7 the connection left db 5 (db5 holds %q)", got)
	}
	if n, _ := db(7).DBSize(ctx).Result(); n != 0 {
		t.Fatalf("db 7 holds %d keys after an aborted transaction", n)
	}
}
