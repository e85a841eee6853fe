package proxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
)

// The write gate a MySQL leader closes while a snapshot opens: writes wait
// while it is paused, pauses nest, a resume counts once, and a write that
// waits too long is refused as not executed (ErrNotLeader: TRYAGAIN).
func TestWriteGate(t *testing.T) {
	g := newWriteGate()
	if err := g.wait(time.Millisecond); err != nil {
		t.Fatalf("open gate: %v", err)
	}
	r1 := g.pause()
	r2 := g.pause()
	if err := g.wait(10 * time.Millisecond); !errors.Is(err, errWritesPaused) || !errors.Is(err, ackpolicy.ErrNotLeader) {
		t.Fatalf("paused gate: %v", err)
	}
	r1()
	r1() // a second call of the same resume does nothing
	if err := g.wait(10 * time.Millisecond); err == nil {
		t.Fatal("gate open while a second pause holds it")
	}
	done := make(chan error, 1)
	go func() { done <- g.wait(5 * time.Second) }()
	time.Sleep(10 * time.Millisecond)
	r2()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiting write after the last resume: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a waiting write was not let through by the last resume")
	}
}

// Has and Next, which MySQL crash recovery and statement mode rely on.
func TestReplLogHasAndNext(t *testing.T) {
	rl, _, err := OpenReplLog(context.Background(), ReplLogOptions{Policy: ackpolicy.LeaderAck(), AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	if e, o := rl.Next(); o != 1 || e != 1 {
		t.Fatalf("Next of an empty log = %d, %d; want epoch 1, offset 1", e, o)
	}
	if err := rl.AppendReplicated([]backlog.Entry{{Epoch: 3, Offset: 1, Payload: []byte("a")}, {Epoch: 4, Offset: 2, Payload: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if e, o := rl.Next(); e != 4 || o != 3 {
		t.Fatalf("Next = %d, %d; want 4, 3", e, o)
	}
	for _, c := range []struct {
		epoch, offset uint64
		want          bool
	}{{3, 1, true}, {4, 2, true}, {3, 2, false}, {4, 3, false}} {
		if got := rl.Has(c.epoch, c.offset); got != c.want {
			t.Errorf("Has(%d, %d) = %v, want %v", c.epoch, c.offset, got, c.want)
		}
	}
	// After a reset (a full resync) what lies before the log counts as
	// held: the store agreed with it when it was copied.
	if err := rl.ResetTo(backlog.Position{Epoch: 4, Offset: 10}); err != nil {
		t.Fatal(err)
	}
	if !rl.Has(2, 5) || rl.Has(4, 11) {
		t.Fatalf("after a reset to 10: Has(2,5)=%v Has(4,11)=%v", rl.Has(2, 5), rl.Has(4, 11))
	}
}
