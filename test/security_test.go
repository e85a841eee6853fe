package test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replicar/replicar/fanout"
	"github.com/replicar/replicar/internal/tlsconf/tlstest"
	"github.com/replicar/replicar/test/harness"
)

// Secrets the security tests use; none may show in a log or in
// `replicar config`.
const (
	secClientPass  = "cl1ent-pass-7f3a9"
	secAlicePass   = "al1ce-pass-91c2e"
	secBackendPass = "backend-pass-4d7b1"
	secNATSPass    = "nats-pass-e58c0"
)

// pki is a throwaway CA with its files, and another CA whose
// certificates the group must refuse.
type pki struct {
	dir       string
	ca, other *tlstest.CA
	caFile    string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), ca: tlstest.NewCA(t, "replicar test CA"), other: tlstest.NewCA(t, "intruder CA")}
	p.caFile = p.ca.Write(t, p.dir, "ca")
	return p
}

// node issues name a certificate for 127.0.0.1 (serverAuth and
// clientAuth) and returns its files.
func (p *pki) node(t *testing.T, name string) (cert, key string) {
	t.Helper()
	return p.ca.Loopback(t, name).Write(t, p.dir, name)
}

// client is a go-redis client over TLS that trusts the CA.
func (p *pki) client(t *testing.T, addr, user, pass string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, Username: user, Password: pass,
		TLSConfig: &tls.Config{RootCAs: p.ca.Pool()}, MaxRetries: -1, PoolSize: 4,
		DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// startTLSGroup starts three nodes with TLS on every port, mutual TLS on
// the replication port, client AUTH and a users file.
func startTLSGroup(t *testing.T, p *pki) *procGroup {
	t.Helper()
	users := filepath.Join(p.dir, "users")
	if err := os.WriteFile(users, []byte("# accounts\nalice:"+secAlicePass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"REPLICAR_TLS_CA":     p.caFile,
		"REPLICAR_PASSWORD":   secClientPass,
		"REPLICAR_USERS_FILE": users,
		"REPLICAR_ACK_POLICY": "all",
	}
	for i := 1; i <= 3; i++ {
		cert, key := p.node(t, fmt.Sprintf("n%d", i))
		env[fmt.Sprintf("n%d:REPLICAR_TLS_CERT", i)] = cert
		env[fmt.Sprintf("n%d:REPLICAR_TLS_KEY", i)] = key
	}
	return startProcGroup(t, 3, env)
}

// TestTLSGroup runs a group with TLS everywhere and checks what a client
// and a peer see: go-redis over TLS through the leader, a follower and a
// router (forwarding over TLS), a plain-TCP client refused, AUTH required
// with the password and the users file, and on the replication port:
// certificates of another CA and none at all refused, the right
// certificate with a foreign group or an unknown node id refused, each
// refusal in the logs, while the followers go on streaming. No password
// shows in any log.
func TestTLSGroup(t *testing.T) {
	start := time.Now()
	p := newPKI(t)
	g := startTLSGroup(t, p)
	leader := g.waitLeader(t, 20*time.Second)
	follower := (leader + 1) % 3
	group := g.nodes[0].Var("REPLICAR_GROUP")
	ctx := context.Background()
	t.Logf("TLS group up in %v, leader n%d", time.Since(start).Round(time.Millisecond), leader+1)

	t.Run("ClientOverTLS", func(t *testing.T) {
		c := p.client(t, g.nodes[leader].Addr, "", secClientPass)
		if err := c.Set(ctx, "tls:leader", "v1", 0).Err(); err != nil {
			t.Fatalf("SET over TLS on the leader: %v", err)
		}
		if got, err := c.Get(ctx, "tls:leader").Result(); err != nil || got != "v1" {
			t.Fatalf("GET = %q, %v", got, err)
		}
		// Through a follower, which forwards to the leader's client port
		// over TLS, checking the leader's certificate against the CA.
		f := p.client(t, g.nodes[follower].Addr, "", secClientPass)
		if err := f.Set(ctx, "tls:follower", "v2", 0).Err(); err != nil {
			t.Fatalf("SET over TLS through a follower: %v", err)
		}
		if got, err := f.Get(ctx, "tls:follower").Result(); err != nil || got != "v2" {
			t.Fatalf("GET through the follower = %q, %v", got, err)
		}
		// The writes were replicated over mutual TLS to every store.
		for i, s := range g.stores {
			rc := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2})
			eventually(t, fmt.Sprintf("n%d's store holds both writes", i+1), func() bool {
				n, err := rc.Exists(ctx, "tls:leader", "tls:follower").Result()
				return err == nil && n == 2
			})
			rc.Close()
		}
	})

	top := t
	var router *harness.Replicar
	t.Run("ClientThroughRouter", func(t *testing.T) {
		cert, key := p.node(t, "r1")
		// Started on the test, not the subtest: its log is checked below.
		r := harness.StartReplicar(top, harness.BuildReplicar(t), "r1", map[string]string{
			"REPLICAR_NATS_URL": g.nats.URL, "REPLICAR_GROUP": group, "REPLICAR_LEASE_TTL": "1s",
			"REPLICAR_TLS_CERT": cert, "REPLICAR_TLS_KEY": key, "REPLICAR_TLS_CA": p.caFile,
			"REPLICAR_PASSWORD": secClientPass,
		})
		router = r
		c := p.client(t, r.Addr, "", secClientPass)
		eventually(t, "a write through the router over TLS", func() bool {
			return c.Set(ctx, "tls:router", "v3", 0).Err() == nil
		})
		if got, err := p.client(t, g.nodes[leader].Addr, "", secClientPass).Get(ctx, "tls:router").Result(); err != nil || got != "v3" {
			t.Fatalf("the router's write on the leader: %q, %v", got, err)
		}
	})

	t.Run("PlainTCPClientRefused", func(t *testing.T) {
		c := redis.NewClient(&redis.Options{Addr: g.nodes[leader].Addr, Protocol: 2, Password: secClientPass,
			MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
		defer c.Close()
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("a plain-TCP client got PONG from a TLS port")
		}
		// Byte for byte: the port answers a RESP command with no RESP.
		conn, err := net.DialTimeout("tcp", g.nodes[leader].Addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		conn.Write([]byte("*1\r\n$4\r\nPING\r\n"))
		b, _ := io.ReadAll(conn)
		if strings.Contains(string(b), "PONG") {
			t.Fatalf("plain TCP got %q", b)
		}
		// And a TLS client that does not trust the CA is refused too.
		bad := redis.NewClient(&redis.Options{Addr: g.nodes[leader].Addr, Protocol: 2, Password: secClientPass,
			TLSConfig: &tls.Config{RootCAs: p.other.Pool()}, MaxRetries: -1, DialTimeout: 2 * time.Second})
		defer bad.Close()
		var verr *tls.CertificateVerificationError
		if err := bad.Ping(ctx).Err(); !errors.As(err, &verr) {
			t.Fatalf("a client trusting another CA: %v, want a certificate verification error", err)
		}
	})

	t.Run("AuthRequired", func(t *testing.T) {
		for _, i := range []int{leader, follower} {
			none := p.client(t, g.nodes[i].Addr, "", "")
			if err := none.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
				t.Errorf("n%d without AUTH: %v, want NOAUTH", i+1, err)
			}
			wrong := p.client(t, g.nodes[i].Addr, "", "not-"+secClientPass)
			if err := wrong.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Errorf("n%d with a wrong password: %v, want WRONGPASS", i+1, err)
			}
			wrongUser := p.client(t, g.nodes[i].Addr, "alice", secClientPass)
			if err := wrongUser.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Errorf("n%d as alice with the default password: %v, want WRONGPASS", i+1, err)
			}
			// alice comes from REPLICAR_USERS_FILE; through the follower
			// her write is forwarded to the leader.
			alice := p.client(t, g.nodes[i].Addr, "alice", secAlicePass)
			key := fmt.Sprintf("alice:n%d", i+1)
			if err := alice.Set(ctx, key, "ok", 0).Err(); err != nil {
				t.Errorf("n%d as alice (users file): %v", i+1, err)
			}
			if got, err := alice.Get(ctx, key).Result(); err != nil || got != "ok" {
				t.Errorf("n%d as alice: GET = %q, %v", i+1, got, err)
			}
		}
	})

	// The followers' sessions so far; the refusals below must not cost
	// them one.
	sessions := map[int]int{}
	for i := range g.nodes {
		if i != leader {
			sessions[i] = countLog(t, g.nodes[i], "streaming from leader")
		}
	}
	t.Run("ReplicationRefusesOtherCA", func(t *testing.T) {
		other := p.other.Loopback(t, "n1").TLSCertificate(t)
		for name, cfg := range map[string]*tls.Config{
			// Go's client would only offer a certificate of a CA the server
			// names; an intruder offers it anyway.
			"other CA": {RootCAs: p.ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &other, nil
			}},
			"no certificate": {RootCAs: p.ca.Pool()},
		} {
			// A real member's id and the right group: only the certificate
			// is wrong.
			_, err := replHello(g.nodes[leader].Repl, cfg, fanout.Hello{Protocol: fanout.ProtocolVersion, Group: group, Node: g.nodes[follower].Node})
			if err == nil {
				t.Fatalf("%s: the replication port answered", name)
			}
			t.Logf("%s: %v", name, err)
		}
		if _, err := replHello(g.nodes[leader].Repl, nil, fanout.Hello{Protocol: fanout.ProtocolVersion, Group: group, Node: g.nodes[follower].Node}); err == nil {
			t.Fatal("plain TCP: the replication port answered")
		}
		eventually(t, "the leader logs the three refused handshakes", func() bool {
			return countLog(t, g.nodes[leader], "replication peer refused", "tls handshake") >= 3
		})
		log := logOf(t, g.nodes[leader])
		for _, why := range []string{"certificate signed by unknown authority", "client didn't provide a certificate", "first record does not look like a TLS handshake"} {
			if !strings.Contains(log, why) {
				t.Errorf("the leader's log does not say %q", why)
			}
		}
	})

	t.Run("ReplicationRefusesForeignGroupAndUnknownNode", func(t *testing.T) {
		// A certificate the CA signed: TLS lets it in, the handshake frame
		// does not.
		intruder := p.ca.Loopback(t, "n9").TLSCertificate(t)
		cfg := &tls.Config{RootCAs: p.ca.Pool(), Certificates: []tls.Certificate{intruder}}
		f, err := replHello(g.nodes[leader].Repl, cfg, fanout.Hello{Protocol: fanout.ProtocolVersion, Group: "elsewhere", Node: g.nodes[follower].Node})
		if err != nil || f.Type != fanout.TypeError || f.Error.Code != fanout.ErrCodeGroup {
			t.Fatalf("foreign group: %+v, %v; want an ERROR frame with code %d", f, err, fanout.ErrCodeGroup)
		}
		t0 := time.Now()
		f, err = replHello(g.nodes[leader].Repl, cfg, fanout.Hello{Protocol: fanout.ProtocolVersion, Group: group, Node: "n9"})
		if err != nil || f.Type != fanout.TypeError || f.Error.Code != fanout.ErrCodeNotMember || !strings.Contains(f.Error.Message, "member directory") {
			t.Fatalf("unknown node: %+v, %v; want an ERROR frame with code %d", f, err, fanout.ErrCodeNotMember)
		}
		t.Logf("unknown node refused after %v (looked up twice): %s", time.Since(t0).Round(time.Millisecond), f.Error.Message)
		// A follower's port serves full resync copies; an unknown node
		// must not get this store copied to an address of its choice.
		f, err = replFrame(g.nodes[follower].Repl, cfg, fanout.Frame{Type: fanout.TypeSnapshot,
			Snapshot: fanout.Snapshot{Protocol: fanout.ProtocolVersion, Group: group, Node: "n9", Target: "127.0.0.1:1"}})
		if err != nil || f.Type != fanout.TypeError || f.Error.Code != fanout.ErrCodeNotMember {
			t.Fatalf("snapshot for an unknown node: %+v, %v; want an ERROR frame with code %d", f, err, fanout.ErrCodeNotMember)
		}
		eventually(t, "the refusals are logged", func() bool {
			return countLog(t, g.nodes[leader], "follower refused", `"node":"n9"`) >= 1 &&
				countLog(t, g.nodes[leader], "follower refused", `"group":"elsewhere"`) >= 1 &&
				countLog(t, g.nodes[follower], "snapshot request refused", `"node":"n9"`) >= 1
		})
	})

	t.Run("FollowersStillStream", func(t *testing.T) {
		l := g.waitLeader(t, 10*time.Second)
		if l != leader {
			t.Fatalf("leadership moved from n%d to n%d", leader+1, l+1)
		}
		c := p.client(t, g.nodes[leader].Addr, "", secClientPass)
		if err := c.Set(ctx, "tls:after", "v4", 0).Err(); err != nil {
			t.Fatal(err)
		}
		g.waitCaughtUp(t, leader, 10*time.Second)
		for i, n := range sessions {
			if now := countLog(t, g.nodes[i], "streaming from leader"); now != n {
				t.Errorf("n%d started %d new replication sessions during the refusals", i+1, now-n)
			}
		}
		want := dataDigest(t, g.stores[leader].Addr, 1)
		for i := range g.stores {
			if got := dataDigest(t, g.stores[i].Addr, 1); got != want {
				t.Errorf("n%d's store differs from the leader's", i+1)
			}
		}
	})

	t.Run("PasswordsNotLogged", func(t *testing.T) {
		nodes := g.nodes
		if router != nil {
			nodes = append(nodes[:len(nodes):len(nodes)], router)
		}
		for _, n := range nodes {
			log := logOf(t, n)
			for _, secret := range []string{secClientPass, secAlicePass} {
				if strings.Contains(log, secret) {
					t.Errorf("%s's log shows a password", n.Node)
				}
			}
			// The masked value is there: the check looked at the right
			// field.
			if !strings.Contains(log, `"password":"****"`) {
				t.Errorf("%s's start line does not show the masked password", n.Node)
			}
		}
	})
	t.Logf("TestTLSGroup took %v", time.Since(start).Round(time.Millisecond))
}

// TestAuthSecretsMaskedInConfig checks `replicar config`, its JSON form
// and a configuration error: every secret is masked.
func TestAuthSecretsMaskedInConfig(t *testing.T) {
	bin := harness.BuildReplicar(t)
	p := newPKI(t)
	cert, key := p.node(t, "n1")
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"REPLICAR_NODE_ID=n1",
		"REPLICAR_BACKEND=127.0.0.1:6379",
		"REPLICAR_PASSWORD=" + secClientPass,
		"REPLICAR_BACKEND_PASSWORD=" + secBackendPass,
		"REPLICAR_NATS_URL=tls://app:" + secNATSPass + "@127.0.0.1:4222,nats://tok" + secNATSPass + "@127.0.0.1:4223",
		"REPLICAR_TLS_CERT=" + cert, "REPLICAR_TLS_KEY=" + key, "REPLICAR_TLS_CA=" + p.caFile,
	}
	secrets := []string{secClientPass, secBackendPass, secNATSPass}
	for _, args := range [][]string{{"config"}, {"config", "--json"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("replicar %v: %v\n%s", args, err, out)
		}
		for _, s := range secrets {
			if strings.Contains(string(out), s) {
				t.Errorf("replicar %v shows a secret:\n%s", args, out)
			}
		}
		for _, want := range []string{"REPLICAR_PASSWORD", "REPLICAR_BACKEND_PASSWORD", "tls://****@127.0.0.1:4222,nats://****@127.0.0.1:4223"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("replicar %v lacks %q:\n%s", args, want, out)
			}
		}
		if strings.Count(string(out), "****") != 4 {
			t.Errorf("replicar %v: want 4 masked values:\n%s", args, out)
		}
	}
	// A bad secret value is reported masked too.
	cmd := exec.Command(bin, "config")
	cmd.Env = append(env[:len(env):len(env)], "REPLICAR_NATS_URL=ftp://app:"+secNATSPass+"@127.0.0.1:4222")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Contains(string(out), secNATSPass) || !strings.Contains(string(out), "ftp://****@") {
		t.Fatalf("bad NATS_URL: %v\n%s", err, out)
	}
}

// TestTLSBackendAndNATS runs nodes whose stores speak TLS only on the
// port they use (with requirepass and client certificates required), on
// a NATS server reached over tls:// with a user and password: the
// leader's writer and applier, and a full resync copied from the leader's
// store into a new node's, all go over TLS; NATS sees TLS connections
// logged in as the user; no password shows in a log.
func TestTLSBackendAndNATS(t *testing.T) {
	start := time.Now()
	harness.Require(t, "nats-server", "redis-server")
	p := newPKI(t)
	srvCert, srvKey := p.node(t, "servers")
	ns := harness.StartNATS(t, harness.NATSConfig(
		fmt.Sprintf("tls { cert_file: %q, key_file: %q }", srvCert, srvKey),
		// The harness's readiness probe connects in plain text as probe.
		"allow_non_tls: true",
		`authorization { users = [ { user: "probe", password: "" }, { user: "app", password: "`+secNATSPass+`" } ] }`,
		`no_auth_user: "probe"`,
	))
	natsURL := "tls://app:" + secNATSPass + "@" + ns.Addr

	tlsStore := func() (*harness.Redis, string) {
		port := harness.FreePort(t)
		r := startRedis(t, harness.RedisPassword(secBackendPass), harness.RedisArgs(
			"--tls-port", strconv.Itoa(port), "--tls-cert-file", srvCert, "--tls-key-file", srvKey,
			"--tls-ca-cert-file", p.caFile, "--tls-auth-clients", "yes"))
		return r, "127.0.0.1:" + strconv.Itoa(port)
	}
	bin := harness.BuildReplicar(t)
	group := "gtlsbackend"
	startNode := func(name, backend, mode string) *harness.Replicar {
		cert, key := p.node(t, name)
		return harness.StartReplicar(t, bin, name, map[string]string{
			"REPLICAR_BACKEND": backend, "REPLICAR_BACKEND_PASSWORD": secBackendPass, "REPLICAR_BACKEND_TLS": mode,
			"REPLICAR_TLS_CERT": cert, "REPLICAR_TLS_KEY": key, "REPLICAR_TLS_CA": p.caFile,
			"REPLICAR_NATS_URL": natsURL, "REPLICAR_GROUP": group, "REPLICAR_LEASE_TTL": "1s",
			"REPLICAR_MAX_LAG": "1s", "REPLICAR_ACK_POLICY": "leader", "REPLICAR_BACKLOG_BYTES": "64kb",
		})
	}
	s1, b1 := tlsStore()
	n1 := startNode("n1", b1, "verify")
	g := &procGroup{nats: ns, stores: []*harness.Redis{s1}, nodes: []*harness.Replicar{n1}}
	g.waitLeader(t, 20*time.Second)

	// More than the 64kb backlog, so a new node needs a full resync.
	ctx := context.Background()
	c := p.client(t, n1.Addr, "", "")
	val := strings.Repeat("x", 1024)
	pipe := c.Pipeline()
	for i := range 200 {
		pipe.Set(ctx, "bulk:"+strconv.Itoa(i), val, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("writes over TLS to a TLS backend: %v", err)
	}

	s2, b2 := tlsStore()
	n2 := startNode("n2", b2, "on")
	g.stores, g.nodes = append(g.stores, s2), append(g.nodes, n2)
	leader := g.waitLeader(t, 30*time.Second)
	if leader != 0 {
		t.Fatalf("n%d leads, want n1", leader+1)
	}
	g.waitCaughtUp(t, 0, 10*time.Second)
	if countLog(t, n2, "full resync done") == 0 {
		t.Errorf("n2 did not full-resync:\n%s", n2.LogTail(20))
	}
	c.Set(ctx, "after-resync", "1", 0)
	g.waitCaughtUp(t, 0, 10*time.Second)
	if d1, d2 := digestAuth(t, s1.Addr), digestAuth(t, s2.Addr); d1 != d2 {
		t.Fatal("the stores differ after the full resync over TLS")
	}

	// NATS saw both nodes over TLS, logged in as app.
	var connz struct {
		Connections []struct {
			Name           string `json:"name"`
			TLSVersion     string `json:"tls_version"`
			AuthorizedUser string `json:"authorized_user"`
		} `json:"connections"`
	}
	resp, err := http.Get(ns.MonitorURL + "/connz?auth=true")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&connz)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, cn := range connz.Connections {
		if strings.HasPrefix(cn.Name, "replicar-n") {
			seen++
			if cn.TLSVersion == "" || cn.AuthorizedUser != "app" {
				t.Errorf("NATS connection %s: tls %q, user %q", cn.Name, cn.TLSVersion, cn.AuthorizedUser)
			}
		}
	}
	if seen != 2 {
		t.Errorf("NATS lists %d replicar connections, want 2: %+v", seen, connz.Connections)
	}
	for _, n := range g.nodes {
		log := logOf(t, n)
		for _, s := range []string{secBackendPass, secNATSPass} {
			if strings.Contains(log, s) {
				t.Errorf("%s's log shows a password", n.Node)
			}
		}
	}
	t.Logf("TestTLSBackendAndNATS took %v", time.Since(start).Round(time.Millisecond))
}

// digestAuth is dataDigest of db 0 on a store with requirepass.
func digestAuth(t *testing.T, addr string) string {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: secBackendPass, Protocol: 2})
	defer c.Close()
	var keys []string
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		if k := iter.Val(); !strings.HasPrefix(k, "__replicar:") {
			keys = append(keys, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan %s: %v", addr, err)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		v, err := c.Get(ctx, k).Result()
		if err != nil {
			t.Fatalf("GET %s on %s: %v", k, addr, err)
		}
		fmt.Fprintf(h, "%s\x00%s\n", k, v)
	}
	return fmt.Sprintf("%d keys %x", len(keys), h.Sum(nil))
}

// replHello dials a replication port (over TLS with cfg, plain TCP when
// cfg is nil), sends HELLO and returns the first frame it answers.
func replHello(addr string, cfg *tls.Config, h fanout.Hello) (fanout.Frame, error) {
	return replFrame(addr, cfg, fanout.Frame{Type: fanout.TypeHello, Hello: h})
}

func replFrame(addr string, cfg *tls.Config, f fanout.Frame) (fanout.Frame, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	var conn net.Conn
	var err error
	if cfg != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(context.Background(), "tcp", addr)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return fanout.Frame{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(fanout.AppendFrame(nil, f)); err != nil {
		return fanout.Frame{}, err
	}
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if fr, _, derr := fanout.DecodeFrame(buf); derr == nil {
			return fr, nil
		} else if !errors.Is(derr, fanout.ErrShortFrame) {
			return fanout.Frame{}, derr
		}
		if err != nil {
			return fanout.Frame{}, err
		}
	}
}

func logOf(t *testing.T, n *harness.Replicar) string {
	t.Helper()
	b, err := os.ReadFile(n.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// countLog counts the log lines of n holding every one of parts.
func countLog(t *testing.T, n *harness.Replicar, parts ...string) int {
	t.Helper()
	count := 0
	for _, line := range strings.Split(logOf(t, n), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			count++
		}
	}
	return count
}
