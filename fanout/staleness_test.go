package fanout

import (
	"testing"
	"time"
)

// The staleness bound moves to a heartbeat's arrival only once the store
// has applied everything the leader had when it sent it.
func TestStalenessBound(t *testing.T) {
	f := &Follower{}
	t0 := time.Unix(1000, 0)
	f.status.Applied.Offset = 10
	f.noteHeartbeat(t0, 10) // caught up: bound at t0
	if !f.caughtUpAt.Equal(t0) || len(f.pendingHB) != 0 {
		t.Fatalf("caught-up heartbeat: at %v, pending %d", f.caughtUpAt, len(f.pendingHB))
	}
	f.noteHeartbeat(t0.Add(time.Second), 15) // behind: pending
	f.noteHeartbeat(t0.Add(2*time.Second), 20)
	if !f.caughtUpAt.Equal(t0) || len(f.pendingHB) != 2 {
		t.Fatalf("behind: at %v, pending %d", f.caughtUpAt, len(f.pendingHB))
	}
	f.status.Applied.Offset = 17
	f.noteApplied(17) // past the first, not the second
	if !f.caughtUpAt.Equal(t0.Add(time.Second)) || len(f.pendingHB) != 1 {
		t.Fatalf("partly caught up: at %v, pending %d", f.caughtUpAt, len(f.pendingHB))
	}
	f.status.Applied.Offset = 25
	f.noteApplied(25)
	if !f.caughtUpAt.Equal(t0.Add(2*time.Second)) || len(f.pendingHB) != 0 {
		t.Fatalf("caught up: at %v, pending %d", f.caughtUpAt, len(f.pendingHB))
	}
	if st := f.Status(); st.Staleness != -1 {
		t.Fatalf("a disconnected follower claims staleness %v", st.Staleness)
	}
	f.status.Connected = true
	if st := f.Status(); st.Staleness < time.Since(t0.Add(2*time.Second))-time.Second {
		t.Fatalf("staleness %v", st.Staleness)
	}
}
