package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// lane is one backend connection with a pipelined sender and receiver: the
// sender writes whole jobs and flushes once per burst, the receiver reads the
// replies in the same order. The ordered writer is the lane all writes go
// through, so the order the receiver sees replies in is the order the primary
// executed them in, and that is the order they are logged in.
type lane struct {
	srv     *Server
	name    string
	ordered bool // the writer lane: logs effects and runs exclusive jobs
	jobs    chan *job
	// fwd is set on a client's private lane to the leader (forward.go).
	fwd *forwardState

	up      atomic.Bool
	lastErr atomic.Pointer[string]

	// urgent are jobs that go before everything queued in jobs: the
	// probes of clients a write just woke, which Redis serves right after
	// the command that woke them, before any later one. urgentReady wakes
	// an idle lane for them.
	urgentMu    sync.Mutex
	urgent      []*job
	urgentReady chan struct{}

	// selectErr is the error a read connection's SELECT got (BUSY while a
	// script runs, LOADING): the commands after it, until the next SELECT
	// that works, ran in another db, so each gets this error instead of
	// its reply, and the connection is kept. Used by one goroutine.
	selectErr []byte
}

func newLane(srv *Server, name string, ordered bool) *lane {
	return &lane{srv: srv, name: name, ordered: ordered, jobs: make(chan *job, 256), urgentReady: make(chan struct{}, 1)}
}

// submit queues j. While the backend is down, j is answered at once with
// "backend unavailable": it is not executed.
func (l *lane) submit(j *job) {
	if l.fwd != nil {
		j.queued = time.Now()
	}
	l.jobs <- j
}

// submitUrgent queues j ahead of every job in the queue. It never blocks,
// so the lane itself may call it (a write it logs wakes blocked clients).
func (l *lane) submitUrgent(j *job) {
	l.urgentMu.Lock()
	l.urgent = append(l.urgent, j)
	l.urgentMu.Unlock()
	select {
	case l.urgentReady <- struct{}{}:
	default:
	}
}

// takeUrgent appends the urgent jobs to dst, oldest first.
func (l *lane) takeUrgent(dst []*job) []*job {
	l.urgentMu.Lock()
	dst = append(dst, l.urgent...)
	clear(l.urgent)
	l.urgent = l.urgent[:0]
	l.urgentMu.Unlock()
	return dst
}

// failUrgent answers the urgent jobs with msg: the lane cannot run them.
func (l *lane) failUrgent(msg string) {
	for _, j := range l.takeUrgent(nil) {
		j.fail(0, msg, false)
		l.finish(j)
	}
}

// run keeps a connection to the backend, reconnecting with backoff, until
// ctx ends.
func (l *lane) run(ctx context.Context) {
	if l.fwd != nil {
		l.runForward(ctx)
		return
	}
	log := l.srv.log.With().Str("lane", l.name).Logger()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		conn, br, bw, err := l.srv.dialBackend(ctx, l.name, l.ordered)
		if err != nil {
			l.setDown(err)
			log.Warn().Err(err).Dur("retry_in", backoff).Msg("backend unavailable")
			l.failFor(ctx, backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		l.up.Store(true)
		log.Debug().Msg("backend connected")
		err = l.serve(ctx, conn, br, bw)
		conn.Close()
		if ctx.Err() == nil {
			l.setDown(err)
			log.Warn().Err(err).Msg("backend connection lost")
		}
	}
	l.up.Store(false)
	for {
		l.failUrgent("ERR backend unavailable: proxy shutting down")
		select {
		case j := <-l.jobs:
			j.fail(0, "ERR backend unavailable: proxy shutting down", false)
			l.finish(j)
		default:
			return
		}
	}
}

// finish marks j answered. On the writer it also counts its writes out of
// the server's in-flight count, which a leader handing over waits on.
func (l *lane) finish(j *job) {
	if j.writes > 0 {
		l.srv.writesInFlight.Add(-j.writes)
		j.writes = 0
	}
	if j.sentWrites > 0 {
		l.srv.wseq.finished(j.sentWrites)
		j.sentWrites = 0
	}
	close(j.done)
}

func (l *lane) setDown(err error) {
	l.up.Store(false)
	msg := err.Error()
	l.lastErr.Store(&msg)
}

func (l *lane) downMessage() string {
	if p := l.lastErr.Load(); p != nil {
		return "ERR backend unavailable: " + *p
	}
	return "ERR backend unavailable"
}

// failFor answers queued jobs with "backend unavailable" for d: while the
// backend is down nothing is executed, and clients learn it at once.
func (l *lane) failFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case j := <-l.jobs:
			// Exclusive jobs too: they run on their own connection but
			// need the writer's order, so without the writer they fail.
			j.fail(0, l.downMessage(), false)
			l.finish(j)
		case <-l.urgentReady:
			l.failUrgent(l.downMessage())
		}
	}
}

// serve pipelines jobs over one connection until it fails or ctx ends.
//
// One goroutine does both directions, with one burst in flight: it takes
// every job queued, writes them in one flush, reads all their replies, and
// goes round again. While the backend works on a burst, the next one gathers
// in the queue, so under load one write and one read serve many clients, and
// when idle a job goes out at once.
func (l *lane) serve(ctx context.Context, conn net.Conn, br *bufio.Reader, bw *bufio.Writer) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	db := 0
	burst := make([]*job, 0, 256)
	for {
		burst = l.takeUrgent(burst[:0])
		if len(burst) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case j := <-l.jobs:
				burst = append(burst, j)
			case <-l.urgentReady:
				continue
			}
		}
	gather:
		for len(burst) < cap(burst) {
			select {
			case j := <-l.jobs:
				burst = append(burst, j)
			default:
				break gather
			}
		}
		// An exclusive job runs alone: everything before it answered,
		// nothing after it sent.
		start := 0
		for i := 0; i <= len(burst); i++ {
			if i < len(burst) && burst[i].exclusive == nil {
				continue
			}
			if err := l.roundTrip(br, bw, burst[start:i], &db); err != nil {
				for _, j := range burst[i:] {
					j.fail(0, l.downMessage(), false)
					l.finish(j)
				}
				return err
			}
			if i < len(burst) {
				j := burst[i]
				j.sentWrites = countWrites(j)
				l.srv.wseq.sent.Add(j.sentWrites)
				j.exclusive(j)
				l.decideFence(j)
				l.release([]*job{j})
			}
			start = i + 1
		}
	}
}

// decideFence marks j's reads, which have just run on the primary, for
// fencing. Any write sent so far may be visible to them. The decision is
// taken now, when the reads ran: a node that stops leading before the
// reply is written must still fence it (and then refuses it).
func (l *lane) decideFence(j *job) {
	if l.fwd == nil && hasReads(j) && l.srv.readFencing() {
		j.fenced = true
		j.readFence = l.srv.wseq.sent.Load()
	}
}

// roundTrip writes jobs' commands in one flush and reads their replies.
func (l *lane) roundTrip(br *bufio.Reader, bw *bufio.Writer, jobs []*job, db *int) error {
	if len(jobs) == 0 {
		return nil
	}
	var sent uint64
	for _, j := range jobs {
		*db = encodeJob(bw, j, *db)
		if l.ordered {
			j.sentWrites = countWrites(j)
			sent += j.sentWrites
		}
	}
	if sent > 0 {
		l.srv.wseq.sent.Add(sent)
	}
	err := l.exchange(br, bw, jobs, "backend", l.failInflight)
	if l.selectErr != nil {
		// The connection's db is not known now: the next command selects.
		l.selectErr = nil
		*db = -1
	}
	return err
}

// exchange flushes the commands encoded for jobs and reads their replies in
// order. When the connection fails, the job at fault and every later one
// are answered with fail (which closes them), and the error is returned.
func (l *lane) exchange(br *bufio.Reader, bw *bufio.Writer, jobs []*job, peer string, fail func(j *job, from int, err error)) error {
	if err := bw.Flush(); err != nil {
		err = fmt.Errorf("write to %s: %w", peer, err)
		for _, j := range jobs {
			fail(j, 0, err)
		}
		return err
	}
	for k, j := range jobs {
		for i := range j.steps {
			if err := l.receiveStep(br, j, i); err != nil {
				if l.ordered {
					l.release(jobs[:k])
				}
				fail(j, i, err)
				for _, rest := range jobs[k+1:] {
					fail(rest, 0, err)
				}
				return err
			}
		}
		l.decideFence(j)
		if !l.ordered {
			l.finish(j)
		}
	}
	if l.ordered {
		l.release(jobs)
	}
	return nil
}

// release flushes the writes the writer logged (one WAL write for the
// burst) and then answers jobs: a reply is never released before its
// write is in the backlog, and its wait for the commit then rarely parks.
// A failed flush reaches the replies through their commit wait.
func (l *lane) release(jobs []*job) {
	if err := l.srv.core.Flush(); err != nil {
		l.srv.log.Error().Err(err).Msg("writes executed on the primary but not logged: the backlog refuses writes until the next term")
	}
	for _, j := range jobs {
		l.finish(j)
	}
}

// encodeJob writes j's commands, with a SELECT wherever a step's db differs
// from the connection's, and returns the db the connection is left in.
func encodeJob(bw *bufio.Writer, j *job, db int) int {
	for i := range j.steps {
		st := &j.steps[i]
		if st.kind == stepLocal {
			continue
		}
		if st.anyDB && db >= 0 {
			st.db = db
		}
		if st.db != db {
			st.selectFirst = true
			writeCommand(bw, selectCmd, strconv.AppendInt(nil, int64(st.db), 10))
			db = st.db
		}
		switch st.kind {
		case stepRead, stepAbsentDel:
			writeArgs(bw, st.args)
		case stepWrite:
			if len(st.plan.Exec) > 1 || st.plan.Atomic {
				writeCommand(bw, multiCmd)
				for _, c := range st.plan.Exec {
					writeArgs(bw, c)
				}
				writeCommand(bw, execCmd)
			} else {
				writeArgs(bw, st.plan.Exec[0])
			}
		case stepTx:
			writeCommand(bw, multiCmd)
			for _, p := range st.tx {
				for _, c := range p.Exec {
					writeArgs(bw, c)
				}
			}
			writeCommand(bw, execCmd)
			db = st.txDB
		}
	}
	return db
}

var (
	selectCmd = []byte("SELECT")
	multiCmd  = []byte("MULTI")
	execCmd   = []byte("EXEC")
)

func writeCommand(bw *bufio.Writer, args ...[]byte) { writeArgs(bw, args) }

func writeArgs(bw *bufio.Writer, args [][]byte) {
	writeHeader(bw, '*', len(args))
	for _, a := range args {
		writeHeader(bw, '$', len(a))
		bw.Write(a)
		bw.WriteString("\r\n")
	}
}

// writeHeader writes a RESP length line ("*3\r\n", "$5\r\n") straight into
// bw's buffer: a scratch array passed to Write would escape, costing an
// allocation per command.
func writeHeader(bw *bufio.Writer, prefix byte, n int) {
	b := bw.AvailableBuffer()
	if cap(b) < 24 {
		bw.WriteByte(prefix)
		bw.WriteString(strconv.Itoa(n))
		bw.WriteString("\r\n")
		return
	}
	b = append(b, prefix)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, '\r', '\n')
	bw.Write(b)
}

// errReplyShape means the backend answered with something the command
// cannot produce; the connection's framing can no longer be trusted.
var errReplyShape = errors.New("unexpected reply shape from backend")

func (l *lane) failInflight(j *job, from int, err error) {
	j.fail(from, "ERR backend unavailable: "+err.Error(), true)
	if l.ordered {
		for i := from; i < len(j.steps); i++ {
			if j.steps[i].unknown {
				l.srv.unknownOutcome(j.steps[i])
			}
		}
	}
	l.finish(j)
}

func (l *lane) receiveStep(br *bufio.Reader, j *job, i int) error {
	st := &j.steps[i]
	st.replyStart = len(j.out)
	if st.kind == stepLocal {
		st.replyEnd = len(j.out)
		return nil
	}
	var err error
	if st.selectFirst {
		var scratch [64]byte
		reply, err := readReply(br, scratch[:0])
		if err != nil {
			return err
		}
		switch {
		case reply[0] != '-':
			l.selectErr = nil
		case l.ordered || l.fwd != nil:
			// A write must never run in another db: the connection goes.
			return fmt.Errorf("%w: SELECT %d answered %q", errReplyShape, st.db, reply)
		default:
			l.selectErr = append(l.selectErr[:0], reply...)
		}
	}
	switch st.kind {
	case stepRead:
		if st.aside != nil {
			*st.aside, err = readReply(br, (*st.aside)[:0])
			st.replyEnd = len(j.out)
			return err
		}
		j.out, err = readReply(br, j.out)
		if err == nil && l.selectErr != nil {
			j.out = append(j.out[:st.replyStart], l.selectErr...)
		}
		st.replyEnd = len(j.out)
		if err == nil && len(st.args) > 0 && len(st.args[0]) == 4 && strings.EqualFold(string(st.args[0]), "info") {
			if parked := l.srv.blocked.count.Load(); parked > 0 {
				patched := patchBlockedClients(j.out[st.replyStart:st.replyEnd], parked)
				j.out = append(j.out[:st.replyStart], patched...)
				st.replyEnd = len(j.out)
			}
		}
		if err == nil && len(st.args) == 2 && l.srv.relayPatternsOn.Load() &&
			strings.EqualFold(string(st.args[0]), "pubsub") && strings.EqualFold(string(st.args[1]), "numpat") {
			patched := patchNumPat(j.out[st.replyStart:st.replyEnd])
			j.out = append(j.out[:st.replyStart], patched...)
			st.replyEnd = len(j.out)
		}
		return err
	case stepWrite:
		if len(st.plan.Exec) > 1 || st.plan.Atomic {
			return l.receiveAtomicWrite(br, j, st)
		}
		if j.out, err = readReply(br, j.out); err != nil {
			return err
		}
		st.replyEnd = len(j.out)
		reply := j.out[st.replyStart:st.replyEnd]
		if st.plan.Kind == "" && reply[0] == '+' {
			// The common case (SET … +OK): logged as sent, no parsing.
			l.srv.logEffect(j, st, st.plan.Exec[:1])
			return nil
		}
		v, _, perr := ParseValue(reply)
		if perr != nil {
			return fmt.Errorf("parse reply: %w", perr)
		}
		cmds, err := st.plan.Effect([]Value{v})
		l.srv.logPlan(j, st, cmds, err)
		return nil
	case stepTx:
		return l.receiveTx(br, j, st)
	case stepAbsentDel:
		if j.out, err = readReply(br, j.out); err != nil {
			return err
		}
		st.replyEnd = len(j.out)
		if string(j.out[st.replyStart:st.replyEnd]) == ":0\r\n" {
			l.srv.logEffect(j, st, [][][]byte{{delCmd, st.args[1]}})
		}
		return nil
	}
	return fmt.Errorf("step kind %d on a backend lane", st.kind)
}

// readMultiPreamble reads the replies to MULTI and to n queued commands. It
// returns the first error a command was queued with (Redis then aborts the
// EXEC), or nil.
func readMultiPreamble(br *bufio.Reader, n int) ([]byte, error) {
	var scratch [128]byte
	reply, err := readReply(br, scratch[:0])
	if err != nil {
		return nil, err
	}
	if reply[0] == '-' {
		return nil, fmt.Errorf("%w: MULTI answered %q", errReplyShape, reply)
	}
	var firstErr []byte
	for range n {
		reply, err := readReply(br, scratch[:0])
		if err != nil {
			return nil, err
		}
		if reply[0] == '-' && firstErr == nil {
			firstErr = append([]byte(nil), reply...)
		}
	}
	return firstErr, nil
}

// readExec reads the replies to MULTI, n queued commands and EXEC. It
// returns the first queueing error (Redis then aborts the EXEC), the raw EXEC
// reply and its parsed form.
func readExec(br *bufio.Reader, n int) (queuedErr, execReply []byte, v Value, err error) {
	if queuedErr, err = readMultiPreamble(br, n); err != nil {
		return nil, nil, Value{}, err
	}
	if execReply, err = readReply(br, nil); err != nil {
		return nil, nil, Value{}, err
	}
	if v, _, err = ParseValue(execReply); err != nil {
		return nil, nil, Value{}, fmt.Errorf("parse EXEC reply: %w", err)
	}
	return queuedErr, execReply, v, nil
}

func (l *lane) receiveAtomicWrite(br *bufio.Reader, j *job, st *step) error {
	queuedErr, execReply, v, err := readExec(br, len(st.plan.Exec))
	if err != nil {
		return err
	}
	switch {
	case queuedErr != nil:
		j.out = append(j.out, queuedErr...)
	case v.Kind == Array && len(v.Elems) == len(st.plan.Exec):
		j.out = AppendValue(j.out, v.Elems[0])
		st.replyEnd = len(j.out)
		cmds, err := st.plan.Effect(v.Elems)
		l.srv.logPlan(j, st, cmds, err)
	case v.Kind == Error:
		j.out = append(j.out, execReply...)
	default:
		return fmt.Errorf("%w: EXEC answered %s", errReplyShape, v)
	}
	st.replyEnd = len(j.out)
	return nil
}

func (l *lane) receiveTx(br *bufio.Reader, j *job, st *step) error {
	n := 0
	for _, p := range st.tx {
		n += len(p.Exec)
	}
	queuedErr, execReply, v, err := readExec(br, n)
	if err != nil {
		return err
	}
	switch {
	case v.Kind == Array && len(v.Elems) == n:
		j.out = AppendValue(j.out, TxReply(st.tx, v))
		st.replyEnd = len(j.out)
		cmds, err := TxEffect(st.tx, v)
		l.srv.logPlan(j, st, cmds, err)
	case v.Kind == Error || v.Kind == NullArray:
		_ = queuedErr // Redis's EXECABORT already names the cause.
		j.out = append(j.out, execReply...)
	default:
		return fmt.Errorf("%w: EXEC answered %s", errReplyShape, v)
	}
	st.replyEnd = len(j.out)
	return nil
}
