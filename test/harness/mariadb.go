package harness

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replicar/replicar/internal/mariadbsrv"
)

// MariaDBUser and MariaDBPassword are the credentials of the root account
// that StartMariaDB leaves open over TCP (root@127.0.0.1, root@::1 and
// root@localhost). There are no anonymous users.
const (
	MariaDBUser     = mariadbsrv.User
	MariaDBPassword = mariadbsrv.Password
)

// MariaDB is a mariadbd child process started by StartMariaDB.
type MariaDB struct {
	*Process

	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the TCP port it listens on.
	Port int
	// Dir holds the data directory, the server log and the temp directory.
	Dir string
	// DataDir is the datadir; binary logs live there too.
	DataDir string
	// Socket is the unix socket path.
	Socket string
	// User and Password log in over TCP with every privilege.
	User, Password string
	// ServerID is the server_id, unique among the servers of this process
	// unless set with MariaDBServerID.
	ServerID uint32

	t   testing.TB
	cfg mariadbConfig
}

type mariadbConfig struct {
	logBin       bool
	binlogFormat string
	serverID     uint32
	args         []string
}

// MariaDBOption configures StartMariaDB.
type MariaDBOption func(*mariadbConfig)

// MariaDBLogBin turns the binary log on or off; it is on by default.
func MariaDBLogBin(on bool) MariaDBOption {
	return func(c *mariadbConfig) { c.logBin = on }
}

// MariaDBBinlogFormat sets binlog_format (ROW, STATEMENT or MIXED); ROW by
// default.
func MariaDBBinlogFormat(format string) MariaDBOption {
	return func(c *mariadbConfig) { c.binlogFormat = format }
}

// MariaDBServerID sets server_id. By default each server gets the next id
// from a process-wide counter that starts at 1001, so ids below 1001 never
// collide with the defaults.
func MariaDBServerID(id uint32) MariaDBOption {
	return func(c *mariadbConfig) { c.serverID = id }
}

// MariaDBArgs appends raw mariadbd options such as "--gtid-strict-mode=ON".
// Later options override the harness's own.
func MariaDBArgs(args ...string) MariaDBOption {
	return func(c *mariadbConfig) { c.args = append(c.args, args...) }
}

// lastServerID hands out default server ids; replication needs them unique
// among the servers that talk to each other, which all live in one process.
var lastServerID atomic.Uint32

// mariadbSizing keeps a server small and quick to start. The template is
// created with the same InnoDB log size, so that no start resizes it.
var mariadbSizing = []string{
	"--innodb-buffer-pool-size=32M",
	"--innodb-log-file-size=8M",
	"--innodb-autoextend-increment=8",
	"--skip-name-resolve",
}

// StartMariaDB starts mariadbd on a free loopback port in a new temporary
// directory and waits until SELECT 1 succeeds over TCP. By default it has
// log_bin=ON, binlog_format=ROW and a unique server_id. It is killed and its
// files are removed when the test ends.
//
// The datadir is copied from a template made once by mariadb-install-db
// (mariadbsrv.Template), keyed by the server version and the sizing;
// installing afresh would cost two seconds for every server.
func StartMariaDB(t testing.TB, opts ...MariaDBOption) *MariaDB {
	t.Helper()
	Require(t, "mariadbd", "mariadb-install-db")
	mariadbd := binary(t, "mariadbd")
	installDB := binary(t, "mariadb-install-db")
	cfg := mariadbConfig{logBin: true, binlogFormat: "ROW"}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.serverID == 0 {
		cfg.serverID = 1000 + lastServerID.Add(1)
	}

	start := time.Now()
	tmpl, err := mariadbsrv.Template(mariadbd, installDB, mariadbSizing)
	if err != nil {
		t.Fatalf("harness: start mariadb: %v", err)
	}
	dir := t.TempDir()
	m := &MariaDB{
		Dir:      dir,
		DataDir:  filepath.Join(dir, "data"),
		User:     MariaDBUser,
		Password: MariaDBPassword,
		ServerID: cfg.serverID,
		t:        t,
		cfg:      cfg,
	}
	var sockDir string
	m.Socket, sockDir, err = mariadbsrv.SocketPath(dir, "mysqld.sock")
	if err != nil {
		t.Fatalf("harness: start mariadb: %v", err)
	}
	if sockDir != "" {
		t.Cleanup(func() { os.RemoveAll(sockDir) })
	}
	if err := mariadbsrv.CopyDir(filepath.Join(tmpl, "data"), m.DataDir); err != nil {
		t.Fatalf("harness: start mariadb: copy template: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatalf("harness: start mariadb: %v", err)
	}
	m.Process = newProcess("mariadbd", mariadbd, dir, filepath.Join(dir, "mariadbd.log"))
	m.args = m.buildArgs
	m.ready = m.selectOne
	// Crash recovery after a Kill can take a while on a loaded machine.
	m.readyTimeout = 60 * time.Second
	t.Cleanup(func() { m.cleanup(t) })

	err = m.startFresh(func() error {
		p, err := freePort()
		m.Port, m.Addr = p, loopback(p)
		return err
	})
	if err != nil {
		t.Fatalf("harness: start mariadb: %v", err)
	}
	t.Logf("harness: mariadbd on %s (pid %d, dir %s, server_id %d, log_bin %v, binlog_format %s), ready in %s",
		m.Addr, m.PID(), dir, cfg.serverID, cfg.logBin, cfg.binlogFormat, time.Since(start).Round(time.Millisecond))
	return m
}

func (m *MariaDB) buildArgs() ([]string, error) {
	args := mariadbsrv.Args(mariadbsrv.Server{
		DataDir:  m.DataDir,
		Socket:   m.Socket,
		Dir:      m.Dir,
		Port:     m.Port,
		ServerID: m.cfg.serverID,
		Sizing:   mariadbSizing,
	})
	if m.cfg.logBin {
		args = append(args, "--log-bin=mysql-bin", "--binlog-format="+m.cfg.binlogFormat)
	}
	return append(args, m.cfg.args...), nil
}

// Config returns a go-sql-driver/mysql config for database db ("" for none).
func (m *MariaDB) Config(db string) *mysql.Config {
	c := mariadbsrv.Config(m.Addr, db)
	c.User, c.Passwd = m.User, m.Password
	return c
}

// DSN returns a go-sql-driver/mysql DSN for database db ("" for none).
func (m *MariaDB) DSN(db string) string {
	return m.Config(db).FormatDSN()
}

// DB returns a new connection pool with no default database. It is closed
// when the test that started the server ends.
func (m *MariaDB) DB() *sql.DB {
	db, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		// sql.Open only fails for an unknown driver; the import rules it out.
		panic(fmt.Sprintf("harness: open mariadb: %v", err))
	}
	m.t.Cleanup(func() { db.Close() })
	return db
}

// selectOne is the readiness check: SELECT 1 over TCP with the password.
func (m *MariaDB) selectOne(ctx context.Context) error {
	return mariadbsrv.SelectOne(ctx, m.Config(""))
}
