package fanout

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/internal/datadriven"
)

// The files drive one leader's Tracker through time. Times are milliseconds
// after an arbitrary base.
//
//	new leader=n1 last=0 maxlag=10000 tolerance=0 entries=4 bytes=1000 res=100
//	append to=5 at=1000            the leader's backlog now ends at 5
//	connect id=n2 acked=0 at=0     a session starts (handshake position)
//	disconnect id=n2 at=0
//	send id=n2 to=5 bytes=100      entries up to 5 written to the session
//	cansend id=n2                  is the in-flight window open?
//	ack id=n2 offset=3 at=0
//	status at=0                    Followers and ISR at that time
//	propose at=0                   the ISR change the rules call for
//	confirm at=0                   SetISR with the last proposal's members
//	setisr members=n1,n2 at=0      SetISR with an explicit list
//	commit policy=all acks=1 min=2 size=3   ackpolicy over State
//
// Events print the status at their time, so each step shows its effect.
func TestTrackerDataDriven(t *testing.T) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var (
		tr       *Tracker
		proposal ISRChange
	)
	at := func(c datadriven.Case) time.Time {
		return base.Add(time.Duration(c.Uint(t, "at", 0)) * time.Millisecond)
	}
	status := func(now time.Time) string {
		var b strings.Builder
		fmt.Fprintf(&b, "last=%d isr=%v", tr.Last(), tr.ISR())
		for _, f := range tr.Followers(now) {
			fmt.Fprintf(&b, "\n%s: acked=%d sent=%d inflight=%dB lag=%d/%.3fs in_sync=%t connected=%t can_send=%t",
				f.Node, f.Acked, f.Sent, f.InflightBytes, f.LagEntries, f.LagSeconds, f.InSync, f.Connected, tr.CanSend(f.Node))
		}
		return b.String()
	}
	result := func(err error, now time.Time) string {
		if err != nil {
			return "error: " + err.Error()
		}
		return status(now)
	}
	datadriven.Run(t, "tracker_*.txt", func(t *testing.T, c datadriven.Case) string {
		switch c.Cmd {
		case "new":
			tr = NewTracker(Config{
				Leader:             c.String("leader", "n1"),
				MaxLag:             time.Duration(c.Uint(t, "maxlag", 10000)) * time.Millisecond,
				CatchUpTolerance:   c.Uint(t, "tolerance", 0),
				MaxInflightEntries: c.Int(t, "entries", 0),
				MaxInflightBytes:   c.Int(t, "bytes", 0),
				LagResolution:      time.Duration(c.Uint(t, "res", 0)) * time.Millisecond,
			}, c.Uint(t, "last", 0), at(c))
			return status(at(c))
		case "append":
			tr.Appended(c.Uint(t, "to", 0), at(c))
			return status(at(c))
		case "connect":
			tr.Connected(c.String("id", ""), c.Uint(t, "acked", 0), at(c))
			return status(at(c))
		case "disconnect":
			return result(tr.Disconnected(c.String("id", ""), at(c)), at(c))
		case "send":
			return result(tr.Sent(c.String("id", ""), c.Uint(t, "to", 0), c.Int(t, "bytes", 0)), at(c))
		case "cansend":
			return fmt.Sprint(tr.CanSend(c.String("id", "")))
		case "ack":
			return result(tr.Ack(c.String("id", ""), c.Uint(t, "offset", 0), at(c)), at(c))
		case "status":
			return status(at(c))
		case "propose":
			p, ok := tr.Propose(at(c))
			if !ok {
				return "no change"
			}
			proposal = p
			return fmt.Sprintf("members=%v added=%v removed=%v", p.Members, p.Added, p.Removed)
		case "confirm":
			tr.SetISR(proposal.Members, at(c))
			return status(at(c))
		case "setisr":
			tr.SetISR(strings.Split(c.String("members", ""), ","), at(c))
			return status(at(c))
		case "commit":
			p, err := ackpolicy.Parse(c.String("policy", ""), c.Int(t, "acks", 1), c.Int(t, "min", 1))
			if err != nil {
				return "error: " + err.Error()
			}
			s := tr.State(c.Int(t, "size", 3))
			accept := "accept"
			if err := ackpolicy.Accept(p, s); err != nil {
				accept = "refuse: " + err.Error()
			}
			return fmt.Sprintf("%v isr_size=%d committed=%d %s", p, s.ISRSize(), ackpolicy.Commit(p, s), accept)
		}
		t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		return ""
	})
}
