package harness

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDBUser and MariaDBPassword are the credentials of the root account
// that StartMariaDB leaves open over TCP (root@127.0.0.1, root@::1 and
// root@localhost). There are no anonymous users.
const (
	MariaDBUser     = "root"
	MariaDBPassword = "replicar"
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
// The datadir is copied from a template made once by mariadb-install-db and
// kept under os.TempDir()/replicar-harness, keyed by the server version;
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
	tmpl, err := mariadbTemplate(mariadbd, installDB)
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
	m.Socket, err = shortSocketPath(t, dir, "mysqld.sock")
	if err != nil {
		t.Fatalf("harness: start mariadb: %v", err)
	}
	if err := copyDir(filepath.Join(tmpl, "data"), m.DataDir); err != nil {
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
	args := []string{
		// Never read /etc/mysql: the system's settings are not ours.
		"--no-defaults",
		"--datadir=" + m.DataDir,
		"--socket=" + m.Socket,
		"--pid-file=" + filepath.Join(m.Dir, "mariadbd.pid"),
		"--tmpdir=" + filepath.Join(m.Dir, "tmp"),
		"--port=" + strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1",
		"--server-id=" + strconv.FormatUint(uint64(m.cfg.serverID), 10),
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	}
	args = append(args, mariadbSizing...)
	if m.cfg.logBin {
		args = append(args, "--log-bin=mysql-bin", "--binlog-format="+m.cfg.binlogFormat)
	}
	args = append(args, asRoot()...)
	return append(args, m.cfg.args...), nil
}

// asRoot is needed because mariadbd refuses to run as root unless told to.
func asRoot() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// Config returns a go-sql-driver/mysql config for database db ("" for none).
func (m *MariaDB) Config(db string) *mysql.Config {
	c := mysql.NewConfig()
	c.User = m.User
	c.Passwd = m.Password
	c.Net = "tcp"
	c.Addr = m.Addr
	c.DBName = db
	c.Timeout = 5 * time.Second
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
	conn, err := mysql.NewConnector(m.Config(""))
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// shortSocketPath returns dir/name, or a path in a new short directory if
// that is too long for a unix socket (108 bytes on Linux, with the NUL).
func shortSocketPath(t testing.TB, dir, name string) (string, error) {
	if p := filepath.Join(dir, name); len(p) < 100 {
		return p, nil
	}
	short, err := os.MkdirTemp("/tmp", "rh")
	if err != nil {
		return "", fmt.Errorf("socket dir: %w", err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	return filepath.Join(short, name), nil
}

// templateMu stops two tests of one process from building the same template
// at once; flock does not exclude within a process. Other processes are
// kept apart by a lock file.
var templateMu sync.Mutex

// templateVersion changes whenever the template's content changes.
const templateVersion = "1"

// mariadbTemplate returns a directory whose data/ subdirectory is a datadir
// made by mariadb-install-db, with the harness's accounts set up and shut
// down cleanly, so that a copy starts like any stopped server.
func mariadbTemplate(mariadbd, installDB string) (string, error) {
	templateMu.Lock()
	defer templateMu.Unlock()

	version, err := exec.Command(mariadbd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	h := sha256.New()
	fmt.Fprintln(h, templateVersion, mariadbd, installDB, os.Geteuid(), strings.TrimSpace(string(version)), mariadbSizing)
	root := filepath.Join(os.TempDir(), "replicar-harness")
	final := filepath.Join(root, "mariadb-"+hex.EncodeToString(h.Sum(nil))[:16])
	if templateComplete(final) {
		return final, nil
	}

	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	// Test binaries of several packages run at once; one builds while the
	// others wait, instead of all of them running mariadb-install-db on
	// two cores.
	lock, err := os.OpenFile(final+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	defer lock.Close() // closing releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("template: lock: %w", err)
	}
	if templateComplete(final) {
		return final, nil
	}
	// A template that lost files, say to a /tmp cleaner, is made anew.
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	build, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	defer os.RemoveAll(build) // a no-op once renamed
	if err := buildMariaDBTemplate(mariadbd, installDB, build); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	if err := os.WriteFile(filepath.Join(build, "ok"), []byte(strings.TrimSpace(string(version))+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	// The rename makes the template appear whole or not at all.
	if err := os.Rename(build, final); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	return final, nil
}

// templateComplete reports whether dir holds a finished template.
func templateComplete(dir string) bool {
	for _, f := range []string{"ok", "data/ibdata1", "data/ib_logfile0", "data/mysql/global_priv.MAI", "data/mysql/global_priv.MAD"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

func buildMariaDBTemplate(mariadbd, installDB, build string) error {
	data := filepath.Join(build, "data")
	logPath := filepath.Join(build, "install.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	tail := func(err error) error {
		b, _ := os.ReadFile(logPath)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
		return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, logPath, strings.Join(lines, "\n"))
	}

	args := []string{
		"--no-defaults",
		"--datadir=" + data,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
	}
	args = append(args, mariadbSizing...)
	args = append(args, asRoot()...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, installDB, args...)
	install.Stdout, install.Stderr = log, log
	install.SysProcAttr = pdeathsig()
	if err := install.Run(); err != nil {
		return tail(fmt.Errorf("mariadb-install-db: %w", err))
	}

	// Set the accounts up through a socket-only server, so the template
	// never listens on TCP.
	sock := filepath.Join(build, "s.sock")
	if len(sock) >= 100 {
		short, err := os.MkdirTemp("/tmp", "rh")
		if err != nil {
			return err
		}
		defer os.RemoveAll(short)
		sock = filepath.Join(short, "s.sock")
	}
	sargs := []string{
		"--no-defaults",
		"--datadir=" + data,
		"--socket=" + sock,
		"--pid-file=" + filepath.Join(build, "mariadbd.pid"),
		"--skip-networking",
	}
	sargs = append(sargs, mariadbSizing...)
	sargs = append(sargs, asRoot()...)
	srv := exec.Command(mariadbd, sargs...)
	srv.Stdout, srv.Stderr = log, log
	srv.SysProcAttr = pdeathsig()
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	stop := func() {
		srv.Process.Kill()
		<-done
	}

	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = sock
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		stop()
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if err = db.PingContext(ctx); err == nil {
			break
		}
		select {
		case werr := <-done:
			return tail(fmt.Errorf("mariadbd exited (%v): %w", werr, err))
		case <-ctx.Done():
			stop()
			return tail(fmt.Errorf("mariadbd not ready: %w", err))
		case <-time.After(25 * time.Millisecond):
		}
	}
	if err := setupAccounts(ctx, db); err != nil {
		stop()
		return tail(err)
	}
	// A clean shutdown, so that copies start without crash recovery. SIGTERM
	// rather than the SHUTDOWN statement, whose connection dies mid-reply
	// and makes the driver log a broken pipe.
	db.Close()
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		stop()
		return tail(fmt.Errorf("shutdown: %w", err))
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		stop()
		return tail(errors.New("mariadbd did not shut down"))
	}
	return nil
}

// setupAccounts drops anonymous users and root accounts for host names
// (they only produce warnings under skip-name-resolve), and gives the root
// accounts that remain the harness password.
func setupAccounts(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SELECT User, Host FROM mysql.user")
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	type account struct{ user, host string }
	var drop, root []account
	for rows.Next() {
		var a account
		if err := rows.Scan(&a.user, &a.host); err != nil {
			rows.Close()
			return fmt.Errorf("list users: %w", err)
		}
		switch {
		case a.user == "":
			drop = append(drop, a)
		case a.user == "root" && (a.host == "localhost" || a.host == "127.0.0.1" || a.host == "::1"):
			root = append(root, a)
		case a.user == "root":
			drop = append(drop, a)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	for _, a := range drop {
		if _, err := db.ExecContext(ctx, "DROP USER "+sqlString(a.user)+"@"+sqlString(a.host)); err != nil {
			return fmt.Errorf("drop user %s@%s: %w", a.user, a.host, err)
		}
	}
	if len(root) == 0 {
		return errors.New("no root account after install")
	}
	for _, a := range root {
		q := "ALTER USER " + sqlString(a.user) + "@" + sqlString(a.host) + " IDENTIFIED BY " + sqlString(MariaDBPassword)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set password of %s@%s: %w", a.user, a.host, err)
		}
	}
	return nil
}

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// copyDir copies the regular files and directories under src into dst,
// keeping their permissions.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return nil // sockets and pid files of a stopped server
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
