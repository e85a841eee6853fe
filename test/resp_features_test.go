package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/protocols/resp"
	"github.com/replicar/replicar/test/harness"
)

func TestRESPTransactionsAndWatch(t *testing.T) {
	primary := startRedis(t)
	replica := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()
	c, other := n.client(t, 0), n.client(t, 0)

	// A plain transaction is one entry.
	before := n.Node.Snapshot().Last
	res, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "tx:a", "1", time.Hour)
		p.Incr(ctx, "tx:n")
		p.Get(ctx, "tx:a")
		return nil
	})
	if err != nil || len(res) != 3 || res[2].(*redis.StringCmd).Val() != "1" {
		t.Fatalf("MULTI/EXEC: %v %v", res, err)
	}
	if got := n.Node.Snapshot().Last - before; got != 1 {
		t.Fatalf("a transaction logged %d entries, want 1", got)
	}

	// WATCH: a key written by another client since the WATCH aborts EXEC.
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		if err := other.Set(ctx, "tx:w", "changed", 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "tx:w", "mine", 0)
			return nil
		})
		return err
	}, "tx:w")
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("EXEC after a concurrent write to a watched key: want TxFailedErr, got %v", err)
	}
	if v := other.Get(ctx, "tx:w").Val(); v != "changed" {
		t.Fatalf("aborted transaction wrote: %q", v)
	}
	// Unmodified watched key: EXEC runs.
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		v, _ := tx.Get(ctx, "tx:w").Result()
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "tx:w", v+"+mine", 0)
			return nil
		})
		return err
	}, "tx:w")
	if err != nil || other.Get(ctx, "tx:w").Val() != "changed+mine" {
		t.Fatalf("EXEC with an untouched watched key: %v, value %q", err, other.Get(ctx, "tx:w").Val())
	}
	// Optimistic increments from many clients: no lost update.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			cl := n.client(t, 0)
			for done := 0; done < 20; {
				err := cl.Watch(ctx, func(tx *redis.Tx) error {
					v, err := tx.Get(ctx, "tx:counter").Int()
					if err != nil && err != redis.Nil {
						return err
					}
					_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
						p.Set(ctx, "tx:counter", v+1, 0)
						return nil
					})
					return err
				}, "tx:counter")
				if err == nil {
					done++
				} else if !errors.Is(err, redis.TxFailedErr) {
					t.Errorf("watch loop: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v, _ := c.Get(ctx, "tx:counter").Int(); v != 160 {
		t.Fatalf("optimistic counter = %d, want 160", v)
	}
	// Errors: EXEC/DISCARD without MULTI, nested MULTI, queued unknown command.
	raw := dialRaw(t, n.Addr)
	raw.expect(t, "EXEC", "-ERR EXEC without MULTI")
	raw.expect(t, "DISCARD", "-ERR DISCARD without MULTI")
	raw.expect(t, "MULTI", "+OK")
	raw.expect(t, "MULTI", "-ERR MULTI calls can not be nested")
	raw.expect(t, "SET tx:x 1", "+QUEUED")
	raw.expect(t, "NOSUCHCMD a", "-ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' ")
	raw.expect(t, "EXEC", "-EXECABORT Transaction discarded because of previous errors.")
	if c.Exists(ctx, "tx:x").Val() != 0 {
		t.Fatal("an aborted transaction wrote")
	}
	compareReplay(t, n, primary.Addr, replica.Addr)
}

func TestRESPLuaScripts(t *testing.T) {
	primary := startRedis(t)
	replica := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()
	c := n.client(t, 0)
	body := "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
	// EVALSHA of a script the proxy has not seen is refused unexecuted with
	// NOSCRIPT, and go-redis's Script falls back to EVAL.
	sha := resp.ScriptSHA([]byte(body))
	if err := c.EvalSha(ctx, sha, []string{"lua:k"}, "x").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("EVALSHA of an unknown script: %v", err)
	}
	s := redis.NewScript(body)
	for i := range 5 {
		if v, err := s.Run(ctx, c, []string{"lua:k"}, i).Text(); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("script run %d: %q %v", i, v, err)
		}
	}
	if err := c.ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.EvalSha(ctx, resp.ScriptSHA([]byte("return redis.call('INCR', KEYS[1])")), []string{"lua:n"}).Err(); err != nil {
		t.Fatalf("EVALSHA after SCRIPT LOAD: %v", err)
	}
	// A script that fails after writing keeps its write, on Redis and on
	// the replay.
	c.Set(ctx, "lua:text", "not a number", 0)
	err := c.Eval(ctx, "redis.call('SET', KEYS[1], 'partial'); return redis.call('INCR', KEYS[2])", []string{"lua:p", "lua:text"}).Err()
	if err == nil {
		t.Fatal("INCR of a non-integer succeeded")
	}
	compareReplay(t, n, primary.Addr, replica.Addr)
}

func TestRESPBlockingPops(t *testing.T) {
	primary := startRedis(t)
	replica := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()

	const consumers, items = 8, 400
	got := make(chan string, items)
	var wg sync.WaitGroup
	for range consumers {
		wg.Go(func() {
			c := n.client(t, 0)
			for {
				v, err := c.BLPop(ctx, 2*time.Second, "bq:a", "bq:b").Result()
				if err == redis.Nil {
					return
				}
				if err != nil {
					t.Errorf("BLPOP: %v", err)
					return
				}
				got <- v[1]
			}
		})
	}
	p := n.client(t, 0)
	for i := range items {
		key := []string{"bq:a", "bq:b"}[i%2]
		if err := p.RPush(ctx, key, fmt.Sprint(i)).Err(); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	wg.Wait()
	close(got)
	seen := map[string]bool{}
	for v := range got {
		if seen[v] {
			t.Fatalf("item %s popped twice", v)
		}
		seen[v] = true
	}
	if len(seen) != items {
		t.Fatalf("%d of %d items popped", len(seen), items)
	}
	// Timeouts answer nil in the command's own shape.
	c := n.client(t, 0)
	start := time.Now()
	if err := c.BLMove(ctx, "bq:none", "bq:dst", "LEFT", "RIGHT", 100*time.Millisecond).Err(); err != redis.Nil {
		t.Fatalf("BLMOVE timeout: %v", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
		t.Fatalf("BLMOVE timeout took %v", d)
	}
	// BZPOPMIN and XREAD BLOCK $ wake on a write.
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.ZAdd(ctx, "bq:z", redis.Z{Score: 1, Member: "one"})
		p.XAdd(ctx, &redis.XAddArgs{Stream: "bq:s", Values: []any{"f", "v"}})
	}()
	if z, err := c.BZPopMin(ctx, 5*time.Second, "bq:z").Result(); err != nil || z.Member != "one" {
		t.Fatalf("BZPOPMIN: %v %v", z, err)
	}
	streams, err := n.client(t, 0).XRead(ctx, &redis.XReadArgs{Streams: []string{"bq:s2", "$"}, Block: 200 * time.Millisecond}).Result()
	if err != redis.Nil {
		t.Fatalf("XREAD BLOCK on an idle stream: %v %v", streams, err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.XAdd(ctx, &redis.XAddArgs{Stream: "bq:s2", Values: []any{"f", "new"}})
	}()
	streams, err = c.XRead(ctx, &redis.XReadArgs{Streams: []string{"bq:s2", "$"}, Block: 5 * time.Second}).Result()
	if err != nil || len(streams) != 1 || streams[0].Messages[0].Values["f"] != "new" {
		t.Fatalf("XREAD BLOCK $: %v %v", streams, err)
	}
	// A client that disconnects while blocked leaves nothing behind.
	raw := dialRaw(t, n.Addr)
	raw.send(t, "BLPOP bq:never 0")
	waitFor(t, func() bool { return blockedClients(t, c) == 1 })
	raw.conn.Close()
	waitFor(t, func() bool { return blockedClients(t, c) == 0 })
	compareReplay(t, n, primary.Addr, replica.Addr)
}

func blockedClients(t *testing.T, c *redis.Client) int {
	info, err := c.Do(context.Background(), "REPLICAR", "INFO").Text()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}

func TestRESPPubSub(t *testing.T) {
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()
	sub := n.client(t, 0).Subscribe(ctx, "news")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	psub := n.client(t, 0).PSubscribe(ctx, "ne*")
	defer psub.Close()
	if _, err := psub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	before := n.Node.Snapshot().Last
	if r, err := n.client(t, 0).Publish(ctx, "news", "hello").Result(); err != nil || r != 2 {
		t.Fatalf("PUBLISH: %d receivers, %v", r, err)
	}
	if n.Node.Snapshot().Last != before+1 {
		t.Fatal("PUBLISH was not logged")
	}
	for _, ch := range []<-chan *redis.Message{sub.Channel(), psub.Channel()} {
		select {
		case m := <-ch:
			if m.Payload != "hello" {
				t.Fatalf("message %q", m.Payload)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
		}
	}
	// Subscribed mode allows only pub/sub commands; leaving it restores
	// the connection.
	raw := dialRaw(t, n.Addr)
	raw.expect(t, "SUBSCRIBE a", "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1")
	raw.expect(t, "GET x", "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
	raw.expect(t, "UNSUBSCRIBE", "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0")
	raw.expect(t, "PING", "+PONG")
}

func TestRESPConnectionStateAndAuth(t *testing.T) {
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr, withPassword("s3cret"))
	raw := dialRaw(t, n.Addr)
	raw.expect(t, "GET k", "-NOAUTH Authentication required.")
	raw.expect(t, "AUTH wrong", "-WRONGPASS invalid username-password pair or user is disabled.")
	raw.expect(t, "AUTH s3cret", "+OK")
	raw.expect(t, "SELECT 3", "+OK")
	raw.expect(t, "SET k three", "+OK")
	raw.expect(t, "SELECT 99", "-ERR DB index is out of range")
	raw.expect(t, "CLIENT SETNAME app1", "+OK")
	raw.expect(t, "CLIENT GETNAME", "$4\r\napp1")
	raw.expect(t, "HELLO 3", "-NOPROTO sorry, this protocol version is not supported")
	raw.expect(t, "PING hi", "$2\r\nhi")
	raw.expect(t, "RESET", "+RESET")
	raw.expect(t, "GET k", "-NOAUTH Authentication required.")
	raw.expect(t, "AUTH default s3cret", "+OK")
	raw.expect(t, "GET k", "$-1")
	raw.expect(t, "SELECT 3", "+OK")
	raw.expect(t, "GET k", "$5\r\nthree")
	raw.expect(t, "SELECT 0", "+OK")
	raw.expect(t, "SET __replicar:pos x", "-ERR replicar: keys under '__replicar:' in db 0 are reserved")
	raw.expect(t, "QUIT", "+OK")
	// go-redis negotiates HELLO 3, falls back to RESP2 and authenticates.
	c := redis.NewClient(&redis.Options{Addr: n.Addr, Password: "s3cret", DB: 3})
	defer c.Close()
	if v, err := c.Get(context.Background(), "k").Result(); err != nil || v != "three" {
		t.Fatalf("go-redis through the proxy: %q %v", v, err)
	}
	// The backend never saw the proxy's password: its own has none.
	if primary.Client().Get(context.Background(), "k").Err() != redis.Nil {
		t.Fatal("db 3's key leaked into db 0")
	}
}

func TestRESPBackendRestart(t *testing.T) {
	primary := startRedis(t, harness.RedisAppendOnly(true))
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()
	c := n.client(t, 0)
	if err := c.Set(ctx, "r:k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	err := c.Set(ctx, "r:k", "during", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "ERR backend unavailable") {
		t.Fatalf("write with the backend down: %v", err)
	}
	if err := primary.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return c.Set(ctx, "r:k", "after", 0).Err() == nil })
	// Read connections reconnect on their own backoff.
	waitFor(t, func() bool { return c.Get(ctx, "r:k").Val() == "after" })
}

func TestRESPBadInput(t *testing.T) {
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr, withLimits(resp.Limits{MaxBulk: 1 << 20, MaxArgs: 1 << 20, MaxInline: 64 << 10}))
	raw := dialRaw(t, n.Addr)
	raw.expect(t, "GET", "-ERR wrong number of arguments for 'get' command")
	raw.expect(t, "FOO bar", "-ERR unknown command 'FOO', with args beginning with: 'bar' ")
	raw.expect(t, "CONFIG NOPE", "-ERR unknown subcommand 'NOPE'. Try CONFIG HELP.")
	raw.expectPrefix(t, "MONITOR", "-ERR replicar: 'monitor' is not supported through the proxy")
	// An oversized bulk is refused from its header: the 2 GB never has to
	// arrive.
	raw.sendRaw(t, "*2\r\n$3\r\nGET\r\n$2000000000\r\n")
	raw.expectLine(t, "-ERR Protocol error: invalid bulk length")
	raw.expectClosed(t)
	bad := dialRaw(t, n.Addr)
	bad.sendRaw(t, "*1\r\n$3\r\nGETX\r\n")
	bad.expectLine(t, "-ERR Protocol error: invalid bulk length")
	// The proxy is still fine.
	ok := dialRaw(t, n.Addr)
	ok.expect(t, "PING", "+PONG")
	// Under NOREPLICAS nothing is executed.
	strict := startRESPNode(t, primary.Addr, withPolicy(ackpolicy.FollowerAcks(1)))
	c := strict.client(t, 0)
	err := c.Set(context.Background(), "nr:k", "v", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("write without followers under one: %v", err)
	}
	if primary.Client().Exists(context.Background(), "nr:k").Val() != 0 {
		t.Fatal("a write refused with NOREPLICAS was executed")
	}
}

// TestRESPPipelineOrder checks per-client order across the writer and read
// connections: a read pipelined after a write sees it.
func TestRESPPipelineOrder(t *testing.T) {
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			c := n.client(t, 0)
			for i := range 200 {
				key := fmt.Sprintf("ord:%d", w)
				cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.Get(ctx, key)
					p.Set(ctx, key, i, 0)
					p.Get(ctx, key)
					p.Expire(ctx, key, time.Hour)
					p.TTL(ctx, key)
					return nil
				})
				if err != nil && err != redis.Nil {
					t.Errorf("pipeline: %v", err)
					return
				}
				if got := cmds[2].(*redis.StringCmd).Val(); got != fmt.Sprint(i) {
					t.Errorf("read after write saw %q, want %d", got, i)
					return
				}
				if i > 0 && cmds[0].(*redis.StringCmd).Val() != fmt.Sprint(i-1) {
					t.Errorf("read before write saw %q, want %d", cmds[0].(*redis.StringCmd).Val(), i-1)
					return
				}
				if ttl := cmds[4].(*redis.DurationCmd).Val(); ttl <= 0 {
					t.Errorf("TTL after EXPIRE in the same pipeline: %v", ttl)
					return
				}
			}
		})
	}
	wg.Wait()
}

func compareReplay(t *testing.T, n *respNode, primary, replica string) {
	t.Helper()
	replay(t, n, replica)
	if da, db := digest(t, primary), digest(t, replica); da != db {
		diffKeys(t, primary, replica, 16)
		t.Fatalf("primary digest %s, replay digest %s", da, db)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawConn speaks RESP by hand, to check exact replies.
type rawConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{conn: conn, br: bufio.NewReader(conn)}
}

func (r *rawConn) send(t *testing.T, cmd string) {
	t.Helper()
	var args [][]byte
	for _, f := range strings.Fields(cmd) {
		args = append(args, []byte(f))
	}
	r.sendRaw(t, string(resp.AppendCommand(nil, args...)))
}

func (r *rawConn) sendRaw(t *testing.T, s string) {
	t.Helper()
	if _, err := r.conn.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// expect sends cmd and checks the whole reply, written without its final
// CRLF.
func (r *rawConn) expect(t *testing.T, cmd, want string) {
	t.Helper()
	r.send(t, cmd)
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	v, err := readOne(r.br)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	got := strings.TrimSuffix(string(resp.AppendValue(nil, v)), "\r\n")
	if got != want {
		t.Fatalf("%s:\n got %q\nwant %q", cmd, got, want)
	}
}

func (r *rawConn) expectPrefix(t *testing.T, cmd, want string) {
	t.Helper()
	r.send(t, cmd)
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	v, err := readOne(r.br)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if got := string(resp.AppendValue(nil, v)); !strings.HasPrefix(got, want) {
		t.Fatalf("%s:\n got %q\nwant prefix %q", cmd, got, want)
	}
}

func (r *rawConn) expectLine(t *testing.T, want string) {
	t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.br.ReadString('\n')
	if err != nil || strings.TrimRight(line, "\r\n") != want {
		t.Fatalf("got %q (%v), want %q", line, err, want)
	}
}

func (r *rawConn) expectClosed(t *testing.T) {
	t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.br.ReadByte(); err == nil {
		t.Fatal("connection still open after a protocol error")
	}
}

// TestRESPDisconnectMidPipelineLeaksNothing drops clients in the middle of
// pipelines (a torn command, unread replies, a pending blocking pop) and
// checks that their sessions and goroutines go away.
func TestRESPDisconnectMidPipelineLeaksNothing(t *testing.T) {
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	c := n.client(t, 0)
	ctx := context.Background()
	connected := func() int {
		info, err := c.Do(ctx, "REPLICAR", "INFO").Text()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		for _, line := range strings.Split(info, "\r\n") {
			if s, ok := strings.CutPrefix(line, "connected_clients:"); ok {
				fmt.Sscan(s, &v)
			}
		}
		return v
	}
	baseline := connected()
	goroutines := runtime.NumGoroutine()
	for i := range 30 {
		raw := dialRaw(t, n.Addr)
		var b []byte
		for k := range 200 {
			b = resp.AppendCommand(b, []byte("SET"), []byte(fmt.Sprintf("leak:%d:%d", i, k)), []byte("v"))
		}
		switch i % 3 {
		case 0:
			b = append(b, "*3\r\n$3\r\nSET\r\n$1\r\nk"...) // torn command
		case 1:
			b = resp.AppendCommand(b, []byte("BLPOP"), []byte("leak:never"), []byte("0"))
		}
		raw.sendRaw(t, string(b))
		raw.conn.Close()
	}
	waitFor(t, func() bool { return connected() == baseline && blockedClients(t, c) == 0 })
	waitFor(t, func() bool { return runtime.NumGoroutine() <= goroutines+2 })
}

// INFO counts the clients parked in the proxy as blocked, as Redis would:
// the backend never sees them block.
func TestInfoCountsParkedClients(t *testing.T) {
	store := startRedis(t)
	n := startRESPNode(t, store.Addr)
	ctx := context.Background()
	blocker := n.client(t, 0)
	done := make(chan error, 1)
	go func() { done <- blocker.BLPop(ctx, 5*time.Second, "nothing-here").Err() }()
	c := n.client(t, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := c.Info(ctx, "clients").Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "blocked_clients:1\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("INFO clients never showed the parked client:\n%s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.RPush(ctx, "nothing-here", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A client blocked on a list pop stays blocked when its key becomes another
// type, as on Redis (which checks the type only when the command first
// runs): it is woken by the push that follows, or times out with nil.
func TestBlockedPopOutlivesTypeChange(t *testing.T) {
	store := startRedis(t)
	n := startRESPNode(t, store.Addr)
	ctx := context.Background()
	for _, direct := range []bool{true, false} {
		addr := n.Addr
		if direct {
			addr = store.Addr
		}
		t.Run(map[bool]string{true: "redis", false: "proxy"}[direct], func(t *testing.T) {
			cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
			defer cl.Close()
			admin := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
			defer admin.Close()
			key := "typechange:" + t.Name()
			admin.Del(ctx, key)
			popped := make(chan []string, 1)
			go func() {
				v, _ := cl.BLPop(ctx, 10*time.Second, key).Result()
				popped <- v
			}()
			waitFor(t, func() bool { return infoBlockedClients(t, admin) >= 1 })
			if err := admin.Set(ctx, key, "a string now", 0).Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case v := <-popped:
				t.Fatalf("woken by SET with %v; Redis keeps the client blocked", v)
			case <-time.After(300 * time.Millisecond):
			}
			admin.Del(ctx, key)
			if err := admin.RPush(ctx, key, "x").Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case v := <-popped:
				if len(v) != 2 || v[1] != "x" {
					t.Fatalf("popped %v, want [%s x]", v, key)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not woken by the push")
			}

			// Timing out on a key that is a string now gives nil.
			admin.Del(ctx, key)
			done := make(chan error, 1)
			go func() { done <- cl.BLPop(ctx, 500*time.Millisecond, key).Err() }()
			waitFor(t, func() bool { return infoBlockedClients(t, admin) >= 1 })
			admin.Set(ctx, key, "a string", 0)
			if err := <-done; err != redis.Nil {
				t.Fatalf("timeout after a type change: %v, want nil", err)
			}
		})
	}
}

// infoBlockedClients is INFO's blocked_clients, which Redis and (counting
// the clients it parks) the proxy both report.
func infoBlockedClients(t *testing.T, c *redis.Client) int {
	return infoInt(t, c, "clients", "blocked_clients")
}

// infoInt is one numeric field of an INFO section.
func infoInt(t *testing.T, c *redis.Client, section, field string) int {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}

// A client parked on XREADGROUP is probed once, not in a loop: the probe's
// own effect (the consumer it creates, which is logged) must not wake it.
func TestBlockedXReadGroupDoesNotSpin(t *testing.T) {
	store := startRedis(t)
	n := startRESPNode(t, store.Addr)
	ctx := context.Background()
	c := n.client(t, 0)
	if err := c.XGroupCreateMkStream(ctx, "spin", "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	direct := redis.NewClient(&redis.Options{Addr: store.Addr, Protocol: 2})
	defer direct.Close()
	direct.ConfigResetStat(ctx)
	before := n.Node.Status().Offset
	got := make(chan error, 1)
	go func() {
		_, err := n.client(t, 0).XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "alice",
			Streams: []string{"spin", ">"}, Block: 0}).Result()
		got <- err
	}()
	waitFor(t, func() bool { return infoBlockedClients(t, c) == 1 })
	time.Sleep(500 * time.Millisecond)
	calls := func() string {
		info, _ := direct.Info(ctx, "commandstats").Result()
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "cmdstat_xreadgroup:"); ok {
				return v
			}
		}
		return ""
	}
	if s := calls(); !strings.HasPrefix(s, "calls=1,") {
		t.Fatalf("XREADGROUP on the backend while parked: %s, want calls=1", s)
	}
	if grew := n.Node.Status().Offset - before; grew > 1 {
		t.Fatalf("the backlog grew by %d entries while the client was parked", grew)
	}
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "spin", Values: []string{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// CLIENT UNBLOCK ends another client's blocking command as Redis does:
// TIMEOUT gives the command's nil reply, ERROR the UNBLOCKED error, and a
// client not blocked reports 0. The same steps run against redis-server
// itself, and the answers must match.
func TestRESPClientUnblock(t *testing.T) {
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	for _, target := range []struct{ name, addr string }{{"redis-server", primary.Addr}, {"replicar", n.Addr}} {
		t.Run(target.name, func(t *testing.T) {
			ctx := context.Background()
			blocked := redis.NewClient(&redis.Options{Addr: target.addr, PoolSize: 1})
			defer blocked.Close()
			admin := redis.NewClient(&redis.Options{Addr: target.addr})
			defer admin.Close()
			id, err := blocked.ClientID(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got, err := admin.ClientUnblock(ctx, id).Result(); err != nil || got != 0 {
				t.Fatalf("CLIENT UNBLOCK of an idle client = %d, %v; want 0", got, err)
			}
			for _, mode := range []string{"TIMEOUT", "ERROR"} {
				done := make(chan error, 1)
				go func() { done <- blocked.BLPop(ctx, 0, "unblock:list").Err() }()
				deadline := time.Now().Add(10 * time.Second)
				var got int64
				for got != 1 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
					got, err = admin.Do(ctx, "CLIENT", "UNBLOCK", id, mode).Int64()
					if err != nil {
						t.Fatal(err)
					}
				}
				if got != 1 {
					t.Fatalf("CLIENT UNBLOCK %s never found the client blocked", mode)
				}
				select {
				case err := <-done:
					switch mode {
					case "TIMEOUT":
						if err != redis.Nil {
							t.Fatalf("BLPOP unblocked with TIMEOUT: %v, want a nil reply", err)
						}
					case "ERROR":
						if err == nil || err.Error() != "UNBLOCKED client unblocked via CLIENT UNBLOCK" {
							t.Fatalf("BLPOP unblocked with ERROR: %v", err)
						}
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("BLPOP still blocked after CLIENT UNBLOCK %s", mode)
				}
				// Unblocked once: a second unblock finds nothing.
				if got, err := admin.Do(ctx, "CLIENT", "UNBLOCK", id, mode).Int64(); err != nil || got != 0 {
					t.Fatalf("second CLIENT UNBLOCK %s = %d, %v; want 0", mode, got, err)
				}
			}
			if err := admin.Do(ctx, "CLIENT", "UNBLOCK", id, "SOMETIMES").Err(); err == nil ||
				err.Error() != "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR" {
				t.Fatalf("bad reason: %v", err)
			}
			if err := admin.Do(ctx, "CLIENT", "UNBLOCK", "x").Err(); err == nil ||
				err.Error() != "ERR value is not an integer or out of range" {
				t.Fatalf("bad id: %v", err)
			}
			// The client blocks normally afterwards, and a push serves it.
			done := make(chan []string, 1)
			go func() { v, _ := blocked.BLPop(ctx, 5*time.Second, "unblock:list").Result(); done <- v }()
			time.Sleep(100 * time.Millisecond)
			admin.RPush(ctx, "unblock:list", "v")
			if v := <-done; len(v) != 2 || v[1] != "v" {
				t.Fatalf("BLPOP after the unblocks: %v", v)
			}
		})
	}
}

// The proxy's own expiry relay stays out of the client's way: PUBSUB
// NUMPAT does not count its patterns, and a client's CONFIG SET of
// notify-keyspace-events keeps the events it needs, so a key the primary
// expires is still logged as DEL for the followers.
func TestRESPExpiryRelayInvisible(t *testing.T) {
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	ctx := context.Background()
	direct := redis.NewClient(&redis.Options{Addr: primary.Addr})
	defer direct.Close()
	c := n.client(t, 0)
	// The relay has subscribed once the primary counts its two patterns.
	waitFor(t, func() bool { return direct.PubSubNumPat(ctx).Val() == 2 })
	if got, err := c.PubSubNumPat(ctx).Result(); err != nil || got != 0 {
		t.Fatalf("PUBSUB NUMPAT through the proxy with no client pattern = %d, %v; want 0", got, err)
	}
	psub := n.client(t, 0).PSubscribe(ctx, "news.*")
	defer psub.Close()
	if _, err := psub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c.PubSubNumPat(ctx).Result(); err != nil || got != 1 {
		t.Fatalf("PUBSUB NUMPAT with one client pattern = %d, %v; want 1", got, err)
	}

	// A client turns keyspace events off; the primary keeps the relay's.
	if err := c.ConfigSet(ctx, "notify-keyspace-events", "").Err(); err != nil {
		t.Fatal(err)
	}
	flags := direct.ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]
	for _, f := range "xeE" {
		if !strings.ContainsRune(flags, f) {
			t.Fatalf("notify-keyspace-events on the primary is %q after the client's CONFIG SET: %q is gone", flags, f)
		}
	}
	// Other parameters of the same CONFIG SET pass unchanged.
	if err := c.Do(ctx, "CONFIG", "SET", "notify-keyspace-events", "Kg", "hz", "11").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := direct.ConfigGet(ctx, "*").Val()
	if cfg["hz"] != "11" || !strings.ContainsRune(cfg["notify-keyspace-events"], 'g') || !strings.ContainsRune(cfg["notify-keyspace-events"], 'x') {
		t.Fatalf("after CONFIG SET notify-keyspace-events Kg hz 11: %q, hz %s", cfg["notify-keyspace-events"], cfg["hz"])
	}
	// And the relay still logs the primary's expiry.
	if err := c.Set(ctx, "relay:short", "v", 50*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	logged := n.Node.Snapshot().Last
	deadline := time.Now().Add(10 * time.Second)
	for {
		if last := n.Node.Snapshot().Last; last > logged {
			entries, err := n.Node.Entries(last, 1<<20)
			if err != nil || len(entries) != 1 || !strings.Contains(strings.ToLower(string(entries[0].Payload)), "del") {
				t.Fatalf("entry after the key expired: %v %v", entries, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the primary's expiry of a key was not logged after a client's CONFIG SET notify-keyspace-events")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBusyNode is a node and a direct client on its primary, which
// answers BUSY 100 ms into a script.
func startBusyNode(t *testing.T) (*respNode, *redis.Client) {
	t.Helper()
	primary := startRedis(t)
	n := startRESPNode(t, primary.Addr)
	direct := redis.NewClient(&redis.Options{Addr: primary.Addr})
	t.Cleanup(func() { direct.Close() })
	if err := direct.ConfigSet(context.Background(), "busy-reply-threshold", "100").Err(); err != nil {
		t.Fatal(err)
	}
	return n, direct
}

// While a script keeps the primary busy, a read in another db gets the
// BUSY error Redis gives (its SELECT is refused too), and the read
// connection is kept: once the script ends, reads in every db work.
func TestRESPReadDuringBusyScript(t *testing.T) {
	n, direct := startBusyNode(t)
	ctx := context.Background()
	c0 := n.client(t, 0)
	c3 := n.client(t, 3)
	if err := c3.Set(ctx, "busy:k", "in-db-3", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := connectionsReceived(t, direct)
	// A script that spins for 1.5 s.
	done := make(chan error, 1)
	go func() {
		done <- c0.Eval(ctx, "local t = redis.call('TIME'); local s = t[1] * 1000000 + t[2]; "+
			"repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - s > 1500000; return 1", nil).Err()
	}()
	var sawBusy bool
	deadline := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		err := c3.Get(ctx, "busy:k").Err()
		if err == nil {
			continue // before the threshold
		}
		if strings.HasPrefix(err.Error(), "BUSY") {
			sawBusy = true
			continue
		}
		t.Fatalf("GET in db 3 during a busy script: %v (want BUSY)", err)
	}
	if !sawBusy {
		t.Fatal("no read saw BUSY while the script ran")
	}
	if err := <-done; err != nil {
		t.Fatalf("the script: %v", err)
	}
	for i := range 20 {
		c := []*redis.Client{c0, c3}[i%2]
		v, err := c.Get(ctx, "busy:k").Result()
		switch {
		case i%2 == 1 && (err != nil || v != "in-db-3"):
			t.Fatalf("GET in db 3 after the script: %q %v", v, err)
		case i%2 == 0 && err != redis.Nil:
			t.Fatalf("GET in db 0 after the script: %q %v (the key lives in db 3)", v, err)
		}
	}
	if after := connectionsReceived(t, direct); after != before {
		t.Fatalf("the primary received %d new connections: the proxy dropped one over a refused SELECT", after-before)
	}
}

// connectionsReceived is the primary's total_connections_received.
func connectionsReceived(t *testing.T, c *redis.Client) int {
	t.Helper()
	return infoInt(t, c, "stats", "total_connections_received")
}

// SCRIPT KILL from a client in another db stops a busy script: it needs
// no SELECT, which Redis would refuse with BUSY. PING meanwhile says BUSY,
// as on Redis.
func TestRESPScriptKillFromAnotherDB(t *testing.T) {
	n, direct := startBusyNode(t)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		done <- n.client(t, 0).Eval(ctx, "local t = redis.call('TIME'); local s = t[1]; "+
			"repeat t = redis.call('TIME') until t[1] - s > 20; return 1", nil).Err()
	}()
	// Wait until the primary answers BUSY, so that the first SCRIPT KILL
	// meets a read connection still in db 0.
	busyBy := time.Now().Add(5 * time.Second)
	for {
		if err := direct.Ping(ctx).Err(); err != nil && strings.HasPrefix(err.Error(), "BUSY") {
			break
		}
		if time.Now().After(busyBy) {
			t.Fatal("the primary never answered BUSY")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c3 := n.client(t, 3)
	// PING through the proxy says BUSY too, as tools that wait for it
	// before SCRIPT KILL expect.
	// (No read fence holds it: PING shows no data.)
	if err := c3.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "BUSY") {
		t.Fatalf("PING through the proxy during a busy script: %v, want BUSY", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c3.ScriptKill(ctx).Err()
		if err == nil {
			break
		}
		if !strings.HasPrefix(err.Error(), "NOTBUSY") || time.Now().After(deadline) {
			t.Fatalf("SCRIPT KILL from db 3: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("the killed script returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the script still runs after SCRIPT KILL")
	}
	if v, err := c3.Ping(ctx).Result(); err != nil || v != "PONG" {
		t.Fatalf("PING after the kill: %q %v", v, err)
	}
}

// A read served on the leader is held until everything it could have seen
// commits (READ_POLICY=leader). When the node loses the lead while the
// reply waits, the reply must still be fenced: it may show a write the
// next leader never gets. The verification suite caught this once: a
// leader paused mid-read woke up, stepped down, and then released a read
// of a write that was never committed.
func TestRESPReadFencedAcrossStepDown(t *testing.T) {
	backend := startRedis(t)
	// Two followers in the ISR that never acknowledge: writes execute on
	// the primary but never commit under quorum.
	n := startRESPNode(t, backend.Addr, withPolicy(ackpolicy.QuorumAcks()), withGroupSize(3), withAckTimeout(3*time.Second))
	n.Log.UpdateFollowers(ackpolicy.State{GroupSize: 3, Followers: []ackpolicy.Follower{
		{ID: "n2", InSync: true}, {ID: "n3", InSync: true},
	}})
	c := n.client(t, 0)
	ctx := context.Background()

	// The write's reply waits for its commit; the read after it on the
	// same connection sees the write and waits behind it.
	pipe := c.Pipeline()
	set := pipe.Set(ctx, "fence:k", "dirty", 0)
	get := pipe.Get(ctx, "fence:k")
	done := make(chan error, 1)
	go func() {
		_, err := pipe.Exec(ctx)
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	// The node steps down, as an elected leader does when its lease ends.
	n.Log.BecomeFollower()
	n.Srv.SetRoute(resp.Route{Mode: resp.RouteNone})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("pipeline not answered")
	}
	if set.Err() == nil || !strings.Contains(set.Err().Error(), "UNCOMMITTED") {
		t.Fatalf("SET: %v, want UNCOMMITTED", set.Err())
	}
	if get.Err() == nil {
		t.Fatalf("GET returned %q, a write never committed, after the node stepped down", get.Val())
	}
	if !strings.Contains(get.Err().Error(), "TRYAGAIN") {
		t.Fatalf("GET: %v, want TRYAGAIN", get.Err())
	}
}

// A read-only MULTI … EXEC is fenced like a plain read: on a leader whose
// write to the key is applied on the primary but not committed, the
// transaction's reply must not show the write.
func TestRESPReadOnlyMultiFenced(t *testing.T) {
	backend := startRedis(t)
	// Two followers in the ISR that never acknowledge: writes execute on
	// the primary but never commit under quorum.
	n := startRESPNode(t, backend.Addr, withPolicy(ackpolicy.QuorumAcks()), withGroupSize(3), withAckTimeout(2*time.Second))
	n.Log.UpdateFollowers(ackpolicy.State{GroupSize: 3, Followers: []ackpolicy.Follower{
		{ID: "n2", InSync: true}, {ID: "n3", InSync: true},
	}})
	ctx := context.Background()
	writer := n.client(t, 0)
	setDone := make(chan error, 1)
	go func() { setDone <- writer.Set(ctx, "fence:tx", "dirty", 0).Err() }()
	// The SET runs on the primary at once; wait until it has.
	direct := redis.NewClient(&redis.Options{Addr: backend.Addr, Protocol: 2})
	defer direct.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if v, _ := direct.Get(ctx, "fence:tx").Result(); v == "dirty" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the SET never reached the primary")
		}
	}
	reader := n.client(t, 0)
	var get *redis.StringCmd
	_, err := reader.TxPipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, "fence:tx")
		return nil
	})
	if err == nil && get.Val() == "dirty" {
		t.Fatal("a read-only MULTI/EXEC showed a write that was never committed")
	}
	t.Logf("read-only transaction: %v (GET %q, %v)", err, get.Val(), get.Err())
	if err := <-setDone; err == nil || !strings.Contains(err.Error(), "UNCOMMITTED") {
		t.Fatalf("SET: %v, want UNCOMMITTED", err)
	}
}

// A SELECT queued in a WATCHed MULTI whose EXEC aborts does not run, so
// the connection stays in its database: the same sequence against
// redis-server and through the proxy puts the next write in the same db.
func TestRESPAbortedExecKeepsDB(t *testing.T) {
	ctx := context.Background()
	landing := func(t *testing.T, addr string) int {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: 1})
		defer c.Close()
		conn := c.Conn()
		defer conn.Close()
		if err := conn.Select(ctx, 2).Err(); err != nil {
			t.Fatal(err)
		}
		other := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DB: 2})
		defer other.Close()
		abortedSelectTx(t, conn, other, "w", 7)
		if err := conn.Set(ctx, "after", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		for db := range 16 {
			probe := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DB: db})
			n, _ := probe.Exists(ctx, "after").Result()
			probe.Close()
			if n == 1 {
				return db
			}
		}
		t.Fatal("the write after the aborted EXEC is in no db")
		return -1
	}
	direct := landing(t, startRedis(t).Addr)
	n := startRESPNode(t, startRedis(t).Addr)
	proxied := landing(t, n.Addr)
	if direct != 2 || proxied != direct {
		t.Fatalf("after an aborted EXEC with SELECT 7 the next write went to db %d through the proxy, db %d directly (want 2)", proxied, direct)
	}
}
