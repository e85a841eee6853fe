package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/protocols/resp"
	"github.com/replicar/replicar/proxy"
	"github.com/replicar/replicar/test/harness"
)

// respNode is an in-process replicar node (leader, no followers) in front of
// a real redis-server.
type respNode struct {
	Addr string
	Node *proxy.RedisNode
	Srv  *resp.Server
	Log  *proxy.ReplLog
}

type nodeOption func(*resp.Config, *proxy.ReplLogOptions)

func withPassword(p string) nodeOption {
	return func(c *resp.Config, _ *proxy.ReplLogOptions) { c.Password = p }
}

func withPolicy(p ackpolicy.Policy) nodeOption {
	return func(_ *resp.Config, o *proxy.ReplLogOptions) { o.Policy = p }
}

func withGroupSize(n int) nodeOption {
	return func(_ *resp.Config, o *proxy.ReplLogOptions) { o.GroupSize = n }
}

func withAckTimeout(d time.Duration) nodeOption {
	return func(_ *resp.Config, o *proxy.ReplLogOptions) { o.AckTimeout = d }
}

func withLimits(l resp.Limits) nodeOption {
	return func(c *resp.Config, _ *proxy.ReplLogOptions) { c.Limits = l }
}

func startRESPNode(t *testing.T, backend string, opts ...nodeOption) *respNode {
	t.Helper()
	cfg := resp.Config{Listen: "127.0.0.1:0", Backend: backend, Logger: testLogger(t)}
	lo := proxy.ReplLogOptions{Policy: ackpolicy.LeaderAck(), GroupSize: 1, AckTimeout: 5 * time.Second, BacklogBytes: 256 << 20}
	for _, o := range opts {
		o(&cfg, &lo)
	}
	rl, _, err := proxy.OpenReplLog(context.Background(), lo)
	if err != nil {
		t.Fatal(err)
	}
	node := proxy.NewRedisNode(rl, proxy.Config{Backend: backend, NodeID: "n1", Group: "g", Protocol: proxy.ProtocolRedis, Listen: cfg.Listen}, nil)
	srv := resp.NewServer(cfg, node)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not stop within 10s")
		}
		rl.Close()
	})
	n := &respNode{Addr: srv.Addr().String(), Node: node, Srv: srv, Log: rl}
	// Wait until the writer has the command table.
	c := n.client(t, 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.Ping(context.Background()).Err(); err == nil || strings.HasPrefix(err.Error(), "NOAUTH") {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("proxy not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

func (n *respNode) client(t *testing.T, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: n.Addr, DB: db, Protocol: 2, MaxRetries: -1, PoolSize: 64,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// testLogger writes the node's logs to the test log at warn and above.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// replay applies every logged entry to target, each in one MULTI/EXEC after
// a SELECT, as a follower's applier does, and returns how many it applied.
func replay(t *testing.T, n *respNode, target string) int {
	t.Helper()
	entries, err := n.Node.Entries(1, 1<<30)
	if err != nil {
		t.Fatalf("read backlog: %v", err)
	}
	conn, err := net.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for _, e := range entries {
		p, err := resp.DecodePayload(e.Payload)
		if err != nil {
			t.Fatalf("entry %d: %v", e.Offset, err)
		}
		var buf []byte
		buf = resp.AppendCommand(buf, []byte("MULTI"))
		buf = resp.AppendCommand(buf, []byte("SELECT"), []byte(fmt.Sprint(p.DB)))
		for _, c := range p.Cmds {
			buf = resp.AppendCommand(buf, c...)
		}
		buf = resp.AppendCommand(buf, []byte("EXEC"))
		if _, err := conn.Write(buf); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(p.Cmds)+2; i++ {
			if _, err := readOne(br); err != nil {
				t.Fatalf("entry %d: queue: %v", e.Offset, err)
			}
		}
		v, err := readOne(br)
		if err != nil {
			t.Fatalf("entry %d: exec: %v", e.Offset, err)
		}
		if v.Kind != resp.Array {
			t.Fatalf("entry %d (%v): EXEC answered %s", e.Offset, p.Cmds, v)
		}
	}
	return len(entries)
}

func readOne(br *bufio.Reader) (resp.Value, error) {
	var buf []byte
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return resp.Value{}, err
		}
		buf = append(buf, line...)
		v, _, err := resp.ParseValue(buf)
		if errors.Is(err, resp.ErrIncomplete) {
			continue
		}
		return v, err
	}
}

// digest is DEBUG DIGEST of a server: a hash of every key, value and expiry
// in every db.
func digest(t *testing.T, addr string) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer c.Close()
	d, err := c.Do(context.Background(), "DEBUG", "DIGEST").Text()
	if err != nil {
		t.Fatalf("DEBUG DIGEST on %s: %v", addr, err)
	}
	return d
}

// diffKeys explains a digest mismatch key by key.
func diffKeys(t *testing.T, a, b string, dbs int) {
	t.Helper()
	ctx := context.Background()
	for db := 0; db < dbs; db++ {
		ca := redis.NewClient(&redis.Options{Addr: a, DB: db, Protocol: 2})
		cb := redis.NewClient(&redis.Options{Addr: b, DB: db, Protocol: 2})
		keys, _ := ca.Keys(ctx, "*").Result()
		kb, _ := cb.Keys(ctx, "*").Result()
		seen := map[string]bool{}
		for _, k := range append(keys, kb...) {
			if seen[k] {
				continue
			}
			seen[k] = true
			da, _ := ca.Do(ctx, "DEBUG", "DIGEST-VALUE", k).StringSlice()
			dbv, _ := cb.Do(ctx, "DEBUG", "DIGEST-VALUE", k).StringSlice()
			ta, _ := ca.PExpireTime(ctx, k).Result()
			tb, _ := cb.PExpireTime(ctx, k).Result()
			if fmt.Sprint(da) != fmt.Sprint(dbv) || ta != tb {
				typ, _ := ca.Type(ctx, k).Result()
				t.Errorf("db %d key %q (%s): primary digest %s pexpiretime %v; replay digest %s pexpiretime %v", db, k, typ, da, ta, dbv, tb)
			}
		}
		ca.Close()
		cb.Close()
	}
}

// startRedis starts a redis-server that allows DEBUG DIGEST from loopback,
// which the data comparisons use.
func startRedis(t *testing.T, opts ...harness.RedisOption) *harness.Redis {
	t.Helper()
	harness.Require(t, "redis-server")
	return harness.StartRedis(t, append(opts, harness.RedisArgs("--enable-debug-command", "local"))...)
}

var _ = sync.Mutex{}

// abortedSelectTx WATCHes key on conn, changes it through other, then runs
// MULTI SELECT db SET key EXEC on conn, which must abort.
func abortedSelectTx(t *testing.T, conn *redis.Conn, other *redis.Client, key string, db int) {
	t.Helper()
	ctx := context.Background()
	if err := conn.Do(ctx, "WATCH", key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := other.Set(ctx, key, "changed", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Select(ctx, db)
		p.Set(ctx, key, "mine", 0)
		return nil
	})
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("EXEC after the watched %s changed: %v, want it aborted", key, err)
	}
}
