// Command replbench measures SET throughput and latency, side by side in one
// run, for: the store alone, native Redis replication (a primary and two
// replicas, asynchronous), native Redis with WAIT 1 after every write, and
// replicar with two followers under the ack policies leader, one and all.
// Every server runs on free loopback ports in a temp dir removed at exit.
//
//	go run ./bench/replbench [-clients 50] [-duration 5s]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/internal/localgroup"
)

func main() {
	clients := flag.Int("clients", 50, "concurrent clients")
	duration := flag.Duration("duration", 5*time.Second, "how long each run lasts")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (the replicar runs are the in-process part) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	dir, err := os.MkdirTemp("", "replbench")
	check(err)
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	defer cleanup()
	startRedis := func(args ...string) string {
		r, err := localgroup.StartRedis(filepath.Join(dir, strconv.Itoa(len(cleanups))), args...)
		check(err)
		cleanups = append(cleanups, r.Stop)
		return r.Addr
	}

	fmt.Printf("SET, %d clients, %v per run, 16-byte values\n\n", *clients, *duration)
	fmt.Printf("%-46s %10s %10s %10s %7s\n", "setup", "ops/s", "p50", "p99", "ratio")
	direct := run(startRedis(), *clients, *duration, false)
	report("direct redis-server", direct, direct)

	primary := startRedis()
	for range 2 {
		host, port, _ := net.SplitHostPort(primary)
		startRedis("--replicaof", host, port)
	}
	waitReplicas(primary, 2)
	native := run(primary, *clients, *duration, false)
	report("native replication (async)", native, direct)
	nativeWait := run(primary, *clients, *duration, true)
	report("native SET + WAIT 1", nativeWait, direct)

	logger := zerolog.Nop()
	for _, p := range []ackpolicy.Policy{ackpolicy.LeaderAck(), ackpolicy.FollowerAcks(1), ackpolicy.AllISRAcks(3)} {
		g, err := localgroup.Start(startRedis(), []string{startRedis(), startRedis()}, localgroup.Options{Policy: p, Logger: logger})
		check(err)
		r := run(g.Addr, *clients, *duration, false)
		base, name := native, "vs native async"
		if p.Level() != ackpolicy.Leader {
			base, name = nativeWait, "vs native WAIT 1"
		}
		report(fmt.Sprintf("replicar %s (%s)", p, name), r, base)
		g.Stop()
	}
}

type result struct {
	ops      float64
	p50, p99 time.Duration
}

// run drives SETs from n clients for d; with wait, each SET is followed by
// WAIT 1 0, as an application that wants one replica's copy does.
func run(addr string, n int, d time.Duration, wait bool) result {
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
	return result{ops: float64(count.Load()) / d.Seconds(), p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

func report(name string, r, base result) {
	fmt.Printf("%-46s %10.0f %10v %10v %7.2f\n", name, r.ops, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.ops/base.ops)
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
