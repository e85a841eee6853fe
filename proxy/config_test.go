package proxy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validConfig returns a configuration that passes Validate, derived without
// touching the real hostname.
func validConfig(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.applyDefaults(fakeHost("db1"))
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	return c
}

func fakeHost(h string) func() (string, error) { return func() (string, error) { return h, nil } }

// contract is the variable list of DESIGN.md, "The user-facing contract",
// in its order, with NATS_CREDS (the standard NATS credentials file) after
// NATS_URL.
var contract = []string{
	"PROTOCOL", "LISTEN", "BACKEND", "BACKEND_USER", "BACKEND_PASSWORD", "NODE_ID", "GROUP",
	"REPL_LISTEN", "ADVERTISE", "NATS_URL", "NATS_CREDS", "NATS_LISTEN", "ACK_POLICY", "ACKS", "MIN_INSYNC",
	"ACK_TIMEOUT", "ACK_TIMEOUT_MODE", "MAX_LAG", "READ_POLICY", "MAX_READ_LAG", "LEASE_TTL",
	"FAILOVER_WAIT", "UNCLEAN_ELECTION", "BACKLOG_BYTES", "DATA_DIR", "FSYNC", "HTTP_LISTEN",
	"LOG_LEVEL", "LOG_FORMAT", "USER", "PASSWORD", "USERS_FILE", "MAX_CLIENTS", "TLS_CERT",
	"TLS_KEY", "TLS_CA", "BACKEND_TLS", "MYSQL_FORMAT",
}

func TestVarsMatchContract(t *testing.T) {
	vs := Vars()
	var names []string
	for _, v := range vs {
		names = append(names, v.Name)
		if v.Desc == "" {
			t.Errorf("%s has no desc tag", v.Env())
		}
		if strings.ContainsAny(v.Desc, "\n") {
			t.Errorf("%s desc spans lines", v.Env())
		}
	}
	if got, want := strings.Join(names, " "), strings.Join(contract, " "); got != want {
		t.Errorf("vars differ from the contract:\n got %s\nwant %s", got, want)
	}
	for _, name := range []string{"PASSWORD", "BACKEND_PASSWORD", "NATS_URL"} {
		if v, _ := LookupVar(name); !v.Secret {
			t.Errorf("%s is not marked secret", name)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Default()
	want := map[string]string{
		"PROTOCOL": "redis", "GROUP": "default", "REPL_LISTEN": "127.0.0.1:7380",
		"NATS_LISTEN": "127.0.0.1:4222", "ACK_POLICY": "quorum", "ACKS": "1", "MIN_INSYNC": "1",
		"ACK_TIMEOUT": "5s", "ACK_TIMEOUT_MODE": "error", "MAX_LAG": "2s", "READ_POLICY": "leader",
		"MAX_READ_LAG": "", "LEASE_TTL": "3s", "FAILOVER_WAIT": "5s", "UNCLEAN_ELECTION": "false",
		"BACKLOG_BYTES": "64mb", "FSYNC": "everysec", "HTTP_LISTEN": "127.0.0.1:9380",
		"LOG_LEVEL": "info", "LOG_FORMAT": "json", "MAX_CLIENTS": "10000", "BACKEND_TLS": "off",
		"MYSQL_FORMAT": "row", "LISTEN": "", "BACKEND": "", "NATS_URL": "", "DATA_DIR": "", "USER": "",
	}
	for name, w := range want {
		if got := c.Value(name); got != w {
			t.Errorf("default %s = %q, want %q", name, got, w)
		}
	}
	if c.BacklogBytes != 64*MiB || c.AckTimeout != 5*time.Second || c.LeaseTTL != 3*time.Second {
		t.Errorf("typed defaults wrong: %+v", c)
	}
}

func TestApplyDefaultsPerProtocol(t *testing.T) {
	tests := []struct {
		protocol                  Protocol
		replListen, host          string
		listen, user, backendUser string
		advertise, nodeID         string
	}{
		{ProtocolRedis, "127.0.0.1:7380", "db1", DefaultRedisListen, "default", "", "127.0.0.1", "db1-7380"},
		{ProtocolMySQL, "127.0.0.1:7380", "db1", DefaultMySQLListen, "root", "root", "127.0.0.1", "db1-7380"},
		{ProtocolRedis, "0.0.0.0:7381", "Web_0.Prod", DefaultRedisListen, "default", "", "Web_0.Prod", "web_0.prod-7381"},
		{ProtocolRedis, ":7382", "my host!", DefaultRedisListen, "default", "", "my host!", "my-host--7382"},
		{ProtocolMySQL, "10.0.0.7:7380", "db1", DefaultMySQLListen, "root", "root", "10.0.0.7", "db1-7380"},
	}
	for _, tt := range tests {
		t.Run(string(tt.protocol)+" "+tt.replListen, func(t *testing.T) {
			c := Default()
			c.Protocol, c.ReplListen = tt.protocol, tt.replListen
			c.applyDefaults(fakeHost(tt.host))
			got := [5]string{c.Listen, c.User, c.BackendUser, c.Advertise, c.NodeID}
			want := [5]string{tt.listen, tt.user, tt.backendUser, tt.advertise, tt.nodeID}
			if got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}

	// Explicit values win over derived ones.
	c := Default()
	c.Protocol, c.Listen, c.User, c.Advertise, c.NodeID = ProtocolMySQL, ":3306", "app", "db.example", "n1"
	c.applyDefaults(fakeHost("ignored"))
	if c.Listen != ":3306" || c.User != "app" || c.Advertise != "db.example" || c.NodeID != "n1" {
		t.Errorf("explicit values overwritten: %+v", c)
	}

	// A long hostname is cut so that the id still fits and keeps its port.
	c = Default()
	c.applyDefaults(fakeHost(strings.Repeat("h", 100)))
	if len(c.NodeID) != maxNameLen || !strings.HasSuffix(c.NodeID, "-7380") {
		t.Errorf("long hostname gave NODE_ID %q", c.NodeID)
	}

	// Without a hostname NODE_ID stays empty and Validate asks for it.
	c = Default()
	c.applyDefaults(func() (string, error) { return "", errors.New("no hostname") })
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "REPLICAR_NODE_ID=\"\"") {
		t.Errorf("Validate without NODE_ID: %v", err)
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name, value string
		wantErr     string // the whole one-line message; empty for success
		check       func(Config) bool
	}{
		// every enum, good (any case) and bad
		{"PROTOCOL", "MySQL", "", func(c Config) bool { return c.Protocol == ProtocolMySQL }},
		{"PROTOCOL", "memcached", `REPLICAR_PROTOCOL="memcached": want one of redis, mysql`, nil},
		{"ACK_POLICY", " all ", "", func(c Config) bool { return c.AckPolicy == AckAll }},
		{"ACK_POLICY", "quorom", `REPLICAR_ACK_POLICY="quorom": want one of none, leader, one, quorum, all`, nil},
		{"ACK_TIMEOUT_MODE", "ignore", `REPLICAR_ACK_TIMEOUT_MODE="ignore": want one of error, degrade`, nil},
		{"READ_POLICY", "follower", `REPLICAR_READ_POLICY="follower": want one of leader, local, bounded`, nil},
		{"FSYNC", "sometimes", `REPLICAR_FSYNC="sometimes": want one of always, everysec, no`, nil},
		{"LOG_LEVEL", "warning", `REPLICAR_LOG_LEVEL="warning": want one of trace, debug, info, warn, error`, nil},
		{"LOG_FORMAT", "text", `REPLICAR_LOG_FORMAT="text": want one of json, console`, nil},
		{"BACKEND_TLS", "true", `REPLICAR_BACKEND_TLS="true": want one of off, on, verify`, nil},
		{"MYSQL_FORMAT", "mixed", `REPLICAR_MYSQL_FORMAT="mixed": want one of row, statement`, nil},
		{"PROTOCOL", "", `REPLICAR_PROTOCOL="": want one of redis, mysql`, nil},

		// durations
		{"ACK_TIMEOUT", "250ms", "", func(c Config) bool { return c.AckTimeout == 250*time.Millisecond }},
		{"ACK_TIMEOUT", "5", `REPLICAR_ACK_TIMEOUT="5": want a duration such as 500ms, 5s or 1m`, nil},
		{"LEASE_TTL", "3 seconds", `REPLICAR_LEASE_TTL="3 seconds": want a duration such as 500ms, 5s or 1m`, nil},
		{"MAX_READ_LAG", "1.5s", "", func(c Config) bool { return c.MaxReadLag == 1500*time.Millisecond }},

		// sizes
		{"BACKLOG_BYTES", "1GiB", "", func(c Config) bool { return c.BacklogBytes == GiB }},
		{"BACKLOG_BYTES", "512k", "", func(c Config) bool { return c.BacklogBytes == 512000 }},
		{"BACKLOG_BYTES", "64 MB", "", func(c Config) bool { return c.BacklogBytes == 64*MiB }},
		{"BACKLOG_BYTES", "1048576", "", func(c Config) bool { return c.BacklogBytes == MiB }},
		{"BACKLOG_BYTES", "64mbs", `REPLICAR_BACKLOG_BYTES="64mbs": want a size such as 65536, 64mb or 1gb (k = 1000, kb = 1024, as in redis.conf)`, nil},
		{"BACKLOG_BYTES", "-1mb", `REPLICAR_BACKLOG_BYTES="-1mb": want a size such as 65536, 64mb or 1gb (k = 1000, kb = 1024, as in redis.conf)`, nil},
		{"BACKLOG_BYTES", "1.5gb", `REPLICAR_BACKLOG_BYTES="1.5gb": want a size such as 65536, 64mb or 1gb (k = 1000, kb = 1024, as in redis.conf)`, nil},
		{"BACKLOG_BYTES", "99999999999tb", `REPLICAR_BACKLOG_BYTES="99999999999tb": want a size such as 65536, 64mb or 1gb (k = 1000, kb = 1024, as in redis.conf)`, nil},

		// ints and bools
		{"ACKS", "2", "", func(c Config) bool { return c.Acks == 2 }},
		{"ACKS", "two", `REPLICAR_ACKS="two": want a whole number`, nil},
		{"MAX_CLIENTS", "1e4", `REPLICAR_MAX_CLIENTS="1e4": want a whole number`, nil},
		{"UNCLEAN_ELECTION", "yes", "", func(c Config) bool { return c.UncleanElection }},
		{"UNCLEAN_ELECTION", "OFF", "", func(c Config) bool { return !c.UncleanElection }},
		{"UNCLEAN_ELECTION", "maybe", `REPLICAR_UNCLEAN_ELECTION="maybe": want true or false`, nil},

		// plain strings are kept as given, blanks included
		{"PASSWORD", " s3cret ", "", func(c Config) bool { return c.Password == " s3cret " }},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			c := Default()
			err := c.Set(tt.name, tt.value)
			if tt.wantErr != "" {
				var ve *VarError
				if err == nil || err.Error() != tt.wantErr || !errors.As(err, &ve) {
					t.Fatalf("Set error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			if !tt.check(c) {
				t.Errorf("Set did not take: %+v", c)
			}
		})
	}

	c := Default()
	if err := c.Set("ACK_POLICYY", "all"); !errors.Is(err, ErrUnknownVar) || !strings.Contains(err.Error(), "REPLICAR_ACK_POLICYY") {
		t.Errorf("unknown var: %v", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.pem")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // whole message; empty for valid
	}{
		{"defaults", func(*Config) {}, ""},

		// enums set in code bypass Set; Validate still catches them
		{"bad protocol", func(c *Config) { c.Protocol = "memcached"; c.Listen = "" },
			`REPLICAR_PROTOCOL="memcached": want one of redis, mysql`},
		{"bad ack policy", func(c *Config) { c.AckPolicy = "quorom" },
			`REPLICAR_ACK_POLICY="quorom": want one of none, leader, one, quorum, all`},
		{"bad fsync", func(c *Config) { c.Fsync = "Always" }, `REPLICAR_FSYNC="Always": want one of always, everysec, no`},
		{"bad read policy", func(c *Config) { c.ReadPolicy = "x" }, `REPLICAR_READ_POLICY="x": want one of leader, local, bounded`},
		{"bad timeout mode", func(c *Config) { c.AckTimeoutMode = "" }, `REPLICAR_ACK_TIMEOUT_MODE="": want one of error, degrade`},
		{"bad log level", func(c *Config) { c.LogLevel = "fatal" }, `REPLICAR_LOG_LEVEL="fatal": want one of trace, debug, info, warn, error`},
		{"bad log format", func(c *Config) { c.LogFormat = "logfmt" }, `REPLICAR_LOG_FORMAT="logfmt": want one of json, console`},
		{"bad backend tls", func(c *Config) { c.BackendTLS = "yes" }, `REPLICAR_BACKEND_TLS="yes": want one of off, on, verify`},
		{"bad mysql format", func(c *Config) { c.MySQLFormat = "mixed" }, `REPLICAR_MYSQL_FORMAT="mixed": want one of row, statement`},

		// addresses
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" },
			`REPLICAR_LISTEN="127.0.0.1": want host:port such as 127.0.0.1:7380 or :7380 (missing port in address)`},
		{"listen port only", func(c *Config) { c.Listen = "6380" },
			`REPLICAR_LISTEN="6380": want host:port such as 127.0.0.1:7380 or :7380 (missing port in address)`},
		{"listen wildcard ok", func(c *Config) { c.Listen = ":6380" }, ""},
		{"listen ipv6 ok", func(c *Config) { c.Listen = "[::1]:6380" }, ""},
		{"listen port 0 ok", func(c *Config) { c.Listen = "127.0.0.1:0"; c.HTTPListen = "127.0.0.1:0" }, ""},
		{"listen port too big", func(c *Config) { c.Listen = "127.0.0.1:65536" },
			`REPLICAR_LISTEN="127.0.0.1:65536": want host:port such as 127.0.0.1:7380 or :7380 (port "65536" is not a number from 0 to 65535)`},
		{"listen named port", func(c *Config) { c.Listen = "127.0.0.1:redis" },
			`REPLICAR_LISTEN="127.0.0.1:redis": want host:port such as 127.0.0.1:7380 or :7380 (port "redis" is not a number from 0 to 65535)`},
		{"listen bad host", func(c *Config) { c.Listen = "local host:6380" },
			`REPLICAR_LISTEN="local host:6380": want host:port such as 127.0.0.1:7380 or :7380 (bad host "local host")`},
		{"empty repl listen", func(c *Config) { c.ReplListen = "" },
			`REPLICAR_REPL_LISTEN="": want host:port such as 127.0.0.1:7380 or :7380 (missing port in address)`},
		{"http listen bad", func(c *Config) { c.HTTPListen = "localhost:-1" },
			`REPLICAR_HTTP_LISTEN="localhost:-1": want host:port such as 127.0.0.1:7380 or :7380 (port "-1" is not a number from 0 to 65535)`},
		{"nats listen bad", func(c *Config) { c.NATSListen = "nats://127.0.0.1:4222" },
			`REPLICAR_NATS_LISTEN="nats://127.0.0.1:4222": want host:port such as 127.0.0.1:7380 or :7380 (too many colons in address)`},
		{"backend ok", func(c *Config) { c.Backend = "redis.internal:6379" }, ""},
		{"backend without host", func(c *Config) { c.Backend = ":6379" },
			`REPLICAR_BACKEND=":6379": want host:port such as 127.0.0.1:6379 (missing host)`},
		{"backend port 0", func(c *Config) { c.Backend = "127.0.0.1:0" },
			`REPLICAR_BACKEND="127.0.0.1:0": want host:port such as 127.0.0.1:6379 (port 0 cannot be dialed)`},
		{"backend is own listen", func(c *Config) { c.Backend = "localhost:6380" },
			`REPLICAR_BACKEND="localhost:6380": want the store's address, not this node's own REPLICAR_LISTEN`},
		{"remote backend on listen port", func(c *Config) { c.Listen = ":6379"; c.Backend = "10.0.0.9:6379" }, ""},

		// ports taken twice on one host
		{"http on listen port", func(c *Config) { c.HTTPListen = "127.0.0.1:6380" },
			`REPLICAR_HTTP_LISTEN="127.0.0.1:6380": want a port other than 6380, which REPLICAR_LISTEN takes`},
		{"repl on wildcard listen port", func(c *Config) { c.Listen = ":7380" },
			`REPLICAR_REPL_LISTEN="127.0.0.1:7380": want a port other than 7380, which REPLICAR_LISTEN takes`},
		{"same port different hosts ok", func(c *Config) { c.HTTPListen = "10.0.0.1:7380" }, ""},
		{"embedded nats on http port", func(c *Config) { c.NATSListen = "127.0.0.1:9380" },
			`REPLICAR_NATS_LISTEN="127.0.0.1:9380": want a port other than 9380, which REPLICAR_HTTP_LISTEN takes`},
		{"external nats frees its listen port", func(c *Config) { c.NATSURL = "nats://n1:4222"; c.NATSListen = "127.0.0.1:9380" }, ""},

		// NATS URLs
		{"nats urls ok", func(c *Config) { c.NATSURL = "nats://n1:4222, nats://n2:4222,tls://n3" }, ""},
		{"nats url without scheme", func(c *Config) { c.NATSURL = "n1:4222" },
			`REPLICAR_NATS_URL="n1:4222": want nats://host:port[,nats://host:port...] (or tls://): scheme "n1"`},
		{"nats url http", func(c *Config) { c.NATSURL = "http://n1:4222" },
			`REPLICAR_NATS_URL="http://n1:4222": want nats://host:port[,nats://host:port...] (or tls://): scheme "http"`},
		{"nats url empty entry", func(c *Config) { c.NATSURL = "nats://n1:4222," },
			`REPLICAR_NATS_URL="nats://n1:4222,": want nats://host:port[,nats://host:port...] (or tls://): empty entry`},
		{"nats url bad port", func(c *Config) { c.NATSURL = "nats://n1:99999" },
			`REPLICAR_NATS_URL="nats://n1:99999": want nats://host:port[,nats://host:port...] (or tls://): port "99999" is not a number from 0 to 65535`},
		{"nats url hides credentials", func(c *Config) { c.NATSURL = "nats://u:hunter2@n1:4222/x" },
			`REPLICAR_NATS_URL="nats://****@n1:4222/x": want nats://host:port[,nats://host:port...] (or tls://): unexpected path or query`},

		// names
		{"node id with space", func(c *Config) { c.NodeID = "node 1" }, `REPLICAR_NODE_ID="node 1": want 1-64 letters, digits, '.', '_' or '-'`},
		{"node id too long", func(c *Config) { c.NodeID = strings.Repeat("n", 65) },
			`REPLICAR_NODE_ID="` + strings.Repeat("n", 65) + `": want 1-64 letters, digits, '.', '_' or '-'`},
		{"group with dot", func(c *Config) { c.Group = "a.b" }, `REPLICAR_GROUP="a.b": want 1-64 letters, digits, '_' or '-' (it names the NATS KV bucket)`},
		{"advertise with port", func(c *Config) { c.Advertise = "10.0.0.1:7380" },
			`REPLICAR_ADVERTISE="10.0.0.1:7380": want the host name or IP peers dial, without a port and not a wildcard`},
		{"advertise wildcard", func(c *Config) { c.Advertise = "0.0.0.0" },
			`REPLICAR_ADVERTISE="0.0.0.0": want the host name or IP peers dial, without a port and not a wildcard`},
		{"advertise ipv6 ok", func(c *Config) { c.Advertise = "fd00::1" }, ""},

		// numbers
		{"acks zero", func(c *Config) { c.Acks = 0 }, `REPLICAR_ACKS="0": want a whole number from 1 to 63`},
		{"acks huge", func(c *Config) { c.Acks = 1000 }, `REPLICAR_ACKS="1000": want a whole number from 1 to 63`},
		{"min insync zero", func(c *Config) { c.MinInsync = 0 }, `REPLICAR_MIN_INSYNC="0": want a whole number from 1 to 64`},
		{"max clients negative", func(c *Config) { c.MaxClients = -1 }, `REPLICAR_MAX_CLIENTS="-1": want a whole number ≥ 0 (0 for no limit)`},
		{"max clients unlimited", func(c *Config) { c.MaxClients = 0 }, ""},

		// durations
		{"ack timeout zero", func(c *Config) { c.AckTimeout = 0 }, `REPLICAR_ACK_TIMEOUT="0s": want a duration > 0 such as 500ms, 5s or 1m`},
		{"max lag negative", func(c *Config) { c.MaxLag = -time.Second }, `REPLICAR_MAX_LAG="-1s": want a duration > 0 such as 500ms, 5s or 1m`},
		{"lease too short", func(c *Config) { c.LeaseTTL = 100 * time.Millisecond }, `REPLICAR_LEASE_TTL="100ms": want a duration ≥ 1s`},
		{"lease minimum ok", func(c *Config) { c.LeaseTTL = MinLeaseTTL }, ""},
		{"lease below the election's minimum", func(c *Config) { c.LeaseTTL = 999 * time.Millisecond }, `REPLICAR_LEASE_TTL="999ms": want a duration ≥ 1s`},
		{"failover wait zero ok", func(c *Config) { c.FailoverWait = 0 }, ""},
		{"failover wait negative", func(c *Config) { c.FailoverWait = -time.Second }, `REPLICAR_FAILOVER_WAIT="-1s": want a duration ≥ 0 such as 5s`},
		{"bounded without lag", func(c *Config) { c.ReadPolicy = ReadBounded },
			`REPLICAR_MAX_READ_LAG="": want a duration > 0 such as 1s with REPLICAR_READ_POLICY=bounded`},
		{"bounded with lag", func(c *Config) { c.ReadPolicy = ReadBounded; c.MaxReadLag = time.Second }, ""},
		{"negative read lag", func(c *Config) { c.MaxReadLag = -time.Second }, `REPLICAR_MAX_READ_LAG="-1s": want a duration ≥ 0 such as 1s`},

		// sizes
		{"backlog too small", func(c *Config) { c.BacklogBytes = 1000 }, `REPLICAR_BACKLOG_BYTES="1000": want a size ≥ 64kb such as 64mb`},
		{"backlog minimum ok", func(c *Config) { c.BacklogBytes = MinBacklogBytes }, ""},

		// files
		{"data dir is a file", func(c *Config) { c.DataDir = file }, `REPLICAR_DATA_DIR="` + file + `": want a directory (created if missing), not a file`},
		{"data dir missing ok", func(c *Config) { c.DataDir = filepath.Join(dir, "new") }, ""},
		{"users file missing", func(c *Config) { c.UsersFile = missing },
			`REPLICAR_USERS_FILE="` + missing + `": want an existing file: no such file or directory`},
		{"users file is dir", func(c *Config) { c.UsersFile = dir }, `REPLICAR_USERS_FILE="` + dir + `": want a file, not a directory`},
		{"user with colon", func(c *Config) { c.User = "a:b" }, `REPLICAR_USER="a:b": want a user name without ':' or newlines`},

		// TLS pairing
		{"tls pair ok", func(c *Config) { c.TLSCert, c.TLSKey, c.TLSCA = file, file, file }, ""},
		{"tls cert without key", func(c *Config) { c.TLSCert = file },
			`REPLICAR_TLS_KEY="": want the key file of REPLICAR_TLS_CERT (set both or neither)`},
		{"tls key without cert", func(c *Config) { c.TLSKey = file },
			`REPLICAR_TLS_CERT="": want the certificate file of REPLICAR_TLS_KEY (set both or neither)`},
		{"tls ca without cert", func(c *Config) { c.TLSCA = file },
			`REPLICAR_TLS_CA="` + file + `": want it only with REPLICAR_TLS_CERT and REPLICAR_TLS_KEY`},
		{"tls cert missing", func(c *Config) { c.TLSCert, c.TLSKey = missing, file },
			`REPLICAR_TLS_CERT="` + missing + `": want an existing file: no such file or directory`},
		// NATS credentials file
		{"nats creds ok", func(c *Config) { c.NATSURL, c.NATSCreds = "tls://127.0.0.1:4222", file }, ""},
		{"nats creds missing", func(c *Config) { c.NATSURL, c.NATSCreds = "nats://127.0.0.1:4222", missing },
			`REPLICAR_NATS_CREDS="` + missing + `": want an existing file: no such file or directory`},
		{"nats creds with embedded nats", func(c *Config) { c.NATSURL, c.NATSCreds = "", file },
			`REPLICAR_NATS_CREDS="` + file + `": want it only with REPLICAR_NATS_URL (the embedded NATS server takes no credentials)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want %s", tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("Validate error\n got %s\nwant %s", err, tt.wantErr)
			}
			var ve *VarError
			if !errors.As(err, &ve) || !strings.HasPrefix(tt.wantErr, ve.Name+"=") {
				t.Errorf("error is not a *VarError naming the variable: %#v", err)
			}
		})
	}
}

func TestValidateOneLinePerVariable(t *testing.T) {
	c := validConfig(t)
	c.Fsync, c.AckPolicy, c.LeaseTTL = "sometimes", "most", time.Millisecond
	err := c.Validate()
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`REPLICAR_ACK_POLICY="most": want one of none, leader, one, quorum, all`,
		`REPLICAR_LEASE_TTL="1ms": want a duration ≥ 1s`,
		`REPLICAR_FSYNC="sometimes": want one of always, everysec, no`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

func TestValidateBadProtocolOnly(t *testing.T) {
	// With PROTOCOL wrong, ApplyDefaults cannot choose LISTEN; the operator
	// should see the cause, not its consequence as well.
	c := Default()
	c.Protocol = "memcache"
	c.applyDefaults(fakeHost("db1"))
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "LISTEN") {
		t.Errorf("Validate = %v, want only the PROTOCOL error", err)
	}
}

func TestWarnings(t *testing.T) {
	c := validConfig(t)
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("defaults warn: %q", w)
	}
	c.Acks, c.MinInsync, c.MaxReadLag, c.Fsync, c.MySQLFormat, c.UncleanElection = 2, 2, time.Second, FsyncAlways, MySQLStatement, true
	w := strings.Join(c.Warnings(), "\n")
	for _, name := range []string{"ACKS=2", "MIN_INSYNC=2", "MAX_READ_LAG=1s", "FSYNC=always", "MYSQL_FORMAT=statement", "UNCLEAN_ELECTION=true"} {
		if !strings.Contains(w, "REPLICAR_"+name) {
			t.Errorf("no warning for %s in\n%s", name, w)
		}
	}
	c = validConfig(t)
	c.AckPolicy, c.MaxLag = AckAll, 10*time.Second
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "REPLICAR_MAX_LAG=10s") {
		t.Errorf("MAX_LAG ≥ ACK_TIMEOUT warnings: %q", w)
	}
	c = validConfig(t)
	c.Protocol, c.ReadPolicy = ProtocolMySQL, ReadLocal
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "REPLICAR_READ_POLICY=local has no effect with REPLICAR_PROTOCOL=mysql") {
		t.Errorf("READ_POLICY on mysql warnings: %q", w)
	}
}

func TestMaskedNeverLeaks(t *testing.T) {
	const secret = "hunter2-secret"
	c := validConfig(t)
	c.Password, c.BackendPassword = secret, secret
	c.NATSURL = "nats://admin:" + secret + "@n1:4222,tls://" + secret + "@n2:4222,nats://n3:4222"
	m := c.Masked()

	if m.Password != "****" || m.BackendPassword != "****" {
		t.Errorf("passwords not masked: %q %q", m.Password, m.BackendPassword)
	}
	if want := "nats://****@n1:4222,tls://****@n2:4222,nats://n3:4222"; m.NATSURL != want {
		t.Errorf("NATS_URL masked to %q, want %q", m.NATSURL, want)
	}
	var all strings.Builder
	fmt.Fprintf(&all, "%+v %#v", m, m)
	for _, v := range Vars() {
		all.WriteString(m.Value(v.Name))
	}
	if strings.Contains(all.String(), secret) {
		t.Errorf("masked config leaks the secret: %s", all.String())
	}
	if c.Password != secret {
		t.Error("Masked changed the original")
	}

	// Empty secrets stay empty, so "no password" remains visible.
	e := validConfig(t).Masked()
	if e.Password != "" || e.BackendPassword != "" || e.NATSURL != "" {
		t.Errorf("empty secrets masked: %+v", e)
	}

	// Errors never show a secret either.
	c = validConfig(t)
	c.NATSURL = "nats://" + secret + "@n1:4222?x=1"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Validate error leaks or is missing: %v", err)
	}
}

func TestValueRoundTrip(t *testing.T) {
	c := validConfig(t)
	c.AckTimeout, c.MaxReadLag, c.BacklogBytes, c.UncleanElection = 2*time.Minute, 1500*time.Millisecond, 123457, true
	c.Password, c.NATSURL = " pw ", "nats://a:1"
	var back Config
	for _, v := range Vars() {
		if s := c.Value(v.Name); s != "" {
			if err := back.Set(v.Name, s); err != nil {
				t.Fatalf("Set(%s, %q): %v", v.Name, s, err)
			}
		}
	}
	if back != c {
		t.Errorf("round trip changed the config:\n got %+v\nwant %+v", back, c)
	}
	if got := c.Value("ACK_TIMEOUT"); got != "2m" {
		t.Errorf("2m formats as %q", got)
	}
}

func TestByteSize(t *testing.T) {
	parse := []struct {
		in   string
		want ByteSize
	}{
		{"0", 0}, {"65536", 65536}, {"1b", 1}, {"1k", 1000}, {"1kb", 1024}, {"1KiB", 1024},
		{"64mb", 64 << 20}, {"64m", 64e6}, {"1g", 1e9}, {"1gb", 1 << 30}, {"2GIB", 2 << 30},
		{"1tb", 1 << 40}, {"1t", 1e12}, {" 8 kb ", 8192},
	}
	for _, tt := range parse {
		if got, err := ParseByteSize(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "mb", "-1", "1.5mb", "1 m b", "1pb", "9223372036854775808", "9000000tb"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", in)
		}
	}
	format := map[ByteSize]string{0: "0", 1000: "1000", 1024: "1kb", 64 << 20: "64mb", 3 << 30: "3gb", 1 << 40: "1tb", 1536: "1536"}
	for n, want := range format {
		if got := n.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(n), got, want)
		}
	}
}
