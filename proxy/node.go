package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog/wal"
	"github.com/replicar/replicar/election"
)

// Run runs a node of its group with cfg until ctx ends: the client port,
// the replication port, the HTTP endpoints, and the election through NATS
// (an embedded server when REPLICAR_NATS_URL is empty). cfg must have
// passed Validate. A leader asked to stop hands over first.
func Run(ctx context.Context, cfg Config, logger zerolog.Logger) error {
	switch {
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

	var store nodeStore
	switch cfg.Protocol {
	case ProtocolMySQL:
		ms, err := newMySQLStore(cfg, sec, rl, logger)
		if err != nil {
			return err
		}
		store = ms
	default:
		store = newRedisStore(cfg, sec, rl, logger)
	}
	defer store.Close()
	group := NewGroup(cfg, sec, rl, store, el, policy, logger)
	store.attach(group)
	clientLn, err := store.listen()
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
	run(string(cfg.Protocol), func() error { return store.serve(serveCtx, clientLn) })
	run("group", func() error {
		defer stopServing()
		return group.Run(ctx, replLn)
	})
	run("http", func() error { return serveNodeHTTP(serveCtx, cfg, rl, store, group, el, logger) })
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
