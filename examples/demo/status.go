package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// nodeStatus is the part of a node's GET /status that the demo shows. The
// fields are the contract's (DESIGN.md, "Status"); more may be served.
type nodeStatus struct {
	Node      string            `json:"node"`
	Role      string            `json:"role"`
	State     string            `json:"state"`
	Epoch     uint64            `json:"epoch"`
	Leader    string            `json:"leader"`
	Offset    uint64            `json:"offset"`
	Committed uint64            `json:"committed"`
	Applied   uint64            `json:"applied"`
	ISR       []string          `json:"isr"`
	Followers []followerStatus  `json:"followers"`
	Resyncs   map[string]uint64 `json:"resyncs"`
}

type followerStatus struct {
	Node       string  `json:"node"`
	Acked      uint64  `json:"acked"`
	LagEntries uint64  `json:"lag_entries"`
	LagSeconds float64 `json:"lag_seconds"`
	InSync     bool    `json:"in_sync"`
}

// view is one node as the demo last saw it. Up is false when its /status
// did not answer, which is what a killed node looks like.
type view struct {
	ID string
	Up bool
	St nodeStatus
}

// snapshot is every node at one moment, in node order.
type snapshot []view

// fetchStatus reads one node's /status.
func fetchStatus(ctx context.Context, httpAddr string) (nodeStatus, error) {
	var st nodeStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// poll asks every node for its status at once.
func poll(ctx context.Context, nodes []*node) snapshot {
	s := make(snapshot, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			st, err := fetchStatus(cctx, n.HTTP)
			s[i] = view{ID: n.ID, Up: err == nil, St: st}
		})
	}
	wg.Wait()
	return s
}

// leader returns the index of the node that leads and takes writes
// (streaming), or -1. Two such nodes, which the fencing rules out, count
// as none.
func (s snapshot) leader() int {
	found := -1
	for i, v := range s {
		if v.Up && v.St.Role == "leader" && v.St.State == "streaming" {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

// settled reports whether one node leads, every node in want follows it
// and streams, and the leader's ISR holds all of them.
func (s snapshot) settled(want []int) bool {
	l := s.leader()
	if l < 0 {
		return false
	}
	for _, i := range want {
		v := s[i]
		if i == l {
			continue
		}
		if !v.Up || v.St.Role != "follower" || v.St.State != "streaming" || v.St.Leader != s[l].ID {
			return false
		}
		if !slices.Contains(s[l].St.ISR, v.ID) {
			return false
		}
	}
	return true
}

// caughtUp reports whether every live node has applied the leader's last
// entry.
func (s snapshot) caughtUp() bool {
	l := s.leader()
	if l < 0 {
		return false
	}
	for _, v := range s {
		if v.Up && v.St.Applied < s[l].St.Offset {
			return false
		}
	}
	return true
}

// lag is how many entries node i trails the leader by, from the leader's
// own view of its followers when it has one.
func (s snapshot) lag(i int) (uint64, bool) {
	l := s.leader()
	if l < 0 || !s[i].Up || i == l {
		return 0, false
	}
	for _, f := range s[l].St.Followers {
		if f.Node == s[i].ID {
			return f.LagEntries, true
		}
	}
	if s[i].St.Applied >= s[l].St.Offset {
		return 0, true
	}
	return s[l].St.Offset - s[i].St.Applied, true
}

// events says what changed from prev to cur, one line per change: a node
// going down or coming back, a role or state change, and the leader's ISR.
// It is pure, so the tests feed it snapshots.
func events(prev, cur snapshot) []string {
	var out []string
	for i := range cur {
		if i >= len(prev) {
			break
		}
		p, c := prev[i], cur[i]
		switch {
		case p.Up && !c.Up:
			out = append(out, c.ID+" stopped answering")
			continue
		case !p.Up && c.Up:
			out = append(out, fmt.Sprintf("%s is back: %s", c.ID, describe(c.St)))
			continue
		case !c.Up:
			continue
		}
		if p.St.Role != c.St.Role || p.St.State != c.St.State {
			out = append(out, fmt.Sprintf("%s %s → %s", c.ID, roleState(p.St), describe(c.St)))
		}
	}
	pl, cl := prev.leader(), cur.leader()
	if cl >= 0 && pl >= 0 && prev[pl].ID == cur[cl].ID && !slices.Equal(prev[pl].St.ISR, cur[cl].St.ISR) {
		out = append(out, fmt.Sprintf("ISR %s → %s", isrString(prev[pl].St.ISR), isrString(cur[cl].St.ISR)))
	}
	return out
}

func roleState(st nodeStatus) string { return st.Role + " " + st.State }

// describe is a node's role, state and what goes with them.
func describe(st nodeStatus) string {
	switch st.Role {
	case "leader":
		s := fmt.Sprintf("leader %s (epoch %d, offset %d", st.State, st.Epoch, st.Offset)
		if len(st.ISR) > 0 {
			s += ", ISR " + isrString(st.ISR)
		}
		s += ")"
		if st.State == "connecting" {
			// A new leader that did not see the old leader's last renewal
			// streams to its followers but takes no write until one TTL
			// after its own win, when the old leader is surely fenced.
			s += ": waits until the old leader is surely fenced before it takes writes"
		}
		return s
	case "follower":
		if st.Leader != "" {
			return fmt.Sprintf("follower %s of %s (applied %d)", st.State, st.Leader, st.Applied)
		}
		return fmt.Sprintf("follower %s (applied %d)", st.State, st.Applied)
	default:
		return roleState(st)
	}
}

func isrString(isr []string) string {
	if len(isr) == 0 {
		return "[]"
	}
	return "[" + strings.Join(isr, " ") + "]"
}

// cellWidth is the width of a node's column in the live table.
const cellWidth = 28

// tableHeader names the live table's columns for nodes ids.
func tableHeader(ids []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %6s %6s  ", "acked", "unack", "w/s")
	for _, id := range ids {
		fmt.Fprintf(&b, "%-*s ", cellWidth-1, id)
	}
	b.WriteString("ISR")
	return b.String()
}

// tableRow is one line of the live table: the workload's counters, then
// each node's role, offset and lag, then the leader's ISR.
func tableRow(acked, unacked int64, rate float64, s snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8d %6d %6.0f  ", acked, unacked, rate)
	for i := range s {
		fmt.Fprintf(&b, "%-*s ", cellWidth-1, s.cell(i))
	}
	if l := s.leader(); l >= 0 {
		b.WriteString(strings.Join(s[l].St.ISR, ","))
	} else {
		b.WriteString("-")
	}
	return strings.TrimRight(b.String(), " ")
}

// cell is node i in the live table.
func (s snapshot) cell(i int) string {
	v := s[i]
	switch {
	case !v.Up:
		return "down"
	case v.St.Role == "leader" && v.St.State == "streaming":
		return fmt.Sprintf("LEADER e%d @%d", v.St.Epoch, v.St.Offset)
	case v.St.Role == "follower" && v.St.State == "streaming":
		if lag, ok := s.lag(i); ok {
			return fmt.Sprintf("follower @%d lag %d", v.St.Applied, lag)
		}
		return fmt.Sprintf("follower @%d", v.St.Applied)
	default:
		return fmt.Sprintf("%s %s @%d", v.St.Role, v.St.State, v.St.Applied)
	}
}
