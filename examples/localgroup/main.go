// Command localgroup runs a replicated group on this machine: three
// redis-servers, a replicar leader in front of the first and two followers
// applying to the others. It drives a small live workload and prints, once a
// second, what each node holds, then keeps the group up until SIGINT or
// SIGTERM. `make run` starts it; `make stop` stops it.
//
//	go run ./examples/localgroup [-dir .run] [-policy quorum]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/internal/localgroup"
)

func main() {
	dir := flag.String("dir", ".run", "where the stores keep their files")
	policyName := flag.String("policy", "quorum", "ack policy: none, leader, one, quorum, all")
	writes := flag.Duration("workload", 10*time.Second, "how long the demo workload runs")
	flag.Parse()
	policy, err := ackpolicy.Parse(*policyName, 1, 2)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fail(err)
	}
	pidFile := filepath.Join(*dir, "localgroup.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644)
	defer os.Remove(pidFile)

	var stores []*localgroup.Redis
	defer func() {
		for _, r := range stores {
			r.Stop()
		}
	}()
	for i := range 3 {
		r, err := localgroup.StartRedis(filepath.Join(*dir, fmt.Sprintf("redis%d", i+1)))
		if err != nil {
			fail(err)
		}
		stores = append(stores, r)
	}
	logger := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	g, err := localgroup.Start(stores[0].Addr, []string{stores[1].Addr, stores[2].Addr}, localgroup.Options{Policy: policy, MaxLag: 2 * time.Second, Logger: logger})
	if err != nil {
		fail(err)
	}
	defer g.Stop()

	fmt.Printf(`
replicar local group (ack policy %s)
  clients:  redis-cli -p %s              (leader n1; writes are replicated)
  status:   bin/replicar status --addr %s   (or curl -s http://%s/status)
  stores:   n1 %s, n2 %s, n3 %s  (redis-cli -h 127.0.0.1 -p PORT)
  stop:     Ctrl-C here, or: make stop

`, policy, port(g.Addr), g.HTTPAddr, g.HTTPAddr, stores[0].Addr, stores[1].Addr, stores[2].Addr)

	c := redis.NewClient(&redis.Options{Addr: g.Addr, Protocol: 2})
	defer c.Close()
	var acked, failed int
	end := time.Now().Add(*writes)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	fmt.Printf("%-8s %8s %8s %10s %10s %10s\n", "time", "acked", "errors", "n1 offset", "n2 applied", "n3 applied")
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			fmt.Println("stopping")
			return
		case <-tick.C:
			st := g.Node.Snapshot()
			fs := g.FollowerStatus()
			applied := []string{"-", "-"}
			for k := range min(len(fs), 2) {
				applied[k] = strconv.FormatUint(fs[k].Applied.Offset, 10)
			}
			fmt.Printf("%-8s %8d %8d %10d %10s %10s\n", time.Now().Format("15:04:05"), acked, failed, st.Last, applied[0], applied[1])
			if time.Now().After(end) && i > 0 && end.Unix() > 0 {
				fmt.Println("workload done; the group stays up (Ctrl-C or make stop)")
				end = time.Time{}
			}
		default:
		}
		if end.IsZero() {
			<-ctx.Done()
			fmt.Println("stopping")
			return
		}
		err := c.Incr(ctx, "demo:counter").Err()
		if err == nil {
			err = c.Set(ctx, fmt.Sprintf("demo:key:%d", i%100), i, time.Hour).Err()
		}
		if err != nil {
			failed++
		} else {
			acked++
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func port(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "localgroup:", err)
	os.Exit(1)
}
