package mysql

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	gm "github.com/go-mysql-org/go-mysql/mysql"
)

func TestSplitStatements(t *testing.T) {
	cases := []struct {
		q    string
		want []string
	}{
		{"SELECT 1", []string{"SELECT 1"}},
		{"  SELECT 1 ;  ", []string{"SELECT 1"}},
		{"INSERT INTO t VALUES ('a;b'); UPDATE t SET v = \"x;\" -- c;\n; DELETE FROM t",
			[]string{"INSERT INTO t VALUES ('a;b')", "UPDATE t SET v = \"x;\"", "DELETE FROM t"}},
		{"SELECT 1 /* ; */; SELECT `a;b` FROM t # ;\n", []string{"SELECT 1", "SELECT `a;b` FROM t"}},
		{";;", nil},
		{"/*!40101 SET NAMES utf8 */; SELECT 2", []string{"/*!40101 SET NAMES utf8 */", "SELECT 2"}},
		// sysbench's CREATE TABLE: the statement ends inside an executable
		// comment, whose "*/" it must keep.
		{"CREATE TABLE sbtest1(id INTEGER NOT NULL, PRIMARY KEY (id)) /*! ENGINE = innodb */ ",
			[]string{"CREATE TABLE sbtest1(id INTEGER NOT NULL, PRIMARY KEY (id)) /*! ENGINE = innodb */"}},
		{"CREATE TABLE t (a INT) /*!50100 ENGINE = InnoDB */; /*M!100100 SELECT 1 */",
			[]string{"CREATE TABLE t (a INT) /*!50100 ENGINE = InnoDB */", "/*M!100100 SELECT 1 */"}},
		{"/*!40101 SET @a = 1; SET @b = 2 */", []string{"SET @a = 1", "SET @b = 2"}},
		{"CREATE PROCEDURE p() BEGIN INSERT INTO t VALUES (1); IF x THEN SELECT 1; END IF; CASE y WHEN 1 THEN DO 1; END CASE; END; SELECT 3",
			[]string{"CREATE PROCEDURE p() BEGIN INSERT INTO t VALUES (1); IF x THEN SELECT 1; END IF; CASE y WHEN 1 THEN DO 1; END CASE; END", "SELECT 3"}},
		{"CREATE DEFINER=`u`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = IF(NEW.b, 1, 2); END; INSERT INTO t VALUES (1)",
			[]string{"CREATE DEFINER=`u`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = IF(NEW.b, 1, 2); END", "INSERT INTO t VALUES (1)"}},
		{"CREATE FUNCTION f() RETURNS INT RETURN 1; SELECT f()", []string{"CREATE FUNCTION f() RETURNS INT RETURN 1", "SELECT f()"}},
		{"BEGIN; INSERT INTO t VALUES (1); COMMIT", []string{"BEGIN", "INSERT INTO t VALUES (1)", "COMMIT"}},
		{"BEGIN NOT ATOMIC INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); END", []string{"BEGIN NOT ATOMIC INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); END"}},
		{"CREATE TABLE IF NOT EXISTS t (a INT); DROP TABLE IF EXISTS u", []string{"CREATE TABLE IF NOT EXISTS t (a INT)", "DROP TABLE IF EXISTS u"}},
	}
	for _, c := range cases {
		var got []string
		for _, p := range splitStatements(c.q, true) {
			got = append(got, p.text)
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q:\n got %q\nwant %q", c.q, got, c.want)
		}
	}
	// Token positions are relative to the piece.
	ps := splitStatements("SELECT 1; INSERT INTO t VALUES (?)", true)
	tok := ps[1].toks[len(ps[1].toks)-2]
	if tok.kind != tkParam || ps[1].text[tok.pos:tok.end] != "?" {
		t.Errorf("placeholder token %+v in %q", tok, ps[1].text)
	}
}

func TestScanVariables(t *testing.T) {
	toks := sqlScan("SELECT @a, @`b c`, @'d', @@SESSION.sql_mode, @@global.`x`, @@server_id, ?", true)
	var got []string
	for _, tk := range toks {
		switch tk.kind {
		case tkUserVar:
			got = append(got, "u:"+tk.text)
		case tkSysVar:
			got = append(got, "s:"+tk.text)
		case tkParam:
			got = append(got, "?")
		}
	}
	if want := "u:a u:b c u:d s:sql_mode s:x s:server_id ?"; strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
}

// analyze is analyzeStatement on a whole statement.
func analyze(q string) stmtInfo {
	return analyzeStatement(q, sqlScan(q, true))
}

func TestAnalyzeActions(t *testing.T) {
	cases := []struct {
		q      string
		action stmtAction
		unsafe string // a part of the reason, for actRefuse
	}{
		{"SELECT * FROM t", actPass, ""},
		{"SET @x = 1", actPass, ""},
		{"SET autocommit = 0", actPass, ""},
		{"SET autocommit = 1", actImplicitCommit, ""},
		{"SET SESSION autocommit=ON", actImplicitCommit, ""},
		{"BEGIN", actImplicitCommit, ""},
		{"LOCK TABLES t WRITE", actImplicitCommit, ""},
		{"COMMIT", actCommit, ""},
		{"ROLLBACK", actRollback, ""},
		{"ROLLBACK TO SAVEPOINT a", actSavepoint, ""},
		{"SAVEPOINT a", actSavepoint, ""},
		{"RELEASE SAVEPOINT a", actSavepoint, ""},
		{"INSERT INTO t VALUES (1, NOW(), RAND())", actWrite, ""},
		{"UPDATE t SET a = a + 1 WHERE id = 3", actWrite, ""},
		{"UPDATE t SET a = 1 ORDER BY id LIMIT 5", actWrite, ""},
		{"DELETE FROM t LIMIT 0", actWrite, ""},
		{"CREATE TABLE t (id INT PRIMARY KEY, u CHAR(36) DEFAULT (UUID()))", actDDL, ""},
		{"ALTER TABLE t ADD COLUMN c INT", actDDL, ""},
		{"CREATE FUNCTION f() RETURNS CHAR(36) NOT DETERMINISTIC RETURN UUID()", actDDL, ""},
		{"FLUSH TABLES WITH READ LOCK", actImplicitCommit, ""},
		{"ANALYZE NO_WRITE_TO_BINLOG TABLE t", actImplicitCommit, ""},
		{"DO GET_LOCK('x', 1)", actPass, ""},
		{"INSERT INTO user (id) VALUES (1)", actWrite, ""},
		{"INSERT INTO t (a) SELECT 1", actWrite, ""},
		{"INSERT INTO t SELECT * FROM u ORDER BY id", actWrite, ""},
		{"SET STATEMENT max_statement_time=10 FOR UPDATE t SET a = 1", actWrite, ""},
		{"INSERT INTO t SELECT @@auto_increment_increment", actWrite, ""},
		{"INSERT INTO t VALUES (UUID())", actRefuse, "UUID()"},
		{"UPDATE t SET v = SLEEP(0) WHERE id = 1", actRefuse, "SLEEP()"},
		{"INSERT INTO t VALUES (BENCHMARK(10, 1))", actRefuse, "BENCHMARK()"},
		{"INSERT INTO t VALUES (VERSION())", actRefuse, "VERSION()"},
		{"INSERT INTO t SELECT MASTER_POS_WAIT('f', 4)", actRefuse, "MASTER_POS_WAIT()"},
		{"INSERT INTO t VALUES (uuid_short())", actRefuse, "UUID_SHORT()"},
		{"UPDATE t SET d = SYSDATE()", actRefuse, "SYSDATE()"},
		{"INSERT INTO t VALUES (USER())", actRefuse, "USER()"},
		{"INSERT INTO t VALUES (CURRENT_USER)", actRefuse, "CURRENT_USER"},
		{"INSERT INTO t VALUES (FOUND_ROWS())", actRefuse, "FOUND_ROWS()"},
		{"INSERT INTO t VALUES (ROW_COUNT())", actRefuse, "ROW_COUNT()"},
		{"INSERT INTO t VALUES (LOAD_FILE('/etc/passwd'))", actRefuse, "LOAD_FILE()"},
		{"UPDATE t SET a = GET_LOCK('x', 0)", actRefuse, "GET_LOCK()"},
		{"UPDATE t SET a = RELEASE_LOCK('x')", actRefuse, "RELEASE_LOCK()"},
		{"INSERT INTO t VALUES (CONNECTION_ID())", actRefuse, "CONNECTION_ID()"},
		{"INSERT INTO t VALUES (@@server_id)", actRefuse, "@@server_id"},
		{"INSERT INTO t VALUES (@@hostname)", actRefuse, "@@hostname"},
		{"UPDATE t SET a = 1 LIMIT 1", actRefuse, "LIMIT without ORDER BY"},
		{"DELETE FROM t WHERE a > 1 LIMIT 10", actRefuse, "LIMIT without ORDER BY"},
		{"UPDATE t SET a = (SELECT b FROM u LIMIT 1) ORDER BY id", actRefuse, "LIMIT without ORDER BY"},
		{"INSERT INTO t SELECT * FROM u LIMIT 3", actRefuse, "LIMIT without ORDER BY"},
		{"INSERT IGNORE INTO t SELECT * FROM u", actRefuse, "INSERT IGNORE … SELECT"},
		{"REPLACE INTO t SELECT * FROM u", actRefuse, "REPLACE … SELECT"},
		{"INSERT INTO t SELECT * FROM u ON DUPLICATE KEY UPDATE a = 1", actRefuse, "ON DUPLICATE KEY UPDATE without ORDER BY"},
		{"CREATE TABLE t2 IGNORE SELECT * FROM t", actRefuse, "IGNORE SELECT"},
		{"CREATE TABLE t2 (id INT AUTO_INCREMENT PRIMARY KEY) SELECT a FROM t", actRefuse, "AUTO_INCREMENT"},
		{"UPDATE IGNORE t SET a = a + 1", actRefuse, "UPDATE IGNORE"},
		{"INSERT DELAYED INTO t VALUES (1)", actRefuse, "DELAYED"},
		{"LOAD DATA INFILE '/tmp/x' INTO TABLE t", actRefuse, "LOAD DATA"},
		{"LOAD DATA LOCAL INFILE 'x' INTO TABLE t", actRefuse, "LOAD DATA"},
		{"XA START 'x'", actRefuse, "XA"},
		{"XA COMMIT 'x'", actRefuse, "XA"},
		{"XA RECOVER", actPass, ""},
		{"CREATE TEMPORARY TABLE tmp (a INT)", actRefuse, "temporary"},
		{"CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO DELETE FROM t", actRefuse, "event"},
		{"BEGIN NOT ATOMIC INSERT INTO t VALUES (1); END", actRefuse, "compound"},
		{"INSERT INTO t VALUES (NEXT VALUE FOR s)", actRefuse, "sequence"},
		{"SELECT NEXTVAL(s)", actRefuse, "sequence"},
		{"DO SETVAL(s, 10)", actRefuse, "sequence"},
		{"INSERT INTO t VALUES (1) RETURNING id", actRefuse, "RETURNING"},
		{"UPDATE __replicar.pos SET epoch = 0", actRefuse, "__replicar"},
		{"DELETE FROM mysql.general_log", actRefuse, "log tables"},
		{"BINLOG 'abc'", actRefuse, "BINLOG"},
		{"ALTER TABLE t ADD COLUMN u CHAR(36) DEFAULT (UUID())", actRefuse, "UUID()"},
		{"CREATE TABLE t2 AS SELECT @x", actRefuse, "user variable"},
	}
	for _, c := range cases {
		info := analyze(c.q)
		if info.action != c.action {
			t.Errorf("%q: action %d (%s), want %d", c.q, info.action, info.unsafe, c.action)
			continue
		}
		if c.unsafe != "" && !strings.Contains(info.unsafe, c.unsafe) {
			t.Errorf("%q: reason %q, want it to mention %q", c.q, info.unsafe, c.unsafe)
		}
	}
}

func TestAnalyzeShape(t *testing.T) {
	info := analyze("INSERT LOW_PRIORITY IGNORE INTO db1.`t 1` (a, b) VALUES (?, LAST_INSERT_ID()) ON DUPLICATE KEY UPDATE b = VALUES(b) + @inc")
	if len(info.targets) != 1 || info.targets[0] != (tableRef{"db1", "t 1"}) || !info.onDupKey || info.insertSelect || !info.lastInsertID ||
		len(info.params) != 1 || len(info.userVars) != 1 || info.userVars[0] != "inc" {
		t.Errorf("insert: %+v", info)
	}
	info = analyze("UPDATE a JOIN b ON a.id = b.id, c SET a.x = 1")
	if !info.multiTable || len(info.targets) != 3 {
		t.Errorf("multi-table update: %+v", info.targets)
	}
	info = analyze("DELETE FROM t WHERE id IN (SELECT id FROM u)")
	if len(info.targets) != 1 || info.targets[0].name != "t" || info.multiTable {
		t.Errorf("delete: %+v", info)
	}
	info = analyze("INSERT INTO t (a) (SELECT a FROM u ORDER BY a)")
	if !info.insertSelect || !info.ordered {
		t.Errorf("insert select: %+v", info)
	}
	info = analyze("SET timestamp = 1700000000, @a = 1")
	if !info.setsTimestamp || info.resetsTimestamp {
		t.Errorf("set timestamp: %+v", info)
	}
	info = analyze("SET @@session.timestamp = DEFAULT")
	if !info.setsTimestamp || !info.resetsTimestamp {
		t.Errorf("reset timestamp: %+v", info)
	}
	info = analyze("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
	if info.setsIsolation != "READ COMMITTED" {
		t.Errorf("set transaction: %+v", info)
	}
	info = analyze("EXECUTE s1 USING @a, @b")
	if info.executeName != "s1" || len(info.userVars) != 2 {
		t.Errorf("execute: %+v", info)
	}
	info = analyze("CALL db.p(1)")
	if info.callName != "db.p" {
		t.Errorf("call: %+v", info)
	}
	if got := preparedText("PREPARE s FROM 'INSERT INTO t VALUES (?, ''x'', \\'y\\')'", false); got != "INSERT INTO t VALUES (?, 'x', 'y')" {
		t.Errorf("prepared text %q", got)
	}
}

func TestUnsafeExpressionAndTriggerTargets(t *testing.T) {
	if unsafeExpression("uuid()") == "" || unsafeExpression("(rand() * 10)") == "" || unsafeExpression("current_timestamp()") != "" || unsafeExpression("'uuid'") != "" {
		t.Error("unsafeExpression")
	}
	got := insertTargets("BEGIN INSERT INTO audit (x) VALUES (NEW.a); REPLACE other.log SET y = 1; UPDATE z SET a = 1; END", "db")
	if len(got) != 2 || got[0] != (tableRef{"db", "audit"}) || got[1] != (tableRef{"other", "log"}) {
		t.Errorf("trigger targets %+v", got)
	}
}

func TestExecuteParams(t *testing.T) {
	var b []byte
	b = append(b, gm.COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0)
	n := 9
	nulls := make([]byte, (n+7)/8)
	nulls[0] = 1 << 6 // parameter 7 is NULL
	b = append(b, nulls...)
	b = append(b, 1) // types bound
	types := []byte{
		gm.MYSQL_TYPE_TINY, 0,
		gm.MYSQL_TYPE_LONGLONG, 0x80,
		gm.MYSQL_TYPE_DOUBLE, 0,
		gm.MYSQL_TYPE_VAR_STRING, 0,
		gm.MYSQL_TYPE_DATETIME, 0,
		gm.MYSQL_TYPE_BLOB, 0,
		gm.MYSQL_TYPE_LONG, 0,
		gm.MYSQL_TYPE_TIME, 0,
		gm.MYSQL_TYPE_NEWDECIMAL, 0,
	}
	b = append(b, types...)
	b = append(b, 0xff)                                                   // -1
	b = binary.LittleEndian.AppendUint64(b, math.MaxUint64)               // unsigned
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(0.1))        // 0.1
	b = append(b, 8, 'i', 't', '\'', 's', ' ', '\\', 'n', 0)              // it's \n<NUL>
	b = append(b, 11, 0xe8, 0x07, 2, 29, 13, 14, 15, 0x40, 0x42, 0x0f, 0) // 2024-02-29 13:14:15.999999+1 → 1000000? see below
	b = append(b, 2, 0x00, 0xff)                                          // blob
	b = append(b, 12, 1, 2, 0, 0, 0, 3, 4, 5, 1, 0, 0, 0)                 // -51:04:05.000001
	b = append(b, 6, '-', '1', '2', '.', '5', '0')
	long := map[int][]byte{}
	lits, err := executeParams(b, n, nil, long, literalStyle{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-1", "18446744073709551615", "1e-01", `'it''s \\n\0'`, "'2024-02-29 13:14:15.1000000'", "X'00ff'", "NULL", "'-51:04:05.000001'", "-12.50"}
	// 0x0f4240 is 1000000 µs, which a client never sends; it shows the
	// value is passed on as given.
	if strings.Join(lits, "|") != strings.Join(want, "|") {
		t.Errorf("got  %q\nwant %q", lits, want)
	}
	// Without bound types, the earlier ones are used; long data replaces
	// a value.
	b2 := append([]byte{gm.COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0}, 0, 0)
	b2 = append(b2, 7)
	lits, err = executeParams(b2, 1, []byte{gm.MYSQL_TYPE_TINY, 0}, nil, literalStyle{})
	if err != nil || len(lits) != 1 || lits[0] != "7" {
		t.Errorf("unbound types: %q %v", lits, err)
	}
	lits, err = executeParams(b2[:12], 1, []byte{gm.MYSQL_TYPE_VAR_STRING, 0}, map[int][]byte{0: []byte("long")}, literalStyle{noBackslash: true})
	if err != nil || len(lits) != 1 || lits[0] != "'long'" {
		t.Errorf("long data: %q %v", lits, err)
	}
	if _, err := executeParams(b[:20], n, nil, nil, literalStyle{}); err == nil {
		t.Error("a short packet decoded")
	}
	s, err := substituteParams("INSERT INTO t VALUES (?, '?', ?)", []int{22, 30}, []string{"1", "'x'"})
	if err != nil || s != "INSERT INTO t VALUES (1, '?', 'x')" {
		t.Errorf("substitute: %q %v", s, err)
	}
}

func TestLiterals(t *testing.T) {
	if got := string(newLiteralStyle("STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES", "utf8mb4").appendString(nil, []byte(`a\'b`))); got != `'a\''b'` {
		t.Errorf("no backslash escapes: %s", got)
	}
	if got := string(newLiteralStyle("", "gbk").appendString(nil, []byte{0xbf, 0x5c})); got != "_gbk X'bf5c'" {
		t.Errorf("gbk: %s", got)
	}
	str := nullString{"a'b", true}
	if got := userVarLiteral(colDef{typ: gm.MYSQL_TYPE_VAR_STRING}, str, nullString{"utf8mb4", true}, nullString{"utf8mb4_general_ci", true}); got != "_utf8mb4 X'612762' COLLATE utf8mb4_general_ci" {
		t.Errorf("string variable: %s", got)
	}
	if got := userVarLiteral(colDef{typ: gm.MYSQL_TYPE_LONGLONG}, nullString{"-42", true}, nullString{"binary", true}, nullString{"binary", true}); got != "-42" {
		t.Errorf("int variable: %s", got)
	}
	if got := userVarLiteral(colDef{typ: gm.MYSQL_TYPE_DOUBLE}, nullString{"0.5", true}, nullString{}, nullString{}); got != "5e-01" {
		t.Errorf("double variable: %s", got)
	}
	if got := userVarLiteral(colDef{typ: gm.MYSQL_TYPE_NULL}, nullString{}, nullString{}, nullString{}); got != "NULL" {
		t.Errorf("null variable: %s", got)
	}
	if got := unescapeString(`'a\nb''c\%'`, true); got != "a\nb'c\\%" {
		t.Errorf("unescape: %q", got)
	}
}

func TestStoreMarkAhead(t *testing.T) {
	log := map[[2]uint64]bool{{1, 5}: true, {2, 6}: true}
	has := func(e, o uint64) bool { return log[[2]uint64{e, o}] }
	for _, c := range []struct {
		m    StoreMark
		want bool
	}{
		{StoreMark{}, false},
		{StoreMark{Epoch: 1, Offset: 5}, false},
		{StoreMark{Epoch: 2, Offset: 6}, false},
		{StoreMark{Epoch: 2, Offset: 7}, true},                             // committed, never appended
		{StoreMark{Epoch: 1, Offset: 6}, true},                             // another epoch's entry 6
		{StoreMark{Epoch: 1, Offset: 5, DDLEpoch: 2, DDLOffset: 6}, false}, // DDL appended, mark not cleared yet
		{StoreMark{Epoch: 2, Offset: 6, DDLEpoch: 2, DDLOffset: 7}, true},  // DDL may have run, not logged
	} {
		if got := c.m.Ahead(has); got != c.want {
			t.Errorf("%+v: ahead %v", c.m, got)
		}
	}
	if e, o := (StoreMark{Epoch: 1, Offset: 5, DDLEpoch: 2, DDLOffset: 6}).Position(has); e != 2 || o != 6 {
		t.Errorf("position with a logged DDL: %d/%d", e, o)
	}
	if e, o := (StoreMark{Epoch: 2, Offset: 6}).Position(has); e != 2 || o != 6 {
		t.Errorf("position: %d/%d", e, o)
	}
}
