package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server child process started by StartRedis.
type Redis struct {
	*Process

	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the TCP port it listens on.
	Port int
	// Dir is its working and data directory (AOF and RDB files).
	Dir string
	// Password is the requirepass value, empty for none.
	Password string

	t   testing.TB
	cfg redisConfig
}

type redisConfig struct {
	appendOnly bool
	password   string
	args       []string
}

// RedisOption configures StartRedis.
type RedisOption func(*redisConfig)

// RedisAppendOnly turns the append-only file on (appendfsync everysec), so
// that data survives Kill and Restart. It is off by default.
func RedisAppendOnly(on bool) RedisOption {
	return func(c *redisConfig) { c.appendOnly = on }
}

// RedisPassword sets requirepass; Client and the readiness check use it.
func RedisPassword(pw string) RedisOption {
	return func(c *redisConfig) { c.password = pw }
}

// RedisArgs appends raw redis-server arguments, such as "--maxmemory",
// "10mb". Later arguments override the harness's own.
func RedisArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, args...) }
}

// StartRedis starts redis-server on a free loopback port in a new temporary
// directory, with RDB snapshots off, and waits until it answers PING. It is
// killed and its files are removed when the test ends.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	path := binary(t, "redis-server")
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	dir := t.TempDir()
	r := &Redis{Dir: dir, Password: cfg.password, t: t, cfg: cfg}
	r.Process = newProcess("redis-server", path, dir, filepath.Join(dir, "redis.log"))
	r.args = r.buildArgs
	r.ready = r.ping
	r.readyTimeout = 30 * time.Second
	t.Cleanup(func() { r.cleanup(t) })

	start := time.Now()
	err := r.startFresh(func() error {
		p, err := freePort()
		r.Port, r.Addr = p, loopback(p)
		return err
	})
	if err != nil {
		t.Fatalf("harness: start redis: %v", err)
	}
	t.Logf("harness: redis-server on %s (pid %d, dir %s, appendonly %v), ready in %s",
		r.Addr, r.PID(), dir, cfg.appendOnly, time.Since(start).Round(time.Millisecond))
	return r
}

func (r *Redis) buildArgs() ([]string, error) {
	args := []string{
		"--port", strconv.Itoa(r.Port),
		"--bind", "127.0.0.1",
		// Only loopback is bound, so protected mode would add nothing
		// but refusals when a password is not set.
		"--protected-mode", "no",
		"--dir", r.Dir,
		"--daemonize", "no",
		"--logfile", "",
		"--save", "",
		"--appendonly", yesNo(r.cfg.appendOnly),
		"--appendfsync", "everysec",
	}
	if r.cfg.password != "" {
		args = append(args, "--requirepass", r.cfg.password)
	}
	return append(args, r.cfg.args...), nil
}

// ping is the readiness check: PING must answer PONG. A server still
// loading its AOF answers -LOADING and is not ready yet.
func (r *Redis) ping(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// Deadlines alone would not see a cancel.
	defer context.AfterFunc(ctx, func() { c.Close() })()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	br := bufio.NewReader(c)
	if r.Password != "" {
		fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(r.Password), r.Password)
		if err := expectLine(br, "+OK"); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	return expectLine(br, "+PONG")
}

func expectLine(br *bufio.Reader, want string) error {
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimRight(line, "\r\n"); line != want {
		return fmt.Errorf("got %q, want %q", line, want)
	}
	return nil
}

// Options returns go-redis options for this server.
func (r *Redis) Options() *redis.Options {
	return &redis.Options{Addr: r.Addr, Password: r.Password}
}

// Client returns a new go-redis client for this server. It is closed when
// the test that started the server ends.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(r.Options())
	r.t.Cleanup(func() { c.Close() })
	return c
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
