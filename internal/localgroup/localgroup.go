package localgroup

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server process.
type Redis struct {
	Addr string
	cmd  *exec.Cmd
}

// StartRedis starts redis-server on a free loopback port with its files in
// dir, and waits until it answers. args are extra server options.
func StartRedis(dir string, args ...string) (*Redis, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	// redis-server changes into --dir before it opens --logfile, so a
	// relative path would be taken from inside the dir.
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	cmd := exec.Command("redis-server", append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no",
		"--logfile", filepath.Join(dir, "redis.log")}, args...)...)
	// The servers must not outlive this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	r := &Redis{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	for i := 0; c.Ping(context.Background()).Err() != nil; i++ {
		if i > 200 {
			r.Stop()
			return nil, fmt.Errorf("redis-server on %s did not start (see %s)", r.Addr, filepath.Join(dir, "redis.log"))
		}
		time.Sleep(25 * time.Millisecond)
	}
	return r, nil
}

// Stop kills the server and waits for it.
func (r *Redis) Stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// FreePort asks the kernel for a free loopback port.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PID is the server's process id.
func (r *Redis) PID() int { return r.cmd.Process.Pid }

// Relay is a running bench/relay process.
type Relay struct {
	Addr string
	cmd  *exec.Cmd
	log  *os.File
}

// StartRelay runs the bench/relay binary bin on a free loopback port in
// front of backend, logging to a file in dir, and waits until it listens.
func StartRelay(bin, backend, dir string) (*Relay, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.Create(filepath.Join(dir, "relay-"+strconv.Itoa(port)+".log"))
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	cmd := exec.Command(bin, addr, backend)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Relay{Addr: addr, cmd: cmd, log: logf}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("relay did not listen on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PID is the relay's process id.
func (r *Relay) PID() int { return r.cmd.Process.Pid }

// Stop kills the relay and waits for it.
func (r *Relay) Stop() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.log.Close()
}
