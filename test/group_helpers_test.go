package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/test/harness"
)

// procGroup is a replicated group of real processes: a nats-server, and per
// node a redis-server and a replicar binary in front of it.
type procGroup struct {
	nats   *harness.NATS
	stores []*harness.Redis
	nodes  []*harness.Replicar
}

// startProcGroup starts n nodes with env on top of the defaults below.
func startProcGroup(t *testing.T, n int, env map[string]string) *procGroup {
	t.Helper()
	harness.Require(t, "nats-server")
	g := &procGroup{nats: harness.StartNATS(t)}
	return g.start(t, n, g.nats.URL, env)
}

// start starts n nodes on natsURL; an empty natsURL makes node 1 run the
// embedded NATS server, which the others then use.
func (g *procGroup) start(t *testing.T, n int, natsURL string, env map[string]string) *procGroup {
	t.Helper()
	bin := harness.BuildReplicar(t)
	embedded := natsURL == ""
	if embedded {
		natsURL = fmt.Sprintf("nats://127.0.0.1:%d", harness.FreePort(t))
	}
	base := map[string]string{
		"REPLICAR_NATS_URL":      natsURL,
		"REPLICAR_GROUP":         "g" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())),
		"REPLICAR_LEASE_TTL":     "1s",
		"REPLICAR_MAX_LAG":       "1s",
		"REPLICAR_ACK_TIMEOUT":   "3s",
		"REPLICAR_FAILOVER_WAIT": "5s",
		"REPLICAR_LOG_LEVEL":     "info",
	}
	for k, v := range env {
		base[k] = v
	}
	if len(base["REPLICAR_GROUP"]) > 60 {
		base["REPLICAR_GROUP"] = base["REPLICAR_GROUP"][:60]
	}
	for i := range n {
		store := startRedis(t)
		vars := map[string]string{"REPLICAR_BACKEND": store.Addr}
		for k, v := range base {
			vars[k] = v
		}
		// "nK:NAME" keys set NAME on node K only.
		for k, v := range env {
			if node, name, ok := strings.Cut(k, ":"); ok && node == fmt.Sprintf("n%d", i+1) {
				vars[name] = v
			}
		}
		for k := range vars {
			if strings.Contains(k, ":") {
				delete(vars, k)
			}
		}
		if embedded && i == 0 {
			vars["REPLICAR_NATS_URL"] = ""
			vars["REPLICAR_NATS_LISTEN"] = strings.TrimPrefix(natsURL, "nats://")
		}
		g.stores = append(g.stores, store)
		g.nodes = append(g.nodes, harness.StartReplicar(t, bin, fmt.Sprintf("n%d", i+1), vars))
	}
	return g
}

// status is the part of /status the tests read.
type status struct {
	Node, Role, State, Leader string
	Epoch, Offset, Applied    uint64
	ISR                       []string
}

func (g *procGroup) status(i int) (status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !g.nodes[i].Running() {
		return status{}, false
	}
	m, err := g.nodes[i].Status(ctx)
	if err != nil {
		return status{}, false
	}
	st := status{Node: str(m["node"]), Role: str(m["role"]), State: str(m["state"]), Leader: str(m["leader"]),
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

// waitLeader waits until one running node leads and streams, and every
// other running node follows it, streams and is in the ISR; it returns the
// leader's index.
func (g *procGroup) waitLeader(t *testing.T, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []status
	for time.Now().Before(deadline) {
		last = last[:0]
		leader, ok := -1, true
		for i := range g.nodes {
			st, up := g.status(i)
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
		if leader >= 0 && ok && len(last[0:]) > 0 {
			all := true
			if lst, _ := g.status(leader); len(lst.ISR) < len(last) {
				all = false // followers stream but have not joined the ISR yet
			}
			for _, st := range last {
				if st.Role != "leader" && (st.Role != "follower" || st.Leader != g.nodes[leader].Node || st.State != "streaming") {
					all = false
				}
			}
			if all {
				return leader
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no settled leader within %v: %+v", timeout, last)
	return -1
}

// waitLeaderAmong waits until one of the nodes listed leads and streams,
// whatever the others do, and returns it; it fails with why otherwise.
func (g *procGroup) waitLeaderAmong(t *testing.T, among []int, timeout time.Duration, why string) int {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, i := range among {
			if st, ok := g.status(i); ok && st.Role == "leader" && st.State == "streaming" {
				return i
			}
		}
	}
	g.timeline(t)
	t.Fatal(why)
	return -1
}

// waitCaughtUp waits until every running node has applied the leader's
// last offset.
func (g *procGroup) waitCaughtUp(t *testing.T, leader int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		lst, ok := g.status(leader)
		done := ok
		for i := range g.nodes {
			if st, up := g.status(i); up && i != leader && st.Applied < lst.Offset {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("followers did not catch up within %v", timeout)
}

// client connects to node i's client port.
func (g *procGroup) client(t *testing.T, i int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: g.nodes[i].Addr, Protocol: 2, MaxRetries: -1,
		ReadTimeout: 20 * time.Second, WriteTimeout: 5 * time.Second, PoolSize: 32})
	t.Cleanup(func() { c.Close() })
	return c
}

// dataDigest hashes every key outside replicar's own, with its value and
// absolute expiry, in dbs 0..dbs-1: equal stores give equal digests while
// their position markers differ.
func dataDigest(t *testing.T, addr string, dbs int) string {
	t.Helper()
	ctx := context.Background()
	h := sha256.New()
	for db := range dbs {
		c := redis.NewClient(&redis.Options{Addr: addr, DB: db, Protocol: 2})
		var keys []string
		iter := c.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			if k := iter.Val(); !strings.HasPrefix(k, "__replicar:") {
				keys = append(keys, k)
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("scan %s: %v", addr, err)
		}
		sort.Strings(keys)
		for _, k := range keys {
			// DIGEST-VALUE answers an array, one digest per key asked.
			d, err := c.Do(ctx, "DEBUG", "DIGEST-VALUE", k).StringSlice()
			if err != nil || len(d) != 1 {
				t.Fatalf("DEBUG DIGEST-VALUE %q on %s: %v %v", k, addr, d, err)
			}
			exp, err := c.PExpireTime(ctx, k).Result()
			if err != nil {
				t.Fatalf("PEXPIRETIME %q on %s: %v", k, addr, err)
			}
			fmt.Fprintf(h, "%d\x00%s\x00%s\x00%d\n", db, k, d[0], exp)
		}
		c.Close()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// timeline logs the nodes' role changes in time order, when -v is set, so
// that a failover's time can be read off.
func (g *procGroup) timeline(t *testing.T) {
	if !testing.Verbose() {
		return
	}
	type ev struct{ at, line string }
	var evs []ev
	for _, n := range g.nodes {
		for _, line := range strings.Split(n.LogTail(2000), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			msg := str(m["message"])
			if lvl := str(m["level"]); lvl == "warn" || lvl == "error" {
				evs = append(evs, ev{str(m["time"]), fmt.Sprintf("%s %s: %s %s", n.Node, lvl, msg, str(m["error"]))})
				continue
			}
			switch msg {
			case "won the lease", "leading", "lease lost", "stepped down", "handed over", "full resync needed",
				"full resync done; streaming from the snapshot", "full resync copied", "streaming from leader", "route changed", "another node holds the lease":
			default:
				continue
			}
			evs = append(evs, ev{str(m["time"]), fmt.Sprintf("%s %s %s%s", n.Node, msg, str(m["leader"]), str(m["source"]))})
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	for _, e := range evs {
		t.Logf("%s %s", e.at, e.line)
	}
}

// workload writes unique ids (RPUSH ids) and counts (INCR ctr) through some
// nodes' client ports, recording what was acknowledged and every error.
type workload struct {
	stop    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	acked   []string
	incrs   int64 // INCRs acknowledged
	tries   int64 // INCRs sent
	errs    []string
	errTime []time.Time
	ackTime []time.Time
	lastAck atomic.Int64
}

// maxGap is the longest time between two acknowledgements in [from, to]:
// the pause clients saw.
func (w *workload) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	times := append([]time.Time(nil), w.ackTime...)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var gap time.Duration
	prev := from
	for _, at := range times {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

func startWorkload(t *testing.T, g *procGroup, nodes []int, perNode int) *workload {
	w := &workload{}
	ctx := context.Background()
	for _, node := range nodes {
		for k := range perNode {
			c := g.client(t, node)
			name := fmt.Sprintf("n%d.%d", node, k)
			w.wg.Go(func() {
				for i := 0; !w.stop.Load(); i++ {
					id := fmt.Sprintf("%s-%d", name, i)
					err := c.RPush(ctx, "ids", id).Err()
					if err == nil {
						w.mu.Lock()
						w.tries++
						w.mu.Unlock()
						err = c.Incr(ctx, "ctr").Err()
					}
					w.mu.Lock()
					if err != nil {
						w.errs = append(w.errs, err.Error())
						w.errTime = append(w.errTime, time.Now())
					} else {
						w.acked = append(w.acked, id)
						w.ackTime = append(w.ackTime, time.Now())
						w.incrs++
						w.lastAck.Store(time.Now().UnixNano())
					}
					w.mu.Unlock()
					if err != nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
			})
		}
	}
	return w
}

func (w *workload) halt() {
	w.stop.Store(true)
	w.wg.Wait()
}

// check reads the ids and the counter back from the leader: every
// acknowledged id is there exactly once, and the counter is between the
// INCRs acknowledged and those sent.
func (w *workload) check(t *testing.T, g *procGroup, leader int) {
	t.Helper()
	ctx := context.Background()
	c := g.client(t, leader)
	got, err := c.LRange(ctx, "ids", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, id := range got {
		count[id]++
	}
	lost, dups := 0, 0
	for _, id := range w.acked {
		if count[id] == 0 {
			lost++
		}
	}
	for _, n := range count {
		if n > 1 {
			dups++
		}
	}
	ctr, _ := c.Get(ctx, "ctr").Int64()
	t.Logf("acknowledged %d writes, %d errors; list holds %d; lost %d; duplicated %d; ctr %d (acked %d, sent %d)",
		len(w.acked), len(w.errs), len(got), lost, dups, ctr, w.incrs, w.tries)
	if lost > 0 || dups > 0 {
		t.Fatalf("%d acknowledged writes lost, %d applied twice", lost, dups)
	}
	if ctr < w.incrs || ctr > w.tries {
		t.Fatalf("ctr = %d, want between %d acknowledged and %d sent INCRs", ctr, w.incrs, w.tries)
	}
}

// sameData requires every running store to hold the leader's data.
func (g *procGroup) sameData(t *testing.T, leader int) {
	t.Helper()
	g.waitCaughtUp(t, leader, 30*time.Second)
	want := dataDigest(t, g.stores[leader].Addr, 1)
	for i := range g.stores {
		if !g.nodes[i].Running() {
			continue
		}
		if got := dataDigest(t, g.stores[i].Addr, 1); got != want {
			t.Fatalf("store of %s differs from the leader's", g.nodes[i].Node)
		}
	}
}

// metric reads one sample from node i's /metrics, e.g.
// `replicar_resyncs_total{kind="full"}`; -1 when absent.
func (g *procGroup) metric(t *testing.T, i int, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.nodes[i].HTTP + "/metrics")
	if err != nil {
		t.Fatalf("metrics of n%d: %v", i+1, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
