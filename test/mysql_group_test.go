package test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replicar/replicar/test/harness"
)

// These tests run a REPLICAR_PROTOCOL=mysql group as deployed: three
// mariadbd configured for row capture, three replicar binaries elected
// through NATS, clients on the proxies' ports.

// mysqlSchema creates the workload's tables through db.
func mysqlSchema(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, q := range []string{
		"CREATE DATABASE app",
		"CREATE TABLE app.accounts (id INT AUTO_INCREMENT PRIMARY KEY, owner VARCHAR(64) NOT NULL, balance BIGINT NOT NULL, " +
			"created DATETIME(6) NOT NULL, note TEXT, UNIQUE KEY (owner))",
		"CREATE TABLE app.events (id BIGINT AUTO_INCREMENT PRIMARY KEY, worker INT NOT NULL, k VARCHAR(32) NOT NULL, " +
			"v DOUBLE, at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), KEY (worker))",
		"CREATE TABLE app.counters (k VARCHAR(32) PRIMARY KEY, n BIGINT NOT NULL)",
		"INSERT INTO app.counters VALUES ('total', 0)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// mysqlWorker runs one client's mix until stop: transactions with
// prepared statements, NOW() and AUTO_INCREMENT, multi-statements, and
// (worker 0 only) DDL. It returns the first error.
func mysqlWorker(ctx context.Context, db *sql.DB, run int64, w int, statement bool, stop *atomic.Bool, done *atomic.Int64) error {
	// UUID() cannot be replayed from a statement; row capture logs its
	// result.
	key := "LEFT(UUID(), 8)"
	if statement {
		key = fmt.Sprintf("'k%d'", w)
	}
	upd, err := db.PrepareContext(ctx, "UPDATE app.accounts SET balance = balance + ?, note = CONCAT(COALESCE(note, ''), ?) WHERE owner = ?")
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer upd.Close()
	for i := 0; !stop.Load(); i++ {
		owner := fmt.Sprintf("r%d-w%d-%d", run, w, i)
		// A transaction: a prepared INSERT with NOW(6) and an
		// AUTO_INCREMENT id, an UPDATE by a prepared statement, and a
		// counter moved in the same transaction.
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO app.accounts (owner, balance, created) VALUES (?, ?, NOW(6))", owner, 100+i)
		if err == nil {
			_, err = res.LastInsertId()
		}
		if err == nil {
			_, err = tx.StmtContext(ctx, upd).ExecContext(ctx, -1, "x", owner)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, "UPDATE app.counters SET n = n + 1 WHERE k = 'total'")
		}
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("transaction %d: %w", i, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit %d: %w", i, err)
		}
		// Multi-statements, autocommit, with RAND() (and UUID() in row
		// mode): row capture logs their results, statement mode replays
		// RAND() from the seeds it logs.
		if _, err := db.ExecContext(ctx, fmt.Sprintf(
			"INSERT INTO app.events (worker, k, v) VALUES (%d, %s, RAND()); "+
				"UPDATE app.events SET v = v * 2 WHERE worker = %d ORDER BY id DESC LIMIT 1; "+
				"DELETE FROM app.events WHERE worker = %d AND id + 20 < LAST_INSERT_ID()", w, key, w, w)); err != nil {
			return fmt.Errorf("multi-statement %d: %w", i, err)
		}
		// A rolled-back transaction leaves nothing.
		tx, err = db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO app.accounts (owner, balance, created) VALUES (?, 0, NOW())", owner+"-rb"); err != nil {
			tx.Rollback()
			return fmt.Errorf("insert to roll back: %w", err)
		}
		if err := tx.Rollback(); err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
		if w == 0 {
			var q string
			switch i {
			case 3:
				q = fmt.Sprintf("ALTER TABLE app.events ADD COLUMN extra%d INT NOT NULL DEFAULT 7", run)
			case 6:
				q = fmt.Sprintf("CREATE TABLE app.ddl_made%d (id INT PRIMARY KEY, label VARCHAR(20)) SELECT 1 AS id, 'copied' AS label", run)
			case 9:
				q = fmt.Sprintf("CREATE INDEX by_created%d ON app.accounts (created)", run)
			case 12:
				q = fmt.Sprintf("RENAME TABLE app.ddl_made%d TO app.ddl_renamed%d", run, run)
			}
			if q != "" {
				if _, err := db.ExecContext(ctx, q); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
		}
		done.Add(1)
	}
	return nil
}

// mysqlRuns numbers workload runs, so that each run's rows and DDL have
// names of their own.
var mysqlRuns atomic.Int64

// mysqlLoad is mysqlWorker clients running in the background.
type mysqlLoad struct {
	stop atomic.Bool
	done atomic.Int64
	wg   sync.WaitGroup
	errs chan error
}

// startMySQLWorkload starts one mysqlWorker per entry of nodes, through
// that node's port. The first error of any worker stops them all.
func startMySQLWorkload(t *testing.T, g *mysqlGroup, nodes []int) *mysqlLoad {
	return startMySQLWorkloadMode(t, g, nodes, false)
}

// startMySQLWorkloadMode is startMySQLWorkload, for a statement-mode group
// when statement is set.
func startMySQLWorkloadMode(t *testing.T, g *mysqlGroup, nodes []int, statement bool) *mysqlLoad {
	t.Helper()
	l := &mysqlLoad{errs: make(chan error, len(nodes))}
	run := mysqlRuns.Add(1)
	for w, node := range nodes {
		db := g.client(t, node, "")
		l.wg.Go(func() {
			if err := mysqlWorker(context.Background(), db, run, w, statement, &l.stop, &l.done); err != nil {
				l.errs <- fmt.Errorf("worker %d via n%d: %w", w, node+1, err)
				l.stop.Store(true)
			}
		})
	}
	return l
}

// halt stops the workers, fails the test on any error, and returns the
// iterations acknowledged.
func (l *mysqlLoad) halt(t *testing.T) int64 {
	t.Helper()
	l.stop.Store(true)
	l.wg.Wait()
	close(l.errs)
	for err := range l.errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return l.done.Load()
}

// runMySQLWorkload runs workers through the given nodes' ports for d.
func runMySQLWorkload(t *testing.T, g *mysqlGroup, nodes []int, d time.Duration) int64 {
	t.Helper()
	return runMySQLWorkloadMode(t, g, nodes, d, false)
}

func runMySQLWorkloadMode(t *testing.T, g *mysqlGroup, nodes []int, d time.Duration, statement bool) int64 {
	t.Helper()
	l := startMySQLWorkloadMode(t, g, nodes, statement)
	time.Sleep(d)
	return l.halt(t)
}

// A MySQL group under a concurrent workload (transactions, prepared
// statements, DDL, NOW(), AUTO_INCREMENT, multi-statements, rollbacks),
// run through the leader and through a follower, ends with every backend
// equal by CHECKSUM TABLE, for the ack policies that acknowledge only
// what followers hold. SHOW REPLICAR STATUS and /status report the group.
func TestMySQLGroupWorkload(t *testing.T) {
	for _, tc := range []struct{ format, policy string }{{"row", "all"}, {"row", "quorum"}, {"statement", "all"}} {
		format, policy := tc.format, tc.policy
		t.Run(format+"-"+policy, func(t *testing.T) {
			start := time.Now()
			g := startMySQLGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": policy, "REPLICAR_MIN_INSYNC": "2",
				"REPLICAR_MYSQL_FORMAT": format})
			leader := g.waitLeader(t, 30*time.Second)
			t.Logf("leader n%d settled %v after start", leader+1, time.Since(start).Round(time.Millisecond))
			mysqlSchema(t, g.client(t, leader, ""))
			follower := (leader + 1) % 3
			n := runMySQLWorkloadMode(t, g, []int{leader, leader, leader, follower}, 4*time.Second, format == "statement")
			if format == "statement" {
				// What statement replication cannot replay is refused,
				// before it runs, with an error that says so.
				_, err := g.client(t, leader, "").Exec("INSERT INTO app.events (worker, k) VALUES (99, UUID())")
				if err == nil || !strings.Contains(err.Error(), "unsafe for statement replication") {
					t.Fatalf("UUID() in statement mode: %v, want an 'unsafe for statement replication' error", err)
				}
				t.Logf("UUID() refused: %v", err)
			}
			fp := g.sameData(t, leader, 30*time.Second)
			var total int64
			if err := g.backend(leader).QueryRow("SELECT n FROM app.counters WHERE k = 'total'").Scan(&total); err != nil {
				t.Fatal(err)
			}
			if total != n && total != n+1 && total < n {
				t.Fatalf("counter %d after %d acknowledged iterations", total, n)
			}
			t.Logf("%d iterations acknowledged; %d tables equal on 3 backends (counter %d)", n, len(fp), total)

			st := g.replicarStatus(t, leader)
			if st["role"] != "leader" || st["protocol"] != "mysql" || st["mysql_format"] != format || st["node"] != g.nodes[leader].Node ||
				!strings.HasPrefix(st["ack_policy"], policy) || st["isr"] == "" {
				t.Fatalf("SHOW REPLICAR STATUS on the leader: %v", st)
			}
			fst := g.replicarStatus(t, follower)
			if fst["role"] != "follower" || fst["leader"] != g.nodes[leader].Node {
				t.Fatalf("SHOW REPLICAR STATUS on a follower: %v", fst)
			}
			m, err := g.nodes[leader].Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if m["protocol"] != "mysql" || m["role"] != "leader" || len(m["followers"].([]any)) != 2 {
				t.Fatalf("/status of the leader: %v", m)
			}
			if off, _ := strconv.ParseUint(st["offset"], 10, 64); off < uint64(n) {
				t.Fatalf("leader's offset %d below the %d transactions acknowledged", off, n)
			}
			if format == "row" && policy == "all" {
				forwardedCancel(t, g, follower, leader)
			}
		})
	}
}

// forwardedCancel cancels queries sent to a follower, which forwards them
// to the leader: the client gets its context error at once, and the
// statements running on the leader's backend are killed.
func forwardedCancel(t *testing.T, g *mysqlGroup, follower, leader int) {
	t.Helper()
	db := g.client(t, follower, "")
	sleeping := func() int {
		var n int
		if err := g.backend(leader).QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(31)%'").Scan(&n); err != nil {
			return -1
		}
		return n
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
		// The statement must be seen running on the leader's backend, or
		// the check below would pass for a query that never got there.
		seen := make(chan bool, 1)
		go func() {
			for ctx.Err() == nil {
				if sleeping() > 0 {
					seen <- true
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			seen <- false
		}()
		start := time.Now()
		var x int
		err := db.QueryRowContext(ctx, "SELECT SLEEP(31)").Scan(&x)
		cancel()
		if !<-seen {
			t.Fatal("the query sent to the follower never ran on the leader's backend")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a cancelled query through a follower: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("cancellation through a follower took %v", d)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for sleeping() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d cancelled queries still run on the leader's backend (-1: cannot ask it)", sleeping())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := db.Ping(); err != nil {
		t.Fatalf("the follower after cancelled queries: %v", err)
	}
}

// A follower killed with SIGKILL under load resumes from the position in
// its store (a partial resync). A follower that stays down while the
// leader's backlog moves past its position gets a full resync, copied from
// the in-sync follower while the leader keeps taking writes. A follower
// whose backend was wiped, with the other follower down too, gets its copy
// from the leader; the other then resumes. Every backend ends equal.
func TestMySQLFollowerResync(t *testing.T) {
	for _, format := range []string{"row", "statement"} {
		t.Run(format, func(t *testing.T) { testMySQLFollowerResync(t, format) })
	}
}

func testMySQLFollowerResync(t *testing.T, format string) {
	statement := format == "statement"
	g := startMySQLGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "quorum", "REPLICAR_BACKLOG_BYTES": "1mb",
		"REPLICAR_MYSQL_FORMAT": format})
	leader := g.waitLeader(t, 30*time.Second)
	lc := g.client(t, leader, "")
	mysqlSchema(t, lc)
	if _, err := lc.Exec("CREATE TABLE app.bulk (id INT PRIMARY KEY, pad VARCHAR(1000) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	f1, f2 := (leader+1)%3, (leader+2)%3

	// SIGKILL of a follower under load: it resumes.
	load := startMySQLWorkloadMode(t, g, []int{leader, leader, leader}, statement)
	time.Sleep(time.Second)
	if err := g.nodes[f1].Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := g.nodes[f1].Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	n := load.halt(t)
	leader = g.waitLeader(t, 30*time.Second)
	g.sameData(t, leader, 30*time.Second)
	if log := g.nodes[f1].LogTail(5000); strings.Contains(log, "full resync needed") || !strings.Contains(log, "streaming from leader") {
		t.Fatalf("the killed follower did not resume with a partial resync:\n%s", log)
	}
	if v := g.metric(t, f1, `replicar_resyncs_total{kind="partial"}`); v < 1 {
		t.Fatalf("partial resyncs of the restarted follower: %v", v)
	}
	t.Logf("follower SIGKILL: resumed, %d iterations acknowledged meanwhile", n)

	// Down while more than the backlog's 1mb is written: a full resync,
	// from the in-sync follower, while the leader takes writes.
	if err := g.nodes[f1].Kill(); err != nil {
		t.Fatal(err)
	}
	// Literal rows, so that the backlog overflows in statement mode too,
	// where an entry is the statement's text rather than its rows.
	pad := strings.Repeat("x", 1000)
	for i := range 6 {
		var q strings.Builder
		q.WriteString("INSERT INTO app.bulk VALUES ")
		for j := range 250 {
			if j > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "(%d, '%s')", i*1000+j, pad)
		}
		if _, err := lc.Exec(q.String()); err != nil {
			t.Fatal(err)
		}
	}
	load = startMySQLWorkloadMode(t, g, []int{leader, leader}, statement)
	time.Sleep(300 * time.Millisecond)
	if err := g.nodes[f1].Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, g, f1, `"message":"full resync done; streaming from the snapshot"`, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	n = load.halt(t)
	leader = g.waitLeader(t, 30*time.Second)
	g.sameData(t, leader, 30*time.Second)
	if log := g.nodes[f1].LogTail(5000); !strings.Contains(log, "offset out of retention") || !strings.Contains(log, `"source":"`+g.nodes[f2].Node+`"`) {
		t.Fatalf("the follower behind the backlog did not copy from the in-sync follower %s:\n%s", g.nodes[f2].Node, log)
	}
	t.Logf("follower out of retention: full resync from %s, %d iterations acknowledged meanwhile", g.nodes[f2].Node, n)

	// Both followers down, one wiped: the copy can only come from the
	// leader; the other then resumes.
	for _, i := range []int{f1, f2} {
		if err := g.nodes[i].Kill(); err != nil {
			t.Fatal(err)
		}
	}
	g.wipe(t, f2, "app")
	if err := g.nodes[f2].Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, g, f2, `"message":"full resync done; streaming from the snapshot"`, 30*time.Second)
	if !strings.Contains(g.nodes[f2].LogTail(5000), `"source":"leader"`) {
		t.Fatalf("the copy did not come from the leader:\n%s", g.nodes[f2].LogTail(200))
	}
	for _, line := range strings.Split(g.nodes[leader].LogTail(5000), "\n") {
		if strings.Contains(line, `"message":"snapshot open; writes resumed"`) {
			t.Logf("leader's write pause for the snapshot: %s", line)
		}
	}
	if err := g.nodes[f1].Start(); err != nil {
		t.Fatal(err)
	}
	leader = g.waitLeader(t, 30*time.Second)
	n = runMySQLWorkloadMode(t, g, []int{leader, leader}, time.Second, statement)
	fp := g.sameData(t, leader, 30*time.Second)
	t.Logf("wiped follower: full resync from the leader; then %d iterations; %d tables equal on 3 backends", n, len(fp))

}

// waitLog waits until node i's log holds s.
func waitLog(t *testing.T, g *mysqlGroup, i int, s string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(g.nodes[i].LogTail(100000), s) {
			return
		}
	}
	g.timeline(t)
	t.Fatalf("n%d did not log %s within %v", i+1, s, timeout)
}

// Killing the leader's replicar with SIGKILL while clients append unique
// ids through the followers: a new leader is elected and serves, every
// acknowledged insert is in its backend, and the old leader comes back as
// a follower (with a full resync if its backend committed transactions its
// capture had not logged) with the same data.
func TestMySQLLeaderKillFailover(t *testing.T) {
	for _, tc := range []struct{ format, policy string }{{"row", "all"}, {"row", "quorum"}, {"statement", "quorum"}} {
		t.Run(tc.format+"-"+tc.policy, func(t *testing.T) { mysqlLeaderKill(t, tc.format, tc.policy) })
	}
}

func mysqlLeaderKill(t *testing.T, format, policy string) {
	g := startMySQLGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": policy, "REPLICAR_MIN_INSYNC": "2", "REPLICAR_MYSQL_FORMAT": format})
	leader := g.waitLeader(t, 30*time.Second)
	createIDs(t, g, leader)
	others := []int{(leader + 1) % 3, (leader + 2) % 3}
	// Through the followers and a router, whose client ports survive
	// the kill.
	router := g.startRouter(t)
	load := startAppendLoad(t, []*sql.DB{g.client(t, others[0], "app"), g.client(t, others[1], "app"),
		g.clientAt(t, router.Addr, "app"), g.client(t, others[0], "app")})
	bank := startBank(t, g.client(t, leader, "app"), []*sql.DB{g.client(t, others[0], "app"), g.client(t, others[1], "app")})
	time.Sleep(1500 * time.Millisecond)
	if err := g.nodes[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	load.mark()
	newLeader := g.waitLeaderAmong(t, others, 20*time.Second, "no new leader after the leader's SIGKILL")
	time.Sleep(2 * time.Second)
	load.halt()
	bank.halt()
	g.timeline(t)
	took := load.check(t, g, newLeader)
	bank.check(t, g.backend(newLeader), fmt.Sprintf("n%d (new leader)", newLeader+1))
	t.Logf("%s mode, policy %s: new leader n%d took writes %v after the kill", format, policy, newLeader+1, took.Round(time.Millisecond))
	if m, err := router.Status(context.Background()); err != nil || m["leader"] != g.nodes[newLeader].Node || m["protocol"] != "mysql" {
		t.Fatalf("router /status after the failover: %v %v", m, err)
	}

	// The old leader comes back as a follower with the same data.
	if err := g.nodes[leader].Start(); err != nil {
		t.Fatal(err)
	}
	if got := g.waitLeader(t, 30*time.Second); got != newLeader {
		t.Fatalf("n%d leads after the old leader came back, want n%d", got+1, newLeader+1)
	}
	g.sameData(t, newLeader, 30*time.Second)
	bank.check(t, g.backend(leader), fmt.Sprintf("n%d (old leader, back)", leader+1))
	full := strings.Contains(g.nodes[leader].LogTail(5000), "full resync done")
	t.Logf("old leader n%d back as a follower (full resync: %v)", leader+1, full)
	g.timeline(t)
}

// SIGTERM on the leader hands over: clients on the other nodes see no
// error, nothing acknowledged is lost, and the old leader, restarted,
// follows without a full resync (it stepped down with its capture caught
// up).
func TestMySQLGracefulHandover(t *testing.T) {
	g := startMySQLGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "all", "REPLICAR_MIN_INSYNC": "2"})
	leader := g.waitLeader(t, 30*time.Second)
	createIDs(t, g, leader)
	others := []int{(leader + 1) % 3, (leader + 2) % 3}
	load := startAppendLoad(t, []*sql.DB{g.client(t, others[0], "app"), g.client(t, others[1], "app"),
		g.client(t, others[0], "app"), g.client(t, others[1], "app")})
	time.Sleep(time.Second)
	start := time.Now()
	load.mark()
	if err := g.nodes[leader].Shutdown(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	stopped := time.Since(start)
	time.Sleep(time.Second)
	load.halt()
	g.timeline(t)
	newLeader := g.waitLeaderAmong(t, others, 10*time.Second, "no new leader after the handover")
	took := load.check(t, g, newLeader)
	t.Logf("leader exited %v after SIGTERM; the new leader took writes %v after it", stopped.Round(time.Millisecond), took.Round(time.Millisecond))
	if n := load.failed.Load(); n > 0 {
		t.Fatalf("%d client errors during the handover", n)
	}
	log := g.nodes[leader].LogTail(5000)
	if !strings.Contains(log, `"message":"handed over"`) || !strings.Contains(log, `"drained":true`) {
		t.Fatalf("no clean handover in the old leader's log:\n%s", log)
	}
	if err := g.nodes[leader].Start(); err != nil {
		t.Fatal(err)
	}
	g.waitLeader(t, 30*time.Second)
	g.sameData(t, newLeader, 30*time.Second)
	if strings.Contains(g.nodes[leader].LogTail(5000), "full resync needed") {
		t.Fatal("the old leader needed a full resync after a clean handover")
	}
}

// The leader's mariadbd killed with SIGKILL: the leader fails its health
// checks and steps down, a follower takes over with every acknowledged
// insert, and once the dead backend is back the old leader full-resyncs
// (its capture could not catch up with a backend that was gone) and
// follows with the same data.
func TestMySQLLeaderBackendDeath(t *testing.T) {
	g := startMySQLGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "quorum"})
	leader := g.waitLeader(t, 30*time.Second)
	createIDs(t, g, leader)
	others := []int{(leader + 1) % 3, (leader + 2) % 3}
	load := startAppendLoad(t, []*sql.DB{g.client(t, others[0], "app"), g.client(t, others[1], "app")})
	time.Sleep(time.Second)
	if err := g.dbs[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	load.mark()
	newLeader := g.waitLeaderAmong(t, others, 20*time.Second, "no new leader after the leader's backend died")
	time.Sleep(time.Second)
	load.halt()
	took := load.check(t, g, newLeader)
	t.Logf("new leader n%d took writes %v after the leader's backend died", newLeader+1, took.Round(time.Millisecond))
	if err := g.dbs[leader].Start(); err != nil {
		t.Fatal(err)
	}
	g.waitLeader(t, 60*time.Second)
	g.sameData(t, newLeader, 30*time.Second)
	g.timeline(t)
	if !strings.Contains(g.nodes[leader].LogTail(5000), "full resync done") {
		t.Fatal("the old leader did not full-resync once its backend was back")
	}
}

// bankLoad moves money between accounts in transactions; the total never
// changes, whatever fails.
type bankLoad struct {
	stop              atomic.Bool
	wg                sync.WaitGroup
	committed, failed atomic.Int64
	accounts, initial int
}

// startBank creates app.bank through setup, then runs one transfer loop
// per pool.
func startBank(t *testing.T, setup *sql.DB, dbs []*sql.DB) *bankLoad {
	t.Helper()
	b := &bankLoad{accounts: 10, initial: 1000}
	if _, err := setup.Exec("CREATE TABLE bank (id INT PRIMARY KEY, balance BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	for i := range b.accounts {
		if _, err := setup.Exec("INSERT INTO bank VALUES (?, ?)", i, b.initial); err != nil {
			t.Fatal(err)
		}
	}
	for w, db := range dbs {
		db.SetMaxOpenConns(1)
		b.wg.Go(func() {
			for i := 0; !b.stop.Load(); i++ {
				from, to := (w*7+i)%b.accounts, (w*3+i*5+1)%b.accounts
				if from == to {
					continue
				}
				if err := transfer(db, from, to, 1+i%9); err != nil {
					b.failed.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				b.committed.Add(1)
			}
		})
	}
	return b
}

func transfer(db *sql.DB, from, to, amount int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if _, err := tx.Exec("UPDATE bank SET balance = balance - ? WHERE id = ?", amount, from); err != nil {
		tx.Rollback()
		return err
	}
	if _, err := tx.Exec("UPDATE bank SET balance = balance + ? WHERE id = ?", amount, to); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (b *bankLoad) halt() {
	b.stop.Store(true)
	b.wg.Wait()
}

// check requires the total unchanged in db.
func (b *bankLoad) check(t *testing.T, db *sql.DB, where string) {
	t.Helper()
	var total, n int64
	if err := db.QueryRow("SELECT COALESCE(SUM(balance), 0), COUNT(*) FROM app.bank").Scan(&total, &n); err != nil {
		t.Fatal(err)
	}
	t.Logf("bank on %s: %d transfers committed, %d failed; total %d over %d accounts", where, b.committed.Load(), b.failed.Load(), total, n)
	if want := int64(b.accounts * b.initial); total != want || n != int64(b.accounts) {
		t.Fatalf("bank total on %s is %d over %d accounts, want %d over %d", where, total, n, want, b.accounts)
	}
}

// createIDs creates the append workload's table through node i.
func createIDs(t *testing.T, g *mysqlGroup, i int) {
	t.Helper()
	if _, err := g.client(t, i, "").Exec("CREATE DATABASE app; CREATE TABLE app.ids (id VARCHAR(64) PRIMARY KEY, at DATETIME(6) NOT NULL DEFAULT NOW(6))"); err != nil {
		t.Fatal(err)
	}
}

// appendLoad inserts unique ids (autocommit), one client per pool,
// recording which were acknowledged and every error.
type appendLoad struct {
	mu     sync.Mutex
	acked  []string
	errs   map[string]int
	failed atomic.Int64
	stop   atomic.Bool
	wg     sync.WaitGroup
	// markedAt is when the fault was injected (unix nanos), firstAfter
	// when the first insert sent after it was acknowledged.
	markedAt   atomic.Int64
	firstAfter atomic.Int64
}

func startAppendLoad(t *testing.T, dbs []*sql.DB) *appendLoad {
	t.Helper()
	l := &appendLoad{errs: map[string]int{}}
	for w, db := range dbs {
		db.SetMaxOpenConns(1)
		l.wg.Go(func() {
			for i := 0; !l.stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				sent := time.Now().UnixNano()
				if _, err := db.Exec("INSERT INTO ids (id) VALUES (?)", id); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs[err.Error()]++
					l.mu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				l.mu.Lock()
				l.acked = append(l.acked, id)
				l.mu.Unlock()
				if k := l.markedAt.Load(); k != 0 && sent > k {
					l.firstAfter.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		})
	}
	return l
}

// mark records the moment of the fault.
func (l *appendLoad) mark() { l.markedAt.Store(time.Now().UnixNano()) }

func (l *appendLoad) halt() {
	l.stop.Store(true)
	l.wg.Wait()
}

// check requires every acknowledged id in node i's backend, and returns
// how long after the mark the first insert sent after it was
// acknowledged.
func (l *appendLoad) check(t *testing.T, g *mysqlGroup, i int) time.Duration {
	t.Helper()
	have := storedIDs(t, g.backend(i))
	lost := 0
	for _, id := range l.acked {
		if !have[id] {
			lost++
		}
	}
	t.Logf("%d inserts acknowledged, %d failed; %d rows in n%d's backend; %d acknowledged lost", len(l.acked), l.failed.Load(), len(have), i+1, lost)
	for e, n := range l.errs {
		t.Logf("  %d× %s", n, e)
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged inserts lost", lost)
	}
	if l.firstAfter.Load() == 0 {
		t.Fatal("no insert sent after the fault was acknowledged")
	}
	return time.Duration(l.firstAfter.Load() - l.markedAt.Load())
}

// sysbench oltp_write_only (prepared statements, BEGIN and COMMIT as
// prepared statements, several threads) through the leader's proxy port,
// at the same time as the mixed workload (transactions, prepared
// statements, DDL, NOW(), AUTO_INCREMENT, multi-statements) through the
// leader and a follower, in row and in statement mode: every backend ends
// equal by CHECKSUM TABLE.
func TestMySQLSysbenchWriteOnly(t *testing.T) {
	harness.Require(t, "sysbench")
	for _, format := range []string{"row", "statement"} {
		t.Run(format, func(t *testing.T) {
			g := startMySQLGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "all", "REPLICAR_MIN_INSYNC": "2",
				"REPLICAR_MYSQL_FORMAT": format})
			leader := g.waitLeader(t, 30*time.Second)
			lc := g.client(t, leader, "")
			if _, err := lc.Exec("CREATE DATABASE sbtest"); err != nil {
				t.Fatal(err)
			}
			mysqlSchema(t, lc)
			host, port, _ := strings.Cut(g.nodes[leader].Addr, ":")
			sysbench := func(args ...string) string {
				t.Helper()
				base := []string{"--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port, "--mysql-user=root",
					"--mysql-password=" + mysqlClientPassword, "--mysql-db=sbtest", "--tables=2", "--table-size=1000"}
				cmd := exec.Command("sysbench", append(base, args...)...)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Errorf("sysbench %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			sysbench("oltp_write_only", "prepare")
			load := startMySQLWorkloadMode(t, g, []int{leader, (leader + 1) % 3}, format == "statement")
			out := sysbench("--threads=4", "--time=8", "--report-interval=0", "oltp_write_only", "run")
			n := load.halt(t)
			var summary []string
			for _, line := range strings.Split(out, "\n") {
				l := strings.TrimSpace(line)
				if strings.HasPrefix(l, "transactions:") || strings.HasPrefix(l, "queries:") || strings.HasPrefix(l, "ignored errors:") ||
					strings.HasPrefix(l, "95th percentile:") {
					summary = append(summary, l)
				}
			}
			t.Logf("sysbench oltp_write_only, 4 threads, 8s, through the leader (ack all, %s mode), with %d workload iterations alongside:\n%s",
				format, n, strings.Join(summary, "\n"))
			if !strings.Contains(out, "transactions:") {
				t.Fatalf("sysbench printed no result:\n%s", out)
			}
			if n == 0 {
				t.Fatal("the mixed workload acknowledged nothing while sysbench ran")
			}
			fp := g.sameData(t, leader, 30*time.Second)
			t.Logf("%d tables equal on 3 backends", len(fp))
		})
	}
}

// A node refuses, at start, a backend that row capture cannot use, and
// names the setting to change: binlog_row_metadata left at its default,
// binlog_format not ROW, the binary log off.
func TestMySQLNodeRefusesMisconfiguredBackend(t *testing.T) {
	bin := harness.BuildReplicar(t)
	for _, tc := range []struct {
		name, want string
		opts       []harness.MariaDBOption
	}{
		{"row metadata", "set binlog_row_metadata=FULL", nil},
		{"statement format", "binlog_format is STATEMENT", []harness.MariaDBOption{harness.MariaDBBinlogFormat("STATEMENT")}},
		{"no binlog", "log_bin is OFF", []harness.MariaDBOption{harness.MariaDBLogBin(false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := harness.StartMariaDB(t, tc.opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(),
				"REPLICAR_PROTOCOL=mysql", "REPLICAR_BACKEND=" + db.Addr,
				"REPLICAR_BACKEND_USER=" + db.User, "REPLICAR_BACKEND_PASSWORD=" + db.Password,
				"REPLICAR_NODE_ID=n1", "REPLICAR_LISTEN=" + harness.FreeAddr(t), "REPLICAR_REPL_LISTEN=" + harness.FreeAddr(t),
				"REPLICAR_HTTP_LISTEN=" + harness.FreeAddr(t), "REPLICAR_NATS_LISTEN=" + harness.FreeAddr(t),
				"REPLICAR_LOG_FORMAT=json"}
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("the node did not stop on a misconfigured backend:\n%s", out)
			}
			if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
				t.Fatalf("exit code %d (%v), want 1:\n%s", code, err, out)
			}
			if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "node failed") {
				t.Fatalf("the node's error does not say %q:\n%s", tc.want, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "node failed") {
					t.Logf("%s", line)
				}
			}
		})
	}
}
