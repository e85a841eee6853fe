package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gsql "github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/test/harness"
)

// fakeLog is the node core for tests: admission answers what the test
// says, and offsets commit when the test says (or at once with auto).
type fakeLog struct {
	mu        sync.Mutex
	admitErr  error
	readErr   error
	auto      bool
	committed uint64
	timeout   time.Duration // WaitCommitted gives ErrAckTimeout after it
	changed   chan struct{}
	admits    int
	waited    []uint64
	readables int
}

func newFakeLog(auto bool) *fakeLog {
	return &fakeLog{auto: auto, changed: make(chan struct{})}
}

func (f *fakeLog) Admit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.admits++
	return f.admitErr
}

func (f *fakeLog) AdmitRead() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readErr
}

func (f *fakeLog) setAdmitErr(err error) {
	f.mu.Lock()
	f.admitErr = err
	f.mu.Unlock()
}

func (f *fakeLog) commit(off uint64) {
	f.mu.Lock()
	f.committed = max(f.committed, off)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeLog) WaitCommitted(ctx context.Context, off uint64) error {
	f.mu.Lock()
	f.waited = append(f.waited, off)
	timeout := f.timeout
	f.mu.Unlock()
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	for {
		f.mu.Lock()
		done := f.auto || f.committed >= off
		ch := f.changed
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tc:
			return ackpolicy.ErrAckTimeout
		case <-ch:
		}
	}
}

func (f *fakeLog) WaitReadable(ctx context.Context) error {
	f.mu.Lock()
	f.readables++
	f.mu.Unlock()
	return nil
}

func (f *fakeLog) Status() Status {
	return Status{Node: "n1", Group: "g", Protocol: "mysql", Role: "leader", State: "streaming", Epoch: 3,
		Leader: "n1", LeaderAddr: "127.0.0.1:1", Offset: 10, Committed: 9, Applied: 10, ISR: []string{"n1", "n2"},
		AckPolicy: "one", Followers: []FollowerStatus{{Node: "n2", Acked: 9, LagEntries: 1, InSync: true, Connected: true}}}
}

func (f *fakeLog) waitedOffsets() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.waited...)
}

// binlogOffsets is a real but minimal GTIDOffsets: it polls the backend's
// gtid_binlog_pos until the GTID is in the binary log, and uses the GTID's
// sequence number as the offset (one domain, one server: offsets follow
// commit order). It records every GTID asked for.
type binlogOffsets struct {
	db   *sql.DB
	mu   sync.Mutex
	seen []string
	// gate, when set, is waited on before answering (the test decides
	// when the capture "has" the transaction).
	gate chan struct{}
}

func (b *binlogOffsets) OffsetOf(ctx context.Context, gtid string) (uint64, error) {
	b.mu.Lock()
	b.seen = append(b.seen, gtid)
	gate := b.gate
	b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	parts := strings.Split(gtid, "-")
	if len(parts) != 3 {
		return 0, fmt.Errorf("bad gtid %q", gtid)
	}
	seq, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad gtid %q", gtid)
	}
	for {
		var pos string
		if err := b.db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
			return 0, err
		}
		for _, g := range strings.Split(pos, ",") {
			p := strings.Split(g, "-")
			if len(p) == 3 && p[0] == parts[0] {
				if n, _ := strconv.ParseUint(p[2], 10, 64); n >= seq {
					return seq, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (b *binlogOffsets) gtids() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen...)
}

// proxy is a Server under test in front of a real mariadbd.
type proxy struct {
	srv     *Server
	addr    string
	log     *fakeLog
	offsets *binlogOffsets
	m       *harness.MariaDB
}

// The proxy's own account in tests; the backend's is harness.MariaDB's.
const (
	proxyUser     = "app"
	proxyPassword = "app-secret"
)

// startProxy starts a Server in front of m with a fake core and the
// polling GTIDOffsets. edit adjusts the config.
func startProxy(t testing.TB, m *harness.MariaDB, edit func(*Config)) *proxy {
	t.Helper()
	p := &proxy{m: m, log: newFakeLog(true)}
	p.offsets = &binlogOffsets{db: m.DB()}
	cfg := Config{
		Listen:          "127.0.0.1:0",
		Backend:         m.Addr,
		BackendUser:     m.User,
		BackendPassword: m.Password,
		User:            proxyUser,
		Password:        proxyPassword,
		Users:           map[string]string{"other": "other-pw", "nopw": ""},
		FailoverWait:    500 * time.Millisecond,
		Logger:          zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := NewServer(cfg, p.log, p.offsets)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	p.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("server: %v", err)
	}
	p.addr = srv.Addr().String()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not stop")
		}
	})
	return p
}

// config is a go-sql-driver config for the proxy.
func (p *proxy) config(db string) *gsql.Config {
	c := gsql.NewConfig()
	c.User, c.Passwd = proxyUser, proxyPassword
	c.Net, c.Addr, c.DBName = "tcp", p.addr, db
	c.Timeout = 5 * time.Second
	return c
}

// db opens a pool through the proxy.
func (p *proxy) db(t testing.TB, db string, edit func(*gsql.Config)) *sql.DB {
	t.Helper()
	c := p.config(db)
	if edit != nil {
		edit(c)
	}
	conn, err := gsql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	d := sql.OpenDB(conn)
	t.Cleanup(func() { d.Close() })
	return d
}

// mustExec runs statements and fails the test on an error.
func mustExec(t testing.TB, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// mysqlErr returns err's MySQL error, failing the test if it has none.
func mysqlErr(t testing.TB, err error) *gsql.MySQLError {
	t.Helper()
	var me *gsql.MySQLError
	if !errors.As(err, &me) {
		t.Fatalf("want a MySQL error, got %v", err)
	}
	return me
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
