package ackpolicy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestCommitsReleasesInOffsetOrder(t *testing.T) {
	c := NewCommits(0)
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n+1)
	for off := 1; off <= n; off++ {
		wg.Go(func() { errs[off] = c.Wait(context.Background(), uint64(off)) })
	}
	waitUntil(t, func() bool { return c.Waiting() == n })
	if got := c.Advance(20); got != 20 {
		t.Fatalf("advance returned %d", got)
	}
	waitUntil(t, func() bool { return c.Waiting() == n-20 })
	if c.Advance(10) != 20 {
		t.Fatal("committed went backwards")
	}
	c.Advance(n)
	wg.Wait()
	for off := 1; off <= n; off++ {
		if errs[off] != nil {
			t.Fatalf("offset %d: %v", off, errs[off])
		}
	}
}

func TestCommitsWaitForTimesOut(t *testing.T) {
	c := NewCommits(5)
	if err := c.WaitFor(context.Background(), 5, time.Millisecond); err != nil {
		t.Fatalf("already committed: %v", err)
	}
	err := c.WaitFor(context.Background(), 6, 10*time.Millisecond)
	if !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("want ErrAckTimeout, got %v", err)
	}
	if c.Waiting() != 0 {
		t.Fatal("a timed-out waiter stayed parked")
	}
}

func TestCommitsCallerCancelIsNotATimeout(t *testing.T) {
	c := NewCommits(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.WaitFor(ctx, 1, time.Hour)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrAckTimeout) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestCommitsAbortAndReset(t *testing.T) {
	c := NewCommits(0)
	fenced := errors.New("fenced")
	done := make(chan error)
	go func() { done <- c.Wait(context.Background(), 3) }()
	waitUntil(t, func() bool { return c.Waiting() == 1 })
	c.Abort(fenced)
	if err := <-done; !errors.Is(err, fenced) {
		t.Fatalf("parked waiter: %v", err)
	}
	if err := c.Wait(context.Background(), 4); !errors.Is(err, fenced) {
		t.Fatalf("wait after abort: %v", err)
	}
	// A new term clears the abort: offsets it starts past are committed.
	c.Reset(10)
	if err := c.Wait(context.Background(), 3); err != nil {
		t.Fatalf("offset 3 <= 10 after reset: %v", err)
	}
	go func() { done <- c.Wait(context.Background(), 11) }()
	waitUntil(t, func() bool { return c.Waiting() == 1 })
	c.Reset(0)
	if err := <-done; !errors.Is(err, ErrTermEnded) {
		t.Fatalf("waiter across reset: %v", err)
	}
}

func TestCommitsConcurrentAdvanceAndCancel(t *testing.T) {
	c := NewCommits(0)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*time.Millisecond)
			defer cancel()
			err := c.Wait(ctx, uint64(i%100+1))
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("waiter %d: %v", i, err)
			}
		})
	}
	for off := uint64(1); off <= 100; off++ {
		c.Advance(off)
	}
	wg.Wait()
	if c.Waiting() != 0 {
		t.Fatalf("%d waiters left", c.Waiting())
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestParseAndConstructors(t *testing.T) {
	tests := []struct {
		name      string
		acks, min int
		want      Policy
	}{
		{"none", 3, 3, NoAck()},
		{"leader", 0, 0, LeaderAck()},
		{"one", 0, 0, FollowerAcks(1)},
		{"one", 2, 0, FollowerAcks(2)},
		{"quorum", 5, 5, QuorumAcks()},
		{"all", 1, 0, AllISRAcks(1)},
		{"all", 1, 3, AllISRAcks(3)},
	}
	for _, tt := range tests {
		got, err := Parse(tt.name, tt.acks, tt.min)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q,%d,%d) = %v,%v want %v", tt.name, tt.acks, tt.min, got, err, tt.want)
		}
	}
	if _, err := Parse("ALL", 1, 1); err == nil {
		t.Error("policy names are lower case")
	}
	if NoAck().Replicated() || LeaderAck().Replicated() || !QuorumAcks().Replicated() {
		t.Error("Replicated disagrees with the levels")
	}
}

func BenchmarkCommit(b *testing.B) {
	s := State{GroupSize: 5, Leader: 1000, Followers: []Follower{
		{"n2", 990, true}, {"n3", 995, true}, {"n4", 900, false}, {"n5", 999, true}}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for _, p := range []Policy{FollowerAcks(2), QuorumAcks(), AllISRAcks(2)} {
			if Commit(p, s) == 0 {
				b.Fatal("nothing committed")
			}
		}
	}
}
