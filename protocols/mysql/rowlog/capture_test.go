package rowlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/test/harness"
)

// memLog is an in-memory backlog.
type memLog struct {
	mu       sync.Mutex
	payloads [][]byte
	// fail, when set, makes Append fail.
	fail error
}

func (m *memLog) Append(_ context.Context, b []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	m.payloads = append(m.payloads, b)
	return uint64(len(m.payloads)), nil
}

func (m *memLog) txns(t *testing.T) []*Txn {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Txn, len(m.payloads))
	for i, p := range m.payloads {
		tx, err := Decode(p)
		if err != nil {
			t.Fatalf("offset %d: %v", i+1, err)
		}
		out[i] = tx
	}
	return out
}

func startMariaDB(t *testing.T, opts ...harness.MariaDBOption) *harness.MariaDB {
	t.Helper()
	return harness.StartMariaDB(t, append([]harness.MariaDBOption{harness.MariaDBArgs("--binlog-row-metadata=FULL")}, opts...)...)
}

func binlogPos(t *testing.T, db *sql.DB) string {
	t.Helper()
	var pos string
	if err := db.QueryRow("SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	return pos
}

// runCapture runs a capture until the test ends (or stop is called) and
// returns its Run error through the channel.
func runCapture(t *testing.T, cfg Config, m *harness.MariaDB, log Appender) (*Capture, func() error) {
	t.Helper()
	cfg.Addr, cfg.User, cfg.Password = m.Addr, m.User, m.Password
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 50 * time.Millisecond
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	c, err := New(cfg, log, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	return c, stop
}

func waitPosition(t *testing.T, c *Capture, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.Position() != want {
		if time.Now().After(deadline) {
			t.Fatalf("capture at %q, want %q (stats %+v)", c.Position(), want, c.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func seqOf(t *testing.T, gtid string) uint64 {
	t.Helper()
	parts := strings.Split(gtid, "-")
	if len(parts) != 3 {
		t.Fatalf("gtid %q", gtid)
	}
	n, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// consecutive checks that the entries carry GTIDs first, first+1, … of
// one domain, each with its own Position: binlog order, none twice, none
// missing.
func consecutive(t *testing.T, txns []*Txn, first uint64) {
	t.Helper()
	for i, tx := range txns {
		if got := seqOf(t, tx.GTID); got != first+uint64(i) {
			t.Fatalf("entry %d has gtid %s, want sequence %d", i+1, tx.GTID, first+uint64(i))
		}
		if tx.Position != tx.GTID {
			t.Fatalf("entry %d: position %q, gtid %q", i+1, tx.Position, tx.GTID)
		}
	}
}

func TestCaptureConcurrentWritersAndOffsetOf(t *testing.T) {
	m := startMariaDB(t)
	db := m.DB()
	if _, err := db.Exec("CREATE TABLE test.t (w INT, i INT, v VARCHAR(20), PRIMARY KEY (w, i))"); err != nil {
		// The template has no test database.
		for _, q := range []string{"CREATE DATABASE test", "CREATE TABLE test.t (w INT, i INT, v VARCHAR(20), PRIMARY KEY (w, i))"} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := binlogPos(t, db)
	log := &memLog{}
	c, _ := runCapture(t, Config{Start: start}, m, log)

	const writers, perWriter = 6, 25
	ctx := context.Background()
	runWriters(t, db, c, writers, perWriter, func(w, i int) []string {
		return []string{"BEGIN",
			fmt.Sprintf("INSERT INTO test.t VALUES (%d, %d, 'new')", w, i),
			fmt.Sprintf("UPDATE test.t SET v = 'updated' WHERE w = %d AND i = %d", w, i),
			"COMMIT"}
	}, func(gtid string, off uint64) error {
		log.mu.Lock()
		p := log.payloads[off-1]
		log.mu.Unlock()
		h, err := DecodeHeader(p)
		if err != nil || h.GTID != gtid {
			return fmt.Errorf("OffsetOf(%s) = %d, which holds %s (%v)", gtid, off, h.GTID, err)
		}
		return nil
	})
	waitPosition(t, c, binlogPos(t, db))
	txns := log.txns(t)
	if len(txns) != writers*perWriter {
		t.Fatalf("%d entries, want %d", len(txns), writers*perWriter)
	}
	consecutive(t, txns, seqOf(t, txns[0].GTID))
	for _, tx := range txns {
		if tx.Kind != KindTx || len(tx.Changes) != 2 || tx.Changes[0].Rows.Op != Insert || tx.Changes[1].Rows.Op != Update {
			t.Fatalf("entry %s: want one insert and one update, got %+v", tx.GTID, tx.Changes)
		}
	}
	// A GTID long passed: answered with an offset at least its entry's.
	if off, err := c.OffsetOf(ctx, "0-1-0"); err != nil || off != uint64(len(txns)) {
		t.Fatalf("gtid before start: %d, %v", off, err)
	}
}

// TestCaptureResumeAndBackendRestart stops a capture, starts another from
// the last entry's position while writes go on, then SIGKILLs the primary
// under the second: the entries are the binlog's transactions exactly
// once each, in order.
func TestCaptureResumeAndBackendRestart(t *testing.T) {
	m := startMariaDB(t)
	db := m.DB()
	for _, q := range []string{"CREATE DATABASE test", "CREATE TABLE test.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	start := binlogPos(t, db)
	first := seqOf(t, start) + 1
	log := &memLog{}

	// A writer that keeps inserting, through the restart (its failures
	// while the server is down are expected: only the binlog counts).
	ctx, stopWriter := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, _ = db.ExecContext(cctx, "INSERT INTO test.t (v) VALUES (?)", i)
			cancel()
			time.Sleep(2 * time.Millisecond)
		}
	}()

	c1, stop1 := runCapture(t, Config{Start: start}, m, log)
	time.Sleep(300 * time.Millisecond)
	if err := stop1(); !errors.Is(err, context.Canceled) {
		t.Fatalf("first capture: %v", err)
	}
	n1 := len(log.txns(t))
	if n1 == 0 {
		t.Fatal("first capture got nothing")
	}
	// The node would read this from its last entry.
	log.mu.Lock()
	h, err := DecodeHeader(log.payloads[n1-1])
	log.mu.Unlock()
	if err != nil || h.Position != c1.Position() {
		t.Fatalf("last entry's position %q (%v), capture's %q", h.Position, err, c1.Position())
	}
	c2, _ := runCapture(t, Config{Start: h.Position, LastOffset: uint64(n1)}, m, log)
	time.Sleep(300 * time.Millisecond)
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	stopWriter()
	wg.Wait()
	waitPosition(t, c2, binlogPos(t, db))
	txns := log.txns(t)
	consecutive(t, txns, first)
	if st := c2.Stats(); st.Reconnects == 0 {
		t.Fatalf("capture never reconnected: %+v", st)
	}
	var rows int
	if err := db.QueryRow("SELECT COUNT(*) FROM test.t").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(txns) {
		t.Fatalf("%d rows in the table, %d entries", rows, len(txns))
	}
	t.Logf("%d entries (%d before the resume), %+v", len(txns), n1, c2.Stats())
}

func TestCaptureRefusals(t *testing.T) {
	m := startMariaDB(t)
	db := m.DB()
	ctx := context.Background()
	// A start position the binlog never had.
	_, stop := runCapture(t, Config{Start: "0-1001-999"}, m, &memLog{})
	time.Sleep(200 * time.Millisecond)
	if _, err := db.Exec("CREATE DATABASE x"); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	var runErr error
	func() {
		done := make(chan error, 1)
		go func() { done <- stop() }()
		select {
		case runErr = <-done:
		case <-deadline:
		}
	}()
	if !errors.Is(runErr, ErrPositionLost) {
		t.Fatalf("start position ahead of the binlog: %v", runErr)
	}

	// A position purged from the binlog.
	for _, q := range []string{"CREATE DATABASE y", "FLUSH BINARY LOGS"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var last string
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&last, new(any), new(any), new(any)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PURGE BINARY LOGS TO '" + last + "'"); err != nil {
		t.Fatal(err)
	}
	c, stop2 := runCapture(t, Config{Start: "0-1001-1"}, m, &memLog{})
	done := make(chan error, 1)
	go func() {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := c.OffsetOf(octx, "0-1001-50")
		done <- err
	}()
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Fatalf("OffsetOf after a lost position: %v", err)
	}
	if err := stop2(); !errors.Is(err, ErrPositionLost) {
		t.Fatalf("purged position: %v", err)
	}

	// An Append that fails stops the capture.
	log := &memLog{fail: errors.New("disk full")}
	_, stop3 := runCapture(t, Config{Start: binlogPos(t, db)}, m, log)
	if _, err := db.Exec("CREATE DATABASE z"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := stop3(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("failing append: %v", err)
	}
}

func TestCheckNamesSettings(t *testing.T) {
	m := harness.StartMariaDB(t, harness.MariaDBLogBin(false), harness.MariaDBBinlogFormat("STATEMENT"))
	_, err := Check(context.Background(), m.DB())
	if !errors.Is(err, ErrMisconfigured) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"log_bin is OFF, set log_bin=ON", "binlog_format", "binlog_row_metadata is NO_LOG, set binlog_row_metadata=FULL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Run refuses such a backend rather than retrying.
	_, stop := runCapture(t, Config{}, m, &memLog{})
	time.Sleep(300 * time.Millisecond)
	if err := stop(); !errors.Is(err, ErrMisconfigured) {
		t.Fatalf("run on a misconfigured backend: %v", err)
	}
}

// bufferedLog is a memLog that holds appends until Flush, as the node's
// backlog does for the capture.
type bufferedLog struct {
	memLog
	flushed, flushes atomic.Uint64
}

func (b *bufferedLog) AppendBuffered(ctx context.Context, p []byte) (uint64, error) {
	return b.memLog.Append(ctx, p)
}

func (b *bufferedLog) Flush() error {
	b.mu.Lock()
	n := uint64(len(b.payloads))
	b.mu.Unlock()
	b.flushed.Store(n)
	b.flushes.Add(1)
	return nil
}

// With a BufferedAppender the capture flushes whenever no event waits, so
// every transaction's entry is flushed soon after it is captured (a COMMIT
// held on it is released), and a burst shares a flush.
func TestCaptureFlushesBufferedAppends(t *testing.T) {
	m := startMariaDB(t)
	db := m.DB()
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS test", "CREATE TABLE test.b (w INT, i INT, PRIMARY KEY (w, i))"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	log := &bufferedLog{}
	c, _ := runCapture(t, Config{Start: binlogPos(t, db)}, m, log)
	const writers, perWriter = 8, 20
	runWriters(t, db, c, writers, perWriter, func(w, i int) []string {
		return []string{fmt.Sprintf("INSERT INTO test.b VALUES (%d, %d)", w, i)}
	}, func(gtid string, off uint64) error {
		deadline := time.Now().Add(5 * time.Second)
		for log.flushed.Load() < off {
			if time.Now().After(deadline) {
				return fmt.Errorf("entry %d (%s) captured but not flushed after 5s (flushed up to %d)", off, gtid, log.flushed.Load())
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	waitPosition(t, c, binlogPos(t, db))
	entries := uint64(len(log.txns(t)))
	if entries != writers*perWriter || log.flushed.Load() != entries {
		t.Fatalf("%d entries, %d flushed; want %d of each", entries, log.flushed.Load(), writers*perWriter)
	}
	if f := log.flushes.Load(); f == 0 || f > entries {
		t.Fatalf("%d flushes for %d entries", f, entries)
	}
	t.Logf("%d entries in %d flushes", entries, log.flushes.Load())
}

// runWriters runs writers connections at once, each committing perWriter
// transactions made of stmts(w, i), and after each asks c for the offset
// of its GTID and hands both to check. It fails t on the first error.
func runWriters(t *testing.T, db *sql.DB, c *Capture, writers, perWriter int, stmts func(w, i int) []string, check func(gtid string, off uint64) error) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			conn, err := db.Conn(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for i := range perWriter {
				for _, q := range stmts(w, i) {
					if _, err := conn.ExecContext(ctx, q); err != nil {
						errs <- err
						return
					}
				}
				var gtid string
				if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&gtid); err != nil {
					errs <- err
					return
				}
				octx, cancel := context.WithTimeout(ctx, 10*time.Second)
				off, err := c.OffsetOf(octx, gtid)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("offset of %s: %w", gtid, err)
					return
				}
				if err := check(gtid, off); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
