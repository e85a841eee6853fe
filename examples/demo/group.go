package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// settings are the knobs of a demo group.
type settings struct {
	dir       string        // state directory, e.g. .run/group
	bin       string        // the replicar binary
	group     string        // REPLICAR_GROUP
	policy    string        // REPLICAR_ACK_POLICY
	leaseTTL  time.Duration // REPLICAR_LEASE_TTL
	nodes     int           // how many nodes (and stores)
	startWait time.Duration // how long a process may take to answer
	tied      bool          // the processes die with the demo (tests)
}

// node is one replicar process and the redis-server behind it.
type node struct {
	ID     string `json:"node"`
	Client string `json:"client"` // REPLICAR_LISTEN: where clients connect
	Repl   string `json:"repl"`   // REPLICAR_REPL_LISTEN
	HTTP   string `json:"http"`   // REPLICAR_HTTP_LISTEN: /status, /metrics, /healthz, /readyz
	Store  string `json:"store"`  // the redis-server
	PID    int    `json:"pid"`

	proc  *proc
	store *proc
}

// group is the running demo group. Its JSON form is written to
// dir/group.json for people and scripts.
type group struct {
	Group  string  `json:"group"`
	Policy string  `json:"ack_policy"`
	NATS   string  `json:"nats_url"`
	Nodes  []*node `json:"nodes"`

	set  settings
	nats *proc
}

// startGroup starts NATS, the stores and the nodes, each on free loopback
// ports, and waits until every process answers. On error it stops what it
// started.
func startGroup(ctx context.Context, set settings, say func(string)) (_ *group, err error) {
	natsPath, err := lookPath("nats-server")
	if err != nil {
		return nil, err
	}
	redisPath, err := lookPath("redis-server")
	if err != nil {
		return nil, err
	}
	if set.bin, err = filepath.Abs(set.bin); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(set.bin); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("replicar binary %s not found: run `make build`", set.bin)
	}
	if set.dir, err = filepath.Abs(set.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(set.dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	g := &group{Group: set.group, Policy: set.policy, set: set}
	defer func() {
		if err != nil {
			g.killAll()
		}
	}()

	if err := g.startNATS(ctx, natsPath); err != nil {
		return nil, err
	}
	say(fmt.Sprintf("nats-server on %s (pid %d)", strings.TrimPrefix(g.NATS, "nats://"), g.nats.pid))

	for i := range set.nodes {
		n := &node{ID: fmt.Sprintf("n%d", i+1)}
		g.Nodes = append(g.Nodes, n)
		if err := g.startStore(ctx, redisPath, n, i); err != nil {
			return nil, err
		}
	}
	var stores []string
	for _, n := range g.Nodes {
		stores = append(stores, fmt.Sprintf("%s %s (pid %d)", n.ID, n.Store, n.store.pid))
	}
	say("redis-server ×" + strconv.Itoa(set.nodes) + ": " + strings.Join(stores, ", "))

	for _, n := range g.Nodes {
		if err := g.startNode(ctx, n, true); err != nil {
			return nil, err
		}
	}
	var nodes []string
	for _, n := range g.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s %s (pid %d)", n.ID, n.Client, n.PID))
	}
	say("replicar ×" + strconv.Itoa(set.nodes) + ": " + strings.Join(nodes, ", "))
	return g, g.save()
}

// startWithPorts runs start with fresh ports until it does not fail on a
// port taken in the meantime (three tries).
func startWithPorts(n int, start func(ports []int) error) error {
	var err error
	for range 3 {
		var ports []int
		if ports, err = freePorts(n); err != nil {
			return err
		}
		if err = start(ports); !portTaken(err) {
			return err
		}
	}
	return err
}

func (g *group) startNATS(ctx context.Context, path string) error {
	storeDir := filepath.Join(g.set.dir, "nats")
	return startWithPorts(1, func(ports []int) error {
		addr := loopback(ports[0])
		p := &proc{name: "nats", path: path, dir: g.set.dir, tied: g.set.tied, args: []string{
			"--addr", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
			"--jetstream", "--store_dir", storeDir, "--server_name", "replicar-demo",
		}}
		if err := p.start(); err != nil {
			return err
		}
		g.nats = p
		g.NATS = "nats://" + addr
		wctx, cancel := context.WithTimeout(ctx, g.set.startWait)
		defer cancel()
		err := p.waitReady(wctx, func(ctx context.Context) error { return dialOK(ctx, addr) })
		if err != nil {
			_ = p.kill()
		}
		return err
	})
}

func (g *group) startStore(ctx context.Context, path string, n *node, i int) error {
	dir := filepath.Join(g.set.dir, "redis"+strconv.Itoa(i+1))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store dir: %w", err)
	}
	return startWithPorts(1, func(ports []int) error {
		n.Store = loopback(ports[0])
		// No persistence: the demo's data lives as long as the servers.
		p := &proc{name: "redis" + strconv.Itoa(i+1), path: path, dir: g.set.dir, tied: g.set.tied, args: []string{
			"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1", "--protected-mode", "no",
			"--dir", dir, "--daemonize", "no", "--save", "", "--appendonly", "no",
		}}
		if err := p.start(); err != nil {
			return err
		}
		n.store = p
		wctx, cancel := context.WithTimeout(ctx, g.set.startWait)
		defer cancel()
		err := p.waitReady(wctx, func(ctx context.Context) error {
			c := redis.NewClient(&redis.Options{Addr: n.Store, Protocol: 2, MaxRetries: -1})
			defer c.Close()
			return c.Ping(ctx).Err()
		})
		if err != nil {
			_ = p.kill()
		}
		return err
	})
}

// nodeEnv is node n's environment: the demo's own without any REPLICAR_
// variable of the caller's, then the group's settings.
func (g *group) nodeEnv(n *node) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REPLICAR_") {
			env = append(env, kv)
		}
	}
	vars := map[string]string{
		"REPLICAR_PROTOCOL":    "redis",
		"REPLICAR_NODE_ID":     n.ID,
		"REPLICAR_GROUP":       g.Group,
		"REPLICAR_BACKEND":     n.Store,
		"REPLICAR_LISTEN":      n.Client,
		"REPLICAR_REPL_LISTEN": n.Repl,
		"REPLICAR_HTTP_LISTEN": n.HTTP,
		"REPLICAR_NATS_URL":    g.NATS,
		"REPLICAR_DATA_DIR":    filepath.Join(g.set.dir, n.ID),
		"REPLICAR_ACK_POLICY":  g.Policy,
		"REPLICAR_LEASE_TTL":   g.set.leaseTTL.String(),
		"REPLICAR_LOG_FORMAT":  "console",
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// startNode starts node n's replicar process and waits until its /healthz
// answers. With fresh it picks new ports; otherwise it reuses n's ports,
// which is how a killed node comes back at the addresses already printed.
func (g *group) startNode(ctx context.Context, n *node, fresh bool) error {
	start := func(ports []int) error {
		if ports != nil {
			n.Client, n.Repl, n.HTTP = loopback(ports[0]), loopback(ports[1]), loopback(ports[2])
		}
		p := &proc{name: n.ID, path: g.set.bin, dir: g.set.dir, tied: g.set.tied, env: g.nodeEnv(n)}
		if err := p.start(); err != nil {
			return err
		}
		n.proc, n.PID = p, p.pid
		wctx, cancel := context.WithTimeout(ctx, g.set.startWait)
		defer cancel()
		err := p.waitReady(wctx, func(ctx context.Context) error { return httpOK(ctx, "http://"+n.HTTP+"/healthz") })
		if err != nil {
			_ = p.kill()
		}
		return err
	}
	if !fresh {
		err := start(nil)
		if portTaken(err) {
			// Someone took one of its ports while it was down: new ones
			// then, which group.json and the final listing show.
			err = startWithPorts(3, start)
		}
		if err != nil {
			return err
		}
		return g.save()
	}
	return startWithPorts(3, start)
}

// killAll SIGKILLs every process the demo started, for a start that failed
// half-way or an interrupted demo.
func (g *group) killAll() {
	for _, n := range g.Nodes {
		if n.proc != nil {
			_ = n.proc.kill()
		}
	}
	for _, n := range g.Nodes {
		if n.store != nil {
			_ = n.store.kill()
		}
	}
	if g.nats != nil {
		_ = g.nats.kill()
	}
}

// save writes dir/group.json.
func (g *group) save() error {
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(g.set.dir, "group.json"), append(b, '\n'), 0o644)
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func dialOK(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
