package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replicar/replicar/backlog"
)

// bankWorkload creates a table and runs n mixed transactions on it, with
// a DDL every 100.
func bankWorkload(t *testing.T, db *sql.DB, n int, seed uint64) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE IF NOT EXISTS bank",
		"CREATE TABLE IF NOT EXISTS bank.acct (id INT PRIMARY KEY, owner VARCHAR(40), balance DECIMAL(14,2), note BLOB, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
	r := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	for i := 0; i < n; i++ {
		if i%100 == 99 {
			mustExec(t, db, fmt.Sprintf("ALTER TABLE bank.acct ADD COLUMN c%d INT DEFAULT %d", i, i))
			continue
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 1 + r.IntN(4) {
			id := r.IntN(200)
			var q string
			switch r.IntN(3) {
			case 0:
				q = fmt.Sprintf("INSERT INTO bank.acct (id, owner, balance, note) VALUES (%d, 'o%d', %d.%02d, REPEAT('x', %d)) ON DUPLICATE KEY UPDATE balance = balance + 1", id, id, r.IntN(1000), r.IntN(100), r.IntN(2000))
			case 1:
				q = fmt.Sprintf("UPDATE bank.acct SET balance = balance - 1, at = NOW(6) WHERE id = %d", id)
			default:
				q = fmt.Sprintf("DELETE FROM bank.acct WHERE id = %d", id)
			}
			if _, err := tx.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// capturedBank runs bankWorkload on a fresh source and returns the source
// and its entries.
func capturedBank(t *testing.T, n int) (*sql.DB, []backlog.Entry) {
	t.Helper()
	src := startMariaDB(t)
	sdb := src.DB()
	log := &memLog{epoch: 3}
	c := startCapture(t, src, log)
	bankWorkload(t, sdb, n, 42)
	waitCaught(t, c, sdb)
	return sdb, log.after(0)
}

// TestApplyDDLCrash crashes the follower's backend (SIGKILL) right after
// a DDL statement ran and before its position was recorded, and makes a
// DDL fail right after it was marked pending but before it ran: a new
// Applier finds out which happened from the binlog and applies each DDL
// exactly once.
func TestApplyDDLCrash(t *testing.T) {
	src, dst := startMariaDB(t), startMariaDB(t)
	sdb := src.DB()
	log := &memLog{epoch: 1}
	c := startCapture(t, src, log)
	mustExec(t, sdb,
		"CREATE DATABASE d",
		"CREATE TABLE d.t (id INT PRIMARY KEY, v INT)",
		"INSERT INTO d.t VALUES (1, 1), (2, 2)",
		"ALTER TABLE d.t ADD COLUMN w DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)", // offset 4
		"INSERT INTO d.t (id, v) VALUES (3, 3)",
		"CREATE TABLE d.u SELECT * FROM d.t", // offset 6: DDL and rows
		"INSERT INTO d.u (id, v) VALUES (4, 4)",
	)
	waitCaught(t, c, sdb)
	entries := log.after(0)
	if len(entries) != 7 {
		t.Fatalf("%d entries", len(entries))
	}
	ctx := context.Background()
	opts := Options{User: dst.User, Password: dst.Password}

	a := NewApplier(dst.Addr, opts, testLogger(t))
	crashed := errors.New("crashed")
	a.afterDDL = func(off uint64) error {
		if off != 4 {
			return nil
		}
		if err := dst.Kill(); err != nil {
			t.Error(err)
		}
		return crashed
	}
	pos, err := a.Apply(ctx, entries[:4])
	if !errors.Is(err, crashed) || pos.Offset != 3 {
		t.Fatalf("crash after the ALTER: %v at %v", err, pos)
	}
	a.Close()
	if err := dst.Start(); err != nil {
		t.Fatal(err)
	}

	b := NewApplier(dst.Addr, opts, testLogger(t))
	defer b.Close()
	if p, err := b.Position(ctx); err != nil || p.Offset != 3 {
		t.Fatalf("after the crash: %v, %v", p, err)
	}
	// The ALTER is not run again (it would fail: duplicate column).
	b.beforeDDL = func(uint64) error { return crashed } // at offset 6, before CREATE … SELECT runs
	if _, err := b.Apply(ctx, entries[3:]); !errors.Is(err, crashed) {
		t.Fatalf("crash before CREATE … SELECT: %v", err)
	}
	if st := b.Stats(); st.DDLRecovered != 1 {
		t.Fatalf("stats %+v: the ALTER should have been recovered", st)
	}
	b.beforeDDL = nil
	if p, err := b.Position(ctx); err != nil || p.Offset != 5 {
		t.Fatalf("before CREATE … SELECT: %v, %v", p, err)
	}
	// An entry of another epoch at the pending offset is refused as
	// divergence once the DDL is known to have run: here it has not.
	pos, err = b.Apply(ctx, entries)
	if err != nil || pos.Offset != 7 {
		t.Fatalf("resume: %v, %v", pos, err)
	}
	sameData(t, sdb, dst.DB())

	// A DDL that ran, then the entry at its offset arrives from another
	// epoch: divergence.
	c2 := NewApplier(dst.Addr, opts, testLogger(t))
	defer c2.Close()
	mustExec(t, sdb, "CREATE TABLE d.v (a INT PRIMARY KEY)")
	waitCaught(t, c, sdb)
	next := log.after(7)
	c2.afterDDL = func(uint64) error { return crashed }
	if _, err := c2.Apply(ctx, next); !errors.Is(err, crashed) {
		t.Fatal(err)
	}
	c2.afterDDL = nil
	other := next[0]
	other.Epoch = 9
	if _, err := c2.Apply(ctx, []backlog.Entry{other}); !errors.Is(err, ErrDiverged) {
		t.Fatalf("other epoch at a DDL that ran: %v", err)
	}
}

// TestApplyKilledMidBatch kills the applier's backend session, then the
// follower's whole backend (SIGKILL), while batches are being applied;
// applying resumes from the position table each time, and the follower
// ends with exactly the source's data.
func TestApplyKilledMidBatch(t *testing.T) {
	sdb, entries := capturedBank(t, 600)
	dst := startMariaDB(t)
	ddb := dst.DB()
	ctx := context.Background()
	opts := Options{User: dst.User, Password: dst.Password, MaxTxEntries: 40}

	var failures atomic.Int64
	// apply applies entries from the store's own position until done or
	// stop, counting failed calls; it reconnects as a restarted node would.
	apply := func(a *Applier, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			pos, err := a.Position(ctx)
			if err != nil {
				failures.Add(1)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if pos.Offset == uint64(len(entries)) {
				return
			}
			end := min(int(pos.Offset)+80, len(entries))
			if _, err := a.Apply(ctx, entries[pos.Offset:end]); err != nil {
				if errors.Is(err, ErrRowMismatch) || errors.Is(err, ErrGap) || errors.Is(err, ErrDiverged) {
					t.Errorf("apply: %v", err)
					return
				}
				failures.Add(1)
			}
		}
	}

	// Phase 1: kill the applier's session from another one, repeatedly.
	a := NewApplier(dst.Addr, opts, testLogger(t))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 25; i++ {
			time.Sleep(25 * time.Millisecond)
			rows, err := ddb.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO IS NOT NULL AND INFO NOT LIKE '%PROCESSLIST%'")
			if err != nil {
				continue
			}
			var ids []int64
			for rows.Next() {
				var id int64
				rows.Scan(&id)
				ids = append(ids, id)
			}
			rows.Close()
			for _, id := range ids {
				ddb.Exec(fmt.Sprintf("KILL %d", id))
			}
		}
		close(stop)
	}()
	apply(a, stop)
	wg.Wait()
	a.Close()
	p1, _ := NewApplier(dst.Addr, opts, testLogger(t)).Position(ctx)
	t.Logf("after session kills: offset %d of %d, %d failed calls", p1.Offset, len(entries), failures.Load())

	// Phase 2: SIGKILL the follower's backend mid-apply, restart it.
	b := NewApplier(dst.Addr, opts, testLogger(t))
	stop2 := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(150 * time.Millisecond)
		if err := dst.Kill(); err != nil {
			t.Error(err)
		}
		time.Sleep(100 * time.Millisecond)
		if err := dst.Start(); err != nil {
			t.Error(err)
		}
		close(stop2)
	}()
	apply(b, nil)
	wg.Wait()
	<-stop2
	b.Close()
	if failures.Load() == 0 {
		t.Fatal("nothing was interrupted")
	}
	fa := NewApplier(dst.Addr, opts, testLogger(t))
	defer fa.Close()
	if p, err := fa.Position(ctx); err != nil || p != (backlog.Position{Epoch: 3, Offset: uint64(len(entries))}) {
		t.Fatalf("final position %v, %v", p, err)
	}
	sameData(t, sdb, dst.DB())
	t.Logf("%d entries applied through %d failed calls", len(entries), failures.Load())
}
