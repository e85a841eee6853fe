package apply

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// workload exercises every kind of change and many column types. Each
// string is run on its own connection call; a slice in one transaction.
var workload = [][]string{
	{"CREATE DATABASE shop"},
	{"CREATE DATABASE `we``ird db`"},
	{`CREATE TABLE shop.items (
		id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
		name VARCHAR(100) CHARACTER SET utf8mb4,
		price DECIMAL(12,3), f FLOAT, d DOUBLE,
		ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, bi BIGINT, iu INT UNSIGNED,
		bin VARBINARY(64), bl BLOB, tx TEXT, ch CHAR(10), lat VARCHAR(20) CHARACTER SET latin1,
		dt DATETIME(6), ts TIMESTAMP(6) NULL, da DATE, tm TIME(3), yr YEAR,
		js JSON, en ENUM('a','b','c'), st SET('x','y','z'), bt BIT(12),
		gen INT AS (ti * 2) VIRTUAL, gs VARCHAR(120) AS (CONCAT(name, '!')) PERSISTENT,
		created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
		KEY (name)
	)`},
	{`INSERT INTO shop.items (name, price, f, d, ti, si, mi, bi, iu, bin, bl, tx, ch, lat, dt, ts, da, tm, yr, js, en, st, bt) VALUES
		('plain', 12.5, 1.1, 0.1, -128, 65535, -8388608, -9223372036854775808, 4294967295,
		 x'00ff27275c0a0d1a', x'', 'text with ''quotes'' and \\backslash', 'pad', 'caf\xe9',
		 '2024-02-29 23:59:59.999999', '2024-01-01 00:00:00.5', '1000-01-01', '-838:59:59.000', 1901,
		 '{"a": [1, 2.5, "x"], "b": null}', 'b', 'x,z', b'101010101010'),
		('emoji 😀 ünï', -0.001, -3.4e38, 1.7976931348623157e308, 127, 0, 8388607, 9223372036854775807, 0,
		 NULL, REPEAT(x'01020300', 5000), NULL, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', 0),
		('nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`},
	{"INSERT INTO shop.items (name, f, d, ts) VALUES ('tiny', 1e-45, 5e-324, NOW(6))"},
	{"INSERT INTO shop.items (id, name) VALUES (0, 'zero id')"},
	{"UPDATE shop.items SET price = price * 2, name = CONCAT(name, ' v2'), ts = NOW() WHERE id <= 2"},
	{"UPDATE shop.items SET bl = NULL WHERE name = 'nulls'"},
	{"UPDATE shop.items SET ti = 5 WHERE id = 4"},
	{"DELETE FROM shop.items WHERE name = 'tiny'"},
	// A multi-statement transaction, and one that rolls back (not in the binlog).
	{"BEGIN", "INSERT INTO shop.items (name) VALUES ('tx1'), ('tx2')", "UPDATE shop.items SET name = 'tx1b' WHERE name = 'tx1'", "DELETE FROM shop.items WHERE name = 'tx2'", "COMMIT"},
	{"BEGIN", "INSERT INTO shop.items (name) VALUES ('gone')", "ROLLBACK"},
	// Savepoints: the rows before the savepoint stay, those after go.
	{"BEGIN", "INSERT INTO shop.items (name) VALUES ('sp1')", "SAVEPOINT a", "INSERT INTO shop.items (name) VALUES ('sp2')",
		"ROLLBACK TO SAVEPOINT a", "INSERT INTO shop.items (name) VALUES ('sp3')", "COMMIT"},
	// Non-transactional tables, alone and mixed with InnoDB.
	{"CREATE TABLE shop.myi (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MyISAM"},
	{"CREATE TABLE shop.ari (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=Aria"},
	{"INSERT INTO shop.myi VALUES (1, 'a'), (2, 'b')"},
	{"UPDATE shop.ari SET v = 'x'"},
	{"INSERT INTO shop.ari VALUES (1, 'a')"},
	{"BEGIN", "INSERT INTO shop.myi VALUES (3, 'c')", "INSERT INTO shop.items (name) VALUES ('mixed')", "COMMIT"},
	{"DELETE FROM shop.myi WHERE id = 1"},
	// A table with no primary key and duplicate rows that differ by case.
	{"CREATE TABLE shop.log (msg VARCHAR(20), n INT, f FLOAT)"},
	{"INSERT INTO shop.log VALUES ('a', 1, 0.1), ('a', 1, 0.1), ('A', 1, 0.1), ('b', NULL, NULL)"},
	{"DELETE FROM shop.log WHERE msg = BINARY 'a' LIMIT 1"},
	{"UPDATE shop.log SET n = 2 WHERE msg = BINARY 'A'"},
	{"UPDATE shop.log SET msg = 'c' WHERE n IS NULL"},
	// Foreign keys: the cascade is not in the binlog; the follower cascades.
	{"CREATE TABLE shop.parent (id INT PRIMARY KEY)"},
	{"CREATE TABLE shop.child (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES shop.parent (id) ON DELETE CASCADE)"},
	{"INSERT INTO shop.parent VALUES (1), (2)"},
	{"INSERT INTO shop.child VALUES (10, 1), (11, 1), (12, 2)"},
	{"DELETE FROM shop.parent WHERE id = 1"},
	// DDL: a column whose default fills existing rows with the DDL's time.
	{"ALTER TABLE shop.items ADD COLUMN added DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"},
	{"CREATE INDEX by_price ON shop.items (price)"},
	{"CREATE TABLE shop.copy SELECT id, name, price FROM shop.items"},
	{"RENAME TABLE shop.copy TO shop.copied"},
	{"CREATE TABLE `we``ird db`.`t;x` (`c``1` INT PRIMARY KEY, `v;` VARCHAR(10))"},
	{"INSERT INTO `we``ird db`.`t;x` VALUES (1, 'a;b'), (2, ';')"},
	{"CREATE VIEW shop.cheap AS SELECT id, name FROM shop.items WHERE price < 100"},
	{"CREATE TABLE shop.tmp (a INT)"},
	{"DROP TABLE shop.tmp"},
	{"TRUNCATE TABLE shop.log"},
	{"INSERT INTO shop.log VALUES ('after truncate', 9, 9)"},
	// replicar's own schema is never captured.
	{"CREATE DATABASE IF NOT EXISTS __replicar"},
	{"CREATE TABLE __replicar.scratch (a INT PRIMARY KEY)"},
	{"INSERT INTO __replicar.scratch VALUES (1)"},
	{"DROP TABLE __replicar.scratch"},
	// Statements in USE context, with an AUTO_INCREMENT id from the server.
	{"USE shop", "INSERT INTO items (name, price) VALUES ('ctx', 1)", "ALTER TABLE items DROP COLUMN tx"},
	{"USE shop", "UPDATE items SET d = RAND(7) WHERE name = 'ctx'"},
}

// concurrentTransfers runs transfers between ten accounts from several
// goroutines at once: conflicting transactions whose binlog order is
// their commit order, which the follower must follow.
func concurrentTransfers(t *testing.T, db *sql.DB, writers, each int) {
	t.Helper()
	mustExec(t, db, "CREATE TABLE shop.acct (id INT PRIMARY KEY, bal BIGINT NOT NULL, moves INT NOT NULL DEFAULT 0)",
		"INSERT INTO shop.acct (id, bal) VALUES (0,100),(1,100),(2,100),(3,100),(4,100),(5,100),(6,100),(7,100),(8,100),(9,100)")
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for done := 0; done < each; {
				from, to, amt := r.IntN(10), r.IntN(10), 1+r.IntN(20)
				tx, err := db.Begin()
				if err != nil {
					t.Error(err)
					return
				}
				_, err1 := tx.Exec("UPDATE shop.acct SET bal = bal - ?, moves = moves + 1 WHERE id = ?", amt, from)
				_, err2 := tx.Exec("UPDATE shop.acct SET bal = bal + ?, moves = moves + 1 WHERE id = ?", amt, to)
				if err1 != nil || err2 != nil {
					tx.Rollback() // a deadlock: try another transfer
					continue
				}
				if err := tx.Commit(); err != nil {
					continue
				}
				done++
			}
		}()
	}
	wg.Wait()
}

func TestCaptureApplyEndToEnd(t *testing.T) {
	src, dst := startMariaDB(t), startMariaDB(t)
	sdb := src.DB()
	log := &memLog{epoch: 1}
	c := startCapture(t, src, log)
	ctx := context.Background()
	// A pool of its own: its connections keep the USE of the workload.
	wdb := src.DB()
	for _, tx := range workload {
		conn, err := wdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range tx {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		conn.Close()
	}
	concurrentTransfers(t, src.DB(), 4, 40)
	waitCaught(t, c, sdb)
	entries := log.after(0)
	kinds := map[rowlog.Kind]int{}
	for _, e := range entries {
		tx, err := rowlog.Decode(e.Payload)
		if err != nil {
			t.Fatalf("offset %d: %v", e.Offset, err)
		}
		kinds[tx.Kind]++
		for _, ch := range tx.Changes {
			if ch.Stmt != nil && strings.Contains(ch.Stmt.SQL, Schema) {
				t.Fatalf("offset %d captures replicar's schema: %s", e.Offset, ch.Stmt.SQL)
			}
			if ch.Rows != nil && tx.Tables[ch.Rows.Table].Schema == Schema {
				t.Fatalf("offset %d captures rows of replicar's schema", e.Offset)
			}
		}
	}
	t.Logf("%d entries: %d transactions, %d DDL", len(entries), kinds[rowlog.KindTx], kinds[rowlog.KindDDL])

	a := NewApplier(dst.Addr, Options{User: dst.User, Password: dst.Password}, testLogger(t))
	defer a.Close()
	if pos, err := a.Position(ctx); err != nil || pos != (backlog.Position{}) {
		t.Fatalf("fresh position %v, %v", pos, err)
	}
	// Batches of 3: DDL and transactions mixed in one call.
	pos := applyAll(t, a, entries, 3)
	if pos.Offset != uint64(len(entries)) {
		t.Fatalf("applied to %v, want offset %d", pos, len(entries))
	}
	fp := sameData(t, sdb, dst.DB())
	var total int
	if err := dst.DB().QueryRow("SELECT SUM(bal) FROM shop.acct").Scan(&total); err != nil || total != 1000 {
		t.Fatalf("bank total on the follower: %d, %v", total, err)
	}
	t.Logf("%d tables equal; stats %+v", len(fp), a.Stats())

	// Replaying is a no-op; a replay from another epoch is divergence.
	if p, err := a.Apply(ctx, entries); err != nil || p != pos {
		t.Fatalf("replay: %v, %v", p, err)
	}
	bad := entries[len(entries)-1]
	bad.Epoch = 2
	if _, err := a.Apply(ctx, []backlog.Entry{bad}); !errors.Is(err, ErrDiverged) {
		t.Fatalf("other epoch at the stored offset: %v", err)
	}
	// A gap is refused before anything runs.
	if _, err := a.Apply(ctx, []backlog.Entry{{Epoch: 1, Offset: pos.Offset + 2, Payload: entries[0].Payload}}); !errors.Is(err, ErrGap) {
		t.Fatalf("gap: %v", err)
	}
	// A fresh Applier reads the position back from the store.
	b := NewApplier(dst.Addr, Options{User: dst.User, Password: dst.Password}, testLogger(t))
	defer b.Close()
	if p, err := b.Position(ctx); err != nil || p != pos {
		t.Fatalf("position read back %v, %v; want %v", p, err, pos)
	}
}
