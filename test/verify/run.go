package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
)

// Config is one verification run.
type Config struct {
	// Policy is REPLICAR_ACK_POLICY; Env adds or overrides variables
	// (REPLICAR_MIN_INSYNC for all).
	Policy string
	Env    map[string]string
	// Strict makes lost acknowledged writes, reordered ones and a
	// non-linearizable register history fail the test. Without it they
	// are measured and reported only (the leader policy promises
	// neither). Duplicates, phantoms, diverged stores and a group that
	// does not settle fail either way.
	Strict bool
	// Duration is how long the clients and the nemesis run.
	Duration time.Duration
	// Seed drives the nemesis and the clients' choices.
	Seed int64
	// RegClients and AppendClients are the number of clients of each
	// workload, spread over the nodes.
	RegClients, AppendClients int
	// CheckTimeout bounds the linearizability check.
	CheckTimeout time.Duration
}

// Report is what a run measured.
type Report struct {
	Policy   string
	Seed     int64
	Duration time.Duration
	// Faults counts the injected faults by name; FaultErrors counts the
	// ones the nemesis could not inject or heal cleanly.
	Faults      map[string]int
	FaultsTotal int
	FaultErrors int
	// Register workload.
	RegOps, RegWritesOK, RegWritesUnknown, RegWritesNotExecuted, RegReadsOK, RegReadsFailed int
	Linearizable                                                                            string
	// Append workload.
	Append AppendReport
	// Errors counts the clients' replies by kind; ErrorExamples has the
	// first error text of each kind.
	Errors        map[string]int
	ErrorExamples map[string]string
	// StoresEqual says whether every store held the same data at the end.
	StoresEqual bool
	// Settled is empty when a leader settled at the end, else the error.
	Settled string
	// Artifacts is where the visualization, timeline and logs went, if
	// anywhere.
	Artifacts string
}

// counter counts by kind under a lock, and keeps the first error text of
// each kind.
type counter struct {
	mu    sync.Mutex
	m     map[string]int
	first map[string]string
}

func (c *counter) add(k string) { c.addErr(k, nil) }

func (c *counter) addErr(k string, err error) {
	c.mu.Lock()
	if c.m == nil {
		c.m, c.first = map[string]int{}, map[string]string{}
	}
	c.m[k]++
	if _, ok := c.first[k]; !ok && err != nil {
		c.first[k] = err.Error()
	}
	c.mu.Unlock()
}

func (c *counter) examples() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.first {
		out[k] = v
	}
	return out
}

// backoff is a client's pause between operations: short while they
// succeed, doubling after each failure up to half a second, as a real
// client would back off. Without it a client fails as fast as it can send
// during a fault, and the writes of unknown outcome pile up.
type backoff struct {
	rng  *rand.Rand
	fail time.Duration
}

func (b *backoff) wait(err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		b.fail = 0
		time.Sleep(time.Duration(b.rng.Intn(8)) * time.Millisecond)
		return
	}
	b.fail = min(max(2*b.fail, 25*time.Millisecond), 500*time.Millisecond)
	time.Sleep(b.fail/2 + time.Duration(b.rng.Int63n(int64(b.fail/2))))
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

const (
	// genLength is how long a generation of register keys is written:
	// fresh keys now and then keep the writes of unknown outcome, which
	// stay open to the end, from piling up on one key.
	genLength  = 2 * time.Second
	keysPerGen = 3
	// opTimeout exceeds FAILOVER_WAIT and ACK_TIMEOUT, so that their
	// replies arrive rather than a client timeout.
	opTimeout = 10 * time.Second
)

// Run starts a three-node group under cfg, runs the workloads with the
// nemesis for cfg.Duration, heals everything, and checks the results. It
// fails t for what cfg says is a failure, and returns the numbers.
func Run(t *testing.T, cfg Config) Report {
	t.Helper()
	env := map[string]string{"REPLICAR_ACK_POLICY": cfg.Policy}
	for k, v := range cfg.Env {
		env[k] = v
	}
	c := StartCluster(t, 3, env)
	if _, err := c.WaitSettled(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	rep := Report{Policy: cfg.Policy, Seed: cfg.Seed, Duration: cfg.Duration}
	var (
		hist    History
		alog    AppendLog
		errs    counter
		regs    counter
		keysMu  sync.Mutex
		keys    = map[string]bool{}
		lists   = map[string]bool{}
		wg      sync.WaitGroup
		start   = time.Now()
		since   = func() int64 { return time.Since(start).Nanoseconds() }
		ctx, cc = context.WithTimeout(context.Background(), cfg.Duration)
	)
	defer cc()
	nem := NewNemesis(&c.Topology, NemesisConfig{Seed: cfg.Seed, QuietMin: time.Second, QuietMax: 3 * time.Second,
		HoldMin: 1500 * time.Millisecond, HoldMax: 5 * time.Second, PauseMin: 1500 * time.Millisecond})
	nemDone := make(chan struct{})
	go func() {
		defer close(nemDone)
		nem.Run(ctx)
	}()

	bg := context.Background()
	for w := range cfg.RegClients {
		rng := rand.New(rand.NewSource(cfg.Seed*1000 + int64(w)))
		node := c.Nodes[w%len(c.Nodes)].Node
		cl := c.Client(w%len(c.Nodes), opTimeout)
		wg.Go(func() {
			defer cl.Close()
			proc := hist.NewProcess()
			pause := backoff{rng: rng}
			for seq := 0; ctx.Err() == nil; {
				key := fmt.Sprintf("r%d.%d", time.Since(start)/genLength, rng.Intn(keysPerGen))
				keysMu.Lock()
				keys[key] = true
				keysMu.Unlock()
				if rng.Intn(2) == 0 {
					seq++
					val := fmt.Sprintf("%d.%d", w, seq)
					in := RegInput{Key: key, Write: true, Value: val}
					call := since()
					err := cl.Set(bg, key, val, 0).Err()
					ret := since()
					o, kind := Classify(err)
					errs.addErr("SET "+kind, err)
					pause.wait(err)
					switch o {
					case OK:
						regs.add("write-ok")
						hist.Add(porcupine.Operation{ClientId: proc, Input: in, Call: call, Output: RegOutput{}, Return: ret, Metadata: node})
					case Unknown:
						regs.add("write-unknown")
						hist.AddUnknown(porcupine.Operation{ClientId: proc, Input: in, Call: call, Output: RegOutput{Unknown: true},
							Metadata: fmt.Sprintf("%s: %v (after %v)", node, err, time.Duration(ret-call).Round(time.Millisecond))})
						proc = hist.NewProcess()
					default:
						regs.add("write-not-executed")
					}
				} else {
					in := RegInput{Key: key}
					// A quarter of the reads go inside MULTI … EXEC, which
					// the proxy runs and fences as one step of its own.
					op := "GET "
					call := since()
					var v string
					var err error
					if rng.Intn(4) == 0 {
						op = "MULTI GET "
						var get *redis.StringCmd
						_, err = cl.TxPipelined(bg, func(p redis.Pipeliner) error {
							get = p.Get(bg, key)
							return nil
						})
						if err == nil || errors.Is(err, redis.Nil) {
							v, err = get.Result()
						}
					} else {
						v, err = cl.Get(bg, key).Result()
					}
					ret := since()
					_, kind := Classify(err)
					errs.addErr(op+kind, err)
					pause.wait(err)
					switch {
					case err == nil:
						regs.add("read-ok")
						hist.Add(porcupine.Operation{ClientId: proc, Input: in, Call: call, Output: RegOutput{Value: v, Exists: true}, Return: ret, Metadata: node})
					case errors.Is(err, redis.Nil):
						regs.add("read-ok")
						hist.Add(porcupine.Operation{ClientId: proc, Input: in, Call: call, Output: RegOutput{}, Return: ret, Metadata: node})
					default:
						// A failed read tells nothing and changes nothing.
						regs.add("read-failed")
					}
				}
			}
		})
	}
	for a := range cfg.AppendClients {
		rng := rand.New(rand.NewSource(cfg.Seed*1000 + 500 + int64(a)))
		cl := c.Client(a%len(c.Nodes), opTimeout)
		list := fmt.Sprintf("l%d", a%2)
		keysMu.Lock()
		lists[list] = true
		keysMu.Unlock()
		wg.Go(func() {
			defer cl.Close()
			pause := backoff{rng: rng}
			for seq := 1; ctx.Err() == nil; seq++ {
				id := fmt.Sprintf("a%d.%d", a, seq)
				err := cl.RPush(bg, list, id).Err()
				o, kind := Classify(err)
				errs.addErr("RPUSH "+kind, err)
				alog.Add(list, id, a, seq, o)
				pause.wait(err)
			}
		})
	}
	wg.Wait()
	<-nemDone
	workEnd := time.Now()

	// Settle: everything healed, one leader, every follower caught up.
	leader, err := c.WaitSettled(90 * time.Second)
	if err == nil {
		err = c.WaitCaughtUp(leader, 60*time.Second)
	}
	if err != nil {
		rep.Settled = err.Error()
	}
	faults := nem.Faults()
	rep.Faults = nem.Counts()
	for _, f := range faults {
		rep.FaultsTotal++
		if f.Err != "" {
			rep.FaultErrors++
		}
	}
	rep.Errors = errs.snapshot()
	rep.ErrorExamples = errs.examples()
	rc := regs.snapshot()
	rep.RegWritesOK, rep.RegWritesUnknown, rep.RegWritesNotExecuted = rc["write-ok"], rc["write-unknown"], rc["write-not-executed"]
	rep.RegReadsOK, rep.RegReadsFailed = rc["read-ok"], rc["read-failed"]
	rep.RegOps = rep.RegWritesOK + rep.RegWritesUnknown + rep.RegWritesNotExecuted + rep.RegReadsOK + rep.RegReadsFailed

	var problems []string
	// A run whose faults were never dealt, or failed to take effect, checked
	// a quiet group: it must not pass as a chaos run.
	if rep.FaultsTotal == 0 {
		problems = append(problems, "no fault was injected")
	}
	if rep.FaultErrors > 0 {
		problems = append(problems, fmt.Sprintf("%d faults could not be injected or healed (see the fault error lines)", rep.FaultErrors))
	}
	var info porcupine.LinearizationInfo
	var ops []porcupine.Operation
	if rep.Settled != "" {
		problems = append(problems, "the group did not settle after the faults healed: "+rep.Settled)
		rep.Linearizable = "not checked"
		rep.Append = alog.Counts()
	} else {
		// Final reads through the settled leader: every key and list.
		fc := c.Client(leader, opTimeout)
		proc := hist.NewProcess()
		finalMeta := "final read on " + c.Nodes[leader].Node
		final := map[string][]string{}
		for l := range lists {
			got, err := fc.LRange(bg, l, 0, -1).Result()
			if err != nil {
				problems = append(problems, fmt.Sprintf("final LRANGE %s: %v", l, err))
			}
			final[l] = got
		}
		for k := range keys {
			call := since()
			v, err := fc.Get(bg, k).Result()
			ret := since()
			switch {
			case err == nil:
				hist.Add(porcupine.Operation{ClientId: proc, Input: RegInput{Key: k}, Call: call, Output: RegOutput{Value: v, Exists: true}, Return: ret, Metadata: finalMeta})
			case errors.Is(err, redis.Nil):
				hist.Add(porcupine.Operation{ClientId: proc, Input: RegInput{Key: k}, Call: call, Output: RegOutput{}, Return: ret, Metadata: finalMeta})
			default:
				problems = append(problems, fmt.Sprintf("final GET %s: %v", k, err))
			}
		}
		fc.Close()
		rep.Append = alog.Check(final)

		ops = hist.Operations()
		var res porcupine.CheckResult
		res, info = porcupine.CheckOperationsVerbose(RegisterModel, ops, cfg.CheckTimeout)
		rep.Linearizable = string(res)
		switch {
		case res == porcupine.Unknown && cfg.Strict:
			problems = append(problems, fmt.Sprintf("the linearizability check did not finish within %v (%d operations)", cfg.CheckTimeout, len(ops)))
		case res != porcupine.Ok && cfg.Strict:
			problems = append(problems, "the register history is not linearizable")
		}
		if n := len(rep.Append.Lost); n > 0 && cfg.Strict {
			problems = append(problems, fmt.Sprintf("%d acknowledged writes lost: %s", n, sample(rep.Append.Lost)))
		}
		if n := len(rep.Append.Reordered); n > 0 && cfg.Strict {
			problems = append(problems, fmt.Sprintf("%d acknowledged writes out of their client's order: %s", n, sample(rep.Append.Reordered)))
		}
		if n := len(rep.Append.Duplicated); n > 0 {
			problems = append(problems, fmt.Sprintf("%d ids applied twice: %s", n, sample(rep.Append.Duplicated)))
		}
		if n := len(rep.Append.Phantoms); n > 0 {
			problems = append(problems, fmt.Sprintf("%d ids present that were refused as not executed: %s", n, sample(rep.Append.Phantoms)))
		}
		rep.StoresEqual = true
		want, err := c.DataDigest(leader)
		for i := range c.Stores {
			got, derr := c.DataDigest(i)
			if err != nil || derr != nil || got != want {
				rep.StoresEqual = false
				problems = append(problems, fmt.Sprintf("store of %s differs from the leader's (%v %v)", c.Nodes[i].Node, err, derr))
			}
		}
	}

	nonLinear := rep.Linearizable != string(porcupine.Ok) && rep.Linearizable != "not checked"
	if len(problems) > 0 || nonLinear || os.Getenv("REPLICAR_VERIFY_OUT") != "" {
		rep.Artifacts = writeArtifacts(t, c, &rep, faults, start, workEnd, ops, info)
	}
	logReport(t, rep, faults)
	if len(problems) > 0 {
		for _, e := range timeline(c, faults) {
			t.Logf("timeline %s %s", e.At, e.What)
		}
		t.Errorf("policy %s: %d problem(s); artifacts in %s:\n  %s", cfg.Policy, len(problems), rep.Artifacts, strings.Join(problems, "\n  "))
	}
	return rep
}

// sample shows the first few items of a list.
func sample(items []string) string {
	if len(items) > 8 {
		return strings.Join(items[:8], " ") + " …"
	}
	return strings.Join(items, " ")
}

// timeline merges the fault log with the nodes' role changes.
func timeline(c *Cluster, faults []Fault) []Event {
	evs := c.NodeEvents(false)
	for _, f := range faults {
		evs = append(evs, Event{At: wallTime(f.Start), What: "NEMESIS start " + f.Name() + " " + f.Node + " " + string(f.Mode)})
		evs = append(evs, Event{At: wallTime(f.End), What: "NEMESIS healed " + f.Name() + " " + f.Node + " " + f.Err})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At < evs[j].At })
	return evs
}

func logReport(t *testing.T, r Report, faults []Fault) {
	t.Helper()
	t.Logf("policy=%s seed=%d duration=%v", r.Policy, r.Seed, r.Duration)
	t.Logf("faults: %d injected (%s), %d with errors", r.FaultsTotal, formatCounts(r.Faults), r.FaultErrors)
	for _, f := range faults {
		if f.Err != "" {
			t.Logf("fault error: %s", f)
		}
	}
	t.Logf("register: %d operations (writes: %d ok, %d unknown, %d not executed; reads: %d ok, %d failed); linearizable: %s",
		r.RegOps, r.RegWritesOK, r.RegWritesUnknown, r.RegWritesNotExecuted, r.RegReadsOK, r.RegReadsFailed, r.Linearizable)
	a := r.Append
	if r.Settled != "" {
		t.Logf("append: %d sent, %d acknowledged, %d unknown, %d not executed; not checked: the group did not settle",
			a.Sent, a.Acked, a.Unknown, a.NotExecuted)
	} else {
		t.Logf("append: %d sent, %d acknowledged, %d unknown (%d of them applied), %d not executed; LOST %d acknowledged, %d duplicated, %d phantom, %d reordered",
			a.Sent, a.Acked, a.Unknown, a.UnknownPresent, a.NotExecuted, len(a.Lost), len(a.Duplicated), len(a.Phantoms), len(a.Reordered))
	}
	t.Logf("stores equal: %v; replies by kind: %s", r.StoresEqual, formatCounts(r.Errors))
	kinds := make([]string, 0, len(r.ErrorExamples))
	for k := range r.ErrorExamples {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Logf("  e.g. %s: %s", k, r.ErrorExamples[k])
	}
	if r.Artifacts != "" {
		t.Logf("artifacts: %s", r.Artifacts)
	}
}

// writeArtifacts keeps the evidence of a run outside the test's temporary
// directories: the porcupine visualization (when the history is not
// linearizable), the fault log, the merged timeline, the report and every
// node's log. REPLICAR_VERIFY_OUT chooses the parent directory.
func writeArtifacts(t *testing.T, c *Cluster, rep *Report, faults []Fault, start, workEnd time.Time, ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	dir := artifactDir(t)
	if dir == "" {
		return ""
	}
	write := func(file string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Logf("artifacts: %v", err)
		}
	}
	if rep.Linearizable != string(porcupine.Ok) && ops != nil {
		var notes []porcupine.Annotation
		for _, f := range faults {
			notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: f.Start.Sub(start).Nanoseconds(),
				End: f.End.Sub(start).Nanoseconds(), Description: f.Name() + " " + f.Node, Details: f.String(),
				BackgroundColor: "#f4cccc"})
		}
		notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: workEnd.Sub(start).Nanoseconds(),
			Description: "workload ends; heal and settle"})
		info.AddAnnotations(notes)
		path := filepath.Join(dir, "history.html")
		if err := porcupine.VisualizePath(RegisterModel, info, path); err != nil {
			t.Logf("visualization: %v", err)
		} else {
			t.Logf("porcupine visualization: %s", path)
		}
	}
	if rep.Linearizable != string(porcupine.Ok) && ops != nil {
		write("illegal-keys.txt", []byte(illegalKeys(ops, start)))
	}
	var fl strings.Builder
	for _, f := range faults {
		fl.WriteString(f.String() + "\n")
	}
	write("faults.txt", []byte(fl.String()))
	var tl strings.Builder
	evs := c.NodeEvents(true)
	for _, f := range faults {
		evs = append(evs, Event{At: wallTime(f.Start), What: "NEMESIS start " + f.String()})
		evs = append(evs, Event{At: wallTime(f.End), What: "NEMESIS healed " + f.Name() + " " + f.Node})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At < evs[j].At })
	for _, e := range evs {
		fmt.Fprintf(&tl, "%s %s\n", e.At, e.What)
	}
	write("timeline.txt", []byte(tl.String()))
	rep.Artifacts = dir
	if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
		write("report.json", b)
	}
	saveNodeLogs(t, c, dir)
	return dir
}

// artifactDir makes a directory that outlives the test, under
// REPLICAR_VERIFY_OUT or the system's temporary directory.
func artifactDir(t *testing.T) string {
	base := os.Getenv("REPLICAR_VERIFY_OUT")
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	dir, err := os.MkdirTemp(base, "replicar-verify-"+name+"-")
	if err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	return dir
}

// saveNodeLogs copies every node's log into dir.
func saveNodeLogs(t *testing.T, c *Cluster, dir string) {
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.LogPath())
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, n.Node+".log"), b, 0o644)
		}
		if err != nil {
			t.Logf("artifacts: %v", err)
		}
	}
}

// illegalKeys checks each key's history on its own and prints the ones that
// are not linearizable, operation by operation in call order, with wall
// clock times, for reading next to the timeline.
func illegalKeys(ops []porcupine.Operation, start time.Time) string {
	var b strings.Builder
	shown, deadline := 0, time.Now().Add(2*time.Minute)
	for _, part := range RegisterModel.Partition(ops) {
		if shown == 20 || time.Now().After(deadline) {
			b.WriteString("== (stopped: enough shown)\n")
			break
		}
		if porcupine.CheckOperationsTimeout(RegisterModel, part, 10*time.Second) == porcupine.Ok {
			continue
		}
		shown++
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		fmt.Fprintf(&b, "== key %s: not linearizable, or not shown to be within 10s (%d operations)\n", part[0].Input.(RegInput).Key, len(part))
		for _, op := range part {
			fmt.Fprintf(&b, "%s .. %s  client %3d  %-28s %v\n", wallTime(start.Add(time.Duration(op.Call))),
				wallTime(start.Add(time.Duration(op.Return))), op.ClientId, RegisterModel.DescribeOperation(op.Input, op.Output), op.Metadata)
		}
	}
	return b.String()
}

// Seed is REPLICAR_VERIFY_SEED, which repeats a run's nemesis choices, or
// one from the clock.
func Seed(t testing.TB) int64 {
	if s := os.Getenv("REPLICAR_VERIFY_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("REPLICAR_VERIFY_SEED: %v", err)
		}
		return n
	}
	return time.Now().UnixNano() % 1_000_000
}

// ChaosDuration is REPLICAR_CHAOS_DURATION, how long a chaos run deals
// faults per policy; ok is false when it is unset (the run is skipped).
func ChaosDuration(t testing.TB) (d time.Duration, ok bool) {
	s := os.Getenv("REPLICAR_CHAOS_DURATION")
	if s == "" {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("REPLICAR_CHAOS_DURATION: %v", err)
	}
	return d, true
}
