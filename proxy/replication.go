package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/fanout"
	"github.com/replicar/replicar/protocols/resp"
)

// ReplicationConfig is what a leader needs to serve its followers.
type ReplicationConfig struct {
	Group, Node string
	// GroupSize is the number of nodes in the group, the leader included.
	GroupSize int
	// MaxLag is REPLICAR_MAX_LAG: how long a follower may stay behind
	// before it leaves the ISR.
	MaxLag time.Duration
	// Heartbeat is the interval of heartbeats to followers (default 1s).
	Heartbeat time.Duration
	// InitialISR is the ISR a new leader inherits (from the election's
	// store): members keep their place for MAX_LAG while they connect,
	// so the leader does not commit without them before the world knows
	// they left.
	InitialISR []string
	// PublishISR, when set, makes an ISR change visible (a CAS in the
	// election's store) before the leader acts on it. An ISR change that
	// cannot be published is not applied.
	PublishISR func(ctx context.Context, members []string) error
	// Snapshot serves followers' full resync requests (fanout.LeaderConfig).
	Snapshot func(ctx context.Context, node, target string) (backlog.Position, error)
	// TLS, when set, makes the replication port TLS; a config requiring
	// client certificates makes it mutual TLS (fanout.LeaderConfig).
	TLS *tls.Config
	// Allow, when set, refuses a follower whose node id it returns an
	// error for (fanout.LeaderConfig).
	Allow func(ctx context.Context, node string) error
}

// ServeFollowers streams rl's backlog to the followers that connect on ln
// until ctx ends. Their acknowledgements drive rl's commits under its ack
// policy, and the ISR follows the tracker's proposals.
//
// In a static group the ISR change is applied as soon as it is proposed;
// with the NATS election it is first published by CAS, so that a new
// leader is only ever chosen from an ISR that held every committed write.
func ServeFollowers(ctx context.Context, rl *ReplLog, ln net.Listener, cfg ReplicationConfig, logger zerolog.Logger) error {
	return NewLeaderReplication(rl, cfg, logger).Serve(ctx, ln)
}

// LeaderReplication is a leader's side of replication: the fanout leader
// over its ReplLog, and the ISR upkeep.
type LeaderReplication struct {
	rl     *ReplLog
	cfg    ReplicationConfig
	leader *fanout.Leader
	logger zerolog.Logger
}

// NewLeaderReplication prepares to serve rl's backlog to followers.
func NewLeaderReplication(rl *ReplLog, cfg ReplicationConfig, logger zerolog.Logger) *LeaderReplication {
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = 2 * time.Second
	}
	lr := &LeaderReplication{rl: rl, cfg: cfg, logger: logger}
	lr.leader = fanout.NewLeader(fanout.LeaderConfig{
		Group:     cfg.Group,
		Node:      cfg.Node,
		Tracker:   fanout.Config{MaxLag: cfg.MaxLag},
		Heartbeat: cfg.Heartbeat,
		OnAck:     lr.update,
		Snapshot:  cfg.Snapshot,
		TLS:       cfg.TLS,
		Allow:     cfg.Allow,
	}, rl, logger)
	if len(cfg.InitialISR) > 0 {
		now := time.Now()
		lr.leader.WithTracker(func(tr *fanout.Tracker) { tr.SetISR(cfg.InitialISR, now) })
		lr.update()
	}
	return lr
}

func (lr *LeaderReplication) update() { lr.rl.UpdateFollowers(lr.leader.State(lr.cfg.GroupSize)) }

// Status reports the followers, the ISR and the committed offset.
func (lr *LeaderReplication) Status() fanout.LeaderStatus { return lr.leader.Status() }

// Serve streams to the followers that connect on ln until ctx ends.
func (lr *LeaderReplication) Serve(ctx context.Context, ln net.Listener) error {
	rl, cfg, leader, logger, update := lr.rl, lr.cfg, lr.leader, lr.logger, lr.update
	rl.OnAppend(leader.Appended)
	defer rl.OnAppend(nil)

	var wg sync.WaitGroup
	wg.Go(func() {
		// The ISR is re-evaluated a few times per MAX_LAG, so a stalled
		// follower is dropped soon after it crosses the limit.
		t := time.NewTicker(max(cfg.MaxLag/8, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				var change fanout.ISRChange
				var changed bool
				leader.WithTracker(func(tr *fanout.Tracker) { change, changed = tr.Propose(now) })
				if changed && cfg.PublishISR != nil {
					// Published first: commits count the new ISR only
					// once a failover would see it too.
					if err := cfg.PublishISR(ctx, change.Members); err != nil {
						logger.Warn().Err(err).Strs("isr", change.Members).Msg("isr change not published; kept the old one")
						changed = false
					}
				}
				if changed {
					leader.WithTracker(func(tr *fanout.Tracker) { tr.SetISR(change.Members, now) })
					logger.Info().Strs("isr", change.Members).Strs("added", change.Added).Strs("removed", change.Removed).Msg("isr changed")
				}
				update()
			}
		}
	})
	err := leader.Serve(ctx, ln)
	wg.Wait()
	return err
}

// FollowerConfig is what a follower node needs to replicate from a leader.
type FollowerConfig struct {
	Group, Node string
	// LeaderAddr is the leader's replication address.
	LeaderAddr string
	// Backend is this node's own Redis, which the follower applies to.
	Backend                      string
	BackendUser, BackendPassword string
	// BackendTLS, when set, makes the applier's connection TLS.
	BackendTLS *tls.Config
	// TLS, when set, makes the connection to the leader TLS.
	TLS *tls.Config
	// Resync rebuilds the follower's store when the leader cannot stream
	// to it (out of retention, diverged, wiped store) and returns the
	// position the copy stands at. nil means a full resync is an error.
	Resync func(ctx context.Context, target string) (backlog.Position, error)
}

// ErrFullResyncNotWired means the follower needs a full resync, which the
// node cannot run yet: the snapshot needs a source whose apply is paused
// at a known offset.
var ErrFullResyncNotWired = errors.New("full resync needed but not wired yet")

// RunFollower applies the leader's backlog to the follower's own Redis,
// exactly once (the position lives in the store, written with the data),
// reconnecting after failures, until ctx ends. It returns the status it
// keeps via the Follower handle passed to onStart.
func RunFollower(ctx context.Context, cfg FollowerConfig, logger zerolog.Logger, onStart func(*fanout.Follower)) error {
	app := resp.NewApplier(cfg.Backend, resp.ApplierOptions{User: cfg.BackendUser, Password: cfg.BackendPassword, TLS: cfg.BackendTLS})
	defer app.Close()
	f := fanout.NewFollower(fanout.FollowerConfig{Group: cfg.Group, Node: cfg.Node, Addr: cfg.LeaderAddr, TLS: cfg.TLS}, app, logger)
	if onStart != nil {
		onStart(f)
	}
	for {
		err := f.Run(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, fanout.ErrNeedFullResync) && cfg.Resync != nil:
			logger.Warn().Err(err).Msg("full resync")
			pos, rerr := cfg.Resync(ctx, cfg.Backend)
			if rerr != nil {
				return fmt.Errorf("full resync: %w", rerr)
			}
			logger.Info().Stringer("position", pos).Msg("full resync done; streaming from the snapshot")
			continue
		case errors.Is(err, fanout.ErrNeedFullResync):
			return fmt.Errorf("follow %s: %w: %w", cfg.LeaderAddr, ErrFullResyncNotWired, err)
		}
		return err
	}
}
