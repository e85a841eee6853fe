//go:build unix

package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinary builds replicar and runs it as operators do: the exit status,
// stderr and signal handling only show in a real process.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	bin := filepath.Join(t.TempDir(), "replicar")
	build := exec.Command(goTool, "build", "-o", bin, "-ldflags", "-X main.version=v0.0.0-test -X main.commit=feedbeef", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cleanEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "REPLICAR_NODE_ID=n1", "REPLICAR_NATS_LISTEN=127.0.0.1:" + freePort(t)}

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "replicar v0.0.0-test (commit feedbeef, go") {
			t.Errorf("version: %v, %q", err, out)
		}
	})

	t.Run("bad value", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = append(cleanEnv, "REPLICAR_FSYNC=sometimes")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Fatalf("exit: %v, want status %d", err, exitUsage)
		}
		want := `replicar: REPLICAR_FSYNC="sometimes": want one of always, everysec, no` + "\n"
		if stderr.String() != want || stdout.Len() != 0 {
			t.Errorf("stderr %q, stdout %q; want exactly %q", stderr.String(), stdout.String(), want)
		}
	})

	t.Run("SIGTERM stops a node cleanly", func(t *testing.T) {
		cmd := exec.Command(bin)
		// The backend is a port nothing listens on: the node serves
		// clients (with "backend unavailable") and retries it.
		cmd.Env = append(cleanEnv, "REPLICAR_PASSWORD=hunter2", "REPLICAR_BACKEND=127.0.0.1:1", "REPLICAR_LISTEN=127.0.0.1:0", "REPLICAR_REPL_LISTEN=127.0.0.1:0", "REPLICAR_HTTP_LISTEN=127.0.0.1:0")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill() // only if the test fails before Wait

		// Read the log until the node says it is waiting, then keep draining
		// it so the process never blocks on a full pipe.
		ready := make(chan struct{})
		var logged bytes.Buffer
		drained := make(chan struct{})
		started := false
		go func() {
			defer close(drained)
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				logged.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "front end listening") && !started {
					started = true
					close(ready)
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("node did not start within 10s")
		}
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { <-drained; waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, logged.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("node still running 5s after SIGTERM")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("shutdown took %v", d)
		}
		log := logged.String()
		if !strings.Contains(log, `"shut down`) || !strings.Contains(log, "terminated") || strings.Contains(log, "hunter2") {
			t.Errorf("log:\n%s", log)
		}
	})
}

// freePort is a loopback port nothing listens on now: the embedded NATS
// server must not assume 4222 is free.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
