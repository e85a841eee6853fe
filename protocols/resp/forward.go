package resp

import (
	"bufio"
	"bytes"
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

// Routing. A node that is not the leader still takes clients: it forwards
// what needs the leader (writes, transactions, blocking commands, WAIT, and
// reads under READ_POLICY=leader) to the leader's client port, and serves
// the rest from its own store. Clients never reconnect on failover: the
// route changes under them.
//
// Each forwarding client gets a connection of its own to the leader, owned
// by a private lane, so everything that is connection state on the leader
// (MULTI, WATCH, a blocking pop, WAIT's "my writes") keeps its meaning. The
// proxy keeps SELECT, AUTH and the client name itself and re-applies the db
// on every new leader connection.

// RouteMode says where the front end sends writes.
type RouteMode uint8

const (
	// RouteLocal: this node's backend is the primary; writes go through
	// the ordered writer and are logged here.
	RouteLocal RouteMode = iota
	// RouteForward: another node leads; writes go to Route.Leader.
	RouteForward
	// RouteNone: no leader is known (an election is on). Commands that
	// need one wait up to Config.FailoverWait for a route, then get
	// TRYAGAIN: they were not executed.
	RouteNone
)

func (m RouteMode) String() string {
	switch m {
	case RouteLocal:
		return "local"
	case RouteForward:
		return "forward"
	case RouteNone:
		return "none"
	}
	return fmt.Sprintf("RouteMode(%d)", m)
}

// Route is where the front end sends what it cannot serve from its own
// store.
type Route struct {
	Mode RouteMode
	// Leader is the leader's client address (REPLICAR_LISTEN) when Mode is
	// RouteForward.
	Leader string
	// LocalReads lets a forwarding node serve reads from its own store
	// (READ_POLICY=local, or bounded while the lag is small enough).
	LocalReads bool
}

// routeState holds the current route and wakes whoever waits for a change.
type routeState struct {
	// cur is read on every command, so it is an atomic pointer; mu
	// orders changes with the channel that announces them.
	cur     atomic.Pointer[Route]
	mu      sync.Mutex
	changed chan struct{}
}

// load is the current route; the zero route (RouteLocal) until set.
func (r *routeState) load() Route {
	if p := r.cur.Load(); p != nil {
		return *p
	}
	return Route{}
}

func (r *routeState) get() (Route, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.load(), r.changed
}

func (r *routeState) set(rt Route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.Store(&rt)
	if r.changed != nil {
		close(r.changed)
	}
	r.changed = make(chan struct{})
}

// SetRoute changes where commands that need the leader go. Jobs already on
// a connection finish there; idle forwarding connections move to the new
// leader before their next command.
func (s *Server) SetRoute(rt Route) {
	if p := s.route.cur.Load(); p != nil && *p == rt {
		return
	}
	s.route.set(rt)
	s.log.Info().Stringer("mode", rt.Mode).Str("leader", rt.Leader).Bool("local_reads", rt.LocalReads).Msg("route changed")
}

// Route is the current route.
func (s *Server) Route() Route { return s.route.load() }

// tryAgainMessage is the reply to a command that found no leader within the
// failover wait. The word is the contract: the command was not executed.
func tryAgainMessage(wait time.Duration, why string) string {
	return fmt.Sprintf("TRYAGAIN no leader available after waiting %s (%s); the command was not executed", wait, why)
}

// forwardState is a private lane's connection bookkeeping: which leader it
// is connected to, and whether the client has a transaction or WATCH open
// there, which a new connection would silently drop.
type forwardState struct {
	// txOpen is set once MULTI or WATCH went out on the connection, and
	// cleared by EXEC, DISCARD, UNWATCH outside MULTI, or RESET.
	txOpen, inMulti bool
	// txLost is set when the connection failed with a transaction open:
	// the client's commands are refused until it ends the transaction, so
	// commands meant to be queued never run on their own.
	txLost bool
}

// errTxLost answers the commands of a transaction whose leader connection
// was lost: nothing queued ran, and the client must start again.
const errTxLost = "ERR replicar: the connection to the leader was lost inside MULTI/WATCH; the transaction was discarded, start it again"

// newForwardLane is a client's private lane to the leader.
func newForwardLane(srv *Server, id int64) *lane {
	l := newLane(srv, fmt.Sprintf("forward-%d", id), false)
	l.fwd = &forwardState{}
	return l
}

// runForward is a private lane's loop: it holds jobs until a leader is
// reachable (up to FailoverWait each), pipelines them to it, and follows
// the route when it changes.
func (l *lane) runForward(ctx context.Context) {
	var (
		conn   net.Conn
		br     *bufio.Reader
		bw     *bufio.Writer
		target string
		db     int
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
		for {
			select {
			case j := <-l.jobs:
				j.fail(0, "ERR replicar: client session closed", false)
				close(j.done)
			default:
				return
			}
		}
	}()
	burst := make([]*job, 0, 64)
	for {
		burst = burst[:0]
		select {
		case <-ctx.Done():
			return
		case j := <-l.jobs:
			burst = append(burst, j)
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
		// Move an idle connection to the current leader.
		if conn != nil && !l.fwd.txOpen {
			if want, ok := l.srv.leaderAddr(); !ok || want != target {
				conn.Close()
				conn = nil
			}
		}
		if conn == nil {
			var err error
			conn, br, bw, target, err = l.connectLeader(ctx, burst[0].queued)
			if err != nil {
				for _, j := range burst {
					j.fail(0, err.Error(), false)
					close(j.done)
				}
				continue
			}
			db = 0
			if l.fwd.txOpen {
				l.fwd.txOpen, l.fwd.inMulti, l.fwd.txLost = false, false, true
			}
		}
		if err := l.forwardBurst(br, bw, burst, &db); err != nil {
			conn.Close()
			conn = nil
			if l.fwd.txOpen {
				l.fwd.txOpen, l.fwd.inMulti, l.fwd.txLost = false, false, true
			}
		}
	}
}

// leaderAddr is where forwarding connections go now: the leader's client
// address, or this node's own listener once it leads.
func (s *Server) leaderAddr() (string, bool) {
	rt := s.route.load()
	switch rt.Mode {
	case RouteForward:
		return rt.Leader, rt.Leader != ""
	case RouteLocal:
		if s.ln != nil {
			return s.ln.Addr().String(), true
		}
	}
	return "", false
}

// connectLeader dials the current leader, waiting for one until the oldest
// job in hand has waited FailoverWait.
func (l *lane) connectLeader(ctx context.Context, since time.Time) (net.Conn, *bufio.Reader, *bufio.Writer, string, error) {
	wait := l.srv.cfg.FailoverWait
	deadline := since.Add(wait)
	why := "no leader elected"
	backoff := 20 * time.Millisecond
	for {
		_, changed := l.srv.route.get()
		if addr, ok := l.srv.leaderAddr(); ok {
			conn, br, bw, err := l.srv.dialLeader(ctx, addr)
			if err == nil {
				return conn, br, bw, addr, nil
			}
			why = err.Error()
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return nil, nil, nil, "", errors.New(tryAgainMessage(wait, why))
		}
		t := time.NewTimer(min(left, backoff))
		select {
		case <-ctx.Done():
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// dialLeader connects to a leader node's client port with this node's own
// client credentials: the group's nodes share them.
func (s *Server) dialLeader(ctx context.Context, addr string) (net.Conn, *bufio.Reader, *bufio.Writer, error) {
	conn, err := dialTCP(ctx, addr, s.cfg.DialTimeout, s.cfg.ForwardTLS)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dial leader %s: %w", addr, err)
	}
	br := bufio.NewReaderSize(conn, 16<<10)
	bw := bufio.NewWriterSize(conn, 16<<10)
	if s.cfg.Password != "" {
		conn.SetDeadline(time.Now().Add(5 * s.cfg.DialTimeout))
		v, err := roundTrip(br, bw, []byte("AUTH"), []byte(s.cfg.User), []byte(s.cfg.Password))
		conn.SetDeadline(time.Time{})
		if err != nil || v.IsError() {
			conn.Close()
			return nil, nil, nil, fmt.Errorf("leader %s auth: %v%s", addr, err, errText(v))
		}
	}
	return conn, br, bw, nil
}

// forwardBurst sends jobs' commands to the leader in one flush and copies
// the replies back. It tracks the transaction state the commands open and
// close on the leader connection.
func (l *lane) forwardBurst(br *bufio.Reader, bw *bufio.Writer, jobs []*job, db *int) error {
	var refused []*job
	sendable := jobs[:0:0]
	for _, j := range jobs {
		if l.fwd.txLost {
			// The transaction this command belonged to is gone: refuse
			// it, and stop refusing once the client ends the transaction.
			for i := range j.steps {
				if ends := txEnd(j.steps[i].args); ends {
					l.fwd.txLost = false
				}
			}
			refused = append(refused, j)
			continue
		}
		sendable = append(sendable, j)
	}
	for _, j := range refused {
		j.fail(0, errTxLost, false)
		close(j.done)
	}
	if len(sendable) == 0 {
		return nil
	}
	for _, j := range sendable {
		*db = encodeJob(bw, j, *db)
		for i := range j.steps {
			l.fwd.track(j.steps[i].args)
		}
	}
	return l.exchange(br, bw, sendable, "leader", l.failForwarded)
}

func (l *lane) failForwarded(j *job, from int, err error) {
	j.fail(from, "ERR replicar: connection to the leader lost with the command in flight; it may have been executed: "+err.Error(), false)
	close(j.done)
}

// track follows MULTI/WATCH/EXEC/DISCARD/UNWATCH/RESET as they go out.
func (f *forwardState) track(args [][]byte) {
	if len(args) == 0 {
		return
	}
	switch strings.ToLower(string(args[0])) {
	case "multi":
		f.txOpen, f.inMulti = true, true
	case "watch":
		f.txOpen = true
	case "exec", "discard", "reset":
		f.txOpen, f.inMulti = false, false
	case "unwatch":
		if !f.inMulti {
			f.txOpen = false
		}
	}
}

func txEnd(args [][]byte) bool {
	if len(args) == 0 {
		return false
	}
	switch strings.ToLower(string(args[0])) {
	case "exec", "discard", "reset":
		return true
	}
	return false
}

// needsLeader says whether a command must go to the leader when this node
// does not lead. Connection state, REPLICAR, pub/sub subscriptions (PUBLISH
// is replicated, so a follower's own store delivers it) and admin commands
// stay local; reads go to the leader unless local reads are allowed.
func needsLeader(class Class, rt Route, router bool) bool {
	if router {
		// No store here: only connection state and REPLICAR INFO are
		// served locally; pub/sub subscribes through the leader.
		return class != ClassConnection && class != ClassProxy && class != ClassPubSub
	}
	switch class {
	case ClassConnection, ClassProxy, ClassPubSub, ClassAdmin:
		return false
	case ClassRead:
		return !rt.LocalReads
	}
	return true
}

// forward sends a command to the leader on the client's private lane.
func (s *session) forward(info *CommandInfo, args [][]byte) {
	if s.fwdLane == nil {
		s.fwdLane = newForwardLane(s.srv, s.id)
		ctx, cancel := context.WithCancel(context.WithoutCancel(s.ctx))
		s.fwdStop = cancel
		l := s.fwdLane
		s.srv.fwdWG.Go(func() { l.runForward(ctx) })
	}
	s.enqueue(s.fwdLane, step{kind: stepRead, db: s.db, args: args})
}

// stopForward ends the client's leader connection (at RESET and when the
// client goes).
func (s *session) stopForward() {
	if s.fwdLane == nil {
		return
	}
	s.drain()
	s.fwdStop()
	s.fwdLane, s.fwdStop = nil, nil
}

// forwardTxOpen says whether the client has MULTI or WATCH open on the
// leader, judged by what it has sent: the session queues nothing locally
// then, and every command goes to the leader to keep the transaction whole.
func (s *session) forwardTxOpen() bool { return s.fwdTx }

// noteForwardTx tracks MULTI/WATCH/EXEC/DISCARD/UNWATCH as the client sends
// them to the leader.
func (s *session) noteForwardTx(info *CommandInfo) {
	switch info.Name {
	case "multi":
		s.fwdTx, s.fwdMulti, s.fwdSelect = true, true, -1
	case "watch":
		s.fwdTx = true
	case "exec", "discard":
		s.fwdTx, s.fwdMulti = false, false
	case "unwatch":
		if !s.fwdMulti {
			s.fwdTx = false
		}
	}
}

// routeToLeader serves a command on a node that does not lead, or for a
// client with a transaction open on the leader. It reports whether it took
// the command and, if so, whether the connection must close.
func (s *session) routeToLeader(info *CommandInfo, class Class, args [][]byte, rt Route) (handled, quit bool) {
	if s.fwdTx {
		switch topName(info) {
		case "quit", "reset":
			// Served here; closing or resetting drops the leader
			// connection, and with it the transaction there.
			return false, false
		case "select":
			if s.fwdMulti {
				// Queued on the leader with the transaction, as Redis
				// queues it: it takes effect only if EXEC runs it.
				if len(args) == 2 {
					if n, err := strconv.Atoi(string(args[1])); err == nil && n >= 0 {
						s.fwdSelect = n
					}
				}
				s.forward(info, args)
				return true, false
			}
			// Kept here and re-applied on the next forwarded command.
			return false, false
		case "exec":
			if s.fwdMulti && s.fwdSelect >= 0 {
				// The db of every later command depends on whether EXEC
				// ran, so its reply is awaited before they are read.
				n := s.fwdSelect
				s.noteForwardTx(info)
				s.forward(info, args)
				s.cur.steps[len(s.cur.steps)-1].execSelect = n + 1
				s.drain()
				return true, false
			}
		}
	} else if !needsLeader(class, rt, s.srv.Router()) {
		return false, false
	}
	s.noteForwardTx(info)
	s.forward(info, args)
	return true, false
}

// execRan says whether an EXEC reply is the transaction's results (an
// array), rather than nil (a WATCHed key changed) or EXECABORT.
func execRan(reply []byte) bool {
	return len(reply) > 0 && reply[0] == '*' && !bytes.HasPrefix(reply, []byte("*-1"))
}
