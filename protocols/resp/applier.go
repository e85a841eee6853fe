package resp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/replicar/replicar/backlog"
)

// PositionKey is the key, in db 0 of a follower's Redis, that holds the
// position of the last entry applied to it, as "<epoch>:<offset>" in
// decimal (backlog.Position.String). A missing key is the zero Position.
// The Applier writes it in the same MULTI … EXEC as the entries' data, so
// the store's data and its position never disagree.
const PositionKey = "__replicar:pos"

// Errors returned by the Applier. They are wrapped with the offset they
// concern; test for them with errors.Is.
var (
	// ErrGap means an entry's offset is not the one after the last entry
	// applied: the follower would skip writes. Nothing in the batch is
	// applied.
	ErrGap = errors.New("resp: offset gap")
	// ErrEpochRegression means an entry's epoch is lower than the epoch
	// already applied: it comes from a deposed leader. Nothing in the
	// batch is applied.
	ErrEpochRegression = errors.New("resp: epoch regression")
	// ErrDiverged means the entry at the stored position carries another
	// epoch than the one the store applied there: the store has an entry
	// the sender's log does not. Only a full resync repairs that.
	ErrDiverged = errors.New("resp: diverged from the sender's log")
	// ErrExecAbort means the store refused to queue a command of a
	// transaction (EXECABORT: unknown command, wrong arity, OOM,
	// MISCONF, READONLY, NOPERM …) or answered EXEC with something other
	// than an array. That transaction was not applied, nor any after it.
	ErrExecAbort = errors.New("resp: transaction not applied")
	// ErrBadMarker means PositionKey holds something that is not a
	// position, so the store's position is unknown.
	ErrBadMarker = errors.New("resp: bad position marker")
)

// ApplierOptions configures an Applier. The zero value is usable.
type ApplierOptions struct {
	// User and Password authenticate to the store (AUTH [user] password);
	// empty Password means no AUTH.
	User     string
	Password string
	// DialTimeout bounds connecting and the handshake. Default 5s.
	DialTimeout time.Duration
	// TLS, when set, makes the connection TLS (REPLICAR_BACKEND_TLS).
	TLS *tls.Config
	// MaxTxEntries and MaxTxBytes bound how many entries, and how many
	// payload bytes, go into one MULTI … EXEC. A bigger transaction costs
	// fewer round trips of bookkeeping but blocks the store longer.
	// Defaults 256 entries and 1 MiB; an entry larger than MaxTxBytes
	// still goes, alone.
	MaxTxEntries int
	MaxTxBytes   int
	// ClientName is given to CLIENT SETNAME. Default "replicar-applier".
	ClientName string
}

func (o ApplierOptions) withDefaults() ApplierOptions {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxTxEntries <= 0 {
		o.MaxTxEntries = 256
	}
	if o.MaxTxBytes <= 0 {
		o.MaxTxBytes = 1 << 20
	}
	if o.ClientName == "" {
		o.ClientName = "replicar-applier"
	}
	return o
}

// Applier applies backlog entries to a follower's Redis, exactly once
// across crashes: every transaction it sends writes the data of its
// entries and PositionKey together, and the position it continues from is
// always the one read back from the store, never only one remembered.
//
// It owns one connection. When that fails, the call that saw it returns
// the error and the next call reconnects and rereads the position, so the
// caller decides when to retry; retrying the same entries is safe, since
// entries at or below the stored position are skipped.
//
// An Applier is safe for concurrent use; calls are serialized.
type Applier struct {
	addr string
	opts ApplierOptions

	mu        sync.Mutex
	conn      net.Conn
	br        *bufio.Reader
	pos       backlog.Position // the store's marker; valid while known
	known     bool
	databases int // the store's "databases", 0 if unknown
	wbuf      []byte
	rbuf      []byte

	cmdErrors atomic.Uint64
}

// NewApplier returns an Applier for the Redis at addr (host:port). It
// connects on first use.
func NewApplier(addr string, opts ApplierOptions) *Applier {
	return &Applier{addr: addr, opts: opts.withDefaults()}
}

// Close closes the connection. The Applier reconnects if used again.
func (a *Applier) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return nil
	}
	err := a.conn.Close()
	a.drop()
	return err
}

// CommandErrors is the number of error replies from entries' commands
// inside EXEC that were accepted, such as a logged EVAL that failed after
// writing: the primary answered the same, and Redis runs the rest of the
// transaction regardless.
func (a *Applier) CommandErrors() uint64 { return a.cmdErrors.Load() }

// Position reads PositionKey from db 0: the last entry applied to the
// store, or the zero Position if none has been.
func (a *Applier) Position(ctx context.Context) (backlog.Position, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return backlog.Position{}, err
	}
	defer a.guardCtx(ctx)()
	pos, err := a.readMarker()
	if err != nil {
		return backlog.Position{}, a.fail(ctx, err)
	}
	return pos, nil
}

// Do sends one command on the applier's connection and returns the reply,
// for the node's own bookkeeping keys (see LeadingKey).
func (a *Applier) Do(ctx context.Context, args ...[]byte) (Value, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return Value{}, err
	}
	defer a.guardCtx(ctx)()
	a.wbuf = AppendCommand(a.wbuf[:0], args...)
	v, err := a.roundTrip()
	if err != nil {
		return Value{}, a.fail(ctx, err)
	}
	return v, nil
}

// LeadingKey is set in a store (db 0) while its node leads. A node that
// finds it at start crashed while leading: its store may hold writes its
// backlog never logged, so it must not follow without a full resync.
const LeadingKey = "__replicar:leading"

// SetPosition sets PositionKey to pos without applying anything, as after
// a full resync that copied the source's data as of pos.
func (a *Applier) SetPosition(ctx context.Context, pos backlog.Position) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return err
	}
	defer a.guardCtx(ctx)()
	a.wbuf = AppendCommand(a.wbuf[:0], []byte("SET"), []byte(PositionKey), []byte(pos.String()))
	v, err := a.roundTrip()
	if err != nil {
		return a.fail(ctx, fmt.Errorf("set position: %w", err))
	}
	if v.IsError() {
		a.known = false
		return fmt.Errorf("set position: %s", v.Str)
	}
	a.pos, a.known = pos, true
	return nil
}

// Apply applies entries in order and returns the store's position
// afterwards.
//
// Entries at or below the stored position are skipped, so replaying a
// batch is a no-op. The rest must follow on: the first at the stored
// offset + 1 and each at the one before + 1 (else ErrGap), with epochs
// never below the stored one nor the entry before (else
// ErrEpochRegression); these are checked first and a batch that fails them
// is refused whole. An entry at the stored offset with another epoch is
// ErrDiverged.
//
// The entries go in transactions of up to MaxTxEntries/MaxTxBytes, each
//
//	WATCH pos; EVAL <guard>; MULTI; (SELECT db; cmds…)…; SELECT 0; SET pos; EXEC
//
// and all transactions go in one write. The guard checks the marker is the
// one the transaction follows on from and, if not, touches it so that EXEC
// aborts: a transaction that fails makes every one after it in the
// pipeline fail too, instead of leaving a hole. The marker is set after
// the entries, with SELECT 0, because an entry may SWAPDB, MOVE or FLUSHALL
// it away.
//
// Errors from entries' commands inside EXEC are accepted (see
// CommandErrors); a refused transaction is ErrExecAbort. On error the
// returned position is the last the store is known to have reached.
func (a *Applier) Apply(ctx context.Context, entries []backlog.Entry) (backlog.Position, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.connect(ctx); err != nil {
		return backlog.Position{}, err
	}
	defer a.guardCtx(ctx)()
	fresh := !a.known
	if fresh {
		if err := a.refresh(ctx); err != nil {
			return backlog.Position{}, err
		}
	}
	txs, err := a.plan(entries)
	if err != nil && !fresh {
		// Refuse on the store's word, not on a remembered position that
		// something else (SetPosition from another Applier, an operator)
		// may have moved.
		if err := a.refresh(ctx); err != nil {
			return backlog.Position{}, err
		}
		txs, err = a.plan(entries)
	}
	start := a.pos
	if err != nil || len(txs) == 0 {
		return start, err
	}
	a.wbuf = a.wbuf[:0]
	for i := range txs {
		a.wbuf = txs[i].append(a.wbuf)
	}
	if _, err := a.conn.Write(a.wbuf); err != nil {
		return start, a.fail(ctx, fmt.Errorf("apply: %w", err))
	}
	var first error
	for i := range txs {
		pos, err := a.readTx(&txs[i])
		if err != nil {
			var re applyReplyError
			if !errors.As(err, &re) {
				// The stream is broken or out of step: whether the
				// transactions in flight ran is unknown until the marker
				// is read again after reconnecting.
				return a.pos, a.fail(ctx, fmt.Errorf("apply: %w", err))
			}
			if first == nil {
				first = err
			}
			continue
		}
		if first != nil {
			// The guard should have stopped this one. It ran anyway (the
			// guard itself failed), so there is a hole before it. The
			// replies left unread put the stream out of step, so drop it.
			return pos, a.fail(ctx, fmt.Errorf("apply: offsets %d-%d applied after a failed transaction: %w (after %v)", txs[i].from, txs[i].to.Offset, ErrGap, first))
		}
		a.pos = pos
	}
	if first != nil {
		// Reread the marker next time rather than trust the bookkeeping
		// of a batch that went wrong.
		a.known = false
		return a.pos, fmt.Errorf("apply: %w", first)
	}
	return a.pos, nil
}

// refresh rereads the marker.
func (a *Applier) refresh(ctx context.Context) error {
	pos, err := a.readMarker()
	if err != nil {
		return a.fail(ctx, err)
	}
	a.pos, a.known = pos, true
	return nil
}

// applyTx is one planned MULTI … EXEC.
type applyTx struct {
	from    uint64           // first offset
	to      backlog.Position // the marker it sets
	expect  string           // the marker it follows on from
	body    []byte           // the queued commands
	queued  int              // how many commands body holds
	entries int              // how many entries it applies
	own     []int            // indexes of the applier's own commands in EXEC's reply
	bytes   int
	swaps   map[int]bool // dbs a SWAPDB moved, where a stale marker may now be
}

// guardScript lets the transaction after it run only if the marker is
// ARGV[1]: otherwise it rewrites the marker with its own value, which
// changes nothing but makes the WATCH before it abort EXEC.
const guardScript = `local v = redis.call('GET', KEYS[1]) or '0:0'
if v == ARGV[1] then return 1 end
redis.call('SET', KEYS[1], v)
return 0`

func (t *applyTx) append(dst []byte) []byte {
	dst = AppendCommand(dst, []byte("WATCH"), []byte(PositionKey))
	dst = AppendCommand(dst, []byte("EVAL"), []byte(guardScript), []byte("1"), []byte(PositionKey), []byte(t.expect))
	dst = AppendCommand(dst, []byte("MULTI"))
	dst = append(dst, t.body...)
	return AppendCommand(dst, []byte("EXEC"))
}

// queue adds one command to the transaction's body.
func (t *applyTx) queue(own bool, args ...[]byte) {
	if own {
		t.own = append(t.own, t.queued)
	}
	t.body = AppendCommand(t.body, args...)
	t.queued++
}

// finish queues the marker and the cleanup of stale markers.
func (t *applyTx) finish() {
	for db := range t.swaps {
		if db != 0 {
			t.queue(true, []byte("SELECT"), []byte(strconv.Itoa(db)))
			t.queue(true, []byte("DEL"), []byte(PositionKey))
		}
	}
	t.queue(true, []byte("SELECT"), []byte("0"))
	t.queue(true, []byte("SET"), []byte(PositionKey), []byte(t.to.String()))
}

// plan checks entries against the stored position and groups those to
// apply into transactions.
func (a *Applier) plan(entries []backlog.Entry) ([]applyTx, error) {
	last := a.pos
	var txs []applyTx
	var cur *applyTx
	for _, e := range entries {
		if cur == nil && e.Offset <= a.pos.Offset {
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
		p, err := DecodePayload(e.Payload)
		if err != nil {
			return nil, fmt.Errorf("apply: offset %d: %w", e.Offset, err)
		}
		if a.databases > 0 && p.DB >= a.databases {
			// SELECT would fail inside EXEC and the commands run in the
			// wrong database.
			return nil, fmt.Errorf("apply: offset %d: db %d, store has %d databases", e.Offset, p.DB, a.databases)
		}
		for _, c := range p.Cmds {
			if applierForbidden(c[0]) {
				return nil, fmt.Errorf("apply: offset %d: %s in an entry", e.Offset, c[0])
			}
		}
		if cur != nil && (cur.entries >= a.opts.MaxTxEntries || cur.bytes+len(e.Payload) > a.opts.MaxTxBytes) {
			cur.finish()
			cur = nil
		}
		if cur == nil {
			txs = append(txs, applyTx{from: e.Offset, expect: last.String()})
			cur = &txs[len(txs)-1]
		}
		cur.queue(true, []byte("SELECT"), []byte(strconv.Itoa(p.DB)))
		for _, c := range p.Cmds {
			cur.queue(false, c...)
			if len(c) == 3 && bytes.EqualFold(c[0], []byte("SWAPDB")) {
				for _, s := range c[1:] {
					if db, err := strconv.Atoi(string(s)); err == nil && db >= 0 {
						if cur.swaps == nil {
							cur.swaps = map[int]bool{}
						}
						cur.swaps[db] = true
					}
				}
			}
		}
		cur.bytes += len(e.Payload)
		cur.entries++
		last = backlog.Position{Epoch: e.Epoch, Offset: e.Offset}
		cur.to = last
	}
	if cur != nil {
		cur.finish()
	}
	return txs, nil
}

// applierForbidden reports whether name would break the applier's own
// transaction if an entry carried it.
func applierForbidden(name []byte) bool {
	for _, s := range [...]string{"MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"} {
		if bytes.EqualFold(name, []byte(s)) {
			return true
		}
	}
	return false
}

// applyReplyError is a transaction the store answered but did not apply; the
// connection is still in step.
type applyReplyError struct{ err error }

func (e applyReplyError) Error() string { return e.err.Error() }
func (e applyReplyError) Unwrap() error { return e.err }

// readTx reads the replies to one transaction and returns the marker it
// set. A applyReplyError means it was not applied but the stream is in step;
// any other error means the stream is not.
func (a *Applier) readTx(t *applyTx) (backlog.Position, error) {
	where := fmt.Sprintf("offsets %d-%d", t.from, t.to.Offset)
	if v, err := a.read(); err != nil {
		return backlog.Position{}, err
	} else if v.Kind != SimpleString {
		return backlog.Position{}, fmt.Errorf("%s: watch: %v", where, v)
	}
	guard, err := a.read()
	if err != nil {
		return backlog.Position{}, err
	}
	if v, err := a.read(); err != nil {
		return backlog.Position{}, err
	} else if v.Kind != SimpleString {
		return backlog.Position{}, fmt.Errorf("%s: multi: %v", where, v)
	}
	var queueErr *Value
	for i := 0; i < t.queued; i++ {
		v, err := a.read()
		if err != nil {
			return backlog.Position{}, err
		}
		if v.IsError() && queueErr == nil {
			v.Str = bytes.Clone(v.Str)
			queueErr = &v
		}
	}
	exec, err := a.read()
	if err != nil {
		return backlog.Position{}, err
	}
	switch {
	case exec.Kind == Array:
	case exec.Kind == NullArray && guard.Kind == Integer && guard.Int == 0:
		return backlog.Position{}, applyReplyError{fmt.Errorf("%s: store position is not %s: %w", where, t.expect, ErrExecAbort)}
	case queueErr != nil:
		return backlog.Position{}, applyReplyError{fmt.Errorf("%s: %v (queueing: %v): %w", where, exec, *queueErr, ErrExecAbort)}
	default:
		return backlog.Position{}, applyReplyError{fmt.Errorf("%s: exec: %v: %w", where, exec, ErrExecAbort)}
	}
	if len(exec.Elems) != t.queued {
		return backlog.Position{}, fmt.Errorf("%s: exec: %d replies for %d commands", where, len(exec.Elems), t.queued)
	}
	// A guard that failed (an error reply) let the transaction run
	// unguarded. It is applied all the same; Apply notices if one before
	// it was not.
	errs := 0
	for _, e := range exec.Elems {
		if e.IsError() {
			errs++
		}
	}
	for _, i := range t.own {
		if exec.Elems[i].IsError() {
			// Applied, but a SELECT or the marker failed: the data may be
			// in the wrong database or the marker stale, so say so.
			a.known = false
			return t.to, fmt.Errorf("%s: applier command %d: %v", where, i, exec.Elems[i])
		}
	}
	a.cmdErrors.Add(uint64(errs))
	return t.to, nil
}

// read reads and parses one reply; its strings alias a buffer reused by
// the next read.
func (a *Applier) read() (Value, error) {
	v, buf, err := readValue(a.br, a.rbuf)
	a.rbuf = buf
	return v, err
}

// roundTrip sends wbuf and reads one reply.
func (a *Applier) roundTrip() (Value, error) {
	if _, err := a.conn.Write(a.wbuf); err != nil {
		return Value{}, err
	}
	return a.read()
}

// readMarker reads PositionKey; the connection is in db 0 between calls.
func (a *Applier) readMarker() (backlog.Position, error) {
	a.wbuf = AppendCommand(a.wbuf[:0], []byte("GET"), []byte(PositionKey))
	v, err := a.roundTrip()
	if err != nil {
		return backlog.Position{}, fmt.Errorf("read position: %w", err)
	}
	switch v.Kind {
	case Null:
		return backlog.Position{}, nil
	case Bulk:
		return parseMarker(v.Str)
	}
	return backlog.Position{}, fmt.Errorf("read position: %v", v)
}

// parseMarker parses "<epoch>:<offset>".
func parseMarker(b []byte) (backlog.Position, error) {
	e, o, ok := bytes.Cut(b, []byte(":"))
	if ok {
		epoch, err1 := strconv.ParseUint(string(e), 10, 64)
		offset, err2 := strconv.ParseUint(string(o), 10, 64)
		if err1 == nil && err2 == nil {
			return backlog.Position{Epoch: epoch, Offset: offset}, nil
		}
	}
	return backlog.Position{}, fmt.Errorf("%w: %q", ErrBadMarker, b)
}

// connect dials and handshakes if there is no connection.
func (a *Applier) connect(ctx context.Context) error {
	if a.conn != nil {
		return nil
	}
	conn, err := dialTCP(ctx, a.addr, a.opts.DialTimeout, a.opts.TLS)
	if err != nil {
		return fmt.Errorf("dial %s: %w", a.addr, err)
	}
	a.conn, a.br, a.known = conn, bufio.NewReaderSize(conn, 64<<10), false
	conn.SetDeadline(time.Now().Add(a.opts.DialTimeout))
	if err := a.handshake(); err != nil {
		a.conn.Close()
		a.drop()
		return fmt.Errorf("connect %s: %w", a.addr, err)
	}
	conn.SetDeadline(time.Time{})
	return nil
}

func (a *Applier) handshake() error {
	if a.opts.Password != "" {
		args := [][]byte{[]byte("AUTH")}
		if a.opts.User != "" {
			args = append(args, []byte(a.opts.User))
		}
		args = append(args, []byte(a.opts.Password))
		a.wbuf = AppendCommand(a.wbuf[:0], args...)
		if v, err := a.roundTrip(); err != nil {
			return fmt.Errorf("auth: %w", err)
		} else if v.IsError() {
			return fmt.Errorf("auth: %s", v.Str)
		}
	}
	a.wbuf = AppendCommand(a.wbuf[:0], []byte("CLIENT"), []byte("SETNAME"), []byte(a.opts.ClientName))
	if v, err := a.roundTrip(); err != nil {
		return fmt.Errorf("client setname: %w", err)
	} else if v.IsError() {
		return fmt.Errorf("client setname: %s", v.Str)
	}
	// Knowing "databases" lets plan refuse an entry whose SELECT would
	// fail inside EXEC; CONFIG may be renamed away, and then it is not
	// known.
	a.databases = 0
	a.wbuf = AppendCommand(a.wbuf[:0], []byte("CONFIG"), []byte("GET"), []byte("databases"))
	v, err := a.roundTrip()
	if err != nil {
		return fmt.Errorf("config get databases: %w", err)
	}
	if v.Kind == Array && len(v.Elems) == 2 {
		if n, err := strconv.Atoi(string(v.Elems[1].Str)); err == nil && n > 0 {
			a.databases = n
		}
	}
	return nil
}

// guardCtx applies ctx to the connection: its deadline, and a cancel
// interrupts blocked I/O. The returned func undoes it.
func (a *Applier) guardCtx(ctx context.Context) func() {
	conn := a.conn
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		if a.conn == conn {
			conn.SetDeadline(time.Time{})
		}
	}
}

// fail drops the connection after an I/O or protocol error, so the next
// call reconnects and rereads the marker, and returns err, or ctx's error
// if that is why I/O failed.
func (a *Applier) fail(ctx context.Context, err error) error {
	if a.conn != nil {
		a.conn.Close()
	}
	a.drop()
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (a *Applier) drop() {
	a.conn, a.br, a.known = nil, nil, false
}
