package fanout

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/replicar/replicar/backlog"
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

// A new leader streams entries from the older epochs it holds: a follower
// that has seen the new leader's epoch applies them (only the log's epochs
// going down is refused).
func TestFollowerAppliesOlderEpochEntriesFromNewLeader(t *testing.T) {
	f := &Follower{maxEpoch: 9}
	app := &countingApplier{}
	f.app = app
	w := &frameWriter{conn: discardConn{}, timeout: time.Second}
	pos, err := f.apply(t.Context(), w, backlog.Position{Epoch: 3, Offset: 10}, Entries{Entries: []backlog.Entry{
		{Epoch: 3, Offset: 11}, {Epoch: 5, Offset: 12}, {Epoch: 9, Offset: 13},
	}})
	if err != nil || pos.Offset != 13 {
		t.Fatalf("apply = %v, %v", pos, err)
	}
	_, err = f.apply(t.Context(), w, backlog.Position{Epoch: 9, Offset: 13}, Entries{Entries: []backlog.Entry{{Epoch: 5, Offset: 14}}})
	if !errors.Is(err, ErrLeaderStale) {
		t.Fatalf("an entry whose epoch goes down: %v", err)
	}
}

type countingApplier struct{ pos backlog.Position }

func (a *countingApplier) Position(context.Context) (backlog.Position, error) { return a.pos, nil }
func (a *countingApplier) Apply(_ context.Context, es []backlog.Entry) (backlog.Position, error) {
	last := es[len(es)-1]
	a.pos = backlog.Position{Epoch: last.Epoch, Offset: last.Offset}
	return a.pos, nil
}

type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
