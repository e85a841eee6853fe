package resp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/replicar/replicar/ackpolicy"
)

// Transactions. MULTI queues commands in the proxy; EXEC sends them to the
// primary as one MULTI … EXEC through the ordered writer, so nothing from
// another client lands in between, and logs the effect as one entry.
//
// WATCH needs Redis's own tracking of modified keys, which a shared
// connection cannot give: a client that WATCHes gets a connection of its
// own, WATCH runs there, and its EXEC runs there too, as an exclusive job of
// the ordered writer (everything before it answered, nothing after it sent),
// so the backlog order stays the execution order.

type txState struct {
	cmds  [][][]byte // copies: they outlive the batch they were read in
	dirty bool
	db    int // db at MULTI
}

type watchState struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	db   int
	// active is whether keys are watched; the connection outlives a
	// transaction for the client's next WATCH.
	active bool
}

func (w *watchState) close() { w.conn.Close() }

// txControl lists the commands that act on a transaction instead of being
// queued in it.
func txControl(info *CommandInfo) bool {
	switch info.Name {
	case "exec", "discard", "multi", "watch", "quit", "reset":
		return true
	}
	return false
}

func copyArgs(args [][]byte) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(args))
	for i, a := range args {
		start := len(buf)
		buf = append(buf, a...)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// queue adds a command to the open transaction, refusing what cannot run
// inside one; a refusal marks the transaction so that EXEC aborts, as Redis
// does.
func (s *session) queue(info *CommandInfo, class Class, args [][]byte) {
	refuse := func(msg string) {
		s.multi.dirty = true
		s.localError(msg)
	}
	if info.Flags.Has(FlagNoMulti) {
		refuse("ERR Command not allowed inside a transaction")
		return
	}
	switch class {
	case ClassRead, ClassWrite, ClassScript, ClassBlocking, ClassAdmin, ClassScriptAdmin:
	case ClassConnection:
		switch topName(info) {
		case "select":
			n, err := strconv.Atoi(string(args[1]))
			if err != nil || n < 0 || int64(n) >= s.srv.databases.Load() {
				// Redis checks at EXEC; the proxy knows now and the effect
				// is the same: EXEC answers the error in that slot.
				break
			}
		case "ping", "echo":
		default:
			refuse(fmt.Sprintf("ERR replicar: %s inside MULTI is not supported", strings.ToUpper(topName(info))))
			return
		}
	default:
		refuse(fmt.Sprintf("ERR replicar: %s inside MULTI is not supported", strings.ToUpper(info.Name)))
		return
	}
	if class == ClassWrite || class == ClassScript || class == ClassBlocking {
		if msg, ok := s.reserved(args); !ok {
			refuse(msg)
			return
		}
	}
	s.multi.cmds = append(s.multi.cmds, copyArgs(args))
	s.local(appendSimple(nil, "QUEUED"))
}

func (s *session) transaction(ctx context.Context, info *CommandInfo, args [][]byte) {
	switch info.Name {
	case "multi":
		if s.multi != nil {
			s.localError("ERR MULTI calls can not be nested")
			return
		}
		s.multi = &txState{db: s.db}
		s.local(appendSimple(nil, "OK"))
	case "discard":
		if s.multi == nil {
			s.localError("ERR DISCARD without MULTI")
			return
		}
		s.multi = nil
		s.unwatch()
		s.local(appendSimple(nil, "OK"))
	case "exec":
		s.exec(ctx)
	case "watch":
		if s.multi != nil {
			s.localError("ERR WATCH inside MULTI is not allowed")
			return
		}
		s.watchKeys(ctx, args)
	case "unwatch":
		s.unwatch()
		s.local(appendSimple(nil, "OK"))
	}
}

// plans prepares every queued command at EXEC time, when Redis would run
// them, and returns the db the transaction leaves the connection in.
func (s *session) plans(tx *txState) ([]Plan, int, bool, error) {
	table := s.srv.table.Load()
	now := s.srv.cfg.Now().UnixMilli()
	db := tx.db
	writes := false
	plans := make([]Plan, 0, len(tx.cmds))
	for _, c := range tx.cmds {
		info, err := table.Lookup(c)
		if err != nil {
			return nil, 0, false, err
		}
		switch Classify(info, c) {
		case ClassWrite, ClassScript, ClassBlocking:
			p, err := Prepare(c, now, s.srv.scripts)
			if err != nil {
				return nil, 0, false, err
			}
			plans = append(plans, p)
			writes = true
		case ClassConnection:
			if topName(info) == "select" {
				if n, err := strconv.Atoi(string(c[1])); err == nil && n >= 0 && int64(n) < s.srv.databases.Load() {
					db = n
				}
				// Logged too, so the entry switches db for the commands
				// after it on the replicas.
				p, _ := Prepare(c, now, nil)
				plans = append(plans, p)
				continue
			}
			plans = append(plans, ReadOnly(c))
		default:
			plans = append(plans, ReadOnly(c))
		}
	}
	return plans, db, writes, nil
}

func (s *session) exec(ctx context.Context) {
	tx := s.multi
	if tx == nil {
		s.localError("ERR EXEC without MULTI")
		return
	}
	s.multi = nil
	if tx.dirty {
		s.unwatch()
		s.localError("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	plans, db, writes, err := s.plans(tx)
	if err != nil {
		s.unwatch()
		s.localError(err.Error())
		return
	}
	if writes {
		if err := s.srv.core.Admit(); err != nil {
			s.srv.stats.WritesRefused.Add(1)
			s.unwatch()
			s.localError(errorMessage(err))
			return
		}
	}
	if writes && !s.holdWrite() {
		s.unwatch()
		s.localError(errorMessage(ackpolicy.ErrNotLeader))
		return
	}
	st := step{kind: stepTx, db: tx.db, tx: plans, txDB: db}
	s.db = db
	if s.watch == nil || !s.watch.active {
		s.enqueue(s.srv.writer, st)
		if writes {
			s.cur.writes++
		}
		return
	}
	// EXEC unwatches everything, whatever its outcome.
	w := s.watch
	w.active = false
	s.dispatch()
	j := newJob()
	j.sess = s
	if db != tx.db {
		// A WATCHed transaction may not run, and then its SELECT does not
		// either: the db of every later command waits for the outcome.
		s.db = tx.db
		st.execSelect = db + 1
	}
	j.steps = append(j.steps, st)
	if writes {
		j.writes = 1
	}
	j.exclusive = func(j *job) { s.srv.execWatched(w, j) }
	s.cur, s.curLane = j, s.srv.writer
	s.dispatch()
	if st.execSelect > 0 {
		s.drain()
	}
}

// execWatched runs a WATCHed transaction on the client's own connection. It
// is called by the ordered writer's receiver with the pipeline drained.
func (srv *Server) execWatched(w *watchState, j *job) {
	st := &j.steps[0]
	st.replyStart = len(j.out)
	w.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer w.conn.SetDeadline(time.Time{})
	if st.db != w.db {
		if v, err := roundTrip(w.br, w.bw, selectCmd, []byte(strconv.Itoa(st.db))); err != nil || v.IsError() {
			j.fail(0, "ERR backend unavailable: watch connection: select failed", false)
			return
		}
	}
	writeCommand(w.bw, multiCmd)
	n := 0
	for _, p := range st.tx {
		for _, c := range p.Exec {
			writeArgs(w.bw, c)
			n++
		}
	}
	writeCommand(w.bw, execCmd)
	fail := func(err error) {
		j.fail(0, "ERR backend unavailable: watch connection: "+err.Error(), true)
		srv.unknownOutcome(*st)
		w.conn.Close()
	}
	if err := w.bw.Flush(); err != nil {
		fail(err)
		return
	}
	_, execReply, v, err := readExec(w.br, n)
	if err != nil {
		fail(err)
		return
	}
	switch {
	case v.Kind == Array && len(v.Elems) == n:
		// Only a transaction that ran ran its SELECTs.
		w.db = st.txDB
		j.out = AppendValue(j.out, TxReply(st.tx, v))
		st.replyEnd = len(j.out)
		cmds, err := TxEffect(st.tx, v)
		srv.logPlan(j, st, cmds, err)
	default:
		// nil: a watched key changed, nothing ran; or EXECABORT.
		j.out = append(j.out, execReply...)
	}
	st.replyEnd = len(j.out)
}

func (s *session) watchKeys(ctx context.Context, args [][]byte) {
	s.drain()
	if s.watch == nil {
		conn, br, bw, err := s.srv.dialBackend(ctx, "watch", false)
		if err != nil {
			s.localError("ERR backend unavailable: " + err.Error())
			return
		}
		s.watch = &watchState{conn: conn, br: br, bw: bw}
	}
	w := s.watch
	if s.db != w.db {
		if v, err := roundTrip(w.br, w.bw, selectCmd, []byte(strconv.Itoa(s.db))); err != nil || v.IsError() {
			s.dropWatch()
			s.localError("ERR backend unavailable: watch connection")
			return
		}
		w.db = s.db
	}
	writeArgs(w.bw, args)
	if err := w.bw.Flush(); err != nil {
		s.dropWatch()
		s.localError("ERR backend unavailable: " + err.Error())
		return
	}
	reply, err := readReply(w.br, nil)
	if err != nil {
		s.dropWatch()
		s.localError("ERR backend unavailable: " + err.Error())
		return
	}
	if reply[0] != '-' {
		w.active = true
	}
	s.local(reply)
}

func (s *session) dropWatch() {
	if s.watch != nil {
		s.watch.close()
		s.watch = nil
	}
}

// unwatch forgets watched keys. The connection is kept for the next WATCH.
func (s *session) unwatch() {
	if s.watch == nil || !s.watch.active {
		return
	}
	s.watch.active = false
	s.drain()
	if _, err := roundTrip(s.watch.br, s.watch.bw, []byte("UNWATCH")); err != nil {
		s.dropWatch()
	}
}
