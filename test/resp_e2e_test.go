package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRESPReplayMatchesPrimary drives a randomized mixed workload covering
// every rewrite through the proxy from many concurrent clients, replays the
// logged entries into an empty second redis-server, and requires the two to
// hold exactly the same data, expiry times included (DEBUG DIGEST).
func TestRESPReplayMatchesPrimary(t *testing.T) {
	primary := startRedis(t)
	replica := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()

	// Functions are replicated as writes (FUNCTION LOAD) before FCALL uses them.
	setup := n.client(t, 0)
	lib := "#!lua name=replicartest\nredis.register_function('bump', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)"
	if err := setup.Do(ctx, "FUNCTION", "LOAD", "REPLACE", lib).Err(); err != nil {
		t.Fatalf("FUNCTION LOAD: %v", err)
	}

	const workers, opsPerWorker = 16, 300
	script := redis.NewScript(`redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SADD', KEYS[2], ARGV[1])`)
	var failures atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			clients := []*redis.Client{n.client(t, 0), n.client(t, 1), n.client(t, 2)}
			for i := range opsPerWorker {
				c := clients[rng.IntN(len(clients))]
				if err := randomOp(ctx, rng, c, script, w, i); err != nil && err != redis.Nil && !expectedErr(err) {
					failures.Add(1)
					t.Errorf("worker %d op %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	applied := replay(t, n, replica.Addr)
	t.Logf("replayed %d entries", applied)
	if applied < workers*opsPerWorker/2 {
		t.Fatalf("only %d entries logged for %d operations", applied, workers*opsPerWorker)
	}
	da, db := digest(t, primary.Addr), digest(t, replica.Addr)
	if da != db {
		diffKeys(t, primary.Addr, replica.Addr, 3)
		t.Fatalf("primary digest %s, replay digest %s", da, db)
	}
	if da == strings.Repeat("0", 40) {
		t.Fatal("the primary is empty: the workload wrote nothing")
	}
	info, err := setup.Do(ctx, "REPLICAR", "INFO").Text()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"expire", "spop", "incrbyfloat", "xadd"} {
		if !strings.Contains(info, "rewrites_"+kind) {
			t.Errorf("REPLICAR INFO has no rewrites_%s* counter:\n%s", kind, info)
		}
	}
}

// expectedErr accepts the errors the random workload provokes on purpose
// (wrong types between commands sharing keys, SET NX on an existing key…).
func expectedErr(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "WRONGTYPE") || strings.Contains(s, "not an integer") ||
		strings.Contains(s, "not a valid float") || strings.Contains(s, "no such key") ||
		strings.Contains(s, "BUSYKEY") || strings.Contains(s, "equal or smaller") ||
		strings.Contains(s, "would produce NaN")
}

func randomOp(ctx context.Context, rng *rand.Rand, c *redis.Client, script *redis.Script, w, i int) error {
	key := func(kind string) string { return fmt.Sprintf("%s:%d", kind, rng.IntN(12)) }
	val := fmt.Sprintf("v%d-%d", w, i)
	now := time.Now()
	long := time.Duration(500+rng.IntN(1000)) * time.Second
	switch rng.IntN(34) {
	case 0:
		return c.Set(ctx, key("str"), val, 0).Err()
	case 1:
		return c.Set(ctx, key("str"), val, long).Err()
	case 2:
		return c.Do(ctx, "SET", key("str"), val, "PX", long.Milliseconds(), "NX").Err()
	case 3:
		return c.Do(ctx, "SET", key("str"), val, "EXAT", now.Add(long).Unix(), "XX", "GET").Err()
	case 4:
		return c.Do(ctx, "SET", key("str"), val, "KEEPTTL").Err()
	case 5:
		return c.Do(ctx, "SETEX", key("str"), int(long.Seconds()), val).Err()
	case 6:
		return c.Do(ctx, "PSETEX", key("str"), long.Milliseconds(), val).Err()
	case 7:
		return c.Expire(ctx, key("str"), long).Err()
	case 8:
		return c.Do(ctx, "PEXPIRE", key("hash"), long.Milliseconds(), "NX").Err()
	case 9:
		return c.ExpireAt(ctx, key("set"), now.Add(long)).Err()
	case 10:
		return c.GetEx(ctx, key("str"), long).Err()
	case 11:
		return c.Do(ctx, "GETEX", key("str"), "PERSIST").Err()
	case 12:
		return c.GetDel(ctx, key("str")).Err()
	case 13:
		return c.Do(ctx, "GETSET", key("str"), val).Err()
	case 14:
		return c.IncrByFloat(ctx, key("float"), 1.25).Err()
	case 15:
		return c.HIncrByFloat(ctx, key("hash"), "f", 0.5).Err()
	case 16:
		members := make([]any, 8)
		for k := range members {
			members[k] = fmt.Sprintf("m%d", rng.IntN(40))
		}
		return c.SAdd(ctx, key("set"), members...).Err()
	case 17:
		return c.SPopN(ctx, key("set"), int64(1+rng.IntN(4))).Err()
	case 18:
		return c.SPop(ctx, key("set")).Err()
	case 19:
		return c.XAdd(ctx, &redis.XAddArgs{Stream: key("stream"), MaxLen: 20, Approx: true, Values: []any{"f", val}}).Err()
	case 20:
		return c.XAdd(ctx, &redis.XAddArgs{Stream: key("stream"), Values: []any{"f", val}}).Err()
	case 21:
		return c.XTrimMaxLenApprox(ctx, key("stream"), 10, 0).Err()
	case 22:
		return c.Eval(ctx, "return redis.call('INCRBY', KEYS[1], ARGV[1])", []string{key("counter")}, rng.IntN(10)).Err()
	case 23:
		return script.Run(ctx, c, []string{key("str"), key("set")}, val).Err()
	case 24:
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key("str"), val, long)
			p.Incr(ctx, key("counter"))
			p.SPop(ctx, key("set"))
			p.Expire(ctx, key("list"), long)
			p.IncrByFloat(ctx, key("float"), 0.5)
			return nil
		})
		return err
	case 25:
		return c.LPush(ctx, key("list"), val, val+"b").Err()
	case 26:
		return c.BLPop(ctx, 20*time.Millisecond, key("list"), key("list")).Err()
	case 27:
		return c.LMove(ctx, key("list"), key("list"), "LEFT", "RIGHT").Err()
	case 28:
		return c.ZAdd(ctx, key("zset"), redis.Z{Score: float64(rng.IntN(100)), Member: val}).Err()
	case 29:
		return c.BZPopMin(ctx, 20*time.Millisecond, key("zset")).Err()
	case 30:
		dump, err := c.Dump(ctx, key("str")).Result()
		if err != nil {
			return err
		}
		return c.RestoreReplace(ctx, key("restored"), long, dump).Err()
	case 31:
		return c.Do(ctx, "FCALL", "bump", 1, key("counter"), 3).Err()
	case 32:
		return c.Publish(ctx, "chan", val).Err()
	default:
		return c.Del(ctx, key("str"), key("list")).Err()
	}
}
