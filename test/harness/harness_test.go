package harness

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// TestServers starts one of each server, talks to it, and checks that the
// port is free and the process gone once the subtest that owned it ends.
func TestServers(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		var addr string
		var pid int
		t.Run("run", func(t *testing.T) {
			r := StartRedis(t)
			addr, pid = r.Addr, r.PID()
			ctx := context.Background()
			c := r.Client()
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatalf("set: %v", err)
			}
			if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
				t.Fatalf("get = %q, %v; want v", got, err)
			}
		})
		checkGone(t, addr, pid)
	})

	t.Run("mariadb", func(t *testing.T) {
		t.Parallel()
		var addr string
		var pid int
		t.Run("run", func(t *testing.T) {
			m := StartMariaDB(t)
			addr, pid = m.Addr, m.PID()
			ctx := context.Background()
			db := m.DB()
			for _, q := range []string{
				"CREATE DATABASE app",
				"CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10))",
				"INSERT INTO app.t VALUES (1, 'one'), (2, 'two')",
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			var v string
			if err := db.QueryRowContext(ctx, "SELECT v FROM app.t WHERE id = 2").Scan(&v); err != nil || v != "two" {
				t.Fatalf("select = %q, %v; want two", v, err)
			}
			var logBin, format string
			var serverID uint32
			if err := db.QueryRowContext(ctx, "SELECT @@log_bin, @@binlog_format, @@server_id").Scan(&logBin, &format, &serverID); err != nil {
				t.Fatalf("variables: %v", err)
			}
			if logBin != "1" || format != "ROW" || serverID != m.ServerID {
				t.Errorf("log_bin=%s binlog_format=%s server_id=%d; want 1, ROW, %d", logBin, format, serverID, m.ServerID)
			}
			var anon int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE User = ''").Scan(&anon); err != nil || anon != 0 {
				t.Errorf("anonymous users = %d, %v; want 0", anon, err)
			}
		})
		checkGone(t, addr, pid)
	})

	t.Run("nats", func(t *testing.T) {
		t.Parallel()
		var addr string
		var pid int
		t.Run("run", func(t *testing.T) {
			n := StartNATS(t)
			addr, pid = n.Addr, n.PID()
			kvPutGet(t, n.JetStream(), 1)
		})
		checkGone(t, addr, pid)
	})

	t.Run("embedded-nats", func(t *testing.T) {
		t.Parallel()
		var addr string
		t.Run("run", func(t *testing.T) {
			e := StartEmbeddedNATS(t)
			addr = e.Addr
			js := e.JetStream()
			kv := kvPutGet(t, js, 1)
			if err := e.Restart(); err != nil {
				t.Fatalf("restart: %v", err)
			}
			if e.Addr != addr {
				t.Fatalf("address changed across restart: %s -> %s", addr, e.Addr)
			}
			// The old connection reconnects to the same address.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if got, err := kv.Get(ctx, "key"); err != nil || string(got.Value()) != "v2" {
				t.Fatalf("get after restart = %v, %v; want v2", got, err)
			}
		})
		if !PortFree(addr) {
			t.Errorf("%s still bound after the subtest ended", addr)
		}
	})

	t.Run("nats-cluster", func(t *testing.T) {
		t.Parallel()
		var addrs []string
		var pids []int
		t.Run("run", func(t *testing.T) {
			c := StartNATSCluster(t, 3)
			for _, n := range c.Nodes {
				addrs, pids = append(addrs, n.Addr), append(pids, n.PID())
			}
			js := c.JetStream()
			kv := kvPutGet(t, js, 3)

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			info, err := js.Stream(ctx, "KV_harness")
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			si, err := info.Info(ctx)
			if err != nil {
				t.Fatalf("stream info: %v", err)
			}
			if si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
				t.Fatalf("stream has %d replicas, cluster %+v; want 3", si.Config.Replicas, si.Cluster)
			}

			// Losing one node of three keeps the quorum.
			victim := c.Nodes[2]
			if err := victim.Kill(); err != nil {
				t.Fatalf("kill: %v", err)
			}
			// A put sent while the bucket elects a new stream leader gets no
			// reply at all, so each attempt has its own short timeout.
			if err := retry(ctx, func(ctx context.Context) error {
				_, err := kv.Put(ctx, "after-kill", []byte("x"))
				return err
			}); err != nil {
				t.Fatalf("put with one node down: %v", err)
			}
			if err := victim.Start(); err != nil {
				t.Fatalf("start: %v", err)
			}
			if err := c.WaitHealthy(60 * time.Second); err != nil {
				t.Fatalf("wait healthy: %v", err)
			}
		})
		for i := range addrs {
			checkGone(t, addrs[i], pids[i])
		}
	})
}

// kvPutGet creates the bucket "harness" with the given replicas and runs
// Put, Get and compare-and-set Update on it.
func kvPutGet(t *testing.T, js jetstream.JetStream, replicas int) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "harness", Replicas: replicas, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("create bucket (R%d): %v", replicas, err)
	}
	rev, err := kv.Put(ctx, "key", []byte("v1"))
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	e, err := kv.Get(ctx, "key")
	if err != nil || string(e.Value()) != "v1" || e.Revision() != rev {
		t.Fatalf("get = %v, %v; want v1 at revision %d", e, err, rev)
	}
	rev2, err := kv.Update(ctx, "key", []byte("v2"), rev)
	if err != nil {
		t.Fatalf("update at current revision: %v", err)
	}
	if _, err := kv.Update(ctx, "key", []byte("v3"), rev); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("update at stale revision = %v; want ErrKeyRevisionMismatch", err)
	}
	if e, err := kv.Get(ctx, "key"); err != nil || string(e.Value()) != "v2" || e.Revision() != rev2 {
		t.Fatalf("get = %v, %v; want v2 at revision %d", e, err, rev2)
	}
	return kv
}

// retry calls f with a 2s timeout until it succeeds or ctx ends.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkGone fails if addr is still bound or pid still exists.
func checkGone(t *testing.T, addr string, pid int) {
	t.Helper()
	if addr == "" || pid == 0 {
		t.Fatalf("subtest recorded no server (addr %q, pid %d)", addr, pid)
	}
	if !PortFree(addr) {
		t.Errorf("%s still bound after the subtest ended", addr)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists after the subtest ended (kill 0: %v)", pid, err)
	}
}

func TestRedisRestartKeepsData(t *testing.T) {
	t.Parallel()
	r := StartRedis(t, RedisAppendOnly(true))
	c := r.Client()
	ctx := context.Background()
	if err := c.Set(ctx, "durable", "yes", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	addr, pid := r.Addr, r.PID()
	if err := r.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if r.Addr != addr || r.PID() == pid {
		t.Fatalf("after restart addr %s pid %d; want addr %s and a new pid", r.Addr, r.PID(), addr)
	}
	if got, err := c.Get(ctx, "durable").Result(); err != nil || got != "yes" {
		t.Fatalf("get after restart = %q, %v; want yes", got, err)
	}

	// A paused server keeps its port but answers nothing.
	if err := r.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	short := redis.NewClient(&redis.Options{Addr: r.Addr, ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer short.Close()
	if err := short.Ping(ctx).Err(); err == nil {
		t.Fatal("ping answered while stopped")
	}
	if err := r.Cont(); err != nil {
		t.Fatalf("cont: %v", err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after cont: %v", err)
	}
}

func TestRedisWithoutAppendOnlyLosesData(t *testing.T) {
	t.Parallel()
	r := StartRedis(t, RedisPassword("secret"))
	c := r.Client()
	ctx := context.Background()
	if err := c.Set(ctx, "volatile", "yes", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	if err := r.Kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if err := r.Stop(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stop after kill = %v; want ErrNotRunning", err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := c.Get(ctx, "volatile").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("get after kill = %v; want redis.Nil (no AOF, no RDB)", err)
	}
}

func TestMariaDBRestartKeepsData(t *testing.T) {
	t.Parallel()
	m := StartMariaDB(t, MariaDBServerID(42))
	if m.ServerID != 42 {
		t.Fatalf("server id = %d; want 42", m.ServerID)
	}
	db := m.DB()
	ctx := context.Background()
	for _, q := range []string{
		"CREATE DATABASE app",
		"CREATE TABLE app.t (id INT PRIMARY KEY)",
		"INSERT INTO app.t VALUES (7)",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := m.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT id FROM app.t").Scan(&n); err != nil || n != 7 {
		t.Fatalf("select after crash = %d, %v; want 7", n, err)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if m.Running() {
		t.Fatal("running after shutdown")
	}
}

func TestMariaDBServerIDsDiffer(t *testing.T) {
	t.Parallel()
	a := StartMariaDB(t, MariaDBLogBin(false))
	b := StartMariaDB(t, MariaDBBinlogFormat("MIXED"))
	if a.ServerID == b.ServerID {
		t.Fatalf("both servers have server_id %d", a.ServerID)
	}
	var logBin int
	if err := a.DB().QueryRow("SELECT @@log_bin").Scan(&logBin); err != nil || logBin != 0 {
		t.Fatalf("log_bin = %d, %v; want 0", logBin, err)
	}
	var format string
	if err := b.DB().QueryRow("SELECT @@binlog_format").Scan(&format); err != nil || format != "MIXED" {
		t.Fatalf("binlog_format = %q, %v; want MIXED", format, err)
	}
}

func TestFreePortDiffers(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

func TestRequireSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "false")
	var ran bool
	t.Run("missing", func(t *testing.T) {
		Require(t, "replicar-no-such-binary")
		ran = true
	})
	if ran {
		t.Fatal("Require did not stop the test")
	}
}

// TestRequireFailsInCI runs TestRequireChild in a child process with
// CI=true: a missing binary must fail the test there, not skip it.
func TestRequireFailsInCI(t *testing.T) {
	if os.Getenv("HARNESS_REQUIRE_CHILD") == "1" {
		Require(t, "replicar-no-such-binary")
		t.Fatal("Require returned")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRequireFailsInCI$", "-test.v")
	cmd.Env = append(os.Environ(), "HARNESS_REQUIRE_CHILD=1", "CI=true")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child = %v; want a failing exit\n%s", err, out)
	}
	if !strings.Contains(string(out), "missing replicar-no-such-binary") || strings.Contains(string(out), "SKIP") {
		t.Fatalf("child output lacks the failure:\n%s", out)
	}
}

// TestStartFreshRetriesWhenPortTaken hands a server a port that another
// socket holds, as when a port is taken between FreePort and the bind, and
// expects a second try on a new port.
func TestStartFreshRetriesWhenPortTaken(t *testing.T) {
	t.Parallel()
	Require(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	path, err := LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	p := newProcess("redis-server", path, dir, filepath.Join(dir, "redis.log"))
	var port int
	p.args = func() ([]string, error) {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir}, nil
	}
	p.ready = func(ctx context.Context) error { return (&Redis{Addr: loopback(port)}).ping(ctx) }
	t.Cleanup(func() { p.cleanup(t) })

	tries := 0
	err = p.startFresh(func() error {
		tries++
		if tries == 1 {
			port = taken
			return nil
		}
		port, err = freePort()
		return err
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if tries != 2 || port == taken {
		t.Fatalf("tries = %d, port %d (taken %d); want a second try on another port", tries, port, taken)
	}
}
