package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/backlog/wal"
	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/protocols/resp"
)

// Run runs a node of its group with cfg until ctx ends: the client port,
// the replication port, the HTTP endpoints, and the election through NATS
// (an embedded server when REPLICAR_NATS_URL is empty). cfg must have
// passed Validate. A leader asked to stop hands over first.
func Run(ctx context.Context, cfg Config, logger zerolog.Logger) error {
	switch {
	case cfg.Protocol != ProtocolRedis:
		return fmt.Errorf("REPLICAR_PROTOCOL=%s: %w", cfg.Protocol, ErrNotImplemented)
	case cfg.Backend == "":
		return RunRouter(ctx, cfg, logger)
	}
	// The TLS files and the users file are read first: a bad one stops
	// the node before it takes part in anything.
	sec, err := LoadSecurity(cfg)
	if err != nil {
		return err
	}
	policy, err := ackpolicy.Parse(string(cfg.AckPolicy), cfg.Acks, cfg.MinInsync)
	if err != nil {
		return err
	}
	fsync, err := wal.ParseSyncPolicy(string(cfg.Fsync))
	if err != nil {
		return err
	}
	rl, rec, err := OpenReplLog(ctx, ReplLogOptions{
		Policy:       policy,
		GroupSize:    1,
		AckTimeout:   cfg.AckTimeout,
		BacklogBytes: int64(cfg.BacklogBytes),
		DataDir:      cfg.DataDir,
		Fsync:        fsync,
	})
	if err != nil {
		return err
	}
	defer rl.Close()
	if cfg.DataDir != "" {
		ev := logger.Info()
		if !rec.Clean() {
			ev = logger.Warn()
		}
		ev.Str("recovery", rec.String()).Msg("wal recovered")
	}
	// Until the election says otherwise, this node neither leads nor
	// knows who does.
	rl.BecomeFollower()
	if ctx.Err() != nil {
		return nil // asked to stop before anything started
	}

	natsURL := cfg.NATSURL
	if natsURL == "" {
		storeDir := ""
		if cfg.DataDir != "" {
			storeDir = filepath.Join(cfg.DataDir, "nats")
		}
		emb, err := election.StartEmbedded(ctx, election.EmbeddedOptions{Listen: cfg.NATSListen, StoreDir: storeDir,
			ServerName: cfg.NodeID, Logger: logger.With().Str("component", "nats").Logger()})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("embedded nats: %w", err)
		}
		defer emb.Shutdown()
		natsURL = emb.URL()
		logger.Info().Str("url", natsURL).Msg("embedded nats server running")
	}
	el, err := election.NewNATS(ctx, election.Options{URL: natsURL, Group: cfg.Group, TTL: cfg.LeaseTTL,
		Replicas: natsReplicas(natsURL), Name: "replicar-" + cfg.NodeID, Logger: logger,
		NATSOptions: sec.natsOptions(cfg)})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("election: %w", err)
	}
	defer el.Close()

	node := NewRedisNode(rl, cfg, nil)
	node.sec = sec
	rc := resp.Config{
		Listen:            cfg.Listen,
		Backend:           cfg.Backend,
		BackendUser:       cfg.BackendUser,
		BackendPassword:   cfg.BackendPassword,
		User:              cfg.User,
		Password:          cfg.Password,
		MaxClients:        cfg.MaxClients,
		AckTimeoutDegrade: cfg.AckTimeoutMode == AckTimeoutDegrade,
		FailoverWait:      max(cfg.FailoverWait, time.Nanosecond),
		Logger:            logger,
	}
	sec.respTLS(&rc)
	srv := resp.NewServer(rc, node)
	srv.SetRoute(resp.Route{Mode: resp.RouteNone})
	group := NewGroup(cfg, sec, rl, srv, node, el, policy, logger)
	clientLn, err := sec.listen(cfg.Listen)
	if err != nil {
		return err
	}
	// The replication port's TLS, when on, is handshaken by fanout per
	// connection, so that a refused peer is logged with the reason.
	replLn, err := net.Listen("tcp", cfg.ReplListen)
	if err != nil {
		clientLn.Close()
		return fmt.Errorf("replication listen %s: %w", cfg.ReplListen, err)
	}
	sec.logSummary(cfg, logger)

	// The group runs on ctx; the client port and HTTP outlive it, so that
	// a leader can drain its writes and hand over before they close. The
	// first part to fail stops the others.
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	context.AfterFunc(ctx, func() {
		if parent.Err() == nil {
			stopServing()
		}
	})
	var wg sync.WaitGroup
	run := func(name string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil {
				cancel(fmt.Errorf("%s: %w", name, err))
				stopServing()
			}
		})
	}
	run("resp", func() error { return srv.Serve(serveCtx, clientLn) })
	run("group", func() error {
		defer stopServing()
		return group.Run(ctx, replLn)
	})
	run("http", func() error { return serveNodeHTTP(serveCtx, cfg, rl, node, srv, group, el, logger) })
	wg.Wait()
	if parent.Err() != nil {
		return nil // asked to stop
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// natsReplicas is the bucket's replica count: R3 on a NATS cluster (three
// or more servers listed), else R1.
func natsReplicas(url string) int {
	if strings.Count(url, ",") >= 2 {
		return 3
	}
	return 1
}

// RedisNode adapts a ReplLog to what the RESP front end needs.
type RedisNode struct {
	*ReplLog
	cfg Config
	// sec is the node's TLS and accounts (nil: plain).
	sec *Security
	// Repl is the leader's replication, when it serves followers.
	Repl *LeaderReplication
	// group, when the node runs in an elected group, reports its role.
	group *Group
}

// SnapshotInto rebuilds a follower's store from this leader's primary: it
// pauses writes on the ordered writer (reads go on), copies every key with
// its absolute expiry into target, and sets the target's position to the
// backlog's last entry, from which the follower then streams. The pause
// lasts as long as the copy, so a follower is the better source for large
// stores; this is the leader-with-a-short-pause path of DESIGN.md.
func (n *RedisNode) SnapshotInto(ctx context.Context, srv *resp.Server, target string, logger zerolog.Logger) (backlog.Position, error) {
	var pos backlog.Position
	err := srv.Exclusive(ctx, func() error {
		pos = n.Last()
		opts := n.sec.snapshotOptions(n.cfg)
		opts.Position = &pos
		opts.Progress = func(st resp.SnapshotStats) {
			logger.Info().Str("target", target).Int64("keys", st.Keys).Int64("bytes", st.Bytes).
				Float64("keys_per_sec", st.KeysPerSec).Dur("eta", st.ETA).Bool("done", st.Done).Msg("full resync copy")
		}
		_, err := resp.CopySnapshot(ctx, n.backend(), target, opts)
		return err
	})
	if err != nil {
		return backlog.Position{}, fmt.Errorf("snapshot into %s: %w", target, err)
	}
	return pos, nil
}

func (n *RedisNode) backend() string { return n.cfg.Backend }

// NewRedisNode returns the node for cfg over rl.
func NewRedisNode(rl *ReplLog, cfg Config, repl *LeaderReplication) *RedisNode {
	return &RedisNode{ReplLog: rl, cfg: cfg, Repl: repl}
}

// Status reports the node for REPLICAR INFO.
func (n *RedisNode) Status() resp.Status {
	snap := n.Snapshot()
	st := resp.Status{
		Node:         n.cfg.NodeID,
		Group:        n.cfg.Group,
		Protocol:     string(n.cfg.Protocol),
		Role:         "leader",
		State:        "streaming",
		Epoch:        snap.Epoch,
		Leader:       n.cfg.NodeID,
		LeaderAddr:   n.cfg.Listen,
		Offset:       snap.Last,
		Committed:    snap.Committed,
		Applied:      snap.Last,
		BacklogFirst: snap.First,
		BacklogBytes: snap.Bytes,
		BacklogLimit: snap.MaxBytes,
		ISR:          []string{n.cfg.NodeID},
		AckPolicy:    snap.Policy,
	}
	if n.group != nil {
		n.group.fill(&st)
	}
	if repl := n.Repl; repl != nil && st.Role == "leader" {
		ls := repl.Status()
		st.ISR = ls.ISR
		for _, f := range ls.Followers {
			st.Followers = append(st.Followers, resp.FollowerStatus{Node: f.Node, Acked: f.Acked,
				LagEntries: f.LagEntries, LagSeconds: f.LagSeconds, InSync: f.InSync, Connected: f.Connected})
		}
	}
	return st
}
