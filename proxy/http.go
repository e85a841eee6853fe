package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/protocols/resp"
)

// Status is the JSON of GET /status, the contract scripts rely on. RESP
// REPLICAR INFO reports the same fields.
type Status struct {
	Node       string           `json:"node"`
	Group      string           `json:"group"`
	Protocol   string           `json:"protocol"`
	Role       string           `json:"role"`
	State      string           `json:"state"`
	Epoch      uint64           `json:"epoch"`
	Leader     string           `json:"leader"`
	LeaderAddr string           `json:"leader_addr"`
	Offset     uint64           `json:"offset"`
	Committed  uint64           `json:"committed"`
	Applied    uint64           `json:"applied"`
	ISR        []string         `json:"isr"`
	Followers  []FollowerStatus `json:"followers"`
	AckPolicy  string           `json:"ack_policy"`
	BackendUp  bool             `json:"backend_up"`
	// Elections counts the elections this node won; Fenced the times it
	// lost its lease while leading; Resyncs the partial and full resyncs
	// it went through as a follower.
	Elections uint64            `json:"elections"`
	Fenced    uint64            `json:"fenced"`
	Resyncs   map[string]uint64 `json:"resyncs"`
}

// FollowerStatus is one follower in /status.
type FollowerStatus struct {
	Node       string  `json:"node"`
	Acked      uint64  `json:"acked"`
	LagEntries uint64  `json:"lag_entries"`
	LagSeconds float64 `json:"lag_seconds"`
	InSync     bool    `json:"in_sync"`
	Connected  bool    `json:"connected"`
}

// StatusFromRESP converts the front end's status to the /status form.
func StatusFromRESP(st resp.Status, backendUp bool) Status {
	out := Status{
		Node: st.Node, Group: st.Group, Protocol: st.Protocol, Role: st.Role, State: st.State,
		Epoch: st.Epoch, Leader: st.Leader, LeaderAddr: st.LeaderAddr, Offset: st.Offset,
		Committed: st.Committed, Applied: st.Applied, ISR: st.ISR, AckPolicy: st.AckPolicy,
		BackendUp: backendUp, Followers: []FollowerStatus{},
	}
	for _, f := range st.Followers {
		out.Followers = append(out.Followers, FollowerStatus{Node: f.Node, Acked: f.Acked,
			LagEntries: f.LagEntries, LagSeconds: f.LagSeconds, InSync: f.InSync, Connected: f.Connected})
	}
	return out
}

// NewHTTPHandler serves /status (JSON), /healthz (the process is alive),
// /readyz (200 when the node can serve its role, else 503) and /metrics
// (Prometheus) from status, which is called on every request.
func NewHTTPHandler(status func() Status) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&statusCollector{status: status})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := status()
		if !ready(st) {
			http.Error(w, fmt.Sprintf("not ready: role %s, state %s, backend up %t", st.Role, st.State, st.BackendUp), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// ready is /readyz's rule: a node serves its role while its backend answers
// and it is streaming (not electing, resyncing or fenced).
func ready(st Status) bool {
	return st.BackendUp && st.State == "streaming" && (st.Role == "leader" || st.Role == "follower")
}

// statusCollector turns the status into replicar_* metrics at scrape time.
type statusCollector struct{ status func() Status }

var (
	descOffset     = prometheus.NewDesc("replicar_offset", "Offset of the last entry in this node's backlog.", nil, nil)
	descCommitted  = prometheus.NewDesc("replicar_committed_offset", "Highest offset committed under the ack policy.", nil, nil)
	descApplied    = prometheus.NewDesc("replicar_applied_offset", "Last entry applied to this node's store.", nil, nil)
	descEpoch      = prometheus.NewDesc("replicar_epoch", "Current leader epoch.", nil, nil)
	descISR        = prometheus.NewDesc("replicar_isr_size", "In-sync replicas, the leader included.", nil, nil)
	descLagSeconds = prometheus.NewDesc("replicar_follower_lag_seconds", "How long the follower has not been caught up.", []string{"follower"}, nil)
	descLagEntries = prometheus.NewDesc("replicar_follower_lag_entries", "Entries the follower has not acknowledged.", []string{"follower"}, nil)
	descBackendUp  = prometheus.NewDesc("replicar_backend_up", "1 when the backend store answers.", nil, nil)
	descElections  = prometheus.NewDesc("replicar_elections_total", "Elections this node won.", nil, nil)
	descFenced     = prometheus.NewDesc("replicar_fenced_total", "Times this node lost its lease while leading and fenced itself.", nil, nil)
	descResyncs    = prometheus.NewDesc("replicar_resyncs_total", "Resyncs this node went through as a follower, by kind.", []string{"kind"}, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOffset, descCommitted, descApplied, descEpoch, descISR, descLagSeconds, descLagEntries, descBackendUp, descElections, descFenced, descResyncs} {
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
	up := 0.0
	if st.BackendUp {
		up = 1
	}
	gauge(descBackendUp, up)
	for _, f := range st.Followers {
		gauge(descLagSeconds, f.LagSeconds, f.Node)
		gauge(descLagEntries, float64(f.LagEntries), f.Node)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descElections, st.Elections)
	counter(descFenced, st.Fenced)
	counter(descResyncs, st.Resyncs["partial"], "partial")
	counter(descResyncs, st.Resyncs["full"], "full")
}

// ServeHTTP runs the HTTP endpoints on addr until ctx ends.
func ServeHTTP(ctx context.Context, addr string, h http.Handler, logger zerolog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	logger.Info().Str("listen", ln.Addr().String()).Msg("http endpoints listening")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http serve: %w", err)
	}
	return nil
}
