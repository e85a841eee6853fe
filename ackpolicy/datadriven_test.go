package ackpolicy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/replicar/replicar/internal/datadriven"
)

// The files drive one group through time:
//
//	policy name=all acks=1 min=2 size=3   set the policy and group size
//	leader offset=10                      the leader's own offset
//	follower id=n2 applied=8 isr=yes      add or change a follower
//	drop id=n3                            forget a follower
//	commit                                Accept, Commit, and the monotonic Commits
func TestPolicyDataDriven(t *testing.T) {
	var (
		p       Policy
		s       State
		commits *Commits
	)
	datadriven.Run(t, "*.txt", func(t *testing.T, c datadriven.Case) string {
		switch c.Cmd {
		case "policy":
			var err error
			p, err = Parse(c.String("name", ""), c.Int(t, "acks", 1), c.Int(t, "min", 1))
			if err != nil {
				return "error: " + err.Error()
			}
			s = State{GroupSize: c.Int(t, "size", 3)}
			commits = NewCommits(0)
			return p.String()
		case "leader":
			s.Leader = c.Uint(t, "offset", 0)
			return describe(p, s, commits)
		case "follower":
			id := c.String("id", "")
			i := slices.IndexFunc(s.Followers, func(f Follower) bool { return f.ID == id })
			if i < 0 {
				s.Followers = append(s.Followers, Follower{ID: id})
				i = len(s.Followers) - 1
			}
			f := &s.Followers[i]
			f.Applied = c.Uint(t, "applied", f.Applied)
			switch c.String("isr", "") {
			case "yes":
				f.InSync = true
			case "no":
				f.InSync = false
			}
			return describe(p, s, commits)
		case "drop":
			id := c.String("id", "")
			s.Followers = slices.DeleteFunc(s.Followers, func(f Follower) bool { return f.ID == id })
			return describe(p, s, commits)
		case "commit":
			return describe(p, s, commits)
		}
		t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		return ""
	})
}

func describe(p Policy, s State, commits *Commits) string {
	accept := "ok"
	if err := Accept(p, s); err != nil {
		if !errors.Is(err, ErrNoReplicas) {
			accept = "unexpected " + err.Error()
		} else {
			accept = "NOREPLICAS (" + strings.TrimPrefix(err.Error(), ErrNoReplicas.Error()+": ") + ")"
		}
	}
	raw := Commit(p, s)
	var isr []string
	for _, f := range s.Followers {
		if f.InSync {
			isr = append(isr, f.ID)
		}
	}
	return fmt.Sprintf("accept=%s commit=%d committed=%d isr=[%s]", accept, raw, commits.Advance(raw), strings.Join(isr, " "))
}
