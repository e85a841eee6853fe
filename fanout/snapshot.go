package fanout

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/backlog"
)

// SnapshotServer answers the replication port of a node that does not
// lead: it serves SNAPSHOT requests from its own store (a follower is the
// preferred source of a full resync, since the leader has to pause its
// writes for one), and tells a follower that sent HELLO that it is not the
// leader.
type SnapshotServer struct {
	// Group is the replication group; requests naming another are refused.
	Group string
	// Node is this node's id.
	Node string
	// Allow, when set, says whether a node id may ask (see LeaderConfig).
	Allow func(ctx context.Context, node string) error
	// TLS, when set, makes every connection TLS (see LeaderConfig).
	TLS *tls.Config
	// Snapshot copies this node's store into target and returns the
	// position the copy stands at; nil refuses every request.
	Snapshot func(ctx context.Context, node, target string) (backlog.Position, error)
	// HandshakeTimeout bounds the wait for the first frame (default 10s).
	HandshakeTimeout time.Duration
}

// ServeConn serves one connection and closes it.
func (s SnapshotServer) ServeConn(ctx context.Context, conn net.Conn, logger zerolog.Logger) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	l := &Leader{cfg: LeaderConfig{Group: s.Group, Node: s.Node, Allow: s.Allow, Snapshot: s.Snapshot,
		HandshakeTimeout: s.HandshakeTimeout}.withDefaults(), logger: logger}
	conn, err := serverTLS(ctx, conn, s.TLS, l.cfg.HandshakeTimeout)
	if err != nil {
		logger.Warn().Err(err).Str("remote", conn.RemoteAddr().String()).Msg("replication peer refused")
		return
	}
	w := &frameWriter{conn: conn, timeout: l.cfg.WriteTimeout}
	first, err := l.readFirst(conn, newFrameReader(conn))
	if err != nil {
		return
	}
	if first.Type != TypeSnapshot {
		_ = w.write(errorFrame(ErrCodeNotLeader, "%s is not the leader", s.Node))
		return
	}
	l.serveSnapshot(ctx, conn, w, first.Snapshot, logger.With().Str("remote", conn.RemoteAddr().String()).Logger())
}
