package resp

import (
	"testing"
	"time"
)

// A write that wakes a client between its parking and its first probe
// must not make the first probe hang: the client gets the first probe's
// result, then one more probe for the wake.
func TestWakeBeforeFirstProbe(t *testing.T) {
	l := newLane(nil, "test", true)
	builds := 0
	w := newBlockWaiter(l, func() (*job, error) {
		builds++
		return newJob(), nil
	})
	reg := &blockRegistry{waiters: map[blockKey][]*blockWaiter{}}
	reg.park(w, 0, [][]byte{[]byte("k")})
	reg.wake(0, []byte("k"))

	sent := make(chan struct{})
	go func() {
		w.firstProbe()
		close(sent)
	}()
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("first probe hung after an early wake")
	}
	if got := len(l.jobs); got != 1 {
		t.Fatalf("%d probes queued on the lane, want 1", got)
	}
	<-w.probed
	// The early wake asks for a probe after the first one.
	reg.rearm(w)
	if got := len(l.takeUrgent(nil)); got != 1 {
		t.Fatalf("%d re-probes after the early wake, want 1", got)
	}
	<-w.probed
	reg.rearm(w)
	if builds != 2 {
		t.Fatalf("%d probes built, want 2", builds)
	}
	// Now armed: the next wake probes at once.
	reg.wake(0, []byte("k"))
	if got := len(l.takeUrgent(nil)); got != 1 {
		t.Fatalf("%d probes after a wake of an armed waiter, want 1", got)
	}
	reg.unpark(w, 0, [][]byte{[]byte("k")})
	if reg.count.Load() != 0 {
		t.Fatal("parked count not back to 0")
	}
}
