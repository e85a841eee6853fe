package mysql

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		q    string
		want Class
	}{
		{"", ClassEmpty},
		{"  /* nothing */ -- here\n # either", ClassEmpty},
		{";;", ClassEmpty},
		{"SELECT 1", ClassRead},
		{"select * from t where a = 'INSERT'", ClassRead},
		{"(SELECT 1) UNION (SELECT 2)", ClassRead},
		{"SELECT * FROM t FOR UPDATE", ClassRead},
		{"SELECT NEXTVAL(s)", ClassWrite},
		{"SELECT NEXT VALUE FOR s", ClassWrite},
		{"SELECT SETVAL(s, 10)", ClassWrite},
		{"SELECT 'next value for'", ClassRead},
		{"WITH c AS (SELECT 1) SELECT * FROM c", ClassRead},
		{"WITH c AS (SELECT 1) UPDATE t JOIN c SET t.a = 1", ClassWrite},
		{"VALUES (1), (2)", ClassRead},
		{"TABLE t", ClassRead},
		{"SHOW TABLES", ClassRead},
		{"SHOW REPLICAR STATUS", ClassProxy},
		{"show replicar status;", ClassProxy},
		{"SHOW REPLICAR STATUS; SELECT 1", ClassRead},
		{"SHOW REPLICAR STATUSES", ClassRead},
		{"DESCRIBE t", ClassRead},
		{"DESC t", ClassRead},
		{"EXPLAIN SELECT 1", ClassRead},
		{"EXPLAIN UPDATE t SET a = 1", ClassRead},
		{"EXPLAIN ANALYZE SELECT 1", ClassRead},
		{"EXPLAIN ANALYZE DELETE FROM t", ClassWrite},
		{"ANALYZE SELECT * FROM t", ClassRead},
		{"ANALYZE UPDATE t SET a = 1", ClassWrite},
		{"ANALYZE TABLE t", ClassDDL},
		{"HELP 'select'", ClassRead},
		{"CHECKSUM TABLE t", ClassRead},
		{"USE db", ClassSession},
		{"SET NAMES utf8mb4", ClassSession},
		{"SET @x = 1", ClassSession},
		{"SET SESSION sql_mode = ''", ClassSession},
		{"SET @@session.time_zone = '+00:00'", ClassSession},
		{"SET GLOBAL max_connections = 10", ClassAdmin},
		{"SET @@global.max_connections = 10", ClassAdmin},
		{"SET PERSIST x = 1", ClassAdmin},
		{"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", ClassTx},
		{"SET PASSWORD = 'x'", ClassDDL},
		{"SET DEFAULT ROLE r FOR u", ClassDDL},
		{"SET STATEMENT max_statement_time = 1 FOR SELECT 1", ClassRead},
		{"SET STATEMENT max_statement_time = 1 FOR INSERT INTO t VALUES (1)", ClassWrite},
		{"SET STATEMENT sql_mode = '' FOR CREATE TABLE t (a INT)", ClassDDL},
		{"SET STATEMENT x = 1", ClassWrite},
		{"PREPARE s FROM 'INSERT INTO t VALUES (1)'", ClassSession},
		{"EXECUTE s", ClassWrite},
		{"DEALLOCATE PREPARE s", ClassSession},
		{"DROP PREPARE s", ClassSession},
		{"BEGIN", ClassBegin},
		{"begin work", ClassBegin},
		{"BEGIN NOT ATOMIC INSERT INTO t VALUES (1); END", ClassWrite},
		{"START TRANSACTION READ ONLY", ClassBegin},
		{"START SLAVE", ClassAdmin},
		{"COMMIT", ClassCommit},
		{"COMMIT WORK AND CHAIN", ClassCommit},
		{"ROLLBACK", ClassRollback},
		{"ROLLBACK TO SAVEPOINT a", ClassTx},
		{"ROLLBACK WORK TO a", ClassTx},
		{"SAVEPOINT a", ClassTx},
		{"RELEASE SAVEPOINT a", ClassTx},
		{"XA START 'x'", ClassTx},
		{"XA COMMIT 'x'", ClassCommit},
		{"XA ROLLBACK 'x'", ClassRollback},
		{"LOCK TABLES t WRITE", ClassLock},
		{"UNLOCK TABLES", ClassLock},
		{"KILL 5", ClassAdmin},
		{"PURGE BINARY LOGS BEFORE NOW()", ClassAdmin},
		{"INSERT INTO t VALUES (1)", ClassWrite},
		{"insert into t select * from u", ClassWrite},
		{"REPLACE INTO t VALUES (1)", ClassWrite},
		{"UPDATE t SET a = 1", ClassWrite},
		{"DELETE FROM t", ClassWrite},
		{"LOAD DATA LOCAL INFILE 'x' INTO TABLE t", ClassWrite},
		{"CALL p()", ClassWrite},
		{"DO SLEEP(1)", ClassWrite},
		{"CREATE TABLE t (a INT)", ClassDDL},
		{"ALTER TABLE t ADD b INT", ClassDDL},
		{"DROP TABLE t", ClassDDL},
		{"TRUNCATE t", ClassDDL},
		{"RENAME TABLE a TO b", ClassDDL},
		{"GRANT ALL ON *.* TO u", ClassDDL},
		{"FLUSH PRIVILEGES", ClassDDL},
		{"OPTIMIZE TABLE t", ClassDDL},
		{"FOOBAR", ClassWrite},
		{"`t`", ClassWrite},
		{"'x'", ClassWrite},
		// Statements hidden from a naive reader.
		{"SELECT 1; DELETE FROM t", ClassWrite},
		{"SELECT ';'; DELETE FROM t", ClassWrite},
		{"SELECT `;`; DELETE FROM t", ClassWrite},
		{"/* c */ DELETE FROM t", ClassWrite},
		{"/*!40101 DELETE FROM t */", ClassWrite},
		{"/*M!100101 DELETE FROM t */", ClassWrite},
		{"SELECT 1 /*! ; DELETE FROM t */", ClassWrite},
		{"SELECT 1 -- x\n; DELETE FROM t", ClassWrite},
		{"SELECT 1 --x\n; DELETE FROM t", ClassWrite},
		{"SELECT 1 # x\n; DELETE FROM t", ClassWrite},
		{"SELECT 'it''s'; DELETE FROM t", ClassWrite},
		// Whether \ escapes depends on NO_BACKSLASH_ESCAPES: both
		// readings are taken.
		{`SELECT 'a\'; DELETE FROM t; -- '`, ClassWrite},
		{`SELECT 'a\\'; SELECT 'b'`, ClassRead},
		{"SELECT /* ; DELETE */ 1", ClassRead},
		{"SELECT 1 /*+ hint */", ClassRead},
	} {
		if got := Classify(c.q).Class; got != c.want {
			t.Errorf("Classify(%q) = %s, want %s", c.q, got, c.want)
		}
	}
}

func TestClassificationFlags(t *testing.T) {
	for _, c := range []struct {
		q    string
		want Classification
	}{
		{"SELECT 1", Classification{Class: ClassRead, Statements: 1}},
		{"SELECT 1; SELECT 2;", Classification{Class: ClassRead, Statements: 2}},
		{"LOCK TABLES t READ", Classification{Class: ClassLock, Statements: 1, Lock: true}},
		{"UNLOCK TABLES", Classification{Class: ClassLock, Statements: 1, Unlock: true}},
		{"SET autocommit = 1", Classification{Class: ClassSession, Statements: 1, Autocommit: true, Replay: true}},
		{"SET session_track_system_variables = '*'", Classification{Class: ClassSession, Statements: 1, Tracking: true, Replay: true}},
		{"SET NAMES utf8mb4; SET @a = 1", Classification{Class: ClassSession, Statements: 2}},
		{"SET GLOBAL x = 1", Classification{Class: ClassAdmin, Statements: 1}},
		{"PREPARE s FROM @q", Classification{Class: ClassSession, Statements: 1, Replay: true}},
		{"USE db", Classification{Class: ClassSession, Statements: 1}},
		{`SET @a = 'x\'`, Classification{Class: ClassSession, Statements: 1, Replay: true}},
	} {
		if got := Classify(c.q); got != c.want {
			t.Errorf("Classify(%q) = %+v, want %+v", c.q, got, c.want)
		}
	}
}

func TestParseKill(t *testing.T) {
	for _, c := range []struct {
		q     string
		query bool
		id    uint64
		ok    bool
	}{
		{"KILL 12", false, 12, true},
		{"kill connection 12;", false, 12, true},
		{"KILL QUERY 7", true, 7, true},
		{"KILL HARD QUERY 7", true, 7, true},
		{"KILL SOFT 9", false, 9, true},
		{"KILL QUERY ID 7", false, 0, false},
		{"KILL USER bob", false, 0, false},
		{"KILL 'x'", false, 0, false},
		{"SELECT 1", false, 0, false},
		{"KILL 5; DELETE FROM t", false, 5, true},
		{"KILL 99999999999999999999", false, 0, false},
	} {
		query, id, ok := parseKill(c.q)
		if query != c.query || id != c.id || ok != c.ok {
			t.Errorf("parseKill(%q) = %v %d %v, want %v %d %v", c.q, query, id, ok, c.query, c.id, c.ok)
		}
	}
}

func TestUseDB(t *testing.T) {
	for _, c := range []struct {
		q, db string
		ok    bool
	}{
		{"USE shop", "shop", true},
		{"use `my db`;", "my db", true},
		{"USE `a``b`", "a`b", true},
		{"USE shop -- c", "", false},
		{"USER", "", false},
		{"SELECT 1", "", false},
	} {
		db, ok := useDB(c.q)
		if db != c.db || ok != c.ok {
			t.Errorf("useDB(%q) = %q %v, want %q %v", c.q, db, ok, c.db, c.ok)
		}
	}
}

// writeVerbs open a statement that changes data or schema.
var writeVerbs = []string{"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD", "CALL", "CREATE", "ALTER", "DROP TABLE",
	"TRUNCATE", "RENAME", "GRANT", "REVOKE", "DO", "EXECUTE", "insert", "Update", "DeLeTe"}

// FuzzClassify checks that the classifier never panics and never calls a
// write a read: a statement opened by a write verb, however it is hidden
// (behind a read, a comment, inside an executable comment), and whatever
// follows it, is classified as a write.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"", " t VALUES (1)", "'", "`", "\\", "/*", "*/", "-- ", "#", ";", "\n", "FOR", "(", "/*!", "\x00", "é"} {
		f.Add(s, uint8(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, rest string, verb, wrap uint8) {
		_ = Classify(rest)
		_, _, _ = parseKill(rest)
		w := writeVerbs[int(verb)%len(writeVerbs)] + " " + rest
		var q string
		switch wrap % 6 {
		case 0:
			q = w
		case 1:
			q = "SELECT 1; " + w
		case 2:
			q = "/* x */ " + w
		case 3:
			q = "/*!40101 " + w
		case 4:
			q = "SET STATEMENT a = 1 FOR " + w
		case 5:
			q = "(" + w
		}
		if wrap%6 == 4 && strings.Contains(strings.ToUpper(rest), "FOR") {
			// "SET STATEMENT … FOR <verb> … FOR …": only the first FOR
			// starts the statement, which is what the server does too.
			q = w
		}
		if c := Classify(q).Class; !c.Writes() {
			t.Fatalf("Classify(%q) = %s: a write classified as %s", q, c, c)
		}
	})
}
