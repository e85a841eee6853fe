package apply

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// Errors returned by the Applier, wrapped with the offset they concern;
// test with errors.Is.
var (
	// ErrGap means an entry's offset is not the one after the last entry
	// applied. Nothing in the batch is applied.
	ErrGap = errors.New("apply: offset gap")
	// ErrEpochRegression means an entry's epoch is below the epoch already
	// applied. Nothing in the batch is applied.
	ErrEpochRegression = errors.New("apply: epoch regression")
	// ErrDiverged means the store applied, at an offset, an entry of
	// another epoch than the sender's: only a full resync repairs it.
	ErrDiverged = errors.New("apply: diverged from the sender's log")
	// ErrPayload means an entry's payload does not decode or render.
	ErrPayload = errors.New("apply: bad payload")
	// ErrRowMismatch means an UPDATE or DELETE found no row to change, or
	// an INSERT wrote fewer rows than the entry holds: the store does not
	// hold the data the source changed. The transaction was rolled back.
	ErrRowMismatch = errors.New("apply: row not found on the follower")
	// ErrStatement means the store refused a statement of an entry (its
	// MySQL error is wrapped too). The transaction was rolled back.
	ErrStatement = errors.New("apply: statement failed")
	// ErrPositionMoved means the position table no longer holds the
	// position the Applier last read: something else wrote it.
	ErrPositionMoved = errors.New("apply: position moved under the applier")
	// ErrResyncIncomplete means the store was left half-copied by a full
	// resync (state "resync" in the position table): copy it again.
	ErrResyncIncomplete = errors.New("apply: store is in an unfinished full resync")
	// ErrNoBinlog means the follower's backend has log_bin=OFF: the
	// applier needs it to tell whether a DDL ran before a crash, and the
	// node needs it to become a leader.
	ErrNoBinlog = errors.New("apply: log_bin is OFF on the follower's backend, set log_bin=ON")
)

// DefaultDDLDomain is the GTID domain the Applier logs DDL in on a
// follower's backend (see doc.go). The capture ignores it.
const DefaultDDLDomain = 7380

// Options configures an Applier. The zero value is usable.
type Options struct {
	// User and Password log in to the follower's backend. The user needs
	// every privilege the entries' statements need, plus SUPER (or BINLOG
	// ADMIN and REPLICATION MASTER ADMIN) to set sql_log_bin and
	// gtid_domain_id.
	User     string
	Password string
	// TLS, when set, is used for the connection.
	TLS *tls.Config
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration
	// MaxTxEntries and MaxTxBytes bound how many entries, and how many
	// payload bytes, go into one backend transaction. Defaults 256 entries
	// and 4 MiB; a larger entry still goes, alone.
	MaxTxEntries int
	MaxTxBytes   int
	// MaxChunk bounds the SQL sent in one round trip. Default 1 MiB.
	MaxChunk int
	// DDLDomain is the gtid_domain_id DDL is logged in. Default
	// DefaultDDLDomain.
	DDLDomain uint32
}

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxTxEntries <= 0 {
		o.MaxTxEntries = 256
	}
	if o.MaxTxBytes <= 0 {
		o.MaxTxBytes = 4 << 20
	}
	if o.MaxChunk <= 0 {
		o.MaxChunk = 1 << 20
	}
	if o.DDLDomain == 0 {
		o.DDLDomain = DefaultDDLDomain
	}
	return o
}

// Stats counts what an Applier did.
type Stats struct {
	Entries      uint64
	Transactions uint64
	DDL          uint64
	// DDLRecovered counts DDL entries found to have run before a crash
	// that kept their position from being recorded.
	DDLRecovered uint64
}

// Applier applies backlog entries to a follower's MariaDB, exactly once
// across crashes: every transaction it commits writes the entries' rows and
// the position table together, and it always continues from the position
// read back from the store. It implements fanout.Applier.
//
// It owns one connection. When that fails, the call that saw it returns
// the error, and the next call reconnects and rereads the position;
// retrying the same entries is safe, since entries at or below the stored
// position are skipped.
//
// An Applier is safe for concurrent use; calls are serialized.
type Applier struct {
	addr   string
	opts   Options
	logger zerolog.Logger

	mu    sync.Mutex
	db    *sql.DB
	conn  *sql.Conn
	env   *env
	pos   backlog.Position
	known bool
	// ddlRan is the offset of a DDL entry whose statement has run but
	// whose position is not recorded, and ddlEpoch its epoch (0: none).
	ddlRan   uint64
	ddlEpoch uint64
	stats    Stats

	// Test hooks: called around the DDL statement of the entry at an
	// offset; an error stops there as a crash would.
	beforeDDL, afterDDL func(offset uint64) error
}

// NewApplier returns an Applier for the backend at addr (host:port). It
// connects on first use.
func NewApplier(addr string, opts Options, logger zerolog.Logger) *Applier {
	return &Applier{addr: addr, opts: opts.withDefaults(), logger: logger}
}

// Close closes the connection. The Applier reconnects if used again.
func (a *Applier) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.drop()
	if a.db != nil {
		err := a.db.Close()
		a.db = nil
		return err
	}
	return nil
}

// Stats returns the counters.
func (a *Applier) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Position reads the position table: the last entry applied to the
// store, or the zero Position if none has been.
func (a *Applier) Position(ctx context.Context) (backlog.Position, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return backlog.Position{}, err
	}
	if err := a.load(ctx); err != nil {
		return backlog.Position{}, err
	}
	return a.pos, nil
}

// SetPosition records pos without applying anything, as after a full
// resync that copied a source's data as of pos, or when a leader steps
// down with every write of its store in the backlog up to pos. It clears
// the resync state and the leading mark.
func (a *Applier) SetPosition(ctx context.Context, pos backlog.Position) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return err
	}
	if err := setPosition(ctx, a.conn, pos); err != nil {
		return a.fail(err)
	}
	a.pos, a.known, a.ddlRan = pos, true, 0
	return nil
}

func setPosition(ctx context.Context, conn *sql.Conn, pos backlog.Position) error {
	_, err := conn.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET epoch=%d, `offset`=%d, state='', ddl_epoch=0, ddl_offset=0, ddl_binlog='', "+
		"leading_epoch=0, leading_start='' WHERE id=1",
		posTable, pos.Epoch, pos.Offset))
	if err != nil {
		return fmt.Errorf("set position: %w", err)
	}
	return nil
}

// Leading is the mark a leading node keeps in its store (MarkLeading).
type Leading struct {
	// Epoch is the epoch the node leads in; 0 means the mark is not set.
	Epoch uint64
	// Start is the GTID position its capture started from: the backend's
	// @@gtid_binlog_pos when it began to lead.
	Start string
}

// MarkLeading records in the store that its node leads in epoch, with a
// capture that started at GTID position start. A node that finds the mark
// at start (ReadLeading) crashed while leading: its store may hold
// transactions its backlog never logged (rowlog.Ahead tells), so it must
// not follow another leader without a full resync; and if it leads again
// it knows where its capture began. SetPosition clears the mark, as after
// a clean step-down.
func (a *Applier) MarkLeading(ctx context.Context, epoch uint64, start string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return err
	}
	_, err := a.conn.ExecContext(ctx, "UPDATE "+posTable+" SET leading_epoch=?, leading_start=? WHERE id=1", epoch, start)
	if err != nil {
		return a.fail(fmt.Errorf("mark leading: %w", err))
	}
	return nil
}

// ReadLeading reads the mark MarkLeading left, if any.
func (a *Applier) ReadLeading(ctx context.Context) (Leading, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return Leading{}, err
	}
	var l Leading
	err := a.conn.QueryRowContext(ctx, "SELECT leading_epoch, leading_start FROM "+posTable+" WHERE id=1").Scan(&l.Epoch, &l.Start)
	if err != nil {
		return Leading{}, a.fail(fmt.Errorf("read leading mark: %w", err))
	}
	return l, nil
}

// item is an entry to apply, decoded.
type item struct {
	pos backlog.Position
	txn *rowlog.Txn
	n   int // payload bytes
}

// Apply applies entries in order and returns the store's position
// afterwards.
//
// Entries at or below the stored position are skipped, so replaying a
// batch is a no-op. The rest must follow on: the first at the stored
// offset + 1 and each at the one before + 1 (else ErrGap), with epochs
// never below the stored one nor the entry before (else
// ErrEpochRegression); an entry at the stored offset with another epoch is
// ErrDiverged. These checks, and decoding, come first: a batch that fails
// them is refused whole.
//
// Consecutive transaction entries go into one backend transaction (up to
// MaxTxEntries/MaxTxBytes) with the position update; a DDL entry is
// applied on its own, as described in doc.go. On error the returned
// position is the last the store is known to have reached.
func (a *Applier) Apply(ctx context.Context, entries []backlog.Entry) (backlog.Position, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return backlog.Position{}, err
	}
	if !a.known {
		if err := a.load(ctx); err != nil {
			return backlog.Position{}, err
		}
	}
	items, err := a.plan(entries)
	if err != nil {
		return a.pos, err
	}
	for i := 0; i < len(items); {
		if items[i].txn.Kind == rowlog.KindDDL {
			if err := a.applyDDL(ctx, items[i]); err != nil {
				return a.pos, err
			}
			i++
			continue
		}
		j, size := i, 0
		for j < len(items) && items[j].txn.Kind == rowlog.KindTx && j-i < a.opts.MaxTxEntries &&
			(j == i || size+items[j].n <= a.opts.MaxTxBytes) {
			size += items[j].n
			j++
		}
		if err := a.applyTx(ctx, items[i:j]); err != nil {
			return a.pos, err
		}
		i = j
	}
	return a.pos, nil
}

// plan checks entries against the position and decodes those to apply.
func (a *Applier) plan(entries []backlog.Entry) ([]item, error) {
	last := a.pos
	var items []item
	for _, e := range entries {
		if len(items) == 0 && e.Offset <= a.pos.Offset {
			if e.Offset == a.pos.Offset && e.Epoch != a.pos.Epoch {
				return nil, fmt.Errorf("apply: offset %d: epoch %d, store applied epoch %d: %w", e.Offset, e.Epoch, a.pos.Epoch, ErrDiverged)
			}
			continue
		}
		if e.Offset != last.Offset+1 {
			return nil, fmt.Errorf("apply: offset %d after %d: %w", e.Offset, last.Offset, ErrGap)
		}
		if e.Epoch < last.Epoch {
			return nil, fmt.Errorf("apply: offset %d: epoch %d after %d: %w", e.Offset, e.Epoch, last.Epoch, ErrEpochRegression)
		}
		t, err := rowlog.Decode(e.Payload)
		if err != nil {
			return nil, fmt.Errorf("apply: offset %d: %w: %v", e.Offset, ErrPayload, err)
		}
		last = backlog.Position{Epoch: e.Epoch, Offset: e.Offset}
		items = append(items, item{pos: last, txn: t, n: len(e.Payload)})
	}
	return items, nil
}

// applyTx applies transaction entries in one backend transaction.
func (a *Applier) applyTx(ctx context.Context, items []item) error {
	w := &txWriter{env: a.env, maxChunk: a.opts.MaxChunk}
	to := items[len(items)-1].pos
	w.begin(a.pos, to)
	for _, it := range items {
		w.offset = it.pos.Offset
		if err := w.changes(it.txn, 0); err != nil {
			return fmt.Errorf("apply: offset %d: %w: %v", it.pos.Offset, ErrPayload, err)
		}
	}
	if err := a.runTx(ctx, w, to); err != nil {
		return err
	}
	a.stats.Transactions++
	a.stats.Entries += uint64(len(items))
	return nil
}

// runTx sends a transaction built by w (begun with w.begin) with its
// COMMIT, in one round trip unless it is larger than MaxChunk; the store
// is then at to. The checks inside stop it before COMMIT on a mismatch.
func (a *Applier) runTx(ctx context.Context, w *txWriter, to backlog.Position) error {
	if w.dirty {
		w.stmt([]byte(baselineTxSQL), noCheck)
		w.dirty = false
	}
	w.stmt([]byte("COMMIT"), noCheck)
	w.flush()
	for i, c := range w.chunks {
		counts, err := a.exec(ctx, c.sql)
		if err != nil {
			// Stopped before COMMIT (a server error stops a multi-statement
			// query), or lost with the connection: the position table
			// says which.
			a.known = false
			return a.abort(ctx, fmt.Errorf("apply: offsets %d-%d: %w", a.pos.Offset+1, to.Offset, err))
		}
		// The checks ran on the server; this only catches a result count
		// that does not add up, which would mean the statements were not
		// the ones built.
		if len(counts) != len(c.expect) && !c.loose {
			a.known = false
			err := fmt.Errorf("apply: offsets %d-%d: %d results for %d statements", a.pos.Offset+1, to.Offset, len(counts), len(c.expect))
			if i == len(w.chunks)-1 {
				return err // committed: only rereading the position helps
			}
			return a.abort(ctx, err)
		}
	}
	a.pos = to
	a.ddlRan = 0
	return nil
}

// abort rolls the open transaction back and returns err.
func (a *Applier) abort(ctx context.Context, err error) error {
	if a.conn != nil {
		if _, rerr := a.exec(ctx, []byte("ROLLBACK")); rerr != nil {
			a.drop()
		}
	}
	return err
}

// applyDDL applies a DDL entry. DDL commits on its own, so it cannot share
// a transaction with the position. Instead:
//
//  1. the entry is recorded as pending in the position table, with the
//     GTID the DDL domain has in @@gtid_binlog_pos (autocommit);
//  2. the statement runs with sql_log_bin=1 in the DDL domain, so that
//     MariaDB writes it to the follower's binlog if and only if it took
//     effect (DDL and binlog are crash-consistent since 10.6);
//  3. the rest of the entry (the rows of a CREATE … SELECT) and the
//     position go in one transaction.
//
// After a crash between 2 and 3, load finds the entry pending and the DDL
// domain's GTID moved on: the statement ran, and only step 3 is left. If
// the GTID did not move, the statement did not run and is run again.
func (a *Applier) applyDDL(ctx context.Context, it item) error {
	stmt := it.txn.Changes[0].Stmt
	if a.ddlRan == it.pos.Offset {
		if a.ddlEpoch != it.pos.Epoch {
			return fmt.Errorf("apply: offset %d: DDL of epoch %d ran, entry has epoch %d: %w", it.pos.Offset, a.ddlEpoch, it.pos.Epoch, ErrDiverged)
		}
		a.logger.Info().Uint64("offset", it.pos.Offset).Msg("DDL ran before a crash; recording its position")
		a.stats.DDLRecovered++
	} else {
		if err := a.runDDL(ctx, it, stmt); err != nil {
			return err
		}
	}
	w := &txWriter{env: a.env, maxChunk: a.opts.MaxChunk, offset: it.pos.Offset}
	w.begin(a.pos, it.pos)
	if err := w.changes(it.txn, 1); err != nil {
		return fmt.Errorf("apply: offset %d: %w: %v", it.pos.Offset, ErrPayload, err)
	}
	if err := a.runTx(ctx, w, it.pos); err != nil {
		return err
	}
	a.stats.DDL++
	a.stats.Entries++
	return nil
}

// runDDL runs steps 1 and 2 of applyDDL.
func (a *Applier) runDDL(ctx context.Context, it item, stmt *rowlog.Statement) error {
	set, use, err := sessionSQL(a.env, &stmt.Session)
	if err != nil {
		return fmt.Errorf("apply: offset %d: %w: %v", it.pos.Offset, ErrPayload, err)
	}
	mark := fmt.Sprintf("UPDATE %s SET ddl_epoch=%d, ddl_offset=%d, ddl_binlog=@@GLOBAL.gtid_binlog_pos WHERE id=1 AND epoch=%d AND `offset`=%d AND state=''",
		posTable, it.pos.Epoch, it.pos.Offset, a.pos.Epoch, a.pos.Offset)
	counts, err := a.exec(ctx, []byte(mark))
	if err != nil {
		return fmt.Errorf("apply: offset %d: mark DDL: %w", it.pos.Offset, err)
	}
	if len(counts) != 1 || counts[0] != 1 {
		a.known = false
		return fmt.Errorf("apply: store position is not %v: %w", a.pos, ErrPositionMoved)
	}
	if a.beforeDDL != nil {
		if err := a.beforeDDL(it.pos.Offset); err != nil {
			a.drop()
			return err
		}
	}
	// From here the session differs from the baseline; restore it however
	// this ends.
	defer func() {
		if a.conn != nil {
			if _, err := a.exec(ctx, []byte(baselineSQL)); err != nil {
				a.drop()
			}
		}
	}()
	if _, err := a.exec(ctx, []byte(fmt.Sprintf("SET SESSION sql_log_bin=1, gtid_domain_id=%d", a.opts.DDLDomain))); err != nil {
		return fmt.Errorf("apply: offset %d: %w", it.pos.Offset, err)
	}
	if use != "" {
		if _, err := a.exec(ctx, []byte(use)); err != nil {
			var me *mysql.MySQLError
			if !errors.As(err, &me) || me.Number != 1049 {
				return fmt.Errorf("apply: offset %d: %w", it.pos.Offset, err)
			}
			// The source's default database is gone here as it was there
			// (dropped earlier): the statement cannot depend on it, since
			// it would have failed on the source.
			if _, err := a.exec(ctx, []byte("USE `"+Schema+"`")); err != nil {
				return fmt.Errorf("apply: offset %d: %w", it.pos.Offset, err)
			}
		}
	}
	if set != "" {
		if _, err := a.exec(ctx, []byte(set)); err != nil {
			return fmt.Errorf("apply: offset %d: session: %w", it.pos.Offset, err)
		}
	}
	if _, err := a.exec(ctx, []byte(stmt.SQL)); err != nil {
		return fmt.Errorf("apply: offset %d: %w: %.200s", it.pos.Offset, err, stmt.SQL)
	}
	a.ddlRan, a.ddlEpoch = it.pos.Offset, it.pos.Epoch
	if a.afterDDL != nil {
		if err := a.afterDDL(it.pos.Offset); err != nil {
			a.drop()
			return err
		}
	}
	// A DDL may add or drop generated columns.
	gen, err := loadGenerated(ctx, a.conn)
	if err != nil {
		return a.fail(err)
	}
	a.env.generated = gen
	return nil
}

// load reads the position table and settles a pending DDL.
func (a *Applier) load(ctx context.Context) error {
	var epoch, offset, ddlEpoch, ddlOffset uint64
	var state, ddlBinlog, binlogNow string
	err := a.conn.QueryRowContext(ctx, "SELECT epoch, `offset`, state, ddl_epoch, ddl_offset, ddl_binlog, @@GLOBAL.gtid_binlog_pos FROM "+posTable+" WHERE id=1").
		Scan(&epoch, &offset, &state, &ddlEpoch, &ddlOffset, &ddlBinlog, &binlogNow)
	if err != nil {
		return a.fail(fmt.Errorf("read position: %w", err))
	}
	if state != "" {
		return fmt.Errorf("apply: position table state %q: %w", state, ErrResyncIncomplete)
	}
	a.pos = backlog.Position{Epoch: epoch, Offset: offset}
	a.known = true
	a.ddlRan, a.ddlEpoch = 0, 0
	if ddlOffset == offset+1 && domainGTID(binlogNow, a.opts.DDLDomain) != domainGTID(ddlBinlog, a.opts.DDLDomain) {
		a.ddlRan, a.ddlEpoch = ddlOffset, ddlEpoch
	}
	return nil
}

// connect opens the connection and sets the session up, if needed.
func (a *Applier) connect(ctx context.Context) error {
	if a.conn != nil {
		return nil
	}
	if a.db == nil {
		cfg := mysql.NewConfig()
		cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "tcp", a.addr, a.opts.User, a.opts.Password
		cfg.Timeout = a.opts.DialTimeout
		cfg.TLS = a.opts.TLS
		cfg.MultiStatements = true
		// Matched rows, not changed rows: an UPDATE that finds its row but
		// changes nothing still proves the row is there.
		cfg.ClientFoundRows = true
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		a.db = sql.OpenDB(connector)
		a.db.SetMaxIdleConns(1)
	}
	conn, err := a.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("apply: connect %s: %w", a.addr, err)
	}
	a.conn, a.known = conn, false
	if err := a.setup(ctx); err != nil {
		a.drop()
		return fmt.Errorf("apply: connect %s: %w", a.addr, err)
	}
	return nil
}

func (a *Applier) setup(ctx context.Context) error {
	var logBin int
	if err := a.conn.QueryRowContext(ctx, "SELECT @@GLOBAL.log_bin").Scan(&logBin); err != nil {
		return err
	}
	if logBin == 0 {
		return ErrNoBinlog
	}
	if _, err := a.conn.ExecContext(ctx, baselineSQL); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	if err := ensureSchema(ctx, a.conn); err != nil {
		return err
	}
	e, err := loadEnv(ctx, a.conn)
	if err != nil {
		return err
	}
	a.env = e
	return nil
}

// exec runs SQL (one or several statements) and returns each statement's
// affected-row count. A server error leaves the connection usable; any
// other drops it.
func (a *Applier) exec(ctx context.Context, q []byte) ([]int64, error) {
	if a.conn == nil {
		return nil, errors.New("apply: not connected")
	}
	var counts []int64
	err := a.conn.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return errors.New("driver cannot exec")
		}
		res, err := ex.ExecContext(ctx, string(q), nil)
		if err != nil {
			return err
		}
		if r, ok := res.(mysql.Result); ok {
			counts = r.AllRowsAffected()
		}
		return nil
	})
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			switch {
			case me.Number == positionErrno && strings.HasPrefix(me.Message, signalPrefix):
				return nil, fmt.Errorf("%w: %w", ErrPositionMoved, err)
			case me.Number == rowMismatchErrno || me.Number == 1062:
				return nil, fmt.Errorf("%w: %w", ErrRowMismatch, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrStatement, err)
		}
		return nil, a.fail(err)
	}
	return counts, nil
}

// fail drops the connection after an I/O error, so the next call
// reconnects and rereads the position, and returns err.
func (a *Applier) fail(err error) error {
	a.drop()
	return err
}

func (a *Applier) drop() {
	if a.conn != nil {
		// Raw's driver connection may be broken; Close returns it to the
		// pool, which discards a bad one.
		a.conn.Close()
	}
	a.conn, a.known = nil, false
}
