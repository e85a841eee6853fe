package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	gsql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/mysql/apply"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
	"github.com/replicar/replicar/test/harness"
)

// memAppender is an in-memory log for statement mode: entries in append
// order, epoch 1.
type memAppender struct {
	mu      sync.Mutex
	entries []backlog.Entry
	fail    error
}

func (m *memAppender) Next() (uint64, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return 1, uint64(len(m.entries)) + 1
}

func (m *memAppender) Append(_ context.Context, p []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	off := uint64(len(m.entries)) + 1
	m.entries = append(m.entries, backlog.Entry{Epoch: 1, Offset: off, Payload: append([]byte(nil), p...)})
	return off, nil
}

func (m *memAppender) all() []backlog.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]backlog.Entry(nil), m.entries...)
}

// decoded returns the logged transactions.
func (m *memAppender) decoded(t testing.TB) []*rowlog.Txn {
	t.Helper()
	var out []*rowlog.Txn
	for _, e := range m.all() {
		tx, err := rowlog.Decode(e.Payload)
		if err != nil {
			t.Fatalf("entry %d: %v", e.Offset, err)
		}
		out = append(out, tx)
	}
	return out
}

// stmtProxy is a statement-mode front end in front of m, logging into an
// in-memory log, with a core that commits at once.
type stmtProxy struct {
	*proxy
	log *memAppender
}

func startStmtProxy(t testing.TB, m *harness.MariaDB, edit func(*Config)) *stmtProxy {
	t.Helper()
	p := &proxy{m: m, log: newFakeLog(true)}
	cfg := Config{
		Listen:          "127.0.0.1:0",
		Backend:         m.Addr,
		BackendUser:     m.User,
		BackendPassword: m.Password,
		User:            proxyUser,
		Password:        proxyPassword,
		Format:          FormatStatement,
		FailoverWait:    500 * time.Millisecond,
		Logger:          zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := NewServer(cfg, p.log, nil)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	app := &memAppender{}
	srv.SetAppender(app)
	p.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("server: %v", err)
	}
	p.addr = srv.Addr().String()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("server did not stop")
		}
	})
	return &stmtProxy{proxy: p, log: app}
}

// replay applies every logged entry to the follower f.
func replay(t testing.TB, f *harness.MariaDB, log *memAppender) {
	t.Helper()
	a := apply.NewApplier(f.Addr, apply.Options{User: f.User, Password: f.Password}, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	defer a.Close()
	entries := log.all()
	if _, err := a.Apply(context.Background(), entries); err != nil {
		t.Fatalf("apply %d entries: %v", len(entries), err)
	}
}

// checksums returns CHECKSUM TABLE of every table in the given schemas.
func checksums(t testing.TB, db *sql.DB, schemas ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, s := range schemas {
		rows, err := db.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=? AND TABLE_TYPE='BASE TABLE'", s)
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			tables = append(tables, n)
		}
		rows.Close()
		sort.Strings(tables)
		for _, tb := range tables {
			var name string
			var sum sql.NullString
			if err := db.QueryRowContext(ctx, fmt.Sprintf("CHECKSUM TABLE `%s`.`%s`", s, tb)).Scan(&name, &sum); err != nil {
				t.Fatal(err)
			}
			out[s+"."+tb] = sum.String
		}
	}
	return out
}

func sameChecksums(t testing.TB, primary, follower *harness.MariaDB, schemas ...string) {
	t.Helper()
	a, b := checksums(t, primary.DB(), schemas...), checksums(t, follower.DB(), schemas...)
	if len(a) == 0 {
		t.Fatal("no tables to compare")
	}
	var diff []string
	for k, v := range a {
		if b[k] != v {
			diff = append(diff, fmt.Sprintf("%s: primary %s follower %s", k, v, b[k]))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diff = append(diff, k+" only on the follower")
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Fatalf("checksums differ:\n%s", strings.Join(diff, "\n"))
	}
	t.Logf("%d tables equal on primary and follower", len(a))
}

func isUnsafe(err error) bool {
	var me *gsql.MySQLError
	return errors.As(err, &me) && me.Number == 1105 && strings.HasPrefix(me.Message, "unsafe for statement replication: ")
}

// TestStatementModeSmoke: a few statements of each kind are logged and
// replayed to equal tables.
func TestStatementModeSmoke(t *testing.T) {
	primary := harness.StartMariaDB(t, harness.MariaDBLogBin(false))
	follower := harness.StartMariaDB(t)
	p := startStmtProxy(t, primary, nil)
	db := p.db(t, "", func(c *gsql.Config) { c.MultiStatements = true })
	ctx := ctxT(t, 30*time.Second)
	mustExec(t, db,
		"CREATE DATABASE app",
		"CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6), r DOUBLE, u CHAR(36), n INT)",
		"INSERT INTO app.t (at, r) VALUES (NOW(6), RAND())",
		"INSERT INTO app.t (at, r) VALUES (NOW(6), RAND()), (NOW(6), RAND(7))",
	)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO app.t (n) VALUES (?)", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE app.t SET n = LAST_INSERT_ID() WHERE id = LAST_INSERT_ID()"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, conn, "SET @u = UUID()", "INSERT INTO app.t (u) VALUES (@u)", "USE app",
		"INSERT INTO t (n) VALUES (1); UPDATE t SET n = n + 1 WHERE id > 2; INSERT INTO t (n) SELECT 7")
	conn.Close()
	_, err = db.ExecContext(ctx, "INSERT INTO app.t (u) VALUES (UUID())")
	if !isUnsafe(err) {
		t.Fatalf("UUID(): %v", err)
	}
	// A parameter sent in COM_STMT_SEND_LONG_DATA chunks (the driver does
	// so for a value over its max packet / parameter count) is logged with
	// its whole value, bytes that are not UTF-8 included.
	long := p.db(t, "app", func(c *gsql.Config) { c.MaxAllowedPacket = 4096 })
	mustExec(t, db, "CREATE TABLE app.blobs (id INT PRIMARY KEY, b LONGBLOB, s MEDIUMTEXT)")
	blob := make([]byte, 100<<10)
	for i := range blob {
		blob[i] = byte(i*7 + i>>8)
	}
	text := strings.Repeat("long data 'quoted' \\ ", 3000)
	if _, err := long.ExecContext(ctx, "INSERT INTO blobs VALUES (?, ?, ?)", 1, blob, text); err != nil {
		t.Fatalf("insert with long data: %v", err)
	}
	if _, err := long.ExecContext(ctx, "UPDATE blobs SET s = CONCAT(s, ?) WHERE id = ?", text, 1); err != nil {
		t.Fatalf("update with long data: %v", err)
	}
	var got []byte
	if err := primary.DB().QueryRowContext(ctx, "SELECT b FROM app.blobs WHERE id = 1").Scan(&got); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("the primary's blob: %d bytes, %v (want %d)", len(got), err, len(blob))
	}
	replay(t, follower, p.log)
	sameChecksums(t, primary, follower, "app")
	if err := follower.DB().QueryRowContext(ctx, "SELECT b FROM app.blobs WHERE id = 1").Scan(&got); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("the replayed blob: %d bytes, %v (want %d)", len(got), err, len(blob))
	}
}

// retryable says a transaction failed on a deadlock or a lock wait, and
// may be run again.
func retryable(err error) bool {
	var me *gsql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// TestStatementModeWorkload runs a concurrent workload through a
// statement-mode front end (transactions with conflicting updates and
// rollbacks, prepared statements, NOW(), RAND() with and without a seed,
// AUTO_INCREMENT with gaps, LAST_INSERT_ID(), user variables,
// multi-statements, DDL while writes run), replays the log into a second
// server with the applier, and compares every table. Unsafe statements
// sent among them are refused and change nothing.
func TestStatementModeWorkload(t *testing.T) {
	primary := harness.StartMariaDB(t, harness.MariaDBLogBin(false))
	follower := harness.StartMariaDB(t)
	p := startStmtProxy(t, primary, nil)
	db := p.db(t, "app", func(c *gsql.Config) { c.MultiStatements = true })
	db.SetMaxOpenConns(16)
	ctx := ctxT(t, 60*time.Second)
	const accounts = 20
	mustExec(t, p.db(t, "", nil),
		"CREATE DATABASE app",
		"CREATE TABLE app.accounts (id INT PRIMARY KEY, bal BIGINT NOT NULL)",
		"CREATE TABLE app.events (id BIGINT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6), who INT, r DOUBLE, note VARCHAR(64), ts TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))",
		"CREATE TABLE app.parent (id INT AUTO_INCREMENT PRIMARY KEY, who INT, at DATE)",
		"CREATE TABLE app.child (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT, v VARCHAR(40), KEY (parent_id))",
		"CREATE TABLE app.hot (id INT PRIMARY KEY, v BIGINT, n INT)",
		"CREATE TABLE app.guard (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))",
		"INSERT INTO app.hot VALUES (1, 7, 0)",
	)
	for i := 1; i <= accounts; i++ {
		mustExec(t, db, fmt.Sprintf("INSERT INTO accounts VALUES (%d, 1000)", i))
	}
	unsafeStmts := []string{
		"INSERT INTO guard (v) VALUES (UUID())",
		"UPDATE hot SET n = n + 1000 LIMIT 1",
		"INSERT INTO guard (v) VALUES (SYSDATE())",
		"INSERT INTO guard (v) SELECT note FROM events LIMIT 1",
		"INSERT INTO guard (v) VALUES (@@server_id)",
		"DELETE FROM events LIMIT 1",
	}
	var (
		mu       sync.Mutex
		refused  int
		ops      = map[string]int{}
		stopAt   = time.Now().Add(4 * time.Second)
		ddlDone  = make(chan struct{})
		firstErr error
	)
	count := func(op string) {
		mu.Lock()
		ops[op]++
		mu.Unlock()
	}
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	transfer := func(rng *rand.Rand) error {
		for attempt := 0; ; attempt++ {
			a, b := 1+rng.IntN(accounts), 1+rng.IntN(accounts)
			amt := 1 + rng.IntN(50)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "UPDATE accounts SET bal = bal - ? WHERE id = ?", amt, a)
			if err == nil {
				_, err = tx.ExecContext(ctx, "UPDATE accounts SET bal = bal + ? WHERE id = ?", amt, b)
			}
			if err == nil && rng.IntN(10) == 0 {
				err = tx.Rollback()
				count("rollback")
				return err
			}
			if err == nil {
				err = tx.Commit()
			} else {
				tx.Rollback()
			}
			if err == nil || !retryable(err) || attempt > 20 {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	for w := 1; w <= 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				var err error
				op := rng.IntN(9)
				switch op {
				case 0, 1:
					err = transfer(rng)
					count("transfer")
				case 2:
					// A prepared statement (server-side: go-sql-driver
					// prepares statements with arguments).
					_, err = db.ExecContext(ctx, "INSERT INTO events (at, who, r, note) VALUES (NOW(6), ?, RAND(), ?)", w, fmt.Sprintf("ps %d ' \\ é", rng.IntN(1000)))
					count("prepared")
				case 3:
					_, err = db.ExecContext(ctx, fmt.Sprintf("INSERT INTO events (at, who, r) VALUES (NOW(), %d, RAND(%d))", w, rng.IntN(100)))
					count("rand seed")
				case 4:
					// A parent and its child in one transaction, sometimes
					// rolled back: AUTO_INCREMENT values with gaps.
					var tx *sql.Tx
					if tx, err = db.BeginTx(ctx, nil); err != nil {
						break
					}
					if _, err = tx.ExecContext(ctx, "INSERT INTO parent (who, at) VALUES (?, CURDATE())", w); err == nil {
						_, err = tx.ExecContext(ctx, "INSERT INTO child (parent_id, v) VALUES (LAST_INSERT_ID(), CONCAT('c', LAST_INSERT_ID()))")
					}
					if err != nil || rng.IntN(4) == 0 {
						tx.Rollback()
					} else {
						err = tx.Commit()
					}
					count("parent/child")
				case 5:
					_, err = db.ExecContext(ctx, fmt.Sprintf("UPDATE hot SET v = (v * 3 + %d) %% 1000003, n = n + 1 WHERE id = 1; INSERT INTO events (at, who, note) VALUES (NOW(6), %d, 'multi'); SELECT v FROM hot WHERE id = 1", w, w))
					count("multi-statement")
				case 6:
					var conn *sql.Conn
					if conn, err = db.Conn(ctx); err != nil {
						break
					}
					_, err = conn.ExecContext(ctx, "SET @x = FLOOR(RAND() * 1000), @u = UUID()")
					if err == nil {
						_, err = conn.ExecContext(ctx, "INSERT INTO events (who, r, note) VALUES (@x, @x / 7, @u)")
					}
					conn.Close()
					count("user variables")
				case 7:
					// Order-sensitive updates from many sessions: equal only
					// if replayed in the primary's commit order.
					_, err = db.ExecContext(ctx, "UPDATE hot SET v = (v * 7 + ?) % 1000003, n = n + 1 WHERE id = 1", w)
					count("hot update")
				case 8:
					q := unsafeStmts[rng.IntN(len(unsafeStmts))]
					_, err = db.ExecContext(ctx, q)
					if !isUnsafe(err) {
						err = fmt.Errorf("unsafe %q: %v", q, err)
						break
					}
					err = nil
					mu.Lock()
					refused++
					mu.Unlock()
				}
				if err != nil && !retryable(err) {
					fail(fmt.Errorf("op %d: %w", op, err))
					return
				}
			}
		}()
	}
	// DDL while the writes run: a column added to a table being written,
	// a new table.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ddlDone)
		time.Sleep(time.Second)
		for _, q := range []string{
			"ALTER TABLE events ADD COLUMN extra INT NOT NULL DEFAULT 3",
			"CREATE TABLE late (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
			"INSERT INTO late (v) VALUES (1), (2), (3)",
			"ALTER TABLE accounts ADD COLUMN touched INT NOT NULL DEFAULT 0",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				fail(fmt.Errorf("%s: %w", q, err))
				return
			}
			count("ddl")
		}
	}()
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	var total int64
	if err := primary.DB().QueryRow("SELECT SUM(bal) FROM app.accounts").Scan(&total); err != nil || total != accounts*1000 {
		t.Fatalf("bank total %d, %v", total, err)
	}
	var guard int
	if err := primary.DB().QueryRow("SELECT COUNT(*) FROM app.guard").Scan(&guard); err != nil || guard != 0 {
		t.Fatalf("refused statements ran: %d rows, %v", guard, err)
	}
	st := p.srv.StatementStats()
	t.Logf("ops %v, %d unsafe refused; %d entries (%d transactions, %d DDL, %d statements), %d DDL retries; %d commits, mean order wait %v; %d exclusive statements, mean hold %v",
		ops, refused, st.Entries.Load(), st.Transactions.Load(), st.DDL.Load(), st.Statements.Load(), st.Retries.Load(),
		st.Commits.Load(), time.Duration(st.OrderWait.Load()/max(1, st.Commits.Load()+st.Exclusive.Load())),
		st.Exclusive.Load(), time.Duration(st.ExclusiveHeld.Load()/max(1, st.Exclusive.Load())))
	replay(t, follower, p.log)
	sameChecksums(t, primary, follower, "app")
	mark, err := ReadStoreMark(ctx, Config{Backend: primary.Addr, BackendUser: primary.User, BackendPassword: primary.Password})
	if err != nil || mark.Epoch != 1 || mark.Offset != uint64(len(p.log.all())) || mark.DDLOffset != 0 {
		t.Fatalf("store mark %+v (%d entries), %v", mark, len(p.log.all()), err)
	}
}

// TestStatementModeCommitCost measures what logging in commit order
// costs: the same concurrent write load (autocommit INSERTs, and
// two-statement transactions) straight to the server and through a
// statement-mode front end. It checks every write through the front end
// was logged, and reports the rates.
func TestStatementModeCommitCost(t *testing.T) {
	// The binary log is on only so that the relaying front end below may
	// start (row format checks it); statement mode does not read it.
	primary := harness.StartMariaDB(t, harness.MariaDBArgs("--binlog-row-metadata=FULL"))
	p := startStmtProxy(t, primary, nil)
	// The same front end relaying without logging (row format, with no
	// capture to wait for): what the relay itself costs.
	relay := startStmtProxy(t, primary, func(c *Config) { c.Format = FormatRow })
	mustExec(t, primary.DB(), "CREATE DATABASE bench", "CREATE TABLE bench.t (id INT AUTO_INCREMENT PRIMARY KEY, w INT, v INT, KEY (w))")
	const workers = 8
	run := func(db *sql.DB, tx bool, d time.Duration) int {
		db.SetMaxOpenConns(workers)
		var n sync.WaitGroup
		var mu sync.Mutex
		total := 0
		stop := time.Now().Add(d)
		for w := range workers {
			n.Add(1)
			go func() {
				defer n.Done()
				c := 0
				for time.Now().Before(stop) {
					var err error
					if tx {
						var x *sql.Tx
						if x, err = db.Begin(); err == nil {
							if _, err = x.Exec("INSERT INTO bench.t (w, v) VALUES (?, 1)", w); err == nil {
								_, err = x.Exec("UPDATE bench.t SET v = v + 1 WHERE id = LAST_INSERT_ID()")
							}
							if err == nil {
								err = x.Commit()
							} else {
								x.Rollback()
							}
						}
					} else {
						_, err = db.Exec("INSERT INTO bench.t (w, v) VALUES (?, 1)", w)
					}
					if err != nil {
						t.Error(err)
						return
					}
					c++
				}
				mu.Lock()
				total += c
				mu.Unlock()
			}()
		}
		n.Wait()
		return total
	}
	const d = 2 * time.Second
	direct, direct2 := run(primary.DB(), false, d), run(primary.DB(), true, d)
	relayed, relayed2 := run(relay.db(t, "", nil), false, d), run(relay.db(t, "", nil), true, d)
	before := len(p.log.all())
	proxied, proxied2 := run(p.db(t, "", nil), false, d), run(p.db(t, "", nil), true, d)
	if got := len(p.log.all()) - before; got != proxied+proxied2 {
		t.Fatalf("%d writes through the front end, %d entries", proxied+proxied2, got)
	}
	st := p.srv.StatementStats()
	rate := func(n int) float64 { return float64(n) / d.Seconds() }
	t.Logf("%d workers, %v each: autocommit INSERT %.0f/s direct, %.0f/s relayed without logging, %.0f/s statement mode (%.2fx direct); "+
		"INSERT+UPDATE transactions %.0f/s direct, %.0f/s relayed, %.0f/s statement mode (%.2fx); commit order: mean wait %v over %d commits",
		workers, d, rate(direct), rate(relayed), rate(proxied), float64(proxied)/float64(direct),
		rate(direct2), rate(relayed2), rate(proxied2), float64(proxied2)/float64(direct2),
		time.Duration(st.OrderWait.Load()/max(1, st.Commits.Load())), st.Commits.Load())
}

// TestStatementModeRefusals: statements MySQL documents as unsafe for
// statement-based logging, and those whose safety depends on the tables
// and routines they use, are refused with the clear error and not run;
// their safe neighbours are logged, and the replay gives equal tables.
func TestStatementModeRefusals(t *testing.T) {
	primary := harness.StartMariaDB(t, harness.MariaDBLogBin(false))
	// The applier runs DDL with the binary log on, where MariaDB creates
	// a function declared NOT DETERMINISTIC only with this.
	follower := harness.StartMariaDB(t, harness.MariaDBArgs("--log-bin-trust-function-creators=1"))
	p := startStmtProxy(t, primary, nil)
	ctx := ctxT(t, 60*time.Second)
	db := p.db(t, "app", func(c *gsql.Config) { c.MultiStatements = true })
	db.SetMaxOpenConns(1) // one session: session settings carry over
	mustExec(t, p.db(t, "", nil), "CREATE DATABASE app")
	mustExec(t, db,
		"CREATE TABLE u1 (id INT PRIMARY KEY, b INT)",
		"CREATE TABLE u2 (id INT AUTO_INCREMENT PRIMARY KEY, a INT UNIQUE, b INT)",
		"CREATE TABLE ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
		"CREATE TABLE src (v INT)",
		"INSERT INTO src VALUES (3), (1), (2)",
		"CREATE TABLE dflt (id INT PRIMARY KEY, u CHAR(36) DEFAULT (UUID()))",
		"CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what INT)",
		"CREATE TABLE trig (id INT PRIMARY KEY)",
		"CREATE TRIGGER trig_ai AFTER INSERT ON trig FOR EACH ROW INSERT INTO audit (what) VALUES (NEW.id)",
		"CREATE TABLE tu (id INT PRIMARY KEY, tag CHAR(36), v INT)",
		"CREATE TRIGGER tu_bi BEFORE INSERT ON tu FOR EACH ROW SET NEW.tag = UUID()",
		"CREATE TABLE m (id INT PRIMARY KEY, v INT) ENGINE=MyISAM",
		"CREATE TABLE grp (g INT, n INT AUTO_INCREMENT, PRIMARY KEY (g, n)) ENGINE=MyISAM",
		"CREATE TABLE fw_log (id INT PRIMARY KEY, v INT)",
		"CREATE FUNCTION fw(x INT) RETURNS INT DETERMINISTIC MODIFIES SQL DATA BEGIN INSERT INTO fw_log VALUES (x, x * 2); RETURN x; END",
		"CREATE FUNCTION fnd(x INT) RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA BEGIN INSERT INTO fw_log VALUES (x, 0); RETURN x; END",
		"CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC NO SQL RETURN 2 * x",
		"CREATE PROCEDURE p_write() MODIFIES SQL DATA INSERT INTO u1 VALUES (99, 99)",
		"CREATE PROCEDURE p_read() READS SQL DATA SELECT COUNT(*) FROM u1",
	)
	refused := []string{
		"INSERT INTO u1 VALUES (100, UUID_SHORT())",
		"INSERT INTO u2 (a, b) VALUES (1, 1) ON DUPLICATE KEY UPDATE b = b + 1",
		"INSERT INTO ai (v) SELECT v FROM src",
		"INSERT INTO dflt (id) VALUES (1)",
		"INSERT INTO trig VALUES (1)",
		"INSERT INTO tu (id, v) VALUES (1, 1)", // its trigger calls UUID()
		"INSERT INTO grp (g) VALUES (1)",       // AUTO_INCREMENT not first in the primary key
		"SELECT fnd(7)",
		"INSERT INTO u1 VALUES (fnd(8), 1)",
		"CALL p_write()",
		"UPDATE u1 SET b = 0 LIMIT 1",
		"DELETE FROM src LIMIT 1",
		"INSERT INTO u1 VALUES (101, @@server_id)",
		"CREATE TEMPORARY TABLE tmp (a INT)",
		"INSERT INTO u1 VALUES (102, 1); INSERT INTO u1 VALUES (103, CONNECTION_ID())",
		"LOAD DATA LOCAL INFILE '/dev/null' INTO TABLE u1",
		"CREATE TABLE ctas IGNORE SELECT * FROM src",
	}
	for _, q := range refused {
		if _, err := db.ExecContext(ctx, q); !isUnsafe(err) {
			t.Errorf("%s: want the unsafe error, got %v", q, err)
		}
	}
	// Allowed: the safe forms of the same.
	mustExec(t, db,
		"INSERT INTO u1 VALUES (1, 1) ON DUPLICATE KEY UPDATE b = b + 1",
		"INSERT INTO u1 VALUES (1, 1) ON DUPLICATE KEY UPDATE b = b + 1",
		"INSERT INTO ai (v) SELECT v FROM src ORDER BY v",
		"INSERT INTO dflt (id, u) VALUES (1, 'given')",
		"UPDATE u1 SET b = b * 10 ORDER BY id LIMIT 1",
		"UPDATE tu SET v = 2 WHERE id = 1", // tu has no UPDATE trigger
		"INSERT INTO m VALUES (1, 1), (2, 2)",
		"UPDATE m SET v = v + 1",
		"SELECT fw(5)",
		"INSERT INTO u1 VALUES (twice(21), fw(6))",
		"CALL p_read()",
		"SET timestamp = 1600000000",
		"INSERT INTO u1 VALUES (7, UNIX_TIMESTAMP())",
		"SET timestamp = DEFAULT",
		"PREPARE ins FROM 'INSERT INTO u1 (id, b) VALUES (?, ?)'",
		"SET @a = 10, @b = 'x'",
		"EXECUTE ins USING @a, @a",
		"DEALLOCATE PREPARE ins",
	)
	// A refused statement in a transaction leaves the transaction as it
	// was; a write to a non-transactional table in one is refused.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, tx, "INSERT INTO u1 VALUES (20, 1)")
	for _, q := range []string{"INSERT INTO u1 VALUES (21, UUID())", "INSERT INTO m VALUES (3, 3)"} {
		if _, err := tx.ExecContext(ctx, q); !isUnsafe(err) {
			t.Errorf("%s in a transaction: %v", q, err)
		}
	}
	mustExec(t, tx, "INSERT INTO u1 VALUES (22, 1)")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Savepoints, the first one opening the transaction (autocommit off).
	mustExec(t, db, "SET autocommit = 0", "SAVEPOINT s0", "INSERT INTO u1 VALUES (50, 1)", "ROLLBACK TO SAVEPOINT s0",
		"INSERT INTO u1 VALUES (51, 1)", "SAVEPOINT s1", "UPDATE u1 SET b = 5 WHERE id = 51", "RELEASE SAVEPOINT s1", "COMMIT", "SET autocommit = 1")
	// A prepared statement whose text ends with a comment.
	if _, err := db.ExecContext(ctx, "INSERT INTO u1 VALUES (?, ?) -- trailing", 60, 1); err != nil {
		t.Fatal(err)
	}
	// A procedure made behind the front end's back is checked too.
	mustExec(t, primary.DB(), "CREATE PROCEDURE app.p_direct() MODIFIES SQL DATA INSERT INTO app.u1 VALUES (98, 1)")
	if _, err := db.ExecContext(ctx, "CALL p_direct()"); !isUnsafe(err) {
		t.Errorf("CALL of a procedure made directly: %v", err)
	}
	// READ COMMITTED, for the session or for the next transaction.
	mustExec(t, db, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
	if _, err := db.ExecContext(ctx, "INSERT INTO u1 VALUES (30, 1)"); !isUnsafe(err) {
		t.Errorf("write at READ COMMITTED: %v", err)
	}
	mustExec(t, db, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "BEGIN")
	if _, err := db.ExecContext(ctx, "INSERT INTO u1 VALUES (31, 1)"); !isUnsafe(err) {
		t.Errorf("write in a READ COMMITTED transaction: %v", err)
	}
	mustExec(t, db, "COMMIT", "INSERT INTO u1 VALUES (32, 1)")
	// Nothing refused ran.
	var n int
	for q, want := range map[string]int{
		"SELECT COUNT(*) FROM u1 WHERE id IN (21, 30, 31, 50, 98, 99, 100, 101, 102, 103)": 0,
		"SELECT b FROM u1 WHERE id = 51": 5, "SELECT b FROM u1 WHERE id = 60": 1,
		"SELECT COUNT(*) FROM u2": 0, "SELECT COUNT(*) FROM trig": 0, "SELECT COUNT(*) FROM tu": 0, "SELECT COUNT(*) FROM grp": 0, "SELECT COUNT(*) FROM audit": 0,
		"SELECT COUNT(*) FROM src": 3, "SELECT COUNT(*) FROM fw_log": 2, "SELECT COUNT(*) FROM m": 2,
		"SELECT COUNT(*) FROM ai": 3, "SELECT b FROM u1 WHERE id = 7": 1600000000, "SELECT b FROM u1 WHERE id = 10": 10,
	} {
		if err := primary.DB().QueryRowContext(ctx, strings.Replace(q, "FROM ", "FROM app.", 1)).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d, want %d (%v)", q, n, want, err)
		}
	}
	// Multi-statements on a connection that did not ask for them.
	single := p.db(t, "app", nil)
	var me *gsql.MySQLError
	if _, err := single.ExecContext(ctx, "INSERT INTO u1 VALUES (40, 1); INSERT INTO u1 VALUES (41, 1)"); !errors.As(err, &me) || me.Number != 1064 {
		t.Errorf("multi-statement without CLIENT_MULTI_STATEMENTS: %v", err)
	}
	replay(t, follower, p.log)
	sameChecksums(t, primary, follower, "app")
}

// TestStatementModeLogFailure: when the log refuses an entry whose
// transaction the primary committed, the client gets UNCOMMITTED, every
// later write TRYAGAIN, StatementLogErr says why, and the store's mark
// shows it holds an entry the log lacks.
func TestStatementModeLogFailure(t *testing.T) {
	primary := harness.StartMariaDB(t, harness.MariaDBLogBin(false))
	p := startStmtProxy(t, primary, nil)
	ctx := ctxT(t, 30*time.Second)
	db := p.db(t, "", nil)
	mustExec(t, db, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)")
	p.log.mu.Lock()
	p.log.fail = errors.New("disk full")
	p.log.mu.Unlock()
	_, err := db.ExecContext(ctx, "INSERT INTO app.t VALUES (2)")
	if me := mysqlErr(t, err); me.Number != 1105 || !strings.HasPrefix(me.Message, "UNCOMMITTED") || !strings.Contains(me.Message, "disk full") {
		t.Fatalf("failed append: %v", err)
	}
	if e := p.srv.StatementLogErr(); e == nil || !strings.Contains(e.Error(), "disk full") {
		t.Fatalf("StatementLogErr: %v", e)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO app.t VALUES (3)")
	if me := mysqlErr(t, err); me.Number != 1290 || !strings.HasPrefix(me.Message, "TRYAGAIN") {
		t.Fatalf("write after the failure: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM app.t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("reads still work: %d rows, %v", n, err)
	}
	mark, err := ReadStoreMark(ctx, Config{Backend: primary.Addr, BackendUser: primary.User, BackendPassword: primary.Password})
	if err != nil {
		t.Fatal(err)
	}
	entries := p.log.all()
	has := func(e, o uint64) bool { return o <= uint64(len(entries)) && entries[o-1].Epoch == e }
	if !mark.Ahead(has) || mark.Offset != uint64(len(entries))+1 {
		t.Fatalf("mark %+v with %d entries: the store should be ahead", mark, len(entries))
	}
}

// TestStatementModeCheck: a backend whose AUTO_INCREMENT values a replay
// cannot reproduce is refused at start, naming the setting.
func TestStatementModeCheck(t *testing.T) {
	m := harness.StartMariaDB(t, harness.MariaDBLogBin(false), harness.MariaDBArgs("--innodb-autoinc-lock-mode=2"))
	_, err := CheckBackend(context.Background(), Config{Backend: m.Addr, BackendUser: m.User, BackendPassword: m.Password, Format: FormatStatement})
	var mis *MisconfiguredError
	if !errors.As(err, &mis) || mis.Setting != "innodb_autoinc_lock_mode" || !strings.Contains(err.Error(), "REPLICAR_MYSQL_FORMAT=statement") {
		t.Fatalf("autoinc lock mode 2: %v", err)
	}
}
