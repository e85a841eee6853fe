package proxy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/election"
)

// This file is the node's instrumentation: the metrics /metrics exports
// beyond what /status says, and how a node and a router wire their HTTP
// endpoints to their parts.

// ackLatencyBuckets span 100µs to about 6.5s, past the default ack
// timeout (5s): a reply that waits longer gets UNCOMMITTED anyway.
var ackLatencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// newAckLatency is replicar_ack_latency_seconds for one node. It has the
// policy as a constant label: a node runs one policy, and dashboards
// compare nodes (or groups) by it.
func newAckLatency(p ackpolicy.Policy) prometheus.Histogram {
	level := "none"
	if p.Level() != 0 {
		level = p.Level().String()
	}
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "replicar_ack_latency_seconds",
		Help:        "How long a write's reply waits for its ack policy after the primary replied and the write was logged (successful acknowledgements).",
		ConstLabels: prometheus.Labels{"policy": level},
		Buckets:     ackLatencyBuckets,
	})
}

// AckLatency is the log's replicar_ack_latency_seconds histogram.
func (r *ReplLog) AckLatency() prometheus.Collector { return r.ackLatency }

// LeaseLapsed reports whether the log leads under a lease whose deadline
// has passed: it refuses to acknowledge until the election catches up.
func (r *ReplLog) LeaseLapsed() bool {
	ro := r.role.Load()
	return ro != nil && ro.leader && ro.lease != nil && !ro.lease.Valid()
}

// bytesAfterBatch is how many entries BytesAfter sums per hold of the
// log's lock, so that a scrape never holds up appends for long.
const bytesAfterBatch = 4096

// BytesAfter is the size of the payloads of the retained entries after
// offset: what a follower that acknowledged offset still has to receive.
// Entries behind the backlog's head are not counted (such a follower
// needs a full resync, not bytes).
func (r *ReplLog) BytesAfter(offset uint64) int64 {
	var total int64
	next := offset + 1
	for {
		r.mu.Lock()
		next = max(next, r.log.First())
		last := r.log.Last()
		end := min(last, next+bytesAfterBatch-1)
		for off := next; off <= end; off++ {
			e, err := r.log.Entry(off)
			if err != nil {
				break
			}
			total += int64(len(e.Payload))
		}
		r.mu.Unlock()
		if end >= last {
			return total
		}
		next = end + 1
	}
}

// statusCollector turns the status into replicar_* metrics at scrape time.
type statusCollector struct{ status func() Status }

var (
	descOffset       = prometheus.NewDesc("replicar_offset", "Offset of the last entry in this node's backlog.", nil, nil)
	descCommitted    = prometheus.NewDesc("replicar_committed_offset", "Highest offset committed under the ack policy.", nil, nil)
	descApplied      = prometheus.NewDesc("replicar_applied_offset", "Last entry applied to this node's store.", nil, nil)
	descEpoch        = prometheus.NewDesc("replicar_epoch", "Current leader epoch.", nil, nil)
	descISR          = prometheus.NewDesc("replicar_isr_size", "In-sync replicas, the leader included.", nil, nil)
	descLagSeconds   = prometheus.NewDesc("replicar_follower_lag_seconds", "How long the follower has not been caught up (on the leader).", []string{"follower"}, nil)
	descLagEntries   = prometheus.NewDesc("replicar_follower_lag_entries", "Entries the follower has not acknowledged (on the leader).", []string{"follower"}, nil)
	descLagBytes     = prometheus.NewDesc("replicar_follower_lag_bytes", "Bytes of backlog entries the follower has not acknowledged (on the leader).", []string{"follower"}, nil)
	descConnected    = prometheus.NewDesc("replicar_follower_connected", "1 while the follower has a replication session with the leader.", []string{"follower"}, nil)
	descInSync       = prometheus.NewDesc("replicar_follower_in_sync", "1 while the follower is in the ISR.", []string{"follower"}, nil)
	descBacklogBytes = prometheus.NewDesc("replicar_backlog_bytes", "Retained backlog size as counted for REPLICAR_BACKLOG_BYTES.", nil, nil)
	descBacklogFirst = prometheus.NewDesc("replicar_backlog_first_offset", "Oldest retained backlog entry: a follower behind it needs a full resync.", nil, nil)
	descBackendUp    = prometheus.NewDesc("replicar_backend_up", "1 when the backend store answers.", nil, nil)
	descReady        = prometheus.NewDesc("replicar_ready", "1 when /readyz answers 200.", nil, nil)
	descRole         = prometheus.NewDesc("replicar_role", "1 for the node's current role.", []string{"role"}, nil)
	descElections    = prometheus.NewDesc("replicar_elections_total", "Elections this node won.", nil, nil)
	descFenced       = prometheus.NewDesc("replicar_fenced_total", "Times this node lost its lease while leading and fenced itself.", nil, nil)
	descResyncs      = prometheus.NewDesc("replicar_resyncs_total", "Resyncs this node went through as a follower, by kind: partial (a streaming session from its position) or full (a snapshot copy).", []string{"kind"}, nil)
)

// roles are the values of replicar_role's label, each exported so that a
// role change shows as one series dropping to 0 and another rising to 1.
var roles = []string{RoleLeader, RoleFollower, RoleCandidate, election.RoleRouter}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOffset, descCommitted, descApplied, descEpoch, descISR, descLagSeconds,
		descLagEntries, descLagBytes, descConnected, descInSync, descBacklogBytes, descBacklogFirst, descBackendUp,
		descReady, descRole, descElections, descFenced, descResyncs} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descOffset, float64(st.Offset))
	gauge(descCommitted, float64(st.Committed))
	gauge(descApplied, float64(st.Applied))
	gauge(descEpoch, float64(st.Epoch))
	gauge(descISR, float64(len(st.ISR)))
	gauge(descBacklogBytes, float64(st.BacklogBytes))
	gauge(descBacklogFirst, float64(st.BacklogFirst))
	gauge(descBackendUp, b2f(st.BackendUp))
	gauge(descReady, b2f(st.Ready))
	for _, r := range roles {
		gauge(descRole, b2f(st.Role == r), r)
	}
	for _, f := range st.Followers {
		gauge(descLagSeconds, f.LagSeconds, f.Node)
		gauge(descLagEntries, float64(f.LagEntries), f.Node)
		gauge(descLagBytes, float64(f.LagBytes), f.Node)
		gauge(descConnected, b2f(f.Connected), f.Node)
		gauge(descInSync, b2f(f.InSync), f.Node)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descElections, st.Elections)
	counter(descFenced, st.Fenced)
	counter(descResyncs, st.Resyncs["partial"], "partial")
	counter(descResyncs, st.Resyncs["full"], "full")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// frontCollector exports the client front end's counters and the node's
// error counters, read at scrape time from where they are kept.
type frontCollector struct {
	stats func() frontStats
	// fencedRequests counts requests refused because the lease had
	// lapsed (nil on a router).
	fencedRequests func() uint64
	// backend counts backend errors by kind.
	backend func() map[string]uint64
}

var (
	descCommands      = prometheus.NewDesc("replicar_commands_total", "Client commands received.", nil, nil)
	descConnections   = prometheus.NewDesc("replicar_client_connections_total", "Client connections accepted.", nil, nil)
	descRejected      = prometheus.NewDesc("replicar_client_connections_rejected_total", "Client connections refused past REPLICAR_MAX_CLIENTS.", nil, nil)
	descWritesLogged  = prometheus.NewDesc("replicar_writes_logged_total", "Writes this node executed on its primary and appended to its backlog.", nil, nil)
	descWritesRefused = prometheus.NewDesc("replicar_writes_refused_total", "Writes refused before execution (NOREPLICAS, TRYAGAIN).", nil, nil)
	descUncommitted   = prometheus.NewDesc("replicar_writes_uncommitted_total", "Writes executed but answered UNCOMMITTED: the ack policy was not met.", nil, nil)
	descProtoErrors   = prometheus.NewDesc("replicar_protocol_errors_total", "Client requests that could not be parsed.", nil, nil)
	descFencedReqs    = prometheus.NewDesc("replicar_fenced_requests_total", "Writes and reads refused because the leader's lease had lapsed (fencing).", nil, nil)
	descBackendErrors = prometheus.NewDesc("replicar_backend_errors_total", "Backend store errors by kind: unavailable (the backend went down), write_unknown (a connection failed with a write in flight, or a reply the proxy could not explain), apply (a follower failed to apply entries to its store).", []string{"kind"}, nil)
)

func (c *frontCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCommands, descConnections, descRejected, descWritesLogged, descWritesRefused,
		descUncommitted, descProtoErrors, descFencedReqs, descBackendErrors} {
		ch <- d
	}
}

func (c *frontCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	s := c.stats()
	counter(descCommands, float64(s.Commands))
	counter(descConnections, float64(s.Connections))
	counter(descRejected, float64(s.Rejected))
	counter(descWritesLogged, float64(s.WritesLogged))
	counter(descWritesRefused, float64(s.WritesRefused))
	counter(descUncommitted, float64(s.Uncommitted))
	counter(descProtoErrors, float64(s.ProtocolErrors))
	if c.fencedRequests != nil {
		counter(descFencedReqs, float64(c.fencedRequests()))
	}
	if c.backend != nil {
		for _, kind := range backendErrorKinds {
			counter(descBackendErrors, float64(c.backend()[kind]), kind)
		}
	}
}

// The kinds of replicar_backend_errors_total.
var backendErrorKinds = []string{"unavailable", "write_unknown", "apply"}

// backendWatch says whether the backend is up and counts it going down.
// The front end knows only whether its writer's connection works, and
// finds out when it next writes, which a follower (whose clients are all
// forwarded) never does: so the watch also pings the backend on a
// connection of its own.
type backendWatch struct {
	// up is the front end's view.
	up func() bool
	// probe pings the backend; nil leaves the front end's view alone.
	probe   func(ctx context.Context) error
	probeOK atomic.Bool
	downs   atomic.Uint64
	// was is the last sample; the backend counts as down at start, which
	// is not an error event: it has not been reached yet.
	was bool
}

// backendWatchEvery is the sampling interval: the front end's first
// reconnect backoff is 50ms, so an outage shorter than this is one the
// clients hardly saw. The probe runs every backendProbeEvery.
const (
	backendWatchEvery = 100 * time.Millisecond
	backendProbeEvery = time.Second
)

// Up is the backend's state as /status reports it.
func (b *backendWatch) Up() bool {
	return b.up() && (b.probe == nil || b.probeOK.Load())
}

func (b *backendWatch) run(ctx context.Context) {
	t := time.NewTicker(backendWatchEvery)
	defer t.Stop()
	var probed time.Time
	for {
		if b.probe != nil && time.Since(probed) >= backendProbeEvery {
			pctx, cancel := context.WithTimeout(ctx, backendProbeEvery)
			b.probeOK.Store(b.probe(pctx) == nil)
			cancel()
			probed = time.Now()
		}
		b.observe(b.Up())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observe takes one sample: only a transition from up to down counts.
func (b *backendWatch) observe(up bool) {
	if b.was && !up {
		b.downs.Add(1)
	}
	b.was = up
}

// serveNodeHTTP runs a node's HTTP endpoints until ctx ends.
func serveNodeHTTP(ctx context.Context, cfg Config, rl *ReplLog, store nodeStore, group *Group, el election.Elector, logger zerolog.Logger) error {
	httpAddr := advertised(cfg, cfg.HTTPListen)
	status := func() Status {
		st := group.status()
		st.BackendUp = group.watch.Up()
		st.Elections, st.Fenced, st.Resyncs = group.Counters()
		st.ReadPolicy = string(cfg.ReadPolicy)
		st.LeaseLapsed = st.Role == RoleLeader && rl.LeaseLapsed()
		st.HTTP = httpAddr
		for i, f := range st.Followers {
			st.Followers[i].LagBytes = rl.BytesAfter(f.Acked)
		}
		return st
	}
	opts := HTTPOptions{
		Status:  status,
		Members: el.Members,
		Collectors: []prometheus.Collector{rl.AckLatency(), &frontCollector{
			stats:          store.stats,
			fencedRequests: rl.Fenced,
			backend: func() map[string]uint64 {
				return map[string]uint64{
					"unavailable":   group.watch.downs.Load(),
					"write_unknown": uint64(store.stats().WritesUnknown),
					"apply":         group.tee.applyErrors.Load(),
				}
			},
		}},
	}
	return ServeHTTP(ctx, cfg.HTTPListen, NewHTTPHandlerWith(opts), logger)
}

// serveRouterHTTP runs a router's HTTP endpoints until ctx ends. forwarding
// says whether the front end has a leader to forward to.
func serveRouterHTTP(ctx context.Context, cfg Config, r *router, forwarding func() bool, stats func() frontStats, el election.Elector, logger zerolog.Logger) error {
	httpAddr := advertised(cfg, cfg.HTTPListen)
	opts := HTTPOptions{
		Status: func() Status {
			// A router has no backend: "up" says it can forward.
			st := r.status()
			st.BackendUp = forwarding()
			st.HTTP = httpAddr
			return st
		},
		Members:    el.Members,
		Collectors: []prometheus.Collector{&frontCollector{stats: stats}},
	}
	return ServeHTTP(ctx, cfg.HTTPListen, NewHTTPHandlerWith(opts), logger)
}
