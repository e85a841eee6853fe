package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/test/harness"
)

func up(id, role, state, leader string, epoch, offset, applied uint64, isr ...string) view {
	return view{ID: id, Up: true, St: nodeStatus{Node: id, Role: role, State: state, Leader: leader,
		Epoch: epoch, Offset: offset, Applied: applied, ISR: isr}}
}

func TestSnapshotAndEvents(t *testing.T) {
	steady := snapshot{
		up("n1", "leader", "streaming", "n1", 4, 100, 100, "n1", "n2", "n3"),
		up("n2", "follower", "streaming", "n1", 4, 98, 98),
		up("n3", "follower", "streaming", "n1", 4, 100, 100),
	}
	steady[0].St.Followers = []followerStatus{{Node: "n2", LagEntries: 2}, {Node: "n3"}}
	if l := steady.leader(); l != 0 {
		t.Fatalf("leader = %d, want 0", l)
	}
	if !steady.settled([]int{0, 1, 2}) {
		t.Fatal("steady group not settled")
	}
	if steady.caughtUp() {
		t.Fatal("n2 at 98 of 100 counted as caught up")
	}
	if lag, ok := steady.lag(1); !ok || lag != 2 {
		t.Fatalf("lag of n2 = %d %v, want 2 from the leader's view", lag, ok)
	}
	if got := steady.cell(1); got != "follower @98 lag 2" {
		t.Fatalf("cell = %q", got)
	}
	if got := tableRow(10, 1, 99.6, steady); !strings.HasSuffix(got, "n1,n2,n3") || !strings.Contains(got, "LEADER e4 @100") {
		t.Fatalf("row = %q", got)
	}

	killed := snapshot{{ID: "n1"}, steady[1], steady[2]}
	if killed.leader() != -1 || killed.settled([]int{1, 2}) {
		t.Fatal("a group without its leader has one")
	}
	if got := events(steady, killed); len(got) != 1 || got[0] != "n1 stopped answering" {
		t.Fatalf("events after the kill = %q", got)
	}
	elected := snapshot{{ID: "n1"},
		up("n2", "leader", "connecting", "n2", 9, 100, 100, "n2", "n3"),
		up("n3", "follower", "streaming", "n2", 9, 100, 100)}
	// n3's role and state did not change, only its leader: no event.
	got := events(killed, elected)
	want := []string{"n2 follower streaming → leader connecting (epoch 9, offset 100, ISR [n2 n3]): waits until the old leader is surely fenced before it takes writes"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events after the election:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	serving := snapshot{{ID: "n1"},
		up("n2", "leader", "streaming", "n2", 9, 120, 120, "n2", "n3"),
		up("n3", "follower", "streaming", "n2", 9, 120, 120)}
	back := snapshot{up("n1", "follower", "resync", "n2", 0, 0, 0),
		up("n2", "leader", "streaming", "n2", 9, 130, 130, "n2", "n3", "n1"),
		up("n3", "follower", "streaming", "n2", 9, 130, 130)}
	got = events(serving, back)
	want = []string{"n1 is back: follower resync of n2 (applied 0)", "ISR [n2 n3] → [n2 n3 n1]"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events after the restart:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if back.settled([]int{0, 1, 2}) {
		t.Fatal("settled while n1 resyncs")
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{errors.New("TRYAGAIN no leader"), failTryAgain},
		{errors.New("NOREPLICAS not enough in-sync replicas"), failNoReplicas},
		{errors.New("UNCOMMITTED not committed within 5s"), failUncommitted},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), failConnection},
		{errors.New("ERR replicar: connection to the leader lost with the command in flight; it may have been executed: EOF"), failConnection},
		{errors.New("ERR wrong number of arguments"), failOther},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%q) = %q, want %q", c.err, got, c.want)
		}
	}
	if got := group3(1234567); got != "1,234,567" {
		t.Errorf("group3 = %q", got)
	}
}

// A pid file is honoured only while its pid runs the program it names.
func TestPidRecordAlive(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !(pidRecord{name: "n1", pid: os.Getpid(), exe: self}).alive() {
		t.Fatal("this process does not count as alive")
	}
	if (pidRecord{name: "n1", pid: os.Getpid(), exe: "/usr/bin/redis-server"}).alive() {
		t.Fatal("a pid now running another program counts as alive")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "redis1.pid"), fmt.Appendf(nil, "%d\n/usr/bin/redis-server\n", os.Getpid()), 0o644)
	os.WriteFile(filepath.Join(dir, "n1.pid"), fmt.Appendf(nil, "%d\n/nonexistent/replicar\n", os.Getpid()), 0o644)
	os.WriteFile(filepath.Join(dir, "nats.pid"), []byte("1\n/x\n"), 0o644)
	if _, err := readPidFiles(dir); err == nil || !strings.Contains(err.Error(), "bad pid") {
		t.Fatalf("pid 1 accepted: %v", err)
	}
	os.Remove(filepath.Join(dir, "nats.pid"))
	recs, err := readPidFiles(dir)
	if err != nil || len(recs) != 2 || recs[0].name != "n1" || recs[1].name != "redis1" {
		t.Fatalf("records = %+v, %v; want n1 then redis1", recs, err)
	}
	// Neither names this test binary, so stop signals nothing and only
	// removes the directory.
	if err := stopGroup(dir, time.Second, func(string) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("stop left %s: %v", dir, err)
	}
}

// The whole demo, shortened: a group of real processes, the leader
// SIGKILLed, the node back as a follower, every acknowledged write read
// back, then stop.
func TestDemo(t *testing.T) {
	harness.Require(t, "redis-server", "nats-server")
	bin := harness.BuildReplicar(t)
	dir := filepath.Join(t.TempDir(), "group")
	o := options{
		settings: settings{dir: dir, bin: bin, group: "demotest", policy: "quorum", leaseTTL: time.Second,
			nodes: 3, startWait: 30 * time.Second, tied: true},
		writers: 2, rate: 300, before: time.Second, after: 500 * time.Millisecond, keep: true,
	}
	t.Cleanup(func() {
		if _, err := os.Stat(dir); err == nil {
			stopGroup(dir, time.Second, func(string) {})
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, o, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	v := res.verdict
	if v.Acked < 100 || v.Lost != 0 || v.LostOnStore[0]+v.LostOnStore[1]+v.LostOnStore[2] != 0 {
		t.Fatalf("verdict %+v: want acknowledged writes and none lost", v)
	}
	if res.killed == "" || res.newLeader == res.killed {
		t.Fatalf("killed %q, new leader %q", res.killed, res.newLeader)
	}
	for _, want := range []string{"SIGKILL " + res.killed, "writes lost:          0", "Stop it with: make stop"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	recs, err := readPidFiles(dir)
	if err != nil || len(stillAlive(recs)) != 7 {
		t.Fatalf("after the demo %d of 7 processes run (%v)", len(stillAlive(recs)), err)
	}
	var said []string
	if err := stopGroup(dir, 10*time.Second, func(s string) { said = append(said, s) }); err != nil {
		t.Fatal(err)
	}
	if alive := stillAlive(recs); len(alive) > 0 {
		t.Fatalf("still running after stop: %+v", alive)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("stop left %s", dir)
	}
	if len(said) != 7 || !strings.HasPrefix(said[0], "stopped n") {
		t.Fatalf("stop said %q", said)
	}
}
