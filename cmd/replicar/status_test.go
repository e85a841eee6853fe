package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/proxy"
)

// statusServer serves st through the real handler, with members as the
// member directory.
func statusServer(t *testing.T, st *proxy.Status, members func() []election.Member) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(proxy.NewHTTPHandlerWith(proxy.HTTPOptions{
		Status: func() proxy.Status { return *st },
		Members: func(context.Context) ([]election.Member, error) {
			return members(), nil
		},
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// A group of two live nodes, a follower whose process answers nothing but
// whose record is still in the directory, a follower only the leader still
// tracks, and a router: asked through a follower, every one of them is
// listed with what is known of it.
func TestStatusCommandListsTheWholeGroup(t *testing.T) {
	var members []election.Member
	dir := func() []election.Member { return members }
	n1 := proxy.Status{Node: "n1", Group: "g", Protocol: "redis", Role: "leader", State: "streaming", Epoch: 3,
		Leader: "n1", Offset: 10, Committed: 9, Applied: 10, ISR: []string{"n1", "n2"}, BackendUp: true,
		Followers: []proxy.FollowerStatus{
			{Node: "n2", Acked: 9, LagEntries: 1, LagBytes: 2048, LagSeconds: 0.01, InSync: true, Connected: true},
			{Node: "n3", Acked: 4, LagEntries: 6, LagBytes: 600, LagSeconds: 2.5, InSync: false, Connected: false},
			{Node: "n4", Acked: 2, LagEntries: 8, LagSeconds: 7, InSync: false, Connected: false},
		}}
	n2 := proxy.Status{Node: "n2", Group: "g", Protocol: "redis", Role: "follower", State: "streaming", Epoch: 3,
		Leader: "n1", Offset: 9, Committed: 9, Applied: 9, ISR: []string{}, BackendUp: true}
	r1 := proxy.Status{Node: "r1", Group: "g", Protocol: "redis", Role: "router", State: "streaming", Epoch: 3,
		Leader: "n1", BackendUp: true}
	s1, s2, sr := statusServer(t, &n1, dir), statusServer(t, &n2, dir), statusServer(t, &r1, dir)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	members = []election.Member{
		{Node: "n1", Role: "leader", Epoch: 3, Applied: 10, Healthy: true, Addrs: election.Addrs{HTTP: hostOf(s1)}},
		{Node: "n2", Role: "follower", Epoch: 3, Applied: 9, Healthy: true, Addrs: election.Addrs{HTTP: hostOf(s2)}},
		{Node: "n3", Role: "follower", Epoch: 3, Applied: 4, Healthy: true, Addrs: election.Addrs{HTTP: hostOf(dead)}},
		{Node: "r1", Role: "router", Healthy: true, Addrs: election.Addrs{HTTP: hostOf(sr)}},
	}

	var out, errOut bytes.Buffer
	if code := runMain(context.Background(), []string{"status", "--addr", hostOf(s2), "--json"}, baseEnv, &out, &errOut); code != exitOK {
		t.Fatalf("status --json: code %d, %s", code, errOut.String())
	}
	var gs proxy.GroupStatus
	if err := json.Unmarshal(out.Bytes(), &gs); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if gs.Group != "g" || gs.Leader != "n1" || gs.Epoch != 3 || gs.Asked != "n2" {
		t.Fatalf("group: %+v", gs)
	}
	type row struct {
		role, state, health string
		reachable, inISR    bool
		applied, lag        uint64
	}
	want := map[string]row{
		"n1": {"leader", "streaming", "ok", true, true, 10, 0},
		"n2": {"follower", "streaming", "ok", true, true, 9, 1},
		"n3": {"follower", "unknown", "unreachable", false, false, 4, 6},
		"n4": {"follower", "unknown", "down", false, false, 2, 8},
		"r1": {"router", "streaming", "ok", true, false, 0, 0},
	}
	var order []string
	for _, n := range gs.Nodes {
		order = append(order, n.Node)
		got := row{n.Role, n.State, n.Health, n.Reachable, n.InISR, n.Applied, n.LagEntries}
		if got != want[n.Node] {
			t.Errorf("%s: got %+v, want %+v", n.Node, got, want[n.Node])
		}
	}
	if strings.Join(order, ",") != "n1,n2,n3,n4,r1" {
		t.Fatalf("nodes in order %v, want by name with routers last", order)
	}
	// The JSON is the contract's: every node carries its /status fields.
	var raw struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"node", "group", "protocol", "role", "state", "epoch", "leader", "leader_addr", "offset", "committed", "applied", "isr", "followers"} {
		if _, ok := raw.Nodes[0][field]; !ok {
			t.Errorf("nodes[0] lacks %q", field)
		}
	}

	out.Reset()
	if code := runMain(context.Background(), []string{"status", "--addr", hostOf(s2)}, baseEnv, &out, &errOut); code != exitOK {
		t.Fatalf("status: code %d, %s", code, errOut.String())
	}
	table := out.String()
	for _, want := range []string{
		"group g, leader n1, epoch 3 (asked n2)",
		"NODE  ROLE      STATE      EPOCH  OFFSET  APPLIED  LAG",
		"n2    follower  streaming  3      9       9        1 (2.0 KiB, 0.01s)  yes  ok",
		"n3    follower  unknown    3      ?       4        6 (600 B, 2.50s)    no   unreachable",
		"n4    follower  unknown    3      ?       2        8 (0 B, 7.00s)      no   down",
		"r1    router    streaming  3      -       -        -",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// A node without /group (an older binary) is asked for /status: the table
// shows it and, on a leader, its followers.
func TestStatusCommandFallsBackToStatus(t *testing.T) {
	st := proxy.Status{Node: "n1", Group: "g", Protocol: "redis", Role: "leader", State: "streaming", Epoch: 3,
		Leader: "n1", Offset: 10, Committed: 9, Applied: 10, ISR: []string{"n1", "n2"}, BackendUp: true,
		Followers: []proxy.FollowerStatus{{Node: "n2", Acked: 9, LagEntries: 1, InSync: true, Connected: true}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) })
	old := httptest.NewServer(mux)
	defer old.Close()
	var out, errOut bytes.Buffer
	if code := runMain(context.Background(), []string{"status", "--addr", hostOf(old)}, baseEnv, &out, &errOut); code != exitOK {
		t.Fatalf("status: code %d, %s", code, errOut.String())
	}
	for _, want := range []string{"n1    leader    streaming", "n2    follower  streaming", "yes  ok"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// A node that does not answer: exit 1 with one line; bad flags: usage.
func TestStatusCommandErrors(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	var out, errOut bytes.Buffer
	if code := runMain(context.Background(), []string{"status", "--addr", hostOf(dead)}, baseEnv, &out, &errOut); code != exitFailure || strings.Count(errOut.String(), "\n") != 1 {
		t.Fatalf("unreachable node: code %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := runMain(context.Background(), []string{"status", "extra"}, baseEnv, &out, &errOut); code != exitUsage {
		t.Fatalf("stray argument: code %d, stderr %q", code, errOut.String())
	}
}

// --watch keeps refreshing until the context ends, and keeps going while
// the node asked does not answer (it may be the leader that just died).
func TestStatusCommandWatch(t *testing.T) {
	st := proxy.Status{Node: "n1", Group: "g", Role: "leader", State: "streaming", Leader: "n1", Epoch: 1, BackendUp: true, ISR: []string{"n1"}}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 2 { // the second refresh fails
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		proxy.NewHTTPHandler(func() proxy.Status { return st }).ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	w := &stopAfter{n: 2, cancel: cancel}
	var errOut bytes.Buffer
	if code := runMain(ctx, []string{"status", "--addr", hostOf(srv), "--watch"}, baseEnv, w, &errOut); code != exitOK {
		t.Fatalf("status --watch: code %d, %s", code, errOut.String())
	}
	got := w.buf.String()
	if strings.Count(got, "group g, leader n1") != 2 || !strings.Contains(got, "500 Internal Server Error") {
		t.Fatalf("watch output:\n%s", got)
	}
}

// stopAfter cancels the watch after n screens (one clear-screen each).
type stopAfter struct {
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (s *stopAfter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("\x1b[2J")) {
		if s.n == 0 {
			s.cancel()
		}
		s.n--
	}
	return s.buf.Write(p)
}
