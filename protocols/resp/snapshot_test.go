package resp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/test/harness"
)

func TestSnapshotRates(t *testing.T) {
	cases := []struct {
		done, bytes, total int64
		elapsed            time.Duration
		kps, bps           float64
		eta                time.Duration
	}{
		{0, 0, 100, 0, 0, 0, -1},           // no time yet: unknown
		{0, 0, 100, time.Second, 0, 0, -1}, // nothing done: unknown
		{50, 1000, 100, 2 * time.Second, 25, 500, 2 * time.Second},
		{10, 0, 100, time.Second, 10, 0, 9 * time.Second},
		{100, 10, 100, 4 * time.Second, 25, 2.5, 0}, // finished
		{120, 10, 100, 4 * time.Second, 30, 2.5, 0}, // SCAN duplicates
		{5, 5, 0, time.Second, 5, 5, 0},             // empty at start
	}
	for _, c := range cases {
		kps, bps, eta := snapshotRates(c.done, c.bytes, c.total, c.elapsed)
		if kps != c.kps || bps != c.bps || eta != c.eta {
			t.Errorf("snapshotRates(%d, %d, %d, %v) = %v, %v, %v; want %v, %v, %v",
				c.done, c.bytes, c.total, c.elapsed, kps, bps, eta, c.kps, c.bps, c.eta)
		}
	}
}

// clientIn is a client of r bound to db.
func clientIn(t testing.TB, r *harness.Redis, db int) *redis.Client {
	t.Helper()
	o := r.Options()
	o.DB = db
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const testLibrary = "#!lua name=snaplib\nredis.register_function('snapecho', function(keys, args) return args[1] end)"

// fillSource writes every kind of value, expiries, several dbs, replicar's
// own keys and a function library.
func fillSource(t *testing.T, r *harness.Redis) {
	ctx := context.Background()
	c0 := clientIn(t, r, 0)
	p := c0.Pipeline()
	p.Set(ctx, "str", "hello", 0)
	p.Set(ctx, "int", "12345", 0)
	p.HSet(ctx, "hash", "a", "1", "b", "2")
	p.RPush(ctx, "list", "x", "y", "z")
	p.SAdd(ctx, "set", "m1", "m2", "m3")
	p.SAdd(ctx, "intset", 1, 2, 3)
	p.ZAdd(ctx, "zset", redis.Z{Score: 1, Member: "one"}, redis.Z{Score: 2.5, Member: "two"})
	p.PFAdd(ctx, "hll", "a", "b", "c", "d")
	p.XAdd(ctx, &redis.XAddArgs{Stream: "stream", ID: "1-1", Values: []string{"f", "v1"}})
	p.XAdd(ctx, &redis.XAddArgs{Stream: "stream", ID: "2-1", Values: []string{"f", "v2"}})
	p.XGroupCreate(ctx, "stream", "grp", "0")
	p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "alice", Streams: []string{"stream", ">"}, Count: 1})
	p.Set(ctx, "big", noise(5_000_000, 0), 0) // DUMP compresses, so not a repeat
	for i := 0; i < 5000; i++ {
		p.HSet(ctx, "bighash", fmt.Sprintf("field%d", i), strings.Repeat("v", i%50))
		p.RPush(ctx, "biglist", i)
		p.ZAdd(ctx, "bigzset", redis.Z{Score: float64(i), Member: fmt.Sprint("m", i)})
	}
	for i := 0; i < 500; i++ {
		p.Set(ctx, fmt.Sprint("k", i), i, 0)
	}
	p.Set(ctx, "ttl1", "v", time.Hour)
	p.HSet(ctx, "ttl2", "a", "b")
	p.PExpire(ctx, "ttl2", 90*time.Minute)
	p.Set(ctx, PositionKey, "3:42", 0)
	p.Set(ctx, internalPrefix+"other", "x", 0)
	p.FunctionLoad(ctx, testLibrary)
	_, err := p.Exec(ctx)
	must(t, err)

	for _, db := range []int{1, 5} {
		c := clientIn(t, r, db)
		p := c.Pipeline()
		for i := 0; i < 300; i++ {
			p.Set(ctx, fmt.Sprint("d", db, "k", i), i, 0)
		}
		// Only db 0 holds replicar's keys; elsewhere the name is data.
		p.Set(ctx, PositionKey, "data", 0)
		p.Set(ctx, "ttl", "v", 2*time.Hour)
		p.SAdd(ctx, "s", "a", "b")
		_, err := p.Exec(ctx)
		must(t, err)
	}
}

func TestCopySnapshot(t *testing.T) {
	src := harness.StartRedis(t, harness.RedisArgs("--enable-debug-command", "local"))
	dst := harness.StartRedis(t, harness.RedisArgs("--enable-debug-command", "local"))
	ctx := context.Background()
	fillSource(t, src)

	// Stale data on the target, in a db the source leaves empty, and a
	// function the source does not have: both must go.
	d3 := clientIn(t, dst, 3)
	must(t, d3.Set(ctx, "stale", "x", 0).Err())
	must(t, d3.FunctionLoad(ctx, "#!lua name=stalelib\nredis.register_function('stale', function() return 1 end)").Err())

	var mu sync.Mutex
	var calls []SnapshotStats
	pos := backlog.Position{Epoch: 2, Offset: 99}
	st, err := CopySnapshot(ctx, src.Addr, dst.Addr, SnapshotOptions{
		BatchSize:     100,
		ProgressEvery: time.Nanosecond,
		Progress: func(s SnapshotStats) {
			mu.Lock()
			calls = append(calls, s)
			mu.Unlock()
		},
		Position: &pos,
	})
	if err != nil {
		t.Fatalf("CopySnapshot: %v", err)
	}
	t.Logf("stats: %+v", st)

	// The target's marker is the position given, which an Applier reads.
	a := NewApplier(dst.Addr, ApplierOptions{})
	defer a.Close()
	if got, err := a.Position(ctx); err != nil || got != pos {
		t.Fatalf("target position = %v, %v; want %v", got, err, pos)
	}

	// The source's own keys were not copied.
	t0 := clientIn(t, dst, 0)
	if n, err := t0.Exists(ctx, internalPrefix+"other").Result(); err != nil || n != 0 {
		t.Fatalf("%sother on the target: %d, %v", internalPrefix, n, err)
	}
	// Compare everything but replicar's keys in db 0.
	s0 := clientIn(t, src, 0)
	must(t, s0.Del(ctx, PositionKey, internalPrefix+"other").Err())
	must(t, t0.Del(ctx, PositionKey).Err())
	if a, b := digest(t, s0), digest(t, t0); a != b {
		t.Fatalf("DEBUG DIGEST: source %s, target %s", a, b)
	}
	for _, db := range []int{0, 1, 3, 5} {
		a, _ := clientIn(t, src, db).DBSize(ctx).Result()
		b, _ := clientIn(t, dst, db).DBSize(ctx).Result()
		if a != b {
			t.Errorf("db %d: dbsize source %d, target %d", db, a, b)
		}
	}

	// Expiries are carried as absolute times.
	for _, k := range []struct {
		db  int
		key string
	}{{0, "ttl1"}, {0, "ttl2"}, {1, "ttl"}, {5, "ttl"}, {0, "str"}} {
		a, err1 := clientIn(t, src, k.db).Do(ctx, "PEXPIRETIME", k.key).Int64()
		b, err2 := clientIn(t, dst, k.db).Do(ctx, "PEXPIRETIME", k.key).Int64()
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("db %d %s: PEXPIRETIME source %d (%v), target %d (%v)", k.db, k.key, a, err1, b, err2)
		}
	}

	// The consumer group and its pending entry came along.
	if pend, err := t0.XPending(ctx, "stream", "grp").Result(); err != nil || pend.Count != 1 {
		t.Errorf("XPENDING on the target = %+v, %v; want 1 pending", pend, err)
	}

	// Functions were copied and the target's own flushed.
	if v, err := t0.FCall(ctx, "snapecho", nil, "ping").Text(); err != nil || v != "ping" {
		t.Errorf("FCALL snapecho on the target = %q, %v", v, err)
	}
	if err := t0.FCall(ctx, "stale", nil).Err(); err == nil {
		t.Errorf("the target's own function survived the resync")
	}

	// Counters: every key but the two internal ones was restored.
	var want int64
	for _, db := range []int{0, 1, 5} {
		n, _ := clientIn(t, src, db).DBSize(ctx).Result()
		want += n
	}
	if st.Keys < want || st.Skipped < 2 || st.Libraries != 1 || st.TotalKeys != want+2 || !st.Done || st.ETA != 0 {
		t.Errorf("stats %+v; want Keys >= %d, Skipped >= 2, Libraries 1, TotalKeys %d, Done", st, want, want+2)
	}
	if st.Bytes < 5_000_000 {
		t.Errorf("Bytes = %d; want at least the 5 MB value", st.Bytes)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 3 {
		t.Fatalf("%d progress calls; want several", len(calls))
	}
	for i, c := range calls {
		last := i == len(calls)-1
		if c.Done != last {
			t.Errorf("call %d: Done = %v", i, c.Done)
		}
		if i > 0 && (c.Keys < calls[i-1].Keys || c.Elapsed < calls[i-1].Elapsed || c.DB < calls[i-1].DB) {
			t.Errorf("call %d went backwards: %+v after %+v", i, c, calls[i-1])
		}
		if c.TotalKeys != want+2 || c.KeysPerSec < 0 || c.BytesPerSec < 0 || c.Keys > c.TotalKeys {
			t.Errorf("call %d: %+v", i, c)
		}
		if !last && c.Keys+c.Skipped < c.TotalKeys && c.ETA <= 0 {
			t.Errorf("call %d: no ETA midway: %+v", i, c)
		}
	}
	if calls[len(calls)-1] != st {
		t.Errorf("last call %+v, returned %+v", calls[len(calls)-1], st)
	}
}

func TestCopySnapshotWithoutPosition(t *testing.T) {
	src := harness.StartRedis(t)
	dst := harness.StartRedis(t)
	ctx := context.Background()
	must(t, src.Client().Set(ctx, "a", "1", 0).Err())
	if _, err := CopySnapshot(ctx, src.Addr, dst.Addr, SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the caller sets the position, an Applier refuses the target.
	a := NewApplier(dst.Addr, ApplierOptions{})
	defer a.Close()
	if _, err := a.Position(ctx); !errors.Is(err, ErrBadMarker) {
		t.Fatalf("Position after a copy without one = %v; want ErrBadMarker", err)
	}
	must(t, a.SetPosition(ctx, backlog.Position{Epoch: 1, Offset: 7}))
	if v, err := dst.Client().Get(ctx, "a").Result(); err != nil || v != "1" {
		t.Fatalf("a = %q, %v", v, err)
	}
}

func TestCopySnapshotSameServer(t *testing.T) {
	r := harness.StartRedis(t)
	ctx := context.Background()
	must(t, r.Client().Set(ctx, "a", "1", 0).Err())
	if _, err := CopySnapshot(ctx, r.Addr, r.Addr, SnapshotOptions{}); err == nil {
		t.Fatal("copying a server onto itself succeeded")
	}
	if n, _ := r.Client().Exists(ctx, "a").Result(); n != 1 {
		t.Fatal("the source was flushed")
	}
}

// noise returns n incompressible bytes, different for each seed.
func noise(n int, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

// fillMany writes n keys of size incompressible bytes each into db 0.
func fillMany(t testing.TB, r *harness.Redis, n, size int) {
	ctx := context.Background()
	c := r.Client()
	pool := noise(size+4096, 7)
	for i := 0; i < n; i += 5000 {
		p := c.Pipeline()
		for j := i; j < min(n, i+5000); j++ {
			off := j % 4096
			p.Set(ctx, fmt.Sprintf("key:%08d", j), pool[off:off+size], 0)
		}
		_, err := p.Exec(ctx)
		must(t, err)
	}
}

func TestCopySnapshotCancel(t *testing.T) {
	src := harness.StartRedis(t)
	dst := harness.StartRedis(t)
	fillMany(t, src, 20000, 10_000) // 200 MB: long enough to cancel midway

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	var cancelled time.Time
	st, err := CopySnapshot(ctx, src.Addr, dst.Addr, SnapshotOptions{
		BatchSize:     200,
		ProgressEvery: time.Nanosecond,
		Progress: func(s SnapshotStats) {
			if s.Keys > 0 {
				once.Do(func() { cancelled = time.Now(); cancel() })
			}
		},
	})
	took := time.Since(cancelled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if took > time.Second {
		t.Fatalf("returned %v after the cancel", took)
	}
	if st.Keys >= 20000 {
		t.Fatalf("copied everything (%+v) despite the cancel", st)
	}
	t.Logf("cancelled after %d keys; returned in %v: %v", st.Keys, took, err)
}

func TestCopySnapshot50k(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	src := harness.StartRedis(t, harness.RedisArgs("--enable-debug-command", "local"))
	dst := harness.StartRedis(t, harness.RedisArgs("--enable-debug-command", "local"))
	const n = 50000
	fillMany(t, src, n, 1000)
	ctx := context.Background()
	st, err := CopySnapshot(ctx, src.Addr, dst.Addr, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys < n || st.Skipped != 0 {
		t.Fatalf("stats %+v; want %d keys", st, n)
	}
	must(t, dst.Client().Del(ctx, PositionKey).Err())
	if a, b := digest(t, src.Client()), digest(t, dst.Client()); a != b {
		t.Fatalf("DEBUG DIGEST: source %s, target %s", a, b)
	}
	t.Logf("%d keys, %.1f MB of DUMP payload in %v: %.0f keys/s, %.1f MB/s",
		st.Keys, float64(st.Bytes)/1e6, st.Elapsed.Round(time.Millisecond), st.KeysPerSec, st.BytesPerSec/1e6)
}
