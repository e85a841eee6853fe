package mysql

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gm "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"
)

// session is one client connection and its backend session.
//
// One goroutine (serve) runs the commands; another (readLoop) reads the
// client's packets, so that a client that goes away while a statement runs
// is noticed at once: its backend statement is killed rather than left to
// run (go-sql-driver closes the connection when a query's context is
// cancelled).
type session struct {
	srv    *Server
	ctx    context.Context
	cancel context.CancelFunc

	id        uint32
	sc        *server.Conn
	cw        *wire // client writes (serve only)
	cr        *wire // client reads (readLoop only)
	caps      uint32
	collation uint8
	user      string
	attrs     map[string]string
	db        string

	in       chan clientPacket
	gone     chan struct{}
	goneOnce sync.Once

	// mu guards what SetRoute looks at from another goroutine.
	mu       sync.Mutex
	be       *backendConn
	beTarget string // the route target be belongs to
	busy     bool   // a command is at the backend
	inTx     bool   // the backend said SERVER_STATUS_IN_TRANS
	locked   bool   // LOCK TABLES holds
	cursors  int    // prepared statements with an open cursor
	lost     atomic.Bool

	txWrites bool // a write ran in the open transaction
	// tracking says the backend session reports each commit's GTID in
	// its OK packet (set up by the proxy, and not replaced by the client).
	tracking       bool
	clientTracking bool // the client set session_track_* itself
	lastGTID       string
	sets           []string // session statements to replay on a new backend
	setOption      int      // the last COM_SET_OPTION, -1 for none
	stmts          map[uint32]*stmt
	nextStmt       uint32
	infoBuf        []byte

	// st is statement mode's state (statement.go).
	st stmtSession
	// moreResults makes the final packet of the answer being relayed say
	// more results follow: statement mode runs a multi-statement query
	// one statement at a time.
	moreResults bool
}

// stmt is a prepared statement: the client knows it by the proxy's id,
// the backend by its own, which changes when the session moves.
type stmt struct {
	backendID uint32
	query     string
	class     Classification
	params    int
	columns   int
	// types is the parameter type block of the last execute that sent
	// one; after a move the first execute may not send it, so it is put
	// back.
	types     []byte
	needTypes bool
	cursor    bool
	broken    error
	// long holds COM_STMT_SEND_LONG_DATA per parameter, which statement
	// mode needs to log the execution.
	long map[int][]byte
}

type clientPacket struct {
	data []byte
	seq  uint8
	err  error
}

// framingCaps are the capabilities that change the packets of the command
// phase.
const framingCaps = gm.CLIENT_DEPRECATE_EOF | gm.CLIENT_QUERY_ATTRIBUTES | gm.CLIENT_OPTIONAL_RESULTSET_METADATA |
	gm.CLIENT_COMPRESS | gm.CLIENT_ZSTD_COMPRESSION_ALGORITHM | gm.CLIENT_SESSION_TRACK

// idleCheck is how long a backend connection may sit idle before the
// proxy checks it is still open before using it.
const idleCheck = time.Second

// maxReplay bounds the session statements kept for replay; past it the
// session cannot move and is closed at a leader change instead.
const maxReplay = 256

func newSession(srv *Server, parent context.Context) *session {
	ctx, cancel := context.WithCancel(parent)
	return &session{
		srv:       srv,
		ctx:       ctx,
		cancel:    cancel,
		in:        make(chan clientPacket),
		gone:      make(chan struct{}),
		stmts:     map[uint32]*stmt{},
		setOption: -1,
	}
}

// UseDB is go-mysql's hook for the handshake's default database.
func (s *session) UseDB(db string) error {
	s.db = db
	return nil
}

// The rest of go-mysql's Handler is never called: the proxy runs the
// command phase itself.
func (s *session) HandleQuery(string) (*gm.Result, error) { return nil, errNotUsed }
func (s *session) HandleFieldList(string, string) ([]*gm.Field, error) {
	return nil, errNotUsed
}
func (s *session) HandleStmtPrepare(string) (int, int, any, error) { return 0, 0, nil, errNotUsed }
func (s *session) HandleStmtExecute(any, string, []any) (*gm.Result, error) {
	return nil, errNotUsed
}
func (s *session) HandleStmtClose(any) error             { return errNotUsed }
func (s *session) HandleOtherCommand(byte, []byte) error { return errNotUsed }

var errNotUsed = errors.New("replicar: go-mysql handler called outside the handshake")

// start runs after authentication, before the client's OK: it records who
// the client is and opens the backend session when the route allows.
func (s *session) start(c *server.Conn) error {
	s.id = c.ConnectionID()
	// A client may set capability flags the handshake did not offer
	// (go-mysql's client sends CLIENT_DEPRECATE_EOF regardless); the ones
	// that change how packets are framed count only if they were offered.
	s.caps = c.Capability() &^ (framingCaps &^ s.srv.gms.Capability())
	s.collation = c.Charset()
	s.user = c.GetUser()
	s.attrs = map[string]string{"_proxy": "replicar", "_client_addr": c.RemoteAddr().String()}
	for k, v := range c.Attributes() {
		if _, ours := s.attrs[k]; !ours && len(s.attrs) < 32 {
			s.attrs[k] = v
		}
	}
	rt, _ := s.srv.route.get()
	if rt.Mode == RouteNone {
		// No leader now: the first statement waits for one.
		return nil
	}
	if e := s.connect(rt.target()); e != nil {
		if rt.Mode == RouteForward && unreachable(e) {
			// The leader is unreachable (it died, and the election has
			// not moved the route yet): the first statement waits for
			// one, as during an election.
			return nil
		}
		return e
	}
	return nil
}

// attach takes the connection over from go-mysql after the handshake.
func (s *session) attach(sc *server.Conn, shim *shimConn) {
	s.sc = sc
	raw := sc.Conn.Conn
	if raw == net.Conn(shim) {
		// Without TLS the shim is done: talk to the socket itself.
		raw = shim.Conn
	}
	s.cw = newWire(raw)
	s.cr = newWire(raw)
}

// shutdown ends the session from outside (server stopping).
func (s *session) shutdown() {
	s.cancel()
	if s.sc != nil {
		s.sc.Conn.Conn.Close()
	}
}

func (s *session) readLoop() {
	for {
		p, err := s.cr.readPacket()
		if err != nil {
			s.goneOnce.Do(func() { close(s.gone) })
			select {
			case s.in <- clientPacket{err: err}:
			case <-s.ctx.Done():
			}
			return
		}
		pkt := clientPacket{data: append([]byte(nil), p...), seq: s.cr.seq - 1}
		select {
		case s.in <- pkt:
		case <-s.ctx.Done():
			return
		}
	}
}

// watchGone kills the backend statement of a client that went away while
// it ran, and ends the session's waits.
func (s *session) watchGone() {
	select {
	case <-s.ctx.Done():
		return
	case <-s.gone:
	}
	s.mu.Lock()
	busy, be, local := s.busy, s.be, s.beTarget == localTarget
	s.mu.Unlock()
	if busy && be != nil {
		if local {
			s.srv.log.Debug().Uint32("session", s.id).Uint32("thread", be.threadID).Msg("client gone with a statement running: killing it")
			s.srv.killBackendQuery(be.threadID)
		}
		be.close()
	}
	s.cancel()
}

func (s *session) serve() {
	defer s.cleanup()
	go s.readLoop()
	go s.watchGone()
	for {
		var pkt clientPacket
		select {
		case pkt = <-s.in:
		case <-s.ctx.Done():
			return
		}
		if pkt.err != nil || len(pkt.data) == 0 {
			return
		}
		s.cw.seq = pkt.seq + 1
		keep := s.dispatch(pkt.data)
		if err := s.cw.flush(); err != nil || !keep {
			return
		}
		// A route change while the command ran skipped this session.
		if rt, _ := s.srv.route.get(); rt.target() != s.beTarget {
			s.routeChanged(rt)
		}
	}
}

func (s *session) cleanup() {
	s.cancel()
	s.mu.Lock()
	be := s.be
	s.be = nil
	s.mu.Unlock()
	be.close()
	if s.sc != nil {
		s.sc.Conn.Conn.Close()
	}
}

// routeChanged runs on SetRoute: a session holding a transaction, locked
// tables or a cursor on a node that no longer serves it loses its backend
// connection now (the backend rolls back), and its next statement gets an
// error. Idle sessions move at their next statement.
func (s *session) routeChanged(rt Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.be == nil || s.busy || !(s.inTx || s.locked || s.cursors > 0) {
		return
	}
	leftLocal := s.beTarget == localTarget && rt.Mode != RouteLocal
	moved := rt.Mode != RouteNone && rt.target() != s.beTarget
	if leftLocal || moved {
		s.lost.Store(true)
		s.be.close()
		s.srv.stats.SessionsKicked.Add(1)
	}
}

// setBusy marks a command as at the backend (or done).
func (s *session) setBusy(b bool) {
	s.mu.Lock()
	s.busy = b
	s.mu.Unlock()
}

// writeErr sends an error to the client.
func (s *session) writeErr(e *gm.MyError) error {
	return s.cw.writePacket(errPacket(e.Code, e.State, e.Message))
}

func (s *session) writeOK(ok okPacket) error {
	s.infoBuf = appendOK(s.infoBuf[:0], ok, s.caps)
	return s.cw.writePacket(s.infoBuf)
}

// fatal is an error after which the session ends: the client gets it if
// it can, then the connection closes.
type fatal struct{ e *gm.MyError }

// dispatch runs one client command and reports whether the session goes on.
func (s *session) dispatch(cmd []byte) bool {
	var err error
	switch cmd[0] {
	case gm.COM_QUIT:
		return false
	case gm.COM_PING:
		err = s.ping()
	case gm.COM_QUERY:
		err = s.query(cmd)
	case gm.COM_INIT_DB:
		err = s.initDB(cmd)
	case gm.COM_STMT_PREPARE:
		err = s.prepare(cmd)
	case gm.COM_STMT_EXECUTE:
		err = s.execute(cmd)
	case gm.COM_STMT_FETCH:
		err = s.fetch(cmd)
	case gm.COM_STMT_SEND_LONG_DATA, gm.COM_STMT_CLOSE:
		err = s.stmtNoReply(cmd)
	case gm.COM_STMT_RESET:
		err = s.stmtReset(cmd)
	case gm.COM_RESET_CONNECTION:
		err = s.resetConnection()
	case gm.COM_CHANGE_USER:
		err = s.changeUser(cmd)
	case gm.COM_SET_OPTION:
		err = s.simple(cmd, func(bool) {
			if len(cmd) >= 3 {
				s.setOption = int(cmd[1]) | int(cmd[2])<<8
			}
		})
	case gm.COM_PROCESS_KILL:
		err = s.processKill(cmd)
	case gm.COM_FIELD_LIST, gm.COM_STATISTICS, gm.COM_DEBUG, gm.COM_REFRESH, gm.COM_SHUTDOWN, gm.COM_PROCESS_INFO:
		err = s.simple(cmd, nil)
	case gm.COM_BINLOG_DUMP, gm.COM_BINLOG_DUMP_GTID, gm.COM_REGISTER_SLAVE, gm.COM_TABLE_DUMP:
		err = s.writeErr(newError(gm.ER_NOT_SUPPORTED_YET, "replication from replicar's client port is not supported; replicate from a backend"))
	default:
		err = s.writeErr(&gm.MyError{Code: gm.ER_UNKNOWN_COM_ERROR, State: "08S01", Message: "Unknown command"})
	}
	if err != nil {
		var f fatal
		if errors.As(err, &f) {
			if f.e != nil {
				_ = s.writeErr(f.e)
			}
			s.srv.log.Debug().Uint32("session", s.id).Str("error", f.Error()).Msg("session closed")
			return false
		}
		s.srv.log.Debug().Uint32("session", s.id).Err(err).Msg("session ended")
		return false
	}
	return true
}

func (f fatal) Error() string {
	if f.e == nil {
		return "session ended"
	}
	return f.e.Error()
}

// errClientGone ends a session whose client cannot be written to.
var errClientGone = errors.New("client connection lost")

// backendLost is the error of a command whose backend connection failed.
func (s *session) backendLost(err error) error {
	if s.lost.Load() {
		return fatal{leaderChangedError()}
	}
	select {
	case <-s.gone:
		// The client went away; the backend connection was closed for it.
		return fatal{}
	default:
	}
	if s.ctx.Err() != nil {
		return fatal{}
	}
	s.srv.stats.BackendErrors.Add(1)
	s.srv.log.Warn().Uint32("session", s.id).Err(err).Msg("backend connection lost mid-statement")
	return fatal{lostError(err)}
}

// ensureBackend makes sure the session has a backend connection on the
// current route, waiting for a leader up to FailoverWait and moving an
// idle session to a new target. A non-fatal error is the statement's
// answer; a fatal one ends the session.
func (s *session) ensureBackend() error {
	if s.lost.Load() {
		return fatal{leaderChangedError()}
	}
	rt, changed := s.srv.route.get()
	if rt.Mode == RouteNone {
		wait := s.srv.cfg.FailoverWait
		t := time.NewTimer(wait)
		defer t.Stop()
		for rt.Mode == RouteNone {
			select {
			case <-changed:
			case <-t.C:
				return s.writeErr(tryAgainError(wait, "no leader elected"))
			case <-s.ctx.Done():
				return fatal{}
			}
			rt, changed = s.srv.route.get()
		}
	}
	target := rt.target()
	if s.be != nil {
		s.mu.Lock()
		pinned := s.inTx || s.locked || s.cursors > 0
		s.mu.Unlock()
		if s.beTarget == target {
			// A connection idle for a while may have been closed by the
			// other side (wait_timeout, a restart): before the statement
			// is sent, that is still safe to repair.
			if time.Since(s.be.lastUsed) < idleCheck || s.be.alive() {
				return nil
			}
			if pinned {
				return fatal{lostError(errors.New("the backend closed the connection; the open transaction is lost"))}
			}
			s.srv.log.Debug().Uint32("session", s.id).Str("target", target).Msg("backend connection closed while idle: reconnecting")
		} else {
			if pinned || len(s.sets) > maxReplay {
				return fatal{leaderChangedError()}
			}
			s.srv.stats.SessionsMoved.Add(1)
			s.srv.log.Debug().Uint32("session", s.id).Str("from", s.beTarget).Str("to", target).Msg("session moves to the new leader")
		}
	}
	if e := s.connect(target); e != nil {
		if rt.Mode == RouteForward && unreachable(e) {
			return s.awaitLeader(target, changed, e)
		}
		return s.writeErr(e)
	}
	return nil
}

// unreachable says whether a connect error means the target could not be
// reached at all (no MySQL error came back from it).
func unreachable(e *gm.MyError) bool {
	return e.Code == gm.ER_UNKNOWN_ERROR && strings.HasPrefix(e.Message, "ERR backend unavailable")
}

// awaitLeader handles a leader that cannot be reached: it has most likely
// died, and the election has not moved the route yet. As during an
// election, the statement (which has not been sent) waits up to
// FailoverWait: the dial is retried, and a new route is followed, before
// the client gets TRYAGAIN.
func (s *session) awaitLeader(target string, changed <-chan struct{}, first *gm.MyError) error {
	wait := s.srv.cfg.FailoverWait
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	retry := time.NewTicker(100 * time.Millisecond)
	defer retry.Stop()
	for {
		select {
		case <-deadline.C:
			return s.writeErr(tryAgainError(wait, "leader "+target+" unreachable: "+first.Message))
		case <-s.ctx.Done():
			return fatal{}
		case <-changed:
			// A new route (a new leader, an election, or this node): the
			// statement starts over on it.
			return s.ensureBackend()
		case <-retry.C:
			e := s.connect(target)
			if e == nil {
				return nil
			}
			if !unreachable(e) {
				return s.writeErr(e)
			}
		}
	}
}

// connect opens a backend session on target and carries the client's
// session over: default database, character set, session statements and
// prepared statements.
func (s *session) connect(target string) *gm.MyError {
	spec := dialSpec{caps: s.caps, collation: s.collation, attrs: s.attrs, timeout: s.srv.cfg.DialTimeout, db: s.db}
	local := target == localTarget
	if local {
		spec.addr, spec.user, spec.password, spec.tls = s.srv.cfg.Backend, s.srv.cfg.BackendUser, s.srv.cfg.BackendPassword, s.srv.cfg.BackendTLS
	} else {
		// The leader knows the same accounts.
		spec.addr, spec.user, spec.password, spec.tls = target, s.user, s.srv.accounts[s.user], s.srv.cfg.ForwardTLS
	}
	be, err := dialBackend(s.ctx, spec)
	if local {
		s.srv.backendUp.Store(err == nil || isMyError(err))
	}
	if err != nil {
		return dialError(err)
	}
	old := s.be
	s.mu.Lock()
	s.be, s.beTarget = be, target
	s.inTx, s.locked, s.cursors = false, false, 0
	s.mu.Unlock()
	old.close()
	s.txWrites, s.lastGTID, s.tracking = false, "", false
	s.st.newConnection()
	if err := s.setup(be, local); err != nil {
		s.mu.Lock()
		s.be = nil
		s.mu.Unlock()
		be.close()
		if me, ok := myError(err); ok {
			return me
		}
		return backendUnavailableError(err)
	}
	return nil
}

func isMyError(err error) bool {
	_, ok := myError(err)
	return ok
}

// setup prepares a new backend session: the proxy's GTID tracking (on the
// leader's own backend), the client's character set if the handshake
// could not carry it, then the replay of the client's session.
func (s *session) setup(be *backendConn, local bool) error {
	var parts []string
	if local && s.srv.offsets != nil {
		if s.srv.info.MariaDB || s.srv.info.Version == "" {
			vars := s.srv.info.TrackVars
			if vars == "" {
				vars = "last_gtid"
			} else {
				vars += ",last_gtid"
			}
			parts = append(parts, "session_track_system_variables = '"+vars+"'")
		} else {
			parts = append(parts, "session_track_gtids = 'OWN_GTID'")
		}
	}
	if !be.namesOK {
		_, rows, err := be.simpleQuery(fmt.Sprintf("SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLLATIONS WHERE ID = %d", s.collation))
		if err != nil {
			return err
		}
		if len(rows) == 1 && len(rows[0]) == 2 {
			parts = append(parts, fmt.Sprintf("NAMES '%s' COLLATE '%s'", rows[0][0], rows[0][1]))
		}
	}
	if s.caps&gm.CLIENT_INTERACTIVE != 0 {
		// go-mysql cannot pass CLIENT_INTERACTIVE on, which is what makes
		// mysqld use interactive_timeout.
		parts = append(parts, "wait_timeout = @@global.interactive_timeout")
	}
	if len(parts) > 0 {
		if _, _, err := be.simpleQuery("SET " + strings.Join(parts, ", ")); err != nil {
			return err
		}
		s.tracking = local && s.srv.offsets != nil
	}
	if s.setOption >= 0 {
		if err := be.command([]byte{gm.COM_SET_OPTION, byte(s.setOption), byte(s.setOption >> 8)}); err != nil {
			return err
		}
		if _, err := be.readPacket(); err != nil {
			return err
		}
	}
	for _, q := range s.sets {
		if _, _, err := be.simpleQuery(q); err != nil {
			s.srv.log.Warn().Uint32("session", s.id).Str("statement", q).Err(err).Msg("replaying a session statement on the new backend failed")
		}
	}
	if s.clientTracking {
		s.tracking = false
	}
	for id, st := range s.stmts {
		if err := s.reprepare(be, st); err != nil {
			st.broken = err
			s.srv.log.Warn().Uint32("session", s.id).Uint32("stmt", id).Err(err).Msg("re-preparing a statement on the new backend failed")
		}
	}
	return nil
}

// reprepare prepares st again on a new backend session and reads the
// metadata it answers with.
func (s *session) reprepare(be *backendConn, st *stmt) error {
	if err := be.command(append([]byte{gm.COM_STMT_PREPARE}, st.query...)); err != nil {
		return err
	}
	p, err := be.readPacket()
	if err != nil {
		return err
	}
	if p[0] == hdrERR {
		return parseErr(p)
	}
	if len(p) < 12 {
		return errors.New("malformed prepare answer")
	}
	st.backendID = leUint32(p[1:])
	params, cols := int(leUint16(p[7:])), int(leUint16(p[5:]))
	for _, n := range []int{params, cols} {
		if n == 0 {
			continue
		}
		for i := 0; i <= n; i++ { // the definitions and their EOF
			if _, err := be.readPacket(); err != nil {
				return err
			}
		}
	}
	st.needTypes = true
	st.broken = nil
	st.cursor = false
	return nil
}

func leUint32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func leUint16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// local says the session runs on this node's own backend.
func (s *session) local() bool { return s.beTarget == localTarget }

// Commands.

func (s *session) ping() error {
	if s.be == nil {
		return s.writeOK(okPacket{status: gm.SERVER_STATUS_AUTOCOMMIT})
	}
	return s.simple([]byte{gm.COM_PING}, nil)
}

func (s *session) initDB(cmd []byte) error {
	db := string(cmd[1:])
	return s.simple(cmd, func(ok bool) {
		if ok {
			s.db = db
			s.st.stateOK = false
		}
	})
}

// simple relays a command whose answer is one response (OK, ERR, EOF, a
// result set, or one raw packet such as COM_STATISTICS's), and calls done
// with whether it succeeded.
func (s *session) simple(cmd []byte, done func(ok bool)) error {
	if err := s.ensureBackend(); err != nil || s.be == nil {
		return err
	}
	res, err := s.roundTrip(cmd, false, false)
	if err != nil {
		return err
	}
	if done != nil {
		done(!res.errored)
	}
	return nil
}

// roundTrip sends a command to the backend and relays its response.
func (s *session) roundTrip(cmd []byte, binary, fence bool) (relayResult, error) {
	s.setBusy(true)
	defer s.setBusy(false)
	if err := s.be.command(cmd); err != nil {
		return relayResult{}, s.backendLost(err)
	}
	if cmd[0] == gm.COM_STATISTICS {
		p, err := s.be.readPacket()
		if err != nil {
			return relayResult{}, s.backendLost(err)
		}
		return relayResult{}, s.toClient(s.cw.writePacket(p))
	}
	res, err := s.relay(binary, fence, ClassRead)
	s.afterResponse(res)
	return res, err
}

// afterResponse records the session state the last response reported.
func (s *session) afterResponse(res relayResult) {
	if !res.sawStatus {
		return
	}
	s.mu.Lock()
	s.inTx = res.status&statusInTrans != 0
	s.mu.Unlock()
	if !s.inTx {
		s.txWrites = false
	}
	s.st.autocommitOff = res.status&gm.SERVER_STATUS_AUTOCOMMIT == 0
}

func (s *session) toClient(err error) error {
	if err != nil {
		return errClientGone
	}
	return nil
}

// admit decides whether a statement of class cl may run now, on the
// leader: writes (and statements that commit a transaction with writes)
// need Log.Admit, reads under READ_POLICY=leader Log.AdmitRead. It
// returns the refusal to send, whether the read's answer is fenced, and
// whether a write was admitted.
func (s *session) admit(cl Classification) (refusal *gm.MyError, fence, admitted bool) {
	if !s.local() || s.srv.core == nil {
		return nil, false, false
	}
	commits := false
	switch cl.Class {
	case ClassWrite, ClassDDL:
		commits = true
	case ClassCommit, ClassBegin, ClassLock:
		commits = s.txWrites
	case ClassSession:
		commits = cl.Autocommit && s.txWrites
	case ClassRead:
		if s.srv.cfg.FenceReads {
			if err := s.srv.core.AdmitRead(); err != nil {
				return refusedError(err), false, false
			}
			return nil, true, false
		}
	}
	if !commits {
		return nil, false, false
	}
	if err := s.srv.core.Admit(); err != nil {
		s.srv.stats.WritesRefused.Add(1)
		return refusedError(err), false, false
	}
	s.srv.stats.WritesAdmitted.Add(1)
	return nil, false, true
}

func (s *session) query(cmd []byte) error {
	s.srv.stats.Queries.Add(1)
	q := string(cmd[1:])
	cl := Classify(q)
	if cl.Class == ClassProxy {
		return s.writeStatus()
	}
	if err := s.ensureBackend(); err != nil || s.be == nil {
		return err
	}
	if s.stmtMode() {
		return s.stmtQuery(cmd, q, cl)
	}
	_, err := s.runQuery(cmd, q, cl)
	return err
}

// runQuery runs a query on the session's backend: admission, the
// command, the relayed answer.
func (s *session) runQuery(cmd []byte, q string, cl Classification) (relayResult, error) {
	if cl.Class == ClassAdmin && s.local() {
		if rewritten, ok := s.translateKill(q); ok {
			cmd = append([]byte{gm.COM_QUERY}, rewritten...)
		}
	}
	res, err := s.admitAndRelay(cmd, cl, false)
	if err != nil || res.refused {
		return res, err
	}
	s.afterQuery(q, cl, res)
	return res, nil
}

// admitAndRelay is what a query and an execute share: admission (a refusal
// is answered here), the command on the backend, and its relayed answer;
// binary says the answer's rows are in the binary protocol.
func (s *session) admitAndRelay(cmd []byte, cl Classification, binary bool) (relayResult, error) {
	refusal, fence, admitted := s.admit(cl)
	if refusal != nil {
		return relayResult{errored: true, refused: true}, s.refuse(cl, refusal)
	}
	if admitted {
		s.srv.writesInFlight.Add(1)
		defer s.srv.writesInFlight.Add(-1)
	}
	s.setBusy(true)
	if err := s.queueReset(); err != nil {
		s.setBusy(false)
		return relayResult{}, err
	}
	if err := s.be.command(cmd); err != nil {
		s.setBusy(false)
		return relayResult{}, s.backendLost(err)
	}
	if err := s.skipQueued(); err != nil {
		s.setBusy(false)
		return relayResult{}, err
	}
	res, err := s.relay(binary, fence, cl.Class)
	s.setBusy(false)
	s.afterResponse(res)
	return res, err
}

// refuse answers a statement that was not admitted. A refused COMMIT
// rolls the transaction back: database/sql hands a connection back to its
// pool after a failed COMMIT, and the transaction must not stay open there.
func (s *session) refuse(cl Classification, refusal *gm.MyError) error {
	if cl.Class == ClassCommit {
		_, _, err := s.be.simpleQuery("ROLLBACK")
		refusal = rolledBack(refusal, err)
		if err != nil {
			return fatal{refusal}
		}
		s.mu.Lock()
		s.inTx = false
		s.mu.Unlock()
		s.txWrites = false
	}
	return s.writeErr(refusal)
}

// afterQuery follows the session state a successful query changed.
func (s *session) afterQuery(q string, cl Classification, res relayResult) {
	if cl.Class.Writes() && s.inTx {
		s.txWrites = true
	}
	s.mu.Lock()
	if cl.Class == ClassBegin || cl.Unlock {
		s.locked = false
	}
	if cl.Lock && !res.errored {
		s.locked = true
	}
	s.mu.Unlock()
	if res.errored {
		return
	}
	if cl.Tracking {
		s.clientTracking = true
		s.tracking = false
	}
	if cl.Replay {
		s.remember(q)
	}
	if db, ok := useDB(q); ok && cl.Statements == 1 && cl.Class == ClassSession && !res.schemaSeen {
		s.db = db
	}
}

// remember keeps a session statement for replay; the same text again
// moves to the end instead of growing the list.
func (s *session) remember(q string) {
	for i, old := range s.sets {
		if old == q {
			s.sets = append(s.sets[:i], s.sets[i+1:]...)
			break
		}
	}
	s.sets = append(s.sets, q)
}

// useDB parses USE <db>, for servers that do not track the schema.
func useDB(q string) (string, bool) {
	t := strings.TrimSpace(q)
	t = strings.TrimRight(t, "; \t\r\n")
	if len(t) < 4 || !strings.EqualFold(t[:3], "USE") || (t[3] != ' ' && t[3] != '\t' && t[3] != '\n' && t[3] != '`') {
		return "", false
	}
	name := strings.TrimSpace(t[3:])
	if strings.HasPrefix(name, "`") && strings.HasSuffix(name, "`") && len(name) >= 2 {
		return strings.ReplaceAll(name[1:len(name)-1], "``", "`"), true
	}
	if strings.ContainsAny(name, " \t\n/#-'\"`") {
		return "", false
	}
	return name, name != ""
}

// translateKill turns KILL [QUERY] <id> of another of this node's
// sessions into the KILL of its backend thread. Ids the proxy did not
// hand out go to the backend as they are (CONNECTION_ID() answers the
// backend's).
func (s *session) translateKill(q string) (string, bool) {
	query, id, ok := parseKill(q)
	if !ok {
		return "", false
	}
	thread, ok := s.backendThread(id)
	if !ok {
		return "", false
	}
	if query {
		return fmt.Sprintf("KILL QUERY %d", thread), true
	}
	return fmt.Sprintf("KILL %d", thread), true
}

// backendThread returns the backend thread of this node's session with
// connection id id, when it runs on the same backend as s.
func (s *session) backendThread(id uint64) (uint32, bool) {
	if id > 1<<32-1 {
		return 0, false
	}
	other := s.srv.sessionByID(uint32(id))
	if other == nil {
		return 0, false
	}
	other.mu.Lock()
	be, local := other.be, other.beTarget == localTarget
	other.mu.Unlock()
	if be == nil || !local || !s.local() {
		return 0, false
	}
	return be.threadID, true
}

func (s *session) processKill(cmd []byte) error {
	if len(cmd) >= 5 {
		if thread, ok := s.backendThread(uint64(leUint32(cmd[1:]))); ok {
			cmd = []byte{gm.COM_PROCESS_KILL, 0, 0, 0, 0}
			putUint32(cmd[1:], thread)
		}
	}
	return s.simple(cmd, nil)
}

// Prepared statements.

func (s *session) prepare(cmd []byte) error {
	if err := s.ensureBackend(); err != nil || s.be == nil {
		return err
	}
	query := string(cmd[1:])
	s.setBusy(true)
	defer s.setBusy(false)
	if err := s.be.command(cmd); err != nil {
		return s.backendLost(err)
	}
	p, err := s.be.readPacket()
	if err != nil {
		return s.backendLost(err)
	}
	if p[0] != hdrOK || len(p) < 12 {
		return s.toClient(s.cw.writePacket(p))
	}
	s.nextStmt++
	id := s.nextStmt
	st := &stmt{backendID: leUint32(p[1:]), query: query, class: Classify(query),
		columns: int(leUint16(p[5:])), params: int(leUint16(p[7:]))}
	s.stmts[id] = st
	putUint32(p[1:], id)
	if err := s.cw.writePacket(p); err != nil {
		return errClientGone
	}
	for _, n := range []int{st.params, st.columns} {
		if n == 0 {
			continue
		}
		if _, err := s.relayDefs(n); err != nil {
			return err
		}
	}
	return nil
}

// relayDefs relays n column (or parameter) definitions and their EOF, and
// returns the EOF's status flags.
func (s *session) relayDefs(n int) (uint16, error) {
	for range n {
		p, err := s.be.readPacket()
		if err != nil {
			return 0, s.backendLost(err)
		}
		if err := s.cw.writePacket(p); err != nil {
			return 0, errClientGone
		}
	}
	p, err := s.be.readPacket()
	if err != nil {
		return 0, s.backendLost(err)
	}
	if !isEOF(p) {
		s.srv.stats.ProtocolErrors.Add(1)
		return 0, s.backendLost(errors.New("no EOF after the column definitions"))
	}
	return eofStatus(p), s.toClient(s.writeEOF(p))
}

// writeEOF relays an EOF packet, without the session-state flag for
// clients that did not ask for session tracking.
func (s *session) writeEOF(p []byte) error {
	if isEOF(p) && len(p) >= 5 && s.caps&gm.CLIENT_SESSION_TRACK == 0 && eofStatus(p)&statusStateChanged != 0 {
		return s.cw.writePacket(eofPacket(leUint16(p[1:]), eofStatus(p)&^statusStateChanged))
	}
	return s.cw.writePacket(p)
}

// lookupStmt maps the client's statement id to the statement.
func (s *session) lookupStmt(cmd []byte) (uint32, *stmt) {
	if len(cmd) < 5 {
		return 0, nil
	}
	id := leUint32(cmd[1:])
	return id, s.stmts[id]
}

func unknownStmt(id uint32, what string) *gm.MyError {
	return &gm.MyError{Code: gm.ER_UNKNOWN_STMT_HANDLER, State: stateGeneral,
		Message: fmt.Sprintf("Unknown prepared statement handler (%d) given to %s", id, what)}
}

func (s *session) execute(cmd []byte) error {
	s.srv.stats.Queries.Add(1)
	id, st := s.lookupStmt(cmd)
	if st == nil {
		return s.writeErr(unknownStmt(id, "mysqld_stmt_execute"))
	}
	if err := s.ensureBackend(); err != nil || s.be == nil {
		return err
	}
	if st.broken != nil {
		if me, ok := st.broken.(*gm.MyError); ok {
			return s.writeErr(me)
		}
		return s.writeErr(backendUnavailableError(st.broken))
	}
	cmd = s.fixExecute(cmd, st)
	putUint32(cmd[1:], st.backendID)
	if s.stmtMode() {
		return s.stmtExecute(cmd, st)
	}
	_, err := s.runExecute(cmd, st, st.class)
	return err
}

// runExecute runs a COM_STMT_EXECUTE on the session's backend:
// admission, the command, the relayed answer.
func (s *session) runExecute(cmd []byte, st *stmt, cl Classification) (relayResult, error) {
	res, err := s.admitAndRelay(cmd, cl, true)
	if err != nil || res.refused {
		return res, err
	}
	if cl.Class.Writes() && s.inTx {
		s.txWrites = true
	}
	s.setCursor(st, res.cursor)
	return res, nil
}

// fixExecute keeps the parameter types of the last execute that sent
// them, and puts them back into the first execute on a new backend
// session, which has never seen them.
func (s *session) fixExecute(cmd []byte, st *stmt) []byte {
	if st.params == 0 {
		return cmd
	}
	pos := 10 + (st.params+7)/8 // command, id, flags, iterations, null bitmap
	if len(cmd) <= pos {
		return cmd
	}
	typesEnd := pos + 1 + 2*st.params
	if cmd[pos] == 1 {
		if len(cmd) >= typesEnd {
			st.types = append(st.types[:0], cmd[pos+1:typesEnd]...)
			st.needTypes = false
		}
		return cmd
	}
	if !st.needTypes || st.types == nil {
		return cmd
	}
	out := make([]byte, 0, len(cmd)+len(st.types))
	out = append(out, cmd[:pos]...)
	out = append(out, 1)
	out = append(out, st.types...)
	out = append(out, cmd[pos+1:]...)
	st.needTypes = false
	return out
}

func (s *session) setCursor(st *stmt, open bool) {
	if st.cursor == open {
		return
	}
	st.cursor = open
	s.mu.Lock()
	if open {
		s.cursors++
	} else {
		s.cursors--
	}
	s.mu.Unlock()
}

func (s *session) fetch(cmd []byte) error {
	id, st := s.lookupStmt(cmd)
	if st == nil {
		return s.writeErr(unknownStmt(id, "mysqld_stmt_fetch"))
	}
	if err := s.ensureBackend(); err != nil || s.be == nil {
		return err
	}
	putUint32(cmd[1:], st.backendID)
	s.setBusy(true)
	defer s.setBusy(false)
	if err := s.be.command(cmd); err != nil {
		return s.backendLost(err)
	}
	for {
		p, err := s.be.readPacket()
		if err != nil {
			return s.backendLost(err)
		}
		if p[0] == hdrERR {
			return s.toClient(s.cw.writePacket(p))
		}
		if isEOF(p) {
			return s.toClient(s.writeEOF(p))
		}
		if err := s.cw.writePacket(p); err != nil {
			return errClientGone
		}
	}
}

// stmtNoReply relays COM_STMT_SEND_LONG_DATA and COM_STMT_CLOSE, which
// have no response.
func (s *session) stmtNoReply(cmd []byte) error {
	id, st := s.lookupStmt(cmd)
	if st == nil || s.be == nil {
		return nil // mysqld ignores unknown ids here too
	}
	if cmd[0] == gm.COM_STMT_CLOSE {
		delete(s.stmts, id)
		s.setCursor(st, false)
	} else {
		s.keepLongData(st, cmd)
	}
	if s.lost.Load() {
		return nil
	}
	if rt, _ := s.srv.route.get(); rt.target() != s.beTarget {
		// The session moves at its next statement; the statement is gone
		// with the old connection (or re-prepared without this one).
		return nil
	}
	putUint32(cmd[1:], st.backendID)
	if err := s.be.command(cmd); err != nil {
		return s.backendLost(err)
	}
	return nil
}

func (s *session) stmtReset(cmd []byte) error {
	id, st := s.lookupStmt(cmd)
	if st == nil {
		return s.writeErr(unknownStmt(id, "mysqld_stmt_reset"))
	}
	if err := s.ensureBackend(); err != nil || s.be == nil {
		return err
	}
	putUint32(cmd[1:], st.backendID)
	s.setCursor(st, false)
	st.long = nil
	_, err := s.roundTrip(cmd, false, false)
	return err
}

// Session resets.

func (s *session) resetConnection() error {
	if err := s.ensureBackend(); err != nil || s.be == nil {
		return err
	}
	res, err := s.roundTrip([]byte{gm.COM_RESET_CONNECTION}, false, false)
	if err != nil || res.errored {
		return err
	}
	s.forgetSession()
	// The reset put the backend's session variables back to their
	// defaults, the proxy's tracking among them.
	if err := s.setup(s.be, s.local()); err != nil {
		return fatal{lostError(err)}
	}
	return nil
}

// forgetSession drops the session state a reset or a change of user ends.
func (s *session) forgetSession() {
	s.stmts = map[uint32]*stmt{}
	s.sets = nil
	s.setOption = -1
	s.st = stmtSession{}
	s.clientTracking = false
	s.txWrites = false
	s.lastGTID = ""
	s.mu.Lock()
	s.inTx, s.locked, s.cursors = false, false, 0
	s.mu.Unlock()
}

// changeUser serves COM_CHANGE_USER. The proxy checks the new user's
// password itself: it asks the client to authenticate again with a fresh
// scramble (an auth switch, which every client handles here), then gives
// the session a fresh backend session for the new user's database and
// character set.
func (s *session) changeUser(cmd []byte) error {
	cu, err := parseChangeUser(cmd, s.caps)
	if err != nil {
		s.srv.stats.ProtocolErrors.Add(1)
		return fatal{&gm.MyError{Code: gm.ER_MALFORMED_PACKET, State: "HY000", Message: "Malformed COM_CHANGE_USER packet"}}
	}
	plugin := cu.plugin
	if plugin != gm.AUTH_NATIVE_PASSWORD && plugin != gm.AUTH_CACHING_SHA2_PASSWORD {
		plugin = s.srv.cfg.AuthPlugin
	}
	salt := scramble()
	sw := append([]byte{hdrEOF}, plugin...)
	sw = append(sw, 0)
	sw = append(sw, salt...)
	sw = append(sw, 0)
	if err := s.cw.writePacket(sw); err != nil {
		return errClientGone
	}
	if err := s.cw.flush(); err != nil {
		return errClientGone
	}
	var pkt clientPacket
	select {
	case pkt = <-s.in:
	case <-s.ctx.Done():
		return fatal{}
	}
	if pkt.err != nil {
		return fatal{}
	}
	s.cw.seq = pkt.seq + 1
	pw, known := s.srv.accounts[cu.user]
	if !known || !checkScramble(plugin, salt, pw, pkt.data) {
		s.srv.stats.AuthFailures.Add(1)
		using := "YES"
		if len(pkt.data) == 0 {
			using = "NO"
		}
		return fatal{&gm.MyError{Code: gm.ER_ACCESS_DENIED_ERROR, State: "28000",
			Message: fmt.Sprintf("Access denied for user '%s'@'%s' (using password: %s)", cu.user, hostOf(s.sc.RemoteAddr()), using)}}
	}
	if plugin == gm.AUTH_CACHING_SHA2_PASSWORD {
		if err := s.cw.writePacket([]byte{gm.MORE_DATE_HEADER, gm.CACHE_SHA2_FAST_AUTH}); err != nil {
			return errClientGone
		}
	}
	// A new user starts a new session: whatever the old one held on the
	// backend (a transaction, locks, temporary tables) ends with it.
	s.user, s.db = cu.user, cu.db
	if cu.collation != 0 {
		s.collation = cu.collation
	}
	s.forgetSession()
	s.mu.Lock()
	old := s.be
	s.be, s.beTarget = nil, ""
	s.mu.Unlock()
	old.close()
	if rt, _ := s.srv.route.get(); rt.Mode != RouteNone {
		if e := s.connect(rt.target()); e != nil {
			return fatal{e}
		}
	}
	return s.writeOK(okPacket{status: gm.SERVER_STATUS_AUTOCOMMIT})
}

type changeUserPacket struct {
	user, db, plugin string
	collation        uint8
}

// parseChangeUser decodes COM_CHANGE_USER.
func parseChangeUser(p []byte, caps uint32) (changeUserPacket, error) {
	var cu changeUserPacket
	pos := 1
	cstr := func() (string, error) {
		for i := pos; i < len(p); i++ {
			if p[i] == 0 {
				s := string(p[pos:i])
				pos = i + 1
				return s, nil
			}
		}
		return "", errors.New("unterminated string")
	}
	var err error
	if cu.user, err = cstr(); err != nil {
		return cu, err
	}
	if caps&gm.CLIENT_SECURE_CONNECTION != 0 {
		if pos >= len(p) {
			return cu, errors.New("short packet")
		}
		pos += 1 + int(p[pos])
		if pos > len(p) {
			return cu, errors.New("short packet")
		}
	} else if _, err = cstr(); err != nil {
		return cu, err
	}
	if cu.db, err = cstr(); err != nil {
		return cu, err
	}
	if pos+2 <= len(p) {
		cu.collation = p[pos]
		pos += 2
	}
	if caps&gm.CLIENT_PLUGIN_AUTH != 0 && pos < len(p) {
		cu.plugin, _ = cstr()
	}
	return cu, nil
}

// scramble is a fresh 20-byte salt without NULs.
func scramble() []byte {
	b := gm.RandomBuf(20)
	for i := range b {
		if b[i] == 0 {
			b[i] = 1
		}
	}
	return b
}

// checkScramble verifies a client's answer to salt against the plain
// password the proxy holds.
func checkScramble(plugin string, salt []byte, password string, answer []byte) bool {
	if password == "" {
		return len(answer) == 0 || (len(answer) == 1 && answer[0] == 0)
	}
	var want []byte
	switch plugin {
	case gm.AUTH_NATIVE_PASSWORD:
		want = gm.CalcNativePassword(salt, []byte(password))
	case gm.AUTH_CACHING_SHA2_PASSWORD:
		want = gm.CalcCachingSha2Password(salt, []byte(password))
	default:
		return false
	}
	return len(want) == len(answer) && constantTimeEqual(want, answer)
}

func constantTimeEqual(a, b []byte) bool {
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

func hostOf(a net.Addr) string {
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}
