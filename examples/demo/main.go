package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the demo's command line.
type options struct {
	settings
	writers int
	rate    float64
	before  time.Duration // workload before the kill
	after   time.Duration // workload once the new leader takes writes, before the restart
	keep    bool          // leave the group running at the end
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "stop" {
		os.Exit(cmdStop(args[1:]))
	}
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	o := options{settings: settings{nodes: 3}}
	fs.StringVar(&o.dir, "dir", ".run/group", "state directory: pid files, logs, data")
	fs.StringVar(&o.bin, "bin", "bin/replicar", "the replicar binary")
	fs.StringVar(&o.group, "group", "local", "REPLICAR_GROUP")
	fs.StringVar(&o.policy, "policy", "quorum", "REPLICAR_ACK_POLICY: none, leader, one, quorum or all")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", 2*time.Second, "REPLICAR_LEASE_TTL; a failover takes about one")
	fs.IntVar(&o.writers, "writers", 3, "clients writing at once")
	fs.Float64Var(&o.rate, "rate", 1000, "writes per second over all clients, 0 for as fast as they go")
	fs.DurationVar(&o.before, "before", 5*time.Second, "how long the workload runs before the leader is killed")
	fs.DurationVar(&o.after, "after", 3*time.Second, "how long it runs under the new leader before the killed node restarts")
	fs.BoolVar(&o.keep, "keep", true, "leave the group running at the end")
	fs.DurationVar(&o.startWait, "start-wait", 30*time.Second, "how long a server may take to start")
	fs.Parse(args)
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected argument %q\n", fs.Arg(0))
		os.Exit(2)
	}
	switch o.policy {
	case "none", "leader", "one", "quorum", "all":
	default:
		fmt.Fprintf(os.Stderr, "demo: -policy %q: want one of none, leader, one, quorum, all\n", o.policy)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func cmdStop(args []string) int {
	fs := flag.NewFlagSet("demo stop", flag.ExitOnError)
	dir := fs.String("dir", ".run/group", "state directory of the group")
	grace := fs.Duration("grace", 10*time.Second, "how long to wait after SIGTERM before SIGKILL")
	fs.Parse(args)
	if err := stopGroup(*dir, *grace, func(s string) { fmt.Println(s) }); err != nil {
		fmt.Fprintf(os.Stderr, "demo stop: %v\n", err)
		return 1
	}
	return 0
}

// result is what a run found, for the tests.
type result struct {
	killed, newLeader string
	failover          time.Duration // SIGKILL → another node leads and takes writes
	rejoin            time.Duration // restart → the killed node follows, streams and is in the ISR
	maxGap            time.Duration // longest pause between two acknowledged writes
	verdict           verdict
	group             *group
}

// run is the whole demo. It returns an error when a step fails or an
// acknowledged write is lost.
func run(ctx context.Context, o options, out io.Writer) (res result, err error) {
	scr := newScreen(out)
	shownDir := o.dir
	fmt.Fprintf(out, "replicar demo: a local group of real processes (nats-server, %d redis-servers, %d replicar nodes),\n"+
		"ack policy %s, lease TTL %v, state in %s\n\n", o.nodes, o.nodes, o.policy, o.leaseTTL, shownDir)

	if recs, _ := readPidFiles(o.dir); len(stillAlive(recs)) > 0 {
		done := scr.step("stopping the group an earlier run left in " + shownDir)
		err := stopGroup(o.dir, 10*time.Second, func(string) {})
		done()
		if err != nil {
			return res, err
		}
		scr.done("stopped the group an earlier run left in " + shownDir)
	} else if err := os.RemoveAll(o.dir); err != nil {
		return res, fmt.Errorf("clean %s: %w", o.dir, err)
	}

	spin := scr.step("starting nats-server, redis-servers and replicar nodes")
	g, err := startGroup(ctx, o.settings, scr.done)
	spin()
	if err != nil {
		return res, err
	}
	res.group = g
	defer func() {
		// An interrupted demo takes its group with it; a failed one leaves
		// it up to be looked at, unless asked not to keep it.
		if ctx.Err() != nil || !o.keep {
			g.killAll()
			os.RemoveAll(g.set.dir)
			if ctx.Err() != nil {
				fmt.Fprintln(out, "\ninterrupted: the group is stopped")
			}
		} else if err != nil {
			fmt.Fprintf(out, "\nThe group is still running, for a look at %s/*.log; `make stop` stops it.\n", shownDir)
		}
	}()

	all := make([]int, len(g.Nodes))
	for i := range all {
		all[i] = i
	}
	var last snapshot
	spin = scr.step("waiting for an election and for the followers to join the ISR")
	last, err = waitFor(ctx, g, time.Minute, func(s snapshot) bool { return s.settled(all) })
	spin()
	if err != nil {
		return res, fmt.Errorf("no settled leader: %w", err)
	}
	l := last.leader()
	scr.done(fmt.Sprintf("%s leads (epoch %d); the others follow; ISR %s", last[l].ID, last[l].St.Epoch, isrString(last[l].St.ISR)))

	var addrs, stores []string
	for _, n := range g.Nodes {
		addrs = append(addrs, n.Client)
		stores = append(stores, n.Store)
	}
	scr.println("")
	scr.note(fmt.Sprintf("workload: %d clients, SET demo:w<client>:<seq> through all %d nodes, ~%.0f writes/s (ack policy %s)",
		o.writers, len(g.Nodes), o.rate, o.policy))
	w := startWorkload(addrs, o.writers, o.rate)
	workloadStopped := false
	defer func() {
		if !workloadStopped {
			w.stop()
		}
	}()
	mon := startMonitor(scr, g, w)
	defer mon.stop()

	if err := sleep(ctx, o.before); err != nil {
		return res, err
	}

	// The kill.
	last = mon.latest()
	l = last.leader()
	if l < 0 {
		return res, errors.New("no leader to kill")
	}
	victim := g.Nodes[l]
	res.killed = victim.ID
	scr.note(fmt.Sprintf("✗ SIGKILL %s, the leader (pid %d)", victim.ID, victim.PID))
	killedAt := time.Now()
	if err := victim.proc.kill(); err != nil {
		return res, err
	}
	last, err = waitFor(ctx, g, time.Minute, func(s snapshot) bool {
		l := s.leader()
		return l >= 0 && s[l].ID != victim.ID
	})
	if err != nil {
		return res, fmt.Errorf("no new leader after the kill: %w", err)
	}
	res.failover = time.Since(killedAt)
	l = last.leader()
	res.newLeader = last[l].ID
	scr.done(fmt.Sprintf("%s leads (epoch %d) and takes writes, %.1fs after the kill", last[l].ID, last[l].St.Epoch, res.failover.Seconds()))
	if err := sleep(ctx, o.after); err != nil {
		return res, err
	}

	// The killed node comes back at the same addresses.
	scr.note(fmt.Sprintf("↻ restarting %s", victim.ID))
	restartedAt := time.Now()
	if err := g.startNode(ctx, victim, false); err != nil {
		return res, fmt.Errorf("restart %s: %w", victim.ID, err)
	}
	last, err = waitFor(ctx, g, time.Minute, func(s snapshot) bool { return s.settled(all) })
	if err != nil {
		return res, fmt.Errorf("%s did not rejoin: %w", victim.ID, err)
	}
	res.rejoin = time.Since(restartedAt)
	scr.done(fmt.Sprintf("%s (pid %d) follows %s again, streaming and in the ISR, %.1fs after its restart%s",
		victim.ID, victim.PID, last[last.leader()].ID, res.rejoin.Seconds(), resyncs(last[indexOf(last, victim.ID)].St.Resyncs)))
	if err := sleep(ctx, time.Second); err != nil {
		return res, err
	}

	w.stop()
	workloadStopped = true
	last, err = waitFor(ctx, g, 30*time.Second, func(s snapshot) bool { return s.caughtUp() })
	if err != nil {
		return res, fmt.Errorf("followers did not catch up: %w", err)
	}
	mon.stop()
	scr.done("workload stopped; every node has applied the leader's last entry")

	spin = scr.step("reading back every acknowledged write")
	leader := g.Nodes[last.leader()]
	res.verdict, err = w.verify(ctx, leader.Client, stores)
	spin()
	if err != nil {
		return res, err
	}
	res.maxGap = time.Duration(w.maxGap.Load())
	printResult(out, res, g, leader)
	if o.keep {
		printRunning(out, g, leader, shownDir, o.bin)
	}
	fmt.Fprintf(out, "\ndone in %.1fs\n", time.Since(scr.start).Seconds())
	if lost := res.verdict.Lost + sum(res.verdict.LostOnStore); lost > 0 {
		return res, fmt.Errorf("%d acknowledged writes missing or wrong on read back", lost)
	}
	return res, nil
}

// indexOf is the index of the node called id.
func indexOf(s snapshot, id string) int {
	for i, v := range s {
		if v.ID == id {
			return i
		}
	}
	return 0
}

func resyncs(m map[string]uint64) string {
	var parts []string
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (resyncs: " + strings.Join(parts, ", ") + ")"
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

func printResult(out io.Writer, res result, g *group, leader *node) {
	v := res.verdict
	fmt.Fprintf(out, "\nResult\n")
	fmt.Fprintf(out, "  failover:             %s killed; %s took writes %.1fs later\n", res.killed, res.newLeader, res.failover.Seconds())
	fmt.Fprintf(out, "  longest write pause:  %.1fs between two acknowledged writes\n", res.maxGap.Seconds())
	fmt.Fprintf(out, "  rejoin:               %s back as a follower in the ISR %.1fs after its restart\n", res.killed, res.rejoin.Seconds())
	fmt.Fprintf(out, "  writes acknowledged:  %s\n", group3(v.Acked))
	unacked := 0
	var kinds []string
	for k, n := range v.Unacked {
		unacked += n
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(out, "  not acknowledged:     %s", group3(unacked))
	if unacked > 0 {
		fmt.Fprintf(out, " (%s); %d of them were applied anyway", strings.Join(kinds, ", "), v.Landed)
	}
	fmt.Fprintln(out)
	if msg, ok := v.Sample[failOther]; ok {
		fmt.Fprintf(out, "                        (%s, e.g. %q)\n", failOther, msg)
	}
	fmt.Fprintf(out, "  read back:            %s of %s through %s;", group3(v.Acked-v.Lost), group3(v.Acked), leader.ID)
	for i, n := range g.Nodes {
		fmt.Fprintf(out, " %s's store %s", n.ID, group3(v.Acked-v.LostOnStore[i]))
		if i < len(g.Nodes)-1 {
			fmt.Fprint(out, ",")
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  writes lost:          %d\n", v.Lost+sum(v.LostOnStore))
}

func printRunning(out io.Writer, g *group, leader *node, dir, bin string) {
	fmt.Fprintf(out, "\nThe group is running (logs, data and pid files in %s; addresses in %s):\n",
		dir, filepath.Join(dir, "group.json"))
	fmt.Fprintf(out, "  %-5s %-22s %-22s %-22s %s\n", "node", "client (redis-cli -p)", "HTTP (/status)", "store (redis-server)", "pid")
	for _, n := range g.Nodes {
		role := ""
		if n == leader {
			role = "  (leader)"
		}
		fmt.Fprintf(out, "  %-5s %-22s %-22s %-22s %d%s\n", n.ID, n.Client, n.HTTP, n.Store, n.PID, role)
	}
	fmt.Fprintf(out, "  NATS  %s\n\n", g.NATS)
	c := g.Nodes[0]
	port := c.Client[strings.LastIndexByte(c.Client, ':')+1:]
	fmt.Fprintf(out, "  redis-cli -p %s set hello world   # any node: it forwards writes to the leader\n", port)
	fmt.Fprintf(out, "  %s status --addr %s\n", bin, c.HTTP)
	fmt.Fprintf(out, "  curl -s http://%s/status\n", leader.HTTP)
	fmt.Fprintf(out, "  kill -9 %d                     # kill the leader yourself; the others take over\n", leader.PID)
	fmt.Fprintf(out, "\nStop it with: make stop\n")
}

// waitFor polls the group until cond holds, ctx ends or timeout passes.
func waitFor(ctx context.Context, g *group, timeout time.Duration, cond func(snapshot) bool) (snapshot, error) {
	deadline := time.Now().Add(timeout)
	var s snapshot
	for {
		s = poll(ctx, g.Nodes)
		if cond(s) {
			return s, nil
		}
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		if time.Now().After(deadline) {
			var parts []string
			for i := range s {
				parts = append(parts, s[i].ID+": "+s.cell(i))
			}
			return s, fmt.Errorf("timed out after %v (%s)", timeout, strings.Join(parts, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// monitor polls the group in the background while the workload runs: it
// prints each change as it sees it, and a row of the live table every
// second.
type monitor struct {
	scr *screen
	g   *group
	w   *workload

	mu   sync.Mutex
	last snapshot

	quit chan struct{}
	done chan struct{}
	once sync.Once
}

func startMonitor(scr *screen, g *group, w *workload) *monitor {
	m := &monitor{scr: scr, g: g, w: w, quit: make(chan struct{}), done: make(chan struct{})}
	var ids []string
	for _, n := range g.Nodes {
		ids = append(ids, n.ID)
	}
	m.last = poll(context.Background(), g.Nodes)
	scr.println("%s   %s", strings.Repeat(" ", len(scr.elapsed())), tableHeader(ids))
	go m.run()
	return m
}

func (m *monitor) run() {
	defer close(m.done)
	prevAcked, prevAt := m.w.acked.Load(), time.Now()
	nextRow := time.Now().Add(time.Second)
	for {
		select {
		case <-m.quit:
			return
		case <-time.After(100 * time.Millisecond):
		}
		cur := poll(context.Background(), m.g.Nodes)
		m.mu.Lock()
		prev := m.last
		m.last = cur
		m.mu.Unlock()
		for _, e := range events(prev, cur) {
			m.scr.note("» " + e)
		}
		if now := time.Now(); !now.Before(nextRow) {
			acked := m.w.acked.Load()
			rate := float64(acked-prevAcked) / now.Sub(prevAt).Seconds()
			prevAcked, prevAt = acked, now
			nextRow = nextRow.Add(time.Second)
			m.scr.note(tableRow(acked, m.w.unacked.Load(), rate, cur))
		}
	}
}

func (m *monitor) latest() snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

func (m *monitor) stop() {
	m.once.Do(func() {
		close(m.quit)
		<-m.done
	})
}
