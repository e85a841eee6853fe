package proxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog/wal"
)

func openTestLog(t *testing.T, dir string) *ReplLog {
	t.Helper()
	rl, _, err := OpenReplLog(context.Background(), ReplLogOptions{
		Policy: ackpolicy.LeaderAck(), AckTimeout: time.Second, DataDir: dir, Fsync: wal.SyncNo,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rl
}

// Buffered appends are neither sent nor committed before Flush, which
// writes them to the WAL at once.
func TestReplLogBufferedAppends(t *testing.T) {
	dir := t.TempDir()
	rl := openTestLog(t, dir)
	if _, err := rl.Append([]byte("a")); err != nil {
		t.Fatal(err)
	}
	var announced []uint64
	rl.OnAppend(func(off uint64) { announced = append(announced, off) })
	for i, p := range []string{"b", "c", "d"} {
		off, err := rl.AppendBuffered([]byte(p))
		if err != nil || off != uint64(i+2) {
			t.Fatalf("AppendBuffered %q = %d, %v", p, off, err)
		}
	}
	if last := rl.Last(); last.Offset != 1 {
		t.Fatalf("Last before Flush = %v, want offset 1", last)
	}
	if got, err := rl.Read(1, 1<<20, nil); err != nil || len(got) != 1 {
		t.Fatalf("Read before Flush gave %d entries (%v), want only the flushed one", len(got), err)
	}
	if c := rl.Committed(); c != 1 {
		t.Fatalf("committed %d before Flush, want 1", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := rl.WaitCommitted(ctx, 4); err == nil {
		t.Fatal("an unflushed entry committed")
	}
	if err := rl.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := rl.Committed(); c != 4 {
		t.Fatalf("committed %d after Flush, want 4", c)
	}
	if len(announced) != 1 || announced[0] != 4 {
		t.Fatalf("replication told of %v, want one announcement of offset 4", announced)
	}
	got, err := rl.Read(2, 1<<20, nil)
	if err != nil || len(got) != 3 || string(got[2].Payload) != "d" {
		t.Fatalf("Read after Flush = %v, %v", got, err)
	}
	if err := rl.Close(); err != nil {
		t.Fatal(err)
	}
	// The WAL holds them all.
	again := openTestLog(t, dir)
	defer again.Close()
	got, err = again.Read(1, 1<<20, nil)
	if err != nil || len(got) != 4 || string(got[3].Payload) != "d" {
		t.Fatalf("after reopen: %d entries, %v", len(got), err)
	}
}

// Close and role changes write buffered appends out: the primary executed
// them, so the WAL must keep them.
func TestReplLogCloseFlushes(t *testing.T) {
	dir := t.TempDir()
	rl := openTestLog(t, dir)
	if _, err := rl.AppendBuffered([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rl.BecomeFollower()
	if err := rl.Close(); err != nil {
		t.Fatal(err)
	}
	again := openTestLog(t, dir)
	defer again.Close()
	if last := again.Last(); last.Offset != 1 {
		t.Fatalf("reopened at %v, want offset 1", last)
	}
}

// A Flush the WAL refuses takes the entries back, fails the replies that
// wait on them, and refuses writes until the next term, so that no offset
// is ever reused for another write.
func TestReplLogFailedFlush(t *testing.T) {
	rl := openTestLog(t, t.TempDir())
	if _, err := rl.Append([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	off, err := rl.AppendBuffered([]byte("lost"))
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- rl.WaitCommitted(context.Background(), off) }()
	time.Sleep(20 * time.Millisecond)
	// Closing the WAL underneath makes its next write fail.
	if err := rl.wal.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rl.Flush(); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("Flush = %v, want the WAL's error", err)
	}
	select {
	case err := <-waited:
		if !errors.Is(err, wal.ErrClosed) {
			t.Fatalf("waiter got %v, want the WAL's error", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the reply waiting on the lost entry was not released")
	}
	if last := rl.Last(); last.Offset != 1 {
		t.Fatalf("Last = %v after the failed flush, want 1", last)
	}
	if got, _ := rl.Entries(1, 1<<20); len(got) != 1 || string(got[0].Payload) != "kept" {
		t.Fatalf("log holds %v, want only the flushed entry", got)
	}
	if err := rl.Admit(); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("Admit after a failed flush = %v", err)
	}
	if _, err := rl.AppendBuffered([]byte("next")); err == nil {
		t.Fatal("an append after a failed flush was taken")
	}
}
