package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/replicar/replicar/ackpolicy"
)

// session is one client connection, served by one goroutine: it reads the
// commands the client has sent, turns them into jobs for the lanes, then
// writes the replies in order, holding each until its writes are committed.
// One goroutine per client keeps the hand-offs per pipeline to two (to the
// lane and back), which is most of a proxy's cost on a small machine.
type session struct {
	srv  *Server
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	cr   commandReader
	id   int64

	ctx    context.Context
	db     int
	authed bool
	name   string
	closed atomic.Bool

	arena *arena
	cur   *job
	// curLane is the lane cur is bound for; nil for a job the proxy
	// answers itself.
	curLane *lane
	// last is the newest job handed to a backend lane, and lastLane that
	// lane: a job for another lane waits for it, so a client's commands
	// never overtake each other across connections.
	last     *job
	lastLane *lane

	// pending are the jobs dispatched whose replies are not yet written,
	// oldest first.
	pending []*job
	// wmu serialises writes to the client between the session and a
	// subscription relay.
	wmu    sync.Mutex
	broken bool

	multi  *txState
	watch  *watchState
	pubsub *pubsubState

	// lastOffset is the highest backlog offset of this client's writes,
	// for WAIT.
	lastOffset atomic.Uint64

	// fwdLane is the client's own connection to the leader while this
	// node does not lead (forward.go); fwdTx says the client has MULTI or
	// WATCH open there, and fwdMulti MULTI.
	fwdLane         *lane
	fwdStop         context.CancelFunc
	fwdTx, fwdMulti bool
	// fwdSelect is the db a SELECT queued in the forwarded MULTI switches
	// to once EXEC runs it, or -1.
	fwdSelect int

	// keyIdx is scratch for the key positions of a command.
	keyIdx []int

	// unblock is how CLIENT UNBLOCK from another client reaches this one
	// while a blocking command parks it.
	unblock unblockGate
}

func newSession(srv *Server, conn net.Conn) *session {
	s := &session{
		srv:    srv,
		conn:   conn,
		br:     bufio.NewReaderSize(conn, 64<<10),
		bw:     bufio.NewWriterSize(conn, 64<<10),
		id:     srv.nextID.Add(1),
		authed: srv.cfg.Password == "",
		arena:  getArena(),
	}
	s.cr = commandReader{br: s.br, lim: srv.cfg.Limits}
	if !s.authed {
		s.cr.lim = unauthenticatedLimits
	}
	return s
}

// maxBatch bounds the commands read before the pending jobs are handed on,
// so a long pipeline starts executing before it has all arrived.
const maxBatch = 512

// maxPending bounds the jobs whose replies wait to be written while the
// client keeps sending: past it the session writes before it reads more.
const maxPending = 64

func (s *session) serve(ctx context.Context) {
	s.ctx = ctx
	defer func() {
		// A bug triggered by one client must not take the node, and every
		// other client, down with it: log it loudly and drop this client.
		if r := recover(); r != nil {
			s.srv.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("bug: client session panicked; connection closed")
			s.conn.Close()
		}
	}()
	defer func() {
		s.closed.Store(true)
		s.flushReplies(true)
		s.cleanup()
		s.conn.Close()
	}()

	for n := 0; ; {
		cmd, err := s.cr.read(s.arena)
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				s.srv.stats.ProtocolErrors.Add(1)
				s.local(appendError(nil, "ERR "+pe.Error()))
			}
			return
		}
		if cmd.args == nil {
			continue
		}
		s.srv.stats.Commands.Add(1)
		if quit := s.handle(ctx, cmd.args); quit {
			return
		}
		n++
		idle := s.br.Buffered() == 0
		if idle || n >= maxBatch {
			s.dispatch()
			n = 0
			// The jobs just dispatched hold the batch's arena; read the
			// next batch into another.
			s.arena.release()
			s.arena = getArena()
		}
		if idle {
			// Nothing more to read now: answer everything sent so far.
			s.flushReplies(true)
		} else if len(s.pending) >= maxPending {
			s.flushReplies(false)
		}
	}
}

// flushReplies writes the replies of pending jobs in order. A job with
// logged writes is held until its highest offset commits under the ack
// policy; a write that misses the ack timeout is answered UNCOMMITTED (or,
// in degrade mode, with its reply and a warning in the log). With all set
// it waits for every pending job and flushes; otherwise it writes what is
// ready and waits only until the backlog of replies is half drained.
func (s *session) flushReplies(all bool) {
	s.dispatch()
	written := 0
	for i, j := range s.pending {
		if !all && i >= maxPending/2 && !isDone(j) {
			break
		}
		<-j.done
		for k := range j.steps {
			if st := &j.steps[k]; st.execSelect > 0 && execRan(j.out[st.replyStart:st.replyEnd]) {
				s.db = st.execSelect - 1
			}
		}
		if j.maxOffset > 0 {
			if err := s.srv.core.WaitCommitted(s.ctx, j.maxOffset); err != nil {
				s.uncommitted(j, err)
			}
		} else if j.fenced {
			if err := s.srv.fenceRead(s.ctx, j); err != nil {
				j.fail(0, readNotCommittedMessage(err), false)
			}
		}
		s.wmu.Lock()
		if !s.broken {
			if _, err := s.bw.Write(j.out); err != nil {
				s.broken = true
				s.conn.Close()
			}
		}
		s.wmu.Unlock()
		if s.last == j {
			// Answered, so nothing has to wait for it any more; and
			// the job goes back to the pool.
			s.last, s.lastLane = nil, nil
		}
		j.recycle()
		written++
	}
	clear(s.pending[:written])
	s.pending = append(s.pending[:0], s.pending[written:]...)
	s.wmu.Lock()
	if !s.broken && len(s.pending) == 0 {
		if err := s.bw.Flush(); err != nil {
			s.broken = true
			s.conn.Close()
		}
	}
	s.wmu.Unlock()
}

// uncommitted rewrites the replies of a job's logged writes after the ack
// policy gave up on them, and those of its fenced reads: a read in the job
// may show one of those writes.
func (s *session) uncommitted(j *job, err error) {
	if s.srv.cfg.AckTimeoutDegrade && errors.Is(err, ackpolicy.ErrAckTimeout) {
		s.srv.log.Warn().Uint64("offset", j.maxOffset).Err(err).Msg("write acknowledged without meeting the ack policy (degrade mode)")
		return
	}
	s.srv.stats.Uncommitted.Add(1)
	msg := uncommittedMessage(err)
	var out []byte
	prev := 0
	for i := range j.steps {
		st := &j.steps[i]
		out = append(out, j.out[prev:st.replyStart]...)
		switch {
		case st.offset > 0:
			out = appendError(out, msg)
		case j.fenced && st.kind == stepRead && !st.anyDB && st.aside == nil,
			j.fenced && st.kind == stepTx:
			out = appendError(out, readNotCommittedMessage(err))
		default:
			out = append(out, j.out[st.replyStart:st.replyEnd]...)
		}
		prev = st.replyEnd
	}
	out = append(out, j.out[prev:]...)
	j.out = out
}

// errorMessage turns a core error into the RESP error clients rely on.
func errorMessage(err error) string {
	switch {
	case errors.Is(err, ackpolicy.ErrNoReplicas):
		return "NOREPLICAS Not enough good replicas to write. " + detail(err)
	case errors.Is(err, ackpolicy.ErrNotLeader):
		return "TRYAGAIN no leader can take this write now; it was not executed. " + detail(err)
	}
	return "ERR " + err.Error()
}

func readNotCommittedMessage(err error) string {
	return "TRYAGAIN the read would show writes not committed under the ack policy (" + err.Error() + ")"
}

func uncommittedMessage(err error) string {
	if errors.Is(err, ackpolicy.ErrAckTimeout) {
		return "UNCOMMITTED write applied on the primary but not replicated under the ack policy within the ack timeout"
	}
	return "UNCOMMITTED write applied on the primary but not committed: " + err.Error()
}

func detail(err error) string { return "(" + err.Error() + ")" }

// cleanup releases the client's own backend connections (WATCH, pub/sub).
func (s *session) cleanup() {
	s.stopForward()
	s.fwdTx, s.fwdMulti, s.fwdSelect = false, false, -1
	if s.watch != nil {
		s.watch.close()
		s.watch = nil
	}
	if s.pubsub != nil {
		s.pubsub.close()
		s.pubsub = nil
	}
}

// local queues a reply the proxy makes itself.
func (s *session) local(reply []byte) {
	if s.cur != nil && s.curLane == nil {
		st := step{kind: stepLocal, replyStart: len(s.cur.out)}
		s.cur.out = append(s.cur.out, reply...)
		st.replyEnd = len(s.cur.out)
		s.cur.steps = append(s.cur.steps, st)
		return
	}
	s.dispatch()
	j := newJob()
	j.out = append(j.out, reply...)
	j.steps = append(j.steps, step{kind: stepLocal, replyEnd: len(reply)})
	s.cur, s.curLane = j, nil
}

func (s *session) localError(msg string) { s.local(appendError(nil, msg)) }

// enqueue adds a step for lane l, starting a new job when the lane changes.
func (s *session) enqueue(l *lane, st step) {
	if s.cur == nil || s.curLane != l {
		s.dispatch()
		s.cur, s.curLane = newJob(), l
		s.cur.sess = s
		s.cur.arena = s.arena
		s.arena.retain()
	}
	s.cur.steps = append(s.cur.steps, st)
}

// dispatch hands the job being built to its lane, after the previous job
// for another lane has finished, and queues it for the replies.
func (s *session) dispatch() {
	j := s.cur
	if j == nil {
		return
	}
	s.cur = nil
	if s.curLane == nil {
		close(j.done)
		s.pending = append(s.pending, j)
		return
	}
	if s.last != nil && s.lastLane != s.curLane {
		<-s.last.done
	}
	s.last, s.lastLane = j, s.curLane
	s.pending = append(s.pending, j)
	s.curLane.submit(j)
}

// drain dispatches everything, waits until the backend has answered it and
// writes the replies, for commands that must see every earlier one finished
// and answered (a blocking pop, SUBSCRIBE, WATCH, WAIT …).
func (s *session) drain() {
	s.flushReplies(true)
}

// reply queues a finished job, such as a blocking command's answer.
func (s *session) reply(j *job) {
	s.dispatch()
	s.pending = append(s.pending, j)
}

// readLane picks the lane for a read: the ordered writer while this
// client's writes are still in flight there (so the read sees them), else
// the client's own read connection.
func (s *session) readLane() *lane {
	if s.last != nil && !isDone(s.last) && s.writesTo(s.lastLane) {
		return s.lastLane
	}
	if s.cur != nil && s.writesTo(s.curLane) {
		return s.curLane
	}
	return s.srv.readers[int(s.id)%len(s.srv.readers)]
}

// writesTo says whether l is a lane this client's writes go through: the
// ordered writer, or its private lane to the leader.
func (s *session) writesTo(l *lane) bool {
	return l != nil && (l == s.srv.writer || l == s.fwdLane)
}

func isDone(j *job) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// handle serves one command. It returns true when the connection must close.
func (s *session) handle(ctx context.Context, args [][]byte) bool {
	table := s.srv.table.Load()
	if table == nil {
		s.localError(s.srv.writer.downMessage())
		return false
	}
	info, err := table.Lookup(args)
	if err != nil {
		if s.multi != nil {
			s.multi.dirty = true
		}
		s.localError(err.Error())
		return false
	}
	class := Classify(info, args)
	if !s.authed && !allowedBeforeAuth(info) {
		s.localError("NOAUTH Authentication required.")
		return false
	}
	if s.pubsub != nil && s.pubsub.active() {
		return s.handleSubscribed(info, class, args)
	}
	if s.multi == nil {
		if rt := s.srv.route.load(); rt.Mode != RouteLocal || s.fwdTx {
			if handled, quit := s.routeToLeader(info, class, args, rt); handled {
				return quit
			}
		} else if class == ClassRead && !rt.LocalReads {
			if err := s.srv.core.AdmitRead(); err != nil {
				s.localError(errorMessage(err))
				return false
			}
		}
	}
	if s.multi != nil && !txControl(info) {
		s.queue(info, class, args)
		return false
	}
	switch class {
	case ClassRead:
		// Commands Redis serves while a script keeps it busy (SCRIPT KILL,
		// FUNCTION KILL, FUNCTION STATS) read no keys: they go without a
		// SELECT, which Redis would refuse then, and without a read fence,
		// which would hold them behind the script.
		anyDB := info.Flags&FlagAllowBusy != 0 || info.Name == "script|kill" || info.Name == "function|kill"
		s.enqueue(s.readLane(), step{kind: stepRead, db: s.db, anyDB: anyDB, args: args})
	case ClassWrite, ClassScript:
		s.write(args)
	case ClassAdmin:
		// Admin commands reach the primary in order with the writes but
		// are not replicated, as with Redis's own CONFIG SET.
		if info.Name == "config|set" {
			args = keepExpiryEvents(args)
		}
		s.enqueue(s.srv.writer, step{kind: stepRead, db: s.db, args: args})
	case ClassScriptAdmin:
		s.scriptAdmin(args)
	case ClassBlocking:
		s.blocking(ctx, args)
	case ClassTransaction:
		s.transaction(ctx, info, args)
	case ClassPubSub:
		s.subscribe(ctx, info, args)
	case ClassConnection:
		return s.connection(info, args)
	case ClassWait:
		s.wait(ctx, info, args)
	case ClassProxy:
		s.proxyCommand(args)
	default:
		s.localError(RefusedError(info, args))
	}
	return false
}

// write prepares a write and queues it on the ordered writer, unless the
// node cannot accept writes now.
func (s *session) write(args [][]byte) {
	if msg, ok := s.reserved(args); !ok {
		s.localError(msg)
		return
	}
	if err := s.srv.core.Admit(); err != nil {
		s.srv.stats.WritesRefused.Add(1)
		s.localError(errorMessage(err))
		return
	}
	plan, err := Prepare(args, s.srv.cfg.Now().UnixMilli(), s.srv.scripts)
	if err != nil {
		s.localError(err.Error())
		return
	}
	if !s.holdWrite() {
		// The node stopped leading since the command was routed: the
		// leader, once there is one, takes it instead.
		s.forward(nil, args)
		return
	}
	s.enqueue(s.srv.writer, step{kind: stepWrite, db: s.db, plan: plan})
	s.cur.writes++
}

// holdWrite counts a write into the server's in-flight writes, then checks
// that this node still leads. The order matters: a leader that changes the
// route and then sees no write in flight knows no write slipped in between
// (the route check of a write counted after it sees the new route).
func (s *session) holdWrite() bool {
	s.srv.writesInFlight.Add(1)
	if s.srv.route.load().Mode != RouteLocal {
		s.srv.writesInFlight.Add(-1)
		return false
	}
	return true
}

// reservedPrefix is where replicar keeps its own keys in db 0.
const reservedPrefix = "__replicar:"

// reserved refuses writes to replicar's own keys, which hold a replica's
// position: a client overwriting them would silently break resume.
func (s *session) reserved(args [][]byte) (string, bool) {
	if s.db != 0 {
		return "", true
	}
	table := s.srv.table.Load()
	info, err := table.Lookup(args)
	if err != nil {
		return "", true
	}
	// Keys may keep the slice it is given (through a key-spec function),
	// so a stack array would move to the heap on every write: reuse one.
	s.keyIdx = info.Keys(args, s.keyIdx[:0])
	for _, i := range s.keyIdx {
		if strings.HasPrefix(string(args[i]), reservedPrefix) {
			return "ERR replicar: keys under '" + reservedPrefix + "' in db 0 are reserved", false
		}
	}
	return "", true
}

func (s *session) scriptAdmin(args [][]byte) {
	sub := ""
	if len(args) > 1 {
		sub = strings.ToLower(string(args[1]))
	}
	switch sub {
	case "load", "flush":
		// Prepare records or drops the bodies, and they are logged so a
		// follower's cache and its EVALSHA agree with the primary's.
		s.write(args)
		return
	}
	s.enqueue(s.srv.writer, step{kind: stepRead, db: s.db, args: args})
}

// allowedBeforeAuth is Redis's no_auth flag: AUTH, HELLO, QUIT, RESET.
func allowedBeforeAuth(info *CommandInfo) bool {
	switch topName(info) {
	case "auth", "hello", "quit", "reset":
		return true
	}
	return info.Flags.Has(FlagNoAuth)
}

// topName is the command's own name, for a subcommand its container's.
func topName(info *CommandInfo) string {
	if info.Parent != nil {
		return info.Parent.Name
	}
	return info.Name
}

func (s *session) connection(info *CommandInfo, args [][]byte) bool {
	switch topName(info) {
	case "ping":
		if len(args) <= 2 && s.srv.route.load().Mode == RouteLocal && !s.srv.Router() {
			// A node serving from its own primary lets the primary answer,
			// so that PING says BUSY or LOADING when Redis would (tools
			// wait for that before SCRIPT KILL); it needs no SELECT.
			s.enqueue(s.readLane(), step{kind: stepRead, db: s.db, anyDB: true, args: args})
			return false
		}
		switch len(args) {
		case 1:
			s.local(appendSimple(nil, "PONG"))
		case 2:
			s.local(appendBulk(nil, args[1]))
		default:
			s.localError("ERR wrong number of arguments for 'ping' command")
		}
	case "echo":
		s.local(appendBulk(nil, args[1]))
	case "quit":
		s.local(appendSimple(nil, "OK"))
		return true
	case "select":
		n, err := strconv.Atoi(string(args[1]))
		if err != nil {
			s.localError("ERR value is not an integer or out of range")
			return false
		}
		if n < 0 || int64(n) >= s.srv.databases.Load() {
			s.localError("ERR DB index is out of range")
			return false
		}
		s.db = n
		s.local(appendSimple(nil, "OK"))
	case "auth":
		s.auth(args[1:])
	case "hello":
		s.hello(args[1:])
	case "reset":
		s.reset()
		s.local(appendSimple(nil, "RESET"))
	case "client":
		s.client(args)
	default:
		s.localError(RefusedError(info, args))
	}
	return false
}

// auth checks the proxy's own credentials (REPLICAR_USER/PASSWORD), which
// are separate from the backend's.
func (s *session) auth(args [][]byte) {
	if !s.srv.hasAccounts() {
		s.localError("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	if !s.checkPassword(args) {
		s.localError("WRONGPASS invalid username-password pair or user is disabled.")
		return
	}
	s.local(appendSimple(nil, "OK"))
}

func (s *session) checkPassword(args [][]byte) bool {
	user, pass := s.srv.cfg.User, ""
	switch len(args) {
	case 1:
		pass = string(args[0])
	case 2:
		user, pass = string(args[0]), string(args[1])
	default:
		return false
	}
	ok := s.srv.checkCredentials(user, pass)
	if ok {
		s.authed = true
		s.cr.lim = s.srv.cfg.Limits
	}
	return ok
}

func constantTimeEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// hello speaks RESP2 only: HELLO 3 gets NOPROTO, which clients (go-redis,
// redis-py, Jedis) take as "stay on RESP2".
func (s *session) hello(args [][]byte) {
	if len(args) > 0 {
		ver, err := strconv.Atoi(string(args[0]))
		if err != nil {
			s.localError("ERR Protocol version is not an integer or out of range")
			return
		}
		if ver != 2 {
			s.localError("NOPROTO sorry, this protocol version is not supported")
			return
		}
		for i := 1; i < len(args); i++ {
			switch strings.ToLower(string(args[i])) {
			case "auth":
				if i+2 >= len(args) {
					s.localError("ERR Syntax error in HELLO option 'auth'")
					return
				}
				if !s.srv.hasAccounts() || !s.checkPassword(args[i+1:i+3]) {
					s.localError("WRONGPASS invalid username-password pair or user is disabled.")
					return
				}
				i += 2
			case "setname":
				if i+1 >= len(args) {
					s.localError("ERR Syntax error in HELLO option 'setname'")
					return
				}
				s.name = string(args[i+1])
				i++
			default:
				s.localError("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
				return
			}
		}
	}
	if !s.authed {
		s.localError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	version := "unknown"
	if v := s.srv.version.Load(); v != nil {
		version = *v
	}
	out := appendArrayHeader(nil, 14)
	out = appendBulkString(out, "server")
	out = appendBulkString(out, "redis")
	out = appendBulkString(out, "version")
	out = appendBulkString(out, version)
	out = appendBulkString(out, "proto")
	out = appendInt(out, 2)
	out = appendBulkString(out, "id")
	out = appendInt(out, s.id)
	out = appendBulkString(out, "mode")
	out = appendBulkString(out, "standalone")
	out = appendBulkString(out, "role")
	out = appendBulkString(out, "master")
	out = appendBulkString(out, "modules")
	out = appendArrayHeader(out, 0)
	s.local(out)
}

// reset is RESET: back to db 0, no transaction, no watch, no subscription,
// no name, and unauthenticated when a password is set.
func (s *session) reset() {
	s.drain()
	s.db = 0
	s.multi = nil
	s.name = ""
	s.cleanup()
	if s.srv.cfg.Password != "" {
		s.authed = false
		s.cr.lim = unauthenticatedLimits
	}
}

func (s *session) client(args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	switch sub {
	case "setname":
		if len(args) != 3 {
			s.localError("ERR wrong number of arguments for 'client|setname' command")
			return
		}
		for _, c := range args[2] {
			if c < '!' || c > '~' {
				s.localError("ERR Client names cannot contain spaces, newlines or special characters.")
				return
			}
		}
		s.name = string(args[2])
		s.local(appendSimple(nil, "OK"))
	case "getname":
		if s.name == "" {
			s.local([]byte("$-1\r\n"))
		} else {
			s.local(appendBulkString(nil, s.name))
		}
	case "id":
		s.local(appendInt(nil, s.id))
	case "info":
		s.local(appendBulkString(nil, s.clientLine()+"\n"))
	case "list":
		s.local(appendBulkString(nil, s.srv.clientList()))
	case "no-evict", "no-touch":
		s.local(appendSimple(nil, "OK"))
	case "unblock":
		s.clientUnblock(args)
	default:
		s.localError(fmt.Sprintf("ERR replicar: CLIENT %s is not supported through the proxy", strings.ToUpper(sub)))
	}
}

func (s *session) clientLine() string {
	return fmt.Sprintf("id=%d addr=%s laddr=%s name=%s db=%d", s.id, s.conn.RemoteAddr(), s.conn.LocalAddr(), s.name, s.db)
}

// sessionByID finds a connected client by its CLIENT ID.
func (srv *Server) sessionByID(id int64) *session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for sess := range srv.sessions {
		if sess.id == id {
			return sess
		}
	}
	return nil
}

func (srv *Server) clientList() string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var b strings.Builder
	for sess := range srv.sessions {
		b.WriteString(sess.clientLine())
		b.WriteByte('\n')
	}
	return b.String()
}

// wait is WAIT numreplicas timeout: how many replicas hold this client's
// writes, waiting up to timeout (0 = forever) for numreplicas of them.
func (s *session) wait(ctx context.Context, info *CommandInfo, args [][]byte) {
	if info.Name != "wait" {
		s.localError(RefusedError(info, args))
		return
	}
	n, err1 := strconv.Atoi(string(args[1]))
	ms, err2 := strconv.ParseInt(string(args[2]), 10, 64)
	if err1 != nil || err2 != nil {
		s.localError("ERR value is not an integer or out of range")
		return
	}
	if ms < 0 {
		s.localError("ERR timeout is negative")
		return
	}
	s.drain()
	wctx := ctx
	if ms > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	got := s.srv.core.WaitReplicas(wctx, s.lastOffset.Load(), n)
	s.local(appendInt(nil, int64(got)))
}

// proxyCommand is REPLICAR INFO.
func (s *session) proxyCommand(args [][]byte) {
	if len(args) < 2 || !strings.EqualFold(string(args[1]), "info") {
		s.localError("ERR unknown subcommand or wrong number of arguments for 'replicar'. Try REPLICAR INFO.")
		return
	}
	s.local(appendBulkString(nil, s.srv.info()))
}

func (srv *Server) info() string {
	st := srv.core.Status()
	var b strings.Builder
	w := func(k string, v any) { fmt.Fprintf(&b, "%s:%v\r\n", k, v) }
	b.WriteString("# Replication\r\n")
	w("node", st.Node)
	w("group", st.Group)
	w("protocol", st.Protocol)
	w("role", st.Role)
	w("state", st.State)
	w("epoch", st.Epoch)
	w("leader", st.Leader)
	w("leader_addr", st.LeaderAddr)
	w("offset", st.Offset)
	w("committed", st.Committed)
	w("applied", st.Applied)
	w("isr", strings.Join(st.ISR, ","))
	w("ack_policy", st.AckPolicy)
	w("backlog_first_offset", st.BacklogFirst)
	w("backlog_bytes", st.BacklogBytes)
	w("backlog_limit_bytes", st.BacklogLimit)
	w("connected_followers", len(st.Followers))
	for i, f := range st.Followers {
		// One line per follower, like Redis's slave0:ip=…,offset=….
		w(fmt.Sprintf("follower%d", i), fmt.Sprintf("node=%s,acked=%d,lag_entries=%d,lag_seconds=%.3f,in_sync=%t,connected=%t",
			f.Node, f.Acked, f.LagEntries, f.LagSeconds, f.InSync, f.Connected))
	}
	b.WriteString("# Proxy\r\n")
	w("backend", srv.cfg.Backend)
	w("backend_up", srv.writer.up.Load())
	w("connected_clients", srv.clients.Load())
	w("total_connections", srv.stats.Connections.Load())
	w("rejected_connections", srv.stats.Rejected.Load())
	w("commands_processed", srv.stats.Commands.Load())
	w("writes_logged", srv.stats.WritesLogged.Load())
	w("writes_refused", srv.stats.WritesRefused.Load())
	w("writes_unknown_outcome", srv.stats.WritesUnknown.Load())
	w("writes_uncommitted", srv.stats.Uncommitted.Load())
	w("protocol_errors", srv.stats.ProtocolErrors.Load())
	w("blocked_clients", srv.blocked.count.Load())
	rewrites := srv.stats.Rewrites()
	keys := make([]string, 0, len(rewrites))
	for k := range rewrites {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w("rewrites_"+strings.ReplaceAll(k, "-", "_"), rewrites[k])
	}
	return b.String()
}
