package mariadbsrv

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestArgs checks the command line both starters rely on: the error log
// only when asked, the sizing the template was made with, and nothing
// from /etc/mysql. Real servers are started by the starters' tests.
func TestArgs(t *testing.T) {
	s := Server{DataDir: "/d/data", Socket: "/d/s.sock", Dir: "/d", Port: 4000, ServerID: 7,
		Sizing: []string{"--innodb-log-file-size=8M"}}
	args := Args(s)
	for _, want := range []string{"--no-defaults", "--datadir=/d/data", "--socket=/d/s.sock", "--pid-file=/d/mariadbd.pid",
		"--tmpdir=/d/tmp", "--port=4000", "--bind-address=127.0.0.1", "--server-id=7", "--innodb-log-file-size=8M"} {
		if !slices.Contains(args, want) {
			t.Errorf("no %s in %q", want, args)
		}
	}
	if args[0] != "--no-defaults" {
		t.Errorf("--no-defaults must come first: %q", args)
	}
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--log-error") }) {
		t.Errorf("log-error without LogError: %q", args)
	}
	s.LogError = "/d/err.log"
	if !slices.Contains(Args(s), "--log-error=/d/err.log") {
		t.Errorf("no log-error: %q", Args(s))
	}
}

func TestSocketPath(t *testing.T) {
	if sock, extra, err := SocketPath("/tmp/x", "m.sock"); err != nil || sock != "/tmp/x/m.sock" || extra != "" {
		t.Errorf("short: %q %q %v", sock, extra, err)
	}
	sock, extra, err := SocketPath("/tmp/"+strings.Repeat("d", 120), "m.sock")
	if err != nil || extra == "" || len(sock) >= 100 || !strings.HasPrefix(sock, extra) {
		t.Errorf("long: %q %q %v", sock, extra, err)
	}
	if extra != "" {
		t.Cleanup(func() { os.RemoveAll(extra) })
	}
}
