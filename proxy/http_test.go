package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/election"
)

func TestReadiness(t *testing.T) {
	leader := Status{Role: RoleLeader, State: StateStreaming, Leader: "n1", BackendUp: true}
	follower := Status{Role: RoleFollower, State: StateStreaming, Leader: "n1", BackendUp: true}
	with := func(st Status, f func(*Status)) Status { f(&st); return st }
	for _, tc := range []struct {
		name  string
		st    Status
		ready bool
	}{
		{"leader streaming", leader, true},
		{"leader waiting out the old lease", with(leader, func(s *Status) { s.State = StateConnecting }), false},
		{"leader fenced", with(leader, func(s *Status) { s.State = StateFenced }), false},
		{"leader past its lease deadline", with(leader, func(s *Status) { s.LeaseLapsed = true }), false},
		{"leader handing over", with(leader, func(s *Status) { s.State = StateHandover }), false},
		{"leader with its backend down", with(leader, func(s *Status) { s.BackendUp = false }), false},
		{"follower streaming", follower, true},
		{"follower connecting, forwarding", with(follower, func(s *Status) { s.State = StateConnecting }), true},
		{"follower in a full resync", with(follower, func(s *Status) { s.State = StateResync }), false},
		{"follower without a leader", with(follower, func(s *Status) { s.Leader = "" }), false},
		{"follower, backend down, leader reads", with(follower, func(s *Status) { s.BackendUp, s.ReadPolicy = false, "leader" }), true},
		{"follower, backend down, local reads", with(follower, func(s *Status) { s.BackendUp, s.ReadPolicy = false, "local" }), false},
		{"candidate (election)", Status{Role: RoleCandidate, State: StateConnecting}, false},
		{"router with a leader", Status{Role: election.RoleRouter, State: StateStreaming, Leader: "n1"}, true},
		{"router during an election", Status{Role: election.RoleRouter, State: StateConnecting}, false},
	} {
		ready, why := Readiness(tc.st)
		if ready != tc.ready || (!ready && why == "") {
			t.Errorf("%s: ready %t (%q), want %t", tc.name, ready, why, tc.ready)
		}
	}
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res.Header
}

// The probes follow the status at every request, and say why not ready.
func TestProbes(t *testing.T) {
	var st atomic.Pointer[Status]
	st.Store(&Status{Node: "n1", Role: RoleLeader, State: StateStreaming, Leader: "n1", BackendUp: true})
	srv := httptest.NewServer(NewHTTPHandler(func() Status { return *st.Load() }))
	defer srv.Close()
	if code, body, _ := get(t, srv.URL+"/readyz"); code != 200 || !strings.Contains(body, "ready: leader, streaming") {
		t.Fatalf("/readyz of a streaming leader: %d %q", code, body)
	}
	st.Store(&Status{Node: "n1", Role: RoleCandidate, State: StateConnecting, BackendUp: true})
	if code, body, _ := get(t, srv.URL+"/readyz"); code != 503 || !strings.Contains(body, "candidate (election)") {
		t.Fatalf("/readyz of a candidate: %d %q", code, body)
	}
	if code, body, _ := get(t, srv.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if _, body, _ := get(t, srv.URL+"/status"); !strings.Contains(body, `"ready": false`) || !strings.Contains(body, `"not_ready": "candidate (election)"`) {
		t.Fatalf("/status lacks the readiness: %s", body)
	}
}

// The page and its assets come from the binary and name no outside host.
func TestStatusPageServed(t *testing.T) {
	srv := httptest.NewServer(NewHTTPHandler(func() Status { return Status{Node: "n1"} }))
	defer srv.Close()
	code, page, h := get(t, srv.URL+"/")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(page, `<table id="nodes">`) {
		t.Fatalf("GET /: %d %s\n%s", code, h.Get("Content-Type"), page)
	}
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, asset := range regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(page, -1) {
		code, body, _ := get(t, srv.URL+asset[1])
		if code != 200 || len(body) < 100 {
			t.Fatalf("GET %s: %d, %d bytes", asset[1], code, len(body))
		}
		if m := external.FindString(body); m != "" {
			t.Errorf("%s refers to an outside host: %q", asset[1], m)
		}
	}
	if m := external.FindString(page); m != "" {
		t.Errorf("the page refers to an outside host: %q", m)
	}
	if code, _, _ := get(t, srv.URL+"/nope"); code != 404 {
		t.Fatalf("GET /nope: %d, want 404", code)
	}
}

// With no leader answering, each node's own ISR belief is shown, and a
// directory member that does not answer is unreachable.
func TestAssembleGroupDuringElection(t *testing.T) {
	self := Status{Node: "n2", Group: "g", Role: RoleCandidate, State: StateConnecting, Epoch: 4, ISR: []string{"n2", "n3"}, BackendUp: true}
	members := []election.Member{
		{Node: "n1", Role: RoleLeader, Epoch: 4, ISRMember: true},
		{Node: "n2", Role: RoleCandidate, Epoch: 4, ISRMember: true},
		{Node: "n3", Role: RoleCandidate, Epoch: 4, ISRMember: true, Applied: 7},
	}
	n3 := Status{Node: "n3", Group: "g", Role: RoleCandidate, State: StateConnecting, Epoch: 4, Applied: 7, BackendUp: true}
	gs := AssembleGroup(self, members, map[string]Status{"n3": n3})
	if gs.Leader != "" || len(gs.Nodes) != 3 {
		t.Fatalf("group: %+v", gs)
	}
	want := map[string]string{"n1": "unreachable", "n2": "election", "n3": "election"}
	for _, n := range gs.Nodes {
		if n.Health != want[n.Node] || !n.InISR {
			t.Errorf("%s: health %q, in isr %t", n.Node, n.Health, n.InISR)
		}
	}
}

// The ack latency histogram observes each acknowledgement under the
// node's policy, and no read fence.
func TestAckLatencyObserved(t *testing.T) {
	rl, _, err := OpenReplLog(context.Background(), ReplLogOptions{Policy: ackpolicy.LeaderAck(), AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	for i := range 3 {
		off, err := rl.Append([]byte("SET k v"))
		if err != nil {
			t.Fatal(err)
		}
		if err := rl.WaitCommitted(context.Background(), off); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := rl.WaitReadable(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(rl.AckLatency())
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "replicar_ack_latency_seconds" {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	if n := m.GetHistogram().GetSampleCount(); n != 3 {
		t.Fatalf("observations: %d, want 3", n)
	}
	if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "policy" || l[0].GetValue() != "leader" {
		t.Fatalf("labels %v", l)
	}
}

// BytesAfter sums the payloads after an offset, across its lock batches,
// and stops at the backlog's head.
func TestBytesAfter(t *testing.T) {
	rl, _, err := OpenReplLog(context.Background(), ReplLogOptions{Policy: ackpolicy.NoAck()})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	n := 2*bytesAfterBatch + 10
	for i := range n {
		if _, err := rl.Append(make([]byte, 1+i%3)); err != nil {
			t.Fatal(err)
		}
	}
	size := func(off int) int64 { return int64(1 + (off-1)%3) } // offset off holds entry off-1
	for _, from := range []int{0, 1, bytesAfterBatch, n - 1, n} {
		var want int64
		for off := from + 1; off <= n; off++ {
			want += size(off)
		}
		if got := rl.BytesAfter(uint64(from)); got != want {
			t.Errorf("BytesAfter(%d) = %d, want %d", from, got, want)
		}
	}
}

// The backend watch counts transitions from up to down, not a backend
// that was down from the start.
func TestBackendWatchCountsOutages(t *testing.T) {
	w := &backendWatch{}
	for _, up := range []bool{false, false, true, true, false, true, false, false} {
		w.observe(up)
	}
	if got := w.downs.Load(); got != 2 {
		t.Fatalf("outages counted: %d, want 2", got)
	}
}
