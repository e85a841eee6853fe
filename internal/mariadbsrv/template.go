package mariadbsrv

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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// templateMu stops two starts of one process from building the same
// template at once; flock does not exclude within a process. Other
// processes are kept apart by a lock file.
var templateMu sync.Mutex

// templateVersion changes whenever the template's content changes.
const templateVersion = "1"

// installTailLines is how much of the install log an error shows.
const installTailLines = 20

// Template returns a directory whose data/ subdirectory is a datadir made
// by mariadb-install-db, with the accounts set up (see User) and shut down
// cleanly, so that a copy (CopyDir) starts like any stopped server.
//
// sizing holds the mariadbd options that shape the files, such as
// --innodb-log-file-size; every server started from a copy must be given
// the same ones, so that none has to resize its redo log at start. The
// template is kept under os.TempDir()/replicar-mariadb, keyed by the
// server version and sizing: installing afresh costs seconds per server.
func Template(mariadbd, installDB string, sizing []string) (string, error) {
	templateMu.Lock()
	defer templateMu.Unlock()

	version, err := Version(mariadbd)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintln(h, templateVersion, mariadbd, installDB, os.Geteuid(), version, sizing)
	root := filepath.Join(os.TempDir(), "replicar-mariadb")
	final := filepath.Join(root, "mariadb-"+hex.EncodeToString(h.Sum(nil))[:16])
	if templateComplete(final) {
		return final, nil
	}

	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	// Several test binaries or benchmarks start at once; one builds while
	// the others wait, instead of all of them running mariadb-install-db.
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
	if err := buildTemplate(mariadbd, installDB, build, sizing); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	if err := os.WriteFile(filepath.Join(build, "ok"), []byte(version+"\n"), 0o644); err != nil {
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

// childAttr puts a child in its own process group and has it killed if
// this process dies, so that it does not hold files.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func buildTemplate(mariadbd, installDB, build string, sizing []string) error {
	data := filepath.Join(build, "data")
	logPath := filepath.Join(build, "install.log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	tail := func(err error) error {
		return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, logPath, LogTail(logPath, installTailLines))
	}

	args := []string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db"}
	args = append(append(args, sizing...), AsRoot()...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, installDB, args...)
	install.Stdout, install.Stderr = log, log
	install.SysProcAttr = childAttr()
	if err := install.Run(); err != nil {
		return tail(fmt.Errorf("mariadb-install-db: %w", err))
	}

	// The accounts are set up through a socket-only server, so the
	// template never listens on TCP.
	sock, sockDir, err := SocketPath(build, "s.sock")
	if err != nil {
		return err
	}
	if sockDir != "" {
		defer os.RemoveAll(sockDir)
	}
	sargs := []string{"--no-defaults", "--datadir=" + data, "--socket=" + sock,
		"--pid-file=" + filepath.Join(build, "mariadbd.pid"), "--skip-networking"}
	sargs = append(append(sargs, sizing...), AsRoot()...)
	srv := exec.Command(mariadbd, sargs...)
	srv.Stdout, srv.Stderr = log, log
	srv.SysProcAttr = childAttr()
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
			return tail(fmt.Errorf("mariadbd exited (%v): %w", werr, err))
		case <-ctx.Done():
			kill()
			return tail(fmt.Errorf("mariadbd not ready: %w", err))
		case <-time.After(25 * time.Millisecond):
		}
	}
	if err := setupAccounts(ctx, db); err != nil {
		kill()
		return tail(err)
	}
	// A clean shutdown, so that copies start without crash recovery.
	// SIGTERM rather than the SHUTDOWN statement, whose connection dies
	// mid-reply and makes the driver log a broken pipe.
	db.Close()
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		kill()
		return tail(fmt.Errorf("shutdown: %w", err))
	}
	select {
	case <-done:
		return nil
	case <-time.After(60 * time.Second):
		kill()
		return tail(errors.New("mariadbd did not shut down"))
	}
}

// setupAccounts drops anonymous users and root accounts for host names
// (they only produce warnings under skip-name-resolve), and gives the
// loopback root accounts Password.
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
		q := "ALTER USER " + sqlString(a.user) + "@" + sqlString(a.host) + " IDENTIFIED BY " + sqlString(Password)
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

// CopyDir copies the regular files and directories under src into dst,
// keeping their permissions; a template's data/ into a new server's
// datadir.
func CopyDir(src, dst string) error {
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
