package test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replicar/replicar/test/harness"
	"github.com/replicar/replicar/test/verify"
)

func init() {
	// The driver logs every connection a test kills on purpose.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
}

// mysqlClientPassword is the proxy's own account password (REPLICAR_PASSWORD)
// in the MySQL group tests, distinct from the backends' root password.
const mysqlClientPassword = "proxy-secret"

// mysqlGroup is a replicated MySQL group of real processes: an embedded
// NATS server, and per node a mariadbd configured for row capture and a
// replicar binary with REPLICAR_PROTOCOL=mysql in front of it. The
// status helpers of procGroup work on it unchanged.
type mysqlGroup struct {
	*procGroup
	dbs []*harness.MariaDB
	// direct are pools on each mariadbd, bypassing the proxy.
	direct []*sql.DB
	// env is a node's environment for a backend (nil: a router's).
	env func(backend *harness.MariaDB) map[string]string
}

// startMySQLGroup starts n nodes with env on top of the defaults below
// ("nK:NAME" keys set NAME on node K only).
func startMySQLGroup(t *testing.T, n int, env map[string]string) *mysqlGroup {
	t.Helper()
	g := newMySQLGroup(t, n, env, harness.StartEmbeddedNATS(t).URL)
	bin := harness.BuildReplicar(t)
	for i := range g.dbs {
		g.nodes = append(g.nodes, harness.StartReplicar(t, bin, fmt.Sprintf("n%d", i+1), g.nodeEnv(i, env)))
	}
	return g
}

// startMySQLTopology is startMySQLGroup with every node behind links a
// nemesis may cut (verify.Topology): NATS, and its peers' connections to
// its client and replication ports. Routers reach NATS directly.
func startMySQLTopology(t *testing.T, n int, env map[string]string) (*mysqlGroup, *verify.Topology) {
	t.Helper()
	nats := harness.StartEmbeddedNATS(t)
	g := newMySQLGroup(t, n, env, nats.URL)
	tp := verify.NewTopology(t)
	bin := harness.BuildReplicar(t)
	for i := range g.dbs {
		vars := g.nodeEnv(i, env)
		vars["REPLICAR_ADVERTISE"] = "127.0.0.1"
		tp.AddNode(t, bin, fmt.Sprintf("n%d", i+1), nats.Addr, vars)
	}
	g.nodes = tp.Nodes
	return g, tp
}

// newMySQLGroup starts the group's n mariadbds and fixes its environment;
// the nodes are started by the caller.
func newMySQLGroup(t *testing.T, n int, env map[string]string, natsURL string) *mysqlGroup {
	t.Helper()
	harness.Require(t, "mariadbd", "mariadb-install-db")
	g := &mysqlGroup{procGroup: &procGroup{}}
	for i := range n {
		db := harness.StartMariaDB(t, harness.MariaDBLogBin(true), harness.MariaDBBinlogFormat("ROW"),
			harness.MariaDBServerID(uint32(100+i+1)), harness.MariaDBArgs("--binlog-row-metadata=FULL"))
		g.dbs = append(g.dbs, db)
		g.direct = append(g.direct, db.DB())
	}
	group := "m" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(group) > 60 {
		group = group[:60]
	}
	g.env = func(backend *harness.MariaDB) map[string]string {
		vars := map[string]string{
			"REPLICAR_PROTOCOL":      "mysql",
			"REPLICAR_PASSWORD":      mysqlClientPassword,
			"REPLICAR_NATS_URL":      natsURL,
			"REPLICAR_GROUP":         group,
			"REPLICAR_LEASE_TTL":     "1s",
			"REPLICAR_MAX_LAG":       "1s",
			"REPLICAR_ACK_TIMEOUT":   "5s",
			"REPLICAR_FAILOVER_WAIT": "10s",
			"REPLICAR_LOG_LEVEL":     "info",
		}
		if backend != nil {
			vars["REPLICAR_BACKEND"] = backend.Addr
			vars["REPLICAR_BACKEND_USER"] = backend.User
			vars["REPLICAR_BACKEND_PASSWORD"] = backend.Password
		}
		for k, v := range env {
			if !strings.Contains(k, ":") {
				vars[k] = v
			}
		}
		return vars
	}
	return g
}

// nodeEnv is node i's environment: the group's, with env's "nK:NAME"
// keys for it.
func (g *mysqlGroup) nodeEnv(i int, env map[string]string) map[string]string {
	vars := g.env(g.dbs[i])
	for k, v := range env {
		if node, name, ok := strings.Cut(k, ":"); ok && node == fmt.Sprintf("n%d", i+1) {
			vars[name] = v
		}
	}
	return vars
}

// startRouter starts a router of the group: a replicar with no backend
// that forwards every session to the leader.
func (g *mysqlGroup) startRouter(t *testing.T) *harness.Replicar {
	t.Helper()
	return harness.StartReplicar(t, harness.BuildReplicar(t), "r1", g.env(nil))
}

// client opens a database/sql pool on node i's client port, logged in as
// the proxy's own user, with multi-statements on and server-side prepared
// statements (interpolateParams off, the driver's default).
func (g *mysqlGroup) client(t *testing.T, i int, db string) *sql.DB {
	t.Helper()
	return g.clientAt(t, g.nodes[i].Addr, db)
}

// clientAt is client for any client port (a router's).
func (g *mysqlGroup) clientAt(t *testing.T, addr, db string) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd, cfg.DBName = "tcp", addr, "root", mysqlClientPassword, db
	cfg.MultiStatements = true
	cfg.ParseTime = true
	cfg.Timeout = 5 * time.Second
	cfg.ReadTimeout = 30 * time.Second
	cfg.WriteTimeout = 10 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool := sql.OpenDB(conn)
	pool.SetMaxIdleConns(16)
	t.Cleanup(func() { pool.Close() })
	return pool
}

// backend is a direct connection to node i's mariadbd (not through the
// proxy), for checks.
func (g *mysqlGroup) backend(i int) *sql.DB { return g.direct[i] }

var autoIncrementRE = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

// tablesFingerprint describes every user table of db: its definition (less the
// AUTO_INCREMENT counter, which a rolled-back insert moves on the primary
// only) and its row count and CHECKSUM TABLE, keyed by schema.table.
// replicar's own schema is left out.
func tablesFingerprint(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "+
		"WHERE TABLE_SCHEMA NOT IN ('mysql','sys','information_schema','performance_schema','__replicar')")
	if err != nil {
		return nil, err
	}
	type tbl struct{ schema, name, typ string }
	var tables []tbl
	for rows.Next() {
		var x tbl
		if err := rows.Scan(&x.schema, &x.name, &x.typ); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, x)
	}
	rows.Close()
	out := map[string]string{}
	for _, x := range tables {
		name := "`" + x.schema + "`.`" + x.name + "`"
		if x.typ == "VIEW" {
			out[name] = "view"
			continue
		}
		var n, def string
		if err := db.QueryRowContext(ctx, "SHOW CREATE TABLE "+name).Scan(&n, &def); err != nil {
			return nil, err
		}
		var sum sql.NullInt64
		if err := db.QueryRowContext(ctx, "CHECKSUM TABLE "+name).Scan(&n, &sum); err != nil {
			return nil, err
		}
		var count int64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+name).Scan(&count); err != nil {
			return nil, err
		}
		out[name] = fmt.Sprintf("rows=%d checksum=%d %s", count, sum.Int64, autoIncrementRE.ReplaceAllString(def, ""))
	}
	return out, nil
}

// fingerprintDiff lists where b differs from a.
func fingerprintDiff(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, fmt.Sprintf("%s:\n  want %s\n  got  %s", k, v, b[k]))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+": only here")
		}
	}
	sort.Strings(out)
	return out
}

// sameData waits until every running node's backend holds the leader's
// tables with equal CHECKSUM TABLE, and returns the leader's fingerprint.
// The followers apply what the leader's capture logged, which trails the
// leader's commits a little, so equality is awaited rather than checked
// once.
func (g *mysqlGroup) sameData(t *testing.T, leader int, timeout time.Duration) map[string]string {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var last []string
	for {
		want, err := tablesFingerprint(ctx, g.backend(leader))
		if err != nil {
			t.Fatalf("fingerprint of n%d's backend: %v", leader+1, err)
		}
		last = last[:0]
		for i := range g.dbs {
			if i == leader || !g.nodes[i].Running() {
				continue
			}
			got, err := tablesFingerprint(ctx, g.backend(i))
			if err != nil {
				t.Fatalf("fingerprint of n%d's backend: %v", i+1, err)
			}
			for _, d := range fingerprintDiff(want, got) {
				last = append(last, fmt.Sprintf("n%d %s", i+1, d))
			}
		}
		if len(last) == 0 {
			if len(want) == 0 {
				t.Fatal("no tables compared")
			}
			return want
		}
		if time.Now().After(deadline) {
			g.timeline(t)
			t.Fatalf("backends differ from the leader n%d's after %v:\n%s", leader+1, timeout, strings.Join(last, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// replicarStatus reads SHOW REPLICAR STATUS through node i's client port.
func (g *mysqlGroup) replicarStatus(t *testing.T, i int) map[string]string {
	t.Helper()
	rows, err := g.client(t, i, "").Query("SHOW REPLICAR STATUS")
	if err != nil {
		t.Fatalf("SHOW REPLICAR STATUS on n%d: %v", i+1, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// wipe empties node i's backend as a lost disk would, while its node is
// down: every user schema and replicar's own are dropped.
func (g *mysqlGroup) wipe(t *testing.T, i int, schemas ...string) {
	t.Helper()
	db := g.backend(i)
	for _, s := range append(schemas, "__replicar") {
		if _, err := db.Exec("DROP DATABASE IF EXISTS `" + s + "`"); err != nil {
			t.Fatalf("wipe n%d: %v", i+1, err)
		}
	}
}

// logCount counts the lines of node i's log holding s.
func (g *mysqlGroup) logCount(i int, s string) int {
	return strings.Count(g.nodes[i].LogTail(100000), s)
}
