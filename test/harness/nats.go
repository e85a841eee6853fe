package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is a nats-server child process with JetStream, started by StartNATS
// or as a node of StartNATSCluster.
type NATS struct {
	*Process

	// Name is the server_name, unique within a cluster.
	Name string
	// URL is the client URL, "nats://127.0.0.1:port".
	URL string
	// Addr is the client address, "127.0.0.1:port".
	Addr string
	// Port is the client port.
	Port int
	// MonitorURL is the HTTP monitoring endpoint, "http://127.0.0.1:port".
	MonitorURL string
	// MonitorPort is the HTTP monitoring port.
	MonitorPort int
	// ClusterPort is the route port, 0 for a server outside a cluster.
	ClusterPort int
	// Dir holds the config file, the log and StoreDir.
	Dir string
	// StoreDir is the JetStream store directory.
	StoreDir string

	t   testing.TB
	cfg natsConfig
	// cluster is the cluster name and routes is every other node's route
	// URL, both empty outside a cluster.
	cluster string
	routes  func() []string
}

type natsConfig struct {
	config    []string
	jetstream []string
	probe     []nats.Option
}

// NATSOption configures StartNATS and StartNATSCluster.
type NATSOption func(*natsConfig)

// NATSConfig adds lines at the top level of the nats-server config file,
// for example "max_payload: 8MB".
func NATSConfig(lines ...string) NATSOption {
	return func(c *natsConfig) { c.config = append(c.config, lines...) }
}

// NATSProbeOptions are the connect options of the readiness probe, for a
// server that refuses anonymous clients (credentials, for example).
func NATSProbeOptions(opts ...nats.Option) NATSOption {
	return func(c *natsConfig) { c.probe = append(c.probe, opts...) }
}

// NATSJetStreamConfig adds lines inside the jetstream block of the config
// file, for example "sync_interval: always" as in production.
func NATSJetStreamConfig(lines ...string) NATSOption {
	return func(c *natsConfig) { c.jetstream = append(c.jetstream, lines...) }
}

// StartNATS starts the nats-server binary with JetStream on free loopback
// ports (client and monitoring) in a new temporary directory, and waits
// until a client can connect and read its JetStream account info. It is
// killed and its files are removed when the test ends.
func StartNATS(t testing.TB, opts ...NATSOption) *NATS {
	t.Helper()
	start := time.Now()
	n := newNATS(t, "n1", opts)
	n.ready = n.accountInfo
	err := n.startFresh(func() error {
		ports, err := freePorts(2)
		if err == nil {
			n.setPorts(ports[0], ports[1], 0)
		}
		return err
	})
	if err != nil {
		t.Fatalf("harness: start nats-server: %v", err)
	}
	t.Logf("harness: nats-server %s on %s (pid %d, monitor %s, dir %s), ready in %s",
		n.Name, n.URL, n.PID(), n.MonitorURL, n.Dir, time.Since(start).Round(time.Millisecond))
	return n
}

func newNATS(t testing.TB, name string, opts []NATSOption) *NATS {
	t.Helper()
	path := binary(t, "nats-server")
	var cfg natsConfig
	for _, o := range opts {
		o(&cfg)
	}
	dir := t.TempDir()
	n := &NATS{Name: name, Dir: dir, StoreDir: filepath.Join(dir, "jetstream"), t: t, cfg: cfg}
	n.Process = newProcess("nats-server "+name, path, dir, filepath.Join(dir, "nats-server.log"))
	n.args = n.buildArgs
	n.readyTimeout = 30 * time.Second
	t.Cleanup(func() { n.cleanup(t) })
	return n
}

func (n *NATS) setPorts(client, monitor, cluster int) {
	n.Port, n.Addr, n.URL = client, loopback(client), "nats://"+loopback(client)
	n.MonitorPort, n.MonitorURL = monitor, "http://"+loopback(monitor)
	n.ClusterPort = cluster
}

// buildArgs writes the config file; a file rather than flags, because
// cluster and JetStream settings only partly exist as flags.
func (n *NATS) buildArgs() ([]string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\n", strconv.Quote(n.Name))
	fmt.Fprintf(&b, "listen: %s\n", strconv.Quote(n.Addr))
	fmt.Fprintf(&b, "http: %s\n", strconv.Quote(loopback(n.MonitorPort)))
	b.WriteString("logtime: true\n")
	b.WriteString("jetstream {\n")
	fmt.Fprintf(&b, "  store_dir: %s\n", strconv.Quote(n.StoreDir))
	for _, l := range n.cfg.jetstream {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	b.WriteString("}\n")
	if n.cluster != "" {
		b.WriteString("cluster {\n")
		fmt.Fprintf(&b, "  name: %s\n", strconv.Quote(n.cluster))
		fmt.Fprintf(&b, "  listen: %s\n", strconv.Quote(loopback(n.ClusterPort)))
		b.WriteString("  routes: [\n")
		for _, r := range n.routes() {
			fmt.Fprintf(&b, "    %s\n", strconv.Quote(r))
		}
		b.WriteString("  ]\n}\n")
	}
	for _, l := range n.cfg.config {
		fmt.Fprintf(&b, "%s\n", l)
	}
	conf := filepath.Join(n.Dir, "nats-server.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	return []string{"-c", conf}, nil
}

// accountInfo is the readiness check of a single server: a connection and a
// JetStream account info request both succeed.
func (n *NATS) accountInfo(ctx context.Context) error {
	return jetStreamAccountInfo(ctx, n.URL, n.cfg.probe...)
}

func jetStreamAccountInfo(ctx context.Context, url string, opts ...nats.Option) error {
	timeout := time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(timeout), nats.NoReconnect()}, opts...)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.AccountInfo(ctx)
	return err
}

// healthz is the readiness check of a cluster node: the monitoring endpoint
// says the server and its JetStream, meta group included, are current.
func (n *NATS) healthz(ctx context.Context) error {
	var status struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	code, err := getJSON(ctx, n.MonitorURL+"/healthz", &status)
	if err != nil {
		return err
	}
	if code != http.StatusOK || status.Status != "ok" {
		return fmt.Errorf("healthz: %d %s %s", code, status.Status, status.Error)
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("decode %s: %w", url, err)
	}
	return resp.StatusCode, nil
}

// Connect opens a client connection to this server, which is closed when
// the test that started the server ends.
func (n *NATS) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return connect(n.t, n.URL, opts)
}

// Conn is Connect for the test goroutine: it fails the test on error.
func (n *NATS) Conn(opts ...nats.Option) *nats.Conn {
	n.t.Helper()
	nc, err := n.Connect(opts...)
	if err != nil {
		n.t.Fatalf("harness: %v", err)
	}
	return nc
}

// JetStream returns a JetStream context on a new connection from Conn.
func (n *NATS) JetStream() jetstream.JetStream {
	n.t.Helper()
	return newJetStream(n.t, n.Conn())
}

func connect(t testing.TB, url string, opts []nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("replicar-harness")}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	t.Cleanup(nc.Close)
	return nc, nil
}

func newJetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("harness: jetstream: %v", err)
	}
	return js
}

// NATSCluster is a group of nats-server processes joined by routes, with
// clustered JetStream; buckets and streams with Replicas up to its size
// work on it.
type NATSCluster struct {
	// Name is the cluster name.
	Name string
	// Nodes are the servers, named n1, n2, ...
	Nodes []*NATS

	t testing.TB
}

// StartNATSCluster starts size nats-server processes that form one JetStream
// cluster on loopback ports, and waits until every node is healthy and the
// meta leader sees all the others as current. Options apply to every node.
// The servers are killed and their files removed when the test ends.
func StartNATSCluster(t testing.TB, size int, opts ...NATSOption) *NATSCluster {
	t.Helper()
	if size < 1 {
		t.Fatalf("harness: cluster size %d", size)
	}
	start := time.Now()
	c := &NATSCluster{Name: "harness", t: t}
	for i := range size {
		n := newNATS(t, fmt.Sprintf("n%d", i+1), opts)
		n.cluster = c.Name
		n.routes = func() []string { return c.routesExcept(n) }
		n.ready = n.healthz
		// A restarted node is ready when it is current with the meta
		// group again, which may take an election.
		n.readyTimeout = 60 * time.Second
		c.Nodes = append(c.Nodes, n)
	}

	const attempts = 5
	for i := 1; ; i++ {
		err := c.start()
		if err == nil {
			break
		}
		inUse := false
		for _, n := range c.Nodes {
			_ = n.Kill()
			inUse = inUse || addrInUse(n.LogTail(logTailLines))
		}
		if i == attempts || !inUse {
			t.Fatalf("harness: start nats cluster: %v", err)
		}
	}
	t.Logf("harness: nats cluster %q at %s, ready in %s", c.Name, c.URL(), time.Since(start).Round(time.Millisecond))
	for _, n := range c.Nodes {
		t.Logf("harness:   %s: client %s, route %d, monitor %s, pid %d, dir %s",
			n.Name, n.URL, n.ClusterPort, n.MonitorURL, n.PID(), n.Dir)
	}
	return c
}

// start picks ports, launches every node and waits for the cluster.
func (c *NATSCluster) start() error {
	for _, n := range c.Nodes {
		ports, err := freePorts(3)
		if err != nil {
			return err
		}
		n.setPorts(ports[0], ports[1], ports[2])
	}
	runs := make([]*run, len(c.Nodes))
	for i, n := range c.Nodes {
		r, err := n.launch(true)
		if err != nil {
			return err
		}
		runs[i] = r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, n := range c.Nodes {
		if err := n.waitReady(ctx, runs[i], n.healthz); err != nil {
			return n.withLog(err)
		}
	}
	if err := c.Nodes[0].waitReady(ctx, runs[0], c.metaCurrent); err != nil {
		return c.withLogs(err)
	}
	return nil
}

// WaitHealthy waits up to timeout until every running node is healthy and
// the meta leader sees every other node as current, as after a node was
// killed and started again.
func (c *NATSCluster) WaitHealthy(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		if err = c.healthy(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return c.withLogs(fmt.Errorf("nats cluster not healthy after %s: %w", timeout, err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *NATSCluster) healthy(ctx context.Context) error {
	for _, n := range c.Nodes {
		if !n.Running() {
			return fmt.Errorf("%s is not running", n.Name)
		}
		if err := n.healthz(ctx); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	return c.metaCurrent(ctx)
}

// metaCurrent checks that some node is meta leader and that it sees every
// other node as a current peer; before that, R3 assets cannot be placed.
func (c *NATSCluster) metaCurrent(ctx context.Context) error {
	var leader string
	for _, n := range c.Nodes {
		var jsz struct {
			Meta *struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		if _, err := getJSON(ctx, n.MonitorURL+"/jsz", &jsz); err == nil && jsz.Meta != nil && jsz.Meta.Leader != "" {
			leader = jsz.Meta.Leader
			break
		}
	}
	if leader == "" {
		return errors.New("no meta leader yet")
	}
	var ln *NATS
	for _, n := range c.Nodes {
		if n.Name == leader {
			ln = n
		}
	}
	if ln == nil {
		return fmt.Errorf("meta leader %q is not a node of this cluster", leader)
	}
	var jsz struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Size     int    `json:"cluster_size"`
			Replicas []struct {
				Name    string `json:"name"`
				Current bool   `json:"current"`
				Offline bool   `json:"offline"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
	}
	if _, err := getJSON(ctx, ln.MonitorURL+"/jsz", &jsz); err != nil {
		return err
	}
	if jsz.Meta == nil || jsz.Meta.Leader != leader {
		return fmt.Errorf("meta leader moved away from %s", leader)
	}
	current := 0
	for _, r := range jsz.Meta.Replicas {
		if r.Current && !r.Offline {
			current++
		}
	}
	if jsz.Meta.Size != len(c.Nodes) || current != len(c.Nodes)-1 {
		return fmt.Errorf("meta leader %s: cluster size %d, %d of %d peers current",
			leader, jsz.Meta.Size, current, len(c.Nodes)-1)
	}
	return nil
}

func (c *NATSCluster) routesExcept(self *NATS) []string {
	var routes []string
	for _, n := range c.Nodes {
		if n != self {
			routes = append(routes, "nats-route://"+loopback(n.ClusterPort))
		}
	}
	return routes
}

func (c *NATSCluster) withLogs(err error) error {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n--- last %d lines of %s ---\n%s", logTailLines, n.LogPath(), n.LogTail(logTailLines))
	}
	return fmt.Errorf("%w%s", err, b.String())
}

// URLs returns every node's client URL.
func (c *NATSCluster) URLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL
	}
	return urls
}

// URL returns the client URLs joined by commas, the form nats.Connect and
// REPLICAR_NATS_URL take.
func (c *NATSCluster) URL() string {
	return strings.Join(c.URLs(), ",")
}

// Connect opens a client connection that knows every node, which is closed
// when the test that started the cluster ends.
func (c *NATSCluster) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return connect(c.t, c.URL(), opts)
}

// Conn is Connect for the test goroutine: it fails the test on error.
func (c *NATSCluster) Conn(opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	nc, err := c.Connect(opts...)
	if err != nil {
		c.t.Fatalf("harness: %v", err)
	}
	return nc
}

// JetStream returns a JetStream context on a new connection from Conn.
func (c *NATSCluster) JetStream() jetstream.JetStream {
	c.t.Helper()
	return newJetStream(c.t, c.Conn())
}
