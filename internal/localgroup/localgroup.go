package localgroup

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/fanout"
	"github.com/replicar/replicar/protocols/resp"
	"github.com/replicar/replicar/proxy"
)

// Redis is a redis-server process.
type Redis struct {
	Addr string
	cmd  *exec.Cmd
}

// StartRedis starts redis-server on a free loopback port with its files in
// dir, and waits until it answers. args are extra server options.
func StartRedis(dir string, args ...string) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	// redis-server changes into --dir before it opens --logfile, so a
	// relative path would be taken from inside the dir.
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	cmd := exec.Command("redis-server", append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no",
		"--logfile", filepath.Join(dir, "redis.log")}, args...)...)
	// The servers must not outlive this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	for i := 0; c.Ping(context.Background()).Err() != nil; i++ {
		if i > 200 {
			r.Stop()
			return nil, fmt.Errorf("redis-server on %s did not start (see %s)", r.Addr, filepath.Join(dir, "redis.log"))
		}
		time.Sleep(25 * time.Millisecond)
	}
	return r, nil
}

// Stop kills the server and waits for it.
func (r *Redis) Stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// FreePort asks the kernel for a free loopback port.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Options configures a group.
type Options struct {
	Policy     ackpolicy.Policy
	AckTimeout time.Duration
	MaxLag     time.Duration
	// Listen and HTTPListen are the leader's client and HTTP addresses;
	// empty picks free ports.
	Listen, HTTPListen string
	Logger             zerolog.Logger
}

// Group is a running leader and its followers.
type Group struct {
	// Addr is the leader's client address, HTTPAddr its /status address.
	Addr, HTTPAddr string
	Node           *proxy.RedisNode

	mu        sync.Mutex
	followers []*fanout.Follower
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	rl        *proxy.ReplLog
}

// Start runs a leader in front of leaderStore and a follower applying to
// each of followerStores, and waits until the group takes writes.
func Start(leaderStore string, followerStores []string, opts Options) (*Group, error) {
	size := 1 + len(followerStores)
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Group{cancel: cancel}
	rl, _, err := proxy.OpenReplLog(ctx, proxy.ReplLogOptions{Policy: opts.Policy, GroupSize: size,
		AckTimeout: opts.AckTimeout, BacklogBytes: 64 << 20})
	if err != nil {
		cancel()
		return nil, err
	}
	g.rl = rl
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	lr := proxy.NewLeaderReplication(rl, proxy.ReplicationConfig{Group: "local", Node: "n1", GroupSize: size, MaxLag: opts.MaxLag}, opts.Logger)
	node := proxy.NewRedisNode(rl, proxy.Config{Backend: leaderStore, NodeID: "n1", Group: "local", Protocol: proxy.ProtocolRedis, Listen: listen}, lr)
	g.Node = node
	srv := resp.NewServer(resp.Config{Listen: listen, Backend: leaderStore, Logger: opts.Logger}, node)
	replLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.Stop()
		return nil, err
	}
	httpLn, err := net.Listen("tcp", orFree(opts.HTTPListen))
	if err != nil {
		replLn.Close()
		g.Stop()
		return nil, err
	}
	g.HTTPAddr = httpLn.Addr().String()
	httpLn.Close()
	g.wg.Go(func() { srv.Run(ctx) })
	g.wg.Go(func() { lr.Serve(ctx, replLn) })
	g.wg.Go(func() {
		proxy.ServeHTTP(ctx, g.HTTPAddr, proxy.NewHTTPHandler(func() proxy.Status {
			return proxy.StatusFromRESP(node.Status(), srv.BackendUp())
		}), opts.Logger)
	})
	for i, store := range followerStores {
		g.wg.Go(func() {
			proxy.RunFollower(ctx, proxy.FollowerConfig{Group: "local", Node: fmt.Sprintf("n%d", i+2),
				LeaderAddr: replLn.Addr().String(), Backend: store,
				Resync: func(ctx context.Context, target string) (backlog.Position, error) {
					return node.SnapshotInto(ctx, srv, target, opts.Logger)
				}}, opts.Logger, func(f *fanout.Follower) { g.mu.Lock(); g.followers = append(g.followers, f); g.mu.Unlock() })
		})
	}
	g.Addr = srv.Addr().String()
	c := redis.NewClient(&redis.Options{Addr: g.Addr, Protocol: 2})
	defer c.Close()
	for i := 0; c.Ping(ctx).Err() != nil || c.Do(ctx, "REPLICAR", "INFO").Err() != nil; i++ {
		if i > 400 {
			g.Stop()
			return nil, fmt.Errorf("the group did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
	// Writes are refused until enough followers are in sync for the policy.
	for i := 0; ; i++ {
		if err := c.Set(ctx, "__local:ready", "1", 0).Err(); err == nil {
			c.Del(ctx, "__local:ready")
			break
		} else if i > 400 {
			g.Stop()
			return nil, fmt.Errorf("the group did not become writable: %w", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return g, nil
}

// FollowerStatus reports each follower's replication state.
func (g *Group) FollowerStatus() []fanout.ReplicaStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []fanout.ReplicaStatus
	for _, f := range g.followers {
		out = append(out, f.Status())
	}
	return out
}

func orFree(addr string) string {
	if addr == "" {
		return "127.0.0.1:0"
	}
	return addr
}

// Stop stops the nodes (not the redis-servers).
func (g *Group) Stop() {
	g.cancel()
	g.wg.Wait()
	if g.rl != nil {
		g.rl.Close()
	}
}
