package localgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/replicar/replicar/internal/mariadbsrv"
)

// MariaDBUser and MariaDBPassword log in to every server StartMariaDB
// starts, over TCP, with every privilege. There are no anonymous users.
const (
	MariaDBUser     = mariadbsrv.User
	MariaDBPassword = mariadbsrv.Password
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
// (mariadbsrv.Template), keyed by the server version: installing afresh
// costs seconds for every server.
func StartMariaDB(dir string, serverID uint32, args ...string) (*MariaDB, error) {
	mariadbd, err := mariadbsrv.LookPath("mariadbd")
	if err != nil {
		return nil, err
	}
	installDB, err := mariadbsrv.LookPath("mariadb-install-db")
	if err != nil {
		return nil, err
	}
	tmpl, err := mariadbsrv.Template(mariadbd, installDB, mariadbSizing)
	if err != nil {
		return nil, fmt.Errorf("mariadb %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mariadb dir: %w", err)
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("mariadb dir: %w", err)
	}
	if err := mariadbsrv.CopyDir(filepath.Join(tmpl, "data"), data); err != nil {
		return nil, fmt.Errorf("mariadb datadir: %w", err)
	}
	sock, sockDir, err := mariadbsrv.SocketPath(dir, "mysqld.sock")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		removeIf(sockDir)
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
	all := mariadbsrv.Args(mariadbsrv.Server{
		DataDir:  data,
		Socket:   sock,
		Dir:      dir,
		LogError: m.Log,
		Port:     port,
		ServerID: serverID,
		Sizing:   mariadbSizing,
	})
	m.cmd = exec.Command(mariadbd, append(all, args...)...)
	// The servers must not outlive this process, however it ends.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		removeIf(sockDir)
		return nil, fmt.Errorf("start mariadbd: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := mariadbsrv.SelectOne(ctx, mariadbsrv.Config(m.Addr, ""))
		if err == nil {
			return m, nil
		}
		select {
		case <-m.exited:
			removeIf(sockDir)
			return nil, fmt.Errorf("mariadbd on %s exited: %s", m.Addr, mariadbsrv.LogTail(m.Log, 5))
		case <-ctx.Done():
			m.Stop()
			return nil, fmt.Errorf("mariadbd on %s not ready: %w (see %s)", m.Addr, err, m.Log)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// DSN returns a go-sql-driver/mysql DSN for database db ("" for none).
func (m *MariaDB) DSN(db string) string {
	return mariadbsrv.Config(m.Addr, db).FormatDSN()
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

// MariaDBVersion returns what `mariadbd --version` prints, for a
// benchmark's header.
func MariaDBVersion() (string, error) {
	mariadbd, err := mariadbsrv.LookPath("mariadbd")
	if err != nil {
		return "", err
	}
	return mariadbsrv.Version(mariadbd)
}
