package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/resp"
)

// This file is the Redis side of a node: the RESP front end's core
// (RedisNode) and the Store the group drives (redisStore). The RESP front
// end logs every write itself, in execution order, so there is no capture.

// RedisNode adapts a ReplLog to what the RESP front end needs.
type RedisNode struct {
	*ReplLog
	cfg Config
	// sec is the node's TLS and accounts (nil: plain).
	sec *Security
	// Repl is the leader's replication, when it serves followers outside
	// an elected group (a static group in tests); in a group the group's
	// own replication is reported.
	Repl *LeaderReplication
	// group, when the node runs in an elected group, reports its role.
	group *Group
}

// NewRedisNode returns the node for cfg over rl.
func NewRedisNode(rl *ReplLog, cfg Config, repl *LeaderReplication) *RedisNode {
	return &RedisNode{ReplLog: rl, cfg: cfg, Repl: repl}
}

// Status reports the node for REPLICAR INFO.
func (n *RedisNode) Status() resp.Status {
	return respStatus(nodeStatus(n.cfg, n.ReplLog, n.group, n.Repl))
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
		_, err := resp.CopySnapshot(ctx, n.cfg.Backend, target, opts)
		return err
	})
	if err != nil {
		return backlog.Position{}, fmt.Errorf("snapshot into %s: %w", target, err)
	}
	return pos, nil
}

// redisStore is the Store of a Redis node.
type redisStore struct {
	cfg  Config
	sec  *Security
	log  zerolog.Logger
	node *RedisNode
	srv  *resp.Server
	// app applies the leader's entries and keeps the store's marks; ping
	// is a connection of its own for the health probe, so that a long
	// apply never makes the backend look down.
	app  *resp.Applier
	ping *resp.Applier
}

// newRedisStore builds the RESP front end over rl.
func newRedisStore(cfg Config, sec *Security, rl *ReplLog, logger zerolog.Logger) *redisStore {
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
	return &redisStore{
		cfg: cfg, sec: sec, log: logger, node: node, srv: srv,
		app:  resp.NewApplier(cfg.Backend, sec.applierOptions(cfg)),
		ping: resp.NewApplier(cfg.Backend, sec.applierOptions(cfg)),
	}
}

func (s *redisStore) SetRoute(r Route) {
	rt := resp.Route{Mode: resp.RouteNone, Leader: r.Leader, LocalReads: r.LocalReads}
	switch r.Mode {
	case RouteLocal:
		rt.Mode = resp.RouteLocal
	case RouteForward:
		rt.Mode = resp.RouteForward
	}
	s.srv.SetRoute(rt)
}

func (s *redisStore) WaitWritesIdle(ctx context.Context) error { return s.srv.WaitWritesIdle(ctx) }

// BackendUp is the ordered writer's view: it finds out on its next write.
func (s *redisStore) BackendUp() bool { return s.srv.BackendUp() }

func (s *redisStore) Ping(ctx context.Context) error {
	_, err := s.ping.Do(ctx, []byte("PING"))
	return err
}

func (s *redisStore) Applier() StoreApplier { return s.app }

// Recover waits for the backend, then looks for __replicar:leading: a
// store marked as leading crashed while it led, so it may hold writes no
// backlog has. Redis cannot tell which, so it always full-resyncs.
func (s *redisStore) Recover(ctx context.Context, _ backlog.Position) (bool, error) {
	for {
		_, err := s.app.Position(ctx)
		if err == nil {
			break
		}
		s.log.Warn().Err(err).Msg("backend not ready; retrying")
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	v, err := s.app.Do(ctx, []byte("GET"), []byte(resp.LeadingKey))
	if err != nil {
		return false, fmt.Errorf("read leading mark: %w", err)
	}
	if v.Kind == resp.Bulk {
		s.log.Warn().Str("epoch", string(v.Str)).Msg("the store was leading when this node stopped")
		return true, nil
	}
	return false, nil
}

func (s *redisStore) MarkLeading(ctx context.Context, epoch uint64) error {
	_, err := s.app.Do(ctx, []byte("SET"), []byte(resp.LeadingKey), []byte(strconv.FormatUint(epoch, 10)))
	return err
}

// StartCapture has nothing to start: the RESP front end logs each write
// itself before it answers.
func (s *redisStore) StartCapture(context.Context) (<-chan error, error) { return nil, nil }

func (s *redisStore) StopCapture(context.Context) error { return nil }

func (s *redisStore) SteppedDown(ctx context.Context, last backlog.Position) error {
	if err := s.app.SetPosition(ctx, last); err != nil {
		return err
	}
	if _, err := s.app.Do(ctx, []byte("DEL"), []byte(resp.LeadingKey)); err != nil {
		s.log.Warn().Err(err).Msg("clear the leading mark")
	}
	return nil
}

// LeaderSnapshot pauses the ordered writer for the whole copy (Redis has
// no consistent snapshot to open and let go).
func (s *redisStore) LeaderSnapshot(ctx context.Context, _, target string) (backlog.Position, error) {
	return s.node.SnapshotInto(ctx, s.srv, target, s.log)
}

func (s *redisStore) FollowerSnapshot(ctx context.Context, node, target string, pos backlog.Position, _ func()) error {
	opts := s.sec.snapshotOptions(s.cfg)
	opts.Position = &pos
	opts.Progress = func(st resp.SnapshotStats) {
		s.log.Info().Str("target", target).Str("for", node).Int64("keys", st.Keys).Int64("bytes", st.Bytes).
			Float64("keys_per_sec", st.KeysPerSec).Dur("eta", st.ETA).Bool("done", st.Done).Msg("full resync copy (from this follower)")
	}
	_, err := resp.CopySnapshot(ctx, s.cfg.Backend, target, opts)
	return err
}

func (s *redisStore) Close() error {
	s.ping.Close()
	return s.app.Close()
}

// The nodeStore parts.

func (s *redisStore) listen() (net.Listener, error) { return s.sec.listen(s.cfg.Listen) }

func (s *redisStore) serve(ctx context.Context, ln net.Listener) error { return s.srv.Serve(ctx, ln) }

func (s *redisStore) attach(g *Group) { s.node.group = g }

func (s *redisStore) stats() frontStats { return respFrontStats(s.srv.Stats()) }

func respFrontStats(st *resp.Stats) frontStats {
	return frontStats{
		Commands: st.Commands.Load(), Connections: st.Connections.Load(), Rejected: st.Rejected.Load(),
		WritesLogged: st.WritesLogged.Load(), WritesRefused: st.WritesRefused.Load(),
		WritesUnknown: st.WritesUnknown.Load(), Uncommitted: st.Uncommitted.Load(),
		ProtocolErrors: st.ProtocolErrors.Load(),
	}
}
