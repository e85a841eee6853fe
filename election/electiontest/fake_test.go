package electiontest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/election/electiontest"
)

const ttl = 3 * time.Second

var ctx = context.Background()

func me(node string) election.LeaderInfo {
	return election.LeaderInfo{Node: node, Addrs: election.Addrs{Client: node + ":6380"}}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
	}
	var zero T
	return zero
}

// recvUntil reads until ok accepts a value.
func recvUntil[T any](t *testing.T, ch <-chan T, ok func(T) bool) T {
	t.Helper()
	for {
		if v := recv(t, ch); ok(v) {
			return v
		}
	}
}

func noRecv[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %+v", v)
	case <-time.After(50 * time.Millisecond):
	}
}

func isLost(l election.Leadership) bool {
	select {
	case <-l.Lost():
		return true
	default:
		return false
	}
}

func TestCampaignRenewExpire(t *testing.T) {
	f := electiontest.New(ttl)
	n1, n2 := f.Elector(), f.Elector()
	watch, err := n2.WatchLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if li := recv(t, watch); li.Held() {
		t.Fatalf("initial: %+v", li)
	}

	l1, err := n1.Campaign(ctx, me("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if !l1.ServeAt().Equal(f.Now().Add(ttl)) {
		t.Fatalf("first leader serves at %s, want now + TTL", l1.ServeAt())
	}
	if li := recv(t, watch); li.Node != "n1" || li.Epoch != l1.Epoch() || li.Nonce == "" {
		t.Fatalf("watch: %+v", li)
	}
	if _, err := n2.Campaign(ctx, me("n2")); !errors.Is(err, election.ErrLeaseHeld) {
		t.Fatalf("second campaign: %v", err)
	}

	// Renewed on the way: still held after many TTLs, no watch events.
	f.Advance(10 * ttl)
	if !l1.Valid() || isLost(l1) || l1.Err() != nil {
		t.Fatalf("after renewals: valid %v err %v", l1.Valid(), l1.Err())
	}
	if d := l1.Deadline().Sub(f.Now()); d <= 0 || d > ttl {
		t.Fatalf("deadline in %s", d)
	}
	noRecv(t, watch)

	// Paused: lost at the deadline, before the key expires.
	f.Pause(l1)
	deadline := l1.Deadline()
	f.Advance(deadline.Sub(f.Now()) - time.Millisecond)
	if !l1.Valid() || isLost(l1) {
		t.Fatal("lost before the deadline")
	}
	f.Advance(time.Millisecond)
	if l1.Valid() || !isLost(l1) || !errors.Is(l1.Err(), election.ErrLeaseExpired) {
		t.Fatalf("at the deadline: valid %v err %v", l1.Valid(), l1.Err())
	}
	if !f.Leader().Held() {
		t.Fatal("key expired before the margin passed")
	}
	f.Advance(election.FenceMargin(ttl))
	if li := recv(t, watch); li.Held() || li.Revision == 0 {
		t.Fatalf("watch after expiry: %+v", li)
	}

	l2, err := n2.Campaign(ctx, me("n2"))
	if err != nil {
		t.Fatal(err)
	}
	if l2.Epoch() <= l1.Epoch() || !l2.ServeAt().Equal(f.Now().Add(ttl)) {
		t.Fatalf("after expiry: epoch %d (old %d), serve at %s", l2.Epoch(), l1.Epoch(), l2.ServeAt())
	}
	if li := recv(t, watch); li.Node != "n2" {
		t.Fatalf("watch: %+v", li)
	}
	f.Resume(l1)
	f.Advance(ttl)
	if l1.Valid() {
		t.Fatal("a lost lease came back")
	}
}

func TestRelease(t *testing.T) {
	f := electiontest.New(ttl)
	n1, n2 := f.Elector(), f.Elector()
	l1, err := n1.Campaign(ctx, me("n1"))
	if err != nil {
		t.Fatal(err)
	}
	f.Advance(ttl)
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if l1.Valid() || !errors.Is(l1.Err(), election.ErrReleased) || !isLost(l1) {
		t.Fatalf("after release: valid %v err %v", l1.Valid(), l1.Err())
	}
	if err := l1.Release(ctx); !errors.Is(err, election.ErrReleased) {
		t.Fatalf("second release: %v", err)
	}
	l2, err := n2.Campaign(ctx, me("n2"))
	if err != nil {
		t.Fatal(err)
	}
	if !l2.ServeAt().Equal(f.Now()) {
		t.Fatalf("after a release: serve at %s, want now %s", l2.ServeAt(), f.Now())
	}
}

func TestExpireAndOverwrite(t *testing.T) {
	f := electiontest.New(ttl)
	n1, n2 := f.Elector(), f.Elector()
	l1, _ := n1.Campaign(ctx, me("n1"))
	f.Expire()
	if !errors.Is(l1.Err(), election.ErrLeaseLost) || l1.Valid() {
		t.Fatalf("after Expire: %v", l1.Err())
	}
	if err := l1.Release(ctx); !errors.Is(err, election.ErrLeaseLost) {
		t.Fatalf("release after expiry: %v", err)
	}
	l2, err := n2.Campaign(ctx, me("n2"))
	if err != nil {
		t.Fatal(err)
	}
	if !l2.ServeAt().Equal(f.Now().Add(ttl)) {
		t.Fatal("no wait after an expiry")
	}
	rev := f.Overwrite(election.LeaderInfo{Node: "intruder"})
	if !errors.Is(l2.Err(), election.ErrLeaseLost) || f.Leader().Node != "intruder" || f.Leader().Revision != rev {
		t.Fatalf("after Overwrite: %v %+v", l2.Err(), f.Leader())
	}
	if _, err := n1.Campaign(ctx, me("n1")); !errors.Is(err, election.ErrLeaseHeld) {
		t.Fatalf("campaign against the intruder: %v", err)
	}
	f.Advance(ttl) // nobody renews the intruder's key
	if f.Leader().Held() {
		t.Fatal("intruder's key did not expire")
	}
}

func TestDown(t *testing.T) {
	f := electiontest.New(ttl)
	n1 := f.Elector()
	l1, _ := n1.Campaign(ctx, me("n1"))
	f.SetDown(true)
	if _, err := n1.Campaign(ctx, me("n1")); !errors.Is(err, electiontest.ErrUnavailable) {
		t.Fatalf("campaign while down: %v", err)
	}
	if err := n1.Publish(ctx, election.Member{Node: "n1"}); !errors.Is(err, electiontest.ErrUnavailable) {
		t.Fatalf("publish while down: %v", err)
	}
	if _, _, err := n1.ISR(ctx); !errors.Is(err, electiontest.ErrUnavailable) {
		t.Fatalf("isr while down: %v", err)
	}
	f.Advance(ttl)
	if l1.Valid() || !errors.Is(l1.Err(), election.ErrLeaseExpired) {
		t.Fatalf("lease while down: %v", l1.Err())
	}
	f.SetDown(false)
	if _, err := n1.Campaign(ctx, me("n1")); err != nil {
		t.Fatal(err)
	}
}

func TestMembersAndISR(t *testing.T) {
	f := electiontest.New(ttl)
	n1, n2 := f.Elector(), f.Elector()
	watch, err := n2.WatchMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms := recv(t, watch); len(ms) != 0 {
		t.Fatalf("initial: %v", ms)
	}
	for _, n := range []string{"n2", "n1"} {
		if err := n1.Publish(ctx, election.Member{Node: n, Applied: 5, Healthy: true}); err != nil {
			t.Fatal(err)
		}
	}
	ms, _ := n2.Members(ctx)
	if len(ms) != 2 || ms[0].Node != "n1" || ms[1].Stored != f.Now() || ms[1].Revision == 0 {
		t.Fatalf("members: %+v", ms)
	}
	recvUntil(t, watch, func(ms []election.Member) bool { return len(ms) == 2 })
	f.Advance(ttl / 2)
	_ = n1.Publish(ctx, election.Member{Node: "n1"})
	f.Advance(ttl / 2)
	if ms, _ := n2.Members(ctx); len(ms) != 1 || ms[0].Node != "n1" {
		t.Fatalf("after n2 expired: %+v", ms)
	}
	if ms := recvUntil(t, watch, func(ms []election.Member) bool { return len(ms) < 2 }); len(ms) != 1 || ms[0].Node != "n1" {
		t.Fatalf("watch after expiry: %+v", ms)
	}
	f.SetMembersExpire(false)
	f.Advance(10 * ttl)
	if ms, _ := n2.Members(ctx); len(ms) != 1 {
		t.Fatalf("with expiry off: %+v", ms)
	}

	r1, err := n1.SetISR(ctx, election.ISR{Epoch: 1, Members: []string{"n1", "n2"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.SetISR(ctx, election.ISR{Epoch: 1}, 0); !errors.Is(err, election.ErrConflict) {
		t.Fatalf("stale create: %v", err)
	}
	r2, err := n2.SetISR(ctx, election.ISR{Epoch: 1, Members: []string{"n1"}}, r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("update: %d %v", r2, err)
	}
	f.Advance(10 * ttl)
	isr, rev, err := n1.ISR(ctx)
	if err != nil || rev != r2 || len(isr.Members) != 1 {
		t.Fatalf("isr: %+v %d %v", isr, rev, err)
	}
}

func TestClose(t *testing.T) {
	f := electiontest.New(ttl)
	n1 := f.Elector()
	l1, _ := n1.Campaign(ctx, me("n1"))
	watch, _ := n1.WatchLeader(ctx)
	recv(t, watch)
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(l1.Err(), election.ErrClosed) || l1.Valid() {
		t.Fatalf("lease after close: %v", l1.Err())
	}
	select {
	case _, ok := <-watch:
		if ok {
			t.Fatal("watch sent after close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch not closed")
	}
	if _, err := n1.Members(ctx); !errors.Is(err, election.ErrClosed) {
		t.Fatalf("members after close: %v", err)
	}
	// The key stays until it expires.
	if !f.Leader().Held() {
		t.Fatal("close deleted the key")
	}
	f.Advance(ttl)
	if f.Leader().Held() {
		t.Fatal("key of a closed elector did not expire")
	}
}

// A slow reader of a watch sees the latest state.
func TestWatchCoalesces(t *testing.T) {
	f := electiontest.New(ttl)
	n1, n2, n3 := f.Elector(), f.Elector(), f.Elector()
	watch, _ := n3.WatchLeader(ctx)
	l1, _ := n1.Campaign(ctx, me("n1"))
	_ = l1.Release(ctx)
	l2, _ := n2.Campaign(ctx, me("n2"))
	time.Sleep(20 * time.Millisecond)
	var last election.LeaderInfo
	for {
		select {
		case last = <-watch:
			continue
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	if last.Node != "n2" || last.Epoch != l2.Epoch() {
		t.Fatalf("latest: %+v", last)
	}
}
