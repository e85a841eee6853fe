package election_test

import (
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/election"
)

func TestDecide(t *testing.T) {
	expired := time.Unix(1000, 0)
	fresh := expired.Add(time.Second)
	stale := expired.Add(-time.Second)
	const step = 250 * time.Millisecond
	// m builds a healthy member record written at when.
	m := func(node string, lastEpoch, applied uint64, when time.Time) election.Member {
		return election.Member{Node: node, LastEpoch: lastEpoch, Applied: applied, Healthy: true, Stored: when}
	}
	isr := func(nodes ...string) election.ISR { return election.ISR{Epoch: 5, Members: nodes} }
	unhealthy := func(mm election.Member) election.Member { mm.Healthy = false; return mm }
	router := func(mm election.Member) election.Member { mm.Role = election.RoleRouter; return mm }

	tests := []struct {
		name       string
		c          election.Candidacy
		campaign   bool
		rank       int
		reasonHave string
	}{
		{
			name:     "best of three",
			c:        election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 90, fresh), m("n3", 5, 80, fresh)}, ISR: isr("n1", "n2", "n3")},
			campaign: true, rank: 0, reasonHave: "best candidate",
		},
		{
			name:     "second of three backs off one step",
			c:        election.Candidacy{Self: m("n2", 5, 90, fresh), Members: []election.Member{m("n1", 5, 100, fresh), m("n3", 5, 80, fresh)}, ISR: isr("n1", "n2", "n3")},
			campaign: true, rank: 1, reasonHave: "behind n1",
		},
		{
			name:     "last of three",
			c:        election.Candidacy{Self: m("n3", 5, 80, fresh), Members: []election.Member{m("n1", 5, 100, fresh), m("n2", 5, 90, fresh)}, ISR: isr("n1", "n2", "n3")},
			campaign: true, rank: 2, reasonHave: "behind n1 n2",
		},
		{
			name:     "tie broken by node id: lower goes first",
			c:        election.Candidacy{Self: m("n2", 5, 100, fresh), Members: []election.Member{m("n1", 5, 100, fresh)}, ISR: isr("n1", "n2")},
			campaign: true, rank: 1,
		},
		{
			name:     "tie broken by node id: self lower",
			c:        election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 100, fresh)}, ISR: isr("n1", "n2")},
			campaign: true, rank: 0,
		},
		{
			name:     "a later epoch beats a higher offset",
			c:        election.Candidacy{Self: m("n1", 4, 500, fresh), Members: []election.Member{m("n2", 5, 100, fresh)}, ISR: isr("n1", "n2")},
			campaign: true, rank: 1,
		},
		{
			name:       "not in the ISR",
			c:          election.Candidacy{Self: m("n3", 5, 200, fresh), Members: []election.Member{m("n1", 5, 100, fresh)}, ISR: isr("n1", "n2")},
			campaign:   false,
			reasonHave: "not in the ISR [n1 n2]",
		},
		{
			name:     "unclean lets a non-ISR node campaign",
			c:        election.Candidacy{Self: m("n3", 5, 50, fresh), Members: []election.Member{m("n1", 5, 100, fresh)}, ISR: isr("n1", "n2"), Unclean: true},
			campaign: true, rank: 1,
		},
		{
			name:     "peers outside the ISR do not outrank",
			c:        election.Candidacy{Self: m("n1", 5, 50, fresh), Members: []election.Member{m("n3", 5, 100, fresh)}, ISR: isr("n1", "n2")},
			campaign: true, rank: 0,
		},
		{
			name:     "unhealthy peers do not outrank",
			c:        election.Candidacy{Self: m("n2", 5, 50, fresh), Members: []election.Member{unhealthy(m("n1", 5, 100, fresh))}, ISR: isr("n1", "n2")},
			campaign: true, rank: 0,
		},
		{
			name:       "unhealthy backend",
			c:          election.Candidacy{Self: unhealthy(m("n1", 5, 100, fresh)), ISR: isr("n1")},
			campaign:   false,
			reasonHave: "unhealthy",
		},
		{
			name:       "a router never campaigns",
			c:          election.Candidacy{Self: router(m("r1", 0, 0, fresh))},
			campaign:   false,
			reasonHave: "router",
		},
		{
			name:     "routers are not peers",
			c:        election.Candidacy{Self: m("n1", 5, 50, fresh), Members: []election.Member{router(m("r1", 9, 900, fresh))}, RequireMajority: true, GroupSize: 1},
			campaign: true, rank: 0,
		},
		{
			name:       "empty ISR: bootstrap, everyone eligible",
			c:          election.Candidacy{Self: m("n2", 0, 0, fresh), Members: []election.Member{m("n1", 0, 0, fresh)}},
			campaign:   true,
			rank:       1,
			reasonHave: "behind n1",
		},
		{
			name:     "own record in the list is ignored",
			c:        election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n1", 5, 1, stale), m("n2", 5, 90, fresh)}, ISR: isr("n1", "n2")},
			campaign: true, rank: 0,
		},
		{
			name:     "duplicate records: the latest counts",
			c:        election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 200, stale), m("n2", 5, 90, fresh)}, ISR: isr("n1", "n2")},
			campaign: true, rank: 0,
		},

		// quorum
		{
			name:     "quorum: fresh majority, nobody ahead",
			c:        election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 90, fresh)}, ISR: isr("n1", "n2", "n3"), RequireMajority: true, GroupSize: 3, FreshAfter: expired},
			campaign: true, rank: 0,
		},
		{
			name:       "quorum: no fresh majority",
			c:          election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 90, stale), m("n3", 5, 80, stale)}, ISR: isr("n1", "n2", "n3"), RequireMajority: true, GroupSize: 3, FreshAfter: expired},
			campaign:   false,
			reasonHave: "fresh records from 1 of 3 nodes, a majority needs 2",
		},
		{
			name:       "quorum: a record written at the expiry is not fresh",
			c:          election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 90, expired)}, ISR: isr("n1", "n2", "n3"), RequireMajority: true, GroupSize: 3, FreshAfter: expired},
			campaign:   false,
			reasonHave: "a majority needs 2",
		},
		{
			name:       "quorum: a fresh peer is ahead",
			c:          election.Candidacy{Self: m("n1", 5, 90, fresh), Members: []election.Member{m("n2", 5, 100, fresh), m("n3", 5, 95, fresh)}, ISR: isr("n1", "n2", "n3"), RequireMajority: true, GroupSize: 3, FreshAfter: expired},
			campaign:   false,
			reasonHave: "n2 is ahead (epoch 5 applied 100 > epoch 5 applied 90)",
		},
		{
			name:       "quorum: a fresh peer outside the ISR ahead still refuses",
			c:          election.Candidacy{Self: m("n1", 5, 90, fresh), Members: []election.Member{m("n3", 5, 100, fresh)}, ISR: isr("n1", "n2"), RequireMajority: true, GroupSize: 3, FreshAfter: expired},
			campaign:   false,
			reasonHave: "n3 is ahead",
		},
		{
			name:     "quorum: a stale record ahead does not refuse, but outranks",
			c:        election.Candidacy{Self: m("n1", 5, 90, fresh), Members: []election.Member{m("n2", 5, 100, stale), m("n3", 5, 80, fresh)}, ISR: isr("n1", "n2", "n3"), RequireMajority: true, GroupSize: 3, FreshAfter: expired},
			campaign: true, rank: 1,
		},
		{
			name:     "quorum: five nodes need three",
			c:        election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 90, fresh), m("n3", 5, 90, fresh), m("n4", 5, 99, stale)}, ISR: isr("n1", "n2", "n3", "n4", "n5"), RequireMajority: true, GroupSize: 5, FreshAfter: expired},
			campaign: true, rank: 0,
		},
		{
			name:       "quorum: five nodes, two fresh is not enough",
			c:          election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{m("n2", 5, 90, fresh), m("n3", 5, 90, stale)}, ISR: isr("n1", "n2", "n3", "n4", "n5"), RequireMajority: true, GroupSize: 5, FreshAfter: expired},
			campaign:   false,
			reasonHave: "2 of 5 nodes, a majority needs 3",
		},
		{
			name:       "quorum: group size unknown",
			c:          election.Candidacy{Self: m("n1", 5, 100, fresh), RequireMajority: true},
			campaign:   false,
			reasonHave: "group size unknown",
		},
		{
			name:     "quorum: single-node group",
			c:        election.Candidacy{Self: m("n1", 5, 100, fresh), ISR: isr("n1"), RequireMajority: true, GroupSize: 1, FreshAfter: expired},
			campaign: true, rank: 0,
		},
		{
			name: "quorum: Updated (publisher clock) is used when Stored is unknown",
			c: election.Candidacy{Self: m("n1", 5, 100, fresh), Members: []election.Member{{Node: "n2", LastEpoch: 5, Applied: 1, Healthy: true, Updated: fresh.UnixMilli()}},
				ISR: isr("n1", "n2", "n3"), RequireMajority: true, GroupSize: 3, FreshAfter: expired},
			campaign: true, rank: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Step = step
			d := election.Decide(tc.c)
			t.Logf("%+v", d)
			if d.Campaign != tc.campaign {
				t.Fatalf("campaign %v, want %v (%s)", d.Campaign, tc.campaign, d.Reason)
			}
			if d.Reason == "" {
				t.Fatal("no reason")
			}
			if tc.reasonHave != "" && !strings.Contains(d.Reason, tc.reasonHave) {
				t.Fatalf("reason %q, want it to contain %q", d.Reason, tc.reasonHave)
			}
			if !d.Campaign {
				if d.Rank != 0 || d.Backoff != 0 {
					t.Fatalf("refusal with rank %d backoff %s", d.Rank, d.Backoff)
				}
				return
			}
			if d.Rank != tc.rank || d.Backoff != time.Duration(tc.rank)*step {
				t.Fatalf("rank %d backoff %s, want rank %d backoff %s", d.Rank, d.Backoff, tc.rank, time.Duration(tc.rank)*step)
			}
		})
	}
}

// Every eligible candidate of a group gets a distinct rank, so their
// campaigns are spread one step apart.
func TestDecideRanksAreDistinct(t *testing.T) {
	at := time.Unix(2000, 0)
	ms := []election.Member{
		{Node: "a", LastEpoch: 3, Applied: 10, Healthy: true, Stored: at},
		{Node: "b", LastEpoch: 4, Applied: 1, Healthy: true, Stored: at},
		{Node: "c", LastEpoch: 4, Applied: 1, Healthy: true, Stored: at},
		{Node: "d", LastEpoch: 4, Applied: 7, Healthy: true, Stored: at},
		{Node: "e", LastEpoch: 2, Applied: 99, Healthy: true, Stored: at},
	}
	want := map[string]int{"d": 0, "b": 1, "c": 2, "a": 3, "e": 4}
	for _, self := range ms {
		d := election.Decide(election.Candidacy{Self: self, Members: ms, Step: time.Second})
		if !d.Campaign || d.Rank != want[self.Node] {
			t.Errorf("%s: %+v, want rank %d", self.Node, d, want[self.Node])
		}
	}
}
