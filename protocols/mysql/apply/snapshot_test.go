package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/replicar/replicar/backlog"
)

func TestSnapshotRates(t *testing.T) {
	for _, c := range []struct {
		rows, bytes, total int64
		elapsed            time.Duration
		rps                float64
		eta                time.Duration
	}{
		{0, 0, 100, 0, 0, -1},
		{0, 0, 100, time.Second, 0, -1},
		{50, 500, 100, 2 * time.Second, 25, 2 * time.Second},
		{150, 500, 100, time.Second, 150, 0}, // the estimate was low
	} {
		rps, _, eta := snapshotRates(c.rows, c.bytes, c.total, c.elapsed)
		if rps != c.rps || eta != c.eta {
			t.Errorf("%+v: got %v rows/s, eta %v", c, rps, eta)
		}
	}
}

// follower applies the log into its store in the background, unless
// paused.
type follower struct {
	a     *Applier
	log   *memLog
	pause sync.Mutex
	stop  chan struct{}
	done  chan struct{}
	err   error
}

func startFollower(t *testing.T, a *Applier, log *memLog) *follower {
	f := &follower{a: a, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			f.pause.Lock()
			pos, err := a.Position(context.Background())
			if err == nil {
				_, err = a.Apply(context.Background(), log.after(pos.Offset))
			}
			f.pause.Unlock()
			if err != nil {
				f.err = err
				return
			}
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *follower) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// catchUp waits until the follower's store is at the log's end.
func (f *follower) catchUp(t *testing.T) {
	t.Helper()
	want := f.log.last()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f.err != nil {
			t.Fatalf("follower: %v", f.err)
		}
		f.pause.Lock()
		pos, err := f.a.Position(context.Background())
		f.pause.Unlock()
		if err == nil && pos.Offset == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower at %v (%v), log at %d", pos, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSnapshotWhileWriting copies a follower's store into a third server
// while the primary keeps writing and the follower keeps applying once
// the snapshot is open; the copy continues from the position it stands
// at, and all three end equal.
func TestSnapshotWhileWriting(t *testing.T) {
	prim, fol, tgt := startMariaDB(t), startMariaDB(t), startMariaDB(t)
	pdb, tdb := prim.DB(), tgt.DB()
	log := &memLog{epoch: 2}
	c := startCapture(t, prim, log)
	ctx := context.Background()

	// Data to copy: several schemas, a table large enough for many
	// batches, a view, a routine, types that must survive the text round
	// trip.
	mustExec(t, pdb,
		"CREATE DATABASE big", "CREATE DATABASE misc",
		"CREATE TABLE big.rows (id INT PRIMARY KEY, pad VARCHAR(200), f FLOAT, d DOUBLE, dec_ DECIMAL(20,6), ts TIMESTAMP(6) NULL, b BLOB, bits BIT(9), lat VARCHAR(10) CHARACTER SET latin1, g INT AS (id % 7) VIRTUAL, h INT INVISIBLE DEFAULT 3)",
		"CREATE TABLE misc.kv (k VARCHAR(20) PRIMARY KEY, v JSON, e ENUM('a','b'), s SET('x','y'), z DATE)",
		"CREATE VIEW misc.kview AS SELECT k FROM misc.kv",
		"CREATE VIEW misc.vv AS SELECT k FROM misc.kview",
		"CREATE FUNCTION misc.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
		"INSERT INTO misc.kv VALUES ('a', '{\"x\": 1.5}', 'b', 'x,y', '0000-00-00'), ('b', NULL, NULL, '', '2024-02-29')",
	)
	for i := 0; i < 20; i++ {
		q := "INSERT INTO big.rows (id, pad, f, d, dec_, ts, b, bits, lat) VALUES "
		for j := 0; j < 500; j++ {
			id := i*500 + j
			if j > 0 {
				q += ","
			}
			q += fmt.Sprintf("(%d, REPEAT('p', %d), %d.1, 1/%d, %d.123456, FROM_UNIXTIME(%d.5), x'00%04x27', %d, 'café')", id, id%200, id, id+1, id, 1e9+id, id, id%512)
		}
		mustExec(t, pdb, q)
	}
	waitCaught(t, c, pdb)

	fa := NewApplier(fol.Addr, Options{User: fol.User, Password: fol.Password}, testLogger(t))
	defer fa.Close()
	f := startFollower(t, fa, log)
	f.catchUp(t)

	// Writes continue on the primary throughout.
	wctx, stopWriting := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			pdb.ExecContext(wctx, fmt.Sprintf("UPDATE big.rows SET pad = 'w%d', f = f + 1 WHERE id = %d", i, (i*37)%10000))
			pdb.ExecContext(wctx, fmt.Sprintf("INSERT INTO misc.kv (k, v) VALUES ('w%d', '[%d]')", i, i))
			if i == 30 {
				pdb.ExecContext(wctx, "ALTER TABLE misc.kv ADD COLUMN n INT DEFAULT 7")
			}
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)

	// The target holds stale data of its own, to be replaced.
	mustExec(t, tdb, "CREATE DATABASE stale", "CREATE TABLE stale.t (a INT)", "CREATE DATABASE misc", "CREATE TABLE misc.old (a INT)")

	f.pause.Lock() // the source is paused at some position X …
	paused := true
	defer func() {
		if paused {
			f.pause.Unlock()
		}
	}()
	var progress []SnapshotStats
	resyncSeen := false
	pos, stats, err := CopySnapshot(ctx, fol.Addr, tgt.Addr, SnapshotOptions{
		SourceUser: fol.User, SourcePassword: fol.Password, TargetUser: tgt.User, TargetPassword: tgt.Password,
		BatchRows: 700, ProgressEvery: time.Nanosecond,
		Snapshotted: func() { paused = false; f.pause.Unlock() }, // … until the snapshot is open
		Progress: func(s SnapshotStats) {
			progress = append(progress, s)
			if !resyncSeen && !s.Done {
				// A store in the middle of a copy is refused.
				a := NewApplier(tgt.Addr, Options{User: tgt.User, Password: tgt.Password}, testLogger(t))
				_, err := a.Position(ctx)
				a.Close()
				if !errors.Is(err, ErrResyncIncomplete) {
					t.Errorf("applier during the copy: %v", err)
				}
				resyncSeen = true
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !resyncSeen || len(progress) < 3 || !progress[len(progress)-1].Done {
		t.Fatalf("progress: %d reports, resync seen %v", len(progress), resyncSeen)
	}
	last := progress[len(progress)-1]
	if last.Tables != 2 || last.TotalTables != 2 || last.Rows < 10002 || last.Bytes == 0 || last.ETA != 0 || last.Position != pos {
		t.Fatalf("final progress %+v", last)
	}
	t.Logf("copied at %v: %d tables, %d rows, %d bytes in %v (%.0f rows/s); %d progress reports",
		pos, stats.Tables, stats.Rows, stats.Bytes, stats.Elapsed.Round(time.Millisecond), stats.RowsPerSec, len(progress))

	// The target continues from X+1.
	ta := NewApplier(tgt.Addr, Options{User: tgt.User, Password: tgt.Password}, testLogger(t))
	defer ta.Close()
	if p, err := ta.Position(ctx); err != nil || p != pos {
		t.Fatalf("target position %v, %v; want %v", p, err, pos)
	}
	time.Sleep(100 * time.Millisecond)
	stopWriting()
	wg.Wait()
	waitCaught(t, c, pdb)
	if pos.Offset >= log.last() {
		t.Fatalf("no write after the snapshot (at %d of %d)", pos.Offset, log.last())
	}
	applyAll(t, ta, log.after(pos.Offset), 50)
	f.catchUp(t)
	sameData(t, pdb, fol.DB())
	fp := sameData(t, pdb, tdb)
	t.Logf("%d tables equal on the three servers after %d more entries", len(fp), log.last()-pos.Offset)
	var n int
	if err := tdb.QueryRow("SELECT misc.twice(21)").Scan(&n); err != nil || n != 42 {
		t.Fatalf("routine on the copy: %d, %v", n, err)
	}

	// A server is not copied onto itself.
	if _, _, err := CopySnapshot(ctx, tgt.Addr, tgt.Addr, SnapshotOptions{SourceUser: tgt.User, SourcePassword: tgt.Password,
		TargetUser: tgt.User, TargetPassword: tgt.Password, Position: &backlog.Position{}}); !errors.Is(err, ErrSameServer) {
		t.Fatalf("self copy: %v", err)
	}
}
