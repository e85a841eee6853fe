package mysql

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// Commit order (statement mode).
//
// Entries must be appended in an order in which replaying them gives the
// primary's data. A transaction T2 whose statements read or overwrote rows
// that T1 wrote could only do so after T1 committed (InnoDB holds T1's row
// locks, and at REPEATABLE READ the gap locks, until then; DML reads rows
// with locking reads), so T1's COMMIT was sent before T2's. Transactions
// whose COMMITs are in flight at the same time hold all their locks at
// once: they touched no common rows, and either order replays the same.
// (MySQL's LOGICAL_CLOCK parallel replication rests on the same fact.)
//
// So each commit takes a ticket right before its COMMIT is sent: the
// offset its entry will have. The COMMITs themselves run concurrently
// (InnoDB's group commit still batches their log flushes), and entries
// are appended in ticket order: a commit whose COMMIT returned waits for
// the commits with earlier tickets to append first. A COMMIT that failed
// appends an empty entry, so that tickets and offsets stay one to one.
//
// Statements that must not overlap any commit (DDL, which commits on its
// own, and writes to non-transactional tables, whose effect is immediate)
// take the order exclusively: they wait for the commits in flight to
// append, run alone, and append.
//
// The simpler design, a lock held from sending COMMIT to appending, makes
// each COMMIT's log flush wait for the one before. Measured with 8
// clients on one small machine (TestStatementModeCommitCost), it ran
// concurrent autocommit INSERTs at 0.11-0.21x the direct rate and
// INSERT+UPDATE transactions at 0.35x; with tickets they run at
// 0.21-0.30x and 0.47-0.66x (0.74-1.0x of the same front end relaying
// without logging). An autocommit write pays a second round trip (its
// commit must take its ticket after the statement ran), a transaction
// only the commit mark.

// sequencer hands out tickets and appends in their order.
type sequencer struct {
	order sync.RWMutex // shared by commits, exclusive for DDL

	mu     sync.Mutex
	cond   *sync.Cond
	active int    // tickets taken and not finished
	epoch  uint64 // of the tickets being handed out
	next   uint64 // the offset the next ticket gets
	done   uint64 // the last offset finished
	// failed makes the tickets after a failed append fail too, until
	// none is left: their offsets no longer match the log's.
	failed error

	stats *StatementStats
	empty []byte // the payload of an empty transaction
}

func newSequencer(stats *StatementStats) *sequencer {
	q := &sequencer{stats: stats}
	q.cond = sync.NewCond(&q.mu)
	q.empty, _ = rowlog.Encode(&rowlog.Txn{Kind: rowlog.KindTx})
	return q
}

// shared enters the order as a commit; the returned function leaves it.
func (q *sequencer) shared() func() {
	start := time.Now()
	q.order.RLock()
	q.stats.OrderWait.Add(int64(time.Since(start)))
	return q.order.RUnlock
}

// exclusive enters the order alone: every commit in flight has appended,
// and none starts until the returned function is called.
func (q *sequencer) exclusive() func() {
	start := time.Now()
	q.order.Lock()
	got := time.Now()
	q.stats.OrderWait.Add(int64(got.Sub(start)))
	q.stats.Exclusive.Add(1)
	return func() {
		q.stats.ExclusiveHeld.Add(int64(time.Since(got)))
		q.order.Unlock()
	}
}

// take gives the caller (inside shared or exclusive) the next ticket:
// the epoch and offset its entry will have. Every ticket must be
// finished.
func (q *sequencer) take(app Appender) (epoch, offset uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.active == 0 {
		q.epoch, q.next = app.Next()
		q.done = q.next - 1
		q.failed = nil
	}
	offset = q.next
	q.next++
	q.active++
	return q.epoch, offset
}

// drop returns the ticket just taken by an exclusive statement that
// appends nothing (it failed, or runs again).
func (q *sequencer) drop(offset uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next == offset+1 {
		q.next--
	}
	q.active--
	q.cond.Broadcast()
}

// finish appends the entry of ticket offset once every earlier ticket has
// appended; a nil payload appends an empty transaction (its COMMIT
// failed). It returns the offset the log gave.
func (q *sequencer) finish(app Appender, offset uint64, payload []byte) (uint64, error) {
	start := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.done+1 != offset {
		q.cond.Wait()
	}
	q.stats.OrderWait.Add(int64(time.Since(start)))
	defer func() {
		q.done = offset
		q.active--
		q.cond.Broadcast()
	}()
	if q.failed != nil {
		return 0, fmt.Errorf("an earlier entry could not be logged: %w", q.failed)
	}
	if payload == nil {
		payload = q.empty
	}
	got, err := app.Append(context.Background(), payload)
	if err == nil && got != offset {
		err = fmt.Errorf("the log appended at offset %d, not at %d as it announced", got, offset)
	}
	if err != nil {
		q.failed = err
		return got, err
	}
	return got, nil
}
