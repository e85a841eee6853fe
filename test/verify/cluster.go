package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/test/harness"
)

// Topology is a replicated group of replicar processes with a proxy on
// each link a nemesis may cut, whatever store the nodes front. Peers reach
// a node only through its links: a node listens on its own loopback
// address (127.0.0.2, 127.0.0.3 …) and advertises 127.0.0.1, where the
// links listen on the same ports.
type Topology struct {
	Nodes []*harness.Replicar
	Net   *Net
	// NATSLinks[i] carries node i's NATS connection; ClientLinks[i] and
	// ReplLinks[i] carry its peers' connections to its client port (a
	// follower forwarding to the leader) and replication port.
	NATSLinks, ClientLinks, ReplLinks []*Link
}

// NewTopology returns an empty topology whose links close with t.
func NewTopology(t testing.TB) *Topology {
	tp := &Topology{Net: NewNet()}
	t.Cleanup(tp.Net.Close)
	return tp
}

// AddNode starts node name of bin on its own loopback address with vars,
// reaching NATS at natsAddr through a link of its own, and puts links in
// front of its client and replication ports. vars must set
// REPLICAR_ADVERTISE=127.0.0.1; REPLICAR_NATS_URL is set here.
func (tp *Topology) AddNode(t testing.TB, bin, name, natsAddr string, vars map[string]string) *harness.Replicar {
	t.Helper()
	host := fmt.Sprintf("127.0.0.%d", len(tp.Nodes)+2)
	natsLink, err := tp.Net.Add(name+"-nats", "127.0.0.1:0", natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]string{"REPLICAR_NATS_URL": "nats://" + natsLink.Listen}
	for k, v := range vars {
		if k != "REPLICAR_NATS_URL" {
			own[k] = v
		}
	}
	node := harness.StartReplicarOn(t, bin, name, host, own)
	client, err := tp.Net.Add(name+"-client", advertisedAddr(node.Addr), node.Addr)
	if err != nil {
		t.Fatal(err)
	}
	repl, err := tp.Net.Add(name+"-repl", advertisedAddr(node.Repl), node.Repl)
	if err != nil {
		t.Fatal(err)
	}
	tp.Nodes = append(tp.Nodes, node)
	tp.NATSLinks = append(tp.NATSLinks, natsLink)
	tp.ClientLinks = append(tp.ClientLinks, client)
	tp.ReplLinks = append(tp.ReplLinks, repl)
	return node
}

// Cluster is a Redis group of real processes: one nats-server and, per
// node, a redis-server and a replicar binary in front of it.
type Cluster struct {
	Topology
	NATS   *harness.NATS
	Stores []*harness.Redis
}

// StartCluster starts n nodes with env on top of the defaults below (fast
// leases, so that failovers take a second or two).
func StartCluster(t testing.TB, n int, env map[string]string) *Cluster {
	t.Helper()
	harness.Require(t, "nats-server", "redis-server")
	bin := harness.BuildReplicar(t)
	c := &Cluster{Topology: *NewTopology(t), NATS: harness.StartNATS(t)}
	group := "v" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-", "+", "-").Replace(t.Name()))
	if len(group) > 60 {
		group = group[:60]
	}
	base := map[string]string{
		"REPLICAR_GROUP":         group,
		"REPLICAR_ADVERTISE":     "127.0.0.1",
		"REPLICAR_LEASE_TTL":     "1s",
		"REPLICAR_MAX_LAG":       "1s",
		"REPLICAR_ACK_TIMEOUT":   "3s",
		"REPLICAR_FAILOVER_WAIT": "5s",
		"REPLICAR_READ_POLICY":   "leader",
		"REPLICAR_LOG_LEVEL":     "info",
	}
	for k, v := range env {
		base[k] = v
	}
	for i := range n {
		store := harness.StartRedis(t, harness.RedisArgs("--enable-debug-command", "local"))
		vars := map[string]string{"REPLICAR_BACKEND": store.Addr}
		for k, v := range base {
			vars[k] = v
		}
		c.AddNode(t, bin, fmt.Sprintf("n%d", i+1), c.NATS.Addr, vars)
		c.Stores = append(c.Stores, store)
	}
	return c
}

// advertisedAddr is where peers dial a node that listens on addr and
// advertises 127.0.0.1: the same port on 127.0.0.1.
func advertisedAddr(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return net.JoinHostPort("127.0.0.1", port)
}

// Status is the part of a node's /status the suite reads.
type Status struct {
	Node, Role, State, Leader string
	Epoch, Offset, Applied    uint64
	ISR                       []string
}

// Status asks node i for its status; false when it does not answer within
// timeout (dead, paused or busy).
func (c *Topology) Status(i int, timeout time.Duration) (Status, bool) {
	if !c.Nodes[i].Running() {
		return Status{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := c.Nodes[i].Status(ctx)
	if err != nil {
		return Status{}, false
	}
	st := Status{Node: str(m["node"]), Role: str(m["role"]), State: str(m["state"]), Leader: str(m["leader"]),
		Epoch: num(m["epoch"]), Offset: num(m["offset"]), Applied: num(m["applied"])}
	if isr, ok := m["isr"].([]any); ok {
		for _, x := range isr {
			st.ISR = append(st.ISR, str(x))
		}
	}
	return st, true
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) uint64 {
	f, _ := v.(float64)
	return uint64(f)
}

// Leader returns the index of the node that says it leads with the
// highest epoch, or -1.
func (c *Topology) Leader() int {
	best, epoch := -1, uint64(0)
	for i := range c.Nodes {
		if st, ok := c.Status(i, 300*time.Millisecond); ok && st.Role == "leader" && (best < 0 || st.Epoch > epoch) {
			best, epoch = i, st.Epoch
		}
	}
	return best
}

// WaitSettled waits until one running node leads and streams, and every
// other running node follows it, streams and is in its ISR; it returns the
// leader's index, or an error with the last statuses seen.
func (c *Topology) WaitSettled(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	var last []Status
	for time.Now().Before(deadline) {
		last = last[:0]
		leader, ok := -1, true
		for i := range c.Nodes {
			st, up := c.Status(i, time.Second)
			if !up {
				continue
			}
			last = append(last, st)
			if st.Role == "leader" && st.State == "streaming" {
				if leader >= 0 {
					ok = false
				}
				leader = i
			}
		}
		if leader >= 0 && ok {
			all := true
			if lst, _ := c.Status(leader, time.Second); len(lst.ISR) < len(last) {
				all = false // followers stream but have not joined the ISR yet
			}
			for _, st := range last {
				if st.Role != "leader" && (st.Role != "follower" || st.Leader != c.Nodes[leader].Node || st.State != "streaming") {
					all = false
				}
			}
			if all {
				return leader, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return -1, fmt.Errorf("no settled leader within %v: %+v", timeout, last)
}

// WaitCaughtUp waits until every running node has applied the leader's
// last offset.
func (c *Topology) WaitCaughtUp(leader int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lagging []Status
	for time.Now().Before(deadline) {
		lst, ok := c.Status(leader, time.Second)
		lagging = lagging[:0]
		for i := range c.Nodes {
			if st, up := c.Status(i, time.Second); up && i != leader && st.Applied < lst.Offset {
				lagging = append(lagging, st)
			}
		}
		if ok && len(lagging) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("followers did not catch up within %v: %+v", timeout, lagging)
}

// Client is a client of node i's own client port (not through its proxy),
// with no retries and the given timeout.
func (c *Cluster) Client(i int, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: c.Nodes[i].Addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: timeout, WriteTimeout: timeout, PoolSize: 2, ContextTimeoutEnabled: true})
}

// DataDigest hashes every key in db 0 of store i outside replicar's own,
// with its value and absolute expiry.
func (c *Cluster) DataDigest(i int) (string, error) {
	ctx := context.Background()
	h := sha256.New()
	rc := redis.NewClient(&redis.Options{Addr: c.Stores[i].Addr, Protocol: 2, DisableIdentity: true})
	defer rc.Close()
	var keys []string
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		if k := iter.Val(); !strings.HasPrefix(k, "__replicar:") {
			keys = append(keys, k)
		}
	}
	if err := iter.Err(); err != nil {
		return "", fmt.Errorf("scan %s: %w", c.Stores[i].Addr, err)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// DIGEST-VALUE answers an array: one digest per key asked.
		d, err := rc.Do(ctx, "DEBUG", "DIGEST-VALUE", k).StringSlice()
		if err != nil || len(d) != 1 {
			return "", fmt.Errorf("digest %s: %v %v", k, d, err)
		}
		exp, _ := rc.PExpireTime(ctx, k).Result()
		fmt.Fprintf(h, "%s\x00%s\x00%d\n", k, d, exp)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// timelineMessages are the node log lines that say how roles changed.
var timelineMessages = map[string]bool{
	"won the lease": true, "leading": true, "lease lost": true, "stepped down": true, "handed over": true,
	"full resync needed": true, "full resync done; streaming from the snapshot": true, "streaming from leader": true,
	"another node holds the lease": true, "following stopped": true,
}

// Event is one line of a timeline: a wall-clock time in the nodes' log
// format and what happened.
type Event struct {
	At, What string
}

// NodeEvents returns the nodes' role changes, and their warnings and
// errors when all is set, from their logs.
func (c *Cluster) NodeEvents(all bool) []Event {
	var evs []Event
	for _, n := range c.Nodes {
		for _, line := range strings.Split(n.LogTail(1_000_000), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			msg, level := str(m["message"]), str(m["level"])
			if m["component"] == "election" && timelineMessages[msg] {
				continue // the node logs it again
			}
			if !timelineMessages[msg] && !(all && (level == "warn" || level == "error")) {
				continue
			}
			what := fmt.Sprintf("%s %s: %s", n.Node, level, msg)
			for _, k := range []string{"epoch", "leader", "position", "error"} {
				if v, ok := m[k]; ok {
					what += fmt.Sprintf(" %s=%v", k, v)
				}
			}
			evs = append(evs, Event{At: str(m["time"]), What: what})
		}
	}
	return evs
}

// wallTime formats t as the nodes' logs do, so that events sort together.
func wallTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
