package localgroup_test

import (
	"database/sql"
	"net"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/replicar/replicar/internal/localgroup"
	"github.com/replicar/replicar/test/harness"
)

// TestStartMariaDB starts two real servers from the template and checks
// what the benchmarks rely on: the password login over TCP, the server id
// and the caller's options, no anonymous accounts, distinct ports, and a
// port released by Stop.
func TestStartMariaDB(t *testing.T) {
	harness.Require(t, "mariadbd", "mariadb-install-db")
	a, err := localgroup.StartMariaDB(t.TempDir(), 71, "--log-bin=mysql-bin", "--sync-binlog=1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	b, err := localgroup.StartMariaDB(t.TempDir(), 72)
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr == b.Addr {
		t.Fatalf("both servers on %s", a.Addr)
	}

	db, err := sql.Open("mysql", a.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id, logBin, syncBinlog, anon int
	if err := db.QueryRow("SELECT @@server_id, @@log_bin, @@sync_binlog").Scan(&id, &logBin, &syncBinlog); err != nil {
		t.Fatal(err)
	}
	if id != 71 || logBin != 1 || syncBinlog != 1 {
		t.Fatalf("server_id %d log_bin %d sync_binlog %d, want 71 1 1", id, logBin, syncBinlog)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM mysql.user WHERE User = ''").Scan(&anon); err != nil {
		t.Fatal(err)
	}
	if anon != 0 {
		t.Fatalf("%d anonymous accounts", anon)
	}

	bad, err := sql.Open("mysql", "root:wrong@tcp("+b.Addr+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(); err == nil {
		t.Fatal("a wrong password logged in")
	}

	b.Stop()
	ln, err := net.Listen("tcp", b.Addr)
	if err != nil {
		t.Fatalf("port of a stopped server still taken: %v", err)
	}
	ln.Close()
}
