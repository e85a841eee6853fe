package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/fanout"
)

// Group runs one node of a replicated group: it takes part in the
// election, and either leads (acknowledging writes under the ack policy
// while its lease is valid, and streaming its backlog to followers) or
// follows (applying the leader's backlog to its own store, keeping a copy of
// it, and forwarding clients to the leader), moving between the two as the
// lease changes hands. The client port stays open throughout. What is
// specific to the protocol is behind Store.
type Group struct {
	cfg    Config
	sec    *Security
	log    zerolog.Logger
	rl     *ReplLog
	store  Store
	el     election.Elector
	policy ackpolicy.Policy
	addrs  election.Addrs
	app    StoreApplier
	tee    *teeApplier
	// watch samples the backend for /status and metrics.
	watch *backendWatch
	// conns are the replication port's connections, served by the
	// leader role and refused otherwise.
	conns chan net.Conn

	mu        sync.Mutex
	role      string
	state     string
	leader    election.LeaderInfo
	follower  *fanout.Follower
	lrepl     *LeaderReplication
	lease     election.Leadership
	isr       []string
	groupSize int
	// needFull is set when the store may hold writes the backlog lacks
	// (a crash while leading): it must full-resync before it follows.
	needFull bool
	// fenced counts leases lost while leading; partials the streaming
	// sessions of followers that have ended.
	fenced   uint64
	partials uint64
	// lastHolder is the last other node seen holding the lease.
	lastHolder string
	elections  int
	resyncs    map[string]int
}

// Roles and states, as /status reports them.
const (
	RoleLeader    = "leader"
	RoleFollower  = "follower"
	RoleCandidate = "candidate"

	StateStreaming  = "streaming"
	StateResync     = "resync"
	StateConnecting = "connecting"
	StateFenced     = "fenced"
	StateHandover   = "handover"
)

// NewGroup prepares a node of the group; Run starts it. sec is its TLS
// and accounts (nil for plain TCP).
func NewGroup(cfg Config, sec *Security, rl *ReplLog, store Store, el election.Elector, policy ackpolicy.Policy, logger zerolog.Logger) *Group {
	g := &Group{
		cfg: cfg, sec: sec, log: logger, rl: rl, store: store, el: el, policy: policy,
		addrs: election.Addrs{
			Client: advertised(cfg, cfg.Listen),
			Repl:   advertised(cfg, cfg.ReplListen),
			HTTP:   advertised(cfg, cfg.HTTPListen),
		},
		app:     store.Applier(),
		tee:     &teeApplier{rl: rl},
		watch:   &backendWatch{up: store.BackendUp, probe: store.Ping},
		conns:   make(chan net.Conn),
		role:    RoleCandidate,
		state:   StateConnecting,
		resyncs: map[string]int{},
	}
	g.tee.app = g.app
	return g
}

// advertised is addr with its host replaced by REPLICAR_ADVERTISE when set.
func advertised(cfg Config, addr string) string {
	if cfg.Advertise == "" {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(cfg.Advertise, port)
}

// Run takes part in the group until ctx ends. replLn is the replication
// listener. On the way out a leader hands over: it stops taking writes,
// waits for a follower to catch up and releases the lease.
func (g *Group) Run(ctx context.Context, replLn net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// The replication port, the heartbeat, the backend watch and the
	// leader watch outlive ctx until Run returns: a leader hands over
	// after ctx ends.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	wg.Go(func() { g.watch.run(runCtx) })
	if err := g.recover(ctx); err != nil {
		return err
	}
	wg.Go(func() { g.acceptRepl(runCtx, replLn) })
	wg.Go(func() { g.heartbeat(runCtx) })

	watch, err := g.el.WatchLeader(runCtx)
	if err != nil {
		return fmt.Errorf("watch leader: %w", err)
	}
	var cur election.LeaderInfo
	select {
	case cur = <-watch:
	case <-ctx.Done():
		return nil
	}
	for ctx.Err() == nil {
		switch {
		case cur.Held() && cur.Node != g.cfg.NodeID:
			cur = g.follow(ctx, cur, watch)
		case cur.Held():
			// Our own lease from before a restart: its nonce is not
			// ours to renew. Wait for it to expire.
			g.setRole(RoleCandidate, StateConnecting, cur)
			g.store.SetRoute(Route{Mode: RouteNone})
			cur = g.waitChange(ctx, cur, watch, 0)
		default:
			cur = g.campaign(ctx, cur, watch)
		}
	}
	return nil
}

// recover reconciles the backlog with the store at start. The store is the
// truth for a follower: a backlog ahead of or behind it restarts at the
// store's position. A store the Store finds left leading by a crash may
// hold writes no backlog has: it full-resyncs before it follows.
func (g *Group) recover(ctx context.Context) error {
	needFull, err := g.store.Recover(ctx, g.rl.Last())
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if needFull {
		g.needFull = true
		g.log.Warn().Msg("the store was leading when this node stopped: it may hold unlogged writes, and will full-resync before it follows")
	}
	var pos backlog.Position
	for {
		if pos, err = g.app.Position(ctx); err == nil {
			break
		}
		g.log.Warn().Err(err).Msg("backend not ready; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	if last := g.rl.Last(); last != pos {
		g.log.Info().Stringer("backlog", last).Stringer("store", pos).Msg("backlog restarts at the store's position")
		if err := g.rl.ResetTo(pos); err != nil {
			return err
		}
	}
	return nil
}

// acceptRepl hands replication connections to the leader role, and closes
// them while the node does not lead (the follower then asks the election
// who leads).
func (g *Group) acceptRepl(ctx context.Context, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		g.mu.Lock()
		leading := g.lrepl != nil
		g.mu.Unlock()
		if !leading {
			// Not leading: serve full resync copies from this store
			// (a follower is the preferred source), refuse the rest.
			go g.snapshotServer().ServeConn(ctx, conn, g.log)
			continue
		}
		select {
		case g.conns <- conn:
		case <-time.After(time.Second):
			conn.Close()
		case <-ctx.Done():
			conn.Close()
			return
		}
	}
}

// snapshotServer serves SNAPSHOT requests from this node's own store while
// it follows: the apply is paused at a position for the copy, so the copy is
// the store exactly as of that position.
func (g *Group) snapshotServer() fanout.SnapshotServer {
	return fanout.SnapshotServer{Group: g.cfg.Group, Node: g.cfg.NodeID,
		TLS: g.sec.replServerTLS(), Allow: g.allowPeer,
		Snapshot: func(ctx context.Context, node, target string) (backlog.Position, error) {
			g.tee.mu.Lock()
			resume := resumeOnce(g.tee.mu.Unlock)
			defer resume()
			if g.currentFollower() == nil {
				return backlog.Position{}, errors.New("not following: no consistent position to copy at")
			}
			pos, err := g.app.Position(ctx)
			if err != nil {
				return backlog.Position{}, err
			}
			g.log.Info().Str("for", node).Str("target", target).Stringer("position", pos).Msg("full resync copy from this follower")
			return pos, g.store.FollowerSnapshot(ctx, node, target, pos, resume)
		}}
}

// heartbeat publishes this node's member record every TTL/3.
func (g *Group) heartbeat(ctx context.Context) {
	t := time.NewTicker(election.HeartbeatInterval(g.cfg.LeaseTTL))
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, g.cfg.LeaseTTL)
		if err := g.el.Publish(pctx, g.member()); err != nil && ctx.Err() == nil {
			g.log.Warn().Err(err).Msg("publish member record")
		}
		cancel()
		if members, err := g.el.Members(ctx); err == nil {
			g.observeMembers(members)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// member is this node's record in the directory.
func (g *Group) member() election.Member {
	last := g.rl.Last()
	g.mu.Lock()
	defer g.mu.Unlock()
	inISR := false
	for _, n := range g.isr {
		inISR = inISR || n == g.cfg.NodeID
	}
	return election.Member{
		Node: g.cfg.NodeID, Addrs: g.addrs, Role: g.role,
		Epoch: g.rl.Epoch(), LastEpoch: last.Epoch, Applied: last.Offset,
		Healthy: g.store.BackendUp() && !g.needFull, ISRMember: inISR,
	}
}

// observeMembers keeps the group size: the most nodes ever seen at once,
// so that a partition hiding some of them does not shrink the majority.
func (g *Group) observeMembers(members []election.Member) {
	n := 0
	for _, m := range members {
		if m.Role != election.RoleRouter {
			n++
		}
	}
	g.mu.Lock()
	g.groupSize = max(g.groupSize, n, 1)
	g.mu.Unlock()
}

func (g *Group) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.groupSize, len(g.isr), 1)
}

func (g *Group) setRole(role, state string, leader election.LeaderInfo) {
	g.mu.Lock()
	g.role, g.state, g.leader = role, state, leader
	g.mu.Unlock()
}

func (g *Group) setState(state string) {
	g.mu.Lock()
	g.state = state
	g.mu.Unlock()
}

// waitChange waits for the leader key to change from cur, or for d when d
// is above zero, and returns the latest value.
func (g *Group) waitChange(ctx context.Context, cur election.LeaderInfo, watch <-chan election.LeaderInfo, d time.Duration) election.LeaderInfo {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
	case <-timeout:
	case next, ok := <-watch:
		if ok {
			return next
		}
		<-ctx.Done()
	}
	return cur
}

// campaign runs while no node holds the lease: if the election's rules let
// this node stand, it waits its rank's back-off and tries to take the
// lease, and leads if it wins.
func (g *Group) campaign(ctx context.Context, cur election.LeaderInfo, watch <-chan election.LeaderInfo) election.LeaderInfo {
	g.setRole(RoleCandidate, StateConnecting, election.LeaderInfo{})
	g.store.SetRoute(Route{Mode: RouteNone})
	step := max(g.cfg.LeaseTTL/4, 50*time.Millisecond)
	members, err := g.el.Members(ctx)
	if err != nil {
		g.log.Warn().Err(err).Msg("read members")
		return g.waitChange(ctx, cur, watch, step)
	}
	g.observeMembers(members)
	// The node whose lease just ended is dead or deposed: its record,
	// still in the directory until it expires, must not outrank the
	// live candidates and make the best of them back off.
	g.mu.Lock()
	deposed := g.lastHolder
	g.mu.Unlock()
	members = slices.DeleteFunc(members, func(m election.Member) bool { return m.Node == deposed && deposed != g.cfg.NodeID })
	isr, _, err := g.el.ISR(ctx)
	if err != nil {
		g.log.Warn().Err(err).Msg("read isr")
		return g.waitChange(ctx, cur, watch, step)
	}
	self := g.member()
	if g.needFull {
		// Its store may hold writes nobody logged: it cannot be the
		// source of truth unless nobody else can.
		self.Healthy = false
	}
	d := election.Decide(election.Candidacy{
		Self: self, Members: members, ISR: isr, Unclean: g.cfg.UncleanElection,
		RequireMajority: g.policy.Level() == ackpolicy.Quorum, GroupSize: g.size(),
		FreshAfter: cur.Stored, Step: step,
	})
	if !d.Campaign || !self.Healthy {
		g.log.Debug().Str("reason", d.Reason).Bool("healthy", self.Healthy).Msg("not standing")
		return g.waitChange(ctx, cur, watch, step)
	}
	if d.Backoff > 0 {
		if next := g.waitChange(ctx, cur, watch, d.Backoff); next.Held() || ctx.Err() != nil {
			return next
		}
	}
	if g.cfg.UncleanElection && !isr.Contains(g.cfg.NodeID) && len(isr.Members) > 0 {
		g.log.Warn().Strs("isr", isr.Members).Msg("UNCLEAN ELECTION: standing from outside the ISR; acknowledged writes may be lost")
	}
	lease, err := g.el.Campaign(ctx, election.LeaderInfo{Node: g.cfg.NodeID, Addrs: g.addrs})
	if err != nil {
		if !errors.Is(err, election.ErrLeaseHeld) {
			g.log.Warn().Err(err).Msg("campaign")
		}
		return g.waitChange(ctx, cur, watch, step)
	}
	return g.lead(ctx, lease, g.inheritISR(isr, members), watch)
}

// inheritISR is the ISR a new leader starts from: the old one, less the
// nodes that cannot be in sync now (the deposed leader, which must resync
// before it rejoins, and nodes whose member record has expired), plus
// itself. Dropping a member is always safe, since it only narrows who may
// be elected; it is published before anything commits without them.
func (g *Group) inheritISR(isr election.ISR, members []election.Member) election.ISR {
	alive := map[string]bool{}
	for _, m := range members {
		alive[m.Node] = true
	}
	g.mu.Lock()
	deposed := g.lastHolder
	g.mu.Unlock()
	out := election.ISR{Epoch: isr.Epoch, Members: []string{g.cfg.NodeID}}
	for _, n := range isr.Members {
		if n != g.cfg.NodeID && n != deposed && alive[n] {
			out.Members = append(out.Members, n)
		}
	}
	return out
}

// lead serves as leader for as long as the lease holds.
func (g *Group) lead(ctx context.Context, lease election.Leadership, isr election.ISR, watch <-chan election.LeaderInfo) election.LeaderInfo {
	me := election.LeaderInfo{Node: g.cfg.NodeID, Addrs: g.addrs, Epoch: lease.Epoch()}
	g.mu.Lock()
	g.elections++
	g.lease = lease
	g.mu.Unlock()
	g.setRole(RoleLeader, StateConnecting, me)
	log := g.log.With().Uint64("epoch", lease.Epoch()).Logger()
	log.Info().Time("serve_at", lease.ServeAt()).Msg("won the lease")

	initial := isr.Members
	_, isrRev, _ := g.el.ISR(ctx)
	var isrMu sync.Mutex
	publish := func(pctx context.Context, members []string) error {
		if !lease.Valid() {
			return ErrFenced
		}
		isrMu.Lock()
		defer isrMu.Unlock()
		rev, err := g.el.SetISR(pctx, election.ISR{Epoch: lease.Epoch(), Members: members}, isrRev)
		if err != nil {
			// Someone else wrote it (an old leader's late CAS): read
			// it again, and let the next tick retry.
			if _, r, rerr := g.el.ISR(pctx); rerr == nil {
				isrRev = r
			}
			return err
		}
		isrRev = rev
		g.mu.Lock()
		g.isr = append([]string(nil), members...)
		g.mu.Unlock()
		return nil
	}
	lr := NewLeaderReplication(g.rl, ReplicationConfig{
		Group: g.cfg.Group, Node: g.cfg.NodeID, GroupSize: g.size(), MaxLag: g.cfg.MaxLag,
		Heartbeat:  heartbeatEvery(g.cfg),
		InitialISR: dedupe(initial), PublishISR: publish,
		TLS: g.sec.replServerTLS(), Allow: g.allowPeer,
		Snapshot: func(sctx context.Context, node, target string) (backlog.Position, error) {
			log.Info().Str("for", node).Str("target", target).Msg("full resync copy from this leader")
			return g.store.LeaderSnapshot(sctx, node, target)
		},
	}, log)
	if err := publish(ctx, lr.Status().ISR); err != nil {
		log.Warn().Err(err).Msg("publish the initial isr")
	}
	g.mu.Lock()
	g.lrepl = lr
	g.mu.Unlock()

	lctx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := lr.Serve(lctx, &chanListener{conns: g.conns, ctx: lctx}); err != nil && lctx.Err() == nil {
			log.Warn().Err(err).Msg("replication serve")
		}
	}()
	stopReplication := func() {
		stopServing()
		<-served
		g.mu.Lock()
		g.lrepl = nil
		g.mu.Unlock()
	}

	// Wait out the old lease unless it was released. Followers already
	// stream the entries this node holds meanwhile, so they are caught up
	// and in the ISR when it starts to serve.
	if wait := time.Until(lease.ServeAt()); wait > 0 {
		select {
		case <-time.After(wait):
		case <-lease.Lost():
		case <-ctx.Done():
		}
	}
	fail := func(msg string, err error) election.LeaderInfo {
		log.Warn().Err(err).Msg(msg)
		stopReplication()
		g.stepDown(ctx, lease, log)
		return election.LeaderInfo{}
	}
	if !lease.Valid() || ctx.Err() != nil {
		return fail("lease lost before serving", lease.Err())
	}
	if err := g.store.MarkLeading(ctx, lease.Epoch()); err != nil {
		return fail("cannot mark the store as leading; stepping down", err)
	}
	if err := g.rl.BecomeLeader(lease.Epoch(), lease); err != nil {
		return fail("cannot lead", err)
	}
	captureDone, err := g.store.StartCapture(ctx)
	if err != nil {
		return fail("cannot start capturing the backend's writes; stepping down", err)
	}
	// The followers that connected during the wait count at once.
	lr.update()
	g.store.SetRoute(Route{Mode: RouteLocal, LocalReads: g.cfg.ReadPolicy != ReadLeader})
	g.setState(StateStreaming)
	log.Info().Msg("leading")

	health := time.NewTicker(max(g.cfg.LeaseTTL/4, 50*time.Millisecond))
	defer health.Stop()
	unhealthy := 0
	var next election.LeaderInfo
loop:
	for {
		select {
		case <-ctx.Done():
			if g.handover(lease, lr, log) {
				// Only a connected follower can take over at once.
				g.forwardToSuccessor(watch, log)
			}
			break loop
		case <-lease.Lost():
			log.Warn().Err(lease.Err()).Msg("lease lost")
			g.mu.Lock()
			g.fenced++
			g.mu.Unlock()
			g.setState(StateFenced)
			break loop
		case n, ok := <-watch:
			if ok && n.Held() && n.Node != g.cfg.NodeID {
				next = n
				log.Warn().Str("leader", n.Node).Msg("another node holds the lease")
				g.mu.Lock()
				g.fenced++
				g.mu.Unlock()
				g.setState(StateFenced)
				break loop
			}
		case err := <-captureDone:
			log.Warn().Err(err).Msg("the capture of the backend's writes stopped: stepping down")
			rctx, cancel := context.WithTimeout(context.Background(), g.cfg.LeaseTTL)
			_ = lease.Release(rctx)
			cancel()
			break loop
		case <-health.C:
			if g.store.BackendUp() {
				unhealthy = 0
				continue
			}
			if unhealthy++; unhealthy >= 3 {
				log.Warn().Msg("backend fails its health checks: stepping down")
				rctx, cancel := context.WithTimeout(context.Background(), g.cfg.LeaseTTL)
				_ = lease.Release(rctx)
				cancel()
				break loop
			}
		}
	}
	g.stepDown(ctx, lease, log)
	stopReplication()
	return next
}

// handover is a leader's graceful exit: new commands wait for the next
// leader, the writes already admitted execute, are logged and commit (the
// followers catch up), and only then is the lease released, so that the
// caught-up follower takes over at once and no client sees an error.
func (g *Group) handover(lease election.Leadership, lr *LeaderReplication, log zerolog.Logger) (successor bool) {
	g.setState(StateHandover)
	g.store.SetRoute(Route{Mode: RouteNone})
	ctx, cancel := context.WithTimeout(context.Background(), 2*g.cfg.LeaseTTL)
	defer cancel()
	drained := g.store.WaitWritesIdle(ctx) == nil
	// Everything the store committed is logged before the followers are
	// waited for (a capture trails the backend's commits).
	if err := g.store.StopCapture(ctx); err != nil {
		log.Warn().Err(err).Msg("the capture did not catch up with the backend during the handover")
		drained = false
	}
	last := g.rl.Last()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	caughtUp := ""
	connected := false
	for _, f := range lr.Status().Followers {
		connected = connected || f.Connected
	}
wait:
	for connected {
		for _, f := range lr.Status().Followers {
			if f.Connected && f.Acked >= last.Offset {
				caughtUp = f.Node
			}
		}
		if caughtUp != "" && g.rl.Committed() >= last.Offset {
			break
		}
		select {
		case <-ctx.Done():
			break wait
		case <-t.C:
		}
	}
	g.rl.BeginStepDown()
	g.rl.BecomeFollower()
	if drained {
		if err := g.store.SteppedDown(ctx, last); err != nil {
			log.Warn().Err(err).Msg("could not mark the store's position after the handover")
		}
	}
	// A fresh context: the wait above may have used this one up.
	rctx, rcancel := context.WithTimeout(context.Background(), g.cfg.LeaseTTL)
	defer rcancel()
	if err := lease.Release(rctx); err != nil {
		log.Warn().Err(err).Msg("release the lease")
	}
	log.Info().Str("caught_up", caughtUp).Stringer("position", last).Bool("drained", drained).Msg("handed over")
	return connected
}

// forwardToSuccessor keeps a leader that handed over serving its clients
// for a moment, forwarding to the node that took over, so that commands
// that reached it during the handover are answered rather than cut off.
func (g *Group) forwardToSuccessor(watch <-chan election.LeaderInfo, log zerolog.Logger) {
	deadline := time.NewTimer(2 * g.cfg.LeaseTTL)
	defer deadline.Stop()
	for {
		select {
		case <-deadline.C:
			log.Warn().Msg("no successor seen after the handover")
			return
		case next, ok := <-watch:
			if !ok {
				return
			}
			if next.Held() && next.Node != g.cfg.NodeID {
				g.store.SetRoute(Route{Mode: RouteForward, Leader: next.Addrs.Client})
				log.Info().Str("successor", next.Node).Msg("forwarding to the successor while clients move")
				time.Sleep(min(g.cfg.LeaseTTL, time.Second))
				return
			}
		}
	}
}

// stepDown ends a term: nothing new is admitted or acknowledged, the
// writes already executing are logged, and the store is marked at the
// backlog's end, from where it follows (or full-resyncs if the new leader
// lacks part of it).
func (g *Group) stepDown(ctx context.Context, lease election.Leadership, log zerolog.Logger) {
	g.store.SetRoute(Route{Mode: RouteNone})
	if !g.rl.IsLeader() {
		return
	}
	g.rl.BeginStepDown()
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(g.cfg.LeaseTTL, 2*time.Second))
	defer cancel()
	drained := g.store.WaitWritesIdle(bctx) == nil
	captureErr := g.store.StopCapture(bctx)
	g.rl.BecomeFollower()
	needFull := func(why string, err error) {
		g.mu.Lock()
		g.needFull = true
		g.mu.Unlock()
		log.Warn().Err(err).Msg(why + ": full resync before following")
	}
	switch {
	case !drained:
		needFull("could not drain the writer while stepping down", nil)
		return
	case captureErr != nil:
		needFull("the capture did not catch up with the backend while stepping down", captureErr)
		return
	}
	last := g.rl.Last()
	if err := g.store.SteppedDown(bctx, last); err != nil {
		needFull("could not mark the store's position", err)
		return
	}
	log.Info().Stringer("position", last).Msg("stepped down")
}

// follow applies the leader's backlog until the lease changes hands.
func (g *Group) follow(ctx context.Context, leader election.LeaderInfo, watch <-chan election.LeaderInfo) election.LeaderInfo {
	g.setRole(RoleFollower, StateConnecting, leader)
	g.mu.Lock()
	g.lastHolder = leader.Node
	g.mu.Unlock()
	route := func() {
		g.store.SetRoute(Route{Mode: RouteForward, Leader: leader.Addrs.Client, LocalReads: g.localReadsOK()})
	}
	route()
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.runFollower(fctx, leader) }()
	defer func() {
		cancel()
		<-done
		g.mu.Lock()
		if g.follower != nil {
			g.partials += uint64(g.follower.Status().Sessions)
		}
		g.follower = nil
		g.mu.Unlock()
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return leader
		case next, ok := <-watch:
			if !ok {
				<-ctx.Done()
				return leader
			}
			if next.Node == leader.Node && next.Nonce == leader.Nonce {
				leader = next
				continue
			}
			return next
		case err := <-done:
			// The follower gave up (stale leader, failed resync):
			// wait for the election to move on, then try again.
			if ctx.Err() != nil {
				return leader
			}
			g.log.Warn().Err(err).Str("leader", leader.Node).Msg("following stopped")
			next := g.waitChange(ctx, leader, watch, g.cfg.LeaseTTL)
			if next.Node != leader.Node || next.Nonce != leader.Nonce {
				return next
			}
			go func() { done <- g.runFollower(fctx, leader) }()
		case <-tick.C:
			if g.cfg.ReadPolicy == ReadBounded {
				route()
			}
			if f := g.currentFollower(); f != nil && f.Status().Connected {
				g.setState(StateStreaming)
			}
		}
	}
}

func (g *Group) currentFollower() *fanout.Follower {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.follower
}

// localReadsOK applies READ_POLICY on a follower: local always; bounded
// while the store is provably within MAX_READ_LAG of the leader (it has
// applied everything the leader had when a heartbeat no older than that
// was sent).
func (g *Group) localReadsOK() bool {
	switch g.cfg.ReadPolicy {
	case ReadLocal:
		return true
	case ReadBounded:
		f := g.currentFollower()
		if f == nil {
			return false
		}
		st := f.Status()
		return st.Staleness >= 0 && st.Staleness <= g.cfg.MaxReadLag
	}
	return false
}

// runFollower follows leader until ctx ends or following fails.
func (g *Group) runFollower(ctx context.Context, leader election.LeaderInfo) error {
	fcfg := fanout.FollowerConfig{Group: g.cfg.Group, Node: g.cfg.NodeID, Addr: leader.Addrs.Repl,
		ReadTimeout: max(3*g.cfg.LeaseTTL, 3*time.Second), TLS: g.sec.peerTLS()}
	f := fanout.NewFollower(fcfg, g.tee, g.log)
	g.mu.Lock()
	g.follower = f
	need := g.needFull
	g.mu.Unlock()
	for {
		if need {
			if err := g.fullResync(ctx, fcfg); err != nil {
				return err
			}
			need = false
		}
		err := f.Run(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, fanout.ErrNeedFullResync):
			g.log.Warn().Err(err).Msg("full resync needed")
			need = true
		default:
			return err
		}
	}
}

// fullResync has the leader copy a snapshot into this node's store, then
// restarts the backlog at the snapshot's position.
func (g *Group) fullResync(ctx context.Context, fcfg fanout.FollowerConfig) error {
	g.setState(StateResync)
	g.mu.Lock()
	g.resyncs["full"]++
	g.mu.Unlock()
	start := time.Now()
	pos, source, err := g.requestSnapshot(ctx, fcfg)
	if err != nil {
		return fmt.Errorf("full resync: %w", err)
	}
	g.log.Info().Str("source", source).Msg("full resync copied")
	g.app.Close() // the store was flushed under it
	if err := g.rl.ResetTo(pos); err != nil {
		return err
	}
	g.mu.Lock()
	g.needFull = false
	g.mu.Unlock()
	g.setState(StateConnecting)
	g.log.Info().Stringer("position", pos).Dur("took", time.Since(start)).Msg("full resync done; streaming from the snapshot")
	return nil
}

// requestSnapshot has a full resync copied into this node's store: from an
// in-sync follower when one is up (the leader would pause its writes for
// the copy), else from the leader. It returns the position and the source.
func (g *Group) requestSnapshot(ctx context.Context, leaderCfg fanout.FollowerConfig) (backlog.Position, string, error) {
	members, err := g.el.Members(ctx)
	if err == nil {
		isr, _, _ := g.el.ISR(ctx)
		slices.SortFunc(members, func(a, b election.Member) int { return cmp.Compare(b.Applied, a.Applied) })
		for _, m := range members {
			if m.Node == g.cfg.NodeID || m.Role != RoleFollower || !m.Healthy || !isr.Contains(m.Node) || m.Addrs.Repl == "" {
				continue
			}
			cfg := leaderCfg
			cfg.Addr = m.Addrs.Repl
			pos, err := fanout.RequestSnapshot(ctx, cfg, g.cfg.Backend)
			if err == nil {
				return pos, m.Node, nil
			}
			g.log.Warn().Err(err).Str("source", m.Node).Msg("full resync from a follower failed; trying the leader")
			break
		}
	}
	pos, err := fanout.RequestSnapshot(ctx, leaderCfg, g.cfg.Backend)
	return pos, "leader", err
}

// teeApplier applies entries to the store, then keeps them in the node's
// own backlog: store first, so the backlog never claims an entry the
// store lacks.
type teeApplier struct {
	// mu is held while applying; a snapshot served from this store holds
	// it to pause the apply at one position.
	mu  sync.Mutex
	app StoreApplier
	rl  *ReplLog
	// applyErrors counts failed applies to the store, for
	// replicar_backend_errors_total{kind="apply"}.
	applyErrors atomic.Uint64
}

func (t *teeApplier) Position(ctx context.Context) (backlog.Position, error) {
	return t.app.Position(ctx)
}

func (t *teeApplier) Apply(ctx context.Context, entries []backlog.Entry) (backlog.Position, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pos, err := t.app.Apply(ctx, entries)
	applied := entries
	for len(applied) > 0 && applied[len(applied)-1].Offset > pos.Offset {
		applied = applied[:len(applied)-1]
	}
	if err != nil && ctx.Err() == nil {
		t.applyErrors.Add(1)
	}
	if terr := t.rl.AppendReplicated(applied); terr != nil && err == nil {
		err = terr
	}
	return pos, err
}

// heartbeatEvery is the leader's heartbeat interval: 1s, or often enough
// for followers to prove READ_POLICY=bounded's MAX_READ_LAG.
func heartbeatEvery(cfg Config) time.Duration {
	if cfg.MaxReadLag > 0 {
		return min(max(cfg.MaxReadLag/4, 10*time.Millisecond), time.Second)
	}
	return time.Second
}

// chanListener is a net.Listener over the connections acceptRepl hands on,
// so a leader's replication can stop without closing the port.
type chanListener struct {
	conns <-chan net.Conn
	ctx   context.Context
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return nil }
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0:0]
	for _, s := range list {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Counters reports elections won, fencings and resyncs by kind.
func (g *Group) Counters() (elections, fenced uint64, resyncs map[string]uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	partial := g.partials
	if g.follower != nil {
		partial += uint64(g.follower.Status().Sessions)
	}
	return uint64(g.elections), g.fenced, map[string]uint64{"partial": partial, "full": uint64(g.resyncs["full"])}
}

// fill completes a node's status with its role in the group.
func (g *Group) fill(st *Status) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st.Role, st.State = g.role, g.state
	st.Leader, st.LeaderAddr = g.leader.Node, g.leader.Addrs.Client
	if g.role == RoleLeader {
		st.Epoch = g.leader.Epoch
	}
	st.ISR = append([]string(nil), g.isr...)
	if g.follower != nil {
		fs := g.follower.Status()
		st.Applied = fs.Applied.Offset
		st.Committed = max(st.Committed, fs.Committed)
	}
	if g.role != RoleLeader {
		st.Followers = nil
	}
}

// leaderRepl is the replication this node serves as leader, nil otherwise.
func (g *Group) leaderRepl() *LeaderReplication {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lrepl
}

// status is the node's status as /status reports it.
func (g *Group) status() Status {
	return nodeStatus(g.cfg, g.rl, g, nil)
}
