package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	replay(t, follower, p.log)
	sameChecksums(t, primary, follower, "app")
}
