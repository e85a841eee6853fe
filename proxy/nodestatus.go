package proxy

import (
	"github.com/replicar/replicar/protocols/mysql"
	"github.com/replicar/replicar/protocols/resp"
)

// A node's status is built once, in the /status form (Status), whatever
// the protocol; REPLICAR INFO and SHOW REPLICAR STATUS get it converted.

// baseStatus is a node's status from its log alone: a static leader with
// no followers, as a node outside an elected group runs.
func baseStatus(cfg Config, rl *ReplLog) Status {
	snap := rl.Snapshot()
	return Status{
		Node:         cfg.NodeID,
		Group:        cfg.Group,
		Protocol:     string(cfg.Protocol),
		Role:         RoleLeader,
		State:        StateStreaming,
		Epoch:        snap.Epoch,
		Leader:       cfg.NodeID,
		LeaderAddr:   cfg.Listen,
		Offset:       snap.Last,
		Committed:    snap.Committed,
		Applied:      snap.Last,
		BacklogFirst: snap.First,
		BacklogBytes: snap.Bytes,
		BacklogLimit: snap.MaxBytes,
		ISR:          []string{cfg.NodeID},
		AckPolicy:    snap.Policy,
		Followers:    []FollowerStatus{},
	}
}

// nodeStatus is the node's status: its log, the group's view of its role
// when it runs in one (g may be nil), and a leader's followers from repl
// (the group's own replication when g is set).
func nodeStatus(cfg Config, rl *ReplLog, g *Group, repl *LeaderReplication) Status {
	st := baseStatus(cfg, rl)
	if g != nil {
		g.fill(&st)
		repl = g.leaderRepl()
	}
	if repl != nil && st.Role == RoleLeader {
		ls := repl.Status()
		st.ISR = ls.ISR
		st.Followers = st.Followers[:0]
		for _, f := range ls.Followers {
			st.Followers = append(st.Followers, FollowerStatus{Node: f.Node, Acked: f.Acked,
				LagEntries: f.LagEntries, LagSeconds: f.LagSeconds, InSync: f.InSync, Connected: f.Connected})
		}
	}
	if st.ISR == nil {
		st.ISR = []string{}
	}
	if st.Followers == nil {
		st.Followers = []FollowerStatus{}
	}
	return st
}

// respStatus is st as REPLICAR INFO reports it.
func respStatus(st Status) resp.Status {
	out := resp.Status{
		Node: st.Node, Group: st.Group, Protocol: st.Protocol, Role: st.Role, State: st.State,
		Epoch: st.Epoch, Leader: st.Leader, LeaderAddr: st.LeaderAddr, Offset: st.Offset,
		Committed: st.Committed, Applied: st.Applied, BacklogFirst: st.BacklogFirst,
		BacklogBytes: st.BacklogBytes, BacklogLimit: st.BacklogLimit, ISR: st.ISR, AckPolicy: st.AckPolicy,
	}
	for _, f := range st.Followers {
		out.Followers = append(out.Followers, resp.FollowerStatus{Node: f.Node, Acked: f.Acked,
			LagEntries: f.LagEntries, LagSeconds: f.LagSeconds, InSync: f.InSync, Connected: f.Connected})
	}
	return out
}

// mysqlStatus is st as SHOW REPLICAR STATUS reports it.
func mysqlStatus(st Status) mysql.Status {
	out := mysql.Status{
		Node: st.Node, Group: st.Group, Protocol: st.Protocol, Role: st.Role, State: st.State,
		Epoch: st.Epoch, Leader: st.Leader, LeaderAddr: st.LeaderAddr, Offset: st.Offset,
		Committed: st.Committed, Applied: st.Applied, BacklogFirst: st.BacklogFirst,
		BacklogBytes: st.BacklogBytes, BacklogLimit: st.BacklogLimit, ISR: st.ISR, AckPolicy: st.AckPolicy,
	}
	for _, f := range st.Followers {
		out.Followers = append(out.Followers, mysql.FollowerStatus{Node: f.Node, Acked: f.Acked,
			LagEntries: f.LagEntries, LagSeconds: f.LagSeconds, InSync: f.InSync, Connected: f.Connected})
	}
	return out
}
