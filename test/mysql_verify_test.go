package test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replicar/replicar/test/harness"
	"github.com/replicar/replicar/test/verify"
)

// TestMySQLVerifyShort is the short MySQL run of the verification suite:
// a bank-transfer workload and an append workload run through every
// node's client port and a router while a fixed nemesis kills the leader
// with SIGKILL (and restarts it), pauses the new leader with SIGSTOP for
// longer than the lease (and resumes it), then cuts the leader from NATS
// through a toxiproxy link (blackhole) until another node leads, and
// heals it. Under `all` and `quorum`
// no acknowledged insert may be missing from any backend once the group
// settles, every bank snapshot read through the proxies must show the
// same total, and CHECKSUM TABLE must be equal across the backends.
func TestMySQLVerifyShort(t *testing.T) {
	for _, policy := range []string{"all", "quorum"} {
		t.Run(policy, func(t *testing.T) { mysqlVerify(t, policy) })
	}
}

// bankReader reads the bank's total through pools until stopped; any read
// that succeeds must show the initial total, since every transfer moves
// money inside one transaction.
type bankReader struct {
	stop            atomic.Bool
	wg              sync.WaitGroup
	reads, failed   atomic.Int64
	mu              sync.Mutex
	violations      []string
	accounts, total int64
}

func startBankReader(dbs []*sql.DB, accounts, total int64) *bankReader {
	r := &bankReader{accounts: accounts, total: total}
	for w, db := range dbs {
		r.wg.Go(func() {
			for !r.stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var sum, n int64
				err := db.QueryRowContext(ctx, "SELECT COALESCE(SUM(balance), 0), COUNT(*) FROM app.bank").Scan(&sum, &n)
				cancel()
				if err != nil {
					r.failed.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				r.reads.Add(1)
				if sum != r.total || n != r.accounts {
					r.mu.Lock()
					r.violations = append(r.violations, fmt.Sprintf("reader %d at %s: total %d over %d accounts", w, time.Now().Format("15:04:05.000"), sum, n))
					r.mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return r
}

func (r *bankReader) halt() {
	r.stop.Store(true)
	r.wg.Wait()
}

func mysqlVerify(t *testing.T, policy string) {
	start := time.Now()
	// Every node reaches NATS through its own proxy, so that one can be
	// cut; the router connects directly.
	nats := harness.StartEmbeddedNATS(t)
	netw := verify.NewNet()
	t.Cleanup(netw.Close)
	env := map[string]string{"REPLICAR_ACK_POLICY": policy, "REPLICAR_MIN_INSYNC": "2", "REPLICAR_NATS_URL": nats.URL}
	var natsLinks []*verify.Link
	for i := range 3 {
		l, err := netw.Add(fmt.Sprintf("n%d-nats", i+1), "127.0.0.1:0", nats.Addr)
		if err != nil {
			t.Fatal(err)
		}
		natsLinks = append(natsLinks, l)
		env[fmt.Sprintf("n%d:REPLICAR_NATS_URL", i+1)] = "nats://" + l.Listen
	}
	g := startMySQLGroup(t, 3, env)
	leader := g.waitLeader(t, 30*time.Second)
	createIDs(t, g, leader)
	router := g.startRouter(t)
	pools := func() []*sql.DB {
		return []*sql.DB{g.client(t, 0, "app"), g.client(t, 1, "app"), g.client(t, 2, "app"), g.clientAt(t, router.Addr, "app")}
	}
	load := startAppendLoad(t, pools())
	bank := startBank(t, g.client(t, leader, "app"), pools())
	reader := startBankReader([]*sql.DB{g.clientAt(t, router.Addr, "app"), g.client(t, 0, "app"), g.client(t, 1, "app"), g.client(t, 2, "app")},
		int64(bank.accounts), int64(bank.accounts*bank.initial))
	var faults []string
	time.Sleep(2 * time.Second)

	// Fault 1: SIGKILL of the leader, restarted once another node leads.
	others := []int{(leader + 1) % 3, (leader + 2) % 3}
	if err := g.nodes[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	load.mark()
	killedAt := time.Now()
	second := g.waitLeaderAmong(t, others, 20*time.Second, "no new leader after the leader's SIGKILL")
	faults = append(faults, fmt.Sprintf("kill-leader n%d (n%d led %v later)", leader+1, second+1, time.Since(killedAt).Round(time.Millisecond)))
	time.Sleep(time.Second)
	if err := g.nodes[leader].Start(); err != nil {
		t.Fatalf("restart n%d: %v", leader+1, err)
	}
	time.Sleep(2 * time.Second)

	// Fault 2: SIGSTOP of the current leader for three lease TTLs, then
	// SIGCONT: it must not acknowledge anything once it lost the lease.
	if err := g.nodes[second].Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := g.nodes[second].Cont(); err != nil {
		t.Fatal(err)
	}
	faults = append(faults, fmt.Sprintf("pause-leader n%d 3s", second+1))
	third := g.waitLeader(t, 45*time.Second)
	time.Sleep(2 * time.Second)

	// Fault 3: the leader cut from NATS (election and ISR) until another
	// node leads, then healed: the cut leader must step down before the
	// new one acknowledges anything.
	if err := natsLinks[third].Cut(verify.Blackhole); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	fourth := g.waitLeaderAmong(t, []int{(third + 1) % 3, (third + 2) % 3}, 20*time.Second, "no new leader after the leader was cut from NATS")
	took := time.Since(cutAt)
	time.Sleep(time.Second)
	if err := natsLinks[third].Heal(); err != nil {
		t.Fatal(err)
	}
	faults = append(faults, fmt.Sprintf("partition-nats-leader n%d (n%d led %v later)", third+1, fourth+1, took.Round(time.Millisecond)))
	time.Sleep(2 * time.Second)

	load.halt()
	bank.halt()
	reader.halt()
	final := g.waitLeader(t, 30*time.Second)
	g.sameData(t, final, 30*time.Second)
	g.timeline(t)

	for _, f := range faults {
		t.Logf("fault: %s", f)
	}
	t.Logf("leaders: n%d, then n%d, then n%d, then n%d (settled on n%d)", leader+1, second+1, third+1, fourth+1, final+1)
	// The settled leader's check logs the errors clients saw; the other
	// backends are checked for the same acknowledged ids without
	// repeating them.
	load.check(t, g, final)
	for i := range g.dbs {
		if i != final {
			if lost := lostIDs(t, g.backend(i), load); lost > 0 {
				t.Fatalf("%d acknowledged inserts missing from n%d's backend", lost, i+1)
			}
		}
		bank.check(t, g.backend(i), fmt.Sprintf("n%d's backend", i+1))
	}
	t.Logf("bank snapshots: %d read, %d failed, %d with a wrong total", reader.reads.Load(), reader.failed.Load(), len(reader.violations))
	if len(reader.violations) > 0 {
		t.Fatalf("bank total violated in %d snapshots, first: %s", len(reader.violations), reader.violations[0])
	}
	if reader.reads.Load() == 0 {
		t.Fatal("no bank snapshot read succeeded")
	}
	load.mu.Lock()
	acked := len(load.acked)
	load.mu.Unlock()
	t.Logf("policy %s: %d faults, %d inserts acknowledged (%d failed), %d transfers committed (%d failed), 0 acknowledged lost on 3 backends, CHECKSUM TABLE equal, %v",
		policy, len(faults), acked, load.failed.Load(), bank.committed.Load(), bank.failed.Load(), time.Since(start).Round(time.Second))
}

// lostIDs counts the acknowledged ids of l missing from db.
func lostIDs(t *testing.T, db *sql.DB, l *appendLoad) int {
	t.Helper()
	rows, err := db.Query("SELECT id FROM app.ids")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	for _, id := range l.acked {
		if !have[id] {
			lost++
		}
	}
	return lost
}
