package mysql

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gm "github.com/go-mysql-org/go-mysql/mysql"
	gsql "github.com/go-sql-driver/mysql"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/internal/tlsconf/tlstest"
	"github.com/replicar/replicar/test/harness"
)

// TestFrontEnd runs the front end against one real mariadbd (log_bin,
// binlog_format=ROW), each subtest in a database of its own.
func TestFrontEnd(t *testing.T) {
	m := harness.StartMariaDB(t)
	direct := m.DB()

	t.Run("Auth", func(t *testing.T) { testAuth(t, m) })
	t.Run("CLI", func(t *testing.T) { testCLI(t, m) })
	t.Run("PreparedMetadata", func(t *testing.T) { testPreparedMetadata(t, m, direct) })
	t.Run("MultiStatements", func(t *testing.T) { testMultiStatements(t, m) })
	t.Run("Streaming", func(t *testing.T) { testStreaming(t, m) })
	t.Run("ErrorsKeepCodes", func(t *testing.T) { testErrors(t, m, direct) })
	t.Run("MaxClients", func(t *testing.T) { testMaxClients(t, m) })
	t.Run("CommitHeld", func(t *testing.T) { testCommitHeld(t, m, direct) })
	t.Run("ConcurrentGTIDs", func(t *testing.T) { testConcurrentGTIDs(t, m, direct) })
	t.Run("Uncommitted", func(t *testing.T) { testUncommitted(t, m, direct) })
	t.Run("AdmitRefusal", func(t *testing.T) { testAdmitRefusal(t, m, direct) })
	t.Run("ReadFence", func(t *testing.T) { testReadFence(t, m) })
	t.Run("ShowReplicarStatus", func(t *testing.T) { testShowStatus(t, m) })
	t.Run("SessionCommands", func(t *testing.T) { testSessionCommands(t, m) })
	t.Run("ContextCancel", func(t *testing.T) { testContextCancel(t, m, direct) })
	t.Run("KillTranslated", func(t *testing.T) { testKill(t, m) })
	t.Run("LocalInfile", func(t *testing.T) { testLocalInfile(t, m, direct) })
	t.Run("Routing", func(t *testing.T) { testRouting(t, m, direct) })
	t.Run("Application", func(t *testing.T) { testApplication(t, m, direct) })
	t.Run("IdleReconnect", func(t *testing.T) { testIdleReconnect(t, m, direct) })
	t.Run("TLS", func(t *testing.T) { testTLS(t, m) })
	t.Run("ForwardTLS", func(t *testing.T) { testForwardTLS(t, m, direct) })
	t.Run("BigPackets", func(t *testing.T) { testBigPackets(t, m, direct) })
	t.Run("Sysbench", func(t *testing.T) { testSysbench(t, m) })
}

// testIdleReconnect closes a session's backend connection from the
// backend side while the session is idle: the next statement runs on a new
// backend connection with the session carried over; inside a transaction
// the client is told the transaction is lost.
func testIdleReconnect(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE ir", "CREATE TABLE ir.t (a INT)")
	p := startProxy(t, m, nil)
	db := p.db(t, "ir", nil)
	ctx := ctxT(t, 30*time.Second)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustExec(t, conn, "SET @kept = 'yes'")
	var thread, thread2 int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&thread); err != nil {
		t.Fatal(err)
	}
	mustExec(t, direct, fmt.Sprintf("KILL %d", thread))
	time.Sleep(idleCheck + 100*time.Millisecond)
	var kept string
	if err := conn.QueryRowContext(ctx, "SELECT @kept, CONNECTION_ID()").Scan(&kept, &thread2); err != nil {
		t.Fatalf("statement after the backend closed an idle session: %v", err)
	}
	if kept != "yes" || thread2 == thread {
		t.Errorf("@kept=%q, thread %d→%d", kept, thread, thread2)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, direct, fmt.Sprintf("KILL %d", thread2))
	time.Sleep(idleCheck + 100*time.Millisecond)
	_, err = tx.Exec("INSERT INTO t VALUES (2)")
	if me := mysqlErr(t, err); me.Number != 1105 || !strings.Contains(me.Message, "transaction is lost") {
		t.Errorf("transaction whose backend connection closed: %v", err)
	}
	_ = tx.Rollback()
}

// selfSigned makes a server certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "replicar-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func testTLS(t *testing.T, m *harness.MariaDB) {
	tlsCfg := selfSigned(t)
	for _, plugin := range []string{gm.AUTH_NATIVE_PASSWORD, gm.AUTH_CACHING_SHA2_PASSWORD} {
		t.Run(plugin, func(t *testing.T) {
			p := startProxy(t, m, func(c *Config) { c.TLS, c.AuthPlugin = tlsCfg, plugin })
			db := p.db(t, "", func(c *gsql.Config) { c.TLSConfig = "skip-verify"; c.MultiStatements = true })
			// skip-verify makes go-sql-driver insist on TLS.
			rows, err := db.Query("SELECT 1; SELECT 2")
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				for rows.Next() {
					n++
				}
				if !rows.NextResultSet() {
					break
				}
			}
			rows.Close()
			if n != 2 {
				t.Errorf("%d rows over TLS", n)
			}
			out, err := cli(t, p, "--ssl", "--ssl-verify-server-cert=0", "-e", "SELECT 5")
			if err != nil || strings.TrimSpace(out) != "5" {
				t.Errorf("mariadb client over TLS: %v\n%s", err, out)
			}
		})
	}
}

// testForwardTLS: a session a follower forwards to the leader's client
// port goes over TLS, verified against the group's CA (the leader's
// certificate names 127.0.0.1). A follower that trusts another CA cannot
// forward at all, which a plaintext forward would not notice.
func testForwardTLS(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE ftls", "CREATE TABLE ftls.t (a INT PRIMARY KEY)")
	ca, other := tlstest.NewCA(t, "group CA"), tlstest.NewCA(t, "other CA")
	leaderCert := ca.Loopback(t, "leader").TLSCertificate(t)
	leader := startProxy(t, m, func(c *Config) {
		c.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{leaderCert}}
	})
	peer := func(roots *tlstest.CA) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots.Pool(),
			Certificates: []tls.Certificate{roots.Loopback(t, "follower").TLSCertificate(t)}}
	}
	follower := startProxy(t, m, func(c *Config) { c.ForwardTLS = peer(ca) })
	follower.srv.SetRoute(Route{Mode: RouteForward, Leader: leader.addr})
	db := follower.db(t, "ftls", nil)
	held := len(leader.offsets.gtids())
	mustExec(t, db, "INSERT INTO t VALUES (1)")
	if len(leader.offsets.gtids()) != held+1 {
		t.Fatalf("the forwarded write was not held by the leader")
	}

	intruder := startProxy(t, m, func(c *Config) {
		c.ForwardTLS = peer(other)
		c.FailoverWait = 200 * time.Millisecond
	})
	intruder.srv.SetRoute(Route{Mode: RouteForward, Leader: leader.addr})
	idb := intruder.db(t, "ftls", nil)
	_, err := idb.Exec("INSERT INTO t VALUES (2)")
	if err == nil {
		t.Fatal("a follower that does not trust the leader's certificate forwarded a write")
	}
	var n int
	if err := direct.QueryRow("SELECT COUNT(*) FROM ftls.t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows (%v), want only the write forwarded over verified TLS", n, err)
	}
}

// testBigPackets sends and reads back a value longer than one protocol
// packet (16 MiB), which travels as continuation packets both ways.
func testBigPackets(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "SET GLOBAL max_allowed_packet = 67108864", "CREATE DATABASE bp", "CREATE TABLE bp.t (id INT PRIMARY KEY, v LONGBLOB)")
	p := startProxy(t, m, nil)
	db := p.db(t, "bp", nil)
	val := make([]byte, 17<<20)
	for i := range val {
		val[i] = byte(i * 7)
	}
	// A prepared statement's execute packet, then a text-protocol row.
	if _, err := db.Exec("INSERT INTO t VALUES (1, ?)", val); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := db.QueryRow("SELECT v FROM t WHERE id = 1").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, val) {
		t.Errorf("a 17 MiB value came back with %d bytes, not equal", len(got))
	}
}

func testAuth(t *testing.T, m *harness.MariaDB) {
	for _, plugin := range []string{gm.AUTH_NATIVE_PASSWORD, gm.AUTH_CACHING_SHA2_PASSWORD} {
		t.Run(plugin, func(t *testing.T) {
			p := startProxy(t, m, func(c *Config) { c.AuthPlugin = plugin })
			// Twice: caching_sha2_password's second login takes the fast
			// path.
			for range 2 {
				db := p.db(t, "", nil)
				var user string
				if err := db.QueryRow("SELECT CURRENT_USER()").Scan(&user); err != nil {
					t.Fatalf("login as %s: %v", proxyUser, err)
				}
				if !strings.HasPrefix(user, "root@") {
					t.Errorf("backend session runs as %q, want the backend user root", user)
				}
				db.Close()
			}
			// go-mysql's client as well.
			c, err := client.Connect(p.addr, proxyUser, proxyPassword, "")
			if err != nil {
				t.Fatalf("go-mysql client: %v", err)
			}
			if _, err := c.Execute("SELECT 1"); err != nil {
				t.Fatal(err)
			}
			c.Close()

			// A user from the users file, and one without a password.
			db := p.db(t, "", func(c *gsql.Config) { c.User, c.Passwd = "other", "other-pw" })
			if err := db.Ping(); err != nil {
				t.Fatalf("users file account: %v", err)
			}
			db = p.db(t, "", func(c *gsql.Config) { c.User, c.Passwd = "nopw", "" })
			if err := db.Ping(); err != nil {
				t.Fatalf("account without password: %v", err)
			}
			// Wrong password, unknown user, and the backend's own account:
			// access denied alike.
			for _, cred := range [][2]string{{proxyUser, "wrong"}, {"nobody", "x"}, {m.User, m.Password}, {"nopw", "x"}} {
				db := p.db(t, "", func(c *gsql.Config) { c.User, c.Passwd = cred[0], cred[1] })
				err := db.Ping()
				if err == nil {
					t.Fatalf("login as %s/%s succeeded", cred[0], cred[1])
				}
				if me := mysqlErr(t, err); me.Number != 1045 {
					t.Errorf("login as %s: error %d %s, want 1045", cred[0], me.Number, me.Message)
				}
			}
		})
	}
}

// cli runs the mariadb command-line client against the proxy.
func cli(t *testing.T, p *proxy, args ...string) (string, error) {
	t.Helper()
	harness.Require(t, "mariadb")
	bin, err := harness.LookPath("mariadb")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(p.addr, ":")
	base := []string{"--no-defaults", "--protocol=TCP", "-h", host, "-P", port, "-u", proxyUser, "-p" + proxyPassword, "--batch", "--skip-column-names"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(base, args...)...).CombinedOutput()
	return string(out), err
}

func testCLI(t *testing.T, m *harness.MariaDB) {
	for _, plugin := range []string{gm.AUTH_NATIVE_PASSWORD, gm.AUTH_CACHING_SHA2_PASSWORD} {
		t.Run(plugin, func(t *testing.T) {
			p := startProxy(t, m, func(c *Config) { c.AuthPlugin = plugin })
			out, err := cli(t, p, "-e", "CREATE DATABASE IF NOT EXISTS cli; CREATE TABLE IF NOT EXISTS cli.t (a INT); INSERT INTO cli.t VALUES (1),(2); SELECT SUM(a) FROM cli.t; DROP DATABASE cli")
			if err != nil {
				t.Fatalf("mariadb client: %v\n%s", err, out)
			}
			if strings.TrimSpace(out) != "3" {
				t.Errorf("mariadb client printed %q, want 3", out)
			}
			// The client asks for the other plugin itself.
			other := gm.AUTH_CACHING_SHA2_PASSWORD
			if plugin == other {
				other = gm.AUTH_NATIVE_PASSWORD
			}
			out, err = cli(t, p, "--default-auth="+other, "-e", "SELECT 7")
			if err != nil || strings.TrimSpace(out) != "7" {
				t.Fatalf("mariadb client with --default-auth=%s: %v\n%s", other, err, out)
			}
			// A multi-statement query in one COM_QUERY (the client splits
			// on its delimiter, here //).
			out, err = cli(t, p, "--delimiter=//", "-e", "SELECT 1; SELECT 2//")
			if err != nil || strings.Fields(out)[0] != "1" || len(strings.Fields(out)) != 2 {
				t.Fatalf("multi-statement through the mariadb client: %v\n%s", err, out)
			}
			out, err = cli(t, p, "-e", "SELECT * FROM no_such_db.t")
			if err == nil || !strings.Contains(out, "ERROR 1146 (42S02)") {
				t.Errorf("error through the mariadb client: %v\n%s", err, out)
			}
		})
	}
}

func testPreparedMetadata(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE ps",
		"CREATE TABLE ps.t (id BIGINT UNSIGNED PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(10,3), at DATETIME(3), data BLOB, f DOUBLE)",
		"INSERT INTO ps.t VALUES (1,'a',1.5,'2020-01-02 03:04:05.678','x',0.25),(2,'b',NULL,NULL,NULL,NULL)")
	p := startProxy(t, m, nil)
	q := "SELECT id, name, price, at, data, f FROM ps.t WHERE id >= ? AND name <> ? ORDER BY id"

	// Parameter and column counts, as the backend says them.
	for _, addr := range []string{p.addr, m.Addr} {
		user, pw := proxyUser, proxyPassword
		if addr == m.Addr {
			user, pw = m.User, m.Password
		}
		c, err := client.Connect(addr, user, pw, "ps")
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Prepare(q)
		if err != nil {
			t.Fatal(err)
		}
		if st.ParamNum() != 2 || st.ColumnNum() != 6 {
			t.Errorf("%s: %d params, %d columns, want 2 and 6", addr, st.ParamNum(), st.ColumnNum())
		}
		r, err := st.Execute(1, "zz")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Values) != 2 {
			t.Errorf("%s: %d rows", addr, len(r.Values))
		}
		st.Close()
		c.Close()
	}

	// Column metadata through go-sql-driver equals the backend's.
	meta := func(db *sql.DB) []string {
		rows, err := db.Query(q, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cts, err := rows.ColumnTypes()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ct := range cts {
			n, nok := ct.Nullable()
			l, lok := ct.Length()
			pr, sc, dok := ct.DecimalSize()
			out = append(out, fmt.Sprintf("%s %s null=%v/%v len=%d/%v dec=%d,%d/%v %v", ct.Name(), ct.DatabaseTypeName(), n, nok, l, lok, pr, sc, dok, ct.ScanType()))
		}
		var vals [][]any
		for rows.Next() {
			v := make([]any, len(cts))
			ptrs := make([]any, len(cts))
			for i := range v {
				ptrs[i] = &v[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			vals = append(vals, v)
		}
		out = append(out, fmt.Sprint(vals))
		return out
	}
	viaProxy := meta(p.db(t, "ps", nil))
	viaBackend := meta(direct)
	if !reflect.DeepEqual(viaProxy, viaBackend) {
		t.Errorf("prepared statement metadata differs:\nproxy   %q\nbackend %q", viaProxy, viaBackend)
	}

	// Execute, re-execute with new types, reset and close.
	db := p.db(t, "ps", nil)
	st, err := db.Prepare("INSERT INTO t (id, name, price) VALUES (?, ?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 20; i++ {
		if _, err := st.Exec(i, fmt.Sprint("n", i), float64(i)/4); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Exec("30", []byte("bytes"), nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM t WHERE id >= ?", 10).Scan(&n); err != nil || n != 11 {
		t.Fatalf("count %d, %v", n, err)
	}
}

func testMultiStatements(t *testing.T, m *harness.MariaDB) {
	p := startProxy(t, m, nil)
	db := p.db(t, "", func(c *gsql.Config) { c.MultiStatements = true })
	mustExec(t, db, "CREATE DATABASE ms; CREATE TABLE ms.t (a INT PRIMARY KEY); INSERT INTO ms.t VALUES (1),(2),(3)")
	rows, err := db.Query("SELECT a FROM ms.t ORDER BY a; UPDATE ms.t SET a = a + 10 WHERE a = 3; SELECT COUNT(*), SUM(a) FROM ms.t")
	if err != nil {
		t.Fatal(err)
	}
	var sets [][]string
	for {
		var set []string
		cols, _ := rows.Columns()
		for rows.Next() {
			v := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range v {
				ptrs[i] = &v[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, b := range v {
				parts = append(parts, string(b))
			}
			set = append(set, strings.Join(parts, ","))
		}
		sets = append(sets, set)
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	want := [][]string{{"1", "2", "3"}, {"3,16"}}
	if !reflect.DeepEqual(sets, want) {
		t.Errorf("result sets %q, want %q", sets, want)
	}
	// Each autocommit statement of a multi-statement query committed its
	// own transaction, and each was held.
	before := len(p.offsets.gtids())
	mustExec(t, db, "INSERT INTO ms.t VALUES (20); INSERT INTO ms.t VALUES (21); DELETE FROM ms.t WHERE a = 1")
	if got := len(p.offsets.gtids()) - before; got != 3 {
		t.Errorf("%d commits held for three autocommit statements", got)
	}
	// A procedure with several result sets.
	mustExec(t, db, "CREATE PROCEDURE ms.p() BEGIN SELECT 1; SELECT 2, 3; END")
	rows, err = db.Query("CALL ms.p()")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		for rows.Next() {
			n++
		}
		if !rows.NextResultSet() {
			break
		}
	}
	rows.Close()
	if n != 2 {
		t.Errorf("CALL: %d rows over its result sets, want 2", n)
	}
	// An error in the middle ends the results with its code.
	_, err = db.Exec("INSERT INTO ms.t VALUES (30); INSERT INTO ms.t VALUES (30); INSERT INTO ms.t VALUES (31)")
	if me := mysqlErr(t, err); me.Number != 1062 {
		t.Errorf("error %v, want 1062", me)
	}
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
}

func testStreaming(t *testing.T, m *harness.MariaDB) {
	p := startProxy(t, m, nil)
	db := p.db(t, "mysql", nil) // the sequence engine's tables need a database
	db.SetMaxOpenConns(1)
	const rows, width = 400_000, 200 // 80 MB of row data
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	})
	start := time.Now()
	r, err := db.Query(fmt.Sprintf("SELECT seq, REPEAT('x', %d) FROM seq_1_to_%d", width, rows))
	if err != nil {
		t.Fatal(err)
	}
	n, bytes := 0, 0
	var firstRow time.Duration
	for r.Next() {
		var id int
		var s sql.RawBytes
		if err := r.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			firstRow = time.Since(start)
		}
		n++
		bytes += len(s)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	close(stop)
	wg.Wait()
	if n != rows || bytes != rows*width {
		t.Fatalf("%d rows, %d bytes", n, bytes)
	}
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("%d rows (%d MB) in %s, first row after %s, heap growth at most %d MB", n, bytes>>20, total.Round(time.Millisecond), firstRow.Round(time.Millisecond), growth>>20)
	if growth > 32<<20 {
		t.Errorf("heap grew by %d MB while streaming %d MB: the result is buffered", growth>>20, bytes>>20)
	}
	if firstRow > total/2 {
		t.Errorf("first row after %s of %s: the result is not streamed", firstRow, total)
	}
}

func testErrors(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE er", "CREATE TABLE er.t (a INT PRIMARY KEY, b INT NOT NULL)", "INSERT INTO er.t VALUES (1, 1)")
	p := startProxy(t, m, nil)
	viaProxy := p.db(t, "er", nil)
	conn, err := gsql.NewConnector(m.Config("er"))
	if err != nil {
		t.Fatal(err)
	}
	viaBackend := sql.OpenDB(conn)
	defer viaBackend.Close()
	for _, c := range []struct {
		q    string
		args []any
		code uint16
	}{
		{"INSERT INTO t VALUES (1, 2)", nil, 1062},
		{"INSERT INTO t VALUES (?, ?)", []any{1, 2}, 1062},
		{"INSERT INTO t VALUES (5, NULL)", nil, 1048},
		{"SELECT * FROM missing", nil, 1146},
		{"SELECT * FROM missing WHERE a = ?", []any{1}, 1146},
		{"SELEC 1", nil, 1064},
		{"SELECT nope FROM t", nil, 1054},
		{"SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 1644, MESSAGE_TEXT = 'custom'", nil, 1644},
	} {
		_, perr := viaProxy.Exec(c.q, c.args...)
		_, berr := viaBackend.Exec(c.q, c.args...)
		pe, be := mysqlErr(t, perr), mysqlErr(t, berr)
		if pe.Number != c.code || *pe != *be {
			t.Errorf("%s: through the proxy %d %s %q, directly %d %s %q", c.q, pe.Number, pe.SQLState, pe.Message, be.Number, be.SQLState, be.Message)
		}
	}
	// The session goes on after errors.
	var n int
	if err := viaProxy.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d, %v", n, err)
	}
}

func testMaxClients(t *testing.T, m *harness.MariaDB) {
	p := startProxy(t, m, func(c *Config) { c.MaxClients = 2 })
	var held []*client.Conn
	for range 2 {
		c, err := client.Connect(p.addr, proxyUser, proxyPassword, "")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	db := p.db(t, "", nil)
	err := db.Ping()
	if me := mysqlErr(t, err); me.Number != 1040 || me.Message != "Too many connections" {
		t.Fatalf("third client: %v, want 1040 Too many connections", err)
	}
	held[0].Close()
	// The slot frees once the server has seen the client go.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := client.Connect(p.addr, proxyUser, proxyPassword, "")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a client left: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	held[1].Close()
}

func testCommitHeld(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE ch", "CREATE TABLE ch.t (a INT PRIMARY KEY)")
	p := startProxy(t, m, nil)
	p.log.auto = false
	db := p.db(t, "ch", nil)

	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"autocommit", func() error { _, err := db.Exec("INSERT INTO t VALUES (1)"); return err }},
		{"prepared autocommit", func() error { _, err := db.Exec("INSERT INTO t VALUES (?)", 2); return err }},
		{"transaction", func() error {
			tx, err := db.Begin()
			if err != nil {
				return err
			}
			if _, err := tx.Exec("INSERT INTO t VALUES (3)"); err != nil {
				return err
			}
			if _, err := tx.Exec("INSERT INTO t VALUES (4)"); err != nil {
				return err
			}
			return tx.Commit()
		}},
		{"ddl", func() error { _, err := db.Exec("CREATE TABLE t2 (a INT)"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := make(chan struct{})
			p.offsets.mu.Lock()
			p.offsets.gate = gate
			p.offsets.mu.Unlock()
			before := len(p.offsets.gtids())
			done := make(chan error, 1)
			go func() { done <- tc.run() }()
			select {
			case err := <-done:
				t.Fatalf("answered before the capture logged the transaction: %v", err)
			case <-time.After(150 * time.Millisecond):
			}
			// Executed on the primary meanwhile; the GTID the proxy holds
			// on is the one the primary gave the transaction.
			var pos string
			if err := direct.QueryRow("SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
				t.Fatal(err)
			}
			gtids := p.offsets.gtids()[before:]
			if len(gtids) != 1 || gtids[0] != pos {
				t.Fatalf("held on %q, the binlog is at %q", gtids, pos)
			}
			close(gate)
			select {
			case err := <-done:
				t.Fatalf("answered before the ack policy committed: %v", err)
			case <-time.After(150 * time.Millisecond):
			}
			waited := p.log.waitedOffsets()
			off := waited[len(waited)-1]
			p.log.commit(off - 1)
			select {
			case err := <-done:
				t.Fatalf("answered with offset %d committed only up to %d: %v", off, off-1, err)
			case <-time.After(100 * time.Millisecond):
			}
			p.log.commit(off)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not answered after the commit")
			}
		})
	}
	p.offsets.mu.Lock()
	p.offsets.gate = nil
	p.offsets.mu.Unlock()

	// Statements that commit nothing are not held.
	before := len(p.offsets.gtids())
	mustExec(t, db, "UPDATE t SET a = a WHERE a = 1", "BEGIN", "SELECT * FROM t", "ROLLBACK", "SET @x = 1")
	if n := len(p.offsets.gtids()) - before; n != 0 {
		t.Errorf("%d holds for statements that commit nothing", n)
	}
}

func testConcurrentGTIDs(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE cg", "CREATE TABLE cg.t (a INT PRIMARY KEY, s INT)")
	p := startProxy(t, m, nil)
	db := p.db(t, "cg", nil)
	db.SetMaxOpenConns(8)
	var before string
	if err := direct.QueryRow("SELECT @@gtid_binlog_pos").Scan(&before); err != nil {
		t.Fatal(err)
	}
	held0 := len(p.offsets.gtids())
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if i%5 == 4 {
					tx, err := db.Begin()
					if err != nil {
						errs <- err
						return
					}
					if _, err := tx.Exec("INSERT INTO t VALUES (?, ?)", w*1000+i, w); err != nil {
						errs <- err
						return
					}
					if err := tx.Commit(); err != nil {
						errs <- err
						return
					}
					continue
				}
				if _, err := db.Exec("INSERT INTO t VALUES (?, ?)", w*1000+i, w); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	gtids := p.offsets.gtids()[held0:]
	seen := map[string]bool{}
	for _, g := range gtids {
		if seen[g] {
			t.Errorf("GTID %s held twice", g)
		}
		seen[g] = true
	}
	// Every transaction of the run, and only those, was held on.
	var seqBefore, seqAfter uint64
	var after string
	if err := direct.QueryRow("SELECT @@gtid_binlog_pos").Scan(&after); err != nil {
		t.Fatal(err)
	}
	fmt.Sscanf(before[strings.LastIndex(before, "-")+1:], "%d", &seqBefore)
	fmt.Sscanf(after[strings.LastIndex(after, "-")+1:], "%d", &seqAfter)
	if len(seen) != workers*each || seqAfter-seqBefore != workers*each {
		t.Errorf("%d distinct GTIDs held, binlog advanced by %d, for %d transactions", len(seen), seqAfter-seqBefore, workers*each)
	}
	prefix := after[:strings.LastIndex(after, "-")+1]
	for i := seqBefore + 1; i <= seqAfter; i++ {
		if !seen[fmt.Sprint(prefix, i)] {
			t.Errorf("transaction %s%d was not held on", prefix, i)
		}
	}
}

func testUncommitted(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE un", "CREATE TABLE un.t (a INT PRIMARY KEY)")
	for _, degrade := range []bool{false, true} {
		t.Run(fmt.Sprintf("degrade=%v", degrade), func(t *testing.T) {
			p := startProxy(t, m, func(c *Config) { c.AckTimeoutDegrade = degrade })
			p.log.auto = false
			p.log.timeout = 200 * time.Millisecond
			db := p.db(t, "un", nil)
			v := 1
			if degrade {
				v = 2
			}
			_, err := db.Exec("INSERT INTO t VALUES (?)", v)
			if degrade {
				if err != nil {
					t.Fatalf("degrade mode: %v", err)
				}
			} else {
				me := mysqlErr(t, err)
				if me.Number != 1105 || !strings.HasPrefix(me.Message, "UNCOMMITTED ") {
					t.Fatalf("got %d %q, want 1105 UNCOMMITTED…", me.Number, me.Message)
				}
			}
			// Executed on the primary either way.
			var n int
			if err := direct.QueryRow("SELECT COUNT(*) FROM un.t WHERE a = ?", v).Scan(&n); err != nil || n != 1 {
				t.Fatalf("row on the primary: %d, %v", n, err)
			}
		})
	}
}

func testAdmitRefusal(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE ar", "CREATE TABLE ar.t (a INT PRIMARY KEY)", "INSERT INTO ar.t VALUES (1)")
	p := startProxy(t, m, nil)
	db := p.db(t, "ar", func(c *gsql.Config) { c.MultiStatements = true })
	count := func() int {
		var n int
		if err := direct.QueryRow("SELECT COUNT(*) FROM ar.t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct {
		err  error
		word string
	}{{ackpolicy.ErrNoReplicas, "NOREPLICAS "}, {ackpolicy.ErrNotLeader, "TRYAGAIN "}} {
		p.log.setAdmitErr(c.err)
		for _, q := range []string{"INSERT INTO t VALUES (2)", "SELECT 1; DELETE FROM t", "CREATE TABLE t3 (a INT)", "/*!40101 UPDATE t SET a = 5 */"} {
			_, err := db.Exec(q)
			me := mysqlErr(t, err)
			if me.Number != 1290 || me.SQLState != [5]byte{'H', 'Y', '0', '0', '0'} || !strings.HasPrefix(me.Message, c.word) {
				t.Errorf("%s: got %d %s %q, want 1290 HY000 %s…", q, me.Number, string(me.SQLState[:]), me.Message, c.word)
			}
		}
		_, err := db.Exec("INSERT INTO t VALUES (?)", 3)
		if me := mysqlErr(t, err); me.Number != 1290 {
			t.Errorf("prepared insert: %v", err)
		}
		// Reads go on.
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 1 {
			t.Fatalf("read while writes are refused: %d, %v", n, err)
		}
	}
	if n := count(); n != 1 {
		t.Errorf("%d rows: a refused write was executed", n)
	}
	var tables int
	if err := direct.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'ar'").Scan(&tables); err != nil || tables != 1 {
		t.Errorf("%d tables: a refused DDL was executed (%v)", tables, err)
	}

	// A COMMIT refused after its writes ran rolls the transaction back.
	p.log.setAdmitErr(nil)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	p.log.setAdmitErr(ackpolicy.ErrNoReplicas)
	err = tx.Commit()
	if me := mysqlErr(t, err); me.Number != 1290 || !strings.HasPrefix(me.Message, "NOREPLICAS ") || !strings.Contains(me.Message, "rolled back") {
		t.Fatalf("refused COMMIT: %v", err)
	}
	p.log.setAdmitErr(nil)
	if n := count(); n != 1 {
		t.Errorf("%d rows after a refused COMMIT", n)
	}
	// The pooled connection is usable and not inside the old transaction.
	mustExec(t, db, "INSERT INTO t VALUES (8)")
	if n := count(); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}

func testReadFence(t *testing.T, m *harness.MariaDB) {
	p := startProxy(t, m, func(c *Config) { c.FenceReads = true })
	db := p.db(t, "", nil)
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	if p.log.readables == 0 {
		t.Error("a read under FenceReads did not wait for WaitReadable")
	}
	p.log.mu.Lock()
	p.log.readErr = ackpolicy.ErrNotLeader
	p.log.mu.Unlock()
	err := db.QueryRow("SELECT 1").Scan(&one)
	if me := mysqlErr(t, err); me.Number != 1290 || !strings.HasPrefix(me.Message, "TRYAGAIN ") {
		t.Errorf("fenced read: %v", err)
	}
}

func testShowStatus(t *testing.T, m *harness.MariaDB) {
	p := startProxy(t, m, nil)
	db := p.db(t, "", nil)
	rows, err := db.Query("show replicar  status")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		got[k] = v
	}
	rows.Close()
	for k, want := range map[string]string{"node": "n1", "group": "g", "protocol": "mysql", "role": "leader", "state": "streaming",
		"epoch": "3", "leader": "n1", "leader_addr": "127.0.0.1:1", "offset": "10", "committed": "9", "applied": "10",
		"isr": "n1,n2", "ack_policy": "one", "connected_followers": "1", "route": "local", "backend_up": "true"} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if !strings.Contains(got["follower0"], "node=n2,acked=9") {
		t.Errorf("follower0 = %q", got["follower0"])
	}
	// Mixed with other statements it is not the proxy's: the backend
	// refuses it.
	db2 := p.db(t, "", func(c *gsql.Config) { c.MultiStatements = true })
	if _, err := db2.Exec("SELECT 1; SHOW REPLICAR STATUS"); err == nil {
		t.Error("SHOW REPLICAR STATUS inside a multi-statement query reached nobody")
	}
}

// rawCommand sends a command packet on a go-mysql client connection and
// returns the first response packet.
func rawCommand(t *testing.T, c *client.Conn, payload ...byte) []byte {
	t.Helper()
	c.ResetSequence()
	if err := c.WritePacket(append([]byte{0, 0, 0, 0}, payload...)); err != nil {
		t.Fatal(err)
	}
	p, err := c.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testSessionCommands(t *testing.T, m *harness.MariaDB) {
	mustExec(t, m.DB(), "CREATE DATABASE sc1", "CREATE DATABASE sc2")
	p := startProxy(t, m, nil)
	c, err := client.Connect(p.addr, proxyUser, proxyPassword, "sc1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	one := func(q string) string {
		t.Helper()
		r, err := c.Execute(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		s, _ := r.GetString(0, 0)
		return s
	}
	if db := one("SELECT DATABASE()"); db != "sc1" {
		t.Errorf("handshake database: %q", db)
	}
	if err := c.UseDB("sc2"); err != nil { // COM_INIT_DB
		t.Fatal(err)
	}
	if db := one("SELECT DATABASE()"); db != "sc2" {
		t.Errorf("after COM_INIT_DB: %q", db)
	}
	if err := c.UseDB("nope"); err == nil {
		t.Error("COM_INIT_DB of a missing database succeeded")
	} else if me, ok := myError(err); !ok || me.Code != 1049 {
		t.Errorf("COM_INIT_DB of a missing database: %v", err)
	}
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	one("SET @v = 42")
	one("SET SESSION sql_mode = 'ANSI_QUOTES'")
	st, err := c.Prepare("SELECT ?")
	if err != nil {
		t.Fatal(err)
	}
	// COM_RESET_CONNECTION: user variables, session variables and
	// prepared statements go; the database stays.
	if p := rawCommand(t, c, gm.COM_RESET_CONNECTION); p[0] != hdrOK {
		t.Fatalf("COM_RESET_CONNECTION: %x", p)
	}
	if v := one("SELECT COALESCE(@v, 'null')"); v != "null" {
		t.Errorf("@v after reset: %q", v)
	}
	if v := one("SELECT @@session.sql_mode"); strings.Contains(v, "ANSI_QUOTES") {
		t.Errorf("sql_mode after reset: %q", v)
	}
	if _, err := st.Execute(1); err == nil {
		t.Error("a statement prepared before COM_RESET_CONNECTION still executes")
	}
	if db := one("SELECT DATABASE()"); db != "sc2" {
		t.Errorf("database after reset: %q", db)
	}
	// The commit hold survives the reset (it re-arms session tracking).
	one("CREATE TABLE IF NOT EXISTS r (a INT)")
	before := len(p.offsets.gtids())
	one("INSERT INTO r VALUES (1)")
	if len(p.offsets.gtids()) != before+1 {
		t.Error("a commit after COM_RESET_CONNECTION was not held")
	}

	// COM_CHANGE_USER to another account and database.
	for _, plugin := range []string{gm.AUTH_NATIVE_PASSWORD, gm.AUTH_CACHING_SHA2_PASSWORD} {
		pkt := []byte{gm.COM_CHANGE_USER}
		pkt = append(pkt, "other"...)
		pkt = append(pkt, 0, 0) // empty auth data: the server asks again
		pkt = append(pkt, "sc1"...)
		pkt = append(pkt, 0, 45, 0)
		pkt = append(pkt, plugin...)
		pkt = append(pkt, 0)
		sw := rawCommand(t, c, pkt...)
		if sw[0] != hdrEOF {
			t.Fatalf("COM_CHANGE_USER: want an auth switch, got %x", sw)
		}
		name, rest, _ := strings.Cut(string(sw[1:]), "\x00")
		if name != plugin {
			t.Errorf("auth switch to %q, want %q", name, plugin)
		}
		salt := []byte(rest)[:20]
		var answer []byte
		if plugin == gm.AUTH_NATIVE_PASSWORD {
			answer = gm.CalcNativePassword(salt, []byte("other-pw"))
		} else {
			answer = gm.CalcCachingSha2Password(salt, []byte("other-pw"))
		}
		if err := c.WritePacket(append([]byte{0, 0, 0, 0}, answer...)); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if plugin == gm.AUTH_CACHING_SHA2_PASSWORD {
			if r[0] != gm.MORE_DATE_HEADER || r[1] != gm.CACHE_SHA2_FAST_AUTH {
				t.Fatalf("caching_sha2 change user: %x", r)
			}
			if r, err = c.ReadPacket(); err != nil {
				t.Fatal(err)
			}
		}
		if r[0] != hdrOK {
			t.Fatalf("COM_CHANGE_USER answer: %x", r)
		}
		if db := one("SELECT DATABASE()"); db != "sc1" {
			t.Errorf("database after COM_CHANGE_USER: %q", db)
		}
	}
	// A wrong password is refused and closes the connection.
	pkt := append([]byte{gm.COM_CHANGE_USER}, "other\x00\x00sc1\x00\x2d\x00mysql_native_password\x00"...)
	sw := rawCommand(t, c, pkt...)
	if sw[0] != hdrEOF {
		t.Fatalf("COM_CHANGE_USER: %x", sw)
	}
	_ = c.WritePacket(append([]byte{0, 0, 0, 0}, gm.CalcNativePassword([]byte(strings.Repeat("a", 20)), []byte("bad"))...))
	r, err := c.ReadPacket()
	if err != nil || r[0] != hdrERR || parseErr(r).Code != 1045 {
		t.Fatalf("change user with a wrong password: %x %v", r, err)
	}
}

func testContextCancel(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	p := startProxy(t, m, nil)
	db := p.db(t, "", nil)
	sleeping := func() int {
		var n int
		if err := direct.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(3%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	conns := func() int {
		var n int
		if err := direct.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Daemon'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	baseline := conns()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		var x int
		err := db.QueryRowContext(ctx, "SELECT SLEEP(30)").Scan(&x)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cancelled query: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("cancellation took %s", d)
		}
		_ = i
	}
	// The backend statements were killed and their connections closed.
	deadline := time.Now().Add(5 * time.Second)
	for sleeping() > 0 || conns() > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("%d backend queries still sleeping, %d connections (baseline %d)", sleeping(), conns(), baseline)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The proxy ended the sessions of the closed connections.
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	for p.srv.Clients() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d client sessions, want the pool's 1", p.srv.Clients())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A transaction abandoned by a cancelled context is rolled back.
	mustExec(t, direct, "CREATE DATABASE cc", "CREATE TABLE cc.t (a INT)")
	ctx, cancel := context.WithCancel(context.Background())
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO cc.t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = tx.Rollback()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM cc.t").Scan(&n); err != nil || n != 0 {
		t.Errorf("rows of a cancelled transaction: %d, %v", n, err)
	}
}

func testKill(t *testing.T, m *harness.MariaDB) {
	p := startProxy(t, m, nil)
	a, err := client.Connect(p.addr, proxyUser, proxyPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := client.Connect(p.addr, proxyUser, proxyPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error, 1)
	go func() { _, err := a.Execute("SELECT SLEEP(20)"); done <- err }()
	time.Sleep(200 * time.Millisecond)
	// a's id is the proxy's (the handshake's); KILL QUERY with it stops
	// a's backend statement.
	if _, err := b.Execute(fmt.Sprintf("KILL QUERY %d", a.GetConnectionID())); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		// SLEEP interrupted answers 1 rather than an error on MariaDB.
		if err != nil {
			if me, ok := myError(err); !ok || me.Code != 1317 {
				t.Fatalf("killed query: %v", err)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("KILL QUERY with the proxy's connection id did not stop the query")
	}
	if _, err := a.Execute("SELECT 1"); err != nil {
		t.Fatalf("session after KILL QUERY: %v", err)
	}
}

func testLocalInfile(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE li", "CREATE TABLE li.t (a INT, b VARCHAR(10))")
	p := startProxy(t, m, nil)
	gsql.RegisterReaderHandler("replicar-test", func() io.Reader { return strings.NewReader("1\tone\n2\ttwo\n3\tthree\n") })
	defer gsql.DeregisterReaderHandler("replicar-test")
	db := p.db(t, "li", nil)
	before := len(p.offsets.gtids())
	res, err := db.Exec("LOAD DATA LOCAL INFILE 'Reader::replicar-test' INTO TABLE t")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 3 {
		t.Errorf("%d rows loaded", n)
	}
	if len(p.offsets.gtids()) != before+1 {
		t.Error("LOAD DATA was not held on")
	}
}

func testRouting(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE rt", "CREATE TABLE rt.t (a INT PRIMARY KEY)")
	leader := startProxy(t, m, nil)
	// A follower node on the same store, so that moving to RouteLocal
	// finds the data too.
	follower := startProxy(t, m, nil)
	follower.srv.SetRoute(Route{Mode: RouteForward, Leader: leader.addr})
	db := follower.db(t, "rt", nil)
	db.SetMaxOpenConns(1)

	held := len(leader.offsets.gtids())
	mustExec(t, db, "INSERT INTO t VALUES (1)")
	if len(leader.offsets.gtids()) != held+1 || len(follower.offsets.gtids()) != 0 {
		t.Errorf("a forwarded write was held by the follower (%d) rather than the leader (%d)", len(follower.offsets.gtids()), len(leader.offsets.gtids())-held)
	}
	// The session runs on the leader as the same user.
	var user string
	if err := db.QueryRow("SELECT USER()").Scan(&user); err != nil || !strings.HasPrefix(user, "root@") {
		t.Fatalf("USER() through the follower: %q %v", user, err)
	}

	// Session state, then a move: follower leads now.
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustExec(t, conn, "SET @carried = 'yes'", "SET SESSION sql_mode = 'ANSI_QUOTES,NO_ZERO_DATE'")
	st, err := conn.PrepareContext(context.Background(), "SELECT ? + 1")
	if err != nil {
		t.Fatal(err)
	}
	var threadBefore, threadAfter int64
	if err := conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&threadBefore); err != nil {
		t.Fatal(err)
	}
	follower.srv.SetRoute(Route{Mode: RouteLocal})
	var carried, mode string
	if err := conn.QueryRowContext(context.Background(), "SELECT @carried, @@session.sql_mode, CONNECTION_ID()").Scan(&carried, &mode, &threadAfter); err != nil {
		t.Fatal(err)
	}
	if carried != "yes" || !strings.Contains(mode, "ANSI_QUOTES") || threadAfter == threadBefore {
		t.Errorf("after the move: @carried=%q sql_mode=%q thread %d→%d", carried, mode, threadBefore, threadAfter)
	}
	var two int
	if err := st.QueryRowContext(context.Background(), 1).Scan(&two); err != nil || two != 2 {
		t.Errorf("prepared statement after the move: %d %v", two, err)
	}
	var dbName string
	if err := conn.QueryRowContext(context.Background(), "SELECT DATABASE()").Scan(&dbName); err != nil || dbName != "rt" {
		t.Errorf("database after the move: %q %v", dbName, err)
	}
	st.Close()

	// A transaction open at a leader change: error, connection closed,
	// transaction rolled back.
	tx, err := conn.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	follower.srv.SetRoute(Route{Mode: RouteForward, Leader: leader.addr})
	_, err = tx.Exec("INSERT INTO t VALUES (3)")
	if err == nil {
		t.Fatal("a transaction went on across a leader change")
	}
	if me := mysqlErr(t, err); me.Number != 1290 || !strings.HasPrefix(me.Message, "TRYAGAIN ") {
		t.Errorf("transaction across a leader change: %v", err)
	}
	_ = tx.Rollback()
	var n int
	if err := direct.QueryRow("SELECT COUNT(*) FROM rt.t").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d rows: the interrupted transaction was not rolled back (%v)", n, err)
	}

	// No leader: a statement waits FailoverWait, then TRYAGAIN.
	follower.srv.SetRoute(Route{Mode: RouteNone})
	db2 := follower.db(t, "rt", nil)
	start := time.Now()
	_, err = db2.Exec("INSERT INTO t VALUES (4)")
	if me := mysqlErr(t, err); me.Number != 1290 || !strings.HasPrefix(me.Message, "TRYAGAIN ") {
		t.Errorf("no leader: %v", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("answered after %s, before the failover wait", d)
	}
	// A leader elected within the wait serves the statement.
	go func() {
		time.Sleep(150 * time.Millisecond)
		follower.srv.SetRoute(Route{Mode: RouteForward, Leader: leader.addr})
	}()
	mustExec(t, db2, "INSERT INTO t VALUES (5)")
	// SHOW REPLICAR STATUS is the node's own.
	var k, v string
	if err := db2.QueryRow("SHOW REPLICAR STATUS").Scan(&k, &v); err != nil || k != "node" {
		t.Errorf("status through a follower: %q %q %v", k, v, err)
	}
}

// testApplication is a small application on go-sql-driver: a pool,
// prepared statements, transactions with retries on deadlock, and
// timeouts, against an account-transfer schema whose total must not move.
func testApplication(t *testing.T, m *harness.MariaDB, direct *sql.DB) {
	mustExec(t, direct, "CREATE DATABASE app", "CREATE TABLE app.acct (id INT PRIMARY KEY, bal BIGINT NOT NULL)")
	p := startProxy(t, m, nil)
	db := p.db(t, "app", func(c *gsql.Config) { c.ParseTime = true })
	db.SetMaxOpenConns(6)
	ins, err := db.Prepare("INSERT INTO acct VALUES (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := ins.Exec(i, 1000); err != nil {
			t.Fatal(err)
		}
	}
	ins.Close()
	transfer := func(ctx context.Context, from, to, amount int) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var bal int
		if err := tx.QueryRowContext(ctx, "SELECT bal FROM acct WHERE id = ? FOR UPDATE", from).Scan(&bal); err != nil {
			return err
		}
		if bal < amount {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE acct SET bal = bal - ? WHERE id = ?", amount, from); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE acct SET bal = bal + ? WHERE id = ?", amount, to); err != nil {
			return err
		}
		return tx.Commit()
	}
	var wg sync.WaitGroup
	var ok, retried, cancelled atomic.Int64
	for w := range 6 {
		wg.Go(func() {
			for i := range 40 {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				if i%13 == 7 {
					// A query abandoned by its context.
					c2, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
					_, err := db.ExecContext(c2, "SELECT SLEEP(1)")
					cancel2()
					if err != nil {
						cancelled.Add(1)
					}
				}
				err := transfer(ctx, (w*7+i)%20, (w*3+i*11+1)%20, 1+i%50)
				cancel()
				var me *gsql.MySQLError
				if errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205) {
					retried.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("transfer: %v", err)
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	var total, count int64
	if err := direct.QueryRow("SELECT SUM(bal), COUNT(*) FROM app.acct").Scan(&total, &count); err != nil {
		t.Fatal(err)
	}
	if total != 20*1000 || count != 20 {
		t.Errorf("total %d over %d accounts, want 20000 over 20", total, count)
	}
	t.Logf("%d transfers, %d deadlocks retried, %d queries cancelled", ok.Load(), retried.Load(), cancelled.Load())
	if cancelled.Load() == 0 {
		t.Error("no query was cancelled")
	}
}

func testSysbench(t *testing.T, m *harness.MariaDB) {
	harness.Require(t, "sysbench")
	bin, err := harness.LookPath("sysbench")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, m.DB(), "CREATE DATABASE sbtest")
	p := startProxy(t, m, nil)
	host, port, _ := strings.Cut(p.addr, ":")
	args := []string{"oltp_read_write", "--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port,
		"--mysql-user=" + proxyUser, "--mysql-password=" + proxyPassword, "--mysql-db=sbtest",
		"--tables=2", "--table-size=2000", "--threads=4", "--time=4", "--report-interval=0"}
	for _, phase := range []string{"prepare", "run", "cleanup"} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, bin, append(args, phase)...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("sysbench %s: %v\n%s", phase, err, out)
		}
		if phase == "run" {
			s := string(out)
			for _, line := range strings.Split(s, "\n") {
				if strings.Contains(line, "transactions:") || strings.Contains(line, "queries:") || strings.Contains(line, "ignored errors:") {
					t.Log(strings.TrimSpace(line))
				}
			}
			if !strings.Contains(s, "transactions:") {
				t.Fatalf("sysbench run printed no transactions:\n%s", s)
			}
		}
	}
	if p.srv.stats.CommitsHeld.Load() == 0 {
		t.Error("sysbench's commits were not held")
	}
}
