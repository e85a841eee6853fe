package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/replicar/replicar/election"
)

// EnvPrefix starts the name of every variable in the contract. Config's env
// tags hold the names without it.
const EnvPrefix = "REPLICAR_"

// Protocol-dependent defaults, applied by Config.ApplyDefaults.
const (
	DefaultRedisListen = "127.0.0.1:6380"
	DefaultMySQLListen = "127.0.0.1:3307"
	DefaultRedisUser   = "default" // Redis's built-in ACL user, the one AUTH <password> logs in as
	DefaultMySQLUser   = "root"
)

// Validation bounds.
const (
	// MaxGroupSize bounds ACKS and MIN_INSYNC. Nothing in the design needs a
	// group this large, so a bigger number is taken for a typo.
	MaxGroupSize = 64

	// MinLeaseTTL is the shortest lease: the election's own minimum, since
	// the server's expiry markers live whole seconds. A shorter value used
	// to pass here and then fail when the node started its election.
	MinLeaseTTL = election.MinTTL

	// MinBacklogBytes is the smallest backlog. Redis's repl-backlog-size
	// floor is 16kb; anything this small forces a full resync on every hiccup.
	MinBacklogBytes = 64 * KiB

	maxNameLen = 64
)

// Protocol is the wire protocol of the backend and the client port.
type Protocol string

// Protocols.
const (
	ProtocolRedis Protocol = "redis"
	ProtocolMySQL Protocol = "mysql"
)

// AckPolicy says when a write is acknowledged to the client. See DESIGN.md,
// "Ack policies".
type AckPolicy string

// Ack policies.
const (
	AckNone   AckPolicy = "none"   // when the primary has replied
	AckLeader AckPolicy = "leader" // when the entry is in the leader's backlog
	AckOne    AckPolicy = "one"    // when ACKS followers have applied it
	AckQuorum AckPolicy = "quorum" // when a majority of the group has it
	AckAll    AckPolicy = "all"    // when every ISR member has it
)

// AckTimeoutMode says what happens to a write whose ack policy is not met
// within ACK_TIMEOUT.
type AckTimeoutMode string

// Ack timeout modes.
const (
	AckTimeoutError   AckTimeoutMode = "error"   // the client gets UNCOMMITTED
	AckTimeoutDegrade AckTimeoutMode = "degrade" // the write is acknowledged as if async
)

// ReadPolicy says where reads are served.
type ReadPolicy string

// Read policies.
const (
	ReadLeader  ReadPolicy = "leader"  // the primary, fenced like writes
	ReadLocal   ReadPolicy = "local"   // this node's store, possibly stale
	ReadBounded ReadPolicy = "bounded" // local while lag ≤ MAX_READ_LAG, else the leader
)

// FsyncPolicy says when WAL writes reach the disk, like Redis appendfsync.
type FsyncPolicy string

// Fsync policies.
const (
	FsyncAlways   FsyncPolicy = "always"
	FsyncEverySec FsyncPolicy = "everysec"
	FsyncNo       FsyncPolicy = "no"
)

// LogLevel is the least severe level that is logged.
type LogLevel string

// Log levels.
const (
	LogTrace LogLevel = "trace"
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat is how log lines are written to stderr.
type LogFormat string

// Log formats.
const (
	LogJSON    LogFormat = "json"    // one JSON object a line, for collectors
	LogConsole LogFormat = "console" // human-readable
)

// BackendTLS says how the node connects to its backend.
type BackendTLS string

// Backend TLS modes.
const (
	BackendTLSOff    BackendTLS = "off"    // plain TCP
	BackendTLSOn     BackendTLS = "on"     // encrypted, certificate not checked
	BackendTLSVerify BackendTLS = "verify" // encrypted, certificate and host name checked
)

// MySQLFormat says how MySQL writes are captured into the backlog.
type MySQLFormat string

// MySQL capture formats.
const (
	MySQLRow       MySQLFormat = "row"       // row events from the primary's binlog
	MySQLStatement MySQLFormat = "statement" // statements with deterministic session settings
)

// enum is implemented by the string types above; Set and Validate use it
// to check values and to say what is allowed.
type enum interface{ enumValues() []string }

func (Protocol) enumValues() []string       { return []string{"redis", "mysql"} }
func (AckPolicy) enumValues() []string      { return []string{"none", "leader", "one", "quorum", "all"} }
func (AckTimeoutMode) enumValues() []string { return []string{"error", "degrade"} }
func (ReadPolicy) enumValues() []string     { return []string{"leader", "local", "bounded"} }
func (FsyncPolicy) enumValues() []string    { return []string{"always", "everysec", "no"} }
func (LogLevel) enumValues() []string       { return []string{"trace", "debug", "info", "warn", "error"} }
func (LogFormat) enumValues() []string      { return []string{"json", "console"} }
func (BackendTLS) enumValues() []string     { return []string{"off", "on", "verify"} }
func (MySQLFormat) enumValues() []string    { return []string{"row", "statement"} }

// Config is a node's whole configuration: one field per REPLICAR_* variable,
// in the order the contract lists them.
//
// Tags: env is the variable's name without EnvPrefix; default is the value
// used when the variable is unset (Default applies it); defaultdoc describes a
// default that ApplyDefaults derives from other fields; desc is the one-line
// reference text; secret:"true" hides the whole value and secret:"userinfo"
// the credentials inside URLs (see Masked).
type Config struct {
	Protocol        Protocol `env:"PROTOCOL" default:"redis" desc:"Wire protocol of the backend and of the client port."`
	Listen          string   `env:"LISTEN" defaultdoc:"127.0.0.1:6380 (redis), 127.0.0.1:3307 (mysql)" desc:"Client address, host:port. Clients connect here instead of to the store."`
	Backend         string   `env:"BACKEND" desc:"Address of the store this node fronts, host:port. Empty makes the process a router that only forwards to the leader."`
	BackendUser     string   `env:"BACKEND_USER" defaultdoc:"root (mysql), empty (redis)" desc:"User of the node's backend sessions. On MySQL it needs REPLICATION SLAVE and REPLICATION CLIENT."`
	BackendPassword string   `env:"BACKEND_PASSWORD" secret:"true" desc:"Password of BACKEND_USER."`
	NodeID          string   `env:"NODE_ID" defaultdoc:"<hostname>-<REPL_LISTEN port>" desc:"Name of this node, unique in the group: letters, digits, '.', '_', '-'. Set it when the hostname is not stable across restarts."`
	Group           string   `env:"GROUP" default:"default" desc:"Replication group: nodes with the same GROUP on the same NATS replicate together. Letters, digits, '_', '-'."`
	ReplListen      string   `env:"REPL_LISTEN" default:"127.0.0.1:7380" desc:"Replication address, host:port, where followers stream the backlog from the leader."`
	Advertise       string   `env:"ADVERTISE" defaultdoc:"host of REPL_LISTEN, or the hostname when that is a wildcard" desc:"Host (no port) that peers and routers dial to reach this node's REPL_LISTEN and LISTEN ports."`
	NATSURL         string   `env:"NATS_URL" secret:"userinfo" desc:"NATS servers for the election and metadata, nats://host:port[,...]; tls:// requires TLS, checked against TLS_CA when set (else the system roots), with TLS_CERT offered as the client certificate. A user:password@ or token@ in the URL logs in. Empty runs an embedded NATS server on NATS_LISTEN."`
	NATSCreds       string   `env:"NATS_CREDS" desc:"NATS credentials file (a user JWT and its NKey seed, as nsc and Synadia Cloud issue them) for NATS_URL."`
	NATSListen      string   `env:"NATS_LISTEN" default:"127.0.0.1:4222" desc:"Address of the embedded NATS server, host:port. Used only when NATS_URL is empty."`

	AckPolicy      AckPolicy      `env:"ACK_POLICY" default:"quorum" desc:"When a write is acknowledged: none (primary replied), leader (in the leader's backlog), one (primary plus ACKS followers), quorum (a majority of the group) or all (every ISR member)."`
	Acks           int            `env:"ACKS" default:"1" desc:"Followers that must have applied a write under ACK_POLICY=one."`
	MinInsync      int            `env:"MIN_INSYNC" default:"1" desc:"Smallest ISR, leader included, that takes writes under ACK_POLICY=all; below it writes fail with NOREPLICAS. Kafka's min.insync.replicas."`
	AckTimeout     time.Duration  `env:"ACK_TIMEOUT" default:"5s" desc:"How long a client's reply is held waiting for the ack policy."`
	AckTimeoutMode AckTimeoutMode `env:"ACK_TIMEOUT_MODE" default:"error" desc:"At ACK_TIMEOUT: error (the client gets UNCOMMITTED; the write may or may not survive failover) or degrade (acknowledge it as if asynchronous)."`
	MaxLag         time.Duration  `env:"MAX_LAG" default:"2s" desc:"A follower that has not caught up for this long leaves the ISR. Keep it below ACK_TIMEOUT so a stalled follower is dropped before held writes time out."`
	ReadPolicy     ReadPolicy     `env:"READ_POLICY" default:"leader" desc:"Where reads go: leader (the primary, fenced like writes), local (this node's store, possibly stale) or bounded (local while lag is within MAX_READ_LAG, else the leader)."`
	MaxReadLag     time.Duration  `env:"MAX_READ_LAG" desc:"Staleness bound of READ_POLICY=bounded, which requires it."`

	LeaseTTL        time.Duration `env:"LEASE_TTL" default:"3s" desc:"Leader lease lifetime, at least 1s. The leader renews it every TTL/4 and fences itself once it may have expired; a failover takes about one TTL."`
	FailoverWait    time.Duration `env:"FAILOVER_WAIT" default:"5s" desc:"How long a write waits for a leader during an election before it fails with the retryable TRYAGAIN. 0 fails at once."`
	UncleanElection bool          `env:"UNCLEAN_ELECTION" default:"false" desc:"Let a node outside the ISR become leader when no ISR member can. Trades acknowledged writes for availability."`

	BacklogBytes ByteSize    `env:"BACKLOG_BYTES" default:"64mb" desc:"Backlog retained for followers, like repl-backlog-size; one further behind needs a full resync. Bytes or a unit as in redis.conf: 512k (x1000), 64mb (x1024), 1gb; at least 64kb."`
	DataDir      string      `env:"DATA_DIR" desc:"Directory of the backlog's WAL segments. Empty keeps the backlog in memory only."`
	Fsync        FsyncPolicy `env:"FSYNC" default:"everysec" desc:"When WAL writes are fsynced: always (before the write counts as in the backlog), everysec (once a second) or no (left to the OS). Needs DATA_DIR."`

	HTTPListen string    `env:"HTTP_LISTEN" default:"127.0.0.1:9380" desc:"Address of /metrics, /healthz, /readyz and /status, host:port."`
	LogLevel   LogLevel  `env:"LOG_LEVEL" default:"info" desc:"Least severe level logged."`
	LogFormat  LogFormat `env:"LOG_FORMAT" default:"json" desc:"Log format on stderr: json (one object a line, for collectors) or console (for people)."`

	User       string `env:"USER" defaultdoc:"root (mysql), default (redis)" desc:"User clients log in as; on Redis the ACL user of AUTH."`
	Password   string `env:"PASSWORD" secret:"true" desc:"Password clients log in with. Empty lets USER in without one."`
	UsersFile  string `env:"USERS_FILE" desc:"File of user:password lines; those users may log in too."`
	MaxClients int    `env:"MAX_CLIENTS" default:"10000" desc:"Most client connections at once (10000 is Redis's maxclients default), 0 for no limit; past it a client gets 'Too many connections' (MySQL 1040) or 'ERR max number of clients reached'."`

	TLSCert     string      `env:"TLS_CERT" desc:"PEM certificate file (a chain may follow it). With TLS_KEY it turns on TLS on the client port (rediss-style on Redis) and the replication port, and for this node's connections to other nodes. It needs serverAuth (and clientAuth with TLS_CA) and a SAN for each address peers dial: the ADVERTISE host (an IP needs an IP SAN)."`
	TLSKey      string      `env:"TLS_KEY" desc:"PEM private key file of TLS_CERT."`
	TLSCA       string      `env:"TLS_CA" desc:"PEM CA file. The replication port then requires peer certificates signed by it (mutual TLS between nodes), and other nodes, the backend (BACKEND_TLS=verify) and tls:// NATS servers are checked against it instead of the system roots. Needs TLS_CERT."`
	BackendTLS  BackendTLS  `env:"BACKEND_TLS" default:"off" desc:"TLS to the backend: off, on (encrypt, certificate not checked) or verify (certificate checked against TLS_CA or the system roots, for the BACKEND host). TLS_CERT, when set, is offered as the client certificate."`
	MySQLFormat MySQLFormat `env:"MYSQL_FORMAT" default:"row" desc:"How MySQL writes are captured: row (binlog row events; needs binlog_format=ROW and GTIDs) or statement (statements made deterministic). MySQL only."`
}

// VarError is a bad value for one variable. Its message is one line that
// names the variable with its prefix, the value (masked if secret) and what
// is allowed:
//
//	REPLICAR_ACK_POLICY="quorom": want one of none, leader, one, quorum, all
type VarError struct {
	Name  string // with EnvPrefix, e.g. "REPLICAR_ACK_POLICY"
	Value string // as given, with secrets masked
	Want  string // what is allowed, starting with "want"
}

// Error returns the one-line message: NAME="value": want ….
func (e *VarError) Error() string {
	return fmt.Sprintf("%s=%q: %s", e.Name, e.Value, e.Want)
}

// ErrUnknownVar is returned, wrapped with the name, by Config.Set for a name
// that is not in the contract.
var ErrUnknownVar = errors.New("unknown variable")

// Default returns the configuration with every tag default applied. Fields
// whose default depends on others stay empty until ApplyDefaults.
func Default() Config {
	var c Config
	for _, v := range vars() {
		if v.Default == "" {
			continue
		}
		if err := c.Set(v.Name, v.Default); err != nil {
			panic(fmt.Sprintf("proxy: bad default tag: %v", err)) // caught by the tests
		}
	}
	return c
}

// ApplyDefaults fills the empty fields whose default depends on other
// fields: LISTEN and USER (and BACKEND_USER on MySQL) from PROTOCOL,
// ADVERTISE from the host of REPL_LISTEN (the machine's hostname when that
// host is a wildcard), and NODE_ID as "<hostname>-<REPL_LISTEN port>", so
// that several nodes on one machine get distinct ids. Call it after the
// variables are set and before Validate.
func (c *Config) ApplyDefaults() { c.applyDefaults(os.Hostname) }

func (c *Config) applyDefaults(hostname func() (string, error)) {
	switch c.Protocol {
	case ProtocolRedis:
		setIfEmpty(&c.Listen, DefaultRedisListen)
		setIfEmpty(&c.User, DefaultRedisUser)
	case ProtocolMySQL:
		setIfEmpty(&c.Listen, DefaultMySQLListen)
		setIfEmpty(&c.User, DefaultMySQLUser)
		setIfEmpty(&c.BackendUser, DefaultMySQLUser)
	}
	host, port, err := net.SplitHostPort(c.ReplListen)
	if c.Advertise == "" {
		if err == nil && !isWildcard(host) {
			c.Advertise = host
		} else if h, herr := hostname(); herr == nil {
			c.Advertise = h
		}
	}
	if c.NodeID == "" {
		h, herr := hostname()
		if herr != nil || h == "" {
			return // Validate reports the empty NODE_ID and asks for one
		}
		id := sanitizeName(h)
		if err == nil && port != "" {
			id = truncate(id, maxNameLen-len(port)-1) + "-" + port
		}
		c.NodeID = truncate(id, maxNameLen)
	}
}

func setIfEmpty(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

// sanitizeName turns a hostname into a valid NODE_ID.
func sanitizeName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, ch := range b {
		if !isNameByte(ch, true) {
			b[i] = '-'
		}
	}
	return string(b)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func isNameByte(ch byte, dot bool) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
		ch == '_' || ch == '-' || dot && ch == '.'
}

func validName(s string, dot bool) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i], dot) {
			return false
		}
	}
	return true
}

// Validate checks every field and returns nil or one *VarError per bad
// variable, joined with errors.Join, so that its message has one line per
// variable. It also checks that the files named by NATS_CREDS, USERS_FILE,
// TLS_CERT, TLS_KEY and TLS_CA exist and that DATA_DIR, if it exists, is a directory:
// a typo in a path is better caught at start than at the first TLS
// handshake. The files are read later, when the node starts.
func (c Config) Validate() error {
	v := validator{}

	v.enum("PROTOCOL", c.Protocol)
	protoOK := contains(Protocol("").enumValues(), string(c.Protocol))
	if c.Listen != "" || protoOK { // with a bad PROTOCOL an empty LISTEN is just its consequence
		v.listenAddr("LISTEN", c.Listen)
	}
	if c.Backend != "" {
		if v.dialAddr("BACKEND", c.Backend) && dialsItself(c.Backend, c.Listen) {
			v.bad("BACKEND", c.Backend, "want the store's address, not this node's own REPLICAR_LISTEN")
		}
	}
	if !validName(c.NodeID, true) {
		v.bad("NODE_ID", c.NodeID, "want 1-64 letters, digits, '.', '_' or '-'")
	}
	if !validName(c.Group, false) {
		v.bad("GROUP", c.Group, "want 1-64 letters, digits, '_' or '-' (it names the NATS KV bucket)")
	}
	v.listenAddr("REPL_LISTEN", c.ReplListen)
	if !validHost(c.Advertise) || isWildcard(c.Advertise) {
		v.bad("ADVERTISE", c.Advertise, "want the host name or IP peers dial, without a port and not a wildcard")
	}
	if c.NATSURL != "" {
		if err := checkNATSURLs(c.NATSURL); err != nil {
			v.bad("NATS_URL", c.NATSURL, "want nats://host:port[,nats://host:port...] (or tls://): "+err.Error())
		}
	}
	if c.NATSURL == "" || c.NATSListen != "" {
		v.listenAddr("NATS_LISTEN", c.NATSListen)
	}
	if c.NATSCreds != "" && c.NATSURL == "" {
		v.bad("NATS_CREDS", c.NATSCreds, "want it only with REPLICAR_NATS_URL (the embedded NATS server takes no credentials)")
	} else {
		v.file("NATS_CREDS", c.NATSCreds)
	}

	v.enum("ACK_POLICY", c.AckPolicy)
	v.intRange("ACKS", c.Acks, 1, MaxGroupSize-1)
	v.intRange("MIN_INSYNC", c.MinInsync, 1, MaxGroupSize)
	v.positive("ACK_TIMEOUT", c.AckTimeout)
	v.enum("ACK_TIMEOUT_MODE", c.AckTimeoutMode)
	v.positive("MAX_LAG", c.MaxLag)
	v.enum("READ_POLICY", c.ReadPolicy)
	switch {
	case c.MaxReadLag < 0:
		v.bad("MAX_READ_LAG", c.MaxReadLag.String(), "want a duration ≥ 0 such as 1s")
	case c.ReadPolicy == ReadBounded && c.MaxReadLag == 0:
		v.bad("MAX_READ_LAG", "", "want a duration > 0 such as 1s with REPLICAR_READ_POLICY=bounded")
	}

	if c.LeaseTTL < MinLeaseTTL {
		v.bad("LEASE_TTL", c.LeaseTTL.String(), "want a duration ≥ "+MinLeaseTTL.String())
	}
	if c.FailoverWait < 0 {
		v.bad("FAILOVER_WAIT", c.FailoverWait.String(), "want a duration ≥ 0 such as 5s")
	}

	if c.BacklogBytes < MinBacklogBytes {
		v.bad("BACKLOG_BYTES", c.BacklogBytes.String(), "want a size ≥ "+MinBacklogBytes.String()+" such as 64mb")
	}
	if c.DataDir != "" {
		if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
			v.bad("DATA_DIR", c.DataDir, "want a directory (created if missing), not a file")
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			v.bad("DATA_DIR", c.DataDir, "want a usable directory: "+pathErr(err))
		}
	}
	v.enum("FSYNC", c.Fsync)

	v.listenAddr("HTTP_LISTEN", c.HTTPListen)
	v.enum("LOG_LEVEL", c.LogLevel)
	v.enum("LOG_FORMAT", c.LogFormat)

	if strings.ContainsAny(c.User, ":\n") {
		v.bad("USER", c.User, "want a user name without ':' or newlines")
	}
	v.file("USERS_FILE", c.UsersFile)
	if c.MaxClients < 0 {
		v.bad("MAX_CLIENTS", strconv.Itoa(c.MaxClients), "want a whole number ≥ 0 (0 for no limit)")
	}

	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		v.bad("TLS_KEY", "", "want the key file of REPLICAR_TLS_CERT (set both or neither)")
	case c.TLSCert == "" && c.TLSKey != "":
		v.bad("TLS_CERT", "", "want the certificate file of REPLICAR_TLS_KEY (set both or neither)")
	}
	v.file("TLS_CERT", c.TLSCert)
	v.file("TLS_KEY", c.TLSKey)
	if c.TLSCA != "" && c.TLSCert == "" {
		v.bad("TLS_CA", c.TLSCA, "want it only with REPLICAR_TLS_CERT and REPLICAR_TLS_KEY")
	} else {
		v.file("TLS_CA", c.TLSCA)
	}
	v.enum("BACKEND_TLS", c.BackendTLS)
	v.enum("MYSQL_FORMAT", c.MySQLFormat) // a typo is a typo even on redis

	v.distinctPorts([]listener{
		{"LISTEN", c.Listen},
		{"REPL_LISTEN", c.ReplListen},
		{"HTTP_LISTEN", c.HTTPListen},
	}, c.NATSURL == "", listener{"NATS_LISTEN", c.NATSListen})

	return errors.Join(v.errs...)
}

// Warnings returns settings that are valid but probably not what was meant,
// one line each, for the caller to log. They do not stop a node.
func (c Config) Warnings() []string {
	var w []string
	if c.Acks != 1 && c.AckPolicy != AckOne {
		w = append(w, fmt.Sprintf("%sACKS=%d has no effect unless %sACK_POLICY=one", EnvPrefix, c.Acks, EnvPrefix))
	}
	if c.MinInsync != 1 && c.AckPolicy != AckAll {
		w = append(w, fmt.Sprintf("%sMIN_INSYNC=%d has no effect unless %sACK_POLICY=all", EnvPrefix, c.MinInsync, EnvPrefix))
	}
	if c.MaxReadLag != 0 && c.ReadPolicy != ReadBounded {
		w = append(w, fmt.Sprintf("%sMAX_READ_LAG=%s has no effect unless %sREAD_POLICY=bounded", EnvPrefix, c.MaxReadLag, EnvPrefix))
	}
	if c.Fsync != FsyncEverySec && c.DataDir == "" {
		w = append(w, fmt.Sprintf("%sFSYNC=%s has no effect without %sDATA_DIR", EnvPrefix, c.Fsync, EnvPrefix))
	}
	if c.MySQLFormat != MySQLRow && c.Protocol != ProtocolMySQL {
		w = append(w, fmt.Sprintf("%sMYSQL_FORMAT=%s has no effect unless %sPROTOCOL=mysql", EnvPrefix, c.MySQLFormat, EnvPrefix))
	}
	if c.Protocol == ProtocolMySQL && c.ReadPolicy != ReadLeader {
		w = append(w, fmt.Sprintf("%sREAD_POLICY=%s has no effect with %sPROTOCOL=mysql: a follower forwards whole sessions to the leader",
			EnvPrefix, c.ReadPolicy, EnvPrefix))
	}
	if (c.AckPolicy == AckAll || c.AckPolicy == AckOne) && c.MaxLag >= c.AckTimeout {
		w = append(w, fmt.Sprintf("%sMAX_LAG=%s is not below %sACK_TIMEOUT=%s: a stalled follower makes writes time out before it leaves the ISR",
			EnvPrefix, c.MaxLag, EnvPrefix, c.AckTimeout))
	}
	if c.UncleanElection && (c.AckPolicy == AckAll || c.AckPolicy == AckQuorum || c.AckPolicy == AckOne) {
		w = append(w, fmt.Sprintf("%sUNCLEAN_ELECTION=true: writes acknowledged under %sACK_POLICY=%s can be lost on failover",
			EnvPrefix, EnvPrefix, c.AckPolicy))
	}
	return w
}

// Masked returns a copy that is safe to print or log: secret values that are
// set become "****" (an empty one stays empty, so that "no password" is still
// visible), and credentials inside NATS_URL are replaced the same way.
func (c Config) Masked() Config {
	for _, v := range vars() {
		if v.secret == "" {
			continue
		}
		f := fieldOf(&c, v)
		f.SetString(maskValue(v, f.String()))
	}
	return c
}

const mask = "****"

func maskValue(v Var, s string) string {
	switch {
	case s == "" || v.secret == "":
		return s
	case v.secret == "userinfo":
		return maskURLs(s)
	default:
		return mask
	}
}

// maskURLs hides the userinfo of each comma-separated URL. NATS accepts a
// bare token as the user part, so the whole userinfo goes, not only the
// password.
func maskURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			scheme, rest = "", p
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		masked := mask + rest[at:]
		if ok {
			masked = scheme + "://" + masked
		}
		parts[i] = masked
	}
	return strings.Join(parts, ",")
}

// validator collects one *VarError per bad variable.
type validator struct{ errs []error }

func (v *validator) bad(name, value, want string) {
	if vr, ok := lookupVar(name); ok {
		value = maskValue(vr, value)
	}
	v.errs = append(v.errs, &VarError{Name: EnvPrefix + name, Value: value, Want: want})
}

func (v *validator) enum(name string, val enum) {
	s := fmt.Sprint(val)
	if allowed := val.enumValues(); !contains(allowed, s) {
		v.bad(name, s, wantOneOf(allowed))
	}
}

func wantOneOf(allowed []string) string { return "want one of " + strings.Join(allowed, ", ") }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (v *validator) intRange(name string, n, lo, hi int) {
	if n < lo || n > hi {
		v.bad(name, strconv.Itoa(n), fmt.Sprintf("want a whole number from %d to %d", lo, hi))
	}
}

func (v *validator) positive(name string, d time.Duration) {
	if d <= 0 {
		v.bad(name, d.String(), "want a duration > 0 such as 500ms, 5s or 1m")
	}
}

func (v *validator) file(name, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		v.bad(name, path, "want an existing file: "+pathErr(err))
	case fi.IsDir():
		v.bad(name, path, "want a file, not a directory")
	}
}

// pathErr drops the path from a *fs.PathError; the message already shows it.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// listenAddr checks a host:port to listen on: the host may be empty (all
// interfaces) and the port may be 0 (any free port, for tests).
func (v *validator) listenAddr(name, addr string) bool {
	if err := checkHostPort(addr, true); err != nil {
		v.bad(name, addr, "want host:port such as 127.0.0.1:7380 or :7380 ("+err.Error()+")")
		return false
	}
	return true
}

// dialAddr checks a host:port to connect to: both parts are required.
func (v *validator) dialAddr(name, addr string) bool {
	if err := checkHostPort(addr, false); err != nil {
		v.bad(name, addr, "want host:port such as 127.0.0.1:6379 ("+err.Error()+")")
		return false
	}
	return true
}

func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	if err := checkPort(port, listen); err != nil {
		return err
	}
	switch {
	case host == "" && !listen:
		return errors.New("missing host")
	case host != "" && !validHost(host):
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}

func checkPort(port string, allowZero bool) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || port == "" || port[0] == '+' {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if n == 0 && !allowZero {
		return errors.New("port 0 cannot be dialed")
	}
	return nil
}

// validHost accepts an IP (IPv6 with or without brackets) or a DNS name.
func validHost(h string) bool {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isNameByte(label[i], false) {
				return false
			}
		}
	}
	return true
}

func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsUnspecified()
}

// checkNATSURLs checks a comma-separated list of NATS server URLs. The port
// may be left out (NATS dials 4222).
func checkNATSURLs(list string) error {
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return errors.New("empty entry")
		}
		u, err := url.Parse(raw)
		if err != nil {
			return errors.New("not a URL")
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("scheme %q", u.Scheme)
		}
		if !validHost(u.Hostname()) {
			return errors.New("missing or bad host")
		}
		if p := u.Port(); p != "" {
			if err := checkPort(p, false); err != nil {
				return err
			}
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return errors.New("unexpected path or query")
		}
	}
	return nil
}

type listener struct{ name, addr string }

// distinctPorts reports a listener whose port another one on an overlapping
// host already takes; the process would fail to bind it at start anyway, but
// with a less helpful message. Port 0 picks a free port and never clashes.
func (v *validator) distinctPorts(ls []listener, withExtra bool, extra listener) {
	if withExtra {
		ls = append(ls, extra)
	}
	for i, a := range ls {
		for _, b := range ls[:i] {
			if sameListener(a.addr, b.addr) {
				_, port, _ := net.SplitHostPort(a.addr)
				v.bad(a.name, a.addr, fmt.Sprintf("want a port other than %s, which %s%s takes", port, EnvPrefix, b.name))
				break
			}
		}
	}
}

// sameListener reports whether two host:port addresses would clash when
// bound on one machine: same non-zero port, and hosts that are equal, a
// wildcard, or both loopback names.
func sameListener(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	if isWildcard(ha) || isWildcard(hb) || strings.EqualFold(ha, hb) {
		return true
	}
	return isLoopback(ha) && isLoopback(hb) && (strings.EqualFold(ha, "localhost") || strings.EqualFold(hb, "localhost"))
}

// dialsItself reports whether dialing backend would reach this node's own
// client port, a forwarding loop. Unlike sameListener, a wildcard LISTEN
// clashes only with a local BACKEND: a remote store may use the same port.
func dialsItself(backend, listen string) bool {
	hb, pb, err1 := net.SplitHostPort(backend)
	hl, pl, err2 := net.SplitHostPort(listen)
	if err1 != nil || err2 != nil || pb != pl {
		return false
	}
	switch {
	case strings.EqualFold(hb, hl):
		return true
	case isWildcard(hl):
		return isLoopback(hb) || isWildcard(hb)
	default:
		return isLoopback(hb) && isLoopback(hl) && (strings.EqualFold(hb, "localhost") || strings.EqualFold(hl, "localhost"))
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
