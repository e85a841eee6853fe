package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/protocols/resp"
	"github.com/replicar/replicar/proxy/web"
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

	// ReadPolicy is REPLICAR_READ_POLICY: a follower serving reads from
	// its own store needs that store up to be ready.
	ReadPolicy string `json:"read_policy,omitempty"`
	// LeaseLapsed is set on a leader whose lease deadline has passed
	// before the election noticed: it is fenced already.
	LeaseLapsed bool `json:"lease_lapsed,omitempty"`
	// BacklogFirst, BacklogBytes and BacklogLimit describe the retained
	// backlog: a follower behind BacklogFirst needs a full resync.
	BacklogFirst uint64 `json:"backlog_first"`
	BacklogBytes int64  `json:"backlog_bytes"`
	BacklogLimit int64  `json:"backlog_limit"`
	// Ready is what /readyz answers, and NotReady why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// HTTP is the address this node's endpoints are advertised at.
	HTTP string `json:"http,omitempty"`
}

// FollowerStatus is one follower in /status.
type FollowerStatus struct {
	Node       string  `json:"node"`
	Acked      uint64  `json:"acked"`
	LagEntries uint64  `json:"lag_entries"`
	LagSeconds float64 `json:"lag_seconds"`
	InSync     bool    `json:"in_sync"`
	Connected  bool    `json:"connected"`
	// LagBytes is the size of the backlog entries the follower has not
	// acknowledged (0 when the leader does not know it).
	LagBytes int64 `json:"lag_bytes"`
}

// StatusFromRESP converts the front end's status to the /status form.
func StatusFromRESP(st resp.Status, backendUp bool) Status {
	out := Status{
		Node: st.Node, Group: st.Group, Protocol: st.Protocol, Role: st.Role, State: st.State,
		Epoch: st.Epoch, Leader: st.Leader, LeaderAddr: st.LeaderAddr, Offset: st.Offset,
		Committed: st.Committed, Applied: st.Applied, ISR: st.ISR, AckPolicy: st.AckPolicy,
		BackendUp: backendUp, Followers: []FollowerStatus{},
		BacklogFirst: st.BacklogFirst, BacklogBytes: st.BacklogBytes, BacklogLimit: st.BacklogLimit,
	}
	if out.ISR == nil {
		out.ISR = []string{}
	}
	for _, f := range st.Followers {
		out.Followers = append(out.Followers, FollowerStatus{Node: f.Node, Acked: f.Acked,
			LagEntries: f.LagEntries, LagSeconds: f.LagSeconds, InSync: f.InSync, Connected: f.Connected})
	}
	out.Ready, out.NotReady = Readiness(out)
	return out
}

// HTTPOptions is what the HTTP endpoints serve.
type HTTPOptions struct {
	// Status is the node's own status, called on every request.
	Status func() Status
	// Members reads the group's member directory; nil when there is none
	// (a static group), in which case /group shows the node itself and
	// the followers it leads.
	Members func(ctx context.Context) ([]election.Member, error)
	// Collectors are registered on /metrics besides the ones derived from
	// Status (the ack latency histogram, the front end's counters…).
	Collectors []prometheus.Collector
	// PeerTimeout bounds the /status requests /group makes to the other
	// members (default 1s).
	PeerTimeout time.Duration
}

// NewHTTPHandler serves the endpoints for status alone, with no member
// directory and no extra metrics.
func NewHTTPHandler(status func() Status) http.Handler {
	return NewHTTPHandlerWith(HTTPOptions{Status: status})
}

// NewHTTPHandlerWith serves
//
//   - GET /status: this node (JSON, the contract);
//   - GET /group: every member as this node can learn it (GroupStatus);
//   - GET /healthz: 200 while the process serves HTTP (a liveness probe);
//   - GET /readyz: 200 when the node can serve its role, else 503 with why;
//   - GET /metrics: Prometheus;
//   - GET /: the status page, from the binary.
func NewHTTPHandlerWith(o HTTPOptions) http.Handler {
	if o.PeerTimeout <= 0 {
		o.PeerTimeout = time.Second
	}
	status := func() Status {
		st := o.Status()
		st.Ready, st.NotReady = Readiness(st)
		return st
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&statusCollector{status: status})
	for _, c := range o.Collectors {
		reg.MustRegister(c)
	}
	peers := &http.Client{Timeout: o.PeerTimeout}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, status())
	})
	mux.HandleFunc("GET /group", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, collectGroup(r.Context(), status(), o.Members, peers))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		st := status()
		if !st.Ready {
			http.Error(w, "not ready: "+st.NotReady, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready: %s, %s\n", st.Role, st.State)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	assets, err := fs.Sub(web.Files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, assets, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(assets)))
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a failed write is the client's hang-up
}

// Readiness is /readyz's rule (DESIGN.md): a leader is ready while it
// streams under a valid lease with its backend up; a follower while it
// knows its leader and is not resyncing (it streams, or at least forwards
// clients to the leader; with local reads its own store must answer too);
// a router while it knows a leader. Candidates (an election), full
// resyncs, fenced leaders and leaders handing over are not ready. The
// string says why not.
func Readiness(st Status) (bool, string) {
	switch st.Role {
	case RoleLeader:
		switch {
		case st.State != StateStreaming:
			return false, fmt.Sprintf("leader %s", st.State)
		case st.LeaseLapsed:
			return false, "leader lease lapsed (fenced)"
		case !st.BackendUp:
			return false, "leader backend down"
		}
		return true, ""
	case RoleFollower:
		switch {
		case st.State == StateResync:
			return false, "follower in a full resync"
		case st.Leader == "":
			return false, "follower without a leader"
		case !st.BackendUp && st.ReadPolicy != "" && st.ReadPolicy != string(ReadLeader):
			return false, fmt.Sprintf("follower backend down with READ_POLICY=%s", st.ReadPolicy)
		}
		return true, ""
	case election.RoleRouter:
		if st.Leader == "" {
			return false, "router without a leader (election)"
		}
		return true, ""
	case RoleCandidate:
		return false, "candidate (election)"
	}
	return false, fmt.Sprintf("role %q", st.Role)
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
