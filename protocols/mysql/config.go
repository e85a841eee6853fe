package mysql

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	gm "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/rs/zerolog"
)

// Format is how writes are captured (REPLICAR_MYSQL_FORMAT).
type Format string

const (
	// FormatRow tails the primary's binlog in ROW format (the default).
	FormatRow Format = "row"
	// FormatStatement logs statements; the binlog is not read.
	FormatStatement Format = "statement"
)

// Config configures a Server.
type Config struct {
	// Listen is the client address (REPLICAR_LISTEN, default
	// 127.0.0.1:3307).
	Listen string
	// Backend is the MySQL/MariaDB primary, host:port (REPLICAR_BACKEND).
	// Empty makes a router: every session goes to the leader.
	Backend string
	// BackendUser and BackendPassword authenticate the proxy's sessions to
	// the backend; clients never see them.
	BackendUser, BackendPassword string
	// ForwardTLS, when set, makes the sessions forwarded to the leader's
	// client port use TLS (the node's certificate, checked against
	// REPLICAR_TLS_CA), as the RESP front end's forwarding does.
	ForwardTLS *tls.Config
	// BackendTLS, when set, makes backend connections use TLS
	// (REPLICAR_BACKEND_TLS=on|verify).
	BackendTLS *tls.Config

	// User and Password are the proxy's own account (REPLICAR_USER,
	// default root, and REPLICAR_PASSWORD; empty means no password).
	User, Password string
	// Users are more accounts, user → password (REPLICAR_USERS_FILE, read
	// by internal/users with ValidUser). A forwarding node logs in to the
	// leader as the client's user, so every node of a group needs the same
	// accounts.
	Users map[string]string
	// AuthPlugin is the plugin the handshake proposes:
	// mysql_native_password (default) or caching_sha2_password. A client
	// that answers with the other one is served with it.
	AuthPlugin string
	// TLS, when set, offers TLS on the client port (the protocol's own
	// upgrade; REPLICAR_TLS_CERT/KEY).
	TLS *tls.Config

	// MaxClients caps client sessions; past it a client gets error 1040
	// "Too many connections". 0 means no cap.
	MaxClients int
	// Format is the capture format; it decides what CheckBackend demands.
	Format Format
	// AckTimeoutDegrade, when set, answers a commit that missed the ack
	// timeout with its OK and a warning in the log, instead of UNCOMMITTED
	// (REPLICAR_ACK_TIMEOUT_MODE=degrade).
	AckTimeoutDegrade bool
	// OffsetTimeout bounds how long a held commit waits for the capture to
	// log its GTID before it is answered UNCOMMITTED (default 5s, as
	// REPLICAR_ACK_TIMEOUT).
	OffsetTimeout time.Duration
	// FenceReads holds a read's final packet until everything logged is
	// committed (READ_POLICY=leader), and asks AdmitRead before a read.
	FenceReads bool
	// FailoverWait is how long a statement waits for a leader during an
	// election before it gets TRYAGAIN (default 5s).
	FailoverWait time.Duration
	// DialTimeout bounds one backend or leader connection attempt
	// (default 2s).
	DialTimeout time.Duration
	// ServerVersion is the version string of the handshake. By default it
	// is the backend's own, so that drivers enable the same features; a
	// router without one uses "5.5.5-10.11.0-MariaDB-replicar".
	ServerVersion string
	// Logger receives the front end's logs.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:3307"
	}
	if c.User == "" {
		c.User = "root"
	}
	if c.AuthPlugin == "" {
		c.AuthPlugin = gm.AUTH_NATIVE_PASSWORD
	}
	if c.Format == "" {
		c.Format = FormatRow
	}
	if c.OffsetTimeout <= 0 {
		c.OffsetTimeout = 5 * time.Second
	}
	if c.FailoverWait <= 0 {
		c.FailoverWait = 5 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
}

// Validate reports a configuration the server cannot run with.
func (c *Config) Validate() error {
	switch c.AuthPlugin {
	case "", gm.AUTH_NATIVE_PASSWORD, gm.AUTH_CACHING_SHA2_PASSWORD:
	default:
		return fmt.Errorf("auth plugin %q: want %s or %s", c.AuthPlugin, gm.AUTH_NATIVE_PASSWORD, gm.AUTH_CACHING_SHA2_PASSWORD)
	}
	switch c.Format {
	case "", FormatRow, FormatStatement:
	default:
		return fmt.Errorf("REPLICAR_MYSQL_FORMAT=%q: want row or statement", c.Format)
	}
	if c.MaxClients < 0 {
		return fmt.Errorf("REPLICAR_MAX_CLIENTS=%d: want 0 (no cap) or more", c.MaxClients)
	}
	for u := range c.Users {
		if err := ValidUser(u); err != nil {
			return err
		}
	}
	return nil
}

// accounts is every user a client may log in as, with its password.
func (c *Config) accounts() map[string]string {
	m := make(map[string]string, len(c.Users)+1)
	for u, p := range c.Users {
		m[u] = p
	}
	m[c.User] = c.Password
	return m
}

// ValidUser accepts what a handshake can carry: a NUL would end the name
// early, and MySQL caps user names at 80 characters (MariaDB at 128
// bytes; the smaller one is kept).
func ValidUser(u string) error {
	switch {
	case u == "":
		return errors.New("empty user name")
	case strings.ContainsAny(u, "\x00\n"):
		return fmt.Errorf("user %q: contains a NUL or newline", u)
	case len([]rune(u)) > 80:
		return fmt.Errorf("user %q: longer than 80 characters", u)
	}
	return nil
}
