package mysql

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gm "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/protocols/mysql/apply"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// Appender is where statement mode logs (REPLICAR_MYSQL_FORMAT=statement):
// the node's backlog while it leads. The node gives it to the front end
// with Server.SetAppender; in statement mode nothing else appends while
// the node leads.
//
// Each entry is a rowlog payload: one committed transaction (KindTx, its
// statements with the session each ran in) or one DDL statement
// (KindDDL), appended in the order the primary committed them.
type Appender interface {
	// Next returns the epoch and offset the next Append will give its
	// entry. The front end calls it holding its commit lock, records the
	// pair in the transaction it commits (the store's __replicar.pos), and
	// then appends.
	Next() (epoch, offset uint64)
	// Append logs payload as the next entry and returns its offset. An
	// error means the entry is not in the log although the primary
	// committed its transaction: the front end then refuses every write
	// (StatementLogErr), and the node must not let its store follow
	// another leader without a full resync.
	Append(ctx context.Context, payload []byte) (uint64, error)
}

// SetAppender gives statement mode its log (nil: writes are refused with
// TRYAGAIN). Call it before the node leads, for instance when it becomes
// leader; it may be replaced at any time.
func (s *Server) SetAppender(a Appender) {
	if a == nil {
		s.stmt.app.Store(nil)
		return
	}
	s.stmt.app.Store(&appenderRef{a})
	// The first commit of the leadership clears the store's commit marks
	// of an earlier one.
	s.stmt.schemaMu.Lock()
	s.stmt.schemaDone = false
	s.stmt.schemaMu.Unlock()
}

// StatementLogErr reports why statement mode stopped taking writes: a
// transaction committed on the primary could not be logged (the Appender
// failed, or the backend connection broke during a COMMIT whose outcome
// could not be found out). The store then holds a transaction the log
// does not: the node must full-resync it before it follows a leader. Nil
// when all is well.
func (s *Server) StatementLogErr() error {
	if e := s.stmt.broken.Load(); e != nil {
		return *e
	}
	return nil
}

// StatementStats counts what statement mode did.
type StatementStats struct {
	// Entries is how many entries were appended (Transactions + DDL).
	Entries atomic.Int64
	// Transactions and DDL split Entries.
	Transactions atomic.Int64
	DDL          atomic.Int64
	// Statements is how many statements the entries hold.
	Statements atomic.Int64
	// Refused counts statements refused as unsafe.
	Refused atomic.Int64
	// Commits counts COMMITs (and autocommit writes) run in commit
	// order; OrderWait is the nanoseconds commits and exclusive statements
	// spent waiting for the order (earlier tickets to append, an exclusive
	// statement to finish).
	Commits   atomic.Int64
	OrderWait atomic.Int64
	// Exclusive counts the statements run holding the order alone (DDL,
	// writes to non-transactional tables), for ExclusiveHeld nanoseconds.
	Exclusive     atomic.Int64
	ExclusiveHeld atomic.Int64
	// Retries counts DDL (and non-transactional writes) run again after
	// a lock they waited for was held by a transaction that must commit
	// first.
	Retries atomic.Int64
}

// StatementStats returns statement mode's counters.
func (s *Server) StatementStats() *StatementStats { return &s.stmt.stats }

type appenderRef struct{ a Appender }

// stmtLog is statement mode's part of a Server.
type stmtLog struct {
	app atomic.Pointer[appenderRef]
	// seq is the commit order (statement_order.go).
	seq     *sequencer
	seqOnce sync.Once
	broken  atomic.Pointer[error]
	meta    stmtMeta
	stats   StatementStats

	schemaMu   sync.Mutex
	schemaDone bool
}

func (l *stmtLog) appender() Appender {
	if r := l.app.Load(); r != nil {
		return r.a
	}
	return nil
}

// fail records that a committed transaction is not in the log.
func (l *stmtLog) fail(err error) {
	l.broken.CompareAndSwap(nil, &err)
}

// unavailable is the refusal of a write when there is nowhere to log it.
func (l *stmtLog) unavailable() *gm.MyError {
	if e := l.broken.Load(); e != nil {
		return newError(codeNotExecuted, "TRYAGAIN statement log stopped: a committed transaction could not be logged ("+(*e).Error()+"); the statement was not executed")
	}
	if l.appender() == nil {
		return newError(codeNotExecuted, "TRYAGAIN this node has no statement log to write to; the statement was not executed")
	}
	return nil
}

// sequencer returns the commit order.
func (l *stmtLog) sequencer() *sequencer {
	l.seqOnce.Do(func() { l.seq = newSequencer(&l.stats) })
	return l.seq
}

// unsafeError is the answer to a statement that cannot be logged safely.
func unsafeError(why string) *gm.MyError {
	return newError(gm.ER_UNKNOWN_ERROR, "unsafe for statement replication: "+why+"; the statement was not executed")
}

// posTable is the position table in every backend (apply package).
const posTable = "`" + rowlog.InternalSchema + "`.`pos`"

// commitTable holds, on a statement-mode leader's store, one row per
// logged transaction, written by the transaction itself: the store says
// which entries it holds even if the node dies between a COMMIT and its
// append. One row per commit, not the single position row, so that
// concurrent commits do not queue on its lock. Old rows are pruned.
const commitTable = "`" + rowlog.InternalSchema + "`.`stmt_log`"

// pruneEvery is how many offsets apart commitTable is pruned, keeping
// the last pruneEvery rows.
const pruneEvery = 1024

// stmtSession is a client session's statement-mode state.
type stmtSession struct {
	// pending are the logged changes of the open transaction; writes
	// counts the data-changing statements among them.
	pending []rowlog.Change
	writes  int
	state   sessState
	// stateOK says state was read since the last statement that may
	// have changed it.
	stateOK bool
	// frozen says the proxy's SET timestamp is still in force (reset
	// before the next statement that is not a write).
	frozen bool
	// clientTS says the client set timestamp itself: the proxy neither
	// sets nor resets it, and logs its value.
	clientTS bool
	// prepared maps SQL-level PREPARE names to their text ("" when
	// prepared from a variable).
	prepared map[string]string
	// nextIsolation is the level SET TRANSACTION chose for the next
	// transaction; txIsolation is the open transaction's, when it took
	// one so.
	nextIsolation, txIsolation string
	autocommitOff              bool
	// queued counts proxy commands sent ahead of the client's, whose
	// answers are read and dropped first.
	queued int
}

// newConnection forgets what belonged to the old backend connection
// (the open transaction, the session variables read) and keeps what the
// session replay carries over.
func (st *stmtSession) newConnection() {
	st.pending, st.writes, st.stateOK, st.frozen, st.queued = nil, 0, false, false, 0
	st.nextIsolation, st.txIsolation = "", ""
}

// endTx forgets the transaction.
func (st *stmtSession) endTx() {
	st.pending, st.writes, st.txIsolation = nil, 0, ""
}

// sessState is the session state statements are replayed in.
type sessState struct {
	schema, sqlMode, timeZone           string
	charsetClient, collConn, collServer string
	fk, uniq                            bool
	aiInc, aiOff                        uint32
	isolation, lockWait, innodbLockWait string
	autocommit                          bool
	timestamp                           int64 // microseconds, for clientTS
	noBackslash                         bool
}

// stmtMode says the session's statements are logged here: statement
// mode, on the leader's own backend.
func (s *session) stmtMode() bool {
	return s.srv.cfg.Format == FormatStatement && s.local()
}

// multiStatements says the client may send several statements in one
// query (CLIENT_MULTI_STATEMENTS, or COM_SET_OPTION since).
func (s *session) multiStatements() bool {
	if s.setOption >= 0 {
		return s.setOption == 0 // MYSQL_OPTION_MULTI_STATEMENTS_ON
	}
	return s.caps&gm.CLIENT_MULTI_STATEMENTS != 0
}

// stmtQuery runs a COM_QUERY in statement mode. A query of several
// statements is run one statement at a time, each with its own answer
// marked "more results", so that each is made deterministic, checked and
// logged (or committed) on its own, as if the client had sent them one
// by one.
func (s *session) stmtQuery(cmd []byte, q string, cl Classification) error {
	pieces := splitStatements(q, !s.st.state.noBackslash)
	switch len(pieces) {
	case 0:
		_, err := s.stmtPass(cmd, q, stmtInfo{cl: cl}, nil)
		return err
	case 1:
		_, err := s.stmtDo(cmd, pieces[0].text, pieces[0].toks, nil, false)
		return err
	}
	plain := true
	for _, p := range pieces {
		info := analyzeStatement(p.text, p.toks)
		if info.action == actRefuse {
			s.srv.stmt.stats.Refused.Add(1)
			return s.writeErr(unsafeError(info.unsafe))
		}
		if info.action != actPass || len(info.calls) > 0 || info.verb == "CALL" || info.verb == "EXECUTE" || info.verb == "PREPARE" {
			plain = false
		}
	}
	if plain {
		// Reads and session statements only: the backend runs them as
		// one query.
		_, err := s.stmtPass(cmd, q, stmtInfo{cl: cl, verb: "SET"}, nil)
		return err
	}
	if !s.multiStatements() {
		return s.writeErr(&gm.MyError{Code: gm.ER_PARSE_ERROR, State: "42000",
			Message: "You have an error in your SQL syntax: several statements in one query, and multi-statements are not enabled on this connection"})
	}
	for i, p := range pieces {
		pc := make([]byte, 0, 1+len(p.text))
		pc = append(append(pc, gm.COM_QUERY), p.text...)
		ok, err := s.stmtDo(pc, p.text, p.toks, nil, i < len(pieces)-1)
		if err != nil || !ok {
			return err
		}
	}
	return nil
}

// stmtExecute runs a COM_STMT_EXECUTE in statement mode.
func (s *session) stmtExecute(cmd []byte, st *stmt) error {
	// The statement is logged from its first token to its last: a
	// trailing ";" or comment would end the applier's batch early.
	text, toks := st.query, []sqlTok(nil)
	if ps := splitStatements(st.query, !s.st.state.noBackslash); len(ps) == 1 {
		text, toks = ps[0].text, ps[0].toks
	} else {
		toks = sqlScan(st.query, !s.st.state.noBackslash)
	}
	_, err := s.stmtDo(cmd, text, toks, st, false)
	st.long = nil
	return err
}

// keepLongData keeps a COM_STMT_SEND_LONG_DATA's bytes, which statement
// mode needs to log the execution that uses them.
func (s *session) keepLongData(st *stmt, cmd []byte) {
	if !s.stmtMode() || cmd[0] != gm.COM_STMT_SEND_LONG_DATA || len(cmd) < 7 {
		return
	}
	param := int(leUint16(cmd[5:]))
	if st.long == nil {
		st.long = map[int][]byte{}
	}
	st.long[param] = append(st.long[param], cmd[7:]...)
}

// queueReset sends, ahead of a statement that is not a write, the reset
// of the timestamp the proxy set for the session's last write: NOW() reads
// the clock again.
func (s *session) queueReset() error {
	if !s.st.frozen || s.st.clientTS || !s.stmtMode() {
		return nil
	}
	if err := s.be.queueQuery("SET SESSION timestamp=DEFAULT"); err != nil {
		return s.backendLost(err)
	}
	s.st.queued++
	s.st.frozen = false
	return nil
}

// skipQueued reads and drops the answers to the proxy's own commands
// sent ahead of the client's.
func (s *session) skipQueued() error {
	for s.st.queued > 0 {
		s.st.queued--
		r, err := s.be.readResponse()
		if err != nil {
			return s.backendLost(err)
		}
		if r.err != nil {
			s.srv.log.Warn().Uint32("session", s.id).Str("error", r.err.Error()).Msg("statement mode: resetting the session timestamp failed")
		}
	}
	return nil
}

// stmtDo runs one statement (the text of a COM_QUERY or of a prepared
// statement st) and reports whether it succeeded: a split multi-statement
// query stops at the first failure, as the server would.
func (s *session) stmtDo(cmd []byte, text string, toks []sqlTok, st *stmt, more bool) (bool, error) {
	s.moreResults = more
	defer func() { s.moreResults = false }()
	info := analyzeStatement(text, toks)
	if err := s.resolve(&info, toks); err != nil {
		return false, err
	}
	switch info.action {
	case actRefuse:
		s.srv.stmt.stats.Refused.Add(1)
		s.srv.log.Debug().Uint32("session", s.id).Str("why", info.unsafe).Msg("statement refused as unsafe for statement replication")
		return false, s.writeErr(unsafeError(info.unsafe))
	case actWrite:
		return s.stmtWrite(cmd, text, &info, st)
	case actDDL:
		return s.stmtExclusive(cmd, text, &info, st, true)
	case actImplicitCommit:
		if ok, err := s.commitImplicit(); !ok || err != nil {
			return false, err
		}
		return s.stmtPass(cmd, text, info, st)
	case actCommit:
		return s.stmtCommit(cmd, text, info, st)
	case actRollback:
		ok, err := s.stmtPass(cmd, text, info, st)
		if ok && !s.inTx {
			s.st.endTx()
		}
		return ok, err
	case actSavepoint:
		ok, err := s.stmtPass(cmd, text, info, st)
		if ok && (s.inTx || s.st.autocommitOff) {
			// Logged even before the transaction's first write (with
			// autocommit off the server does not even report a
			// transaction yet): a later ROLLBACK TO needs it on replay.
			s.st.pending = append(s.st.pending, rowlog.Change{Stmt: &rowlog.Statement{SQL: text}})
		}
		return ok, err
	}
	return s.stmtPass(cmd, text, info, st)
}

// resolve finishes the decision analyzeStatement could not take from the
// text alone: stored routines, SQL-level prepared statements.
func (s *session) resolve(info *stmtInfo, toks []sqlTok) error {
	if info.action == actRefuse {
		return nil
	}
	if info.verb == "EXECUTE" && info.action == actWrite {
		s.resolveExecute(info)
		if info.action == actRefuse {
			return nil
		}
	}
	if len(info.calls) == 0 && info.verb != "CALL" {
		return nil
	}
	meta := &s.srv.stmt.meta
	routinesErr := meta.loadRoutines(s.metaQuery, false)
	if routinesErr != nil {
		var lost lostConn
		if errors.As(routinesErr, &lost) {
			return lost.err
		}
		s.srv.log.Warn().Err(routinesErr).Msg("statement mode: cannot read stored routines; calls are taken for built-in functions")
	}
	refuse := func(format string, args ...any) {
		info.action, info.unsafe = actRefuse, fmt.Sprintf(format, args...)
	}
	if info.verb == "CALL" {
		ri, ok := meta.procedure(s.db, info.callName)
		if !ok && routinesErr == nil {
			// Made since the cache was read (outside the front end)?
			if err := meta.loadRoutines(s.metaQuery, true); err != nil {
				var lost lostConn
				if errors.As(err, &lost) {
					return lost.err
				}
				routinesErr = err
			}
			ri, ok = meta.procedure(s.db, info.callName)
		}
		switch {
		case routinesErr != nil:
			refuse("CALL %s: the proxy cannot read the procedure's declaration (%v)", info.callName, routinesErr)
			return nil
		case !ok:
			info.action = actPass // no such procedure: the server says so
		case ri.writes():
			refuse("CALL %s: the procedure may change data, and the proxy sees only the CALL (MySQL logs the statements inside a procedure); declare it READS SQL DATA if it only reads, or use row mode", info.callName)
			return nil
		default:
			info.action = actPass
		}
	}
	for _, c := range info.calls {
		ri, isFunc, udf := meta.function(s.db, c)
		logged := info.action == actWrite || info.action == actDDL
		switch {
		case udf && logged:
			refuse("%s() is a loadable function, whose result the proxy cannot show to be deterministic", c)
			return nil
		case !isFunc:
			continue
		}
		if ri.writes() && info.action == actPass && info.verb != "CALL" {
			// A read or SET that calls a function which writes is a write:
			// MySQL logs it too.
			info.action = actWrite
			info.cl.Class = ClassWrite
			logged = true
			info.checkExpressions(stmtBody(toks), refuse)
			if info.action == actRefuse {
				return nil
			}
		}
		if logged && !ri.deterministic && ri.access != "NO SQL" && ri.access != "READS SQL DATA" {
			refuse("stored function %s is not declared DETERMINISTIC (nor NO SQL or READS SQL DATA), as MySQL requires of functions in logged statements", c)
			return nil
		}
	}
	return nil
}

// stmtBody skips SET STATEMENT … FOR and opening parentheses.
func stmtBody(toks []sqlTok) []sqlTok {
	for len(toks) > 0 && toks[0].punct('(') {
		toks = toks[1:]
	}
	return toks
}

// resolveExecute decides an SQL-level EXECUTE from the statement it runs.
func (s *session) resolveExecute(info *stmtInfo) {
	text, known := s.st.prepared[info.executeName]
	if !known {
		info.action = actPass // the server will say it is unknown
		return
	}
	if text == "" {
		info.action, info.unsafe = actRefuse, "EXECUTE of a statement prepared from a variable: the proxy does not know the statement; PREPARE it from a string literal"
		return
	}
	toks := sqlScan(text, !s.st.state.noBackslash)
	if ps := splitStatements(text, !s.st.state.noBackslash); len(ps) == 1 {
		text, toks = ps[0].text, ps[0].toks
	}
	inner := analyzeStatement(text, toks)
	switch inner.action {
	case actPass, actRefuse:
		info.action, info.unsafe = inner.action, inner.unsafe
		info.calls = inner.calls
		if inner.action == actPass {
			info.cl = inner.cl
		}
		return
	case actWrite:
	default:
		info.action, info.unsafe = actRefuse, "EXECUTE of a prepared "+inner.verb+" statement cannot be logged; run it directly"
		return
	}
	using := info.userVars
	inner.template, inner.usingVars = text, using
	inner.userVars = append(append([]string(nil), inner.userVars...), using...)
	*info = inner
}

// lostConn wraps a transport error met while reading metadata.
type lostConn struct{ err error }

func (l lostConn) Error() string { return l.err.Error() }

// metaQuery runs a metadata query on the session's backend connection.
func (s *session) metaQuery(q string) ([][]string, error) {
	_, rows, err := s.be.simpleQuery(q)
	if err != nil {
		if _, ok := myError(err); ok {
			return nil, err
		}
		return nil, lostConn{s.backendLost(err)}
	}
	return rows, nil
}

// stmtPass runs a statement that is not logged, with the lazy reset of
// the proxy's timestamp, and follows what it changed.
func (s *session) stmtPass(cmd []byte, text string, info stmtInfo, st *stmt) (bool, error) {
	wasTx := s.inTx
	var res relayResult
	var err error
	if st != nil {
		res, err = s.runExecute(cmd, st, info.cl)
	} else {
		res, err = s.runQuery(cmd, text, info.cl)
	}
	if err != nil {
		return false, err
	}
	ok := !res.errored
	s.afterPass(&info, text, ok, wasTx)
	if s.st.writes > 0 && info.action != actRollback {
		if ok && wasTx && !s.inTx {
			// The server committed the transaction without a COMMIT the
			// proxy knew of (a statement with an implicit commit it did
			// not expect): log it now, late.
			s.srv.log.Warn().Uint32("session", s.id).Str("statement", truncate(text, 200)).
				Msg("statement mode: a statement committed the open transaction implicitly; logging it after the fact, its order among concurrent commits is not guaranteed")
			if e := s.logCommitted(); e != nil {
				s.srv.log.Error().Str("error", e.Error()).Msg("statement mode: a transaction committed implicitly could not be logged")
			}
		} else if !ok {
			if err := s.probeTx(); err != nil {
				return false, err
			}
		}
	}
	return ok, nil
}

// afterPass follows session changes a statement that ran made.
func (s *session) afterPass(info *stmtInfo, text string, ok, wasTx bool) {
	if !ok {
		return
	}
	switch info.cl.Class {
	case ClassRead, ClassEmpty, ClassProxy, ClassBegin, ClassCommit, ClassRollback, ClassLock:
		if len(info.calls) > 0 {
			s.st.stateOK = false
		}
	default:
		s.st.stateOK = false
	}
	if info.prepareName != "" {
		if s.st.prepared == nil {
			s.st.prepared = map[string]string{}
		}
		s.st.prepared[info.prepareName] = preparedText(text, s.st.state.noBackslash)
	}
	if info.deallocName != "" {
		delete(s.st.prepared, info.deallocName)
	}
	if info.setsTimestamp {
		s.st.clientTS = !info.resetsTimestamp
		s.st.frozen = false
	}
	switch {
	case info.setsIsolation != "":
		s.st.nextIsolation = info.setsIsolation
	case !wasTx && s.inTx:
		// This statement began the transaction SET TRANSACTION was for.
		s.st.txIsolation, s.st.nextIsolation = s.st.nextIsolation, ""
	case wasTx && !s.inTx:
		s.st.txIsolation = ""
	}
}

// preparedText is the statement text of PREPARE name FROM 'text'.
func preparedText(q string, noBackslash bool) string {
	toks := sqlScan(q, !noBackslash)
	for i := 0; i+3 < len(toks); i++ {
		if toks[i].is("PREPARE") && toks[i+2].is("FROM") && toks[i+3].kind == tkString {
			return unescapeString(q[toks[i+3].pos:toks[i+3].end], !noBackslash)
		}
	}
	return ""
}

// unescapeString reads a quoted SQL string literal.
func unescapeString(lit string, backslash bool) string {
	if len(lit) < 2 {
		return ""
	}
	quote := lit[0]
	body := lit[1 : len(lit)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\' && backslash && i+1 < len(body):
			i++
			switch body[i] {
			case '0':
				b.WriteByte(0)
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			case 'Z':
				b.WriteByte(26)
			case '%', '_':
				b.WriteByte('\\')
				b.WriteByte(body[i])
			default:
				b.WriteByte(body[i])
			}
		case c == quote && i+1 < len(body) && body[i+1] == quote:
			b.WriteByte(quote)
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// probeTx asks the backend whether a transaction is still open after a
// statement of it failed: a deadlock or a lock wait timeout may roll the
// whole transaction back, and its logged statements with it.
func (s *session) probeTx() error {
	if err := s.be.command([]byte{gm.COM_PING}); err != nil {
		return s.backendLost(err)
	}
	r, err := s.be.readResponse()
	if err != nil {
		return s.backendLost(err)
	}
	if r.err == nil {
		s.afterResponse(relayResult{status: r.ok.status, sawStatus: true})
	}
	if !s.inTx {
		s.st.endTx()
	}
	return nil
}

// ensureState reads the session variables statements are replayed in,
// when a statement since may have changed them. A MySQL error is
// returned as such (the statement's answer); anything else ends the
// session.
func (s *session) ensureState() (*gm.MyError, error) {
	if s.st.stateOK {
		return nil, nil
	}
	meta := &s.srv.stmt.meta
	if err := meta.loadCollations(s.metaQuery); err != nil {
		var lost lostConn
		if errors.As(err, &lost) {
			return nil, lost.err
		}
		if me, ok := myError(err); ok {
			return me, nil
		}
		return backendUnavailableError(err), nil
	}
	iso := "@@session.tx_isolation"
	if !s.srv.info.MariaDB {
		iso = "@@session.transaction_isolation"
	}
	_, rows, err := s.be.simpleQuery("SELECT DATABASE(), @@session.sql_mode, @@session.time_zone, @@session.character_set_client, " +
		"@@session.collation_connection, @@session.collation_server, @@session.foreign_key_checks, @@session.unique_checks, " +
		"@@session.auto_increment_increment, @@session.auto_increment_offset, " + iso + ", @@session.lock_wait_timeout, " +
		"@@session.innodb_lock_wait_timeout, @@session.autocommit, @@session.timestamp")
	if err != nil {
		if me, ok := myError(err); ok {
			return me, nil
		}
		return nil, s.backendLost(err)
	}
	if len(rows) != 1 || len(rows[0]) < 15 {
		return backendUnavailableError(errors.New("short answer to the session state query")), nil
	}
	r := rows[0]
	u32 := func(v string) uint32 { n, _ := strconv.ParseUint(v, 10, 32); return uint32(n) }
	st := sessState{
		schema: r[0], sqlMode: r[1], timeZone: r[2], charsetClient: r[3], collConn: r[4], collServer: r[5],
		fk: r[6] == "1", uniq: r[7] == "1", aiInc: u32(r[8]), aiOff: u32(r[9]),
		isolation: strings.ToUpper(r[10]), lockWait: r[11], innodbLockWait: r[12], autocommit: r[13] == "1",
		noBackslash: strings.Contains(strings.ToUpper(r[1]), "NO_BACKSLASH_ESCAPES"),
	}
	if f, err := strconv.ParseFloat(r[14], 64); err == nil {
		st.timestamp = int64(f*1e6 + 0.5)
	}
	s.st.state, s.st.stateOK = st, true
	s.st.autocommitOff = !st.autocommit
	return nil, nil
}

// writeCheck runs the checks of a logged statement that need the
// server: the isolation level and the tables it writes. It returns the
// reason to refuse it, and whether it must run holding the commit order
// (a write to a non-transactional table).
func (s *session) writeCheck(info *stmtInfo) (why string, exclusive bool, err error) {
	iso := s.st.state.isolation
	switch {
	case !s.inTx && s.st.nextIsolation != "":
		iso = s.st.nextIsolation
	case s.inTx && s.st.txIsolation != "":
		iso = s.st.txIsolation
	}
	switch strings.ReplaceAll(iso, " ", "-") {
	case "READ-COMMITTED", "READ-UNCOMMITTED":
		return "transaction isolation " + iso + ": a statement's effect then depends on transactions that commit while it runs; use REPEATABLE READ or SERIALIZABLE (MySQL refuses statement logging at this level too)", false, nil
	}
	insert := info.verb == "INSERT" || info.verb == "REPLACE"
	for _, ref := range info.targets {
		if strings.EqualFold(ref.schema, rowlog.InternalSchema) || (ref.schema == "" && strings.EqualFold(s.db, rowlog.InternalSchema)) {
			return "the __replicar schema is replicar's own", false, nil
		}
		ti, err := s.srv.stmt.meta.table(ref, s.db, s.metaQuery)
		if err != nil {
			var lost lostConn
			if errors.As(err, &lost) {
				return "", false, lost.err
			}
			return "", false, err
		}
		if !ti.exists {
			continue
		}
		for col, why := range ti.unsafeDefaults {
			if insert && (strings.HasPrefix(col, "\x00") || info.leavesDefault(col)) {
				return why, false, nil
			}
		}
		switch {
		case insert && info.onDupKey && ti.uniqueKeys > 1:
			return fmt.Sprintf("INSERT … ON DUPLICATE KEY UPDATE on %s, which has %d unique keys: which row is updated depends on the order keys are checked in", ref, ti.uniqueKeys), false, nil
		case insert && info.insertSelect && !info.ordered && ti.autoInc:
			return fmt.Sprintf("INSERT … SELECT into %s, which has an AUTO_INCREMENT column, without ORDER BY: the values each row gets depend on the order the SELECT returns them", ref), false, nil
		case insert && ti.autoIncNotFirst:
			return fmt.Sprintf("%s has an AUTO_INCREMENT column that is not the first column of its primary key", ref), false, nil
		}
		for _, event := range info.triggerEvents() {
			if why, ok := ti.unsafeTriggers[event]; ok {
				return why, false, nil
			}
		}
		for _, tr := range ti.triggerInserts {
			tt, err := s.srv.stmt.meta.table(tr, tr.schema, s.metaQuery)
			if err != nil {
				var lost lostConn
				if errors.As(err, &lost) {
					return "", false, lost.err
				}
				return "", false, err
			}
			if tt.autoInc {
				return fmt.Sprintf("a trigger on %s inserts into %s, which has an AUTO_INCREMENT column: the values a trigger generates are not logged", ref, tr), false, nil
			}
		}
		if !ti.transactional {
			if s.inTx || s.st.autocommitOff {
				return fmt.Sprintf("%s uses the non-transactional engine %s inside a transaction: its changes take effect before the transaction commits, out of the commit order", ref, ti.engine), false, nil
			}
			exclusive = true
		}
	}
	return "", exclusive, nil
}

// randSeed returns a seed for rand_seed1/2.
func randSeed() uint64 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return uint64(binary.LittleEndian.Uint32(b[:]) & 0x3fffffff)
}

func timestampLiteral(us int64) string {
	return fmt.Sprintf("%d.%06d", us/1_000_000, us%1_000_000)
}

// logSession is the session a logged statement is replayed in.
func (s *session) logSession(ts int64, seed1, seed2, insertID uint64, lastID *uint64) (rowlog.Session, error) {
	st := &s.st.state
	ses := rowlog.Session{
		Has: rowlog.HasSchema | rowlog.HasSQLMode | rowlog.HasTimestamp | rowlog.HasInsertID | rowlog.HasRandSeed |
			rowlog.HasTimeZone | rowlog.HasForeignKeyChecks | rowlog.HasUniqueChecks | rowlog.HasAutoInc | rowlog.HasCharset,
		Schema: st.schema, SQLMode: st.sqlMode, Timestamp: ts, InsertID: insertID, RandSeed1: seed1, RandSeed2: seed2,
		TimeZone: st.timeZone, ForeignKeyChecks: st.fk, UniqueChecks: st.uniq, AutoIncIncrement: st.aiInc, AutoIncOffset: st.aiOff,
	}
	if s.st.clientTS {
		ses.Timestamp = st.timestamp
	}
	a, b, c, ok := s.srv.stmt.meta.collationIDs(st.charsetClient, st.collConn, st.collServer)
	if !ok {
		return ses, fmt.Errorf("unknown character set or collation (%s, %s, %s)", st.charsetClient, st.collConn, st.collServer)
	}
	ses.CharsetClient, ses.CollationConnection, ses.CollationServer = a, b, c
	if lastID != nil {
		ses.Has |= rowlog.HasLastInsertID
		ses.LastInsertID = *lastID
	}
	return ses, nil
}

// writeAnswer is the final packet of a write's answer, held until the
// write is logged (and, outside a transaction, committed).
type writeAnswer struct {
	ok     okPacket
	eof    bool // the answer was a result set; ok.status and warnings are its EOF's
	errPkt []byte
}

func (a writeAnswer) code() uint16 {
	if len(a.errPkt) >= 3 {
		return leUint16(a.errPkt[1:])
	}
	return 0
}

// relayWriteAnswer relays the answer to a write, all but its final
// packet.
func (s *session) relayWriteAnswer() (writeAnswer, error) {
	be := s.be
	for {
		p, err := be.readPacket()
		if err != nil {
			return writeAnswer{}, s.backendLost(err)
		}
		switch {
		case p[0] == hdrERR:
			return writeAnswer{errPkt: append([]byte(nil), p...)}, nil
		case p[0] == hdrOK:
			ok, err := parseOK(p, be.caps)
			if err != nil {
				s.srv.stats.ProtocolErrors.Add(1)
				return writeAnswer{}, s.backendLost(err)
			}
			var res relayResult
			s.absorbState(&ok, &res)
			if ok.status&statusMoreResults == 0 {
				return writeAnswer{ok: ok}, nil
			}
			if err := s.writeOK(ok); err != nil {
				return writeAnswer{}, errClientGone
			}
		case p[0] == hdrLocal:
			// LOAD DATA LOCAL is refused before it runs; send no file.
			if err := be.writePacket(nil); err != nil {
				return writeAnswer{}, s.backendLost(err)
			}
			if err := be.flush(); err != nil {
				return writeAnswer{}, s.backendLost(err)
			}
		case isEOF(p):
			ok := okPacket{warnings: leUint16(p[1:]), status: eofStatus(p)}
			return writeAnswer{ok: ok, eof: true}, nil
		default:
			ncol, _, good := lenencInt(p)
			if !good || ncol == 0 || ncol > 1<<16 {
				s.srv.stats.ProtocolErrors.Add(1)
				return writeAnswer{}, s.backendLost(errors.New("malformed column count"))
			}
			if err := s.cw.writePacket(p); err != nil {
				return writeAnswer{}, errClientGone
			}
			if _, err := s.relayDefs(int(ncol)); err != nil {
				return writeAnswer{}, err
			}
			for {
				p, err := be.readPacket()
				if err != nil {
					return writeAnswer{}, s.backendLost(err)
				}
				if p[0] == hdrERR {
					return writeAnswer{errPkt: append([]byte(nil), p...)}, nil
				}
				if isEOF(p) {
					ok := okPacket{warnings: leUint16(p[1:]), status: eofStatus(p)}
					if ok.status&statusMoreResults == 0 {
						return writeAnswer{ok: ok, eof: true}, nil
					}
					if err := s.writeEOF(p); err != nil {
						return writeAnswer{}, errClientGone
					}
					break
				}
				if err := s.cw.writePacket(p); err != nil {
					return writeAnswer{}, errClientGone
				}
			}
		}
	}
}

// writeFinal sends a write's held final packet. auto says the proxy
// wrapped an autocommit statement in a transaction of its own, which the
// client must not see.
func (s *session) writeFinal(a writeAnswer, auto bool) error {
	if a.errPkt != nil {
		return s.toClient(s.cw.writePacket(a.errPkt))
	}
	status := a.ok.status
	if auto {
		status = status&^statusInTrans | gm.SERVER_STATUS_AUTOCOMMIT
	}
	if s.moreResults {
		status |= statusMoreResults
	}
	if a.eof {
		if s.caps&gm.CLIENT_SESSION_TRACK == 0 {
			status &^= statusStateChanged
		}
		return s.toClient(s.cw.writePacket(eofPacket(a.ok.warnings, status)))
	}
	ok := a.ok
	ok.status = status
	return s.toClient(s.writeOK(ok))
}

// stmtWrite runs a data-changing statement made deterministic and adds
// it to the session's transaction; an autocommit statement is wrapped in
// a transaction of the proxy's and committed in commit order at once.
//
// Before the statement, in the same round trip: SET timestamp (NOW() and
// the like give the logged time), rand_seed1/2 (RAND() follows the logged
// seeds), autocommit=0 for an autocommit statement, and a SELECT of
// LAST_INSERT_ID() and the user variables it reads, whose values are
// logged. After it: the AUTO_INCREMENT value it generated, from its OK.
func (s *session) stmtWrite(cmd []byte, text string, info *stmtInfo, st *stmt) (bool, error) {
	sl := &s.srv.stmt
	if e := sl.unavailable(); e != nil {
		return false, s.writeErr(e)
	}
	if e, err := s.ensureState(); err != nil || e != nil {
		if err != nil {
			return false, err
		}
		return false, s.writeErr(e)
	}
	why, exclusive, err := s.writeCheck(info)
	if err != nil {
		if me, ok := myError(err); ok {
			return false, s.writeErr(me)
		}
		return false, err
	}
	if why != "" {
		sl.stats.Refused.Add(1)
		return false, s.writeErr(unsafeError(why))
	}
	if exclusive {
		return s.stmtExclusive(cmd, text, info, st, false)
	}
	style := newLiteralStyle(s.st.state.sqlMode, s.st.state.charsetClient)
	logged := text
	if st != nil {
		lits, err := executeParams(cmd, st.params, st.types, st.long, style)
		if err == nil {
			logged, err = substituteParams(text, info.params, lits)
		}
		if err != nil {
			return false, s.writeErr(newError(gm.ER_UNKNOWN_ERROR, "ERR statement mode cannot log this execution ("+err.Error()+"); the statement was not executed"))
		}
	}
	cl := info.cl
	cl.Class = ClassWrite
	refusal, _, admitted := s.admit(cl)
	if refusal != nil {
		return false, s.writeErr(refusal)
	}
	if admitted {
		s.srv.writesInFlight.Add(1)
		defer s.srv.writesInFlight.Add(-1)
	}
	auto := !s.inTx && !s.st.autocommitOff
	ts := time.Now().UnixMicro()
	seed1, seed2 := randSeed(), randSeed()
	ses, err := s.logSession(ts, seed1, seed2, 0, nil)
	if err != nil {
		return false, s.writeErr(newError(gm.ER_UNKNOWN_ERROR, "ERR statement mode cannot log this statement ("+err.Error()+"); it was not executed"))
	}
	var sets []string
	if auto {
		sets = append(sets, "autocommit=0")
	}
	if !s.st.clientTS {
		sets = append(sets, "timestamp="+timestampLiteral(ts))
	}
	sets = append(sets, fmt.Sprintf("rand_seed1=%d, rand_seed2=%d", seed1, seed2))
	vars := uniqueNames(info.userVars)
	var sel []string
	if info.lastInsertID {
		sel = append(sel, "LAST_INSERT_ID()")
	}
	for _, v := range vars {
		q := quoteUserVar(v)
		sel = append(sel, q, "CHARSET("+q+")", "COLLATION("+q+")")
	}
	s.setBusy(true)
	defer s.setBusy(false)
	be := s.be
	if err := be.queueQuery("SET SESSION " + strings.Join(sets, ", ")); err != nil {
		return false, s.backendLost(err)
	}
	if len(sel) > 0 {
		if err := be.queueQuery("SELECT " + strings.Join(sel, ", ")); err != nil {
			return false, s.backendLost(err)
		}
	}
	if err := be.queue(cmd); err != nil {
		return false, s.backendLost(err)
	}
	if err := be.flush(); err != nil {
		return false, s.backendLost(err)
	}
	pre, err := be.readResponse()
	if err != nil {
		return false, s.backendLost(err)
	}
	var vals response
	if len(sel) > 0 {
		if vals, err = be.readResponse(); err != nil {
			return false, s.backendLost(err)
		}
	}
	ans, err := s.relayWriteAnswer()
	if err != nil {
		return false, err
	}
	s.st.frozen = !s.st.clientTS
	if !s.inTx {
		// The write ran in the transaction SET TRANSACTION was for.
		if auto {
			s.st.nextIsolation = ""
		} else {
			s.st.txIsolation, s.st.nextIsolation = s.st.nextIsolation, ""
		}
	}
	if pre.err != nil || vals.err != nil || (len(sel) > 0 && len(vals.rows) != 1) {
		why := "reading the values it uses failed"
		if pre.err != nil {
			why = "setting its session failed (" + pre.err.Error() + ")"
		} else if vals.err != nil {
			why = "reading the values it uses failed (" + vals.err.Error() + ")"
		}
		return false, s.abortWrite(auto && pre.err == nil, ans.errPkt == nil && auto && pre.err != nil, why)
	}
	if ans.errPkt != nil {
		if auto {
			if err := s.endAuto(); err != nil {
				return false, err
			}
		} else if s.st.writes > 0 {
			if err := s.probeTx(); err != nil {
				return false, err
			}
		}
		return false, s.writeFinal(ans, false)
	}
	var lastID *uint64
	col := 0
	if info.lastInsertID {
		v, _ := strconv.ParseUint(vals.rows[0][0].s, 10, 64)
		lastID = &v
		col = 1
	}
	lits := map[string]string{}
	var change []rowlog.Change
	if len(vars) > 0 {
		row := vals.rows[0]
		var set []string
		for i, v := range vars {
			c := col + 3*i
			if c+2 >= len(row) || c >= len(vals.cols) {
				return false, s.abortWrite(auto, false, "reading its user variables gave a short row")
			}
			lit := userVarLiteral(vals.cols[c], row[c], row[c+1], row[c+2])
			set = append(set, quoteUserVar(v)+":="+lit)
			lits[strings.ToLower(v)] = lit
		}
		change = append(change, rowlog.Change{Stmt: &rowlog.Statement{SQL: "SET " + strings.Join(set, ", ")}})
	}
	if info.template != "" {
		// EXECUTE name USING @a, …: the prepared text with the values.
		using := make([]string, len(info.usingVars))
		for i, v := range info.usingVars {
			using[i] = lits[strings.ToLower(v)]
		}
		if logged, err = substituteParams(info.template, info.params, using); err != nil {
			return false, s.abortWrite(auto, false, err.Error())
		}
	}
	ses.InsertID = ans.ok.insertID
	if lastID != nil {
		ses.Has |= rowlog.HasLastInsertID
		ses.LastInsertID = *lastID
	}
	change = append(change, rowlog.Change{Stmt: &rowlog.Statement{SQL: logged, Session: ses}})
	s.st.pending = append(s.st.pending, change...)
	s.st.writes++
	if !auto {
		s.txWrites = true
		s.afterResponse(relayResult{status: ans.ok.status, sawStatus: true})
		return true, s.writeFinal(ans, false)
	}
	tail := "SET SESSION autocommit=1"
	if !s.st.clientTS {
		tail += ", timestamp=DEFAULT"
	}
	_, off, e, err := s.commitLogged(append([]byte{gm.COM_QUERY}, tail...))
	s.st.frozen = false
	if err != nil {
		return false, err
	}
	if e == nil {
		e = s.holdOffset(off)
	}
	if e != nil {
		return false, s.writeErr(e)
	}
	return true, s.writeFinal(ans, true)
}

// uniqueNames drops repeated names (user variable names are not case
// sensitive).
func uniqueNames(names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		k := strings.ToLower(n)
		if !seen[k] {
			seen[k] = true
			out = append(out, n)
		}
	}
	return out
}

// endAuto ends the proxy's transaction around an autocommit statement
// that failed: nothing to log, autocommit back on.
func (s *session) endAuto() error {
	q := "SET SESSION autocommit=1"
	if !s.st.clientTS {
		q += ", timestamp=DEFAULT"
	}
	ok, _, err := s.be.simpleQuery(q)
	if err != nil {
		if _, isMy := myError(err); !isMy {
			return s.backendLost(err)
		}
		s.srv.log.Warn().Err(err).Msg("statement mode: restoring autocommit failed")
	}
	s.st.frozen = false
	s.afterResponse(relayResult{status: ok.status, sawStatus: true})
	return nil
}

// abortWrite answers a write whose session settings or logged values
// could not be had: its transaction is rolled back, so nothing unlogged
// stays committed. committed says the statement committed on its own
// already (its SET autocommit=0 failed): then the log has lost it.
func (s *session) abortWrite(auto, committed bool, why string) error {
	if committed {
		err := fmt.Errorf("an autocommit statement ran without statement mode's settings: %s", why)
		s.srv.stmt.fail(err)
		s.srv.log.Error().Err(err).Msg("statement mode: the store holds a write the log does not")
	}
	q := "ROLLBACK"
	if auto {
		q = "ROLLBACK; SET SESSION autocommit=1"
	}
	for _, one := range strings.Split(q, "; ") {
		if _, _, err := s.be.simpleQuery(one); err != nil {
			if _, isMy := myError(err); !isMy {
				return s.backendLost(err)
			}
		}
	}
	s.mu.Lock()
	s.inTx = false
	s.mu.Unlock()
	s.txWrites = false
	s.st.endTx()
	s.st.frozen = true
	return s.writeErr(newError(gm.ER_UNKNOWN_ERROR, "ERR statement mode could not log the statement: "+why+"; its transaction was rolled back"))
}

// commitLogged commits the session's transaction with commitCmd
// (COMMIT, or the proxy's SET autocommit=1) holding the commit lock, and
// appends its entry before releasing it. In the same transaction it
// records the entry's position in __replicar.pos, so the store itself
// says which entries it holds (see doc.go). It returns the commit's OK and
// the entry's offset; e is the client's answer when the commit failed or
// could not be logged; err ends the session.
func (s *session) commitLogged(commitCmd []byte) (okPacket, uint64, *gm.MyError, error) {
	sl := &s.srv.stmt
	changes, writes := s.st.pending, s.st.writes
	s.st.endTx()
	s.txWrites = false
	be := s.be
	if writes == 0 {
		if err := be.command(commitCmd); err != nil {
			return okPacket{}, 0, nil, s.backendLost(err)
		}
		r, err := be.readResponse()
		if err != nil {
			return okPacket{}, 0, nil, s.backendLost(err)
		}
		s.afterResponse(relayResult{status: r.ok.status, sawStatus: r.err == nil})
		return r.ok, 0, r.err, nil
	}
	app := sl.appender()
	payload, encErr := rowlog.Encode(&rowlog.Txn{Kind: rowlog.KindTx, Time: time.Now().UnixMicro(), Changes: changes})
	if app == nil || encErr != nil {
		why := "no statement log"
		if encErr != nil {
			why = encErr.Error()
		}
		if _, _, err := be.simpleQuery("ROLLBACK"); err != nil {
			if _, ok := myError(err); !ok {
				return okPacket{}, 0, nil, s.backendLost(err)
			}
		}
		if !s.st.autocommitOff {
			// The proxy's own transaction around an autocommit statement.
			_, _, _ = be.simpleQuery("SET SESSION autocommit=1")
		}
		return okPacket{}, 0, newError(codeNotExecuted, "TRYAGAIN the transaction cannot be logged ("+why+"); it was rolled back"), nil
	}
	if err := s.ensureSchema(); err != nil {
		s.srv.log.Warn().Err(err).Msg("statement mode: cannot create the commit table; commits are logged without their mark in the store")
	}
	seq := sl.sequencer()
	release := seq.shared()
	defer release()
	epoch, next := seq.take(app)
	sl.stats.Commits.Add(1)
	// A plain INSERT: an INSERT … ON DUPLICATE KEY UPDATE would take
	// next-key locks for its duplicate check, and concurrent commits, all
	// inserting at the end of the index, would queue on them. Offsets do
	// not repeat within a leadership, and the table is cleared when one
	// begins.
	marker := fmt.Sprintf("INSERT INTO %s (`offset`, epoch) VALUES (%d, %d)", commitTable, next, epoch)
	err := be.queueQuery(marker)
	if err == nil {
		err = be.queue(commitCmd)
	}
	if err == nil {
		err = be.flush()
	}
	var mres, cres response
	if err == nil {
		mres, err = be.readResponse()
	}
	if err == nil {
		cres, err = be.readResponse()
	}
	if err != nil {
		// The COMMIT's fate is unknown: the mark it would have written
		// tells.
		committed, rerr := s.srv.committedAt(epoch, next)
		if rerr != nil {
			sl.fail(fmt.Errorf("connection lost during a COMMIT whose outcome cannot be read (%v)", rerr))
			committed = false
		}
		if committed {
			s.finishEntry(app, next, payload, len(changes), rowlog.KindTx)
		} else {
			s.finishEntry(app, next, nil, 0, rowlog.KindTx)
		}
		return okPacket{}, 0, nil, s.backendLost(err)
	}
	if cres.err != nil {
		s.finishEntry(app, next, nil, 0, rowlog.KindTx)
		if err := s.probeTx(); err != nil {
			return okPacket{}, 0, nil, err
		}
		return okPacket{}, 0, cres.err, nil
	}
	if mres.err != nil {
		s.srv.log.Warn().Str("error", mres.err.Error()).Msg("statement mode: the commit's mark was not written in the store")
	}
	off, e := s.finishEntry(app, next, payload, len(changes), rowlog.KindTx)
	s.afterResponse(relayResult{status: cres.ok.status, sawStatus: true})
	return cres.ok, off, e, nil
}

// finishEntry appends the entry of ticket next in commit order (nil
// payload: an empty one, for a COMMIT that failed). A failure is the
// client's UNCOMMITTED answer and stops statement mode.
func (s *session) finishEntry(app Appender, next uint64, payload []byte, statements int, kind rowlog.Kind) (uint64, *gm.MyError) {
	sl := &s.srv.stmt
	off, err := sl.sequencer().finish(app, next, payload)
	if err != nil {
		err = fmt.Errorf("append of a committed transaction failed: %w", err)
		sl.fail(err)
		s.srv.log.Error().Err(err).Msg("statement mode: the store holds a transaction the log does not; writes are refused until the node resyncs")
		return 0, uncommittedError(fmt.Sprintf("(entry %d)", next), err)
	}
	if off%pruneEvery == 0 {
		s.srv.pruneCommits(off)
	}
	if payload == nil {
		return off, nil
	}
	sl.stats.Entries.Add(1)
	sl.stats.Statements.Add(int64(statements))
	if kind == rowlog.KindDDL {
		sl.stats.DDL.Add(1)
	} else {
		sl.stats.Transactions.Add(1)
	}
	return off, nil
}

// logCommitted logs the session's transaction that the server already
// committed.
func (s *session) logCommitted() *gm.MyError {
	sl := &s.srv.stmt
	changes := s.st.pending
	s.st.endTx()
	app := sl.appender()
	payload, err := rowlog.Encode(&rowlog.Txn{Kind: rowlog.KindTx, Time: time.Now().UnixMicro(), Changes: changes})
	if app == nil || err != nil {
		err = fmt.Errorf("a transaction committed implicitly cannot be logged: %v", err)
		sl.fail(err)
		return newError(gm.ER_UNKNOWN_ERROR, err.Error())
	}
	seq := sl.sequencer()
	release := seq.shared()
	defer release()
	_, next := seq.take(app)
	_, e := s.finishEntry(app, next, payload, len(changes), rowlog.KindTx)
	return e
}

// commitImplicit commits and logs the open transaction before a statement
// that would commit it implicitly (BEGIN, LOCK TABLES, SET autocommit=1,
// DDL), so that its entry takes its place in the commit order.
func (s *session) commitImplicit() (bool, error) {
	if s.st.writes == 0 {
		s.st.endTx()
		return true, nil
	}
	refusal, _, admitted := s.admit(Classification{Class: ClassCommit})
	if refusal != nil {
		s.st.endTx()
		return false, s.refuse(Classification{Class: ClassCommit}, refusal)
	}
	if admitted {
		s.srv.writesInFlight.Add(1)
		defer s.srv.writesInFlight.Add(-1)
	}
	_, off, e, err := s.commitLogged(append([]byte{gm.COM_QUERY}, "COMMIT"...))
	if err != nil {
		return false, err
	}
	if e == nil {
		e = s.holdOffset(off)
	}
	if e != nil {
		return false, s.writeErr(e)
	}
	return true, nil
}

// stmtCommit runs a COMMIT in commit order and logs the transaction.
func (s *session) stmtCommit(cmd []byte, text string, info stmtInfo, st *stmt) (bool, error) {
	if s.st.writes == 0 {
		s.st.endTx()
		return s.stmtPass(cmd, text, info, st)
	}
	refusal, _, admitted := s.admit(info.cl)
	if refusal != nil {
		s.st.endTx()
		return false, s.refuse(info.cl, refusal)
	}
	if admitted {
		s.srv.writesInFlight.Add(1)
		defer s.srv.writesInFlight.Add(-1)
	}
	s.setBusy(true)
	ok, off, e, err := s.commitLogged(cmd)
	s.setBusy(false)
	if err != nil {
		return false, err
	}
	if e == nil {
		e = s.holdOffset(off)
	}
	if e != nil {
		return false, s.writeErr(e)
	}
	if s.moreResults {
		ok.status |= statusMoreResults
	}
	return true, s.toClient(s.writeOK(ok))
}

// holdOffset waits until the entry at off is committed under the ack
// policy, and returns the client's error otherwise.
func (s *session) holdOffset(off uint64) *gm.MyError {
	if s.srv.core == nil || off == 0 {
		return nil
	}
	s.srv.stats.CommitsHeld.Add(1)
	err := s.srv.core.WaitCommitted(s.ctx, off)
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("at offset %d", off)
	if s.srv.cfg.AckTimeoutDegrade && errors.Is(err, ackpolicy.ErrAckTimeout) {
		s.srv.log.Warn().Uint64("offset", off).Err(err).Msg("commit acknowledged without meeting the ack policy (degrade mode)")
		return nil
	}
	s.srv.stats.Uncommitted.Add(1)
	return uncommittedError(what, err)
}

// stmtExclusive runs a statement holding the commit order for its whole
// run: DDL (which commits on its own) and writes to non-transactional
// tables (whose effect is immediate). Waiting for a lock while holding
// the commit order could deadlock with a transaction that holds the lock
// and waits to commit, so the statement runs with no lock wait: when a
// lock is busy it fails at once (1205), the commit order is released for
// the holder to commit, and the statement runs again, until the
// session's lock_wait_timeout (at most two minutes) has passed. MariaDB
// and MySQL 8 DDL is atomic, so a DDL that failed this way did nothing.
//
// The store's position records the entry as pending before the statement
// and as done after it, so a node that dies in between knows its store
// may hold a change its log lacks.
func (s *session) stmtExclusive(cmd []byte, text string, info *stmtInfo, st *stmt, ddl bool) (bool, error) {
	sl := &s.srv.stmt
	if e := sl.unavailable(); e != nil {
		return false, s.writeErr(e)
	}
	if e, err := s.ensureState(); err != nil || e != nil {
		if err != nil {
			return false, err
		}
		return false, s.writeErr(e)
	}
	if ddl && s.st.writes > 0 {
		if ok, err := s.commitImplicit(); !ok || err != nil {
			return false, err
		}
	}
	if len(info.userVars) > 0 || info.lastInsertID {
		// Only transactional writes read them back (stmtWrite).
		sl.stats.Refused.Add(1)
		return false, s.writeErr(unsafeError("a user variable or LAST_INSERT_ID() in a DDL statement or a write to a non-transactional table cannot be logged with it"))
	}
	cl := info.cl
	if !ddl {
		cl.Class = ClassWrite
	}
	refusal, _, admitted := s.admit(cl)
	if refusal != nil {
		return false, s.writeErr(refusal)
	}
	if admitted {
		s.srv.writesInFlight.Add(1)
		defer s.srv.writesInFlight.Add(-1)
	}
	style := newLiteralStyle(s.st.state.sqlMode, s.st.state.charsetClient)
	logged := text
	if st != nil {
		lits, err := executeParams(cmd, st.params, st.types, st.long, style)
		if err == nil {
			logged, err = substituteParams(text, info.params, lits)
		}
		if err != nil {
			return false, s.writeErr(newError(gm.ER_UNKNOWN_ERROR, "ERR statement mode cannot log this execution ("+err.Error()+"); the statement was not executed"))
		}
	}
	if err := s.ensureSchema(); err != nil {
		return false, s.writeErr(newError(gm.ER_UNKNOWN_ERROR, "ERR statement mode cannot create its position table ("+err.Error()+"); the statement was not executed"))
	}
	app := sl.appender()
	short := "0"
	if !s.srv.info.MariaDB {
		short = "1" // MySQL's minimum
	}
	limit := 2 * time.Minute
	if n, err := strconv.Atoi(s.st.state.lockWait); err == nil && time.Duration(n)*time.Second < limit {
		limit = time.Duration(n) * time.Second
	}
	deadline := time.Now().Add(limit)
	backoff := time.Millisecond
	s.setBusy(true)
	defer s.setBusy(false)
	for {
		ts := time.Now().UnixMicro()
		seed1, seed2 := randSeed(), randSeed()
		ses, err := s.logSession(ts, seed1, seed2, 0, nil)
		if err != nil {
			return false, s.writeErr(newError(gm.ER_UNKNOWN_ERROR, "ERR statement mode cannot log this statement ("+err.Error()+"); it was not executed"))
		}
		sets := []string{fmt.Sprintf("rand_seed1=%d, rand_seed2=%d", seed1, seed2), "lock_wait_timeout=" + short, "innodb_lock_wait_timeout=" + short}
		restore := []string{"lock_wait_timeout=" + orDefault(s.st.state.lockWait), "innodb_lock_wait_timeout=" + orDefault(s.st.state.innodbLockWait)}
		if !s.st.clientTS {
			sets = append(sets, "timestamp="+timestampLiteral(ts))
			restore = append(restore, "timestamp=DEFAULT")
		}
		seq := sl.sequencer()
		unlock := seq.exclusive()
		epoch, next := seq.take(app)
		mark := fmt.Sprintf("UPDATE %s SET ddl_epoch=%d, ddl_offset=%d WHERE id=1", posTable, epoch, next)
		be := s.be
		cmds := []string{"SET SESSION " + strings.Join(sets, ", "), mark}
		var sendErr error
		for _, c := range cmds {
			if sendErr == nil {
				sendErr = be.queueQuery(c)
			}
		}
		if sendErr == nil {
			sendErr = be.queue(cmd)
		}
		if sendErr == nil {
			sendErr = be.queueQuery("SET SESSION " + strings.Join(restore, ", "))
		}
		if sendErr == nil {
			sendErr = be.flush()
		}
		if sendErr != nil {
			seq.drop(next)
			unlock()
			sl.fail(fmt.Errorf("connection lost before a %s whose outcome cannot be known", info.verb))
			return false, s.backendLost(sendErr)
		}
		var pre, mres, rest response
		var ans writeAnswer
		if pre, err = be.readResponse(); err == nil {
			if mres, err = be.readResponse(); err == nil {
				if ans, err = s.relayWriteAnswer(); err == nil {
					rest, err = be.readResponse()
				}
			}
		}
		if err != nil {
			seq.drop(next)
			unlock()
			sl.fail(fmt.Errorf("connection lost during a %s whose outcome cannot be known", info.verb))
			if errors.Is(err, errClientGone) {
				return false, err
			}
			var f fatal
			if errors.As(err, &f) {
				return false, err
			}
			return false, s.backendLost(err)
		}
		if rest.err != nil {
			s.srv.log.Warn().Str("error", rest.err.Error()).Msg("statement mode: restoring the session after an exclusive statement failed")
		}
		if pre.err != nil || mres.err != nil {
			// The statement ran without its settings or its pending mark:
			// it cannot be logged faithfully.
			seq.drop(next)
			unlock()
			why := "setting its session failed"
			if pre.err == nil {
				why = "marking it pending in the store failed (" + mres.err.Error() + ")"
			}
			if ans.errPkt == nil {
				sl.fail(fmt.Errorf("a %s ran but could not be logged: %s", info.verb, why))
			}
			return false, s.writeErr(newError(gm.ER_UNKNOWN_ERROR, "ERR statement mode: "+why))
		}
		if ans.errPkt != nil {
			if ans.code() == gm.ER_LOCK_WAIT_TIMEOUT && time.Now().Before(deadline) {
				seq.drop(next)
				unlock()
				sl.stats.Retries.Add(1)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return false, fatal{}
				}
				backoff = min(2*backoff, 50*time.Millisecond)
				continue
			}
			err := s.markerSync(fmt.Sprintf("UPDATE %s SET ddl_epoch=0, ddl_offset=0 WHERE id=1", posTable))
			seq.drop(next)
			unlock()
			if err != nil {
				return false, err
			}
			return false, s.writeFinal(ans, false)
		}
		kind := rowlog.KindTx
		if ddl {
			kind = rowlog.KindDDL
		}
		ses.InsertID = ans.ok.insertID
		payload, encErr := rowlog.Encode(&rowlog.Txn{Kind: kind, Time: ts, Changes: []rowlog.Change{{Stmt: &rowlog.Statement{SQL: logged, Session: ses}}}})
		var off uint64
		var e *gm.MyError
		if encErr != nil {
			sl.fail(fmt.Errorf("a %s ran but could not be encoded: %w", info.verb, encErr))
			e = newError(gm.ER_UNKNOWN_ERROR, "UNCOMMITTED the statement ran but cannot be logged ("+encErr.Error()+")")
			seq.drop(next)
		} else {
			off, e = s.finishEntry(app, next, payload, 1, kind)
		}
		if e == nil {
			err := s.markerSync(
				fmt.Sprintf("INSERT INTO %s (`offset`, epoch) VALUES (%d, %d) ON DUPLICATE KEY UPDATE epoch=VALUES(epoch)", commitTable, next, epoch),
				fmt.Sprintf("UPDATE %s SET ddl_epoch=0, ddl_offset=0 WHERE id=1", posTable))
			if err != nil {
				unlock()
				return false, err
			}
		}
		unlock()
		s.st.frozen = false
		if ddl {
			sl.meta.invalidate()
			s.st.stateOK = false
		}
		s.afterResponse(relayResult{status: rest.ok.status, sawStatus: rest.err == nil})
		if e == nil {
			e = s.holdOffset(off)
		}
		if e != nil {
			return false, s.writeErr(e)
		}
		return true, s.writeFinal(ans, false)
	}
}

func orDefault(v string) string {
	if v == "" {
		return "DEFAULT"
	}
	return v
}

// markerSync runs updates of the store's marks outside a client
// transaction (committing them when the session has autocommit off).
func (s *session) markerSync(qs ...string) error {
	for _, q := range qs {
		if _, _, err := s.be.simpleQuery(q); err != nil {
			if _, ok := myError(err); !ok {
				return s.backendLost(err)
			}
			s.srv.log.Warn().Err(err).Msg("statement mode: updating the store's marks failed")
		}
	}
	if s.st.autocommitOff {
		if _, _, err := s.be.simpleQuery("COMMIT"); err != nil {
			if _, ok := myError(err); !ok {
				return s.backendLost(err)
			}
		}
	}
	return nil
}

// ensureSchema creates __replicar.pos on the backend once, on a
// connection of its own (CREATE commits, which must not happen inside a
// client's transaction).
func (s *session) ensureSchema() error {
	return s.srv.ensureStatementSchema(s.ctx)
}

func (s *Server) ensureStatementSchema(ctx context.Context) error {
	sl := &s.stmt
	sl.schemaMu.Lock()
	defer sl.schemaMu.Unlock()
	if sl.schemaDone {
		return nil
	}
	b, err := s.dialOwn(ctx)
	if err != nil {
		return err
	}
	defer b.close()
	qs := append(apply.SchemaSQL(),
		"CREATE TABLE IF NOT EXISTS "+commitTable+" (`offset` BIGINT UNSIGNED NOT NULL PRIMARY KEY, epoch BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB",
		// The marks of an earlier leadership say nothing now: the store
		// was found consistent with the log before this one began.
		"DELETE FROM "+commitTable)
	for _, q := range qs {
		if _, _, err := b.simpleQuery(q); err != nil {
			return fmt.Errorf("create %s: %w", rowlog.InternalSchema, err)
		}
	}
	sl.schemaDone = true
	return nil
}

// pruneCommits deletes the commit marks well behind offset, on a
// connection of its own.
func (s *Server) pruneCommits(offset uint64) {
	if offset <= pruneEvery {
		return
	}
	go func() {
		b, err := s.dialOwn(context.Background())
		if err != nil {
			return
		}
		defer b.close()
		if _, _, err := b.simpleQuery(fmt.Sprintf("DELETE FROM %s WHERE `offset` < %d", commitTable, offset-pruneEvery)); err != nil {
			s.log.Debug().Err(err).Msg("statement mode: pruning commit marks failed")
		}
	}()
}

// dialOwn opens a connection of the proxy's own to the backend.
func (s *Server) dialOwn(ctx context.Context) (*backendConn, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*s.cfg.DialTimeout)
	defer cancel()
	b, err := dialBackend(ctx, dialSpec{addr: s.cfg.Backend, user: s.cfg.BackendUser, password: s.cfg.BackendPassword,
		tls: s.cfg.BackendTLS, collation: 45, timeout: s.cfg.DialTimeout})
	if err != nil {
		return nil, err
	}
	_ = b.conn.SetDeadline(time.Now().Add(5 * s.cfg.DialTimeout))
	return b, nil
}

// committedAt says whether the store's position is (epoch, offset): after
// a connection lost during a COMMIT, whether that COMMIT happened.
func (s *Server) committedAt(epoch, offset uint64) (bool, error) {
	b, err := s.dialOwn(context.Background())
	if err != nil {
		return false, err
	}
	defer b.close()
	_, rows, err := b.simpleQuery(fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE `offset`=%d AND epoch=%d", commitTable, offset, epoch))
	if err != nil {
		return false, err
	}
	return len(rows) == 1 && len(rows[0]) == 1 && rows[0][0] == "1", nil
}
