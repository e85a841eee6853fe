package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// BuildReplicar builds cmd/replicar once per test binary and returns its
// path. The module root is found from this file's location.
func BuildReplicar(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "replicar-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "replicar")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/replicar")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Replicar is a replicar node process started by StartReplicar.
type Replicar struct {
	*Process
	// Node is REPLICAR_NODE_ID.
	Node string
	// Addr, Repl and HTTP are its client, replication and HTTP addresses.
	Addr, Repl, HTTP string
	// Dir is its data directory (REPLICAR_DATA_DIR).
	Dir string

	vars map[string]string
}

// StartReplicar starts the replicar binary at bin as node with env (the
// REPLICAR_* variables besides the listen addresses, node id and data dir,
// which it picks), and waits until /healthz answers. It is killed when the
// test ends.
func StartReplicar(t testing.TB, bin, node string, env map[string]string) *Replicar {
	t.Helper()
	return StartReplicarOn(t, bin, node, "127.0.0.1", env)
}

// environ is the process environment: PATH and HOME only, then the node's.
func (r *Replicar) environ() []string {
	vars := map[string]string{
		"REPLICAR_NODE_ID":     r.Node,
		"REPLICAR_LISTEN":      r.Addr,
		"REPLICAR_REPL_LISTEN": r.Repl,
		"REPLICAR_HTTP_LISTEN": r.HTTP,
		"REPLICAR_DATA_DIR":    filepath.Join(r.Dir, "data"),
		"REPLICAR_LOG_FORMAT":  "json",
	}
	for k, v := range r.vars {
		vars[k] = v
	}
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.Dir}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+vars[k])
	}
	return out
}

func (r *Replicar) healthz(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.HTTP+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

// Status fetches the node's /status as a generic map.
func (r *Replicar) Status(ctx context.Context) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.HTTP+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// StartReplicarOn is StartReplicar with the client and replication ports
// bound on host, another loopback address such as "127.0.0.2", instead of
// 127.0.0.1. The port numbers are picked free on 127.0.0.1 and reserved, so
// that a proxy can listen on 127.0.0.1 with the same numbers and forward to
// host: with REPLICAR_ADVERTISE=127.0.0.1 in env, peers then reach the node
// only through that proxy, which a test can cut. The HTTP port stays on
// 127.0.0.1, so the readiness probe and Status reach the node directly.
func StartReplicarOn(t testing.TB, bin, node, host string, env map[string]string) *Replicar {
	t.Helper()
	dir := t.TempDir()
	r := &Replicar{Node: node, Dir: dir, vars: env}
	r.Process = newProcess("replicar-"+node, bin, dir, filepath.Join(dir, "replicar.log"))
	r.args = func() ([]string, error) { return nil, nil }
	r.env = r.environ
	r.ready = r.healthz
	r.readyTimeout = 30 * time.Second
	t.Cleanup(func() { r.cleanup(t) })
	err := r.startFresh(func() error {
		ports, err := freePorts(3)
		if err != nil {
			return err
		}
		r.Addr = host + ":" + strconv.Itoa(ports[0])
		r.Repl = host + ":" + strconv.Itoa(ports[1])
		r.HTTP = "127.0.0.1:" + strconv.Itoa(ports[2])
		return nil
	})
	if err != nil {
		t.Fatalf("start replicar %s on %s: %v", node, host, err)
	}
	return r
}

// Var is the value of one of the node's REPLICAR_* variables as started.
func (r *Replicar) Var(name string) string { return r.vars[name] }
