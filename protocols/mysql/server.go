package mysql

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gm "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"
	"github.com/rs/zerolog"
)

// Server is the MySQL front end of one node. It accepts clients on
// Config.Listen, authenticates them with the proxy's own accounts, and
// gives each client session a backend session of its own, to which it
// relays the protocol packet by packet. On the leader, a write is
// admitted before it runs and a commit's OK is held until the backlog
// entry carrying its GTID is committed; elsewhere the whole session goes
// to the leader.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	core     Log
	offsets  GTIDOffsets
	accounts map[string]string

	gms     *server.Server
	info    BackendInfo
	version string

	ln    net.Listener
	ready chan struct{}
	route routeState

	mu       sync.Mutex
	sessions map[uint32]*session
	clients  atomic.Int64

	// stmt is statement mode's log, commit order and metadata
	// (statement.go).
	stmt stmtLog

	// writesInFlight counts admitted writes not yet answered.
	writesInFlight atomic.Int64
	backendUp      atomic.Bool
	stats          Stats
}

// Stats are the front end's counters, for SHOW REPLICAR STATUS and metrics.
type Stats struct {
	Connections    atomic.Int64
	Rejected       atomic.Int64
	AuthFailures   atomic.Int64
	Queries        atomic.Int64
	WritesAdmitted atomic.Int64
	WritesRefused  atomic.Int64
	CommitsHeld    atomic.Int64
	Uncommitted    atomic.Int64
	BackendErrors  atomic.Int64
	ProtocolErrors atomic.Int64
	SessionsMoved  atomic.Int64
	SessionsKicked atomic.Int64
}

// NewServer returns a Server for cfg. core admits writes and holds
// commits; offsets maps a committed transaction's GTID to its backlog
// offset (nil holds no commit: statement mode, or tests of the relay
// alone).
func NewServer(cfg Config, core Log, offsets GTIDOffsets) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Format == FormatStatement {
		// The front end logs the writes itself (SetAppender); there is no
		// capture whose GTIDs a commit would wait for.
		offsets = nil
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		core:     core,
		offsets:  offsets,
		accounts: cfg.accounts(),
		ready:    make(chan struct{}),
		sessions: map[uint32]*session{},
	}
	return s, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Router says whether the server has no backend of its own: every session
// goes to the leader.
func (s *Server) Router() bool { return s.cfg.Backend == "" }

// BackendUp says whether the last connection attempt to the backend
// succeeded.
func (s *Server) BackendUp() bool { return s.backendUp.Load() }

// Info is what the backend check found (zero for a router, or before Run
// has checked).
func (s *Server) Info() BackendInfo {
	<-s.ready
	return s.info
}

// Addr is the address clients connect to, once the server listens.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.ln.Addr()
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Clients is the number of client sessions.
func (s *Server) Clients() int64 { return s.clients.Load() }

// WaitWritesIdle waits until no admitted write is executing or waiting
// for its commit, or ctx ends. Call it after SetRoute has moved sessions
// elsewhere: a leader stepping down then knows no write of its own is
// still running.
func (s *Server) WaitWritesIdle(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for s.writesInFlight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d writes still executing: %w", s.writesInFlight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Run checks the backend (waiting for it while it cannot be reached, and
// failing when it is misconfigured), then listens on Config.Listen and
// serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := s.checkBackend(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	return s.serve(ctx, ln)
}

// Serve is Run on a listener the caller made.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.checkBackend(ctx); err != nil {
		ln.Close()
		return err
	}
	return s.serve(ctx, ln)
}

// checkBackend runs CheckBackend until the backend answers. A
// misconfigured backend is final; an unreachable one is retried, since a
// node often starts before its database.
func (s *Server) checkBackend(ctx context.Context) error {
	if s.Router() {
		return nil
	}
	backoff := 100 * time.Millisecond
	for {
		info, err := CheckBackend(ctx, s.cfg)
		if err == nil {
			s.info = info
			s.backendUp.Store(true)
			s.log.Info().Str("backend", s.cfg.Backend).Str("version", info.Version).Uint64("server_id", info.ServerID).
				Str("gtid_pos", info.GTIDPos).Str("format", string(s.cfg.Format)).Msg("backend checked")
			return nil
		}
		var mis *MisconfiguredError
		if errors.As(err, &mis) {
			return err
		}
		if _, ok := myError(err); ok {
			// Access denied and the like will not fix themselves.
			return err
		}
		s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("backend not reachable yet")
		select {
		case <-ctx.Done():
			return fmt.Errorf("backend %s: %w", s.cfg.Backend, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// rsaKey is the key caching_sha2_password uses on connections without
// TLS; one per process, since making one takes a noticeable moment.
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	s.version = s.cfg.ServerVersion
	if s.version == "" {
		s.version = s.info.Version
	}
	if s.version == "" {
		s.version = "5.5.5-10.11.0-MariaDB-replicar"
	}
	collation := s.info.CollationID
	if collation == 0 {
		collation = 45 // utf8mb4_general_ci
	}
	key, err := rsaKey()
	if err != nil {
		ln.Close()
		return fmt.Errorf("rsa key for caching_sha2_password: %w", err)
	}
	s.gms = server.NewServerWithAuth(s.version, collation, s.cfg.AuthPlugin, key, s.cfg.TLS, &server.DefaultAuthenticationProvider{})
	if err := s.gms.SetCapability(gm.CLIENT_LOCAL_FILES); err != nil {
		ln.Close()
		return err
	}
	s.ln = ln
	close(s.ready)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for _, sess := range s.sessions {
			sess.shutdown()
		}
		s.mu.Unlock()
	})
	s.log.Info().Str("listen", ln.Addr().String()).Str("backend", s.cfg.Backend).Str("version", s.version).Msg("mysql front end listening")
	var sessions sync.WaitGroup
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn().Err(err).Msg("accept")
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.stats.Connections.Add(1)
		if max := s.cfg.MaxClients; max > 0 && s.clients.Load() >= int64(max) {
			s.stats.Rejected.Add(1)
			sessions.Go(func() { refuse(conn, tooManyError()) })
			continue
		}
		s.clients.Add(1)
		sessions.Go(func() {
			defer s.clients.Add(-1)
			s.handle(ctx, conn)
		})
	}
	cancel()
	sessions.Wait()
	wg.Wait()
	return nil
}

// refuse answers a connection with an error instead of the handshake, as
// mysqld does past max_connections, and closes it.
func refuse(conn net.Conn, e *gm.MyError) {
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	w := newWire(conn)
	if w.writePacket(errPacket(e.Code, e.State, e.Message)) == nil {
		_ = w.flush()
	}
}

// handle runs one client connection: handshake, then the session.
func (s *Server) handle(ctx context.Context, conn net.Conn) {
	key, _ := rsaKey() // made before listening
	shim := &shimConn{Conn: conn, key: key}
	sess := newSession(s, ctx)
	auth := &authHandler{srv: s, shim: shim, sess: sess}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	sc, err := s.newConn(shim, auth, sess)
	if err != nil {
		sess.cancel()
		if sess.be != nil {
			sess.be.close()
		}
		s.log.Debug().Err(err).Str("remote", conn.RemoteAddr().String()).Msg("handshake failed")
		return
	}
	shim.off.Store(true)
	_ = sc.Conn.Conn.SetDeadline(time.Time{})
	sess.attach(sc, shim)
	s.mu.Lock()
	if ctx.Err() != nil {
		s.mu.Unlock()
		sess.shutdown()
		sess.cleanup()
		return
	}
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	sess.serve()
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
}

// newConn runs go-mysql's handshake. go-mysql panics on some handshakes
// (a password sent for an account without one, after an auth switch):
// that is a failed login, not a crashed node.
func (s *Server) newConn(conn net.Conn, auth *authHandler, sess *session) (sc *server.Conn, err error) {
	defer func() {
		if r := recover(); r != nil {
			conn.Close()
			s.stats.AuthFailures.Add(1)
			err = fmt.Errorf("handshake: %v", r)
		}
	}()
	return s.gms.NewCustomizedConn(conn, auth, sess)
}

// sessionByID finds a client session by the connection id its handshake
// gave it.
func (s *Server) sessionByID(id uint32) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// killBackendQuery stops the statement a backend session runs, from a
// connection of its own, as a client's Ctrl-C does.
func (s *Server) killBackendQuery(threadID uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*s.cfg.DialTimeout)
	defer cancel()
	b, err := dialBackend(ctx, dialSpec{addr: s.cfg.Backend, user: s.cfg.BackendUser, password: s.cfg.BackendPassword,
		tls: s.cfg.BackendTLS, collation: 45, timeout: s.cfg.DialTimeout})
	if err != nil {
		s.log.Warn().Err(err).Uint32("thread", threadID).Msg("cannot kill an abandoned backend query")
		return
	}
	defer b.close()
	_ = b.conn.SetDeadline(time.Now().Add(5 * s.cfg.DialTimeout))
	if _, _, err := b.simpleQuery(fmt.Sprintf("KILL QUERY %d", threadID)); err != nil {
		if me, ok := myError(err); !ok || me.Code != gm.ER_NO_SUCH_THREAD {
			s.log.Warn().Err(err).Uint32("thread", threadID).Msg("cannot kill an abandoned backend query")
		}
	}
}

// Routing.

// routeState holds the current route and wakes whoever waits for a change.
type routeState struct {
	mu      sync.Mutex
	cur     Route
	set     bool
	changed chan struct{}
}

func (r *routeState) get() (Route, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.cur, r.changed
}

// SetRoute changes where sessions go. An idle session moves to the new
// target before its next statement, carrying its session state over; a
// session with a transaction open (or tables locked, or a cursor open) on
// a node that no longer leads has its backend connection closed now, so
// that its locks do not block the node's applier, and gets an error at
// its next statement.
func (s *Server) SetRoute(rt Route) {
	s.route.mu.Lock()
	old := s.route.cur
	if s.route.set && old == rt {
		s.route.mu.Unlock()
		return
	}
	s.route.cur, s.route.set = rt, true
	if s.route.changed != nil {
		close(s.route.changed)
	}
	s.route.changed = make(chan struct{})
	s.route.mu.Unlock()
	s.log.Info().Stringer("mode", rt.Mode).Str("leader", rt.Leader).Msg("route changed")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		sess.routeChanged(rt)
	}
}

// Route is the current route (RouteLocal until SetRoute is called).
func (s *Server) Route() Route {
	rt, _ := s.route.get()
	return rt
}

// Authentication.

// authHandler gives go-mysql the credentials of one connection. A client
// may answer the handshake with either supported plugin; the credential
// then uses the plugin the client chose, so that it is not asked to
// switch (the shim reads the choice from the handshake response).
type authHandler struct {
	srv  *Server
	shim *shimConn
	sess *session
}

func (a *authHandler) GetCredential(user string) (server.Credential, bool, error) {
	plugin := a.srv.cfg.AuthPlugin
	chosen, authEmpty, known := a.shim.response()
	pw, ok := a.srv.accounts[user]
	switch {
	case chosen != gm.AUTH_NATIVE_PASSWORD && chosen != gm.AUTH_CACHING_SHA2_PASSWORD:
	case known && authEmpty && chosen != plugin && pw != "":
		// A client that prefers another plugin than the one proposed
		// answers it with no data (libmariadb does), waiting to be asked
		// again with a scramble: a mismatch makes go-mysql ask, with the
		// proposed plugin.
	default:
		plugin = chosen
	}
	switch {
	case !ok:
		// An unknown user gets "access denied" like a wrong password
		// (mysqld does not say which), through a password no one has.
		pw = noPassword()
	case pw == "" && known && !authEmpty:
		// A password for an account without one is wrong. go-mysql
		// would fail on it (it hashes the empty password and panics), so
		// it is refused through a password no one has.
		pw = noPassword()
	}
	return server.Credential{Passwords: []string{pw}, AuthPluginName: plugin}, true, nil
}

// noPassword is a password no client knows.
func noPassword() string { return hex.EncodeToString(gm.RandomBuf(32)) }

// OnAuthSuccess opens the session's backend before the client gets its
// OK, so that a default database that does not exist fails the
// handshake, as it does with mysqld.
func (a *authHandler) OnAuthSuccess(c *server.Conn) error {
	return a.sess.start(c)
}

func (a *authHandler) OnAuthFailure(c *server.Conn, err error) {
	a.srv.stats.AuthFailures.Add(1)
	a.srv.log.Info().Str("user", c.GetUser()).Str("remote", c.RemoteAddr().String()).Err(err).Msg("client authentication failed")
}

// parseHandshakeResponse returns the auth plugin a HandshakeResponse41
// names and whether its auth data is empty; ok is false for an SSLRequest
// (32 bytes) or a packet it cannot read.
func parseHandshakeResponse(p []byte) (plugin string, authEmpty, ok bool) {
	if len(p) <= 32 {
		return "", false, false
	}
	caps := binary.LittleEndian.Uint32(p)
	pos := 32
	cstr := func() (string, bool) {
		for i := pos; i < len(p); i++ {
			if p[i] == 0 {
				s := string(p[pos:i])
				pos = i + 1
				return s, true
			}
		}
		return "", false
	}
	if _, ok := cstr(); !ok { // user
		return "", false, false
	}
	var auth []byte
	switch {
	case caps&gm.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		a, n, good := lenencStr(p[pos:])
		if !good {
			return "", false, false
		}
		auth = a
		pos += n
	case caps&gm.CLIENT_SECURE_CONNECTION != 0:
		if pos >= len(p) || pos+1+int(p[pos]) > len(p) {
			return "", false, false
		}
		auth = p[pos+1 : pos+1+int(p[pos])]
		pos += 1 + int(p[pos])
	default:
		start := pos
		if _, ok := cstr(); !ok {
			return "", false, false
		}
		auth = p[start : pos-1]
	}
	authEmpty = len(auth) == 0 || (len(auth) == 1 && auth[0] == 0)
	if caps&gm.CLIENT_CONNECT_WITH_DB != 0 {
		if _, ok := cstr(); !ok {
			return "", false, false
		}
	}
	if caps&gm.CLIENT_PLUGIN_AUTH == 0 {
		return gm.AUTH_NATIVE_PASSWORD, authEmpty, true
	}
	name, ok := cstr()
	if !ok {
		return "", false, false
	}
	return name, authEmpty, true
}
