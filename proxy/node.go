package proxy

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog/wal"
	"github.com/replicar/replicar/protocols/resp"
)

// Run runs a node with cfg until ctx ends. cfg must have passed Validate.
//
// For now a node runs alone: it is its group's leader, with no followers,
// and logs every write to its backlog; replication and the NATS election
// plug in here next.
func Run(ctx context.Context, cfg Config, logger zerolog.Logger) error {
	switch {
	case cfg.Protocol != ProtocolRedis:
		return fmt.Errorf("REPLICAR_PROTOCOL=%s: %w", cfg.Protocol, ErrNotImplemented)
	case cfg.Backend == "":
		return fmt.Errorf("router mode (no REPLICAR_BACKEND): %w", ErrNotImplemented)
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
	node := &RedisNode{ReplLog: rl, cfg: cfg}
	srv := resp.NewServer(resp.Config{
		Listen:            cfg.Listen,
		Backend:           cfg.Backend,
		BackendUser:       cfg.BackendUser,
		BackendPassword:   cfg.BackendPassword,
		User:              cfg.User,
		Password:          cfg.Password,
		MaxClients:        cfg.MaxClients,
		AckTimeoutDegrade: cfg.AckTimeoutMode == AckTimeoutDegrade,
		Logger:            logger,
	}, node)
	return srv.Run(ctx)
}

// RedisNode adapts a ReplLog to what the RESP front end needs.
type RedisNode struct {
	*ReplLog
	cfg Config
}

// Status reports the node for REPLICAR INFO.
func (n *RedisNode) Status() resp.Status {
	snap := n.Snapshot()
	return resp.Status{
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
}
