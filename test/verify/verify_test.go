package verify

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// policyRun is one ack policy the suite runs under.
type policyRun struct {
	name   string
	env    map[string]string
	strict bool
}

// policies: all and quorum must lose no acknowledged write and stay
// linearizable; leader is measured and reported.
var policies = []policyRun{
	{"all", map[string]string{"REPLICAR_ACK_POLICY": "all", "REPLICAR_MIN_INSYNC": "2"}, true},
	{"quorum", map[string]string{"REPLICAR_ACK_POLICY": "quorum"}, true},
	{"leader", map[string]string{"REPLICAR_ACK_POLICY": "leader"}, false},
}

// selected filters policies by REPLICAR_VERIFY_POLICIES (comma-separated
// names), all of them when unset.
func selected(t *testing.T) []policyRun {
	want := os.Getenv("REPLICAR_VERIFY_POLICIES")
	if want == "" {
		return policies
	}
	var out []policyRun
	for _, name := range strings.Split(want, ",") {
		found := false
		for _, p := range policies {
			if p.name == strings.TrimSpace(name) {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			t.Fatalf("REPLICAR_VERIFY_POLICIES: unknown policy %q (all, quorum, leader)", name)
		}
	}
	return out
}

func runPolicies(t *testing.T, d time.Duration, checkTimeout time.Duration) {
	s := Seed(t)
	t.Logf("seed %d (REPLICAR_VERIFY_SEED repeats the nemesis' choices), %v per policy", s, d)
	var reports []Report
	for _, p := range selected(t) {
		t.Run(p.name, func(t *testing.T) {
			reports = append(reports, Run(t, Config{Policy: p.env["REPLICAR_ACK_POLICY"], Env: p.env, Strict: p.strict,
				Duration: d, Seed: s, RegClients: 6, AppendClients: 3, CheckTimeout: checkTimeout}))
		})
	}
	for _, r := range reports {
		lost := fmt.Sprint(len(r.Append.Lost))
		if r.Settled != "" {
			lost = "? (no settled leader)"
		}
		t.Logf("%-6s faults %3d  register ops %6d linearizable %-11s  append acked %6d lost %s dup %d phantom %d  stores equal %v",
			r.Policy, r.FaultsTotal, r.RegOps, r.Linearizable, r.Append.Acked, lost,
			len(r.Append.Duplicated), len(r.Append.Phantoms), r.StoresEqual)
	}
}

// TestVerifyShort is the short run in `make test`: about 40 seconds of
// faults per policy (REPLICAR_VERIFY_DURATION overrides it).
func TestVerifyShort(t *testing.T) {
	d := 40 * time.Second
	if s := os.Getenv("REPLICAR_VERIFY_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("REPLICAR_VERIFY_DURATION: %v", err)
		}
	}
	runPolicies(t, d, 2*time.Minute)
}

// TestChaos is the long run (`make chaos DURATION=10m`): each policy for
// REPLICAR_CHAOS_DURATION. It is skipped when that is unset.
func TestChaos(t *testing.T) {
	d, ok := ChaosDuration(t)
	if !ok {
		t.Skip("REPLICAR_CHAOS_DURATION is not set; run `make chaos DURATION=10m`")
	}
	runPolicies(t, d, 10*time.Minute)
}
