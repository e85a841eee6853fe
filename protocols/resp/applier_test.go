package resp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/test/harness"
)

// entry builds a backlog entry whose payload runs cmds in db.
func entry(epoch, offset uint64, db int, cmds ...[]string) backlog.Entry {
	p := Payload{DB: db}
	for _, c := range cmds {
		args := make([][]byte, len(c))
		for i, s := range c {
			args[i] = []byte(s)
		}
		p.Cmds = append(p.Cmds, args)
	}
	return backlog.Entry{Epoch: epoch, Offset: offset, Payload: AppendPayload(nil, p)}
}

func cmd(args ...string) []string { return args }

func digest(t testing.TB, c *redis.Client) string {
	t.Helper()
	s, err := c.Do(context.Background(), "DEBUG", "DIGEST").Text()
	if err != nil {
		t.Fatalf("debug digest: %v", err)
	}
	return s
}

// getIn reads key in db with a fresh connection, so SELECT does not leak.
func getIn(t testing.TB, r *harness.Redis, db int, key string) string {
	t.Helper()
	o := r.Options()
	o.DB = db
	c := redis.NewClient(o)
	defer c.Close()
	v, err := c.Get(context.Background(), key).Result()
	if err == redis.Nil {
		return "(nil)"
	}
	if err != nil {
		t.Fatalf("get %s in db %d: %v", key, db, err)
	}
	return v
}

func TestApplierSequence(t *testing.T) {
	r := harness.StartRedis(t, harness.RedisArgs("--enable-debug-command", "local"))
	c := r.Client()
	ctx := context.Background()
	a := NewApplier(r.Addr, ApplierOptions{MaxTxEntries: 3})
	defer a.Close()

	if pos, err := a.Position(ctx); err != nil || pos != (backlog.Position{}) {
		t.Fatalf("Position on an empty store = %v, %v; want 0:0", pos, err)
	}
	entries := []backlog.Entry{
		entry(1, 1, 0, cmd("SET", "a", "1")),
		entry(1, 2, 2, cmd("SET", "b", "2")),
		// A client's MULTI with a SELECT inside: the connection ends in
		// db 2, and the applier must still write its marker in db 0.
		entry(1, 3, 0, cmd("SET", "c", "3"), cmd("SELECT", "2"), cmd("INCR", "b")),
		// A script that fails after writing: logged so that replicas do
		// the same write, and its error is accepted.
		entry(3, 4, 0, cmd("EVAL", "redis.call('SET', KEYS[1], 'w'); return redis.error_reply('boom')", "1", "d")),
		// SWAPDB moves the marker to db 1; it must be rewritten in db 0.
		entry(3, 5, 0, cmd("SWAPDB", "0", "1")),
		entry(3, 6, 0, cmd("SET", "e", "5")),
		entry(3, 7, 1, cmd("SET", "f", "6")),
	}
	pos, err := a.Apply(ctx, entries)
	if want := (backlog.Position{Epoch: 3, Offset: 7}); err != nil || pos != want {
		t.Fatalf("Apply = %v, %v; want %v", pos, err, want)
	}
	if n := a.CommandErrors(); n != 1 {
		t.Errorf("CommandErrors = %d, want 1 (the EVAL)", n)
	}
	for _, k := range []struct {
		db        int
		key, want string
	}{
		{0, PositionKey, "3:7"},
		{1, PositionKey, "(nil)"}, // the stale marker SWAPDB moved is removed
		{0, "a", "(nil)"},
		{1, "a", "1"},
		{1, "c", "3"},
		{1, "d", "w"},
		{2, "b", "3"},
		{0, "e", "5"},
		{1, "f", "6"},
	} {
		if got := getIn(t, r, k.db, k.key); got != k.want {
			t.Errorf("db %d %s = %q, want %q", k.db, k.key, got, k.want)
		}
	}

	// A new applier, as after a restart, learns the position from the store.
	b := NewApplier(r.Addr, ApplierOptions{})
	defer b.Close()
	if pos, err := b.Position(ctx); err != nil || pos != (backlog.Position{Epoch: 3, Offset: 7}) {
		t.Fatalf("Position = %v, %v; want 3:7", pos, err)
	}

	// Replaying what is applied changes nothing, from either applier.
	before := digest(t, c)
	for _, ap := range []*Applier{a, b} {
		for _, batch := range [][]backlog.Entry{entries, entries[3:], entries[6:]} {
			if pos, err := ap.Apply(ctx, batch); err != nil || pos.Offset != 7 {
				t.Fatalf("replay: Apply = %v, %v", pos, err)
			}
		}
	}
	if after := digest(t, c); after != before {
		t.Fatalf("replay changed the store: digest %s, was %s", after, before)
	}

	refused := []struct {
		name    string
		entries []backlog.Entry
		want    error
	}{
		{"gap", []backlog.Entry{entry(3, 9, 0, cmd("SET", "g", "1"))}, ErrGap},
		{"gap inside", []backlog.Entry{entry(3, 8, 0, cmd("SET", "g", "1")), entry(3, 10, 0, cmd("SET", "g", "2"))}, ErrGap},
		{"lower epoch", []backlog.Entry{entry(2, 8, 0, cmd("SET", "g", "1"))}, ErrEpochRegression},
		{"lower epoch inside", []backlog.Entry{entry(4, 8, 0, cmd("SET", "g", "1")), entry(3, 9, 0, cmd("SET", "g", "2"))}, ErrEpochRegression},
		{"diverged", []backlog.Entry{entry(4, 7, 0, cmd("SET", "g", "1")), entry(4, 8, 0, cmd("SET", "g", "2"))}, ErrDiverged},
		{"bad payload", []backlog.Entry{{Epoch: 3, Offset: 8, Payload: []byte("nope")}}, ErrPayload},
	}
	for _, tc := range refused {
		pos, err := a.Apply(ctx, tc.entries)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Apply error = %v, want %v", tc.name, err, tc.want)
		}
		if pos.Offset != 7 {
			t.Errorf("%s: Apply position = %v, want 3:7", tc.name, pos)
		}
	}
	if after := digest(t, c); after != before {
		t.Fatalf("a refused batch changed the store")
	}

	// Full resync: the marker is set without applying anything.
	if err := a.SetPosition(ctx, backlog.Position{Epoch: 5, Offset: 100}); err != nil {
		t.Fatal(err)
	}
	if got := getIn(t, r, 0, PositionKey); got != "5:100" {
		t.Fatalf("after SetPosition the marker is %q", got)
	}
	if pos, err := b.Apply(ctx, []backlog.Entry{entry(5, 101, 0, cmd("SET", "h", "1"))}); err != nil || pos != (backlog.Position{Epoch: 5, Offset: 101}) {
		t.Fatalf("Apply after SetPosition from another applier = %v, %v", pos, err)
	}
}

// A transaction the store refuses stops the ones pipelined after it, so
// the store never holds an entry without the ones before it.
func TestApplierExecAbort(t *testing.T) {
	r := harness.StartRedis(t)
	c := r.Client()
	ctx := context.Background()
	a := NewApplier(r.Addr, ApplierOptions{MaxTxEntries: 1})
	defer a.Close()
	pos, err := a.Apply(ctx, []backlog.Entry{
		entry(1, 1, 0, cmd("INCR", "n")),
		entry(1, 2, 0, cmd("NOSUCHCOMMAND", "x")),
		entry(1, 3, 0, cmd("INCR", "n")),
		entry(1, 4, 0, cmd("INCR", "n")),
	})
	if !errors.Is(err, ErrExecAbort) || !strings.Contains(err.Error(), "offsets 2-2") {
		t.Fatalf("Apply error = %v, want ErrExecAbort naming offset 2", err)
	}
	t.Logf("error: %v", err)
	if pos != (backlog.Position{Epoch: 1, Offset: 1}) {
		t.Errorf("Apply position = %v, want 1:1", pos)
	}
	if n, _ := c.Get(ctx, "n").Int(); n != 1 {
		t.Errorf("n = %d, want 1: a transaction after the refused one ran", n)
	}
	if got := getIn(t, r, 0, PositionKey); got != "1:1" {
		t.Errorf("marker = %q, want 1:1", got)
	}
	pos, err = a.Apply(ctx, []backlog.Entry{
		entry(1, 2, 0, cmd("INCR", "n")),
		entry(1, 3, 0, cmd("INCR", "n")),
	})
	if err != nil || pos.Offset != 3 {
		t.Fatalf("Apply after fixing = %v, %v", pos, err)
	}
	if n, _ := c.Get(ctx, "n").Int(); n != 3 {
		t.Errorf("n = %d, want 3", n)
	}
}

// An entry that would break the applier's own transaction is refused.
func TestApplierRefusesTxControl(t *testing.T) {
	r := harness.StartRedis(t)
	a := NewApplier(r.Addr, ApplierOptions{})
	defer a.Close()
	_, err := a.Apply(context.Background(), []backlog.Entry{entry(1, 1, 0, cmd("SET", "a", "1"), cmd("exec"))})
	if err == nil || !strings.Contains(err.Error(), "exec in an entry") {
		t.Fatalf("Apply error = %v, want a refusal", err)
	}
	_, err = a.Apply(context.Background(), []backlog.Entry{entry(1, 1, 99, cmd("SET", "a", "1"))})
	if err == nil || !strings.Contains(err.Error(), "databases") {
		t.Fatalf("Apply to db 99 error = %v, want a refusal", err)
	}
}

func incrs(from, n uint64) []backlog.Entry {
	es := make([]backlog.Entry, n)
	for i := range es {
		es[i] = entry(1, from+uint64(i), 0, cmd("INCR", "counter"))
	}
	return es
}

// applyAll applies batches of INCRs, retrying each until it goes through,
// as a follower's apply loop does.
func applyAll(t *testing.T, a *Applier, batches, size int, onErr func()) (errs int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < batches; i++ {
		batch := incrs(uint64(i*size)+1, uint64(size))
		for {
			pos, err := a.Apply(ctx, batch)
			if err == nil {
				if pos.Offset != uint64((i+1)*size) {
					t.Fatalf("batch %d: position %v", i, pos)
				}
				break
			}
			if errors.Is(err, ErrGap) || errors.Is(err, ErrEpochRegression) || errors.Is(err, ErrDiverged) {
				t.Fatalf("batch %d: %v", i, err)
			}
			errs++
			if onErr != nil {
				onErr()
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch %d: still failing: %v", i, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return errs
}

func checkCounter(t *testing.T, r *harness.Redis, want int) {
	t.Helper()
	if got := getIn(t, r, 0, "counter"); got != strconv.Itoa(want) {
		t.Errorf("counter = %s, want %d: an entry was applied other than once", got, want)
	}
	if got := getIn(t, r, 0, PositionKey); got != fmt.Sprintf("1:%d", want) {
		t.Errorf("marker = %s, want 1:%d", got, want)
	}
}

// Killing the applier's connection mid-batch loses nothing and doubles
// nothing: after retries the counter equals the number of entries.
func TestApplierConnectionKilled(t *testing.T) {
	r := harness.StartRedis(t)
	c := r.Client()
	a := NewApplier(r.Addr, ApplierOptions{MaxTxEntries: 7})
	defer a.Close()

	var kills atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx := context.Background()
		for {
			select {
			case <-done:
				return
			case <-time.After(3 * time.Millisecond):
			}
			list, err := c.ClientList(ctx).Result()
			if err != nil {
				continue
			}
			for _, line := range strings.Split(list, "\n") {
				if !strings.Contains(line, " name=replicar-applier ") {
					continue
				}
				id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
				if n, err := c.Do(ctx, "CLIENT", "KILL", "ID", id).Int(); err == nil && n > 0 {
					kills.Add(1)
				}
			}
		}
	}()
	const batches, size = 300, 50
	errs := applyAll(t, a, batches, size, nil)
	close(done)
	wg.Wait()
	t.Logf("%d kills, %d failed Apply calls", kills.Load(), errs)
	if errs == 0 {
		t.Fatalf("no Apply call failed: the test did not interrupt anything")
	}
	checkCounter(t, r, batches*size)
}

// A store that crashes mid-batch (SIGKILL, AOF with appendfsync always)
// and restarts: the resumed applier continues from the store's marker.
func TestApplierStoreRestart(t *testing.T) {
	r := harness.StartRedis(t, harness.RedisAppendOnly(true), harness.RedisArgs("--appendfsync", "always"))
	a := NewApplier(r.Addr, ApplierOptions{MaxTxEntries: 16, DialTimeout: time.Second})
	defer a.Close()

	var restarts atomic.Int64
	var mu sync.Mutex
	restartAfter := 50 // Apply calls before the next crash
	calls := 0
	const batches, size = 400, 25
	ctx := context.Background()
	deadline := time.Now().Add(90 * time.Second)
	errs := 0
	for i := 0; i < batches; i++ {
		batch := incrs(uint64(i*size)+1, uint64(size))
		for {
			calls++
			if calls%restartAfter == 0 && restarts.Load() < 3 {
				// Crash the store while this Apply is in flight.
				go func() {
					mu.Lock()
					defer mu.Unlock()
					time.Sleep(200 * time.Microsecond)
					if err := r.Restart(); err != nil {
						t.Errorf("restart: %v", err)
					}
					restarts.Add(1)
				}()
			}
			_, err := a.Apply(ctx, batch)
			if err == nil {
				break
			}
			if errors.Is(err, ErrGap) || errors.Is(err, ErrEpochRegression) || errors.Is(err, ErrDiverged) {
				t.Fatalf("batch %d: %v", i, err)
			}
			errs++
			if time.Now().After(deadline) {
				t.Fatalf("batch %d: still failing: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	mu.Lock() // wait for a restart in progress
	mu.Unlock()
	t.Logf("%d restarts, %d failed Apply calls", restarts.Load(), errs)
	if restarts.Load() == 0 || errs == 0 {
		t.Fatalf("the store was not restarted under the applier")
	}
	checkCounter(t, r, batches*size)
	b := NewApplier(r.Addr, ApplierOptions{})
	defer b.Close()
	if pos, err := b.Position(ctx); err != nil || pos.Offset != batches*size {
		t.Fatalf("Position after restarts = %v, %v", pos, err)
	}
}

func TestParseMarker(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want backlog.Position
		ok   bool
	}{
		{"0:0", backlog.Position{}, true},
		{"7:1234", backlog.Position{Epoch: 7, Offset: 1234}, true},
		{"18446744073709551615:1", backlog.Position{Epoch: 1<<64 - 1, Offset: 1}, true},
		{"", backlog.Position{}, false},
		{"7", backlog.Position{}, false},
		{"7:", backlog.Position{}, false},
		{"-1:2", backlog.Position{}, false},
		{"1:2:3", backlog.Position{}, false},
	} {
		got, err := parseMarker([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMarker(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrBadMarker) {
			t.Errorf("parseMarker(%q) error %v is not ErrBadMarker", tc.in, err)
		}
	}
}

// BenchmarkApplierSet applies 10k single-SET entries per iteration, in
// Apply calls of 1000 entries.
func BenchmarkApplierSet(b *testing.B) {
	r := harness.StartRedis(b)
	ctx := context.Background()
	for _, txEntries := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("tx=%d", txEntries), func(b *testing.B) {
			a := NewApplier(r.Addr, ApplierOptions{MaxTxEntries: txEntries})
			defer a.Close()
			if err := a.SetPosition(ctx, backlog.Position{}); err != nil {
				b.Fatal(err)
			}
			const total, per = 10000, 1000
			var next uint64 = 1
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				batches := make([][]backlog.Entry, 0, total/per)
				for j := 0; j < total/per; j++ {
					batch := make([]backlog.Entry, per)
					for k := range batch {
						batch[k] = entry(1, next, 0, cmd("SET", "key:"+strconv.Itoa(k+j*per), "value"))
						next++
					}
					batches = append(batches, batch)
				}
				b.StartTimer()
				for _, batch := range batches {
					if _, err := a.Apply(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
