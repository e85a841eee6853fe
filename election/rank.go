package election

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file is the candidate's decision: pure logic, no I/O, time as input.

// RoleRouter is the Member.Role of a router, a process with no backend. It
// is not a member of the group: it never campaigns and does not count
// toward a majority.
const RoleRouter = "router"

// Candidacy is what a node knows when the lease is free and it considers
// campaigning.
type Candidacy struct {
	// Self is the candidate's own, current record.
	Self Member
	// Members are the member records read from the directory; Self's own
	// record among them is ignored.
	Members []Member
	// ISR is the current ISR. An empty ISR (none written yet) makes every
	// node eligible: a group that never had a leader has nothing to lose.
	ISR ISR
	// Unclean lets a node outside the ISR campaign
	// (REPLICAR_UNCLEAN_ELECTION).
	Unclean bool
	// RequireMajority is set under the quorum ack policy, where a committed
	// entry is only known to be on a majority: the candidate needs fresh
	// records from a majority of GroupSize, none of them ahead of it.
	RequireMajority bool
	// GroupSize is the number of nodes in the group (routers excluded).
	GroupSize int
	// FreshAfter is when the old lease expired, or was released: a record
	// is fresh when it was written after it (Member.When).
	FreshAfter time.Time
	// Step is the back-off per rank, typically TTL/4.
	Step time.Duration
}

// Decision is Decide's answer.
type Decision struct {
	// Campaign says whether the node may campaign, after Backoff.
	Campaign bool
	// Rank is the number of eligible, healthy peers better placed than
	// the candidate; 0 is the best.
	Rank int
	// Backoff is Rank × Step: how long to wait before campaigning, so that
	// the best candidate goes first.
	Backoff time.Duration
	// Reason explains the decision, for logs and /status.
	Reason string
}

// ahead reports whether a's log position is beyond b's: by last epoch,
// then applied offset.
func ahead(a, b Member) bool {
	if a.LastEpoch != b.LastEpoch {
		return a.LastEpoch > b.LastEpoch
	}
	return a.Applied > b.Applied
}

// before orders candidates: furthest log first, then by node id.
func before(a, b Member) bool {
	if ahead(a, b) {
		return true
	}
	if ahead(b, a) {
		return false
	}
	return cmp.Less(a.Node, b.Node)
}

func position(m Member) string {
	return fmt.Sprintf("epoch %d applied %d", m.LastEpoch, m.Applied)
}

// Decide says whether the candidate may campaign and how long it should
// back off first.
//
//   - A node whose backend is unhealthy does not campaign.
//   - Only ISR members campaign, unless Unclean or the ISR is empty.
//   - With RequireMajority, the candidate needs records written after
//     FreshAfter from a majority of GroupSize nodes (its own counts), and
//     none of those may be ahead of it (by last epoch, then applied).
//     Any two majorities share a node, so a committed entry is on one of
//     them, and the candidate has it.
//   - Eligible, healthy peers ahead of the candidate (furthest log first,
//     ties by node id) each add Step to the back-off.
func Decide(c Candidacy) Decision {
	self := c.Self
	if self.Role == RoleRouter {
		return Decision{Reason: "a router does not campaign"}
	}
	if !self.Healthy {
		return Decision{Reason: "backend unhealthy"}
	}
	eligible := func(node string) bool {
		return c.Unclean || len(c.ISR.Members) == 0 || c.ISR.Contains(node)
	}
	if !eligible(self.Node) {
		return Decision{Reason: fmt.Sprintf("not in the ISR [%s] and unclean election is off",
			strings.Join(c.ISR.Members, " "))}
	}

	// One record per peer, the latest written.
	peers := make(map[string]Member)
	for _, m := range c.Members {
		if m.Node == self.Node || m.Node == "" || m.Role == RoleRouter {
			continue
		}
		if p, ok := peers[m.Node]; !ok || m.When().After(p.When()) {
			peers[m.Node] = m
		}
	}

	if c.RequireMajority {
		if c.GroupSize < 1 {
			return Decision{Reason: "group size unknown: cannot judge a majority"}
		}
		fresh := 1 // the candidate's own state is current
		var best *Member
		for _, p := range peers {
			if !p.When().After(c.FreshAfter) {
				continue
			}
			fresh++
			if ahead(p, self) && (best == nil || before(p, *best)) {
				best = &p
			}
		}
		if best != nil {
			return Decision{Reason: fmt.Sprintf("%s is ahead (%s > %s)", best.Node, position(*best), position(self))}
		}
		if need := c.GroupSize/2 + 1; fresh < need {
			return Decision{Reason: fmt.Sprintf("fresh records from %d of %d nodes, a majority needs %d", fresh, c.GroupSize, need)}
		}
	}

	var better []string
	for _, p := range peers {
		if p.Healthy && eligible(p.Node) && before(p, self) {
			better = append(better, p.Node)
		}
	}
	d := Decision{Campaign: true, Rank: len(better), Backoff: time.Duration(len(better)) * c.Step}
	if d.Rank == 0 {
		d.Reason = "best candidate (" + position(self) + ")"
	} else {
		slices.Sort(better)
		d.Reason = fmt.Sprintf("rank %d behind %s: back off %s", d.Rank, strings.Join(better, " "), d.Backoff)
	}
	return d
}
