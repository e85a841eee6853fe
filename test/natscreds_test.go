package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/replicar/replicar/test/harness"
)

// natsOperator is a decentralized-auth NATS setup as nsc makes one: an
// operator, a system account and an application account with JetStream,
// whose JWTs the server preloads.
type natsOperator struct {
	operatorJWT         string
	sysPub, sysJWT      string
	appPub, appJWT      string
	appKey, strangerKey nkeys.KeyPair // the strangers' account is not the server's
}

func newNATSOperator(t *testing.T) *natsOperator {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, err := op.PublicKey()
	must(err)
	o := &natsOperator{}
	o.operatorJWT, err = jwt.NewOperatorClaims(opPub).Encode(op)
	must(err)
	account := func(name string, jetStream bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		claims := jwt.NewAccountClaims(pub)
		claims.Name = name
		if jetStream {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := claims.Encode(op)
		must(err)
		return kp, pub, token
	}
	_, o.sysPub, o.sysJWT = account("SYS", false)
	o.appKey, o.appPub, o.appJWT = account("APP", true)
	o.strangerKey, _, _ = account("STRANGER", true)
	return o
}

// serverConfig is the operator-mode part of the server's config file.
func (o *natsOperator) serverConfig() []string {
	return []string{
		"operator: " + o.operatorJWT,
		"system_account: " + o.sysPub,
		"resolver: MEMORY",
		"resolver_preload: { " + o.sysPub + ": " + o.sysJWT + ", " + o.appPub + ": " + o.appJWT + " }",
	}
}

// creds writes a credentials file for a new user of account: the user's
// JWT, signed by the account, and the user's seed.
func (o *natsOperator) creds(t *testing.T, account nkeys.KeyPair, name string) string {
	t.Helper()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	claims := jwt.NewUserClaims(pub)
	claims.Name = name
	token, err := claims.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	data, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// REPLICAR_NATS_CREDS logs a node in to a NATS server that requires
// credentials (operator mode, as nsc and Synadia Cloud set it up): with a
// user of the server's account it elects and serves; with a user of an
// account the server does not know it is refused, says so in its log, and
// never joins the group.
func TestNATSCredentials(t *testing.T) {
	harness.Require(t, "nats-server", "redis-server")
	op := newNATSOperator(t)
	appCreds := op.creds(t, op.appKey, "app")
	ns := harness.StartNATS(t, harness.NATSConfig(op.serverConfig()...),
		harness.NATSProbeOptions(nats.UserCredentials(appCreds)))

	// Anonymous clients are refused: the credentials are what lets a node in.
	if nc, err := nats.Connect(ns.URL, nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("the server took an anonymous client; the test would not show that credentials are used")
	}

	bin := harness.BuildReplicar(t)
	group := "gnatscreds"
	start := func(name, creds string) *harness.Replicar {
		return harness.StartReplicar(t, bin, name, map[string]string{
			"REPLICAR_BACKEND": startRedis(t).Addr, "REPLICAR_NATS_URL": ns.URL, "REPLICAR_NATS_CREDS": creds,
			"REPLICAR_GROUP": group, "REPLICAR_LEASE_TTL": "1s", "REPLICAR_MAX_LAG": "1s", "REPLICAR_ACK_POLICY": "leader",
		})
	}
	n1 := start("n1", appCreds)
	g := &procGroup{nats: ns, nodes: []*harness.Replicar{n1}}
	g.waitLeader(t, 20*time.Second)
	ctx := context.Background()
	if err := g.client(t, 0).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("a write to the node logged in with credentials: %v", err)
	}

	// A user of an account the server does not know: the node stops at
	// start with the server's reason rather than retrying in silence.
	strangerCreds := op.creds(t, op.strangerKey, "stranger")
	ctxRun, cancelRun := context.WithTimeout(ctx, 30*time.Second)
	defer cancelRun()
	cmd := exec.CommandContext(ctxRun, bin)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(),
		"REPLICAR_BACKEND=" + startRedis(t).Addr, "REPLICAR_NATS_URL=" + ns.URL,
		"REPLICAR_NATS_CREDS=" + strangerCreds, "REPLICAR_GROUP=" + group,
		"REPLICAR_NODE_ID=n2", "REPLICAR_LEASE_TTL=1s", "REPLICAR_MAX_LAG=1s", "REPLICAR_DATA_DIR=" + t.TempDir(),
		"REPLICAR_LISTEN=" + harness.FreeAddr(t), "REPLICAR_REPL_LISTEN=" + harness.FreeAddr(t),
		"REPLICAR_HTTP_LISTEN=" + harness.FreeAddr(t), "REPLICAR_LOG_FORMAT=json"}
	out, err := cmd.CombinedOutput()
	if ctxRun.Err() != nil {
		t.Fatalf("a node whose credentials the server refuses kept running:\n%s", out)
	}
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Fatalf("exit code %d (%v), want 1:\n%s", code, err, out)
	}
	if !strings.Contains(string(out), "Authorization Violation") || !strings.Contains(string(out), "node failed") {
		t.Fatalf("the refused node does not say why:\n%s", out)
	}
	seed, err := jwt.ParseDecoratedNKey(mustRead(t, strangerCreds))
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := seed.Seed(); strings.Contains(string(out), string(raw)) {
		t.Fatalf("the node printed its NKey seed:\n%s", out)
	}
	ctxStatus, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := n1.Status(ctxStatus)
	if err != nil {
		t.Fatal(err)
	}
	members, _ := st["members"].([]any)
	for _, m := range members {
		if mm, ok := m.(map[string]any); ok && mm["node"] == "n2" {
			t.Fatalf("the refused node is in the group's directory: %v", st["members"])
		}
	}
	if err := g.client(t, 0).Get(ctx, "k").Err(); err != nil {
		t.Fatalf("the group after the refusal: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
