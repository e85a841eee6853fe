package mariadbsrv

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// User and Password log in over TCP, with every privilege, to every server
// started from a template. There are no anonymous users.
const (
	User     = "root"
	Password = "replicar"
)

// LookPath finds a binary on PATH or in the sbin directories Debian puts
// mariadbd in, which are not on every PATH.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (apt-get install mariadb-server)", name)
}

// Version returns what `mariadbd --version` prints.
func Version(mariadbd string) (string, error) {
	out, err := exec.Command(mariadbd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// AsRoot is needed because mariadbd refuses to run as root unless told to.
func AsRoot() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// SocketPath returns dir/name, or a path in a new short directory under
// /tmp if that is too long for a unix socket (108 bytes on Linux, with the
// NUL); extra is that directory, for the caller to remove, or "".
func SocketPath(dir, name string) (sock, extra string, err error) {
	if p := filepath.Join(dir, name); len(p) < 100 {
		return p, "", nil
	}
	short, err := os.MkdirTemp("/tmp", "rmdb")
	if err != nil {
		return "", "", fmt.Errorf("socket dir: %w", err)
	}
	return filepath.Join(short, name), short, nil
}

// Server is where a server started from a copy of a template keeps its
// files and listens.
type Server struct {
	DataDir string
	Socket  string
	// Dir holds the pid file and tmp/, which the caller has made.
	Dir string
	// LogError is the error log; "" leaves it on stderr.
	LogError string
	Port     int
	ServerID uint32
	// Sizing is what the template was made with (see Template).
	Sizing []string
}

// Args returns mariadbd's command line for s. The caller appends its own
// options (binary log, durability), which override these.
func Args(s Server) []string {
	args := []string{
		// Never read /etc/mysql: the system's settings are not ours.
		"--no-defaults",
		"--datadir=" + s.DataDir,
		"--socket=" + s.Socket,
		"--pid-file=" + filepath.Join(s.Dir, "mariadbd.pid"),
		"--tmpdir=" + filepath.Join(s.Dir, "tmp"),
	}
	if s.LogError != "" {
		args = append(args, "--log-error="+s.LogError)
	}
	args = append(args,
		"--port="+strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1",
		"--server-id="+strconv.FormatUint(uint64(s.ServerID), 10),
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	)
	args = append(args, s.Sizing...)
	return append(args, AsRoot()...)
}

// Config returns a go-sql-driver/mysql config that logs in to addr as
// User, for database db ("" for none).
func Config(addr, db string) *mysql.Config {
	c := mysql.NewConfig()
	c.User, c.Passwd = User, Password
	c.Net, c.Addr, c.DBName = "tcp", addr, db
	c.Timeout = 5 * time.Second
	return c
}

// SelectOne is the readiness check: SELECT 1 with cfg. A server answers
// it once it accepts logins over TCP, which is what its users need.
func SelectOne(ctx context.Context, cfg *mysql.Config) error {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// LogTail returns the last n lines of a log file, for an error message.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log: " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
