package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/test/harness"
)

// scrape reads every sample of a /metrics page: "name{labels}" → value.
func scrape(t *testing.T, httpAddr string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", httpAddr, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// readyz returns the status code and body of a node's /readyz.
func readyz(addr string) (int, string) {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(body))
}

// Every metric the operations contract names appears on a real group with
// values that match what happened: writes logged and acknowledged, offsets,
// follower lag in entries, bytes and seconds while a follower is paused,
// ISR size, resyncs, elections, fencing and backend errors. The probes
// follow the roles through a failover, a router's included.
func TestMetricsAndProbes(t *testing.T) {
	const writes = 200
	g := startProcGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "all", "REPLICAR_MIN_INSYNC": "2"})
	leader := g.waitLeader(t, 20*time.Second)
	f1, f2 := (leader+1)%3, (leader+2)%3
	router := harness.StartReplicar(t, harness.BuildReplicar(t), "r1", map[string]string{
		"REPLICAR_NATS_URL": g.nats.URL, "REPLICAR_GROUP": g.nodes[0].Var("REPLICAR_GROUP"),
		"REPLICAR_LEASE_TTL": "1s", "REPLICAR_FAILOVER_WAIT": "5s",
	})
	ctx := context.Background()
	// `replicar status`, asked through a follower, lists the whole group
	// with the router, which publishes itself in the member directory.
	var gs struct {
		Leader string
		Nodes  []struct {
			Node, Role, Health string
			InISR              bool `json:"in_isr"`
		}
	}
	eventually(t, "replicar status listing three nodes and the router", func() bool {
		out, err := exec.Command(harness.BuildReplicar(t), "status", "--addr", g.nodes[f1].HTTP, "--json").Output()
		if err != nil {
			t.Fatalf("replicar status --json: %v", err)
		}
		if err := json.Unmarshal(out, &gs); err != nil {
			t.Fatalf("replicar status --json: %v\n%s", err, out)
		}
		if len(gs.Nodes) != 4 || gs.Leader != g.nodes[leader].Node {
			return false
		}
		for _, n := range gs.Nodes {
			if n.Health != "ok" || (n.Role == "router") == n.InISR {
				return false
			}
		}
		return gs.Nodes[3].Node == "r1" && gs.Nodes[3].Role == "router"
	})
	table, err := exec.Command(harness.BuildReplicar(t), "status", "--addr", g.nodes[f1].HTTP).CombinedOutput()
	if err != nil {
		t.Fatalf("replicar status: %v\n%s", err, table)
	}
	t.Logf("replicar status:\n%s", table)
	lc, fc := g.client(t, leader), g.client(t, f1)
	for i := range writes {
		c := lc
		if i%2 == 1 {
			c = fc // forwarded to the leader
		}
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), strings.Repeat("v", 100), 0).Err(); err != nil {
			t.Fatalf("SET %d: %v", i, err)
		}
	}
	g.waitCaughtUp(t, leader, 10*time.Second)
	ln, fn1, fn2 := g.nodes[leader].Node, g.nodes[f1].Node, g.nodes[f2].Node

	// The leader, with both followers caught up.
	var m map[string]float64
	eventually(t, "the leader's metrics show every write committed", func() bool {
		m = scrape(t, g.nodes[leader].HTTP)
		return m["replicar_committed_offset"] == m["replicar_offset"] && m[`replicar_follower_lag_entries{follower="`+fn1+`"}`] == 0
	})
	want := map[string]func(float64) bool{
		"replicar_writes_logged_total":                                atLeast(writes),
		"replicar_offset":                                             atLeast(writes),
		"replicar_applied_offset":                                     equals(m["replicar_offset"]),
		"replicar_committed_offset":                                   equals(m["replicar_offset"]),
		"replicar_isr_size":                                           equals(3),
		"replicar_epoch":                                              atLeast(1),
		`replicar_role{role="leader"}`:                                equals(1),
		`replicar_role{role="follower"}`:                              equals(0),
		"replicar_ready":                                              equals(1),
		"replicar_backend_up":                                         equals(1),
		`replicar_ack_latency_seconds_count{policy="all"}`:            atLeast(writes),
		`replicar_ack_latency_seconds_sum{policy="all"}`:              between(0.0001, 60),
		`replicar_ack_latency_seconds_bucket{policy="all",le="+Inf"}`: atLeast(writes),
		"replicar_elections_total":                                    equals(1),
		"replicar_fenced_total":                                       equals(0),
		"replicar_fenced_requests_total":                              equals(0),
		`replicar_resyncs_total{kind="partial"}`:                      atLeast(0), // present
		`replicar_resyncs_total{kind="full"}`:                         equals(0),
		`replicar_backend_errors_total{kind="unavailable"}`:           equals(0),
		`replicar_backend_errors_total{kind="write_unknown"}`:         equals(0),
		`replicar_backend_errors_total{kind="apply"}`:                 equals(0),
		"replicar_writes_uncommitted_total":                           equals(0),
		"replicar_backlog_bytes":                                      atLeast(writes * 100),
	}
	for _, f := range []string{fn1, fn2} {
		want[`replicar_follower_lag_entries{follower="`+f+`"}`] = equals(0)
		want[`replicar_follower_lag_bytes{follower="`+f+`"}`] = equals(0)
		want[`replicar_follower_lag_seconds{follower="`+f+`"}`] = between(0, 1)
		want[`replicar_follower_connected{follower="`+f+`"}`] = equals(1)
		want[`replicar_follower_in_sync{follower="`+f+`"}`] = equals(1)
	}
	check(t, ln, m, want)
	// Half the writes were forwarded: they are logged on the leader only.
	if fm := scrape(t, g.nodes[f1].HTTP); fm["replicar_writes_logged_total"] != 0 || fm[`replicar_ack_latency_seconds_count{policy="all"}`] != 0 {
		t.Errorf("%s logged or acknowledged writes itself: %v logged, %v acks", fn1, fm["replicar_writes_logged_total"], fm[`replicar_ack_latency_seconds_count{policy="all"}`])
	}
	for _, f := range []int{f1, f2} {
		check(t, g.nodes[f].Node, scrape(t, g.nodes[f].HTTP), map[string]func(float64) bool{
			"replicar_applied_offset":                equals(m["replicar_offset"]),
			`replicar_role{role="follower"}`:         equals(1),
			"replicar_ready":                         equals(1),
			`replicar_resyncs_total{kind="partial"}`: atLeast(1), // its streaming session
			`replicar_resyncs_total{kind="full"}`:    equals(0),
			"replicar_elections_total":               equals(0),
		})
	}

	// A paused follower falls behind: its lag grows in entries, bytes and
	// seconds, it leaves the ISR, and it catches up once resumed.
	if err := g.nodes[f2].Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := lc.Set(ctx, fmt.Sprintf("p%d", i), strings.Repeat("w", 100), 0).Err(); err != nil {
			t.Fatalf("SET while %s is paused: %v", fn2, err)
		}
	}
	lag := `{follower="` + fn2 + `"}`
	eventually(t, "the paused follower out of the ISR", func() bool {
		m = scrape(t, g.nodes[leader].HTTP)
		return m["replicar_isr_size"] == 2
	})
	// SIGSTOP lands a moment after kill(2) returns: the follower may
	// still ack the first writes.
	check(t, ln, m, map[string]func(float64) bool{
		"replicar_follower_lag_entries" + lag: between(25, 50),
		// 100-byte values, besides the command around them
		"replicar_follower_lag_bytes" + lag:                       atLeast(100 * m["replicar_follower_lag_entries"+lag]),
		"replicar_follower_lag_seconds" + lag:                     atLeast(0.5),
		"replicar_follower_in_sync" + lag:                         equals(0),
		"replicar_follower_lag_entries{follower=\"" + fn1 + "\"}": equals(0),
	})
	t.Logf("paused %s: lag %v entries, %v bytes, %.2fs", fn2, m["replicar_follower_lag_entries"+lag], m["replicar_follower_lag_bytes"+lag], m["replicar_follower_lag_seconds"+lag])
	if err := g.nodes[f2].Cont(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the resumed follower caught up and in the ISR", func() bool {
		m = scrape(t, g.nodes[leader].HTTP)
		return m["replicar_isr_size"] == 3 && m["replicar_follower_lag_entries"+lag] == 0 && m["replicar_follower_lag_bytes"+lag] == 0
	})

	// A follower whose store dies: backend errors (the outage, then the
	// entries it fails to apply), and still ready: it forwards every
	// command under READ_POLICY=leader.
	if err := g.stores[f2].Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the follower's store seen down", func() bool {
		fm := scrape(t, g.nodes[f2].HTTP)
		return fm["replicar_backend_up"] == 0 && fm[`replicar_backend_errors_total{kind="unavailable"}`] == 1
	})
	if err := lc.Set(ctx, "after-store-death", "1", 0).Err(); err != nil {
		t.Fatalf("SET with one follower's store dead: %v", err)
	}
	eventually(t, "an apply error on the follower whose store died", func() bool {
		return scrape(t, g.nodes[f2].HTTP)[`replicar_backend_errors_total{kind="apply"}`] >= 1
	})
	if code, body := readyz(g.nodes[f2].HTTP); code != 200 {
		t.Fatalf("/readyz of a forwarding follower with its store down: %d %s", code, body)
	}

	// The probes through a failover: every node and the router ready,
	// then the leader dies, and all of them are ready again under the new
	// leader. The election itself, when a survivor says 503, now lasts
	// milliseconds (the winner serves at once after an expiry), so a poll
	// may or may not catch it; the rules for it are in proxy's
	// TestReadiness.
	for _, addr := range []string{g.nodes[leader].HTTP, g.nodes[f1].HTTP, router.HTTP} {
		eventually(t, addr+" ready", func() bool { code, _ := readyz(addr); return code == 200 })
	}
	if err := g.nodes[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var notReady []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := true
		for _, addr := range []string{g.nodes[f1].HTTP, g.nodes[f2].HTTP, router.HTTP} {
			code, body := readyz(addr)
			if code != 200 {
				all = false
				if code == 503 && len(notReady) < 10 {
					notReady = append(notReady, fmt.Sprintf("%s: %s", addr, body))
				}
			}
		}
		newLeaderUp := false
		for _, i := range []int{f1, f2} {
			if st, ok := g.status(i); ok && st.Role == "leader" && st.State == "streaming" {
				newLeaderUp = true
			}
		}
		if all && newLeaderUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("survivors not all ready within 20s of the kill; 503s seen: %q", notReady)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ready again %v after the kill; 503s seen: %q", time.Since(killed).Round(time.Millisecond), notReady)
	newLeader := g.waitLeaderAmong(t, []int{f1, f2}, 10*time.Second, "no new leader")
	nm := scrape(t, g.nodes[newLeader].HTTP)
	check(t, g.nodes[newLeader].Node, nm, map[string]func(float64) bool{
		"replicar_elections_total":     equals(1),
		`replicar_role{role="leader"}`: equals(1),
		"replicar_ready":               equals(1),
	})
	table, err = exec.Command(harness.BuildReplicar(t), "status", "--addr", router.HTTP).CombinedOutput()
	if err != nil {
		t.Fatalf("replicar status: %v\n%s", err, table)
	}
	t.Logf("replicar status after the failover, asked through the router:\n%s", table)
	rst, err := router.Status(ctx)
	if err != nil || rst["leader"] != g.nodes[newLeader].Node {
		t.Fatalf("router status after the failover: %v %v", rst, err)
	}
}

// eventually waits up to 10s for cond, and fails saying what it waited for.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
	}
}

func check(t *testing.T, node string, m map[string]float64, want map[string]func(float64) bool) {
	t.Helper()
	for name, ok := range want {
		v, present := m[name]
		if !present {
			t.Errorf("%s: %s missing", node, name)
			continue
		}
		if !ok(v) {
			t.Errorf("%s: %s = %v", node, name, v)
		}
	}
}

func equals(x float64) func(float64) bool  { return func(v float64) bool { return v == x } }
func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
func between(lo, hi float64) func(float64) bool {
	return func(v float64) bool { return v >= lo && v <= hi }
}

// A write sent to the store whose connection then breaks has an unknown
// outcome: the client gets ERR backend unavailable saying it may have run,
// the node logs it, and backend_errors_total{kind="write_unknown"} counts
// it. The store is paused with the write in its socket, then killed.
func TestWriteInFlightWhenStoreDies(t *testing.T) {
	g := startProcGroup(t, 1, map[string]string{"REPLICAR_ACK_POLICY": "leader"})
	g.waitLeader(t, 20*time.Second)
	ctx := context.Background()
	c := g.client(t, 0)
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	kind := `replicar_backend_errors_total{kind="write_unknown"}`
	if n := scrape(t, g.nodes[0].HTTP)[kind]; n != 0 {
		t.Fatalf("%s = %v before any failure", kind, n)
	}
	if err := g.stores[0].Stop(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, "in-flight", "1", 0).Err() }()
	time.Sleep(300 * time.Millisecond) // the SET is in the paused store's socket
	select {
	case err := <-done:
		t.Fatalf("the SET to a paused store returned before the store died: %v", err)
	default:
	}
	if err := g.stores[0].Kill(); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the SET in flight got no reply after its store died")
	}
	if err == nil || !strings.HasPrefix(err.Error(), "ERR backend unavailable") {
		t.Fatalf("SET in flight when the store died: %v, want ERR backend unavailable", err)
	}
	eventually(t, kind+" = 1", func() bool { return scrape(t, g.nodes[0].HTTP)[kind] == 1 })
	if countLog(t, g.nodes[0], "write in flight") != 1 {
		t.Fatalf("the node did not log the write of unknown outcome once:\n%s", g.nodes[0].LogTail(20))
	}
	t.Logf("client got: %v", err)
}
