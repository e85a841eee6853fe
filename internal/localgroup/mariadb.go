package localgroup

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
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDBUser and MariaDBPassword log in to every server StartMariaDB
// starts, over TCP, with every privilege. There are no anonymous users.
const (
	MariaDBUser     = "root"
	MariaDBPassword = "replicar"
)

// MariaDBLogFileSize is the InnoDB redo log size of every server. The
// template is made with it so that no start has to resize the log; it is
// large enough that a benchmark run of a few minutes is not dominated by
// checkpoint flushing.
const MariaDBLogFileSize = "128M"

// mariadbSizing is passed to mariadb-install-db and to every server.
var mariadbSizing = []string{
	"--innodb-log-file-size=" + MariaDBLogFileSize,
	"--skip-name-resolve",
}

// MariaDB is a mariadbd process.
type MariaDB struct {
	// Addr is "127.0.0.1:port".
	Addr string
	Port int
	// Dir holds the datadir, the server log and its temp directory.
	Dir string
	// Log is the server's error log.
	Log string
	// ServerID is the server_id it was started with.
	ServerID uint32

	cmd     *exec.Cmd
	sockDir string
	exited  chan struct{}
}

// StartMariaDB starts mariadbd on a free loopback port with its files in
// dir, and waits until SELECT 1 succeeds over TCP as MariaDBUser. args are
// mariadbd options placed after the starter's own, so they override them
// (log_bin, binlog_format, durability: the caller decides).
//
// The datadir is copied from a template made once by mariadb-install-db
// and kept under os.TempDir()/replicar-localgroup, keyed by the server
// version: installing afresh costs seconds for every server.
func StartMariaDB(dir string, serverID uint32, args ...string) (*MariaDB, error) {
	mariadbd, err := lookPath("mariadbd")
	if err != nil {
		return nil, err
	}
	installDB, err := lookPath("mariadb-install-db")
	if err != nil {
		return nil, err
	}
	tmpl, err := mariadbTemplate(mariadbd, installDB)
	if err != nil {
		return nil, fmt.Errorf("mariadb template: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mariadb dir: %w", err)
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("mariadb dir: %w", err)
	}
	if err := copyDir(filepath.Join(tmpl, "data"), data); err != nil {
		return nil, fmt.Errorf("mariadb datadir: %w", err)
	}
	sock, sockDir, err := socketPath(dir)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &MariaDB{
		Addr:     "127.0.0.1:" + strconv.Itoa(port),
		Port:     port,
		Dir:      dir,
		Log:      filepath.Join(dir, "mariadbd.log"),
		ServerID: serverID,
		sockDir:  sockDir,
		exited:   make(chan struct{}),
	}
	all := []string{
		// Never read /etc/mysql: the system's settings are not ours.
		"--no-defaults",
		"--datadir=" + data,
		"--socket=" + sock,
		"--pid-file=" + filepath.Join(dir, "mariadbd.pid"),
		"--tmpdir=" + filepath.Join(dir, "tmp"),
		"--log-error=" + m.Log,
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--server-id=" + strconv.FormatUint(uint64(serverID), 10),
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	}
	all = append(all, mariadbSizing...)
	all = append(all, asRoot()...)
	all = append(all, args...)
	m.cmd = exec.Command(mariadbd, all...)
	// The servers must not outlive this process, however it ends.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		removeIf(sockDir)
		return nil, fmt.Errorf("start mariadbd: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()

	db, err := m.open("")
	if err != nil {
		m.Stop()
		return nil, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		var one int
		err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		if err == nil {
			return m, nil
		}
		select {
		case <-m.exited:
			removeIf(sockDir)
			return nil, fmt.Errorf("mariadbd on %s exited: %s", m.Addr, logTail(m.Log, 5))
		case <-ctx.Done():
			m.Stop()
			return nil, fmt.Errorf("mariadbd on %s not ready: %w (see %s)", m.Addr, err, m.Log)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// DSN returns a go-sql-driver/mysql DSN for database db ("" for none).
func (m *MariaDB) DSN(db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd = MariaDBUser, MariaDBPassword
	c.Net, c.Addr, c.DBName = "tcp", m.Addr, db
	c.Timeout = 5 * time.Second
	return c.FormatDSN()
}

func (m *MariaDB) open(db string) (*sql.DB, error) {
	d, err := sql.Open("mysql", m.DSN(db))
	if err != nil {
		return nil, fmt.Errorf("open mariadb: %w", err)
	}
	return d, nil
}

// PID is the server's process id.
func (m *MariaDB) PID() int { return m.cmd.Process.Pid }

// Stop kills the server and waits for it. Its files stay in Dir.
func (m *MariaDB) Stop() {
	_ = m.cmd.Process.Kill()
	<-m.exited
	removeIf(m.sockDir)
}

func removeIf(dir string) {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// lookPath finds a binary on PATH or in the sbin directories Debian puts
// mariadbd in, which are not on every PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (apt-get install mariadb-server)", name)
}

// asRoot is needed because mariadbd refuses to run as root unless told to.
func asRoot() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// socketPath returns dir/mysqld.sock, or a path in a new short directory
// under /tmp if that is too long for a unix socket (108 bytes on Linux);
// extra is that directory, for the caller to remove, or "".
func socketPath(dir string) (sock, extra string, err error) {
	if p := filepath.Join(dir, "mysqld.sock"); len(p) < 100 {
		return p, "", nil
	}
	short, err := os.MkdirTemp("/tmp", "rlg")
	if err != nil {
		return "", "", fmt.Errorf("socket dir: %w", err)
	}
	return filepath.Join(short, "mysqld.sock"), short, nil
}

// templateVersion changes whenever the template's content changes.
const templateVersion = "1"

// mariadbTemplate returns a directory whose data/ subdirectory is a
// datadir made by mariadb-install-db, with the accounts set up and shut
// down cleanly, so that a copy starts like any stopped server.
func mariadbTemplate(mariadbd, installDB string) (string, error) {
	version, err := exec.Command(mariadbd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	h := sha256.New()
	fmt.Fprintln(h, templateVersion, mariadbd, installDB, os.Geteuid(), strings.TrimSpace(string(version)), mariadbSizing)
	root := filepath.Join(os.TempDir(), "replicar-localgroup")
	final := filepath.Join(root, "mariadb-"+hex.EncodeToString(h.Sum(nil))[:16])
	if templateComplete(final) {
		return final, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	// Two benchmarks started at once: one builds, the other waits.
	lock, err := os.OpenFile(final+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // closing releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	if templateComplete(final) {
		return final, nil
	}
	// A template that lost files, say to a /tmp cleaner, is made anew.
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	build, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(build) // a no-op once renamed
	if err := buildTemplate(mariadbd, installDB, build); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(build, "ok"), version, 0o644); err != nil {
		return "", err
	}
	// The rename makes the template appear whole or not at all.
	return final, os.Rename(build, final)
}

func templateComplete(dir string) bool {
	for _, f := range []string{"ok", "data/ibdata1", "data/ib_logfile0", "data/mysql/global_priv.MAI"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

func buildTemplate(mariadbd, installDB, build string) error {
	data := filepath.Join(build, "data")
	logPath := filepath.Join(build, "install.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	withTail := func(err error) error { return fmt.Errorf("%w: %s", err, logTail(logPath, 10)) }

	args := append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db"}, mariadbSizing...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, installDB, append(args, asRoot()...)...)
	install.Stdout, install.Stderr = log, log
	install.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := install.Run(); err != nil {
		return withTail(fmt.Errorf("mariadb-install-db: %w", err))
	}

	// The accounts are set up through a socket-only server, so the
	// template never listens on TCP.
	sock, sockDir, err := socketPath(build)
	if err != nil {
		return err
	}
	defer removeIf(sockDir)
	sargs := append([]string{"--no-defaults", "--datadir=" + data, "--socket=" + sock,
		"--pid-file=" + filepath.Join(build, "mariadbd.pid"), "--skip-networking"}, mariadbSizing...)
	srv := exec.Command(mariadbd, append(sargs, asRoot()...)...)
	srv.Stdout, srv.Stderr = log, log
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	kill := func() { _ = srv.Process.Kill(); <-done }

	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", sock
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		kill()
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
			return withTail(fmt.Errorf("mariadbd exited (%v): %w", werr, err))
		case <-ctx.Done():
			kill()
			return withTail(fmt.Errorf("mariadbd not ready: %w", err))
		case <-time.After(25 * time.Millisecond):
		}
	}
	if err := setupAccounts(ctx, db); err != nil {
		kill()
		return err
	}
	// A clean shutdown, so that copies start without crash recovery.
	db.Close()
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		kill()
		return fmt.Errorf("shutdown: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(60 * time.Second):
		kill()
		return withTail(errors.New("mariadbd did not shut down"))
	}
}

// setupAccounts drops anonymous users and root accounts for host names
// (they only produce warnings under skip-name-resolve), and gives the
// loopback root accounts MariaDBPassword.
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
		case a.user == "root" && (a.host == "localhost" || a.host == "127.0.0.1" || a.host == "::1"):
			root = append(root, a)
		case a.user == "" || a.user == "root":
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

func sqlString(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// logTail returns the last n lines of a log file, for an error message.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log: " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
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

// MariaDBVersion returns what `mariadbd --version` prints, for a
// benchmark's header.
func MariaDBVersion() (string, error) {
	mariadbd, err := lookPath("mariadbd")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(mariadbd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
