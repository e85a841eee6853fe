package proxy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gosql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/mysql"
	"github.com/replicar/replicar/protocols/mysql/apply"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// This file is the MySQL/MariaDB side of a node (REPLICAR_PROTOCOL=mysql).
// In row mode (the default) the front end (protocols/mysql) does not log
// writes: on the leader a binlog capture (rowlog) appends each committed
// transaction to the ReplLog, and the front end holds a client's COMMIT
// until the entry carrying its GTID commits under the ack policy. In
// statement mode the front end logs each transaction's statements itself,
// in commit order, through the Appender it is given while the node leads.
// Either way followers apply entries with apply.Applier, whose position
// table in the backend is written in the same transaction as the rows.
//
// What a term looks like on the backend in row mode:
//
//   - promotion: @@gtid_binlog_pos is read (rowlog.Check, which also
//     checks the settings row capture needs) and recorded with the epoch
//     as the leading mark (Applier.MarkLeading); once the ReplLog leads,
//     the capture starts from that position. Everything before it is in
//     the backlog already (applied here as a follower, with sql_log_bin=0)
//     or is the applier's own DDL domain, which the capture ignores.
//   - step-down or handover: the front end drains, then the capture is
//     waited for until it has processed everything in @@gtid_binlog_pos,
//     then stopped; Applier.SetPosition(last entry) records the position
//     and clears the mark.
//   - a restart that finds the mark crashed while leading: if the
//     backend's @@gtid_binlog_pos is ahead of the last entry this node's
//     capture logged (rowlog.Ahead), the store holds transactions no
//     backlog has, and it full-resyncs before it follows; otherwise the
//     store and the backlog agree and the mark is cleared.
//
// In statement mode the leader's own commits record their entry in the
// store in the same transaction, and a DDL is marked pending before it
// runs (mysql.StoreMark): a store found leading after a crash full-resyncs
// only if it holds a change the backlog lacks. A statement log that broke
// (a committed transaction that could not be logged) makes the leader
// step down and full-resync.

// MySQLNode adapts a ReplLog to what the MySQL front end needs (mysql.Log).
type MySQLNode struct {
	*ReplLog
	cfg   Config
	group *Group
	// gate pauses the admission of writes while a leader snapshot opens.
	gate *writeGate
}

// Admit says whether a write may run now. While a leader snapshot is
// opening it waits for the pause to end (at most FAILOVER_WAIT).
func (n *MySQLNode) Admit() error {
	if err := n.gate.wait(max(n.cfg.FailoverWait, time.Second)); err != nil {
		return err
	}
	return n.ReplLog.Admit()
}

// Status reports the node for SHOW REPLICAR STATUS.
func (n *MySQLNode) Status() mysql.Status {
	return mysqlStatus(nodeStatus(n.cfg, n.ReplLog, n.group, nil))
}

// errWritesPaused is a write that waited too long for a leader snapshot to
// open: it was not executed.
var errWritesPaused = fmt.Errorf("%w: writes paused for a full resync snapshot", ackpolicy.ErrNotLeader)

// writeGate pauses the admission of new writes. Pauses nest.
type writeGate struct {
	mu     sync.Mutex
	paused int
	open   chan struct{} // closed while not paused
}

func newWriteGate() *writeGate {
	g := &writeGate{open: make(chan struct{})}
	close(g.open)
	return g
}

// pause stops admitting writes until the returned function is called
// (once; later calls do nothing).
func (g *writeGate) pause() func() {
	g.mu.Lock()
	if g.paused == 0 {
		g.open = make(chan struct{})
	}
	g.paused++
	g.mu.Unlock()
	return resumeOnce(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.paused--; g.paused == 0 {
			close(g.open)
		}
	})
}

// wait returns once writes are admitted again, or errWritesPaused after d.
func (g *writeGate) wait(d time.Duration) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return nil
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-open:
		return nil
	case <-t.C:
		return errWritesPaused
	}
}

// mysqlStore is the Store of a MySQL/MariaDB node in row mode.
type mysqlStore struct {
	cfg Config
	// statement is REPLICAR_MYSQL_FORMAT=statement: the front end logs.
	statement bool
	sec       *Security
	log       zerolog.Logger
	rl        *ReplLog
	node      *MySQLNode
	srv       *mysql.Server
	app       *apply.Applier
	// db is a small pool on the backend for the checks, the GTID
	// position and the health probe.
	db *sql.DB
	// pingFailures counts consecutive failed probes.
	pingFailures atomic.Int32
	offsets      *captureOffsets
	// logged counts the entries the captures appended.
	logged atomic.Int64

	mu sync.Mutex
	// start is the GTID position the next capture starts after, read
	// when the store was marked leading.
	start string
	run   *captureRun
}

// captureRun is one leadership's capture: a binlog capture in row mode,
// the front end's statement log (c nil) in statement mode.
type captureRun struct {
	c      *rowlog.Capture
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's error, set before done is closed
}

// ddlDomains are the GTID domains no capture logs and no comparison
// counts: the follower applier's DDL domain.
var ddlDomains = []uint32{apply.DefaultDDLDomain}

// newMySQLStore builds the MySQL front end over rl, with its applier and
// the connections its checks use.
func newMySQLStore(cfg Config, sec *Security, rl *ReplLog, logger zerolog.Logger) (*mysqlStore, error) {
	s := &mysqlStore{cfg: cfg, statement: cfg.MySQLFormat == MySQLStatement, sec: sec, log: logger, rl: rl}
	s.node = &MySQLNode{ReplLog: rl, cfg: cfg, gate: newWriteGate()}
	s.offsets = &captureOffsets{}
	// Row mode holds commits on their GTID's offset; statement mode holds
	// them on the offset its own append returns.
	var offsets mysql.GTIDOffsets = s.offsets
	if s.statement {
		offsets = nil
	}
	srv, err := mysql.NewServer(mysqlFrontConfig(cfg, sec, logger), s.node, offsets)
	if err != nil {
		return nil, fmt.Errorf("mysql front end: %w", err)
	}
	// Nothing is served locally until the election says this node leads.
	srv.SetRoute(mysql.Route{Mode: mysql.RouteNone})
	s.srv = srv
	s.app = apply.NewApplier(cfg.Backend, apply.Options{User: cfg.BackendUser, Password: cfg.BackendPassword,
		TLS: sec.tlsSet().Backend}, logger.With().Str("component", "apply").Logger())
	mc := gosql.NewConfig()
	mc.Net, mc.Addr, mc.User, mc.Passwd = "tcp", cfg.Backend, cfg.BackendUser, cfg.BackendPassword
	mc.TLS = sec.tlsSet().Backend
	mc.Timeout = 2 * time.Second
	conn, err := gosql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", cfg.Backend, err)
	}
	s.db = sql.OpenDB(conn)
	s.db.SetMaxOpenConns(2)
	s.db.SetMaxIdleConns(2)
	s.db.SetConnMaxIdleTime(time.Minute)
	return s, nil
}

// mysqlFrontConfig is the front end's configuration from the node's.
func mysqlFrontConfig(cfg Config, sec *Security, logger zerolog.Logger) mysql.Config {
	t := sec.tlsSet()
	return mysql.Config{
		Listen:            cfg.Listen,
		Backend:           cfg.Backend,
		BackendUser:       cfg.BackendUser,
		BackendPassword:   cfg.BackendPassword,
		BackendTLS:        t.Backend,
		ForwardTLS:        t.Peer,
		User:              cfg.User,
		Password:          cfg.Password,
		Users:             sec.users(),
		TLS:               t.Client,
		MaxClients:        cfg.MaxClients,
		Format:            mysql.Format(cfg.MySQLFormat),
		AckTimeoutDegrade: cfg.AckTimeoutMode == AckTimeoutDegrade,
		OffsetTimeout:     cfg.AckTimeout,
		FenceReads:        cfg.ReadPolicy == ReadLeader,
		FailoverWait:      max(cfg.FailoverWait, time.Nanosecond),
		Logger:            logger,
	}
}

func (s *mysqlStore) SetRoute(r Route) {
	rt := mysql.Route{Mode: mysql.RouteNone}
	switch r.Mode {
	case RouteLocal:
		rt.Mode = mysql.RouteLocal
	case RouteForward:
		rt = mysql.Route{Mode: mysql.RouteForward, Leader: r.Leader}
	}
	s.srv.SetRoute(rt)
}

func (s *mysqlStore) WaitWritesIdle(ctx context.Context) error { return s.srv.WaitWritesIdle(ctx) }

// BackendUp is the front end's view (its start-up check and its last
// connection) and the probe's: the front end alone would not notice a
// backend that died under sessions already open.
func (s *mysqlStore) BackendUp() bool {
	return s.srv.BackendUp() && s.pingFailures.Load() < 2
}

func (s *mysqlStore) Ping(ctx context.Context) error {
	err := s.db.PingContext(ctx)
	if err != nil {
		s.pingFailures.Add(1)
		return err
	}
	s.pingFailures.Store(0)
	return nil
}

func (s *mysqlStore) Applier() StoreApplier { return s.app }

// check runs rowlog.Check until the backend answers: a misconfigured
// backend is an error naming each setting to change.
func (s *mysqlStore) check(ctx context.Context) (rowlog.ServerInfo, error) {
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := rowlog.Check(cctx, s.db)
		cancel()
		switch {
		case err == nil:
			return info, nil
		case errors.Is(err, rowlog.ErrMisconfigured):
			return info, fmt.Errorf("backend %s cannot be used with %sMYSQL_FORMAT=row: %w", s.cfg.Backend, EnvPrefix, err)
		case ctx.Err() != nil:
			return info, ctx.Err()
		}
		var me *gosql.MySQLError
		if errors.As(err, &me) && (me.Number == 1045 || me.Number == 1227 || me.Number == 1142) {
			// Access denied and missing privileges do not fix themselves.
			return info, fmt.Errorf("backend %s: %w", s.cfg.Backend, err)
		}
		s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("backend not ready; retrying")
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// binlogPos reads the backend's @@gtid_binlog_pos.
func (s *mysqlStore) binlogPos(ctx context.Context) (string, error) {
	var pos string
	if err := s.db.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&pos); err != nil {
		return "", fmt.Errorf("read gtid_binlog_pos: %w", err)
	}
	return pos, nil
}

// Recover checks the backend, then looks for the leading mark. A store
// left leading is compared with the backlog: the capture logged
// transactions up to the Position of the last entry of that term (or, if
// it logged none, the position the mark recorded); a backend whose
// @@gtid_binlog_pos is ahead of it committed transactions the backlog
// never got, and must full-resync. Otherwise the store holds exactly the
// backlog, and the mark is cleared.
func (s *mysqlStore) Recover(ctx context.Context, last backlog.Position) (bool, error) {
	var info rowlog.ServerInfo
	if !s.statement {
		var err error
		if info, err = s.check(ctx); err != nil {
			return false, err
		}
		s.log.Info().Str("backend", s.cfg.Backend).Str("version", info.Version).Uint32("server_id", info.ServerID).
			Str("gtid_binlog_pos", info.GTIDBinlogPos).Msg("backend checked for row capture")
	}
	var mark apply.Leading
	var err error
	for {
		if mark, err = s.app.ReadLeading(ctx); err == nil {
			break
		}
		if errors.Is(err, apply.ErrNoBinlog) {
			return false, err
		}
		s.log.Warn().Err(err).Msg("backend not ready; retrying")
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if mark.Epoch == 0 {
		return false, nil
	}
	if s.statement {
		return s.recoverStatement(ctx, mark)
	}
	base, logged := mark.Start, false
	if last.Epoch == mark.Epoch && last.Offset > 0 {
		entries, err := s.rl.Entries(last.Offset, 1)
		if err == nil && len(entries) == 1 {
			h, err := rowlog.DecodeHeader(entries[0].Payload)
			if err != nil {
				return false, fmt.Errorf("last backlog entry %v: %w", last, err)
			}
			base, logged = h.Position, true
		}
	}
	ahead, err := rowlog.Ahead(info.GTIDBinlogPos, base, ddlDomains)
	if err != nil {
		return false, err
	}
	log := s.log.With().Uint64("leading_epoch", mark.Epoch).Str("backend_gtid", info.GTIDBinlogPos).Str("logged_gtid", base).Logger()
	if ahead {
		log.Warn().Msg("the store was leading when this node stopped and holds transactions the backlog lacks")
		return true, nil
	}
	// Nothing unlogged: the store is exactly the backlog (up to its last
	// entry if this term logged any, else where it stood).
	pos := last
	if !logged {
		if pos, err = s.app.Position(ctx); err != nil {
			return false, err
		}
	}
	if err := s.app.SetPosition(ctx, pos); err != nil {
		return false, err
	}
	log.Info().Stringer("position", pos).Msg("the store was leading when this node stopped; its backlog holds every transaction it committed")
	return false, nil
}

// recoverStatement is Recover for a statement-mode store left leading: each
// logged transaction recorded its entry in the store, and each DDL was
// marked pending before it ran (mysql.StoreMark), so the store says
// whether it holds a change the backlog lacks.
func (s *mysqlStore) recoverStatement(ctx context.Context, mark apply.Leading) (bool, error) {
	sm, err := mysql.ReadStoreMark(ctx, mysqlFrontConfig(s.cfg, s.sec, s.log))
	if err != nil {
		return false, err
	}
	log := s.log.With().Uint64("leading_epoch", mark.Epoch).Uint64("store_epoch", sm.Epoch).Uint64("store_offset", sm.Offset).
		Uint64("pending_ddl_offset", sm.DDLOffset).Logger()
	if sm.Ahead(s.rl.Has) {
		log.Warn().Msg("the store was leading when this node stopped and holds a change the backlog lacks")
		return true, nil
	}
	epoch, offset := sm.Position(s.rl.Has)
	pos := backlog.Position{Epoch: epoch, Offset: offset}
	if err := s.app.SetPosition(ctx, pos); err != nil {
		return false, err
	}
	log.Info().Stringer("position", pos).Msg("the store was leading when this node stopped; its backlog holds every change it committed")
	return false, nil
}

// MarkLeading reads where the backend's binlog stands (checking its
// settings again: a backend may have been restarted with others) and
// records it with epoch: the capture starts there.
func (s *mysqlStore) MarkLeading(ctx context.Context, epoch uint64) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if s.statement {
		if err := s.srv.StatementLogErr(); err != nil {
			return fmt.Errorf("statement log broken, restart the node after its full resync: %w", err)
		}
		// The binlog position is only informative here; a backend
		// without one leads too.
		pos, _ := s.binlogPos(cctx)
		return s.app.MarkLeading(cctx, epoch, pos)
	}
	info, err := rowlog.Check(cctx, s.db)
	if err != nil {
		return err
	}
	if err := s.app.MarkLeading(cctx, epoch, info.GTIDBinlogPos); err != nil {
		return err
	}
	s.mu.Lock()
	s.start = info.GTIDBinlogPos
	s.mu.Unlock()
	return nil
}

// StartCapture starts tailing the backend's binlog from the position
// MarkLeading read, appending to the ReplLog.
func (s *mysqlStore) StartCapture(ctx context.Context) (<-chan error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		return nil, errors.New("a capture is already running")
	}
	if s.statement {
		return s.startStatementLog(ctx), nil
	}
	c, err := rowlog.New(rowlog.Config{
		Addr: s.cfg.Backend, User: s.cfg.BackendUser, Password: s.cfg.BackendPassword, TLS: s.sec.tlsSet().Backend,
		Start: s.start, LastOffset: s.rl.Last().Offset, IgnoreDomains: ddlDomains,
	}, appender{s}, s.log.With().Str("component", "capture").Logger())
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run := &captureRun{c: c, cancel: cancel, done: make(chan struct{})}
	failed := make(chan error, 1)
	go func() {
		run.err = c.Run(cctx)
		close(run.done)
		if cctx.Err() == nil {
			failed <- run.err
		}
	}()
	s.run = run
	s.offsets.cur.Store(c)
	s.log.Info().Str("start", s.start).Uint64("last_offset", s.rl.Last().Offset).Msg("capturing the backend's binlog")
	return failed, nil
}

// startStatementLog gives the front end the ReplLog to log its statements
// to, and watches for a statement log that breaks. s.mu is held.
func (s *mysqlStore) startStatementLog(ctx context.Context) <-chan error {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run := &captureRun{cancel: cancel, done: make(chan struct{})}
	failed := make(chan error, 1)
	s.srv.SetAppender(appender{s})
	go func() {
		defer close(run.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
				if err := s.srv.StatementLogErr(); err != nil {
					run.err = err
					failed <- err
					return
				}
			}
		}
	}()
	s.run = run
	s.log.Info().Uint64("last_offset", s.rl.Last().Offset).Msg("logging statements")
	return failed
}

// appender is the ReplLog as the capture (row mode) and the front end
// (statement mode) append to it.
type appender struct{ s *mysqlStore }

// Next is the epoch and offset the next entry gets (statement mode
// records them with the transaction).
func (a appender) Next() (epoch, offset uint64) { return a.s.rl.Next() }

func (a appender) Append(_ context.Context, payload []byte) (uint64, error) {
	off, err := a.s.rl.Append(payload)
	if err == nil {
		a.s.logged.Add(1)
	}
	return off, err
}

// AppendBuffered is Append for the row capture, which flushes after each
// burst of transactions (rowlog.BufferedAppender).
func (a appender) AppendBuffered(_ context.Context, payload []byte) (uint64, error) {
	off, err := a.s.rl.AppendBuffered(payload)
	if err == nil {
		a.s.logged.Add(1)
	}
	return off, err
}

// Flush writes out and lets commit what AppendBuffered appended.
func (a appender) Flush() error { return a.s.rl.Flush() }

// waitCaptured waits until c has processed everything in the backend's
// binlog as of the call.
func (s *mysqlStore) waitCaptured(ctx context.Context, run *captureRun) error {
	want, err := s.binlogPos(ctx)
	for err != nil {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
		want, err = s.binlogPos(ctx)
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		ahead, err := rowlog.Ahead(want, run.c.Position(), ddlDomains)
		if err != nil {
			return err
		}
		if !ahead {
			return nil
		}
		select {
		case <-run.done:
			// It may have got there just before it stopped.
			if ahead, _ := rowlog.Ahead(want, run.c.Position(), ddlDomains); !ahead {
				return nil
			}
			return fmt.Errorf("capture stopped at %s before the binlog's %s: %w", run.c.Position(), want, run.err)
		case <-ctx.Done():
			return fmt.Errorf("capture at %s, binlog at %s: %w", run.c.Position(), want, ctx.Err())
		case <-t.C:
		}
	}
}

// StopCapture waits until the capture has logged everything the backend
// committed, then stops it. Holds still waiting on it get an error
// (their client gets UNCOMMITTED).
func (s *mysqlStore) StopCapture(ctx context.Context) error {
	s.mu.Lock()
	run := s.run
	s.mu.Unlock()
	if run == nil {
		return nil
	}
	if s.statement {
		// The front end appends as it commits: once it is drained,
		// everything it committed is logged, unless its log broke.
		s.srv.SetAppender(nil)
		s.stopCapture(run)
		if err := s.srv.StatementLogErr(); err != nil {
			return fmt.Errorf("statement log: %w", err)
		}
		s.log.Info().Msg("statement log stopped")
		return nil
	}
	err := s.waitCaptured(ctx, run)
	s.stopCapture(run)
	if err == nil {
		s.log.Info().Str("position", run.c.Position()).Msg("capture caught up and stopped")
	}
	return err
}

func (s *mysqlStore) stopCapture(run *captureRun) {
	run.cancel()
	<-run.done
	if run.c != nil {
		s.offsets.cur.CompareAndSwap(run.c, nil)
	}
	s.mu.Lock()
	if s.run == run {
		s.run = nil
	}
	s.mu.Unlock()
}

// SteppedDown records the position; Applier.SetPosition clears the mark.
func (s *mysqlStore) SteppedDown(ctx context.Context, last backlog.Position) error {
	return s.app.SetPosition(ctx, last)
}

// snapshotOptions are a full resync copy's connections and progress log.
func (s *mysqlStore) snapshotOptions(node, target, source string) apply.SnapshotOptions {
	t := s.sec.tlsSet().Backend
	return apply.SnapshotOptions{
		SourceUser: s.cfg.BackendUser, SourcePassword: s.cfg.BackendPassword, SourceTLS: t,
		TargetUser: s.cfg.BackendUser, TargetPassword: s.cfg.BackendPassword, TargetTLS: t,
		Progress: func(st apply.SnapshotStats) {
			s.log.Info().Str("target", target).Str("for", node).Str("source", source).Str("table", st.Table).
				Int("tables", st.Tables).Int("total_tables", st.TotalTables).Int64("rows", st.Rows).
				Int64("bytes", st.Bytes).Float64("rows_per_sec", st.RowsPerSec).Dur("eta", st.ETA).
				Bool("done", st.Done).Msg("full resync copy")
		},
	}
}

// LeaderSnapshot copies this leader's backend into target. New writes are
// paused, the ones executing drain, and the capture is waited for until
// the backlog holds every transaction the backend committed: the backend
// then stands exactly at the backlog's last entry X. The copy opens its
// consistent snapshot at X and lets writes go on at once; the target
// continues from X+1.
func (s *mysqlStore) LeaderSnapshot(ctx context.Context, node, target string) (backlog.Position, error) {
	resume := s.node.gate.pause()
	defer resume()
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout+s.cfg.LeaseTTL)
	defer cancel()
	if err := s.srv.WaitWritesIdle(dctx); err != nil {
		return backlog.Position{}, fmt.Errorf("pause writes for the snapshot: %w", err)
	}
	s.mu.Lock()
	run := s.run
	s.mu.Unlock()
	opts := s.snapshotOptions(node, target, "leader")
	if run != nil && s.statement {
		pos := s.rl.Last()
		opts.Position = &pos
	} else if run != nil {
		if err := s.waitCaptured(dctx, run); err != nil {
			return backlog.Position{}, fmt.Errorf("pause writes for the snapshot: %w", err)
		}
		pos := s.rl.Last()
		opts.Position = &pos
	}
	// Without a capture (the lease won, writes not yet taken) the store
	// stands where its position table says, as a follower's does.
	opts.Snapshotted = func() {
		resume()
		s.log.Info().Dur("paused", time.Since(start)).Msg("snapshot open; writes resumed")
	}
	pos, _, err := apply.CopySnapshot(ctx, s.cfg.Backend, target, opts)
	return pos, err
}

// FollowerSnapshot copies this follower's backend, its applier paused at
// pos, into target; the applier resumes as soon as the snapshot is open.
func (s *mysqlStore) FollowerSnapshot(ctx context.Context, node, target string, pos backlog.Position, resume func()) error {
	opts := s.snapshotOptions(node, target, "follower")
	opts.Position = &pos
	opts.Snapshotted = resume
	_, _, err := apply.CopySnapshot(ctx, s.cfg.Backend, target, opts)
	return err
}

func (s *mysqlStore) Close() error {
	s.mu.Lock()
	run := s.run
	s.mu.Unlock()
	if run != nil {
		if s.statement {
			s.srv.SetAppender(nil)
		}
		s.stopCapture(run)
	}
	s.db.Close()
	return s.app.Close()
}

// The nodeStore parts. The client port is plain TCP: TLS is the MySQL
// protocol's own upgrade, which the front end offers.

func (s *mysqlStore) listen() (net.Listener, error) { return listenTCP(s.cfg.Listen) }

func (s *mysqlStore) serve(ctx context.Context, ln net.Listener) error { return s.srv.Serve(ctx, ln) }

func (s *mysqlStore) attach(g *Group) { s.node.group = g }

func (s *mysqlStore) stats() frontStats { return mysqlFrontStats(s.srv.Stats(), s.logged.Load()) }

func mysqlFrontStats(st *mysql.Stats, logged int64) frontStats {
	return frontStats{
		Commands: st.Queries.Load(), Connections: st.Connections.Load(), Rejected: st.Rejected.Load(),
		WritesLogged: logged, WritesRefused: st.WritesRefused.Load(), Uncommitted: st.Uncommitted.Load(),
		ProtocolErrors: st.ProtocolErrors.Load(),
	}
}

func listenTCP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// captureOffsets is the front end's GTIDOffsets: the current leadership's
// capture, if any.
type captureOffsets struct {
	cur atomic.Pointer[rowlog.Capture]
}

// errNoCapture is a commit whose GTID no capture can place: the node
// stopped leading. The client gets UNCOMMITTED.
var errNoCapture = fmt.Errorf("%w: no binlog capture running", ackpolicy.ErrNotLeader)

func (o *captureOffsets) OffsetOf(ctx context.Context, gtid string) (uint64, error) {
	c := o.cur.Load()
	if c == nil {
		return 0, errNoCapture
	}
	return c.OffsetOf(ctx, gtid)
}
