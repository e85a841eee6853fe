package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/replicar/replicar/internal/localgroup"
)

// setup is one column of the comparison.
type setup struct {
	key, name string
	// base is the key of the setup its ratio is taken against.
	base string
}

var allSetups = []setup{
	{"direct", "direct mariadbd", ""},
	{"async", "native async, 2 replicas", "direct"},
	{"semisync", "native semi-sync AFTER_SYNC, 2 replicas", "direct"},
	// The native setups with sysbench going through bench/relay, a byte
	// copier that parses nothing: the floor of what any proxy in front of
	// the primary costs on this host.
	{"async-relay", "native async through bench/relay", "async"},
	{"semisync-relay", "native semi-sync through bench/relay", "semisync"},
	{"leader", "replicar leader, 2 followers", "async"},
	{"one", "replicar one (ACKS=1), 2 followers", "semisync"},
	{"all", "replicar all (MIN_INSYNC=3), 2 followers", "semisync"},
}

var policies = map[string]policy{
	"leader": {key: "leader", policy: "leader"},
	"one":    {key: "one", policy: "one", acks: "1"},
	"all":    {key: "all", policy: "all", minInsync: "3"},
}

// outcome is one cell of the table: a setup under a workload.
type outcome struct {
	res  sbResult
	err  error
	note string
	// load is the 1-minute load average when the run started: this
	// machine is shared, and a number measured under a load of 10 on two
	// cores says little.
	load string
	// cpu says where the CPU time of the run went, process by process.
	cpu string
}

func main() {
	duration := flag.Duration("time", 20*time.Second, "how long each sysbench run lasts (whole seconds)")
	threads := flag.Int("threads", 16, "sysbench --threads of each run")
	tables := flag.Int("tables", 4, "sysbench --tables prepared for each setup")
	tableSize := flag.Int("table-size", 10000, "sysbench --table-size (rows per table)")
	flushLog := flag.Int("flush-log-at-trx-commit", 1, "innodb_flush_log_at_trx_commit of every mariadbd")
	syncBinlog := flag.Int("sync-binlog", 1, "sync_binlog of every mariadbd")
	bufferPool := flag.String("buffer-pool", "256M", "innodb_buffer_pool_size of every mariadbd")
	setupList := flag.String("setups", "direct,async,semisync,async-relay,semisync-relay,leader,one,all", "setups to measure, in this order")
	relayBin := flag.String("relay", "bin/relay", "the bench/relay binary, for the *-relay setups (go build -o bin/relay ./bench/relay)")
	workloadList := flag.String("workloads", "oltp_insert,oltp_write_only", "sysbench workloads, each run on every setup")
	binary := flag.String("replicar", "bin/replicar", "the replicar binary to run the nodes with")
	sysbench := flag.String("sysbench", "sysbench", "the sysbench binary")
	parent := flag.String("dir", "", "where to make the temp dir (default: the system's)")
	keep := flag.Bool("keep", false, "keep the temp dir (server and node logs) at exit")
	profileDir := flag.String("profile-dir", "", "with a replicar built with -tags prof: each node writes a CPU profile, <dir>/<policy>-<node>.prof (the last round's)")
	rounds := flag.Int("rounds", 1, "repeat the whole sequence, fresh servers each time, and report the median run")
	flag.Parse()

	var chosen []setup
	for key := range strings.SplitSeq(*setupList, ",") {
		i := slices.IndexFunc(allSetups, func(s setup) bool { return s.key == strings.TrimSpace(key) })
		if i < 0 {
			fail("-setups: unknown setup %q (want some of direct, async, semisync, async-relay, semisync-relay, leader, one, all)", key)
		}
		chosen = append(chosen, allSetups[i])
	}
	workloads := strings.Split(*workloadList, ",")
	if *rounds < 1 {
		fail("-rounds %d: want at least 1", *rounds)
	}
	if *duration < time.Second {
		fail("-time %v: want at least 1s", *duration)
	}
	sbPath, err := exec.LookPath(*sysbench)
	if err != nil {
		fail("%v (apt-get install sysbench)", err)
	}
	bin, err := filepath.Abs(*binary)
	check(err)
	needReplicar := slices.ContainsFunc(chosen, func(s setup) bool { _, ok := policies[s.key]; return ok })
	if _, err := os.Stat(bin); err != nil && needReplicar {
		fail("%v (build it with `make build`)", err)
	}
	relay, err := filepath.Abs(*relayBin)
	check(err)
	needRelay := slices.ContainsFunc(chosen, func(s setup) bool { return strings.HasSuffix(s.key, "-relay") })
	if _, err := os.Stat(relay); err != nil && needRelay {
		fail("%v (build it with `go build -o bin/relay ./bench/relay`)", err)
	}

	if *profileDir != "" {
		*profileDir, err = filepath.Abs(*profileDir)
		check(err)
		check(os.MkdirAll(*profileDir, 0o755))
	}
	dir, err := os.MkdirTemp(*parent, "mysqlbench")
	check(err)
	if *keep {
		fmt.Fprintf(os.Stderr, "mysqlbench: files kept in %s\n", dir)
	} else {
		addCleanup(func() { os.RemoveAll(dir) })
	}
	defer cleanup()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { fail("%v", <-sigs) }()

	ctx := context.Background()
	srv := &servers{dir: dir, common: []string{
		"--log-bin=mysql-bin",
		"--binlog-format=ROW",
		"--binlog-row-metadata=FULL",
		"--innodb-flush-log-at-trx-commit=" + strconv.Itoa(*flushLog),
		"--sync-binlog=" + strconv.Itoa(*syncBinlog),
		"--innodb-buffer-pool-size=" + *bufferPool,
	}}
	sb := sbParams{
		binary:         sbPath,
		threads:        *threads,
		tables:         *tables,
		rows:           *tableSize,
		duration:       *duration,
		prepareThreads: min(*tables, 8),
		db:             "sbtest",
	}

	printHeader(sb, srv, dir, bin, needReplicar)

	// results[setup][workload] holds one outcome per round. Rounds go
	// through every setup in turn, so a noisy minute on this shared
	// machine lands on one round of each rather than on one setup.
	results := map[string]map[string][]outcome{}
	for round := range *rounds {
		if *rounds > 1 {
			progress("round %d of %d", round+1, *rounds)
		}
		for _, s := range chosen {
			if results[s.key] == nil {
				results[s.key] = map[string][]outcome{}
			}
			// Each setup's servers live in a dir of their own, removed
			// once they are stopped: a round leaves GBs of redo logs.
			srv.dir = filepath.Join(dir, fmt.Sprintf("r%d-%s", round+1, s.key))
			for w, o := range measure(ctx, s, workloads, sb, srv, bin, relay, *profileDir) {
				results[s.key][w] = append(results[s.key][w], o)
			}
			if !*keep {
				os.RemoveAll(srv.dir)
			}
		}
	}
	printTable(chosen, workloads, results, *rounds)
}

// measure starts a setup's servers, prepares the tables and runs every
// workload on it. A setup that cannot start, or a run that fails, gives
// an error in its cells; the bench goes on with the others.
func measure(ctx context.Context, s setup, workloads []string, sb sbParams, srv *servers, bin, relay, profileDir string) map[string]outcome {
	out := map[string]outcome{}
	failAll := func(err error) map[string]outcome {
		progress("%s: %v", s.key, err)
		for _, w := range workloads {
			out[w] = outcome{err: err}
		}
		return out
	}
	var t *target
	var err error
	switch s.key {
	case "direct":
		t, err = startDirect(srv)
	case "async":
		t, err = startNative(ctx, srv, false)
	case "semisync":
		t, err = startNative(ctx, srv, true)
	case "async-relay", "semisync-relay":
		t, err = startNative(ctx, srv, s.key == "semisync-relay")
		if err == nil {
			err = t.throughRelay(relay, srv.dir)
		}
	default:
		t, err = startReplicar(ctx, srv, bin, policies[s.key], profileDir)
		if err != nil {
			err = fmt.Errorf("replicar mysql: %w", err)
		}
	}
	if err != nil {
		return failAll(err)
	}
	defer t.stop()
	progress("%s: up, preparing %d tables x %d rows", s.key, sb.tables, sb.rows)
	start := time.Now()
	if err := execOn(ctx, t.ep, "CREATE DATABASE IF NOT EXISTS "+sb.db); err != nil {
		return failAll(err)
	}
	if err := sb.prepare(ctx, workloads[0], t.ep); err != nil {
		return failAll(err)
	}
	if err := t.settle(ctx); err != nil {
		return failAll(fmt.Errorf("after prepare: %w", err))
	}
	progress("%s: prepared and replicated in %v", s.key, time.Since(start).Round(time.Millisecond))
	for _, w := range workloads {
		if err := t.settle(ctx); err != nil {
			out[w] = outcome{err: fmt.Errorf("before the run: %w", err)}
			continue
		}
		var stopWatch func() string
		if t.watch != nil {
			stopWatch = t.watch(ctx)
		}
		load := loadAvg()
		cpu := localgroup.StartCPU(t.procs)
		r, err := sb.run(ctx, w, t.ep)
		o := outcome{res: r, err: err, load: load}
		if stopWatch != nil {
			o.note = stopWatch()
		}
		if err == nil {
			o.cpu = cpuReport(cpu, r.cpu, sb.duration)
		}
		out[w] = o
		if err != nil {
			progress("%s %s: %v", s.key, w, err)
		} else {
			progress("%s %s: %.0f tps, p50 %.2fms, p95 %.2fms (load %s)", s.key, w, r.tps, r.p50, r.p95, load)
		}
	}
	if err := t.settle(ctx); err != nil {
		progress("%s: after the runs: %v", s.key, err)
	} else if c := compareCopies(ctx, t.copies, sb.db, sb.tables); c != "" {
		progress("%s: %s", s.key, c)
		last := workloads[len(workloads)-1]
		o := out[last]
		o.note = strings.TrimPrefix(o.note+"; "+c, "; ")
		out[last] = o
	}
	return out
}

func printHeader(sb sbParams, srv *servers, dir, bin string, withReplicar bool) {
	sbVersion, _ := exec.Command(sb.binary, "--version").Output()
	mdbVersion, err := localgroup.MariaDBVersion()
	check(err)
	fmt.Printf("%s: %d threads, %v per run, %d tables x %d rows prepared afresh for each setup\n",
		strings.TrimSpace(string(sbVersion)), sb.threads, sb.duration, sb.tables, sb.rows)
	fmt.Printf("%s\n", mdbVersion)
	fmt.Printf("every mariadbd: %s --innodb-log-file-size=%s\n", strings.Join(srv.common, " "), localgroup.MariaDBLogFileSize)
	fmt.Printf("semi-sync primary: %s; replicas: %s\n", strings.Join(semiPrimary, " "), strings.Join(semiReplica, " "))
	fmt.Printf("data in %s (%s), %d CPUs; load: the 1-minute load average as each run starts (the machine may be shared)\n",
		dir, fsType(dir), runtime.NumCPU())
	if withReplicar {
		v, _ := exec.Command(bin, "version").Output()
		fmt.Printf("%s: 3 nodes, REPLICAR_PROTOCOL=mysql, embedded NATS in n1, sysbench through the leader's client port\n",
			strings.TrimSpace(string(v)))
	}
	fmt.Println()
}

// median returns the run of median tps among the successful ones, how
// many succeeded, the tps range, and the first error.
func median(os []outcome) (med outcome, ok int, lo, hi float64, firstErr error) {
	var good []outcome
	for _, o := range os {
		if o.err != nil {
			if firstErr == nil {
				firstErr = o.err
			}
			continue
		}
		good = append(good, o)
	}
	if len(good) == 0 {
		return outcome{}, 0, 0, 0, firstErr
	}
	slices.SortFunc(good, func(a, b outcome) int { return cmpFloat(a.res.tps, b.res.tps) })
	return good[len(good)/2], len(good), good[0].res.tps, good[len(good)-1].res.tps, firstErr
}

func printTable(chosen []setup, workloads []string, results map[string]map[string][]outcome, rounds int) {
	fmt.Println()
	spread := func(string) string { return "" }
	if rounds > 1 {
		fmt.Printf("each row is the run of median tps of %d rounds; range: the lowest and highest tps\n", rounds)
		spread = func(s string) string { return fmt.Sprintf(" %13s", s) }
	}
	fmt.Printf("%-16s %-42s %9s%s %9s %9s %6s %7s  %s\n", "workload", "setup", "tps", spread("range"), "p50 ms", "p95 ms", "load", "ratio", "vs")
	var notes []string
	for _, w := range workloads {
		for _, s := range chosen {
			o, ok, lo, hi, err := median(results[s.key][w])
			if ok == 0 {
				fmt.Printf("%-16s %-42s %v\n", w, s.name, err)
				continue
			}
			if err != nil {
				notes = append(notes, fmt.Sprintf("%s, %s: %d of %d rounds failed, first: %v", w, s.name, rounds-ok, rounds, err))
			}
			ratio, vs := "", ""
			if base, bok, _, _, _ := median(results[s.base][w]); bok > 0 && base.res.tps > 0 {
				ratio = fmt.Sprintf("%.2f", o.res.tps/base.res.tps)
				vs = nameOf(s.base)
			} else if s.base != "" {
				vs = nameOf(s.base) + " not measured"
			}
			fmt.Printf("%-16s %-42s %9.0f%s %9.2f %9.2f %6s %7s  %s\n", w, s.name, o.res.tps, spread(fmt.Sprintf("%.0f-%.0f", lo, hi)),
				o.res.p50, o.res.p95, o.load, ratio, vs)
			for r, o := range results[s.key][w] {
				prefix := fmt.Sprintf("%s, %s", w, s.name)
				if rounds > 1 {
					prefix += fmt.Sprintf(", round %d", r+1)
				}
				if o.err == nil && o.res.errors > 0 {
					notes = append(notes, fmt.Sprintf("%s: sysbench ignored %d errors", prefix, o.res.errors))
				}
				if o.note != "" {
					notes = append(notes, prefix+": "+o.note)
				}
				if o.cpu != "" {
					notes = append(notes, prefix+": "+o.cpu)
				}
			}
		}
	}
	if len(notes) > 0 {
		fmt.Println()
		for _, n := range notes {
			fmt.Println(n)
		}
	}
}

func nameOf(key string) string {
	for _, s := range allSetups {
		if s.key == key {
			return s.name
		}
	}
	return key
}

// fsType names the file system under dir: fsync costs nothing on tmpfs,
// which would make durable settings look free.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "file system unknown"
	}
	switch uint64(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs: fsync is free here"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system 0x%x", uint64(st.Type))
}

// loadAvg is the 1-minute load average, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mysqlbench: "+format+"\n", args...)
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

// cleanups stop the servers and remove the temp dir, on success, failure
// and interruption alike.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func addCleanup(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

func cleanup() {
	cleanupMu.Lock()
	fs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mysqlbench: "+format+"\n", args...)
	cleanup()
	os.Exit(1)
}
