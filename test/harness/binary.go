package harness

import (
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// installHints says how to get each binary the harness may need.
var installHints = map[string]string{
	"redis-server":       "apt-get install redis-server",
	"redis-cli":          "apt-get install redis-tools",
	"mariadbd":           "apt-get install mariadb-server",
	"mariadb-install-db": "apt-get install mariadb-server",
	"mariadb":            "apt-get install mariadb-client",
	"sysbench":           "apt-get install sysbench",
	"nats-server":        "go install github.com/nats-io/nats-server/v2@v2.15.2",
}

// extraDirs are searched after PATH. Debian puts mariadbd in /usr/sbin, which
// is not on PATH in every non-login shell, and go install puts nats-server in
// GOBIN or GOPATH/bin, which often is not on PATH either.
func extraDirs() []string {
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, p := range filepath.SplitList(build.Default.GOPATH) {
		if p != "" {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return append(dirs, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
}

// LookPath finds an executable by name on PATH, then in GOBIN, GOPATH/bin and
// the usual system directories, including the sbin ones.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range extraDirs() {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("look up %s: %w", name, exec.ErrNotFound)
}

// InCI reports whether the CI environment variable is set to a true value.
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Require makes sure every named binary can be found with LookPath. If one
// is missing, the test is skipped, or, when CI=true, fails with an install
// hint, so that CI never passes by skipping.
func Require(t testing.TB, binaries ...string) {
	t.Helper()
	var missing, hints []string
	for _, b := range binaries {
		if _, err := LookPath(b); err != nil {
			missing = append(missing, b)
			if h, ok := installHints[b]; ok {
				hints = append(hints, h)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %s; run `bash scripts/install-deps.sh`", strings.Join(missing, ", "))
	if len(hints) > 0 {
		msg += " (" + strings.Join(hints, "; ") + ")"
	}
	if InCI() {
		t.Fatalf("harness: %s", msg)
	}
	t.Skipf("harness: %s", msg)
}

// binary resolves a binary the caller has already passed to Require.
func binary(t testing.TB, name string) string {
	t.Helper()
	Require(t, name)
	p, err := LookPath(name)
	if err != nil {
		// Require has already skipped or failed; this cannot happen.
		t.Fatal(errors.Join(errors.New("harness: binary vanished"), err))
	}
	return p
}
