package test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	for _, run := range mysqlVerifyRuns {
		t.Run(run.policy+"-"+run.format, func(t *testing.T) { mysqlVerify(t, run.policy, run.format) })
	}
}

// mysqlVerifyRuns are the policies and capture formats the verification
// runs cover: both strict policies in row mode (the default), and
// statement mode under quorum.
var mysqlVerifyRuns = []struct{ policy, format string }{{"all", "row"}, {"quorum", "row"}, {"quorum", "statement"}}

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

// mysqlRun is a MySQL group behind cuttable links with the verification
// workloads running on it.
type mysqlRun struct {
	g      *mysqlGroup
	tp     *verify.Topology
	load   *appendLoad
	bank   *bankLoad
	reader *bankReader
	start  time.Time
	// leader is the node that led when the workloads started.
	leader int
}

// startMySQLRun starts three nodes under policy (MIN_INSYNC=2), a router,
// and the append, bank and bank-reader workloads through every client port.
func startMySQLRun(t *testing.T, policy, format string) *mysqlRun {
	r := &mysqlRun{start: time.Now()}
	r.g, r.tp = startMySQLTopology(t, 3, map[string]string{"REPLICAR_ACK_POLICY": policy, "REPLICAR_MIN_INSYNC": "2",
		"REPLICAR_MYSQL_FORMAT": format})
	g := r.g
	r.leader = g.waitLeader(t, 30*time.Second)
	createIDs(t, g, r.leader)
	router := g.startRouter(t)
	pools := func() []*sql.DB {
		return []*sql.DB{g.client(t, 0, "app"), g.client(t, 1, "app"), g.client(t, 2, "app"), g.clientAt(t, router.Addr, "app")}
	}
	r.load = startAppendLoad(t, pools())
	r.bank = startBank(t, g.client(t, r.leader, "app"), pools())
	r.reader = startBankReader([]*sql.DB{g.clientAt(t, router.Addr, "app"), g.client(t, 0, "app"), g.client(t, 1, "app"), g.client(t, 2, "app")},
		int64(r.bank.accounts), int64(r.bank.accounts*r.bank.initial))
	return r
}

// finish stops the workloads, waits for the group to settle, and fails on
// any acknowledged insert missing from a backend, a bank total that is not
// the initial one (in a snapshot read through the proxies or on a
// backend), or backends that differ (CHECKSUM TABLE).
func (r *mysqlRun) finish(t *testing.T, policy string, faults int) {
	g := r.g
	r.load.halt()
	r.bank.halt()
	r.reader.halt()
	final := g.waitLeader(t, 60*time.Second)
	g.sameData(t, final, 60*time.Second)
	g.timeline(t)
	// The settled leader's check logs the errors clients saw; the other
	// backends are checked for the same acknowledged ids without
	// repeating them.
	r.load.check(t, g, final)
	for i := range g.dbs {
		if i != final {
			if lost := lostIDs(t, g.backend(i), r.load); lost > 0 {
				t.Fatalf("%d acknowledged inserts missing from n%d's backend", lost, i+1)
			}
		}
		r.bank.check(t, g.backend(i), fmt.Sprintf("n%d's backend", i+1))
	}
	t.Logf("bank snapshots: %d read, %d failed, %d with a wrong total", r.reader.reads.Load(), r.reader.failed.Load(), len(r.reader.violations))
	if len(r.reader.violations) > 0 {
		t.Fatalf("bank total violated in %d snapshots, first: %s", len(r.reader.violations), r.reader.violations[0])
	}
	if r.reader.reads.Load() == 0 {
		t.Fatal("no bank snapshot read succeeded")
	}
	r.load.mu.Lock()
	acked := len(r.load.acked)
	r.load.mu.Unlock()
	t.Logf("policy %s: %d faults, %d inserts acknowledged (%d failed), %d transfers committed (%d failed), 0 acknowledged lost on 3 backends, CHECKSUM TABLE equal, settled on n%d, %v",
		policy, faults, acked, r.load.failed.Load(), r.bank.committed.Load(), r.bank.failed.Load(), final+1, time.Since(r.start).Round(time.Second))
}

func mysqlVerify(t *testing.T, policy, format string) {
	r := startMySQLRun(t, policy, format)
	g, leader := r.g, r.leader
	natsLinks := r.tp.NATSLinks
	var faults []string
	time.Sleep(2 * time.Second)

	// Fault 1: SIGKILL of the leader, restarted once another node leads.
	others := []int{(leader + 1) % 3, (leader + 2) % 3}
	if err := g.nodes[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	r.load.mark()
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

	for _, f := range faults {
		t.Logf("fault: %s", f)
	}
	t.Logf("leaders: n%d, then n%d, then n%d, then n%d", leader+1, second+1, third+1, fourth+1)
	r.finish(t, policy, len(faults))
}

// TestMySQLChaos is the long randomized MySQL run (`make chaos-mysql
// DURATION=10m`): under all (MIN_INSYNC=2) and quorum, the verification
// workloads run while the test/verify nemesis deals faults at random for
// REPLICAR_CHAOS_DURATION per policy: SIGKILL and SIGSTOP of the leader
// or a follower, a node cut from NATS, the leader cut from its followers
// (replication and forwarding), a node isolated from everything; links are
// blackholed or refused. REPLICAR_VERIFY_SEED repeats the choices. The
// checks are the short run's. It is skipped when the duration is unset.
func TestMySQLChaos(t *testing.T) {
	d, ok := verify.ChaosDuration(t)
	if !ok {
		t.Skip("REPLICAR_CHAOS_DURATION is not set; run `make chaos-mysql DURATION=10m`")
	}
	seed := verify.Seed(t)
	t.Logf("seed %d (REPLICAR_VERIFY_SEED repeats the nemesis' choices), %v per policy", seed, d)
	for _, run := range mysqlVerifyRuns {
		t.Run(run.policy+"-"+run.format, func(t *testing.T) { mysqlChaos(t, run.policy, run.format, d, seed) })
	}
}

func mysqlChaos(t *testing.T, policy, format string, d time.Duration, seed int64) {
	r := startMySQLRun(t, policy, format)
	time.Sleep(2 * time.Second)
	nem := verify.NewNemesis(r.tp, verify.NemesisConfig{Seed: seed, QuietMin: time.Second, QuietMax: 3 * time.Second,
		HoldMin: 1500 * time.Millisecond, HoldMax: 5 * time.Second, PauseMin: 1500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	nem.Run(ctx)
	// Everything is healed: writes must go through again.
	r.load.mark()
	healed := time.Now()
	for r.load.firstAfter.Load() == 0 {
		if time.Since(healed) > time.Minute {
			t.Fatal("no insert acknowledged within a minute of the nemesis healing every fault")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("writes acknowledged again %v after the last fault was healed", time.Since(healed).Round(time.Millisecond))
	faults := nem.Faults()
	for _, f := range faults {
		t.Logf("fault: %s", f)
		if f.Err != "" {
			t.Errorf("fault %s could not be injected or healed: %s", f.Name(), f.Err)
		}
	}
	t.Logf("faults by kind: %v", nem.Counts())
	r.finish(t, policy, len(faults))
}

// lostIDs counts the acknowledged ids of l missing from db.
func lostIDs(t *testing.T, db *sql.DB, l *appendLoad) int {
	t.Helper()
	have := storedIDs(t, db)
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

// storedIDs is the set of ids in db's app.ids.
func storedIDs(t *testing.T, db *sql.DB) map[string]bool {
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
	return have
}
