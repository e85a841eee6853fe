package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/protocols/resp"
)

// RunRouter runs a router: a process with no store (no REPLICAR_BACKEND)
// that takes clients and forwards every command to the group's current
// leader, found through the election. Clients never reconnect on failover;
// during an election their commands wait up to FAILOVER_WAIT.
func RunRouter(ctx context.Context, cfg Config, logger zerolog.Logger) error {
	if cfg.NATSURL == "" {
		return errors.New("a router (no REPLICAR_BACKEND) needs REPLICAR_NATS_URL: it runs no embedded NATS server")
	}
	sec, err := LoadSecurity(cfg)
	if err != nil {
		return err
	}
	el, err := election.NewNATS(ctx, election.Options{URL: cfg.NATSURL, Group: cfg.Group, TTL: cfg.LeaseTTL,
		Replicas: natsReplicas(cfg.NATSURL), Name: "replicar-router-" + cfg.NodeID, Logger: logger,
		NATSOptions: sec.natsOptions(cfg)})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("election: %w", err)
	}
	defer el.Close()
	r := &router{cfg: cfg}
	rc := resp.Config{
		Listen: cfg.Listen, User: cfg.User, Password: cfg.Password, MaxClients: cfg.MaxClients,
		FailoverWait: max(cfg.FailoverWait, time.Nanosecond), Logger: logger,
	}
	// A router has no store: its "backend" is the leader, which it
	// reaches with the peer TLS, as a follower forwards.
	sec.respTLS(&rc)
	rc.BackendTLS = nil
	srv := resp.NewServer(rc, r)
	srv.SetRoute(resp.Route{Mode: resp.RouteNone})
	clientLn, err := sec.listen(cfg.Listen)
	if err != nil {
		return err
	}
	sec.logSummary(cfg, logger)
	watch, err := el.WatchLeader(ctx)
	if err != nil {
		clientLn.Close()
		return fmt.Errorf("watch leader: %w", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	run := func(name string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	run("resp", func() error { return srv.Serve(ctx, clientLn) })
	run("http", func() error { return serveRouterHTTP(ctx, cfg, r, srv, el, logger) })
	wg.Go(func() { publishRouter(ctx, cfg, el, logger) })
	wg.Go(func() {
		for li := range watch {
			r.set(li)
			if li.Held() {
				srv.SetRoute(resp.Route{Mode: resp.RouteForward, Leader: li.Addrs.Client})
			} else {
				srv.SetRoute(resp.Route{Mode: resp.RouteNone})
			}
		}
	})
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// router is a router's core: it logs nothing and admits nothing itself;
// the leader does both.
type router struct {
	cfg    Config
	mu     sync.Mutex
	leader election.LeaderInfo
}

func (r *router) set(li election.LeaderInfo) {
	r.mu.Lock()
	r.leader = li
	r.mu.Unlock()
}

func (r *router) Admit() error                                  { return errRouter }
func (r *router) AdmitRead() error                              { return errRouter }
func (r *router) Append([]byte) (uint64, error)                 { return 0, errRouter }
func (r *router) WaitCommitted(context.Context, uint64) error   { return nil }
func (r *router) WaitReplicas(context.Context, uint64, int) int { return 0 }
func (r *router) WaitReadable(context.Context) error            { return nil }
func (r *router) Status() resp.Status                           { return r.status() }
func (r *router) status() resp.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := resp.Status{Node: r.cfg.NodeID, Group: r.cfg.Group, Protocol: string(r.cfg.Protocol),
		Role: "router", State: StateConnecting, Leader: r.leader.Node, LeaderAddr: r.leader.Addrs.Client,
		Epoch: r.leader.Epoch, AckPolicy: string(r.cfg.AckPolicy)}
	if r.leader.Held() {
		st.State = StateStreaming
	}
	return st
}

// errRouter is a write reaching a router's own core, which cannot happen
// while every write is forwarded.
var errRouter = fmt.Errorf("%w: a router has no store", ackpolicy.ErrNotLeader)
