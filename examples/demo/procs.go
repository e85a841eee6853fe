package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a server process the demo started. It runs in a session of its
// own: a Ctrl-C in the demo's terminal does not reach it, and it keeps
// running after the demo exits. Its pid file (dir/name.pid) lets `stop`
// find it later.
type proc struct {
	name    string // "nats", "redis1", "n1": also the pid and log file names
	path    string // the executable
	args    []string
	env     []string // nil: the demo's own environment
	dir     string   // the state directory
	tied    bool     // killed when the demo dies: for tests, which must leave nothing behind
	pid     int
	exited  chan struct{} // closed when the demo has reaped it
	waitErr error
}

// logPath is where the process's stdout and stderr go.
func (p *proc) logPath() string { return filepath.Join(p.dir, p.name+".log") }

func (p *proc) pidPath() string { return filepath.Join(p.dir, p.name+".pid") }

// start launches the process, appending to its log, and records its pid.
func (p *proc) start() error {
	f, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	// The child holds its own descriptor; the demo must not keep a pipe
	// open that `make` would wait on after the demo exits.
	defer f.Close()
	fmt.Fprintf(f, "=== demo %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.path, strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if p.tied {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.pid = cmd.Process.Pid
	p.exited = make(chan struct{})
	// Reap it while the demo runs, so that a killed child is not left a
	// zombie that still looks alive; once the demo exits, init reaps.
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	rec := fmt.Sprintf("%d\n%s\n", p.pid, p.path)
	if err := os.WriteFile(p.pidPath(), []byte(rec), 0o644); err != nil {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		return fmt.Errorf("pid file of %s: %w", p.name, err)
	}
	return nil
}

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() error {
	if !p.running() {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.exited
	return nil
}

// waitReady polls probe until it succeeds, the process exits (the error
// then carries the end of its log), or ctx ends.
func (p *proc) waitReady(ctx context.Context, probe func(context.Context) error) error {
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		last = probe(pctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v); end of %s:\n%s", p.name, p.waitErr, p.logPath(), tail(p.logPath(), 15))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v; end of %s:\n%s", p.name, last, p.logPath(), tail(p.logPath(), 15))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// portTaken says whether a failed start was a port someone else bound
// between the demo picking it and the server binding it.
func portTaken(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "address already in use")
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct loopback ports that were free a moment ago:
// all n listeners are open at once, so the kernel cannot hand one out twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lookPath finds an executable on PATH, then where install-deps.sh and
// Debian put them when a non-login shell leaves them off PATH: GOBIN,
// GOPATH/bin (nats-server from go install) and the sbin directories.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	dirs = append(dirs, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, in GOPATH/bin or in /usr/sbin: run `bash scripts/install-deps.sh`", name)
}

// pidRecord is one pid file: the pid and the executable it was started as.
type pidRecord struct {
	name string
	pid  int
	exe  string
}

// readPidFiles returns the pid files in dir, nodes first (n*), then the
// stores and NATS, each group in name order: the order stop signals them.
func readPidFiles(dir string) ([]pidRecord, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pid"))
	if err != nil {
		return nil, err
	}
	var recs []pidRecord
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		fields := strings.Fields(string(b))
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s: want a pid and a path, got %q", path, b)
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil || pid <= 1 {
			return nil, fmt.Errorf("%s: bad pid %q", path, fields[0])
		}
		recs = append(recs, pidRecord{name: strings.TrimSuffix(filepath.Base(path), ".pid"), pid: pid, exe: fields[1]})
	}
	rank := func(name string) int {
		switch {
		case isNode(name):
			return 0
		case strings.HasPrefix(name, "redis"):
			return 1
		default:
			return 2
		}
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if ri, rj := rank(recs[i].name), rank(recs[j].name); ri != rj {
			return ri < rj
		}
		return recs[i].name < recs[j].name
	})
	return recs, nil
}

// alive reports whether the recorded process still runs as the program it
// was started as. A pid the kernel has since given to another program is
// not ours to signal.
func (r pidRecord) alive() bool {
	if err := syscall.Kill(r.pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) // no /proc: trust kill(0)
	}
	// Field 3, after the parenthesized command name, is the state; a
	// zombie has exited and only waits for its parent.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.pid))
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	// redis-server rewrites its argv[0] to "redis-server 127.0.0.1:port".
	argv0, _, _ = bytes.Cut(argv0, []byte{' '})
	return filepath.Base(string(argv0)) == filepath.Base(r.exe)
}

// stopGroup stops every process recorded under dir and removes dir. Nodes
// get SIGTERM first, so a leader hands over cleanly; the stores and NATS
// follow; whatever still runs after grace gets SIGKILL. say reports
// progress.
func stopGroup(dir string, grace time.Duration, say func(string)) error {
	recs, err := readPidFiles(dir)
	if err != nil {
		return err
	}
	stopped := 0
	for _, batch := range [][]pidRecord{nodesOf(recs, true), nodesOf(recs, false)} {
		var live []pidRecord
		for _, r := range batch {
			if r.alive() {
				_ = syscall.Kill(r.pid, syscall.SIGTERM)
				live = append(live, r)
			}
		}
		deadline := time.Now().Add(grace)
		for len(live) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			live = stillAlive(live)
		}
		for _, r := range live {
			say(fmt.Sprintf("%s (pid %d) did not stop within %v: SIGKILL", r.name, r.pid, grace))
			_ = syscall.Kill(-r.pid, syscall.SIGKILL) // its own process group
			_ = syscall.Kill(r.pid, syscall.SIGKILL)
		}
		for deadline := time.Now().Add(5 * time.Second); len(live) > 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			live = stillAlive(live)
		}
		if len(live) > 0 {
			return fmt.Errorf("%s (pid %d) is still running after SIGKILL", live[0].name, live[0].pid)
		}
		for _, r := range batch {
			stopped++
			say(fmt.Sprintf("stopped %s (pid %d)", r.name, r.pid))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if stopped == 0 {
		say("nothing was running")
	}
	return nil
}

// nodesOf returns the replicar nodes among recs, or everything else.
func nodesOf(recs []pidRecord, nodes bool) []pidRecord {
	var out []pidRecord
	for _, r := range recs {
		if isNode(r.name) == nodes {
			out = append(out, r)
		}
	}
	return out
}

// isNode says whether a process name is a replicar node's: "n" and digits.
func isNode(name string) bool {
	digits, ok := strings.CutPrefix(name, "n")
	if !ok || digits == "" {
		return false
	}
	_, err := strconv.Atoi(digits)
	return err == nil
}

func stillAlive(recs []pidRecord) []pidRecord {
	var out []pidRecord
	for _, r := range recs {
		if r.alive() {
			out = append(out, r)
		}
	}
	return out
}
