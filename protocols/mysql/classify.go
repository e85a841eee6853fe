package mysql

import (
	"strconv"
	"strings"
)

// Statement classification. The front end needs to know, before a query
// runs, whether it may write (so that it is admitted first: a refusal
// means not executed), whether it ends a transaction, and whether it
// changes session state that a new backend connection would have to
// replay. It does not need a parser: the first words of each statement
// decide, and anything not known to be harmless is a write. Whether a
// statement did commit a transaction is not guessed at all: the backend
// reports the GTID of every transaction a session commits (session_track),
// and that is what holds the client's reply.

// Class is what a statement (or the strongest of a multi-statement query)
// does.
type Class uint8

// The classes, weakest first; a multi-statement query takes the strongest
// class among its statements.
const (
	// ClassEmpty: only whitespace and comments.
	ClassEmpty Class = iota
	// ClassRead: SELECT, SHOW, DESCRIBE, EXPLAIN, HELP, CHECK, CHECKSUM,
	// HANDLER, VALUES, TABLE, a WITH without a data change.
	ClassRead
	// ClassProxy: SHOW REPLICAR STATUS, answered by the proxy.
	ClassProxy
	// ClassSession: SET (session scope), USE, PREPARE, DEALLOCATE.
	ClassSession
	// ClassTx: SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO, SET TRANSACTION,
	// XA START/END/PREPARE/RECOVER.
	ClassTx
	// ClassBegin: BEGIN, START TRANSACTION (an implicit commit of an open
	// transaction).
	ClassBegin
	// ClassRollback: ROLLBACK, XA ROLLBACK.
	ClassRollback
	// ClassCommit: COMMIT, XA COMMIT.
	ClassCommit
	// ClassAdmin: KILL, PURGE, RESET, CHANGE MASTER, START/STOP SLAVE,
	// SHUTDOWN, SET GLOBAL …: server administration that is not
	// replicated.
	ClassAdmin
	// ClassLock: LOCK TABLES, UNLOCK TABLES (an implicit commit).
	ClassLock
	// ClassWrite: INSERT, UPDATE, DELETE, REPLACE, LOAD, CALL, DO,
	// EXECUTE, SELECT NEXTVAL(…), and every statement not known.
	ClassWrite
	// ClassDDL: CREATE, ALTER, DROP, RENAME, TRUNCATE, GRANT, REVOKE,
	// ANALYZE/OPTIMIZE/REPAIR TABLE, FLUSH …: written to the binlog, with
	// an implicit commit.
	ClassDDL
)

var classNames = [...]string{"empty", "read", "proxy", "session", "tx", "begin", "rollback", "commit", "admin", "lock", "write", "ddl"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// Writes says whether the class may change data that is replicated, and so
// needs admission before it runs.
func (c Class) Writes() bool { return c == ClassWrite || c == ClassDDL }

// Classification describes a whole query (one COM_QUERY, which may hold
// several statements).
type Classification struct {
	// Class is the strongest class among the statements.
	Class Class
	// Statements counts the statements that are not empty.
	Statements int
	// Lock and Unlock say whether a LOCK TABLES or UNLOCK TABLES is among
	// them: locked tables pin a session to its backend connection.
	Lock, Unlock bool
	// Autocommit says a SET touches autocommit, which commits an open
	// transaction when it turns autocommit on.
	Autocommit bool
	// Tracking says a SET touches session_track_*: the proxy's own session
	// tracking may have been replaced.
	Tracking bool
	// Replay says the query is a single session statement (SET, PREPARE,
	// DEALLOCATE) that a new backend connection must run again to carry
	// the session over.
	Replay bool
}

// Classify classifies a query. It never fails: what it cannot recognise
// is a write.
func Classify(query string) Classification {
	out, sawBackslash := classifyWith(query, true)
	if sawBackslash {
		// Whether a backslash escapes inside a string depends on the
		// session's sql_mode (NO_BACKSLASH_ESCAPES), which the proxy does
		// not follow: the query is read both ways and the stronger
		// reading wins, so a statement hidden from one reading is still
		// seen.
		alt, _ := classifyWith(query, false)
		out.Class = max(out.Class, alt.Class)
		out.Statements = max(out.Statements, alt.Statements)
		out.Lock = out.Lock || alt.Lock
		out.Unlock = out.Unlock || alt.Unlock
		out.Autocommit = out.Autocommit || alt.Autocommit
		out.Tracking = out.Tracking || alt.Tracking
		out.Replay = out.Replay && alt.Replay && out.Statements == 1
		if out.Class == ClassProxy && alt.Class != ClassProxy {
			out.Class = ClassRead
		}
	}
	return out
}

func classifyWith(query string, backslashEscapes bool) (Classification, bool) {
	var (
		out Classification
		st  stmtState
	)
	finish := func() {
		c, ok := st.class()
		if !ok {
			return
		}
		out.Statements++
		out.Class = max(out.Class, c)
		out.Lock = out.Lock || st.lock
		out.Unlock = out.Unlock || st.unlock
		out.Autocommit = out.Autocommit || st.autocommit
		out.Tracking = out.Tracking || st.tracking
		out.Replay = st.replay
		st = stmtState{}
	}
	saw := lex(query, backslashEscapes, func(tok token) {
		if tok.kind == tokEnd {
			finish()
			return
		}
		st.add(tok)
	})
	finish()
	if out.Statements != 1 {
		out.Replay = false
	}
	if out.Class == ClassProxy && out.Statements != 1 {
		// The proxy answers SHOW REPLICAR STATUS only on its own; mixed
		// with other statements it goes to the backend, which refuses it.
		out.Class = ClassRead
	}
	return out, saw
}

// maxWords is how many leading words of a statement are kept.
const maxWords = 6

// stmtState gathers what classification needs from one statement's tokens.
type stmtState struct {
	words   [maxWords]string
	n       int // words kept
	total   int // tokens seen
	quoted  bool
	global  bool
	dataChg bool // INSERT, UPDATE, DELETE or REPLACE anywhere
	seqFunc bool // NEXTVAL, SETVAL, NEXT VALUE FOR: a sequence moves
	prevNxt bool
	// setStmt is set while inside SET STATEMENT … FOR: the statement
	// proper starts after FOR.
	setStmt bool

	lock, unlock, autocommit, tracking, replay bool
}

func (s *stmtState) add(tok token) {
	if tok.kind == tokQuoted {
		if s.total == 0 {
			s.quoted = true
		}
		s.total++
		return
	}
	w := tok.text
	s.total++
	if w == "(" && s.n == 0 {
		// (SELECT …) UNION (SELECT …)
		return
	}
	if s.setStmt && strings.EqualFold(w, "FOR") {
		// SET STATEMENT var=value … FOR <statement>: classify the
		// statement, keeping what the prefix said about data changes.
		dc, sf := s.dataChg, s.seqFunc
		*s = stmtState{dataChg: dc, seqFunc: sf}
		return
	}
	if s.n < maxWords {
		s.words[s.n] = w
		s.n++
	}
	switch strings.ToUpper(w) {
	case "INSERT", "UPDATE", "DELETE", "REPLACE":
		s.dataChg = true
	case "NEXTVAL", "SETVAL":
		s.seqFunc = true
	case "NEXT":
		s.prevNxt = true
		return
	case "VALUE":
		if s.prevNxt {
			s.seqFunc = true
		}
	case "GLOBAL", "PERSIST", "PERSIST_ONLY":
		s.global = true
	case "AUTOCOMMIT":
		s.autocommit = true
	case "SESSION_TRACK_SYSTEM_VARIABLES", "SESSION_TRACK_GTIDS", "SESSION_TRACK_SCHEMA", "SESSION_TRACK_STATE_CHANGE", "SESSION_TRACK_TRANSACTION_INFO":
		s.tracking = true
	}
	s.prevNxt = false
	if s.n == 2 && s.is(0, "SET") && s.is(1, "STATEMENT") {
		s.setStmt = true
	}
}

func (s *stmtState) is(i int, w string) bool {
	return i < s.n && strings.EqualFold(s.words[i], w)
}

// class returns the statement's class, and false for an empty statement.
func (s *stmtState) class() (Class, bool) {
	if s.total == 0 {
		return ClassEmpty, false
	}
	if s.quoted || s.n == 0 || s.setStmt {
		// A statement that opens with a quoted name or string, or a SET
		// STATEMENT with no FOR, is nothing we know.
		return ClassWrite, true
	}
	readUnlessChange := func() Class {
		if s.dataChg || s.seqFunc {
			return ClassWrite
		}
		return ClassRead
	}
	switch strings.ToUpper(s.words[0]) {
	case "SELECT", "VALUES", "TABLE":
		if s.seqFunc {
			return ClassWrite, true
		}
		return ClassRead, true
	case "WITH":
		// WITH … UPDATE/DELETE/INSERT changes data (MySQL 8).
		return readUnlessChange(), true
	case "SHOW":
		if s.is(1, "REPLICAR") && s.is(2, "STATUS") && s.n == 3 {
			return ClassProxy, true
		}
		return ClassRead, true
	case "DESCRIBE", "DESC", "EXPLAIN":
		if s.is(1, "ANALYZE") {
			// EXPLAIN ANALYZE runs the statement.
			return readUnlessChange(), true
		}
		return ClassRead, true
	case "ANALYZE":
		switch strings.ToUpper(s.word(1)) {
		case "SELECT", "WITH", "VALUES", "(":
			// MariaDB's ANALYZE <statement> runs it.
			return readUnlessChange(), true
		case "TABLE", "TABLES", "NO_WRITE_TO_BINLOG", "LOCAL":
			return ClassDDL, true
		}
		return ClassWrite, true
	case "HELP", "CHECK", "CHECKSUM", "HANDLER":
		return ClassRead, true
	case "USE":
		return ClassSession, true
	case "SET":
		return s.setClass(), true
	case "PREPARE", "DEALLOCATE":
		s.replay = true
		return ClassSession, true
	case "DROP":
		if s.is(1, "PREPARE") {
			s.replay = true
			return ClassSession, true
		}
		return ClassDDL, true
	case "BEGIN":
		if s.n == 1 || s.is(1, "WORK") {
			return ClassBegin, true
		}
		// BEGIN NOT ATOMIC … END runs a compound statement.
		return ClassWrite, true
	case "START":
		switch strings.ToUpper(s.word(1)) {
		case "TRANSACTION":
			return ClassBegin, true
		case "SLAVE", "REPLICA", "GROUP_REPLICATION", "ALL":
			return ClassAdmin, true
		}
		return ClassWrite, true
	case "COMMIT":
		return ClassCommit, true
	case "ROLLBACK":
		for i := 1; i < s.n; i++ {
			if s.is(i, "TO") {
				return ClassTx, true
			}
		}
		return ClassRollback, true
	case "SAVEPOINT", "RELEASE":
		return ClassTx, true
	case "XA":
		switch strings.ToUpper(s.word(1)) {
		case "COMMIT":
			return ClassCommit, true
		case "ROLLBACK":
			return ClassRollback, true
		}
		return ClassTx, true
	case "LOCK":
		if s.is(1, "TABLE") || s.is(1, "TABLES") {
			s.lock = true
			return ClassLock, true
		}
		// LOCK BINLOG and the like.
		return ClassAdmin, true
	case "UNLOCK":
		if s.is(1, "TABLE") || s.is(1, "TABLES") {
			s.unlock = true
		}
		return ClassLock, true
	case "KILL", "PURGE", "RESET", "CHANGE", "STOP", "SHUTDOWN", "RESTART", "CACHE", "BACKUP", "BINLOG_GTID_POS":
		return ClassAdmin, true
	case "CREATE", "ALTER", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "OPTIMIZE", "REPAIR", "FLUSH", "INSTALL", "UNINSTALL", "IMPORT":
		return ClassDDL, true
	}
	// INSERT, UPDATE, DELETE, REPLACE, LOAD, CALL, DO, EXECUTE, BINLOG and
	// everything else.
	return ClassWrite, true
}

func (s *stmtState) word(i int) string {
	if i < s.n {
		return s.words[i]
	}
	return ""
}

// setClass classifies SET statements.
func (s *stmtState) setClass() Class {
	switch strings.ToUpper(s.word(1)) {
	case "PASSWORD":
		// Changes mysql.global_priv and is binlogged.
		return ClassDDL
	case "DEFAULT":
		if s.is(2, "ROLE") {
			return ClassDDL
		}
	case "TRANSACTION":
		// One-shot (the next transaction only): not replayed.
		return ClassTx
	case "GLOBAL", "PERSIST", "PERSIST_ONLY":
		return ClassAdmin
	}
	if s.global {
		// SET @@global.x = …, or a list mixing scopes: not session state
		// a new connection could take over.
		return ClassAdmin
	}
	s.replay = true
	return ClassSession
}

// Tokens.

type tokKind uint8

const (
	tokWord   tokKind = iota // an unquoted word: keyword, name or number
	tokQuoted                // a string or a quoted name
	tokEnd                   // a statement-ending ';'
)

type token struct {
	kind tokKind
	text string
}

// lex splits a query into words, quoted items and statement ends, skipping
// whitespace, punctuation and comments. The bodies of executable comments
// (/*! … */, /*M! … */) are lexed as code, since the server runs them.
// Parentheses are reported as the word "(" so that "ANALYZE (SELECT …)"
// is seen. With backslashEscapes a backslash in a string escapes the next
// byte (the default sql_mode); lex reports whether a string held one.
func lex(q string, backslashEscapes bool, emit func(token)) (sawBackslash bool) {
	i := 0
	n := len(q)
	for i < n {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == ';':
			emit(token{kind: tokEnd})
			i++
		case c == '#':
			i = skipLine(q, i)
		case c == '-' && i+1 < n && q[i+1] == '-' && (i+2 == n || isSpaceOrCtl(q[i+2])):
			i = skipLine(q, i)
		case c == '/' && i+1 < n && q[i+1] == '*':
			if i+2 < n && q[i+2] == '!' {
				i = skipDigits(q, i+3)
				continue
			}
			if i+3 < n && (q[i+2] == 'M' || q[i+2] == 'm') && q[i+3] == '!' {
				i = skipDigits(q, i+4)
				continue
			}
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return sawBackslash
			}
			i += 2 + end + 2
		case c == '*' && i+1 < n && q[i+1] == '/':
			// The end of an executable comment.
			i += 2
		case c == '\'' || c == '"' || c == '`':
			var bs bool
			i, bs = skipQuoted(q, i, backslashEscapes)
			sawBackslash = sawBackslash || bs
			emit(token{kind: tokQuoted})
		case c == '(':
			emit(token{kind: tokWord, text: "("})
			i++
		case isWordByte(c):
			j := i + 1
			for j < n && isWordByte(q[j]) {
				j++
			}
			emit(token{kind: tokWord, text: q[i:j]})
			i = j
		default:
			i++
		}
	}
	return sawBackslash
}

func isSpaceOrCtl(c byte) bool { return c <= ' ' }

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 ||
		(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func skipLine(q string, i int) int {
	if j := strings.IndexByte(q[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(q)
}

func skipDigits(q string, i int) int {
	for i < len(q) && q[i] >= '0' && q[i] <= '9' {
		i++
	}
	return i
}

// skipQuoted returns the index after the quoted item starting at i, and
// whether a string held a backslash. With backslashEscapes a backslash
// escapes the next byte in strings (never in `names`); a doubled quote
// stands for itself. An unterminated item runs to the end.
func skipQuoted(q string, i int, backslashEscapes bool) (int, bool) {
	quote := q[i]
	saw := false
	i++
	for i < len(q) {
		c := q[i]
		switch {
		case c == '\\' && quote != '`':
			saw = true
			if backslashEscapes {
				i += 2
			} else {
				i++
			}
		case c == quote:
			if i+1 < len(q) && q[i+1] == quote {
				i += 2
				continue
			}
			return i + 1, saw
		default:
			i++
		}
	}
	return len(q), saw
}

// parseKill recognises KILL [HARD|SOFT] [CONNECTION|QUERY] <id>, the forms
// that name a connection id, which the proxy translates from its own ids
// to its backend's. KILL QUERY ID <query id> and KILL USER are not
// connection ids.
func parseKill(q string) (query bool, id uint64, ok bool) {
	var words []string
	stop := false
	lex(q, true, func(t token) {
		switch {
		case stop:
		case t.kind == tokEnd:
			stop = len(words) > 0
		case t.kind == tokQuoted || len(words) >= 5:
			words = append(words, "?")
		default:
			words = append(words, t.text)
		}
	})
	if len(words) < 2 || !strings.EqualFold(words[0], "KILL") {
		return false, 0, false
	}
	w := words[1:]
	if len(w) > 1 && (strings.EqualFold(w[0], "HARD") || strings.EqualFold(w[0], "SOFT")) {
		w = w[1:]
	}
	if len(w) > 1 {
		switch strings.ToUpper(w[0]) {
		case "QUERY":
			query = true
			w = w[1:]
		case "CONNECTION":
			w = w[1:]
		}
	}
	if len(w) != 1 {
		return false, 0, false
	}
	id, err := strconv.ParseUint(w[0], 10, 64)
	if err != nil {
		return false, 0, false
	}
	return query, id, true
}
