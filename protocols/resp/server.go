package resp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Server is the RESP front end of one node: it accepts clients on
// Config.Listen and serves them from the backend Redis through one ordered
// writer connection (every write, in backlog order) and a pool of read
// connections.
type Server struct {
	cfg  Config
	log  zerolog.Logger
	core Log

	// relayPatternsOn says the expiry relay's patterns are subscribed on
	// the primary (PUBSUB NUMPAT leaves them out).
	relayPatternsOn atomic.Bool

	table     atomic.Pointer[CommandTable]
	databases atomic.Int64
	version   atomic.Pointer[string]

	writer  *lane
	readers []*lane
	scripts *ScriptCache
	blocked blockRegistry

	// payload is the writer receiver's encode buffer; only that goroutine
	// touches it.
	payload []byte
	stats   Stats

	ln      net.Listener
	ready   chan struct{}
	clients atomic.Int64
	nextID  atomic.Int64

	mu       sync.Mutex
	sessions map[*session]struct{}

	// route is where commands that need the leader go (forward.go).
	route routeState
	// fwdWG tracks the clients' private lanes to the leader.
	fwdWG sync.WaitGroup
	// writesInFlight counts client writes bound for the ordered writer and
	// not yet answered by it (see enqueueWrite).
	writesInFlight atomic.Int64
	// wseq counts the writer's writes for read fencing (readfence.go).
	wseq writeSeq
}

// WaitWritesIdle waits until every client write admitted while this node
// led has been executed and logged, or ctx ends. Call it after SetRoute
// has moved writes elsewhere: a leader stepping down or handing over then
// knows its store and its backlog agree.
func (s *Server) WaitWritesIdle(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for s.writesInFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d writes still executing: %w", s.writesInFlight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Stats are the front end's counters, for REPLICAR INFO and metrics.
type Stats struct {
	Connections    atomic.Int64
	Rejected       atomic.Int64
	Commands       atomic.Int64
	WritesLogged   atomic.Int64
	WritesRefused  atomic.Int64
	WritesUnknown  atomic.Int64
	Uncommitted    atomic.Int64
	ProtocolErrors atomic.Int64
	rewrites       sync.Map // kind → *atomic.Int64
}

func (st *Stats) countRewrite(kind string) {
	if kind == "" {
		return
	}
	c, ok := st.rewrites.Load(kind)
	if !ok {
		c, _ = st.rewrites.LoadOrStore(kind, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

// Rewrites returns the number of rewritten writes by kind.
func (st *Stats) Rewrites() map[string]int64 {
	m := map[string]int64{}
	st.rewrites.Range(func(k, v any) bool {
		m[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return m
}

// NewServer returns a Server for cfg that logs writes to core.
func NewServer(cfg Config, core Log) *Server {
	cfg.setDefaults()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		core:     core,
		scripts:  NewScriptCache(0),
		ready:    make(chan struct{}),
		sessions: map[*session]struct{}{},
	}
	s.databases.Store(16)
	s.blocked.waiters = map[blockKey][]*blockWaiter{}
	s.writer = newLane(s, "writer", true)
	for i := range cfg.ReadConns {
		s.readers = append(s.readers, newLane(s, "read-"+strconv.Itoa(i), false))
	}
	return s
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Addr is the address clients connect to, once Run is listening.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.ln.Addr()
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx ends, then closes every client and backend
// connection and returns.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller made (a TLS listener, say).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.ln = ln
	close(s.ready)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The lanes outlive the sessions: a session finishing its last replies
	// at shutdown still needs them, so they stop only once every session
	// has.
	laneCtx, stopLanes := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLanes()
	var wg sync.WaitGroup
	wg.Go(func() { s.writer.run(laneCtx) })
	if !s.Router() {
		for _, r := range s.readers {
			wg.Go(func() { r.run(laneCtx) })
		}
		wg.Go(func() { s.runExpiryRelay(laneCtx) })
	}
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for sess := range s.sessions {
			sess.conn.Close()
		}
		s.mu.Unlock()
	})
	s.log.Info().Str("listen", ln.Addr().String()).Str("backend", s.cfg.Backend).Msg("resp front end listening")

	var sessions sync.WaitGroup
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				break
			}
			s.log.Warn().Err(err).Msg("accept")
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.stats.Connections.Add(1)
		if max := s.cfg.MaxClients; max > 0 && s.clients.Load() >= int64(max) {
			s.stats.Rejected.Add(1)
			conn.Write([]byte("-ERR max number of clients reached\r\n"))
			conn.Close()
			continue
		}
		sess := newSession(s, conn)
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			conn.Close()
			break
		}
		s.sessions[sess] = struct{}{}
		s.mu.Unlock()
		s.clients.Add(1)
		sessions.Go(func() {
			sess.serve(ctx)
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
			s.clients.Add(-1)
		})
	}
	cancel()
	sessions.Wait()
	s.fwdWG.Wait()
	stopLanes()
	wg.Wait()
	return nil
}

// dialBackend connects to the backend and prepares the connection: AUTH,
// a client name, and on the writer, the command table, the number of
// databases and the server version, refreshed on every reconnect so that a
// backend upgrade is picked up.
func (s *Server) dialBackend(ctx context.Context, name string, ordered bool) (net.Conn, *bufio.Reader, *bufio.Writer, error) {
	var (
		conn   net.Conn
		br     *bufio.Reader
		bw     *bufio.Writer
		err    error
		router = s.Router()
	)
	if router {
		// A router has no store: what would go to it goes to the
		// leader, which also serves the command table.
		addr, ok := s.leaderAddr()
		if !ok {
			return nil, nil, nil, errors.New("no leader known")
		}
		if conn, br, bw, err = s.dialLeader(ctx, addr); err != nil {
			return nil, nil, nil, err
		}
	} else {
		if conn, err = dialTCP(ctx, s.cfg.Backend, s.cfg.DialTimeout, s.cfg.BackendTLS); err != nil {
			return nil, nil, nil, fmt.Errorf("dial %s: %w", s.cfg.Backend, err)
		}
		br = bufio.NewReaderSize(conn, 64<<10)
		bw = bufio.NewWriterSize(conn, 64<<10)
	}
	fail := func(err error) (net.Conn, *bufio.Reader, *bufio.Writer, error) {
		conn.Close()
		return nil, nil, nil, err
	}
	conn.SetDeadline(time.Now().Add(5 * s.cfg.DialTimeout))
	if s.cfg.BackendPassword != "" && !router {
		args := [][]byte{[]byte("AUTH")}
		if s.cfg.BackendUser != "" {
			args = append(args, []byte(s.cfg.BackendUser))
		}
		args = append(args, []byte(s.cfg.BackendPassword))
		if v, err := roundTrip(br, bw, args...); err != nil || v.IsError() {
			return fail(fmt.Errorf("backend auth: %v%s", err, errText(v)))
		}
	}
	if v, err := roundTrip(br, bw, []byte("CLIENT"), []byte("SETNAME"), []byte("replicar-"+name)); err != nil {
		return fail(fmt.Errorf("backend handshake: %w", err))
	} else if v.IsError() {
		return fail(fmt.Errorf("backend handshake: %s", v.Str))
	}
	if ordered {
		v, err := roundTrip(br, bw, []byte("COMMAND"))
		if err != nil || v.IsError() {
			return fail(fmt.Errorf("backend COMMAND: %v%s", err, errText(v)))
		}
		table, err := ParseCommandTable(v)
		if err != nil {
			return fail(fmt.Errorf("backend COMMAND: %w", err))
		}
		s.table.Store(table)
		if v, err := roundTrip(br, bw, []byte("CONFIG"), []byte("GET"), []byte("databases")); err == nil && v.Kind == Array && len(v.Elems) == 2 {
			if n, err := strconv.Atoi(string(v.Elems[1].Str)); err == nil && n > 0 {
				s.databases.Store(int64(n))
			}
		}
		if v, err := roundTrip(br, bw, []byte("INFO"), []byte("server")); err == nil && v.Kind == Bulk {
			for _, line := range strings.Split(string(v.Str), "\r\n") {
				if ver, ok := strings.CutPrefix(line, "redis_version:"); ok {
					s.version.Store(&ver)
				}
			}
		}
	}
	conn.SetDeadline(time.Time{})
	return conn, br, bw, nil
}

func errText(v Value) string {
	if v.IsError() {
		return string(v.Str)
	}
	return ""
}

// roundTrip sends one command and reads its reply, for handshakes. The
// value's bytes are copied out of the reader.
func roundTrip(br *bufio.Reader, bw *bufio.Writer, args ...[]byte) (Value, error) {
	writeArgs(bw, args)
	if err := bw.Flush(); err != nil {
		return Value{}, err
	}
	raw, err := readReply(br, nil)
	if err != nil {
		return Value{}, err
	}
	v, _, err := ParseValue(raw)
	return v, err
}

// logPlan logs what a plan says a write did. A reply the plan cannot
// explain means the primary did something the proxy does not understand:
// the write is not logged, so it is counted and reported loudly.
func (s *Server) logPlan(j *job, st *step, cmds [][][]byte, err error) {
	if err != nil {
		s.stats.WritesUnknown.Add(1)
		s.log.Error().Err(err).Int("db", st.db).Msg("cannot derive the effect of a write from its reply: not logged")
		return
	}
	s.logEffect(j, st, cmds)
}

// logEffect appends the effect of a write to the backlog, in the writer's
// receive order, and wakes clients blocked on the keys it touched.
func (s *Server) logEffect(j *job, st *step, cmds [][][]byte) {
	if len(cmds) == 0 {
		return
	}
	s.payload = AppendPayload(s.payload[:0], Payload{DB: st.db, Cmds: cmds})
	off, err := s.core.AppendBuffered(s.payload)
	if err != nil {
		// The primary has executed a write the backlog does not hold:
		// replicas would miss it. Tell the client it is not committed.
		s.log.Error().Err(err).Int("db", st.db).Msg("write executed on the primary but not logged")
		j.out = j.out[:st.replyStart]
		j.out = appendError(j.out, "UNCOMMITTED write executed on the primary but not logged: "+err.Error())
		st.replyEnd = len(j.out)
		return
	}
	st.offset = off
	j.maxOffset = max(j.maxOffset, off)
	if j.sess != nil {
		j.sess.lastOffset.Store(max(j.sess.lastOffset.Load(), off))
	}
	s.stats.WritesLogged.Add(1)
	if st.kind == stepTx {
		for _, p := range st.tx {
			s.stats.countRewrite(p.Kind)
		}
	} else {
		s.stats.countRewrite(st.plan.Kind)
	}
	if s.blocked.count.Load() > 0 && !(j.probe && isNilReply(j.out[st.replyStart:st.replyEnd])) {
		s.wakeKeys(st.db, cmds)
	}
}

// wakeKeys wakes blocked clients waiting on any key the commands wrote.
func (s *Server) wakeKeys(db int, cmds [][][]byte) {
	table := s.table.Load()
	if table == nil {
		return
	}
	var idx [16]int
	for _, c := range cmds {
		if len(c) == 2 && strings.EqualFold(string(c[0]), "select") {
			if n, err := strconv.Atoi(string(c[1])); err == nil {
				db = n
			}
			continue
		}
		switch {
		case strings.EqualFold(string(c[0]), "flushdb"):
			s.blocked.wakeDB(db)
			continue
		case strings.EqualFold(string(c[0]), "flushall"), strings.EqualFold(string(c[0]), "swapdb"):
			s.blocked.wakeDB(-1)
			continue
		}
		info, err := table.Lookup(c)
		if err != nil {
			continue
		}
		for _, i := range info.Keys(c, idx[:0]) {
			s.blocked.wake(db, c[i])
		}
	}
}

// unknownOutcome records a write whose connection failed after it was sent:
// the primary may hold it while the backlog does not.
func (s *Server) unknownOutcome(st step) {
	s.stats.WritesUnknown.Add(1)
	s.log.Error().Int("db", st.db).Msg("backend connection failed with a write in flight: the primary may hold a write the backlog lacks")
}

// TLSListener wraps ln with the given server TLS config, for rediss-style
// clients.
func TLSListener(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }

// Router says whether the server has no backend of its own (no
// REPLICAR_BACKEND): it forwards every command to the leader.
func (s *Server) Router() bool { return s.cfg.Backend == "" }

// BackendUp reports whether the ordered writer is connected to the
// backend, which is what serving writes needs.
func (s *Server) BackendUp() bool { return s.writer.up.Load() }

// Exclusive runs fn on the ordered writer with every earlier write answered
// and no later one sent until fn returns: the primary is quiescent for
// writes while fn runs, which is what a consistent snapshot of it needs.
// Reads go on meanwhile.
func (s *Server) Exclusive(ctx context.Context, fn func() error) error {
	var fnErr error
	ran := false
	j := newJob()
	j.exclusive = func(*job) { ran, fnErr = true, fn() }
	s.writer.submit(j)
	select {
	case <-j.done:
	case <-ctx.Done():
		// The job still runs to completion; its result is dropped.
		return ctx.Err()
	}
	if !ran {
		// The lane failed the job instead of running it.
		return errors.New(s.writer.downMessage())
	}
	return fnErr
}
