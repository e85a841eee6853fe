package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/internal/localgroup"
)

func main() {
	clients := flag.Int("clients", 50, "concurrent clients")
	duration := flag.Duration("duration", 5*time.Second, "how long each run lasts")
	binary := flag.String("replicar", "bin/replicar", "the replicar binary to run the nodes with")
	profileDir := flag.String("profile-dir", "", "with a replicar built with -tags prof: each node writes a CPU profile, <dir>/<policy>-<node>.prof")
	nodeProcs := flag.Int("node-gomaxprocs", 0, "GOMAXPROCS of each replicar node (0: Go's default)")
	relayBin := flag.String("relay", "", "the bench/relay binary: also measure the native setups through it")
	load := flag.String("load", "", "internal: run the clients against this address and print the result as JSON")
	wait := flag.Bool("wait", false, "internal, with -load: follow each SET with WAIT 1 0")
	flag.Parse()
	if *load != "" {
		r := runLoad(*load, *clients, *duration, *wait)
		check(json.NewEncoder(os.Stdout).Encode(r))
		return
	}
	bin, err := filepath.Abs(*binary)
	check(err)
	if _, err := os.Stat(bin); err != nil {
		fail("%v (build it with `make build`)", err)
	}

	dir, err := os.MkdirTemp("", "replbench")
	check(err)
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	defer cleanup()
	// pids has the process of every server started, by address, for the
	// CPU each setup's processes use during its run.
	pids := map[string]int{}
	startRedis := func(args ...string) string {
		r, err := localgroup.StartRedis(filepath.Join(dir, strconv.Itoa(len(cleanups))), args...)
		check(err)
		cleanups = append(cleanups, r.Stop)
		pids[r.Addr] = r.PID()
		return r.Addr
	}
	measure := func(addr string, wait bool, procs []localgroup.Proc) result {
		meter := localgroup.StartCPU(procs)
		r := loadProcess(addr, *clients, *duration, wait)
		ops := r.Ops * duration.Seconds()
		servers, total := meter.Report(1e6 / ops)
		clientsUS := r.loadCPU * 1e6 / ops
		r.cpu = fmt.Sprintf("CPU µs per op: clients %.1f, %s; total %.1f", clientsUS, servers, total+clientsUS)
		return r
	}
	redisProc := func(name, addr string) localgroup.Proc { return localgroup.Proc{Name: name, PID: pids[addr]} }

	fmt.Printf("SET, %d clients, %v per run, 16-byte values\n\n", *clients, *duration)
	fmt.Printf("%-46s %10s %10s %10s %7s\n", "setup", "ops/s", "p50", "p99", "ratio")
	directAddr := startRedis()
	direct := measure(directAddr, false, []localgroup.Proc{redisProc("redis", directAddr)})
	report("direct redis-server", direct, direct)

	primary := startRedis()
	primaryStop := cleanups[len(cleanups)-1]
	var replicaStops []func()
	nativeProcs := []localgroup.Proc{redisProc("primary", primary)}
	for i := range 2 {
		host, port, _ := net.SplitHostPort(primary)
		replica := startRedis("--replicaof", host, port)
		replicaStops = append(replicaStops, cleanups[len(cleanups)-1])
		nativeProcs = append(nativeProcs, redisProc("replica"+strconv.Itoa(i+1), replica))
	}
	waitReplicas(primary, 2)
	native := measure(primary, false, nativeProcs)
	report("native replication (async)", native, direct)
	nativeWait := measure(primary, true, nativeProcs)
	report("native SET + WAIT 1", nativeWait, direct)
	if *relayBin != "" {
		relay, err := localgroup.StartRelay(*relayBin, primary, dir)
		check(err)
		cleanups = append(cleanups, relay.Stop)
		relayedProcs := append([]localgroup.Proc{{Name: "relay", PID: relay.PID()}}, nativeProcs...)
		report("native async through bench/relay", measure(relay.Addr, false, relayedProcs), native)
		report("native WAIT 1 through bench/relay", measure(relay.Addr, true, relayedProcs), nativeWait)
	}
	// The native group is done with: its three servers would only take
	// memory and wake-ups from the runs that follow.
	for _, stop := range append(replicaStops, primaryStop) {
		stop()
	}

	for _, p := range []struct{ name, policy, acks, minInsync string }{
		{"leader", "leader", "", ""},
		{"one", "one", "1", ""},
		{"all(min_insync=3)", "all", "", "3"},
	} {
		g := startGroup(bin, filepath.Join(dir, "group-"+p.policy), p.policy, p.acks, p.minInsync, *nodeProcs, *profileDir, startRedis)
		var procs []localgroup.Proc
		for i, cmd := range g.procs {
			node := "n" + strconv.Itoa(i+1)
			procs = append(procs, localgroup.Proc{Name: "replicar " + node, PID: cmd.Process.Pid}, redisProc("redis "+node, g.backends[i]))
		}
		r := measure(g.leader, false, procs)
		base, vs := native, "vs native async"
		if p.policy != "leader" {
			base, vs = nativeWait, "vs native WAIT 1"
		}
		report(fmt.Sprintf("replicar %s (%s)", p.name, vs), r, base)
		g.stop()
	}
}

// group is a running replicar group.
type group struct {
	leader string
	procs  []*exec.Cmd
	// backends are the nodes' redis-server addresses, in node order.
	backends []string
}

// startGroup starts three replicar nodes, each in front of a fresh
// redis-server, the first running the embedded NATS server, and waits until
// one leads with both followers in its ISR.
func startGroup(bin, dir, policy, acks, minInsync string, procs int, profileDir string, startRedis func(...string) string) *group {
	check(os.MkdirAll(dir, 0o755))
	natsAddr := freeAddr()
	g := &group{}
	var https, clients []string
	for i := range 3 {
		node := "n" + strconv.Itoa(i+1)
		backend := startRedis()
		g.backends = append(g.backends, backend)
		env := append(os.Environ(),
			"REPLICAR_NODE_ID="+node,
			"REPLICAR_GROUP=bench",
			"REPLICAR_BACKEND="+backend,
			"REPLICAR_LISTEN="+freeAddr(),
			"REPLICAR_REPL_LISTEN="+freeAddr(),
			"REPLICAR_HTTP_LISTEN="+freeAddr(),
			"REPLICAR_ACK_POLICY="+policy,
			"REPLICAR_LEASE_TTL=1s",
			"REPLICAR_LOG_LEVEL=warn",
		)
		if profileDir != "" {
			env = append(env, "REPLICAR_CPUPROFILE="+filepath.Join(profileDir, policy+"-"+node+".prof"))
		}
		if procs > 0 {
			env = append(env, "GOMAXPROCS="+strconv.Itoa(procs))
		}
		if acks != "" {
			env = append(env, "REPLICAR_ACKS="+acks)
		}
		if minInsync != "" {
			env = append(env, "REPLICAR_MIN_INSYNC="+minInsync)
		}
		if i == 0 {
			env = append(env, "REPLICAR_NATS_URL=", "REPLICAR_NATS_LISTEN="+natsAddr)
		} else {
			env = append(env, "REPLICAR_NATS_URL=nats://"+natsAddr)
		}
		https = append(https, lookup(env, "REPLICAR_HTTP_LISTEN"))
		clients = append(clients, lookup(env, "REPLICAR_LISTEN"))
		logf, err := os.Create(filepath.Join(dir, node+".log"))
		check(err)
		cmd := exec.Command(bin)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		check(cmd.Start())
		g.procs = append(g.procs, cmd)
		cleanups = append(cleanups, func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
		if i == 0 {
			// The others connect to the NATS server the first one runs.
			waitHTTP(https[0], dir)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i, h := range https {
			var st struct {
				Role, State string
				ISR         []string
			}
			if getJSON("http://"+h+"/status", &st) == nil && st.Role == "leader" && st.State == "streaming" && len(st.ISR) == 3 {
				c := redis.NewClient(&redis.Options{Addr: clients[i], Protocol: 2})
				err := c.Set(context.Background(), "bench:ready", "1", 0).Err()
				c.Close()
				if err == nil {
					g.leader = clients[i]
					return g
				}
			}
		}
		if time.Now().After(deadline) {
			fail("replicar group (%s) did not elect a leader with its ISR complete within 30s; logs in %s", policy, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *group) stop() {
	for _, p := range g.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range g.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
		}
	}
}

func lookup(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := bytes.CutPrefix([]byte(env[i]), []byte(name+"=")); ok {
			return string(v)
		}
	}
	return ""
}

func waitHTTP(addr, dir string) {
	for i := 0; ; i++ {
		var st map[string]any
		if getJSON("http://"+addr+"/status", &st) == nil {
			return
		}
		if i > 400 {
			fail("replicar on %s did not start; logs in %s", addr, dir)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func getJSON(url string, v any) error {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func freeAddr() string {
	port, err := localgroup.FreePort()
	check(err)
	return "127.0.0.1:" + strconv.Itoa(port)
}

type result struct {
	Ops float64       `json:"ops"`
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`

	// loadCPU is the CPU seconds the clients' process used, and cpu the
	// line that says where the run's CPU went.
	loadCPU float64
	cpu     string
}

// loadProcess runs the clients in a process of their own and returns what
// they measured.
func loadProcess(addr string, n int, d time.Duration, wait bool) result {
	args := []string{"-load", addr, "-clients", strconv.Itoa(n), "-duration", d.String()}
	if wait {
		args = append(args, "-wait")
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		fail("load on %s: %v: %s", addr, err, errb.String())
	}
	var r result
	check(json.Unmarshal(out.Bytes(), &r))
	r.loadCPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return r
}

// runLoad drives SETs from n clients for d; with wait, each SET is followed
// by WAIT 1 0, as an application that wants one replica's copy does.
func runLoad(addr string, n int, d time.Duration, wait bool) result {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: n, MinIdleConns: n})
	defer c.Close()
	var count atomic.Int64
	lat := make([][]time.Duration, n)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			val := "0123456789abcdef"
			for i := 0; time.Now().Before(deadline); i++ {
				key := fmt.Sprintf("k:%d:%d", w, i%1000)
				start := time.Now()
				var err error
				if wait {
					_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
						p.Set(ctx, key, val, 0)
						p.Do(ctx, "WAIT", 1, 0)
						return nil
					})
				} else {
					err = c.Set(ctx, key, val, 0).Err()
				}
				if err != nil {
					fail("SET on %s: %v", addr, err)
				}
				lat[w] = append(lat[w], time.Since(start))
				count.Add(1)
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	return result{Ops: float64(count.Load()) / d.Seconds(), P50: all[len(all)/2], P99: all[len(all)*99/100]}
}

func report(name string, r, base result) {
	fmt.Printf("%-46s %10.0f %10v %10v %7.2f\n", name, r.Ops, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Ops/base.Ops)
	if r.cpu != "" {
		fmt.Printf("    %s\n", r.cpu)
	}
}

func waitReplicas(primary string, n int) {
	c := redis.NewClient(&redis.Options{Addr: primary})
	defer c.Close()
	for i := 0; ; i++ {
		info, _ := c.Info(context.Background(), "replication").Result()
		if slices.Contains(splitLines(info), "connected_slaves:"+strconv.Itoa(n)) {
			c.Set(context.Background(), "sync", "1", 0)
			if got, _ := c.Do(context.Background(), "WAIT", n, 5000).Int(); got == n {
				return
			}
		}
		if i > 400 {
			fail("replicas did not attach")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			line := s[start:i]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			out = append(out, line)
			start = i + 1
		}
	}
	return out
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

// cleanups stop the servers and remove the temp dir, on success and on
// failure alike.
var cleanups []func()

func cleanup() {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "replbench: "+format+"\n", args...)
	cleanup()
	os.Exit(1)
}
