package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/replicar/replicar/proxy"
)

func TestStatusCommand(t *testing.T) {
	st := proxy.Status{Node: "n1", Group: "g", Protocol: "redis", Role: "leader", State: "streaming", Epoch: 3,
		Leader: "n1", Offset: 10, Committed: 9, Applied: 10, ISR: []string{"n1", "n2"}, BackendUp: true,
		Followers: []proxy.FollowerStatus{
			{Node: "n2", Acked: 9, LagEntries: 1, LagSeconds: 0.01, InSync: true, Connected: true},
			{Node: "n3", Acked: 2, LagEntries: 8, LagSeconds: 7, InSync: false, Connected: false},
		}}
	srv := httptest.NewServer(proxy.NewHTTPHandler(func() proxy.Status { return st }))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	var out, errOut bytes.Buffer
	if code := runMain(context.Background(), []string{"status", "--addr", addr, "--json"}, baseEnv, &out, &errOut); code != exitOK {
		t.Fatalf("status --json: code %d, %s", code, errOut.String())
	}
	var gs groupStatus
	if err := json.Unmarshal(out.Bytes(), &gs); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if gs.Group != "g" || gs.Leader != "n1" || gs.Epoch != 3 || len(gs.Nodes) != 3 {
		t.Fatalf("group: %+v", gs)
	}
	if n3 := gs.Nodes[2]; n3.Node != "n3" || n3.Role != "follower" || n3.State != "connecting" || n3.Applied != 2 {
		t.Fatalf("n3 as the leader sees it: %+v", n3)
	}

	out.Reset()
	if code := runMain(context.Background(), []string{"status", "--addr", addr}, baseEnv, &out, &errOut); code != exitOK {
		t.Fatalf("status: code %d, %s", code, errOut.String())
	}
	table := out.String()
	for _, want := range []string{"group g, leader n1, epoch 3", "n1    leader", "n2    follower  streaming", "8 (7.0s)", "connecting"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	// A node that does not answer: exit 1 with one line.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	errOut.Reset()
	if code := runMain(context.Background(), []string{"status", "--addr", strings.TrimPrefix(dead.URL, "http://")}, baseEnv, &out, &errOut); code != exitFailure || strings.Count(errOut.String(), "\n") != 1 {
		t.Fatalf("unreachable node: code %d, stderr %q", code, errOut.String())
	}
}
