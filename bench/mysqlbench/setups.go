package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/replicar/replicar/internal/localgroup"
)

// target is a running setup sysbench can be pointed at.
type target struct {
	ep endpoint
	// copies are the stores that should end up equal: the primary's (or
	// the leader's mariadbd) first, then the replicas'.
	copies []endpoint
	// procs are the setup's processes, whose CPU time each run reports.
	procs []localgroup.Proc
	// settle waits until every replica has what the primary has, so a run
	// does not start with the previous one's replication backlog.
	settle func(ctx context.Context) error
	// watch is called around each run; the note it returns is printed
	// under the table (semi-sync counters, the ISR after the run).
	watch func(ctx context.Context) (stop func() string)
	stop  func()
}

// servers starts mariadbd processes with the settings every setup shares.
type servers struct {
	dir    string
	common []string
	nextID uint32
}

func (s *servers) start(name string, extra ...string) (*localgroup.MariaDB, error) {
	s.nextID++
	m, err := localgroup.StartMariaDB(filepath.Join(s.dir, name), s.nextID, append(clone(s.common), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	addCleanup(m.Stop)
	return m, nil
}

func clone(s []string) []string { return append([]string(nil), s...) }

func rootEndpoint(m *localgroup.MariaDB) endpoint {
	return endpoint{addr: m.Addr, user: localgroup.MariaDBUser, password: localgroup.MariaDBPassword}
}

func openDB(ep endpoint, db string) (*sql.DB, error) {
	dsn := fmt.Sprintf("%s:%s@tcp(%s)/%s?timeout=5s", ep.user, ep.password, ep.addr, db)
	d, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ep.addr, err)
	}
	d.SetMaxOpenConns(2)
	return d, nil
}

// exec runs statements on ep, each on its own.
func execOn(ctx context.Context, ep endpoint, stmts ...string) error {
	d, err := openDB(ep, "")
	if err != nil {
		return err
	}
	defer d.Close()
	for _, q := range stmts {
		if _, err := d.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s on %s: %w", q, ep.addr, err)
		}
	}
	return nil
}

func queryString(ctx context.Context, ep endpoint, q string) (string, error) {
	d, err := openDB(ep, "")
	if err != nil {
		return "", err
	}
	defer d.Close()
	var v sql.NullString
	if err := d.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return "", fmt.Errorf("%s on %s: %w", q, ep.addr, err)
	}
	return v.String, nil
}

// globalStatus reads one SHOW GLOBAL STATUS value.
func globalStatus(ctx context.Context, ep endpoint, name string) (string, error) {
	return queryString(ctx, ep, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '"+strings.ToUpper(name)+"'")
}

// startDirect is one mariadbd.
func startDirect(s *servers) (*target, error) {
	m, err := s.start("direct")
	if err != nil {
		return nil, err
	}
	return &target{
		ep:     rootEndpoint(m),
		procs:  []localgroup.Proc{{Name: "mariadbd", PID: m.PID()}},
		settle: func(context.Context) error { return nil },
		stop:   m.Stop,
	}, nil
}

// Semi-sync options. The timeout is an hour, so that a slow replica makes
// commits wait, as semi-sync promises, instead of quietly turning the
// primary asynchronous; the run checks the status stays ON regardless.
var (
	semiPrimary = []string{
		"--rpl-semi-sync-master-enabled=ON",
		"--rpl-semi-sync-master-wait-point=AFTER_SYNC",
		"--rpl-semi-sync-master-timeout=3600000",
		"--rpl-semi-sync-master-wait-no-slave=ON",
	}
	semiReplica = []string{"--rpl-semi-sync-slave-enabled=ON"}
)

// startNative is a primary and two replicas replicating by GTID, with or
// without semi-sync.
func startNative(ctx context.Context, s *servers, semi bool) (*target, error) {
	name := "async"
	var pExtra, rExtra []string
	if semi {
		name, pExtra, rExtra = "semisync", semiPrimary, semiReplica
	}
	primary, err := s.start(name+"-primary", pExtra...)
	if err != nil {
		return nil, err
	}
	ms := []*localgroup.MariaDB{primary}
	stop := func() {
		for _, m := range ms {
			m.Stop()
		}
	}
	pep := rootEndpoint(primary)
	var replicas []endpoint
	for i := range 2 {
		r, err := s.start(name+"-replica"+strconv.Itoa(i+1), rExtra...)
		if err != nil {
			stop()
			return nil, err
		}
		ms = append(ms, r)
		rep := rootEndpoint(r)
		replicas = append(replicas, rep)
		err = execOn(ctx, rep,
			fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
				primary.Port, localgroup.MariaDBUser, localgroup.MariaDBPassword),
			"START SLAVE")
		if err != nil {
			stop()
			return nil, err
		}
	}
	want := map[string]string{"Slaves_connected": "2"}
	if semi {
		want["Rpl_semi_sync_master_clients"] = "2"
		want["Rpl_semi_sync_master_status"] = "ON"
	}
	if err := waitStatus(ctx, pep, want, 30*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("%s replicas did not attach: %w", name, err)
	}
	if semi {
		// MariaDB's default is AFTER_COMMIT; the comparison is with AFTER_SYNC.
		wp, err := queryString(ctx, pep, "SELECT @@rpl_semi_sync_master_wait_point")
		if err == nil && wp != "AFTER_SYNC" {
			err = fmt.Errorf("rpl_semi_sync_master_wait_point is %s, not AFTER_SYNC", wp)
		}
		if err != nil {
			stop()
			return nil, err
		}
	}
	t := &target{ep: pep, copies: append([]endpoint{pep}, replicas...), stop: stop}
	for i, m := range ms {
		name := "primary"
		if i > 0 {
			name = "replica" + strconv.Itoa(i)
		}
		t.procs = append(t.procs, localgroup.Proc{Name: name, PID: m.PID()})
	}
	t.settle = func(ctx context.Context) error {
		pos, err := queryString(ctx, pep, "SELECT @@gtid_binlog_pos")
		if err != nil {
			return err
		}
		for _, r := range replicas {
			got, err := queryString(ctx, r, "SELECT MASTER_GTID_WAIT('"+pos+"', 300)")
			if err != nil {
				return err
			}
			if got != "0" {
				return fmt.Errorf("replica %s did not reach %s in 300s", r.addr, pos)
			}
		}
		return nil
	}
	if semi {
		t.watch = func(ctx context.Context) func() string { return watchSemiSync(ctx, pep) }
	}
	if err := t.settle(ctx); err != nil {
		stop()
		return nil, err
	}
	return t, nil
}

// throughRelay starts bench/relay in front of the target's client endpoint
// and points the target there; the relay's CPU is reported with the rest.
func (t *target) throughRelay(bin, dir string) error {
	relay, err := localgroup.StartRelay(bin, t.ep.addr, dir)
	if err != nil {
		t.stop()
		return err
	}
	stopNative := t.stop
	t.stop = func() {
		relay.Stop()
		stopNative()
	}
	t.ep.addr = relay.Addr
	t.procs = append(t.procs, localgroup.Proc{Name: "relay", PID: relay.PID()})
	return nil
}

// waitStatus waits until every named global status has its value.
func waitStatus(ctx context.Context, ep endpoint, want map[string]string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var off []string
		for k, v := range want {
			got, err := globalStatus(ctx, ep, k)
			if err != nil {
				return err
			}
			if got != v {
				off = append(off, fmt.Sprintf("%s=%s (want %s)", k, got, v))
			}
		}
		if len(off) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(strings.Join(off, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchSemiSync samples Rpl_semi_sync_master_status through a run and
// returns, when stopped, the status seen and the yes/no transaction
// counters' growth: a "no" transaction is one committed without a
// replica's acknowledgement.
func watchSemiSync(ctx context.Context, ep endpoint) func() string {
	counters := func() (yes, no int64) {
		y, _ := globalStatus(ctx, ep, "Rpl_semi_sync_master_yes_tx")
		n, _ := globalStatus(ctx, ep, "Rpl_semi_sync_master_no_tx")
		yes, _ = strconv.ParseInt(y, 10, 64)
		no, _ = strconv.ParseInt(n, 10, 64)
		return yes, no
	}
	yes0, no0 := counters()
	var mu sync.Mutex
	offSeen := 0
	samples := 0
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			st, err := globalStatus(ctx, ep, "Rpl_semi_sync_master_status")
			mu.Lock()
			samples++
			if err != nil || st != "ON" {
				offSeen++
			}
			mu.Unlock()
		}
	})
	return func() string {
		close(done)
		wg.Wait()
		yes1, no1 := counters()
		st, _ := globalStatus(ctx, ep, "Rpl_semi_sync_master_status")
		verdict := "ON in every sample"
		if offSeen > 0 || st != "ON" {
			verdict = fmt.Sprintf("NOT ON in %d of %d samples (now %s): the primary fell back to async", offSeen, samples, st)
		}
		return fmt.Sprintf("Rpl_semi_sync_master_status %s; yes_tx +%d, no_tx +%d", verdict, yes1-yes0, no1-no0)
	}
}

// Replicar's own account, which sysbench logs in with; the nodes reach
// their mariadbd as root.
const (
	proxyUser     = "bench"
	proxyPassword = "bench-secret"
)

// policy is one replicar ack policy measured.
type policy struct {
	key, name, policy, acks, minInsync string
}

// node is one replicar process.
type node struct {
	id, http, client, log string
	cmd                   *exec.Cmd
	exited                chan struct{}
}

// startReplicar starts three mariadbd and three replicar nodes in front of
// them, the first running the embedded NATS server, and waits until one
// leads with all three in its ISR and takes a statement.
func startReplicar(ctx context.Context, s *servers, bin string, p policy, profileDir string) (*target, error) {
	dir := filepath.Join(s.dir, "replicar-"+p.key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var ms []*localgroup.MariaDB
	var nodes []*node
	stop := func() {
		for _, n := range nodes {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, n := range nodes {
			select {
			case <-n.exited:
			case <-time.After(10 * time.Second):
				_ = n.cmd.Process.Kill()
				<-n.exited
			}
		}
		for _, m := range ms {
			m.Stop()
		}
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	for i := range 3 {
		id := "n" + strconv.Itoa(i+1)
		m, err := s.start("replicar-" + p.key + "-" + id)
		if err != nil {
			stop()
			return nil, err
		}
		ms = append(ms, m)
		n, err := startNode(bin, dir, id, m, p, natsAddr, i == 0, profileDir)
		if err != nil {
			stop()
			return nil, err
		}
		nodes = append(nodes, n)
		if i == 0 {
			// The others connect to the NATS server the first one runs.
			if err := waitUp(n, 15*time.Second); err != nil {
				stop()
				return nil, err
			}
		}
	}
	leader, err := waitLeader(ctx, nodes, 60*time.Second)
	if err != nil {
		stop()
		return nil, err
	}
	t := &target{ep: endpoint{addr: leader.client, user: proxyUser, password: proxyPassword}, stop: stop}
	for i, n := range nodes {
		role := "follower"
		if n == leader {
			role = "leader"
			t.copies = append([]endpoint{rootEndpoint(ms[i])}, t.copies...)
		} else {
			t.copies = append(t.copies, rootEndpoint(ms[i]))
		}
		t.procs = append(t.procs, localgroup.Proc{Name: "replicar " + n.id + " (" + role + ")", PID: n.cmd.Process.Pid}, localgroup.Proc{Name: "mariadbd " + n.id, PID: ms[i].PID()})
	}
	t.settle = func(ctx context.Context) error { return waitCaughtUp(ctx, leader, nodes, 5*time.Minute) }
	t.watch = func(context.Context) func() string {
		return func() string {
			var st nodeStatus
			if err := getJSON("http://"+leader.http+"/status", &st); err != nil {
				return "leader /status: " + err.Error()
			}
			return fmt.Sprintf("leader %s, ISR [%s] after the run", st.Node, strings.Join(st.ISR, " "))
		}
	}
	return t, nil
}

func startNode(bin, dir, id string, m *localgroup.MariaDB, p policy, natsAddr string, embedsNATS bool, profileDir string) (*node, error) {
	var addrs [3]string
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	n := &node{id: id, client: addrs[0], http: addrs[2], log: filepath.Join(dir, id+".log"), exited: make(chan struct{})}
	env := append(os.Environ(),
		"REPLICAR_PROTOCOL=mysql",
		"REPLICAR_NODE_ID="+id,
		"REPLICAR_GROUP=mysqlbench",
		"REPLICAR_BACKEND="+m.Addr,
		"REPLICAR_BACKEND_USER="+localgroup.MariaDBUser,
		"REPLICAR_BACKEND_PASSWORD="+localgroup.MariaDBPassword,
		"REPLICAR_USER="+proxyUser,
		"REPLICAR_PASSWORD="+proxyPassword,
		"REPLICAR_LISTEN="+addrs[0],
		"REPLICAR_REPL_LISTEN="+addrs[1],
		"REPLICAR_HTTP_LISTEN="+addrs[2],
		"REPLICAR_ACK_POLICY="+p.policy,
		"REPLICAR_LEASE_TTL=1s",
		"REPLICAR_LOG_LEVEL=warn",
	)
	if p.acks != "" {
		env = append(env, "REPLICAR_ACKS="+p.acks)
	}
	if profileDir != "" {
		env = append(env, "REPLICAR_CPUPROFILE="+filepath.Join(profileDir, p.key+"-"+id+".prof"))
	}
	if p.minInsync != "" {
		env = append(env, "REPLICAR_MIN_INSYNC="+p.minInsync)
	}
	if embedsNATS {
		env = append(env, "REPLICAR_NATS_URL=", "REPLICAR_NATS_LISTEN="+natsAddr)
	} else {
		env = append(env, "REPLICAR_NATS_URL=nats://"+natsAddr)
	}
	logf, err := os.Create(n.log)
	if err != nil {
		return nil, err
	}
	n.cmd = exec.Command(bin)
	n.cmd.Env, n.cmd.Stdout, n.cmd.Stderr = env, logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = n.cmd.Wait(); logf.Close(); close(n.exited) }()
	addCleanup(func() {
		_ = n.cmd.Process.Kill()
		<-n.exited
	})
	return n, nil
}

// exitError says why a node ended, from the last line of its log: the
// error field of a JSON log line, or the line itself.
func (n *node) exitError() error {
	b, _ := os.ReadFile(n.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	var entry struct{ Error, Message string }
	if json.Unmarshal([]byte(last), &entry) == nil && entry.Error != "" {
		last = entry.Error
	}
	return fmt.Errorf("node %s exited (%v): %s", n.id, n.cmd.ProcessState, last)
}

func waitUp(n *node, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var st map[string]any
		if getJSON("http://"+n.http+"/status", &st) == nil {
			return nil
		}
		select {
		case <-n.exited:
			return n.exitError()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s did not serve /status within %v", n.id, d)
		}
	}
}

// nodeStatus is the part of /status the bench reads.
type nodeStatus struct {
	Node, Role, State string
	ISR               []string
	Offset, Applied   int64
	Followers         []struct {
		Node       string
		LagEntries int64 `json:"lag_entries"`
		InSync     bool  `json:"in_sync"`
	}
}

func waitLeader(ctx context.Context, nodes []*node, d time.Duration) (*node, error) {
	deadline := time.Now().Add(d)
	var lastErr error
	for {
		for _, n := range nodes {
			select {
			case <-n.exited:
				return nil, n.exitError()
			default:
			}
			var st nodeStatus
			if getJSON("http://"+n.http+"/status", &st) != nil || st.Role != "leader" || st.State != "streaming" || len(st.ISR) != 3 {
				continue
			}
			// The leader must also take a write through its client port.
			lastErr = execOn(ctx, endpoint{addr: n.client, user: proxyUser, password: proxyPassword},
				"CREATE DATABASE IF NOT EXISTS mysqlbench_ready")
			if lastErr == nil {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return nil, fmt.Errorf("the leader's client port refused a write: %w", lastErr)
			}
			return nil, fmt.Errorf("no leader with an ISR of 3 within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCaughtUp waits until the leader sees both followers in sync with no
// entries left to send, and each follower has applied the leader's last
// entry to its mariadbd.
func waitCaughtUp(ctx context.Context, leader *node, nodes []*node, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var st nodeStatus
		err := getJSON("http://"+leader.http+"/status", &st)
		if err == nil && st.Role == "leader" && len(st.Followers) == 2 {
			caught := true
			for _, f := range st.Followers {
				caught = caught && f.InSync && f.LagEntries == 0
			}
			for _, n := range nodes {
				var fs nodeStatus
				if n == leader || !caught {
					continue
				}
				if e := getJSON("http://"+n.http+"/status", &fs); e != nil || fs.Applied < st.Offset {
					caught = false
				}
			}
			if caught {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("followers not caught up within %v (last status: %+v, %v)", d, st, err)
		}
		time.Sleep(100 * time.Millisecond)
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

func freeAddr() (string, error) {
	port, err := localgroup.FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

// compareCopies checks that every copy has the same sbtest tables as the
// first, by CHECKSUM TABLE: proof that the replicas really received what
// was measured.
func compareCopies(ctx context.Context, copies []endpoint, db string, tables int) string {
	if len(copies) < 2 {
		return ""
	}
	names := make([]string, tables)
	for i := range names {
		names[i] = db + ".sbtest" + strconv.Itoa(i+1)
	}
	q := "CHECKSUM TABLE " + strings.Join(names, ", ")
	sums := func(ep endpoint) (string, error) {
		d, err := openDB(ep, "")
		if err != nil {
			return "", err
		}
		defer d.Close()
		rows, err := d.QueryContext(ctx, q)
		if err != nil {
			return "", fmt.Errorf("checksum on %s: %w", ep.addr, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var name string
			var sum sql.NullString
			if err := rows.Scan(&name, &sum); err != nil {
				return "", err
			}
			out = append(out, name+"="+sum.String)
		}
		return strings.Join(out, " "), rows.Err()
	}
	want, err := sums(copies[0])
	if err != nil {
		return "CHECKSUM TABLE failed: " + err.Error()
	}
	for _, c := range copies[1:] {
		got, err := sums(c)
		if err != nil {
			return "CHECKSUM TABLE failed: " + err.Error()
		}
		if got != want {
			return fmt.Sprintf("COPIES DIFFER: %s has %s, %s has %s", copies[0].addr, want, c.addr, got)
		}
	}
	return fmt.Sprintf("all %d copies equal after the runs (CHECKSUM TABLE of the %d tables)", len(copies), tables)
}

// cpuReport lists each process's CPU seconds during a run, sysbench's too.
func cpuReport(m *localgroup.CPUMeter, sysbench float64, d time.Duration) string {
	procs, total := m.Report(1)
	return fmt.Sprintf("CPU s in %v: %s, sysbench %.1f; total %.1f", d, procs, sysbench, total+sysbench)
}
