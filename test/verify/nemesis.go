package verify

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"time"
)

// Fault kinds the nemesis injects.
const (
	// FaultKill is SIGKILL of a node's replicar, then a restart.
	FaultKill = "kill"
	// FaultPause is SIGSTOP of a node's replicar for longer than the
	// lease, then SIGCONT.
	FaultPause = "pause"
	// FaultNATS cuts a node from NATS (the election and the ISR).
	FaultNATS = "partition-nats"
	// FaultRepl cuts the leader from its followers: its replication and
	// client ports (where followers forward) through their proxies.
	FaultRepl = "partition-leader-followers"
	// FaultIsolate cuts a node from NATS and from its peers at once.
	FaultIsolate = "isolate"
)

// Fault is one injected fault.
type Fault struct {
	Kind string
	// Node is the target; Role is what it was when chosen (leader,
	// follower, or unknown when no node answered as leader).
	Node, Role string
	// Mode is how links were cut, for partitions.
	Mode       CutMode
	Start, End time.Time
	// Err is what went wrong injecting or healing it, if anything.
	Err string
}

// Name is the kind and the role of the target, e.g. "kill-leader".
func (f Fault) Name() string { return f.Kind + "-" + f.Role }

func (f Fault) String() string {
	s := fmt.Sprintf("%s..%s %s %s (%s)", wallTime(f.Start), wallTime(f.End), f.Name(), f.Node, f.End.Sub(f.Start).Round(time.Millisecond))
	if f.Mode != "" {
		s += " " + string(f.Mode)
	}
	if f.Err != "" {
		s += " ERROR: " + f.Err
	}
	return s
}

// NemesisConfig shapes the schedule.
type NemesisConfig struct {
	// Seed makes the choices repeatable (the timing is not).
	Seed int64
	// Quiet is the range of pauses between faults; Hold the range of
	// times a fault lasts (a pause lasts at least PauseMin, which should
	// exceed the lease TTL).
	QuietMin, QuietMax, HoldMin, HoldMax, PauseMin time.Duration
}

// Nemesis injects one fault at a time into a cluster, with a quiet gap
// between faults, and keeps a log of them.
type Nemesis struct {
	c   *Topology
	cfg NemesisConfig
	rng *rand.Rand

	mu     sync.Mutex
	faults []Fault
}

// NewNemesis returns a nemesis for c.
func NewNemesis(c *Topology, cfg NemesisConfig) *Nemesis {
	return &Nemesis{c: c, cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed))}
}

// schedule is the deck of faults the nemesis deals from, in a new random
// order each time round, so that a run long enough for one round (nine
// faults) sees every kind, and a shorter one no kind twice. Most aim at the
// leader, the interesting target.
var schedule = []struct {
	kind   string
	leader bool
}{
	{FaultKill, true}, {FaultKill, false},
	{FaultPause, true}, {FaultPause, false},
	{FaultNATS, true}, {FaultNATS, false},
	{FaultRepl, true},
	{FaultIsolate, true}, {FaultIsolate, false},
}

// Run injects faults until ctx ends, then heals everything.
func (n *Nemesis) Run(ctx context.Context) {
	defer n.HealAll()
	var deck []int
	for {
		if !sleepCtx(ctx, n.between(n.cfg.QuietMin, n.cfg.QuietMax)) {
			return
		}
		if len(deck) == 0 {
			deck = n.rng.Perm(len(schedule))
		}
		card := schedule[deck[0]]
		deck = deck[1:]
		n.inject(ctx, card.kind, card.leader)
	}
}

func (n *Nemesis) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int63n(int64(hi-lo)))
}

// sleepCtx sleeps for d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// inject applies one fault, holds it, and heals it. The hold ends early
// when ctx ends; the fault is healed in any case.
func (n *Nemesis) inject(ctx context.Context, kind string, toLeader bool) {
	leader := n.c.Leader()
	target, role := leader, "leader"
	if leader < 0 {
		target, role = n.rng.Intn(len(n.c.Nodes)), "unknown"
	} else if !toLeader {
		target, role = (leader+1+n.rng.Intn(len(n.c.Nodes)-1))%len(n.c.Nodes), "follower"
	}
	f := Fault{Kind: kind, Node: n.c.Nodes[target].Node, Role: role}
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	hold := n.between(n.cfg.HoldMin, n.cfg.HoldMax)
	var links []*Link
	switch kind {
	case FaultNATS:
		links = []*Link{n.c.NATSLinks[target]}
	case FaultRepl:
		links = []*Link{n.c.ReplLinks[target], n.c.ClientLinks[target]}
	case FaultIsolate:
		links = []*Link{n.c.NATSLinks[target], n.c.ReplLinks[target], n.c.ClientLinks[target]}
	}
	if len(links) > 0 {
		f.Mode = Blackhole
		if n.rng.Intn(2) == 0 {
			f.Mode = Refuse
		}
	}
	node := n.c.Nodes[target]
	f.Start = time.Now()
	switch kind {
	case FaultKill:
		note(node.Kill())
		sleepCtx(ctx, hold)
		note(node.Start())
	case FaultPause:
		hold = max(hold, n.cfg.PauseMin)
		note(node.Stop())
		sleepCtx(ctx, hold)
		note(node.Cont())
	default:
		for _, l := range links {
			note(l.Cut(f.Mode))
		}
		sleepCtx(ctx, hold)
		for _, l := range links {
			note(l.Heal())
		}
	}
	f.End = time.Now()
	f.Err = strings.Join(errs, "; ")
	n.mu.Lock()
	n.faults = append(n.faults, f)
	n.mu.Unlock()
}

// HealAll heals every link, resumes every paused node and starts every
// dead one.
func (n *Nemesis) HealAll() {
	for _, l := range n.c.Net.Links() {
		if err := l.Heal(); err != nil {
			n.record(Fault{Kind: "heal", Node: l.Name, Err: err.Error()})
		}
	}
	for _, node := range n.c.Nodes {
		if node.Running() {
			_ = node.Cont()
			continue
		}
		if err := node.Start(); err != nil {
			n.record(Fault{Kind: "heal", Node: node.Node, Err: err.Error()})
		}
	}
}

func (n *Nemesis) record(f Fault) {
	f.Start, f.End = time.Now(), time.Now()
	n.mu.Lock()
	n.faults = append(n.faults, f)
	n.mu.Unlock()
}

// Faults returns the log of faults, in order.
func (n *Nemesis) Faults() []Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Fault(nil), n.faults...)
}

// Counts returns the number of faults by name.
func (n *Nemesis) Counts() map[string]int {
	out := map[string]int{}
	for _, f := range n.Faults() {
		out[f.Name()]++
	}
	return out
}

// formatCounts prints counts as "a=1 b=2" in name order.
func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
