package proxy

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/election"
)

// GroupStatus is GET /group and `replicar status --json`: the whole group
// as the node asked can learn it, from the member directory in NATS, each
// member's own /status, and the leader's view of its followers.
type GroupStatus struct {
	Group  string `json:"group"`
	Leader string `json:"leader"`
	Epoch  uint64 `json:"epoch"`
	// Asked is the node that answered.
	Asked string       `json:"asked"`
	Nodes []NodeStatus `json:"nodes"`
	// Error says what could not be read (the member directory), when
	// the view is partial.
	Error string `json:"error,omitempty"`
}

// NodeStatus is one member in a GroupStatus: its own /status when it
// answered (Reachable), else what the directory or the leader knows of it,
// with the leader's view of it added.
type NodeStatus struct {
	Status
	// Reachable says the node answered its /status just now.
	Reachable bool `json:"reachable"`
	// InDirectory says the node's member record is current in NATS (it
	// expires one lease TTL after the node stops publishing).
	InDirectory bool `json:"in_directory"`
	// InISR says the leader counts the node in the ISR.
	InISR bool `json:"in_isr"`
	// Connected, LagEntries, LagBytes and LagSeconds are the leader's
	// view of a follower.
	Connected  bool    `json:"connected"`
	LagEntries uint64  `json:"lag_entries"`
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// Health sums the node up in one word or two: ok, lagging,
	// disconnected, backend down, resync, fenced, handover, election,
	// connecting, not ready, unreachable (in the directory but not answering) or down (known
	// only to the leader).
	Health string `json:"health"`
}

// StateUnknown is the state shown for a member that did not answer.
const StateUnknown = "unknown"

// collectGroup builds the group view: it reads the member directory, asks
// every other member for its /status (concurrently, each bounded by the
// client's timeout) and assembles the answers.
func collectGroup(ctx context.Context, self Status, members func(context.Context) ([]election.Member, error), client *http.Client) GroupStatus {
	var list []election.Member
	var dirErr error
	if members != nil {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		list, dirErr = members(mctx)
		cancel()
	}
	peers := fetchPeers(ctx, client, list, self.Node)
	gs := AssembleGroup(self, list, peers)
	if dirErr != nil {
		gs.Error = fmt.Sprintf("member directory: %v", dirErr)
	}
	return gs
}

// fetchPeers asks each member but self for its /status; the ones that do
// not answer are left out.
func fetchPeers(ctx context.Context, client *http.Client, members []election.Member, self string) map[string]Status {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]Status{}
	for _, m := range members {
		if m.Node == self || m.Addrs.HTTP == "" {
			continue
		}
		wg.Go(func() {
			st, err := fetchStatus(ctx, client, m.Addrs.HTTP)
			if err != nil || st.Node != m.Node {
				return
			}
			mu.Lock()
			out[m.Node] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func fetchStatus(ctx context.Context, client *http.Client, addr string) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return Status{}, err
	}
	res, err := client.Do(req)
	if err != nil {
		return Status{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("GET %s/status: %s", addr, res.Status)
	}
	var st Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("decode %s/status: %w", addr, err)
	}
	return st, nil
}

// AssembleGroup merges what the node knows into one view. It is pure: self
// is the node's own status, members the directory, peers the statuses the
// other members answered with.
func AssembleGroup(self Status, members []election.Member, peers map[string]Status) GroupStatus {
	byNode := map[string]*NodeStatus{}
	get := func(node string) *NodeStatus {
		n, ok := byNode[node]
		if !ok {
			n = &NodeStatus{}
			n.Node = node
			byNode[node] = n
		}
		return n
	}
	me := get(self.Node)
	me.Status, me.Reachable = self, true
	for _, m := range members {
		n := get(m.Node)
		n.InDirectory = true
		if m.Node == self.Node {
			continue
		}
		if st, ok := peers[m.Node]; ok {
			n.Status, n.Reachable = st, true
		} else {
			n.Status = fromMember(m, self)
		}
	}

	lead := leaderOf(self, peers)
	gs := GroupStatus{Group: self.Group, Leader: self.Leader, Epoch: self.Epoch, Asked: self.Node}
	if lead != nil {
		gs.Leader, gs.Epoch = lead.Node, lead.Epoch
		get(lead.Node).InISR = true
		for _, f := range lead.Followers {
			n := get(f.Node)
			if n.Status.Role == "" {
				n.Status = fromFollower(f, *lead)
			}
			n.Connected, n.InISR = f.Connected, f.InSync
			n.LagEntries, n.LagBytes, n.LagSeconds = f.LagEntries, f.LagBytes, f.LagSeconds
		}
		for _, node := range lead.ISR {
			n := get(node)
			if n.Status.Role == "" {
				n.Status = fromFollower(FollowerStatus{Node: node}, *lead)
			}
			n.InISR = true
		}
	} else {
		// No leader answered: each node's own belief is all there is.
		for _, m := range members {
			get(m.Node).InISR = m.ISRMember
		}
		me.InISR = slices.Contains(self.ISR, self.Node)
	}
	for _, n := range byNode {
		n.Health = health(*n, lead != nil, members != nil)
		if n.ISR == nil {
			n.ISR = []string{}
		}
		if n.Followers == nil {
			n.Followers = []FollowerStatus{}
		}
		gs.Nodes = append(gs.Nodes, *n)
	}
	// By name, routers last: rows keep their place across failovers.
	slices.SortFunc(gs.Nodes, func(a, b NodeStatus) int {
		ar, br := a.Role == election.RoleRouter, b.Role == election.RoleRouter
		if ar != br {
			if ar {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Node, b.Node)
	})
	return gs
}

// leaderOf finds the leader's own status among what answered: the node
// itself, the leader it names, or else the answering leader with the
// highest epoch (an old leader may still think it leads).
func leaderOf(self Status, peers map[string]Status) *Status {
	if self.Role == RoleLeader {
		return &self
	}
	if st, ok := peers[self.Leader]; ok && st.Role == RoleLeader {
		return &st
	}
	var best *Status
	for _, st := range peers {
		if st.Role == RoleLeader && (best == nil || st.Epoch > best.Epoch) {
			best = &st
		}
	}
	return best
}

// fromMember is a member that did not answer, as its directory record
// describes it.
func fromMember(m election.Member, self Status) Status {
	return Status{Node: m.Node, Group: self.Group, Protocol: self.Protocol, Role: m.Role, State: StateUnknown,
		Epoch: m.Epoch, Applied: m.Applied, BackendUp: m.Healthy, ISR: []string{}, Followers: []FollowerStatus{},
		HTTP: m.Addrs.HTTP, NotReady: "not answering"}
}

// fromFollower is a follower known only to the leader: its process is
// gone from the directory (or there is none), but the leader tracks it. A
// live replication session is what the leader sees of its state.
func fromFollower(f FollowerStatus, lead Status) Status {
	state := StateUnknown
	if f.Connected {
		state = StateStreaming
	}
	return Status{Node: f.Node, Group: lead.Group, Protocol: lead.Protocol, Role: RoleFollower, State: state,
		Epoch: lead.Epoch, Leader: lead.Node, LeaderAddr: lead.LeaderAddr, Applied: f.Acked,
		ISR: []string{}, Followers: []FollowerStatus{}, NotReady: "not asked"}
}

// health is NodeStatus.Health. Without a directory (a static group, or
// an older node), a node that was not asked is judged by the leader's view.
func health(n NodeStatus, leaderKnown, directory bool) string {
	switch {
	case !n.Reachable && n.InDirectory:
		return "unreachable"
	case !n.Reachable && directory:
		return "down"
	case !n.Reachable && !n.Connected:
		return "disconnected"
	case !n.Reachable && !n.InISR:
		return "lagging"
	case !n.Reachable:
		return "ok"
	case n.Role != election.RoleRouter && !n.BackendUp:
		return "backend down"
	case n.State == StateResync || n.State == StateFenced || n.State == StateHandover:
		return n.State
	case n.Role == RoleCandidate:
		return "election"
	case !n.Ready && n.State == StateConnecting:
		// A new leader waiting out the old lease, or a router or
		// follower that has not found the leader yet.
		return "connecting"
	case !n.Ready:
		return "not ready"
	case n.Role == RoleFollower && leaderKnown && !n.Connected:
		return "disconnected"
	case n.Role == RoleFollower && leaderKnown && !n.InISR:
		return "lagging"
	}
	return "ok"
}

// publishRouter keeps a router's record in the member directory, so that
// every node can list it. Routers never campaign and do not count toward
// a majority (election.RoleRouter). A node id already used by a node is
// left to the node: overwriting its record would hide it from elections.
func publishRouter(ctx context.Context, cfg Config, el election.Elector, logger zerolog.Logger) {
	me := election.Member{Node: cfg.NodeID, Role: election.RoleRouter, Healthy: true,
		Addrs: election.Addrs{Client: advertised(cfg, cfg.Listen), HTTP: advertised(cfg, cfg.HTTPListen)}}
	t := time.NewTicker(election.HeartbeatInterval(cfg.LeaseTTL))
	defer t.Stop()
	warned := false
	for {
		members, err := el.Members(ctx)
		clash := slices.ContainsFunc(members, func(m election.Member) bool {
			return m.Node == cfg.NodeID && m.Role != election.RoleRouter
		})
		switch {
		case err != nil:
		case clash:
			if !warned {
				logger.Error().Str("node_id", cfg.NodeID).Msg("a node of the group uses this router's REPLICAR_NODE_ID: the router stays out of the member directory; give it a unique id")
				warned = true
			}
		default:
			pctx, cancel := context.WithTimeout(ctx, cfg.LeaseTTL)
			if err := el.Publish(pctx, me); err != nil && ctx.Err() == nil {
				logger.Warn().Err(err).Msg("publish router record")
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
