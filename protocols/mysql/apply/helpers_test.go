package apply

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
	"github.com/replicar/replicar/test/harness"
)

func init() {
	// The driver logs every connection a test kills on purpose.
	mysql.SetLogger(log.New(io.Discard, "", 0))
}

// startMariaDB starts a backend configured as replicar requires.
func startMariaDB(t *testing.T) *harness.MariaDB {
	t.Helper()
	return harness.StartMariaDB(t, harness.MariaDBArgs("--binlog-row-metadata=FULL"))
}

// memLog is an in-memory backlog for the capture to append to.
type memLog struct {
	mu      sync.Mutex
	epoch   uint64
	base    uint64
	entries []backlog.Entry
}

func (l *memLog) Append(_ context.Context, p []byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	off := l.base + uint64(len(l.entries)) + 1
	l.entries = append(l.entries, backlog.Entry{Epoch: l.epoch, Offset: off, Payload: p})
	return off, nil
}

// after returns the entries after offset off.
func (l *memLog) after(off uint64) []backlog.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if off < l.base {
		off = l.base
	}
	return append([]backlog.Entry(nil), l.entries[off-l.base:]...)
}

func (l *memLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.base + uint64(len(l.entries))
}

// startCapture tails m's binlog from its current position into log.
func startCapture(t *testing.T, m *harness.MariaDB, log *memLog) *rowlog.Capture {
	t.Helper()
	info, err := rowlog.Check(context.Background(), m.DB())
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	c, err := rowlog.New(rowlog.Config{Addr: m.Addr, User: m.User, Password: m.Password, Start: info.GTIDBinlogPos,
		LastOffset: log.last(), IgnoreDomains: []uint32{DefaultDDLDomain}, MinBackoff: 50 * time.Millisecond},
		log, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			t.Errorf("capture: %v", err)
		}
	})
	return c
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

// waitCaught waits until the capture has processed everything in m's
// binlog.
func waitCaught(t *testing.T, c *rowlog.Capture, db *sql.DB) {
	t.Helper()
	var want string
	if err := db.QueryRow("SELECT @@GLOBAL.gtid_binlog_pos").Scan(&want); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.Position() != want {
		if time.Now().After(deadline) {
			t.Fatalf("capture at %q, binlog at %q", c.Position(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustExec(t *testing.T, db interface {
	Exec(string, ...any) (sql.Result, error)
}, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

var autoIncRE = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

// fingerprint describes every user table of db: its definition and its
// CHECKSUM TABLE, keyed by schema.table. Replicar's own schema is left
// out.
func fingerprint(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN ('mysql','sys','information_schema','performance_schema','" + Schema + "')")
	if err != nil {
		t.Fatal(err)
	}
	type tbl struct{ schema, name, typ string }
	var tables []tbl
	for rows.Next() {
		var x tbl
		if err := rows.Scan(&x.schema, &x.name, &x.typ); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, x)
	}
	rows.Close()
	out := map[string]string{}
	for _, x := range tables {
		name := quoteIdent(x.schema) + "." + quoteIdent(x.name)
		var n, def string
		if x.typ == "VIEW" {
			var a, b string
			if err := db.QueryRow("SHOW CREATE VIEW "+name).Scan(&n, &def, &a, &b); err != nil {
				t.Fatal(err)
			}
			out[name] = def
			continue
		}
		if err := db.QueryRow("SHOW CREATE TABLE "+name).Scan(&n, &def); err != nil {
			t.Fatal(err)
		}
		var sum sql.NullInt64
		if err := db.QueryRow("CHECKSUM TABLE "+name).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		var count int
		if err := db.QueryRow("SELECT COUNT(*) FROM " + name).Scan(&count); err != nil {
			t.Fatal(err)
		}
		out[name] = fmt.Sprintf("rows=%d checksum=%v\n%s", count, sum.Int64, autoIncRE.ReplaceAllString(def, ""))
	}
	return out
}

// sameData fails the test unless both servers hold the same tables with
// the same checksums.
func sameData(t *testing.T, a, b *sql.DB) map[string]string {
	t.Helper()
	fa, fb := fingerprint(t, a), fingerprint(t, b)
	var diffs []string
	for k, v := range fa {
		if fb[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s:\n source: %s\n target: %s", k, v, fb[k]))
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: only on the target", k))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("data differs:\n%s", strings.Join(diffs, "\n"))
	}
	if len(fa) == 0 {
		t.Fatal("no tables compared")
	}
	return fa
}

// applyAll applies entries in batches of n.
func applyAll(t *testing.T, a *Applier, entries []backlog.Entry, n int) backlog.Position {
	t.Helper()
	var pos backlog.Position
	for i := 0; i < len(entries); i += n {
		j := min(i+n, len(entries))
		var err error
		pos, err = a.Apply(context.Background(), entries[i:j])
		if err != nil {
			t.Fatalf("apply offsets %d-%d: %v", entries[i].Offset, entries[j-1].Offset, err)
		}
	}
	return pos
}
