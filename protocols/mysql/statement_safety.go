package mysql

import (
	"fmt"
	"strings"
)

// Which statements statement mode can log, and how. The rules follow
// MySQL's "Determination of Safe and Unsafe Statements in Binary Logging"
// and MariaDB's "Unsafe Statements for Statement-Based Replication": a
// statement whose effect may differ when a follower runs it again is
// refused before it runs, with error 1105 and a message that opens with
// "unsafe for statement replication:", never logged as if it were safe.
// What a token-level reading cannot decide is listed in doc.go.

// stmtAction is what statement mode does with one statement.
type stmtAction uint8

const (
	// actPass: run it, log nothing (reads, session statements, admin).
	actPass stmtAction = iota
	// actWrite: run it made deterministic and log it in the session's
	// transaction.
	actWrite
	// actDDL: commit the open transaction first, then run it alone,
	// holding the commit order, and log it as its own entry.
	actDDL
	// actImplicitCommit: commit the open transaction first (the statement
	// would), then run it without logging: BEGIN, LOCK/UNLOCK TABLES,
	// SET autocommit=1, FLUSH … WITH READ LOCK.
	actImplicitCommit
	// actCommit: COMMIT: the transaction's entry is logged in commit order.
	actCommit
	// actRollback: ROLLBACK: the transaction's statements are dropped.
	actRollback
	// actSavepoint: SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO: logged in
	// the transaction, so that a replay undoes what the primary undid.
	actSavepoint
	// actRefuse: not run; the client gets the unsafe error.
	actRefuse
)

// stmtInfo is what statement mode reads from one statement's tokens.
type stmtInfo struct {
	cl     Classification
	action stmtAction
	// unsafe is the reason a statement is refused (after
	// "unsafe for statement replication: ").
	unsafe string
	// verb is the statement's first keyword (after SET STATEMENT … FOR),
	// upper case.
	verb string

	// calls are the functions called (name followed by "("): lower case,
	// "schema.name" when qualified.
	calls []string
	// userVars are the user variables read or written, as written.
	userVars []string
	// lastInsertID says LAST_INSERT_ID() (without an argument) is read.
	lastInsertID bool
	// params are the byte offsets of the ? placeholders.
	params []int

	// targets are the tables an INSERT, REPLACE, UPDATE or DELETE writes
	// (the first one of a multi-table statement, and the rest of an
	// UPDATE's list), as [schema.]name.
	targets []tableRef
	// multiTable says an UPDATE or DELETE names more than one table.
	multiTable bool
	// insertSelect says an INSERT or REPLACE takes its rows from a
	// SELECT; ordered says that SELECT has an ORDER BY.
	insertSelect, ordered bool
	// onDupKey says INSERT … ON DUPLICATE KEY UPDATE.
	onDupKey bool
	// insertCols are the columns an INSERT or REPLACE names (lower case);
	// colsKnown says it names them (a column list, or SET), else it gives
	// every column; usesDefault says it asks for a DEFAULT somewhere.
	insertCols  []string
	colsKnown   bool
	usesDefault bool
	// routineDef says the statement defines a stored program or view
	// (its body is not evaluated now).
	routineDef bool
	// callName is the procedure a CALL names.
	callName string
	// prepareName/prepareText: PREPARE name FROM 'text' (text "" when it
	// comes from a variable); executeName: EXECUTE name; deallocName:
	// DEALLOCATE/DROP PREPARE name.
	prepareName, prepareText, executeName, deallocName string
	// setsTimestamp says a SET assigns timestamp; resetsTimestamp that it
	// assigns DEFAULT or 0.
	setsTimestamp, resetsTimestamp bool
	// setsIsolation is the level a SET TRANSACTION ISOLATION LEVEL
	// statement names for the next transaction ("" for none).
	setsIsolation string
	// autocommitOn says a SET autocommit turns it (or may turn it) on.
	autocommitOn bool
	// template and usingVars: an SQL-level EXECUTE name USING @a, … is
	// logged as the prepared text with the variables' values in place.
	template  string
	usingVars []string
}

// tableRef is a table named in a statement; schema is "" when not
// qualified.
type tableRef struct{ schema, name string }

func (t tableRef) String() string {
	if t.schema == "" {
		return t.name
	}
	return t.schema + "." + t.name
}

// unsafeFuncs are the functions whose result differs from server to
// server or run to run, with why. RAND() is not among them: statement
// mode seeds it. NOW() and the like are not either: the statement's
// timestamp is fixed and logged.
var unsafeFuncs = map[string]string{
	"uuid":                              "UUID() returns a new value on every server",
	"uuid_short":                        "UUID_SHORT() returns a new value on every server",
	"uuid_v4":                           "UUID_v4() returns a new value on every server",
	"uuid_v7":                           "UUID_v7() returns a new value on every server",
	"sys_guid":                          "SYS_GUID() returns a new value on every server",
	"sysdate":                           "SYSDATE() reads the clock when it runs, not the statement's timestamp",
	"user":                              "USER() names the connected user, which differs on a follower",
	"current_user":                      "CURRENT_USER() names the connected user, which differs on a follower",
	"session_user":                      "SESSION_USER() names the connected user, which differs on a follower",
	"system_user":                       "SYSTEM_USER() names the connected user, which differs on a follower",
	"current_role":                      "CURRENT_ROLE() differs on a follower",
	"found_rows":                        "FOUND_ROWS() depends on an earlier SELECT that is not logged",
	"row_count":                         "ROW_COUNT() depends on an earlier statement's result",
	"load_file":                         "LOAD_FILE() reads a file of the primary's host",
	"get_lock":                          "GET_LOCK() depends on locks held on the primary",
	"release_lock":                      "RELEASE_LOCK() depends on locks held on the primary",
	"release_all_locks":                 "RELEASE_ALL_LOCKS() depends on locks held on the primary",
	"is_free_lock":                      "IS_FREE_LOCK() depends on locks held on the primary",
	"is_used_lock":                      "IS_USED_LOCK() depends on locks held on the primary",
	"sleep":                             "SLEEP() is flagged unsafe by MySQL (its result depends on being interrupted)",
	"benchmark":                         "BENCHMARK() depends on the server's speed",
	"master_pos_wait":                   "MASTER_POS_WAIT() depends on the server's replication state",
	"source_pos_wait":                   "SOURCE_POS_WAIT() depends on the server's replication state",
	"master_gtid_wait":                  "MASTER_GTID_WAIT() depends on the server's replication state",
	"wait_for_executed_gtid_set":        "WAIT_FOR_EXECUTED_GTID_SET() depends on the server's replication state",
	"wait_until_sql_thread_after_gtids": "WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS() depends on the server's replication state",
	"binlog_gtid_pos":                   "BINLOG_GTID_POS() depends on the server's binary log",
	"connection_id":                     "CONNECTION_ID() differs on a follower",
	"random_bytes":                      "RANDOM_BYTES() returns new bytes on every server",
	"nextval":                           "sequence values are not transactional, so a follower's sequence does not follow the primary's",
	"lastval":                           "sequence values are not transactional, so a follower's sequence does not follow the primary's",
	"setval":                            "sequence values are not transactional, so a follower's sequence does not follow the primary's",
	"version":                           "VERSION() may differ between servers",
	"encrypt":                           "ENCRYPT() uses a random salt",
}

// unsafeWords are keywords (no parentheses needed) that read per-server
// state.
var unsafeWords = map[string]string{
	"CURRENT_USER": "CURRENT_USER names the connected user, which differs on a follower",
	"CURRENT_ROLE": "CURRENT_ROLE differs on a follower",
}

// safeSysVars are the system variables a logged statement may read:
// those statement mode sets on replay, and those that follow from them.
// MySQL's list of safe variables, less those it replays that replicar's
// log does not carry (lc_time_names, pseudo_thread_id, sql_auto_is_null).
var safeSysVars = map[string]bool{
	"auto_increment_increment": true, "auto_increment_offset": true,
	"character_set_client": true, "character_set_connection": true,
	"character_set_database": true, "character_set_server": true,
	"collation_connection": true, "collation_database": true, "collation_server": true,
	"foreign_key_checks": true, "unique_checks": true,
	"identity": true, "last_insert_id": true, "insert_id": true,
	"sql_mode": true, "time_zone": true, "timestamp": true,
}

// analyzeStatement reads one statement (the tokens of a piece from
// splitStatements) and decides its action from the statement alone. What
// depends on the server (stored routines, table definitions, session
// state) is left to the session (statement.go).
func analyzeStatement(text string, toks []sqlTok) stmtInfo {
	info := stmtInfo{cl: Classify(text)}
	// The statement proper begins after SET STATEMENT … FOR and any
	// opening parentheses.
	body := toks
	if len(body) > 2 && body[0].is("SET") && body[1].is("STATEMENT") {
		depth := 0
		for i, t := range body {
			switch {
			case t.punct('('):
				depth++
			case t.punct(')'):
				depth--
			case depth == 0 && t.is("FOR"):
				body = body[i+1:]
			}
			if len(body) != len(toks) {
				break
			}
		}
	}
	for len(body) > 0 && body[0].punct('(') {
		body = body[1:]
	}
	if len(body) > 0 && body[0].kind == tkWord {
		info.verb = strings.ToUpper(body[0].text)
	}
	info.scanExpressions(toks)
	info.readClauses(body)
	info.decide(body)
	return info
}

// scanExpressions collects calls, variables and placeholders.
func (info *stmtInfo) scanExpressions(toks []sqlTok) {
	for i, t := range toks {
		switch t.kind {
		case tkParam:
			info.params = append(info.params, t.pos)
		case tkUserVar:
			info.userVars = append(info.userVars, t.text)
		case tkWord, tkIdent:
			if i+1 >= len(toks) || !toks[i+1].punct('(') {
				continue
			}
			if i > 0 && notCallBefore[strings.ToUpper(toks[i-1].text)] && toks[i-1].kind == tkWord {
				// INSERT INTO user (…), KEY user (…): a name, not a call.
				continue
			}
			name := strings.ToLower(t.text)
			if i >= 2 && toks[i-1].punct('.') && (toks[i-2].kind == tkWord || toks[i-2].kind == tkIdent) {
				name = strings.ToLower(toks[i-2].text) + "." + name
			}
			info.calls = append(info.calls, name)
			if name == "last_insert_id" && i+2 < len(toks) && toks[i+2].punct(')') {
				info.lastInsertID = true
			}
		}
	}
}

// notCallBefore are the words after which "name (" names a table, an
// index or a routine being defined, not a function call.
var notCallBefore = map[string]bool{
	"INTO": true, "TABLE": true, "UPDATE": true, "JOIN": true, "FROM": true, "REFERENCES": true,
	"INDEX": true, "KEY": true, "CONSTRAINT": true, "ON": true, "PROCEDURE": true, "FUNCTION": true,
	"CALL": true, "TRIGGER": true, "VIEW": true, "PARTITION": true, "EXISTS": true, "REPLACE": true, "INSERT": true,
}

// readClauses fills in the statement's shape: targets, INSERT … SELECT,
// ON DUPLICATE KEY UPDATE, SQL-level PREPARE/EXECUTE, SET details.
func (info *stmtInfo) readClauses(body []sqlTok) {
	word := func(i int) string { return peekWord(body, i) }
	switch info.verb {
	case "INSERT", "REPLACE":
		i := 1
		for {
			w := word(i)
			if w == "LOW_PRIORITY" || w == "HIGH_PRIORITY" || w == "DELAYED" || w == "IGNORE" {
				i++
				continue
			}
			break
		}
		if word(i) == "INTO" {
			i++
		}
		if ref, next, ok := readTableRef(body, i); ok {
			info.targets = append(info.targets, ref)
			i = next
		}
		if word(i) == "PARTITION" && i+1 < len(body) && body[i+1].punct('(') {
			for i < len(body) && !body[i].punct(')') {
				i++
			}
			i++
		}
		info.readInsertColumns(body, i)
		// The rows come from VALUES, SET or a SELECT (possibly in
		// parentheses, after a column list).
		depth := 0
		selectDepth := -1
		fromSeen := false
		defer func() {
			if info.insertSelect && !fromSeen && !info.ordered {
				// SELECT without FROM: one row (or a fixed UNION of rows).
				info.ordered = true
			}
		}()
		for ; i < len(body); i++ {
			t := body[i]
			switch {
			case t.punct('('):
				depth++
			case t.punct(')'):
				depth--
			case selectDepth < 0 && depth == 0 && (t.is("VALUES") || t.is("VALUE") || t.is("SET")):
				selectDepth = -2 // not a SELECT
			case selectDepth == -1 && (t.is("SELECT") || t.is("WITH") || t.is("TABLE")):
				info.insertSelect, selectDepth = true, depth
			case t.is("ORDER") && peekWord(body, i+1) == "BY" && depth == selectDepth:
				info.ordered = true
			case t.is("FROM") && depth == selectDepth:
				fromSeen = true
			case t.is("DUPLICATE") && peekWord(body, i+1) == "KEY":
				info.onDupKey = true
			}
		}
	case "UPDATE":
		i := 1
		for word(i) == "LOW_PRIORITY" || word(i) == "IGNORE" {
			i++
		}
		depth := 0
		expectName := true
		for ; i < len(body); i++ {
			t := body[i]
			switch {
			case t.punct('('):
				depth++
			case t.punct(')'):
				depth--
			case depth == 0 && t.is("SET"):
				return
			case depth == 0 && (t.punct(',') || t.is("JOIN")):
				info.multiTable = true
				expectName = true
			case expectName && depth == 0:
				if ref, next, ok := readTableRef(body, i); ok {
					info.targets = append(info.targets, ref)
					i = next - 1
				}
				expectName = false
			}
		}
	case "DELETE":
		i := 1
		for w := word(i); w == "LOW_PRIORITY" || w == "QUICK" || w == "IGNORE"; w = word(i) {
			i++
		}
		if word(i) != "FROM" {
			// DELETE t1, t2 FROM …: the names before FROM may be aliases.
			info.multiTable = true
			return
		}
		if ref, next, ok := readTableRef(body, i+1); ok {
			info.targets = append(info.targets, ref)
			if next < len(body) && (body[next].punct(',') || strings.EqualFold(body[next].text, "USING")) {
				info.multiTable = true
			}
		}
		for _, t := range body[i+1:] {
			if t.is("JOIN") || t.is("USING") {
				info.multiTable = true
			}
		}
	case "PREPARE":
		if len(body) >= 4 && (body[1].kind == tkWord || body[1].kind == tkIdent) && body[2].is("FROM") {
			info.prepareName = strings.ToLower(body[1].text)
			_ = body[3] // the text is read after it succeeds (preparedText)
		}
	case "EXECUTE":
		if len(body) >= 2 && (body[1].kind == tkWord || body[1].kind == tkIdent) && !body[1].is("IMMEDIATE") {
			info.executeName = strings.ToLower(body[1].text)
		}
	case "DEALLOCATE", "DROP":
		if len(body) >= 3 && body[1].is("PREPARE") {
			info.deallocName = strings.ToLower(body[2].text)
		}
	case "CALL":
		if ref, _, ok := readTableRef(body, 1); ok {
			info.callName = strings.ToLower(ref.String())
		}
	case "SET":
		info.readSet(body)
	}
}

// readInsertColumns reads the column list (or SET assignments) of an
// INSERT or REPLACE whose table name ends before body[i].
func (info *stmtInfo) readInsertColumns(body []sqlTok, i int) {
	for _, t := range body[i:] {
		if t.is("DEFAULT") {
			info.usesDefault = true
		}
	}
	if i < len(body) && body[i].punct('(') && peekWord(body, i+1) != "SELECT" && peekWord(body, i+1) != "WITH" {
		info.colsKnown = true
		for j := i + 1; j < len(body) && !body[j].punct(')'); j++ {
			if body[j].kind == tkWord || body[j].kind == tkIdent {
				info.insertCols = append(info.insertCols, strings.ToLower(body[j].text))
			}
		}
		return
	}
	if peekWord(body, i) != "SET" {
		return
	}
	info.colsKnown = true
	depth := 0
	for j := i + 1; j < len(body); j++ {
		t := body[j]
		switch {
		case t.punct('('):
			depth++
		case t.punct(')'):
			depth--
		case depth == 0 && t.is("ON"):
			return
		case depth == 0 && j+1 < len(body) && body[j+1].punct('=') && (t.kind == tkWord || t.kind == tkIdent):
			info.insertCols = append(info.insertCols, strings.ToLower(t.text))
		}
	}
}

// leavesDefault says whether an INSERT lets column col take its default.
func (info *stmtInfo) leavesDefault(col string) bool {
	if info.usesDefault {
		return true
	}
	if !info.colsKnown {
		return false
	}
	for _, c := range info.insertCols {
		if c == col {
			return false
		}
	}
	return true
}

// readSet notes what a SET statement does that statement mode follows:
// timestamp assignments, SET TRANSACTION ISOLATION LEVEL, autocommit.
func (info *stmtInfo) readSet(body []sqlTok) {
	if peekWord(body, 1) == "TRANSACTION" || (peekWord(body, 2) == "TRANSACTION" && peekWord(body, 1) != "SESSION" && peekWord(body, 1) != "GLOBAL") {
		for i := range body {
			if body[i].is("LEVEL") {
				lvl := peekWord(body, i+1) + " " + peekWord(body, i+2)
				info.setsIsolation = strings.TrimSpace(lvl)
			}
		}
		return
	}
	for i := 1; i < len(body); i++ {
		t := body[i]
		name := ""
		switch {
		case t.kind == tkSysVar:
			name = t.text
		case t.kind == tkWord && (i == 1 || body[i-1].punct(',') || body[i-1].is("SESSION") || body[i-1].is("LOCAL")):
			name = strings.ToLower(t.text)
		default:
			continue
		}
		if i+2 >= len(body) || !(body[i+1].punct('=') || (body[i+1].punct(':') && body[i+2].punct('='))) {
			continue
		}
		j := i + 2
		if body[i+1].punct(':') {
			j++
		}
		if j >= len(body) {
			continue
		}
		val := strings.ToUpper(body[j].text)
		simple := j+1 >= len(body) || body[j+1].punct(',')
		switch name {
		case "timestamp":
			info.setsTimestamp = true
			info.resetsTimestamp = simple && body[j].kind == tkWord && (val == "DEFAULT" || val == "0")
		case "autocommit":
			off := simple && body[j].kind == tkWord && (val == "0" || val == "OFF" || val == "FALSE")
			info.autocommitOn = !off
		}
	}
}

// readTableRef reads [schema.]name at toks[i].
func readTableRef(toks []sqlTok, i int) (tableRef, int, bool) {
	isName := func(j int) bool {
		return j < len(toks) && (toks[j].kind == tkIdent || (toks[j].kind == tkWord && !reservedAfterTable[strings.ToUpper(toks[j].text)]))
	}
	if !isName(i) {
		return tableRef{}, i, false
	}
	ref := tableRef{name: toks[i].text}
	if i+2 < len(toks) && toks[i+1].punct('.') && isName(i+2) {
		ref = tableRef{schema: toks[i].text, name: toks[i+2].text}
		return ref, i + 3, true
	}
	return ref, i + 1, true
}

// reservedAfterTable are words that cannot be a table name where one is
// expected.
var reservedAfterTable = map[string]bool{
	"SELECT": true, "VALUES": true, "VALUE": true, "SET": true, "WHERE": true, "FROM": true,
	"USING": true, "JOIN": true, "ON": true, "PARTITION": true, "WITH": true, "LIMIT": true,
}

// decide sets the action and, for a refused statement, the reason.
func (info *stmtInfo) decide(body []sqlTok) {
	refuse := func(format string, args ...any) {
		info.action, info.unsafe = actRefuse, fmt.Sprintf(format, args...)
	}
	switch info.cl.Class {
	case ClassEmpty, ClassRead, ClassProxy, ClassAdmin:
		info.action = actPass
	case ClassSession:
		info.action = actPass
		if info.cl.Autocommit && info.autocommitOn {
			info.action = actImplicitCommit
		}
		if info.verb == "PREPARE" || info.verb == "DEALLOCATE" {
			info.action = actPass
		}
	case ClassTx:
		info.action = actPass
		switch info.verb {
		case "SAVEPOINT", "RELEASE", "ROLLBACK":
			info.action = actSavepoint
		case "XA":
			if peekWord(body, 1) != "RECOVER" {
				refuse("XA transactions cannot be logged as statements")
			}
		}
	case ClassBegin, ClassLock:
		info.action = actImplicitCommit
	case ClassCommit:
		info.action = actCommit
		if info.verb == "XA" {
			refuse("XA transactions cannot be logged as statements")
		}
	case ClassRollback:
		info.action = actRollback
		if info.verb == "XA" {
			refuse("XA transactions cannot be logged as statements")
		}
	case ClassDDL:
		info.action = actDDL
	default:
		info.action = actWrite
	}
	if info.action == actRefuse {
		return
	}
	if info.cl.Statements > 1 {
		// A piece of splitStatements is one statement; several here mean
		// a compound statement that splitStatements kept whole.
		if info.cl.Class.Writes() || info.action == actDDL {
			if !opensCompound(body) {
				refuse("a statement the proxy cannot tell apart from several (check the statement's ';')")
				return
			}
		}
	}
	switch info.verb {
	case "LOAD":
		if w := peekWord(body, 1); w == "DATA" || w == "XML" {
			refuse("LOAD %s reads a file the followers do not have; load the rows with INSERT", w)
			return
		}
		info.action = actPass // LOAD INDEX INTO CACHE
		return
	case "BINLOG":
		refuse("BINLOG statements replay another server's binary log")
		return
	case "DO", "HANDLER":
		// DO only evaluates expressions: a stored function that writes
		// makes it a write (statement.go looks the calls up).
		info.action = actPass
		for _, c := range info.calls {
			if c == "nextval" || c == "setval" {
				refuse("sequence values are not transactional, so a follower's sequence does not follow the primary's")
				return
			}
		}
	case "INSERT", "REPLACE":
		depth := 0
		for _, t := range body {
			switch {
			case t.punct('('):
				depth++
			case t.punct(')'):
				depth--
			case depth == 0 && t.is("RETURNING"):
				refuse("%s … RETURNING: the AUTO_INCREMENT values it generates are not reported to the proxy; insert, then SELECT", info.verb)
				return
			}
		}
	case "CALL":
		// Decided from the procedure's declaration (statement.go).
	case "EXECUTE":
		// Decided from the prepared statement (statement.go).
	case "BEGIN", "IF", "WHILE", "LOOP", "REPEAT", "CASE":
		if opensCompound(body) {
			refuse("a compound statement outside a stored program can commit or run unsafe statements the proxy cannot see; put it in a procedure")
			return
		}
	case "FLUSH", "ANALYZE", "OPTIMIZE", "REPAIR":
		for i := 1; i < len(body) && i < 4; i++ {
			if body[i].is("NO_WRITE_TO_BINLOG") || body[i].is("LOCAL") {
				// MySQL does not log these either.
				info.action = actImplicitCommit
			}
		}
		for i := range body {
			if body[i].is("READ") && peekWord(body, i+1) == "LOCK" || body[i].is("EXPORT") {
				// FLUSH TABLES WITH READ LOCK / FOR EXPORT: a lock, not a
				// change; replayed it would lock the follower's applier.
				info.action = actImplicitCommit
			}
		}
	}
	if info.verb == "CREATE" || info.verb == "ALTER" {
		info.readDDL(body, refuse)
		if info.action == actRefuse {
			return
		}
	}
	if info.verb == "DROP" && peekWord(body, 1) == "TEMPORARY" {
		// Temporary tables cannot be made through the proxy (see
		// readDDL); dropping one is a no-op or an error, and does not
		// commit.
		info.action = actPass
	}
	if info.action != actWrite && info.action != actDDL {
		return
	}
	info.checkExpressions(body, refuse)
}

// readDDL decides CREATE and ALTER statements.
func (info *stmtInfo) readDDL(body []sqlTok, refuse func(string, ...any)) {
	for i := 1; i < len(body) && i < 40; i++ {
		switch peekWord(body, i) {
		case "TEMPORARY":
			if info.verb == "CREATE" {
				refuse("temporary tables live in one server session and are not logged; use a regular table")
				return
			}
		case "EVENT":
			refuse("events run on the primary's event scheduler, outside the proxy, so their writes would not be logged")
			return
		case "PROCEDURE", "FUNCTION", "TRIGGER", "VIEW", "PACKAGE":
			info.routineDef = true
			return
		case "TABLE", "INDEX", "DATABASE", "SCHEMA", "USER", "ROLE", "SEQUENCE", "SERVER":
			return
		}
	}
}

// checkExpressions refuses a logged statement that calls unsafe
// functions, reads per-server variables or changes rows in an order that
// is not determined.
func (info *stmtInfo) checkExpressions(body []sqlTok, refuse func(string, ...any)) {
	if info.routineDef {
		// The body runs later, when the routine is called; a call is
		// checked against the routine's declaration then.
		return
	}
	for _, t := range body {
		if (t.kind == tkWord || t.kind == tkIdent) && strings.EqualFold(t.text, "__replicar") {
			refuse("the __replicar schema is replicar's own")
			return
		}
	}
	createTable := info.verb == "CREATE"
	hasSelect := false
	for _, t := range body {
		if t.is("SELECT") {
			hasSelect = true
		}
	}
	if createTable && !hasSelect {
		// CREATE TABLE without rows: column defaults are evaluated by
		// later INSERTs, which are checked against the table then.
		for _, t := range body {
			if t.kind == tkUserVar {
				refuse("a user variable in a DDL statement cannot be logged with it")
				return
			}
		}
		return
	}
	for i, t := range body {
		switch t.kind {
		case tkWord:
			up := strings.ToUpper(t.text)
			if why, ok := unsafeWords[up]; ok && !(i+1 < len(body) && body[i+1].punct('(')) {
				if !(i > 0 && body[i-1].punct('=') && i > 1 && body[i-2].is("DEFINER")) {
					refuse("%s", why)
					return
				}
			}
			if (up == "NEXT" || up == "PREVIOUS") && peekWord(body, i+1) == "VALUE" && peekWord(body, i+2) == "FOR" {
				refuse("sequence values are not transactional, so a follower's sequence does not follow the primary's")
				return
			}
			if up == "DELAYED" && (info.verb == "INSERT" || info.verb == "REPLACE") && i <= 2 {
				refuse("INSERT DELAYED rows are inserted in an order that cannot be predicted")
				return
			}
			if up == "GENERAL_LOG" || up == "SLOW_LOG" {
				refuse("the log tables differ on every server")
				return
			}
		case tkSysVar:
			if !safeSysVars[t.text] {
				refuse("@@%s may differ between servers", t.text)
				return
			}
		case tkUserVar:
			if info.action == actDDL {
				refuse("a user variable in a DDL statement cannot be logged with it")
				return
			}
		}
	}
	for _, c := range info.calls {
		name := c
		if k := strings.LastIndexByte(c, '.'); k >= 0 {
			continue // a qualified name is a stored function, looked up by the session
		}
		if why, ok := unsafeFuncs[name]; ok {
			refuse("%s", why)
			return
		}
	}
	if why := unorderedLimit(body); why != "" {
		refuse("%s", why)
		return
	}
	ignore := false
	for i := 1; i < len(body) && i < 4; i++ {
		if body[i].is("IGNORE") {
			ignore = true
		}
	}
	switch {
	case info.insertSelect && !info.ordered && info.verb == "REPLACE":
		refuse("REPLACE … SELECT without ORDER BY: which rows replace which depends on the order the SELECT returns them")
	case info.insertSelect && !info.ordered && ignore:
		refuse("INSERT IGNORE … SELECT without ORDER BY: which rows are ignored depends on the order the SELECT returns them")
	case info.insertSelect && !info.ordered && info.onDupKey:
		refuse("INSERT … SELECT … ON DUPLICATE KEY UPDATE without ORDER BY: which rows are updated depends on the order the SELECT returns them")
	case info.verb == "UPDATE" && ignore && !hasOrderBy(body):
		refuse("UPDATE IGNORE without ORDER BY: which rows are ignored depends on the order they are updated in")
	case createTable && hasSelect && !hasOrderBy(body):
		for i := range body {
			if (body[i].is("IGNORE") || body[i].is("REPLACE")) && (peekWord(body, i+1) == "SELECT" || peekWord(body, i+1) == "AS") {
				refuse("CREATE TABLE … %s SELECT without ORDER BY: which rows are kept depends on the order the SELECT returns them", strings.ToUpper(body[i].text))
				return
			}
			if body[i].is("AUTO_INCREMENT") {
				refuse("CREATE TABLE … SELECT with an AUTO_INCREMENT column and no ORDER BY: the values each row gets depend on the order the SELECT returns them")
				return
			}
		}
	}
}

// unorderedLimit finds a LIMIT (other than LIMIT 0) with no ORDER BY at
// the same level of parentheses: the rows it picks are not determined.
func unorderedLimit(body []sqlTok) string {
	ordered := []bool{false}
	for i, t := range body {
		switch {
		case t.punct('('):
			ordered = append(ordered, false)
		case t.punct(')'):
			if len(ordered) > 1 {
				ordered = ordered[:len(ordered)-1]
			}
		case t.is("ORDER") && peekWord(body, i+1) == "BY":
			ordered[len(ordered)-1] = true
		case t.is("LIMIT") && !ordered[len(ordered)-1]:
			if i+1 < len(body) && body[i+1].kind == tkWord && body[i+1].text == "0" &&
				(i+2 >= len(body) || !(body[i+2].punct(',') || body[i+2].is("OFFSET"))) {
				continue
			}
			return "LIMIT without ORDER BY: which rows the statement changes (or reads) is not determined"
		}
	}
	return ""
}

// hasOrderBy says an ORDER BY appears at the outer level.
func hasOrderBy(body []sqlTok) bool {
	depth := 0
	for i, t := range body {
		switch {
		case t.punct('('):
			depth++
		case t.punct(')'):
			depth--
		case depth == 0 && t.is("ORDER") && peekWord(body, i+1) == "BY":
			return true
		}
	}
	return false
}

// triggerEvents are the trigger events a write may fire on its targets.
// A statement whose kind is not known here may fire any of them.
func (info *stmtInfo) triggerEvents() []string {
	switch info.verb {
	case "INSERT":
		if info.onDupKey {
			return []string{"INSERT", "UPDATE"}
		}
		return []string{"INSERT"}
	case "REPLACE":
		return []string{"INSERT", "DELETE"}
	case "UPDATE":
		return []string{"UPDATE"}
	case "DELETE":
		return []string{"DELETE"}
	}
	return []string{"INSERT", "UPDATE", "DELETE"}
}
