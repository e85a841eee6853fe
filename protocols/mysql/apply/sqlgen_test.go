package apply

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

func TestLiterals(t *testing.T) {
	w := &txWriter{env: &env{charsets: map[uint32]string{45: "utf8mb4", 8: "latin1"}}}
	col := func(coll uint32) *rowlog.Column { return &rowlog.Column{Name: "c", Collation: coll} }
	for _, c := range []struct {
		col  *rowlog.Column
		v    rowlog.Value
		want string
	}{
		{col(0), rowlog.Value{Kind: rowlog.Null}, "NULL"},
		{col(0), rowlog.Value{Kind: rowlog.Int, Int: math.MinInt64}, "-9223372036854775808"},
		{col(0), rowlog.Value{Kind: rowlog.Uint, Uint: math.MaxUint64}, "18446744073709551615"},
		{col(0), rowlog.Value{Kind: rowlog.Float32, Float: float64(float32(1.1))}, "1.100000023841858e0"},
		{col(0), rowlog.Value{Kind: rowlog.Float64, Float: 1e300}, "1e+300"},
		{col(0), rowlog.Value{Kind: rowlog.Float64, Float: math.Copysign(0, -1)}, "-0e0"},
		{col(0), rowlog.Value{Kind: rowlog.Decimal, Bytes: []byte("-12.340")}, "-12.340"},
		{col(0), rowlog.Value{Kind: rowlog.Temporal, Bytes: []byte("2024-01-02 03:04:05.5")}, "'2024-01-02 03:04:05.5'"},
		{col(63), rowlog.Value{Kind: rowlog.Bytes, Bytes: []byte("a\x00'\\\n\r\x1ab")}, `_binary'a\0\'\\\n\r\Zb'`},
		{col(45), rowlog.Value{Kind: rowlog.Bytes, Bytes: []byte("é")}, "_utf8mb4'é'"},
		{col(8), rowlog.Value{Kind: rowlog.Bytes, Bytes: []byte{0xe9}}, "_latin1'\xe9'"},
	} {
		got, err := w.literal(nil, c.col, c.v)
		if err != nil || string(got) != c.want {
			t.Errorf("%+v: got %s (%v), want %s", c.v, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "-", "1e5", "1;DROP", "1.2.3", "--1"} {
		if _, err := w.literal(nil, col(0), rowlog.Value{Kind: rowlog.Decimal, Bytes: []byte(bad)}); err == nil {
			t.Errorf("decimal %q accepted", bad)
		}
	}
	if _, err := w.literal(nil, col(99), rowlog.Value{Kind: rowlog.Bytes}); err == nil {
		t.Error("unknown collation accepted")
	}
	if got := quoteIdent("a`b"); got != "`a``b`" {
		t.Errorf("quoteIdent: %s", got)
	}
}

func TestRowsSQL(t *testing.T) {
	e := &env{charsets: map[uint32]string{45: "utf8mb4"}, generated: map[string]map[string]bool{tableKey("s", "t"): {"g": true}}}
	tb := rowlog.Table{Schema: "s", Name: "t", Columns: []rowlog.Column{{Name: "id"}, {Name: "v", Collation: 45}, {Name: "g"}}, PrimaryKey: []int{0}}
	nokey := rowlog.Table{Schema: "s", Name: "n", Columns: []rowlog.Column{{Name: "a"}, {Name: "v", Collation: 45}}}
	i := func(n int64) rowlog.Value { return rowlog.Value{Kind: rowlog.Int, Int: n} }
	s := func(v string) rowlog.Value { return rowlog.Value{Kind: rowlog.Bytes, Bytes: []byte(v)} }
	tx := &rowlog.Txn{Kind: rowlog.KindTx, Tables: []rowlog.Table{tb, nokey}, Changes: []rowlog.Change{
		{Rows: &rowlog.Rows{Op: rowlog.Insert, AfterCols: []int{0, 1, 2}, Rows: []rowlog.Row{{After: []rowlog.Value{i(1), s("a"), i(2)}}, {After: []rowlog.Value{i(2), s("b"), i(4)}}}}},
		{Rows: &rowlog.Rows{Op: rowlog.Update, BeforeCols: []int{0, 1, 2}, AfterCols: []int{0, 1, 2}, Flags: rowlog.FlagNoForeignKeyChecks,
			Rows: []rowlog.Row{{Before: []rowlog.Value{i(1), s("a"), i(2)}, After: []rowlog.Value{i(1), s("c"), i(2)}}, {Before: []rowlog.Value{i(2), s("b"), i(4)}, After: []rowlog.Value{i(2), s("b"), i(4)}}}}},
		{Rows: &rowlog.Rows{Op: rowlog.Delete, Table: 1, BeforeCols: []int{0, 1}, Rows: []rowlog.Row{{Before: []rowlog.Value{{Kind: rowlog.Null}, s("X")}}}}},
	}}
	w := &txWriter{env: e, maxChunk: 1 << 20}
	w.begin(backlog.Position{Epoch: 1, Offset: 4}, backlog.Position{Epoch: 2, Offset: 6})
	if err := w.changes(tx, 0); err != nil {
		t.Fatal(err)
	}
	w.flush()
	check := func(n int, errno int, what string) string {
		return fmt.Sprintf("IF ROW_COUNT()<>%d THEN SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO=%d, MESSAGE_TEXT='replicar: %s'; END IF", n, errno, what)
	}
	mismatch := func(n int) string {
		return check(n, 1032, fmt.Sprintf("offset 0: a statement matched other than %d rows", n))
	}
	want := []string{
		"START TRANSACTION",
		"UPDATE `__replicar`.`pos` SET `epoch`=2,`offset`=6,`ddl_offset`=0 WHERE `id`=1 AND `epoch`=1 AND `offset`=4 AND `state`=''",
		check(1, 1644, "position moved"),
		"INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,_utf8mb4'a'),(2,_utf8mb4'b')",
		mismatch(2),
		"SET SESSION foreign_key_checks=0,unique_checks=1",
		"UPDATE `s`.`t` SET `v`=_utf8mb4'c' WHERE `id`<=>1 LIMIT 1",
		mismatch(1),
		"UPDATE `s`.`t` SET `id`=2 WHERE `id`<=>2 LIMIT 1",
		mismatch(1),
		baselineTxSQL,
		"DELETE FROM `s`.`n` WHERE `a`<=>NULL AND CAST(`v` AS BINARY)<=>_binary'X' LIMIT 1",
		mismatch(1),
	}
	if len(w.chunks) != 1 {
		t.Fatalf("%d chunks", len(w.chunks))
	}
	if got := string(w.chunks[0].sql); got != strings.Join(want, ";") {
		t.Fatalf("got\n%s\nwant\n%s", strings.ReplaceAll(got, ";", ";\n"), strings.Join(want, ";\n"))
	}
	exp := w.chunks[0].expect
	if len(exp) != len(want) || exp[1] != 1 || exp[3] != 2 || exp[6] != 1 || exp[11] != 1 || exp[0] != noCheck || exp[2] != noCheck {
		t.Fatalf("expected counts %v", exp)
	}
	// A small chunk limit splits between statements (a statement stays
	// with its check), never inside one.
	small := &txWriter{env: e, maxChunk: 10}
	small.begin(backlog.Position{Epoch: 1, Offset: 4}, backlog.Position{Epoch: 2, Offset: 6})
	if err := small.changes(tx, 0); err != nil {
		t.Fatal(err)
	}
	small.flush()
	var all []string
	for _, c := range small.chunks {
		all = append(all, string(c.sql))
	}
	if len(small.chunks) != 8 || strings.Join(all, ";") != strings.Join(want, ";") {
		t.Fatalf("%d chunks: %q", len(small.chunks), all)
	}
}

// TestApplyStatements applies a statement-mode transaction, as the front
// end will log it: the injected session values make NOW(), RAND(),
// AUTO_INCREMENT and LAST_INSERT_ID() give the primary's results, and the
// row changes after it still see the baseline session.
func TestApplyStatements(t *testing.T) {
	m := startMariaDB(t)
	db := m.DB()
	mustExec(t, db, "CREATE DATABASE s", "CREATE TABLE s.t (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6), r DOUBLE, l BIGINT, ts TIMESTAMP(6) NULL)")
	var wantRand float64
	conn, _ := db.Conn(context.Background())
	if _, err := conn.ExecContext(context.Background(), "SET SESSION rand_seed1=11, rand_seed2=22"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(context.Background(), "SELECT RAND()").Scan(&wantRand); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	ses := rowlog.Session{
		Has:    rowlog.HasSchema | rowlog.HasSQLMode | rowlog.HasTimestamp | rowlog.HasInsertID | rowlog.HasRandSeed | rowlog.HasCharset | rowlog.HasTimeZone,
		Schema: "s", SQLMode: "STRICT_TRANS_TABLES", Timestamp: 1700000000_123456, InsertID: 77, RandSeed1: 11, RandSeed2: 22,
		CharsetClient: 45, CollationConnection: 45, CollationServer: 45, TimeZone: "+05:00",
	}
	ses2 := rowlog.Session{Has: rowlog.HasLastInsertID | rowlog.HasSchema, Schema: "s", LastInsertID: 77}
	tx := &rowlog.Txn{Kind: rowlog.KindTx,
		Tables: []rowlog.Table{{Schema: "s", Name: "t", Columns: []rowlog.Column{{Name: "id"}, {Name: "at"}, {Name: "r"}, {Name: "l"}, {Name: "ts", Type: 17}}, PrimaryKey: []int{0}}},
		Changes: []rowlog.Change{
			{Stmt: &rowlog.Statement{SQL: "INSERT INTO t (at, r) VALUES (NOW(6), RAND())", Session: ses}},
			{Stmt: &rowlog.Statement{SQL: "UPDATE t SET l = LAST_INSERT_ID() WHERE id = 77", Session: ses2}},
			// A row change after them: its TIMESTAMP is in UTC, whatever
			// time_zone the statements set.
			{Rows: &rowlog.Rows{Op: rowlog.Insert, AfterCols: []int{0, 4}, Rows: []rowlog.Row{{After: []rowlog.Value{
				{Kind: rowlog.Int, Int: 5}, {Kind: rowlog.Temporal, Bytes: []byte("2023-11-14 22:13:20.000000")}}}}}},
		}}
	p, err := rowlog.Encode(tx)
	if err != nil {
		t.Fatal(err)
	}
	a := NewApplier(m.Addr, Options{User: m.User, Password: m.Password}, testLogger(t))
	defer a.Close()
	if _, err := a.Apply(context.Background(), []backlog.Entry{{Epoch: 1, Offset: 1, Payload: p}}); err != nil {
		t.Fatal(err)
	}
	var at string
	var r float64
	var l int64
	if err := db.QueryRow("SELECT at, r, l FROM s.t WHERE id = 77").Scan(&at, &r, &l); err != nil {
		t.Fatal(err)
	}
	// 1700000000.123456 is 2023-11-14 22:13:20 UTC, 03:13:20 at +05:00.
	if at != "2023-11-15 03:13:20.123456" || r != wantRand || l != 77 {
		t.Fatalf("at %s, rand %v (want %v), last_insert_id %d", at, r, wantRand, l)
	}
	var unix float64
	if err := db.QueryRow("SELECT UNIX_TIMESTAMP(ts) FROM s.t WHERE id = 5").Scan(&unix); err != nil || unix != 1700000000 {
		t.Fatalf("row change's timestamp: %v, %v", unix, err)
	}
}

// TestApplyRefusesMismatch: an UPDATE of a row the follower lacks rolls
// back the whole batch with ErrRowMismatch, and a position moved behind
// the applier's back stops it with ErrPositionMoved.
func TestApplyRefusesMismatch(t *testing.T) {
	m := startMariaDB(t)
	db := m.DB()
	mustExec(t, db, "CREATE DATABASE s", "CREATE TABLE s.t (id INT PRIMARY KEY, v INT)")
	tb := []rowlog.Table{{Schema: "s", Name: "t", Columns: []rowlog.Column{{Name: "id"}, {Name: "v"}}, PrimaryKey: []int{0}}}
	i := func(n int64) rowlog.Value { return rowlog.Value{Kind: rowlog.Int, Int: n} }
	entry := func(off uint64, op rowlog.Op, before, after []rowlog.Value) backlog.Entry {
		r := &rowlog.Rows{Op: op, Rows: []rowlog.Row{{Before: before, After: after}}}
		if before != nil {
			r.BeforeCols = []int{0, 1}
		}
		if after != nil {
			r.AfterCols = []int{0, 1}
		}
		p, err := rowlog.Encode(&rowlog.Txn{Kind: rowlog.KindTx, Tables: tb, Changes: []rowlog.Change{{Rows: r}}})
		if err != nil {
			t.Fatal(err)
		}
		return backlog.Entry{Epoch: 1, Offset: off, Payload: p}
	}
	ctx := context.Background()
	a := NewApplier(m.Addr, Options{User: m.User, Password: m.Password}, testLogger(t))
	defer a.Close()
	if _, err := a.Apply(ctx, []backlog.Entry{entry(1, rowlog.Insert, nil, []rowlog.Value{i(1), i(1)})}); err != nil {
		t.Fatal(err)
	}
	batch := []backlog.Entry{
		entry(2, rowlog.Insert, nil, []rowlog.Value{i(2), i(2)}),
		entry(3, rowlog.Update, []rowlog.Value{i(99), i(0)}, []rowlog.Value{i(99), i(1)}),
	}
	pos, err := a.Apply(ctx, batch)
	if !errors.Is(err, ErrRowMismatch) || pos.Offset != 1 {
		t.Fatalf("update of a missing row: %v at %v", err, pos)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM s.t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after the rolled-back batch: %d, %v", n, err)
	}
	if p, err := a.Position(ctx); err != nil || p.Offset != 1 {
		t.Fatalf("position after the rolled-back batch: %v, %v", p, err)
	}
	// A duplicate insert is a mismatch too.
	if _, err := a.Apply(ctx, []backlog.Entry{entry(2, rowlog.Insert, nil, []rowlog.Value{i(1), i(5)})}); !errors.Is(err, ErrRowMismatch) {
		t.Fatalf("duplicate insert: %v", err)
	}
	if _, err := a.Apply(ctx, batch[:1]); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "UPDATE __replicar.pos SET `offset` = 50")
	if _, err := a.Apply(ctx, []backlog.Entry{entry(3, rowlog.Insert, nil, []rowlog.Value{i(3), i(3)})}); !errors.Is(err, ErrPositionMoved) {
		t.Fatalf("moved position: %v", err)
	}
	if p, err := a.Position(ctx); err != nil || p.Offset != 50 {
		t.Fatalf("position reread: %v, %v", p, err)
	}

	// The leading mark: set, read back by another Applier, cleared by
	// SetPosition.
	if err := a.MarkLeading(ctx, 7, "0-1001-9"); err != nil {
		t.Fatal(err)
	}
	b := NewApplier(m.Addr, Options{User: m.User, Password: m.Password}, testLogger(t))
	defer b.Close()
	if l, err := b.ReadLeading(ctx); err != nil || l != (Leading{Epoch: 7, Start: "0-1001-9"}) {
		t.Fatalf("leading mark: %+v, %v", l, err)
	}
	if err := b.SetPosition(ctx, backlog.Position{Epoch: 7, Offset: 60}); err != nil {
		t.Fatal(err)
	}
	if l, err := a.ReadLeading(ctx); err != nil || l != (Leading{}) {
		t.Fatalf("leading mark after SetPosition: %+v, %v", l, err)
	}
}
