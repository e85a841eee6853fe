package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/protocols/mysql"
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
	front, err := newRouterFront(cfg, sec, r, logger)
	if err != nil {
		return err
	}
	front.setRoute(Route{Mode: RouteNone})
	clientLn, err := front.listen()
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
	run(string(cfg.Protocol), func() error { return front.serve(ctx, clientLn) })
	run("http", func() error {
		return serveRouterHTTP(ctx, cfg, r, func() bool { return front.route().Mode == RouteForward }, front.stats, el, logger)
	})
	wg.Go(func() { publishRouter(ctx, cfg, el, logger) })
	wg.Go(func() {
		for li := range watch {
			r.set(li)
			if li.Held() {
				front.setRoute(Route{Mode: RouteForward, Leader: li.Addrs.Client})
			} else {
				front.setRoute(Route{Mode: RouteNone})
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
func (r *router) AppendBuffered([]byte) (uint64, error)         { return 0, errRouter }
func (r *router) Flush() error                                  { return nil }
func (r *router) WaitCommitted(context.Context, uint64) error   { return nil }
func (r *router) WaitReplicas(context.Context, uint64, int) int { return 0 }
func (r *router) WaitReadable(context.Context) error            { return nil }
func (r *router) Status() resp.Status                           { return respStatus(r.status()) }
func (r *router) status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Node: r.cfg.NodeID, Group: r.cfg.Group, Protocol: string(r.cfg.Protocol),
		Role: election.RoleRouter, State: StateConnecting, Leader: r.leader.Node, LeaderAddr: r.leader.Addrs.Client,
		Epoch: r.leader.Epoch, AckPolicy: string(r.cfg.AckPolicy), ISR: []string{}, Followers: []FollowerStatus{}}
	if r.leader.Held() {
		st.State = StateStreaming
	}
	return st
}

// mysqlRouter is a router's core as the MySQL front end sees it.
type mysqlRouter struct{ *router }

func (r mysqlRouter) Status() mysql.Status { return mysqlStatus(r.status()) }

// routerFront is a router's client port, whatever its protocol.
type routerFront struct {
	listen   func() (net.Listener, error)
	serve    func(ctx context.Context, ln net.Listener) error
	setRoute func(Route)
	route    func() Route
	stats    func() frontStats
}

// newRouterFront builds the router's front end for cfg.Protocol. A router
// has no store: its "backend" is the leader, which it reaches with the
// peer TLS, as a follower forwards.
func newRouterFront(cfg Config, sec *Security, r *router, logger zerolog.Logger) (*routerFront, error) {
	if cfg.Protocol == ProtocolMySQL {
		mc := mysqlFrontConfig(cfg, sec, logger)
		srv, err := mysql.NewServer(mc, mysqlRouter{r}, nil)
		if err != nil {
			return nil, fmt.Errorf("mysql front end: %w", err)
		}
		return &routerFront{
			listen: func() (net.Listener, error) { return listenTCP(cfg.Listen) },
			serve:  srv.Serve,
			setRoute: func(rt Route) {
				mode := mysql.RouteNone
				if rt.Mode == RouteForward {
					mode = mysql.RouteForward
				}
				srv.SetRoute(mysql.Route{Mode: mode, Leader: rt.Leader})
			},
			route: func() Route {
				if srv.Route().Mode == mysql.RouteForward {
					return Route{Mode: RouteForward, Leader: srv.Route().Leader}
				}
				return Route{Mode: RouteNone}
			},
			stats: func() frontStats { return mysqlFrontStats(srv.Stats(), 0) },
		}, nil
	}
	rc := resp.Config{
		Listen: cfg.Listen, User: cfg.User, Password: cfg.Password, MaxClients: cfg.MaxClients,
		FailoverWait: max(cfg.FailoverWait, time.Nanosecond), Logger: logger,
	}
	sec.respTLS(&rc)
	rc.BackendTLS = nil
	srv := resp.NewServer(rc, r)
	return &routerFront{
		listen: func() (net.Listener, error) { return sec.listen(cfg.Listen) },
		serve:  srv.Serve,
		setRoute: func(rt Route) {
			if rt.Mode == RouteForward {
				srv.SetRoute(resp.Route{Mode: resp.RouteForward, Leader: rt.Leader})
				return
			}
			srv.SetRoute(resp.Route{Mode: resp.RouteNone})
		},
		route: func() Route {
			if rt := srv.Route(); rt.Mode == resp.RouteForward {
				return Route{Mode: RouteForward, Leader: rt.Leader}
			}
			return Route{Mode: RouteNone}
		},
		stats: func() frontStats { return respFrontStats(srv.Stats()) },
	}, nil
}

// errRouter is a write reaching a router's own core, which cannot happen
// while every write is forwarded.
var errRouter = fmt.Errorf("%w: a router has no store", ackpolicy.ErrNotLeader)
