package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNotRunning is returned when a signal is sent to a server that is not
// running, for example Stop after Kill.
var ErrNotRunning = errors.New("not running")

// logTailLines is how much of a server log a failure message shows.
const logTailLines = 40

// Process is a server child process started by the harness. Redis, MariaDB
// and NATS embed it, so every real server can be killed, paused and
// restarted the same way. Its methods are safe for concurrent use and may be
// called from any goroutine; they return errors instead of failing the test.
type Process struct {
	name    string
	path    string
	dir     string
	logPath string
	// args builds the command line; it may also write config files.
	args func() ([]string, error)
	// env, when set, is the process environment (else the test's own).
	env func() []string
	// ready answers nil once the server serves; it is polled after a start.
	ready        func(ctx context.Context) error
	readyTimeout time.Duration

	mu  sync.Mutex
	cur *run
	// shown is the log size when a failure message last carried its tail,
	// so that cleanup does not print the same lines again.
	shown int64
}

// run is one execution of the process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the Wait result, written before done is closed
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func newProcess(name, path, dir, logPath string) *Process {
	return &Process{name: name, path: path, dir: dir, logPath: logPath, readyTimeout: 30 * time.Second}
}

// PID returns the process id of the running server, or 0.
func (p *Process) PID() int {
	r := p.running()
	if r == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Running reports whether the server process exists; a stopped (SIGSTOP)
// process counts as running.
func (p *Process) Running() bool {
	return p.running() != nil
}

// LogPath returns the file that receives the server's stdout and stderr.
func (p *Process) LogPath() string {
	return p.logPath
}

// LogTail returns the last n lines of the server log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kill sends SIGKILL to the server's process group and waits until it is
// gone: a crash, with no chance to flush or say goodbye.
func (p *Process) Kill() error {
	r := p.running()
	if r == nil {
		return nil
	}
	p.signalGroup(r, syscall.SIGKILL)
	select {
	case <-r.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kill %s: pid %d still alive after 10s", p.name, r.cmd.Process.Pid)
	}
}

// Stop pauses the server with SIGSTOP. It keeps its sockets open but answers
// nothing, like a process stuck in a long GC pause or a frozen VM.
func (p *Process) Stop() error {
	return p.signal(syscall.SIGSTOP)
}

// Cont resumes a server paused by Stop.
func (p *Process) Cont() error {
	return p.signal(syscall.SIGCONT)
}

// Shutdown asks the server to exit cleanly with SIGTERM and waits up to
// 60 seconds, after which it kills it.
func (p *Process) Shutdown() error {
	r := p.running()
	if r == nil {
		return nil
	}
	p.signalGroup(r, syscall.SIGTERM)
	// A paused server would never see the SIGTERM.
	p.signalGroup(r, syscall.SIGCONT)
	select {
	case <-r.done:
		return nil
	case <-time.After(60 * time.Second):
		if err := p.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("shutdown %s: no exit 60s after SIGTERM, killed", p.name)
	}
}

// Start starts the server again after Kill or Shutdown, on the same ports
// and data directory, and waits until it is ready. It fails if the server
// is still running.
func (p *Process) Start() error {
	return p.startAndWait(false)
}

// Restart kills the server (SIGKILL, as in a crash) and starts it again on
// the same ports and data directory.
func (p *Process) Restart() error {
	if err := p.Kill(); err != nil {
		return err
	}
	return p.Start()
}

func (p *Process) running() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.exited() {
		return nil
	}
	return p.cur
}

func (p *Process) signal(sig syscall.Signal) error {
	r := p.running()
	if r == nil {
		return fmt.Errorf("signal %s: %w", p.name, ErrNotRunning)
	}
	if err := syscall.Kill(-r.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	return nil
}

// signalGroup signals the whole process group, which also reaches children
// the server forked (redis forks for AOF rewrites).
func (p *Process) signalGroup(r *run, sig syscall.Signal) {
	// ESRCH only means that everything in the group has already exited.
	_ = syscall.Kill(-r.cmd.Process.Pid, sig)
}

// launch starts the process without waiting for it to be ready. A fresh
// launch truncates the log; a restart appends to it.
func (p *Process) launch(fresh bool) (*run, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !p.cur.exited() {
		return nil, fmt.Errorf("start %s: already running as pid %d", p.name, p.cur.cmd.Process.Pid)
	}
	args, err := p.args()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if fresh {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(p.logPath, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	// The child keeps its own descriptor; ours is not needed after Start.
	defer f.Close()
	fmt.Fprintf(f, "=== harness %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.path, shellJoin(args))

	cmd := exec.Command(p.path, args...)
	cmd.Dir = p.dir
	if p.env != nil {
		cmd.Env = p.env()
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = pdeathsig()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.cur = r
	return r, nil
}

// startAndWait launches the process and polls ready until it answers, the
// process exits, or readyTimeout passes. Errors carry the log tail.
func (p *Process) startAndWait(fresh bool) error {
	r, err := p.launch(fresh)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.readyTimeout)
	defer cancel()
	if err := p.waitReady(ctx, r, p.ready); err != nil {
		_ = p.Kill()
		return p.withLog(err)
	}
	return nil
}

// waitReady polls probe until it succeeds, r exits or ctx ends.
func (p *Process) waitReady(ctx context.Context, r *run, probe func(context.Context) error) error {
	// A probe may hang on a port that accepts but never answers, which is
	// what a port taken by someone else looks like; the exit of the
	// process cuts it short.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	// Start fast, then back off: nats-server logs a warning for every
	// failed health check, and a slow start should not bury the log tail.
	wait := 25 * time.Millisecond
	for {
		err := probeOnce(ctx, probe)
		if err == nil && !r.exited() {
			return nil
		}
		select {
		case <-time.After(wait):
			wait = min(wait*3/2, 250*time.Millisecond)
			if !r.exited() {
				continue
			}
		case <-ctx.Done():
		}
		if r.exited() {
			return fmt.Errorf("%s exited during startup (%v); last probe: %v", p.name, r.err, err)
		}
		return fmt.Errorf("%s not ready after %s: %w", p.name, p.readyTimeout, err)
	}
}

// probeOnce runs probe with a 2s timeout, and returns as soon as ctx ends
// even if the probe does not notice, as nats.Connect does not. The probe's
// goroutine ends by its own timeout.
func probeOnce(ctx context.Context, probe func(context.Context) error) error {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- probe(pctx) }()
	select {
	case err := <-errc:
		return err
	case <-pctx.Done():
		return pctx.Err()
	}
}

// pdeathsig puts a child in its own process group, so that cleanup reaches
// the server's own children too, and has it killed if the test binary dies,
// so that it does not hold ports and files. Linux sends the signal when the
// thread that forked exits; the Go runtime only ends threads that a goroutine
// locked and left locked, which the harness never does.
func pdeathsig() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// withLog adds the tail of the server log to err.
func (p *Process) withLog(err error) error {
	if fi, serr := os.Stat(p.logPath); serr == nil {
		p.mu.Lock()
		p.shown = fi.Size()
		p.mu.Unlock()
	}
	return fmt.Errorf("%w\n--- last %d lines of %s ---\n%s", err, logTailLines, p.logPath, p.LogTail(logTailLines))
}

// startFresh is the first start of a server. ports picks new ports before
// each try; when a try fails because a port was taken between picking and
// binding, it picks again.
func (p *Process) startFresh(ports func() error) error {
	const attempts = 5
	for i := 1; ; i++ {
		if err := ports(); err != nil {
			return err
		}
		err := p.startAndWait(true)
		if err == nil {
			return nil
		}
		if i == attempts || !addrInUse(p.LogTail(logTailLines)) {
			return err
		}
	}
}

// cleanup kills the process at the end of a test and, if the test failed,
// logs the tail of the server log.
func (p *Process) cleanup(t testing.TB) {
	if err := p.Kill(); err != nil {
		t.Errorf("harness: %v", err)
	}
	fi, err := os.Stat(p.logPath)
	p.mu.Lock()
	unseen := err == nil && fi.Size() != p.shown
	p.mu.Unlock()
	if t.Failed() && unseen {
		t.Logf("harness: last %d lines of %s:\n%s", logTailLines, p.logPath, p.LogTail(logTailLines))
	}
}

// shellJoin joins args for the log, quoting the empty and spaced ones.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
