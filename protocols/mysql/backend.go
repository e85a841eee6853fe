package mysql

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gm "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/pingcap/tidb/pkg/parser/charset"
)

// passCaps are the client capabilities that change what a server sends or
// how it behaves, and that the backend session therefore takes over from
// the client. CLIENT_SESSION_TRACK is always asked of the backend (the
// proxy reads the GTIDs from it) and removed again for clients that did
// not ask for it.
var passCaps = []uint32{
	gm.CLIENT_FOUND_ROWS,
	gm.CLIENT_IGNORE_SPACE,
	gm.CLIENT_MULTI_STATEMENTS,
	gm.CLIENT_MULTI_RESULTS,
	gm.CLIENT_PS_MULTI_RESULTS,
	gm.CLIENT_LOCAL_FILES,
}

// backendCaps are the capabilities a backend session is opened with for a
// client that has clientCaps.
func backendCaps(clientCaps uint32) uint32 {
	caps := uint32(gm.CLIENT_PROTOCOL_41 | gm.CLIENT_SECURE_CONNECTION | gm.CLIENT_LONG_PASSWORD |
		gm.CLIENT_TRANSACTIONS | gm.CLIENT_PLUGIN_AUTH | gm.CLIENT_LONG_FLAG | gm.CLIENT_SESSION_TRACK)
	for _, c := range passCaps {
		caps |= clientCaps & c
	}
	return caps
}

// dialSpec says how to open one backend session.
type dialSpec struct {
	addr, user, password, db string
	tls                      *tls.Config
	caps                     uint32 // the client's capabilities
	collation                uint8  // the client's collation id
	attrs                    map[string]string
	timeout                  time.Duration
}

// backendConn is a session's connection to its backend (the node's own
// store, or the leader's client port when forwarding).
type backendConn struct {
	*wire
	target   string
	threadID uint32
	version  string
	caps     uint32 // what the session negotiated with the backend
	// namesOK says the handshake carried the client's collation, so no
	// SET NAMES is needed.
	namesOK bool
	// lastUsed is when the last command was sent.
	lastUsed time.Time
}

// withServerName names the host dialled as the server to verify, as
// tls.Dialer does and go-mysql's client does not: a verifying config with
// no name would fail every handshake. A wildcard host (a leader's own
// 0.0.0.0 listener) becomes loopback, which a node certificate can name.
func withServerName(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" || cfg.InsecureSkipVerify {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cfg
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// dialBackend opens and authenticates a backend session with go-mysql's
// client, then takes the connection over for packet relaying.
func dialBackend(ctx context.Context, spec dialSpec) (*backendConn, error) {
	ctx, cancel := context.WithTimeout(ctx, spec.timeout)
	defer cancel()
	d := &net.Dialer{KeepAlive: 15 * time.Second}
	caps := backendCaps(spec.caps)
	namesOK := false
	opt := func(c *client.Conn) error {
		for _, f := range passCaps {
			if caps&f != 0 {
				if err := c.SetCapability(f); err != nil {
					return err
				}
			} else {
				c.UnsetCapability(f)
			}
		}
		if err := c.SetCapability(gm.CLIENT_SESSION_TRACK); err != nil {
			return err
		}
		// The client side never offered these, so its packets are framed
		// without them: the backend session must not use them either.
		c.UnsetCapability(gm.CLIENT_DEPRECATE_EOF)
		c.UnsetCapability(gm.CLIENT_QUERY_ATTRIBUTES)
		c.UnsetCapability(gm.CLIENT_COMPRESS)
		if spec.tls != nil {
			c.SetTLSConfig(withServerName(spec.tls, spec.addr))
		}
		if len(spec.attrs) > 0 {
			c.SetAttributes(spec.attrs)
		}
		name := "utf8mb4_general_ci"
		if co, err := charset.GetCollationByID(int(spec.collation)); err == nil && co.ID < 256 {
			name, namesOK = co.Name, true
		}
		return c.SetCollation(name)
	}
	// The context bounds the dial; the handshake is bounded by a deadline
	// on the connection, cleared once it is done.
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		return conn, nil
	}
	c, err := client.ConnectWithDialer(ctx, "tcp", spec.addr, spec.user, spec.password, spec.db, dialer, opt)
	if err != nil {
		return nil, err
	}
	raw := c.Conn.Conn
	if err := raw.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, err
	}
	return &backendConn{
		wire:     newWire(raw),
		target:   spec.addr,
		threadID: c.GetConnectionID(),
		version:  c.GetServerVersion(),
		caps:     caps,
		namesOK:  namesOK,
	}, nil
}

// alive says whether an idle connection is still open: a read that would
// block means open; end of file, an error, or bytes nobody asked for
// (mysqld's farewell error) mean closed. It does not consume anything a
// live connection could need.
func (b *backendConn) alive() bool {
	if b.br.Buffered() > 0 {
		return false
	}
	conn := b.conn
	if t, ok := conn.(*tls.Conn); ok {
		// TLS records cannot be peeked at without decrypting them; the
		// socket below tells closed from open all the same.
		conn = t.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	err = raw.Read(func(fd uintptr) bool {
		var buf [1]byte
		n, err := syscall.Read(int(fd), buf[:])
		switch {
		case n > 0 || (n == 0 && err == nil):
			alive = false
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK):
		case err != nil:
			alive = false
		}
		return true
	})
	return err == nil && alive
}

func (b *backendConn) close() {
	if b != nil {
		b.conn.Close()
	}
}

// command sends one command packet, starting a new sequence.
func (b *backendConn) command(payload []byte) error {
	b.lastUsed = time.Now()
	b.seq = 0
	if err := b.writePacket(payload); err != nil {
		return err
	}
	return b.flush()
}

// simpleQuery runs a statement that answers with an OK or an ERR, or a
// result set that is read and dropped, and returns the last OK and the
// rows' first columns as strings.
func (b *backendConn) simpleQuery(q string) (okPacket, [][]string, error) {
	if err := b.command(append([]byte{gm.COM_QUERY}, q...)); err != nil {
		return okPacket{}, nil, err
	}
	var rows [][]string
	for {
		p, err := b.readPacket()
		if err != nil {
			return okPacket{}, nil, err
		}
		switch {
		case p[0] == hdrERR:
			return okPacket{}, nil, parseErr(p)
		case p[0] == hdrOK:
			ok, err := parseOK(p, b.caps)
			if err != nil {
				return ok, nil, err
			}
			if ok.status&statusMoreResults == 0 {
				return ok, rows, nil
			}
			continue
		case p[0] == hdrLocal:
			return okPacket{}, nil, errors.New("unexpected LOCAL INFILE request")
		}
		ncol, _, ok := lenencInt(p)
		if !ok || ncol > 1<<16 {
			return okPacket{}, nil, errors.New("malformed column count")
		}
		for range ncol {
			if _, err := b.readPacket(); err != nil {
				return okPacket{}, nil, err
			}
		}
		if _, err := b.readPacket(); err != nil { // EOF after the columns
			return okPacket{}, nil, err
		}
		for {
			p, err := b.readPacket()
			if err != nil {
				return okPacket{}, nil, err
			}
			if p[0] == hdrERR {
				return okPacket{}, nil, parseErr(p)
			}
			if isEOF(p) {
				if eofStatus(p)&statusMoreResults == 0 {
					return okPacket{status: eofStatus(p)}, rows, nil
				}
				break
			}
			rows = append(rows, textRow(p, int(ncol)))
		}
	}
}

// textRow decodes a text-protocol row; NULL becomes "".
func textRow(p []byte, ncol int) []string {
	row := make([]string, 0, ncol)
	pos := 0
	for range ncol {
		if pos >= len(p) {
			break
		}
		if p[pos] == 0xfb {
			row = append(row, "")
			pos++
			continue
		}
		s, n, ok := lenencStr(p[pos:])
		if !ok {
			break
		}
		row = append(row, string(s))
		pos += n
	}
	return row
}

// BackendInfo is what CheckBackend found out.
type BackendInfo struct {
	// Version is the server's handshake version string.
	Version string
	// MariaDB says the backend is MariaDB (else MySQL).
	MariaDB bool
	// ServerID is the backend's server_id.
	ServerID uint64
	// GTIDPos is the backend's current GTID position: gtid_binlog_pos on
	// MariaDB, gtid_executed on MySQL.
	GTIDPos string
	// CollationID is the server's collation, proposed in the handshake.
	CollationID uint8
	// TrackVars is the backend's default session_track_system_variables,
	// which a session extends with last_gtid (MariaDB).
	TrackVars string
}

// MisconfiguredError is a backend whose settings row mode cannot work
// with. Setting names the variable to change; the error says to what.
type MisconfiguredError struct {
	Backend string
	Setting string
	Problem string
	Fix     string
	// Format is the capture format the backend was checked for (row
	// when empty).
	Format Format
}

func (e *MisconfiguredError) Error() string {
	f := e.Format
	if f == "" {
		f = FormatRow
	}
	return fmt.Sprintf("backend %s cannot be used with REPLICAR_MYSQL_FORMAT=%s: %s; %s", e.Backend, f, e.Problem, e.Fix)
}

// CheckBackend connects to the backend with the backend credentials and
// checks what the capture format needs. Row mode needs the binary log on
// (log_bin), binlog_format=ROW, a non-zero server_id (unique in the group:
// it is checked here for zero only), and GTIDs: MariaDB always has them
// (gtid_binlog_pos), MySQL needs gtid_mode=ON and
// enforce_gtid_consistency=ON. A backend that fails is reported as a
// *MisconfiguredError naming the setting to change; one that cannot be
// reached as another error.
func CheckBackend(ctx context.Context, cfg Config) (BackendInfo, error) {
	cfg.setDefaults()
	var info BackendInfo
	b, err := dialBackend(ctx, dialSpec{
		addr: cfg.Backend, user: cfg.BackendUser, password: cfg.BackendPassword,
		tls: cfg.BackendTLS, collation: 45, timeout: cfg.DialTimeout,
	})
	if err != nil {
		return info, fmt.Errorf("backend %s: %w", cfg.Backend, err)
	}
	defer b.close()
	info.Version = b.version
	info.MariaDB = strings.Contains(strings.ToLower(b.version), "mariadb")
	deadline := time.Now().Add(5 * cfg.DialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = b.conn.SetDeadline(deadline)
	get := func(q string) ([]string, error) {
		_, rows, err := b.simpleQuery(q)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %s: %w", cfg.Backend, q, err)
		}
		if len(rows) == 0 {
			return nil, fmt.Errorf("backend %s: %s: no row", cfg.Backend, q)
		}
		return rows[0], nil
	}
	row, err := get("SELECT @@server_id, @@log_bin, @@binlog_format, (SELECT ID FROM information_schema.COLLATIONS WHERE COLLATION_NAME = @@collation_server), @@session_track_system_variables")
	if err != nil {
		return info, err
	}
	if len(row) < 5 {
		return info, fmt.Errorf("backend %s: short answer to the settings query", cfg.Backend)
	}
	info.ServerID, _ = strconv.ParseUint(row[0], 10, 64)
	if id, err := strconv.ParseUint(row[3], 10, 8); err == nil {
		info.CollationID = uint8(id)
	}
	info.TrackVars = row[4]
	if info.MariaDB {
		if r, err := get("SELECT @@gtid_binlog_pos"); err == nil {
			info.GTIDPos = r[0]
		} else if cfg.Format == FormatRow {
			return info, &MisconfiguredError{Backend: cfg.Backend, Setting: "gtid_binlog_pos",
				Problem: "gtid_binlog_pos cannot be read (" + err.Error() + ")", Fix: "use MariaDB 10.0.2 or later"}
		}
	}
	if cfg.Format == FormatStatement {
		return info, checkStatementBackend(b, cfg, info)
	}
	if cfg.Format != FormatRow {
		return info, nil
	}
	mis := func(setting, problem, fix string) (BackendInfo, error) {
		return info, &MisconfiguredError{Backend: cfg.Backend, Setting: setting, Problem: problem, Fix: fix}
	}
	if !isOn(row[1]) {
		return mis("log_bin", "log_bin is OFF (the binary log is disabled)",
			"start the server with --log-bin (log_bin=ON) so that committed transactions can be captured")
	}
	if !strings.EqualFold(row[2], "ROW") {
		return mis("binlog_format", "binlog_format is "+row[2],
			"set binlog_format=ROW (--binlog-format=ROW, or SET GLOBAL binlog_format='ROW' and reconnect)")
	}
	if info.ServerID == 0 {
		return mis("server_id", "server_id is 0",
			"set a non-zero server_id, unique among the group's backends (--server-id=N)")
	}
	if !info.MariaDB {
		r, err := get("SELECT @@gtid_mode, @@enforce_gtid_consistency, @@gtid_executed")
		if err != nil {
			return mis("gtid_mode", "GTIDs are not available ("+err.Error()+")", "use MySQL 5.7 or later with gtid_mode=ON")
		}
		if len(r) < 3 || !strings.EqualFold(r[0], "ON") {
			return mis("gtid_mode", "gtid_mode is "+r[0], "set gtid_mode=ON (--gtid-mode=ON)")
		}
		if !isOn(r[1]) {
			return mis("enforce_gtid_consistency", "enforce_gtid_consistency is "+r[1],
				"set enforce_gtid_consistency=ON (--enforce-gtid-consistency=ON)")
		}
		info.GTIDPos = r[2]
	}
	return info, nil
}

func isOn(v string) bool {
	switch strings.ToUpper(v) {
	case "1", "ON", "TRUE", "YES":
		return true
	}
	return false
}

// myError returns the MySQL error inside err, if any (go-mysql wraps them).
func myError(err error) (*gm.MyError, bool) {
	var me *gm.MyError
	if errors.As(err, &me) {
		return me, true
	}
	return nil, false
}
