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
	"strings"
	"sync"
	"time"

	"github.com/replicar/replicar/backlog"
)

// internalPrefix marks replicar's own keys in db 0. They describe the store
// they live in (its position), not the data, so a snapshot never copies
// them.
const internalPrefix = "__replicar:"

// ResyncMarker is the value CopySnapshot gives PositionKey on the target
// while it copies. It is not a position, so an Applier reading it fails with
// ErrBadMarker: a target left half-copied by a crash can never pass for a
// store at position 0:0 and be continued from offset 1.
const ResyncMarker = "resync"

// SnapshotOptions configures CopySnapshot. The zero value is usable.
type SnapshotOptions struct {
	// SourceUser and SourcePassword authenticate to the source, TargetUser
	// and TargetPassword to the target (AUTH [user] password); an empty
	// password means no AUTH.
	SourceUser     string
	SourcePassword string
	TargetUser     string
	TargetPassword string
	// DialTimeout bounds connecting and the handshake. Default 5s.
	DialTimeout time.Duration
	// TLS, when set, makes both connections TLS (REPLICAR_BACKEND_TLS,
	// which the nodes of a group share).
	TLS *tls.Config
	// BatchSize is the SCAN COUNT hint and so roughly how many keys go in
	// one pipeline of DUMPs and one of RESTOREs. Bigger batches cost fewer
	// round trips but hold more payload in memory. Default 1000.
	BatchSize int
	// Progress, if set, is called with the counters so far at most every
	// ProgressEvery, and once at the end with Done set. Calls never
	// overlap; a slow callback slows the copy.
	Progress func(SnapshotStats)
	// ProgressEvery is the least time between two Progress calls. Default
	// 1s.
	ProgressEvery time.Duration
	// Position, if set, is written to PositionKey in db 0 of the target
	// once everything is copied, as Applier.SetPosition would.
	Position *backlog.Position
}

func (o SnapshotOptions) withDefaults() SnapshotOptions {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	return o
}

// SnapshotStats reports how far a CopySnapshot has got.
type SnapshotStats struct {
	// DB is the database being copied (the last one, at the end).
	DB int
	// Keys is how many keys the target has restored, Bytes the size of
	// their DUMP payloads. A key SCAN returns twice is counted twice.
	Keys  int64
	Bytes int64
	// Skipped counts keys not copied: replicar's own keys, keys gone
	// between SCAN and DUMP, and keys already expired.
	Skipped int64
	// TotalKeys is the sum of the source's DBSIZEs at the start; the ETA is
	// estimated from it.
	TotalKeys int64
	// Libraries is how many function libraries were copied.
	Libraries int
	// Elapsed is the time since CopySnapshot began.
	Elapsed time.Duration
	// KeysPerSec and BytesPerSec are the average rates since the start.
	KeysPerSec  float64
	BytesPerSec float64
	// ETA estimates the time left; negative means unknown (nothing done
	// yet). It is 0 at the end.
	ETA time.Duration
	// Done is set on the last Progress call, after a successful copy.
	Done bool
}

// snapshotRates derives the rates and the ETA from the counters. It is
// pure, so that its arithmetic is tested without a clock. done counts keys
// copied or skipped, as both move through the keyspace.
func snapshotRates(done, bytes, total int64, elapsed time.Duration) (keysPerSec, bytesPerSec float64, eta time.Duration) {
	if elapsed <= 0 {
		return 0, 0, -1
	}
	secs := elapsed.Seconds()
	keysPerSec = float64(done) / secs
	bytesPerSec = float64(bytes) / secs
	switch {
	case done <= 0:
		eta = -1
	case done >= total:
		// SCAN may return a key twice, so done can pass total.
		eta = 0
	default:
		eta = time.Duration(float64(total-done) / keysPerSec * float64(time.Second))
	}
	return keysPerSec, bytesPerSec, eta
}

// maxBatchBytes caps the RESTORE commands of one batch, so that a page of
// big values does not go to the target as one huge write.
const maxBatchBytes = 16 << 20

// CopySnapshot makes the Redis at dst (host:port) a copy of the Redis at
// src: it flushes dst (FLUSHALL, and FUNCTION FLUSH), copies the function
// libraries (FUNCTION DUMP/RESTORE), then every key of every database with
// SCAN, DUMP and PEXPIRETIME (PTTL before Redis 7) on the source and
// RESTORE … ABSTTL REPLACE on the target, so keys keep their absolute
// expiry. Keys under "__replicar:" in db 0 are left out; the source's
// position is not the target's.
//
// The copy is consistent only if nothing writes to the source while it
// runs: the caller pauses the source's apply at some position X (stops a
// follower's Applier, or briefly pauses the leader's writes) and keeps it
// paused until CopySnapshot returns. Keys may still expire on the source
// meanwhile; they would have expired on the target too. The target then
// holds the data as of X and continues from X+1: set its marker with
// opts.Position, or with Applier.SetPosition(X) afterwards. Until then the
// marker is ResyncMarker, which an Applier refuses.
//
// Expiry times are absolute, so the two machines' clocks should agree, as
// for Redis's own replication.
//
// On error (including ctx's cancellation, which interrupts I/O at once)
// the target holds a partial copy and must be copied again.
func CopySnapshot(ctx context.Context, src, dst string, opts SnapshotOptions) (SnapshotStats, error) {
	opts = opts.withDefaults()
	s := &snapshotter{opts: opts, start: time.Now()}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.cancel = cancel

	var err error
	if s.src, err = dialSnap(cctx, "source", src, opts.SourceUser, opts.SourcePassword, opts.DialTimeout, opts.TLS); err != nil {
		return s.stats, s.result(ctx, err)
	}
	defer s.src.conn.Close()
	if s.dst, err = dialSnap(cctx, "target", dst, opts.TargetUser, opts.TargetPassword, opts.DialTimeout, opts.TLS); err != nil {
		return s.stats, s.result(ctx, err)
	}
	defer s.dst.conn.Close()
	// Cancelling interrupts blocked reads and writes on both sides.
	stop := context.AfterFunc(cctx, func() {
		s.src.conn.SetDeadline(time.Unix(1, 0))
		s.dst.conn.SetDeadline(time.Unix(1, 0))
	})
	defer stop()

	if err := s.prepare(); err != nil {
		return s.stats, s.result(ctx, err)
	}
	if err := s.copyFunctions(); err != nil {
		return s.stats, s.result(ctx, err)
	}
	if err := s.copyKeys(cctx); err != nil {
		return s.stats, s.result(ctx, err)
	}
	if opts.Position != nil {
		s.dst.wbuf = AppendCommand(s.dst.wbuf[:0], []byte("SELECT"), []byte("0"))
		s.dst.wbuf = AppendCommand(s.dst.wbuf, []byte("SET"), []byte(PositionKey), []byte(opts.Position.String()))
		if err := s.dst.expectOK(2); err != nil {
			return s.stats, s.result(ctx, fmt.Errorf("set position: %w", err))
		}
	}
	s.stats.Done = true
	s.stats.ETA = 0
	s.report(true)
	return s.stats, nil
}

// snapshotter is the state of one CopySnapshot.
type snapshotter struct {
	opts     SnapshotOptions
	start    time.Time
	src, dst *snapConn
	// expiry is the command that reads a key's expiry: PEXPIRETIME, which
	// is absolute, or PTTL before Redis 7.
	expiry   string
	dbs      []int // the source's non-empty databases
	stats    SnapshotStats
	lastProg time.Time

	cancel   context.CancelFunc
	errOnce  sync.Once
	firstErr error
}

// fail records the first error of the two goroutines and stops the other
// one; the error the other then sees is a consequence, not the cause.
func (s *snapshotter) fail(err error) {
	s.errOnce.Do(func() { s.firstErr = err; s.cancel() })
}

// result wraps err for the caller, preferring ctx's error when that is why
// the copy stopped.
func (s *snapshotter) result(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("snapshot: %w (%v)", ctx.Err(), err)
	}
	return fmt.Errorf("snapshot: %w", err)
}

// prepare checks the two sides are distinct, learns the source's databases
// and sizes, and flushes the target.
func (s *snapshotter) prepare() error {
	srcID, err := s.src.runID()
	if err != nil {
		return err
	}
	dstID, err := s.dst.runID()
	if err != nil {
		return err
	}
	if srcID != "" && srcID == dstID {
		// Flushing the target would destroy the source.
		return fmt.Errorf("source and target are the same server (run_id %s)", srcID)
	}

	s.src.wbuf = AppendCommand(s.src.wbuf[:0], []byte("PEXPIRETIME"), []byte(internalPrefix+"probe"))
	v, err := s.src.roundTrip()
	if err != nil {
		return err
	}
	s.expiry = "PEXPIRETIME"
	if v.IsError() {
		s.expiry = "PTTL"
	}

	n, err := s.src.databases()
	if err != nil {
		return err
	}
	// DBSIZE of every database in one round trip, for the ETA and to
	// skip empty databases.
	s.src.wbuf = s.src.wbuf[:0]
	for db := 0; db < n; db++ {
		s.src.wbuf = AppendCommand(s.src.wbuf, []byte("SELECT"), []byte(strconv.Itoa(db)))
		s.src.wbuf = AppendCommand(s.src.wbuf, []byte("DBSIZE"))
	}
	if err := s.src.flush(); err != nil {
		return err
	}
	for db := 0; db < n; db++ {
		if v, err := s.src.read(); err != nil {
			return fmt.Errorf("source: select %d: %w", db, err)
		} else if v.IsError() {
			return fmt.Errorf("source: select %d: %s", db, v.Str)
		}
		v, err := s.src.read()
		if err != nil {
			return fmt.Errorf("source: dbsize %d: %w", db, err)
		}
		if v.Kind != Integer {
			return fmt.Errorf("source: dbsize %d: %v", db, v)
		}
		if v.Int > 0 {
			s.dbs = append(s.dbs, db)
			s.stats.TotalKeys += v.Int
		}
	}

	// The marker goes with the flush, so that no moment shows an empty
	// store without it (see ResyncMarker).
	s.dst.wbuf = AppendCommand(s.dst.wbuf[:0], []byte("SELECT"), []byte("0"))
	s.dst.wbuf = AppendCommand(s.dst.wbuf, []byte("MULTI"))
	s.dst.wbuf = AppendCommand(s.dst.wbuf, []byte("FLUSHALL"))
	s.dst.wbuf = AppendCommand(s.dst.wbuf, []byte("SET"), []byte(PositionKey), []byte(ResyncMarker))
	s.dst.wbuf = AppendCommand(s.dst.wbuf, []byte("EXEC"))
	if err := s.dst.flush(); err != nil {
		return err
	}
	// SELECT, MULTI, two QUEUED, then EXEC's array.
	for i := 0; i < 5; i++ {
		v, err := s.dst.read()
		if err != nil {
			return fmt.Errorf("target: flushall: %w", err)
		}
		if v.IsError() || (i == 4 && v.Kind != Array) {
			return fmt.Errorf("target: flushall: %v", v)
		}
		if i == 4 {
			for _, e := range v.Elems {
				if e.IsError() {
					return fmt.Errorf("target: flushall: %v", e)
				}
			}
		}
	}
	return nil
}

// copyFunctions replaces the target's function libraries with the
// source's. FLUSHALL leaves functions alone, hence FUNCTION FLUSH. A Redis
// without functions (before 7) has none to copy.
func (s *snapshotter) copyFunctions() error {
	s.src.wbuf = AppendCommand(s.src.wbuf[:0], []byte("FUNCTION"), []byte("LIST"))
	v, err := s.src.roundTrip()
	if err != nil {
		return fmt.Errorf("source: function list: %w", err)
	}
	libs := 0
	if v.Kind == Array {
		libs = len(v.Elems)
	}
	s.dst.wbuf = AppendCommand(s.dst.wbuf[:0], []byte("FUNCTION"), []byte("FLUSH"))
	if v, err := s.dst.roundTrip(); err != nil {
		return fmt.Errorf("target: function flush: %w", err)
	} else if v.IsError() && libs > 0 {
		return fmt.Errorf("target: function flush: %s", v.Str)
	}
	if libs == 0 {
		return nil
	}
	s.src.wbuf = AppendCommand(s.src.wbuf[:0], []byte("FUNCTION"), []byte("DUMP"))
	v, err = s.src.roundTrip()
	if err != nil {
		return fmt.Errorf("source: function dump: %w", err)
	}
	if v.Kind != Bulk {
		return fmt.Errorf("source: function dump: %v", v)
	}
	s.dst.wbuf = AppendCommand(s.dst.wbuf[:0], []byte("FUNCTION"), []byte("RESTORE"), v.Str, []byte("REPLACE"))
	if err := s.dst.expectOK(1); err != nil {
		return fmt.Errorf("function restore: %w", err)
	}
	s.stats.Libraries = libs
	return nil
}

// snapBatch is a run of RESTOREs for one database, passed from the source
// side to the target side.
type snapBatch struct {
	db      int
	keys    []string // the key of each RESTORE, for error messages
	cmds    []byte
	bytes   int64
	skipped int64
}

// copyKeys reads batches from the source in one goroutine while this one
// restores them on the target, so both servers work at once. The channel's
// buffer bounds how far the source side runs ahead, and so the memory.
func (s *snapshotter) copyKeys(ctx context.Context) error {
	ch := make(chan *snapBatch, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		if err := s.produce(ctx, ch); err != nil {
			s.fail(err)
		}
	}()
	if err := s.consume(ch); err != nil {
		s.fail(err)
	}
	// Let the producer see the cancellation and stop.
	for range ch {
	}
	<-done
	return s.firstErr
}

// produce scans the source's databases and sends batches of RESTOREs.
func (s *snapshotter) produce(ctx context.Context, ch chan<- *snapBatch) error {
	c := s.src
	for _, db := range s.dbs {
		c.wbuf = AppendCommand(c.wbuf[:0], []byte("SELECT"), []byte(strconv.Itoa(db)))
		if v, err := c.roundTrip(); err != nil {
			return fmt.Errorf("source: select %d: %w", db, err)
		} else if v.IsError() {
			return fmt.Errorf("source: select %d: %s", db, v.Str)
		}
		cursor := "0"
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			var keys []string
			var err error
			cursor, keys, err = c.scan(cursor, s.opts.BatchSize)
			if err != nil {
				return fmt.Errorf("source: db %d: scan: %w", db, err)
			}
			b := &snapBatch{db: db}
			if db == 0 {
				kept := keys[:0]
				for _, k := range keys {
					if strings.HasPrefix(k, internalPrefix) {
						b.skipped++
					} else {
						kept = append(kept, k)
					}
				}
				keys = kept
			}
			for len(keys) > 0 {
				var rest []string
				if rest, err = s.dump(b, keys); err != nil {
					return fmt.Errorf("source: db %d: %w", db, err)
				}
				keys = rest
				if len(keys) > 0 {
					// The batch is full of bytes; send it and go on.
					if err := send(ctx, ch, b); err != nil {
						return err
					}
					b = &snapBatch{db: db}
				}
			}
			if len(b.keys) > 0 || b.skipped > 0 {
				if err := send(ctx, ch, b); err != nil {
					return err
				}
			}
			if cursor == "0" {
				break
			}
		}
	}
	return nil
}

func send(ctx context.Context, ch chan<- *snapBatch, b *snapBatch) error {
	select {
	case ch <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dump pipelines the expiry and DUMP of keys and appends a RESTORE for
// each live one to b. It stops once b holds maxBatchBytes and returns the
// keys it did not get to.
func (s *snapshotter) dump(b *snapBatch, keys []string) ([]string, error) {
	c := s.src
	c.wbuf = c.wbuf[:0]
	for _, k := range keys {
		c.wbuf = AppendCommand(c.wbuf, []byte(s.expiry), []byte(k))
		c.wbuf = AppendCommand(c.wbuf, []byte("DUMP"), []byte(k))
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	// Every reply is read even after the batch fills up, to keep the
	// connection in step; the keys past that point are asked again.
	var rest []string
	for i, k := range keys {
		ev, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", s.expiry, k, err)
		}
		if ev.Kind != Integer {
			return nil, fmt.Errorf("%s %q: %v", s.expiry, k, ev)
		}
		exp := ev.Int
		now := time.Now().UnixMilli()
		if s.expiry == "PTTL" && exp >= 0 {
			exp += now
		}
		dv, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("dump %q: %w", k, err)
		}
		if rest != nil {
			continue
		}
		switch {
		case dv.IsError():
			return nil, fmt.Errorf("dump %q: %s", k, dv.Str)
		case dv.Kind == Null || exp == -2:
			// Gone between SCAN and DUMP.
			b.skipped++
			continue
		case dv.Kind != Bulk:
			return nil, fmt.Errorf("dump %q: %v", k, dv)
		case exp >= 0 && exp <= now:
			// Expired; RESTORE would drop it anyway.
			b.skipped++
			continue
		}
		if exp < 0 {
			exp = 0 // no expiry
		}
		b.cmds = AppendCommand(b.cmds, []byte("RESTORE"), []byte(k), strconv.AppendInt(nil, exp, 10), dv.Str, []byte("ABSTTL"), []byte("REPLACE"))
		b.keys = append(b.keys, k)
		b.bytes += int64(len(dv.Str))
		if len(b.cmds) >= maxBatchBytes && i+1 < len(keys) {
			rest = keys[i+1:]
		}
	}
	return rest, nil
}

// consume restores batches on the target and keeps the counters.
func (s *snapshotter) consume(ch <-chan *snapBatch) error {
	c := s.dst
	db := -1
	for b := range ch {
		c.wbuf = c.wbuf[:0]
		selected := b.db != db
		if selected {
			c.wbuf = AppendCommand(c.wbuf, []byte("SELECT"), []byte(strconv.Itoa(b.db)))
		}
		c.wbuf = append(c.wbuf, b.cmds...)
		if err := c.flush(); err != nil {
			return fmt.Errorf("target: db %d: restore: %w", b.db, err)
		}
		if selected {
			if v, err := c.read(); err != nil {
				return fmt.Errorf("target: select %d: %w", b.db, err)
			} else if v.IsError() {
				return fmt.Errorf("target: select %d: %s", b.db, v.Str)
			}
			db = b.db
		}
		var first error
		for _, k := range b.keys {
			v, err := c.read()
			if err != nil {
				return fmt.Errorf("target: db %d: restore %q: %w", b.db, k, err)
			}
			if v.IsError() && first == nil {
				first = fmt.Errorf("target: db %d: restore %q: %s", b.db, k, v.Str)
			}
		}
		if first != nil {
			return first
		}
		s.stats.DB = b.db
		s.stats.Keys += int64(len(b.keys))
		s.stats.Bytes += b.bytes
		s.stats.Skipped += b.skipped
		s.report(false)
	}
	return nil
}

// report fills in the derived figures and calls Progress if it is due.
func (s *snapshotter) report(final bool) {
	now := time.Now()
	s.stats.Elapsed = now.Sub(s.start)
	s.stats.KeysPerSec, s.stats.BytesPerSec, s.stats.ETA = snapshotRates(s.stats.Keys+s.stats.Skipped, s.stats.Bytes, s.stats.TotalKeys, s.stats.Elapsed)
	if final {
		s.stats.ETA = 0
	}
	if s.opts.Progress == nil || (!final && now.Sub(s.lastProg) < s.opts.ProgressEvery) {
		return
	}
	s.lastProg = now
	s.opts.Progress(s.stats)
}

// snapConn is one plain RESP2 connection of the snapshotter.
type snapConn struct {
	side string // "source" or "target", for messages
	conn net.Conn
	br   *bufio.Reader
	wbuf []byte
	rbuf []byte
}

func dialSnap(ctx context.Context, side, addr, user, password string, timeout time.Duration, tlsCfg *tls.Config) (*snapConn, error) {
	conn, err := dialTCP(ctx, addr, timeout, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s: %w", side, addr, err)
	}
	c := &snapConn{side: side, conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
	conn.SetDeadline(time.Now().Add(timeout))
	// A cancel during the handshake interrupts it too; once it is done,
	// CopySnapshot's own AfterFunc takes over (and runs at once if ctx is
	// already done, so clearing the deadline below loses nothing).
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.handshake(user, password); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: connect %s: %w", side, addr, err)
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

func (c *snapConn) handshake(user, password string) error {
	if password != "" {
		args := [][]byte{[]byte("AUTH")}
		if user != "" {
			args = append(args, []byte(user))
		}
		args = append(args, []byte(password))
		c.wbuf = AppendCommand(c.wbuf[:0], args...)
		if v, err := c.roundTrip(); err != nil {
			return fmt.Errorf("auth: %w", err)
		} else if v.IsError() {
			return fmt.Errorf("auth: %s", v.Str)
		}
	}
	c.wbuf = AppendCommand(c.wbuf[:0], []byte("CLIENT"), []byte("SETNAME"), []byte("replicar-snapshot"))
	if v, err := c.roundTrip(); err != nil {
		return fmt.Errorf("client setname: %w", err)
	} else if v.IsError() {
		return fmt.Errorf("client setname: %s", v.Str)
	}
	return nil
}

// flush writes wbuf.
func (c *snapConn) flush() error {
	if _, err := c.conn.Write(c.wbuf); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// read reads one reply; its strings alias a buffer the next read reuses.
func (c *snapConn) read() (Value, error) {
	v, buf, err := readValue(c.br, c.rbuf)
	c.rbuf = buf
	return v, err
}

// roundTrip writes wbuf and reads one reply.
func (c *snapConn) roundTrip() (Value, error) {
	if err := c.flush(); err != nil {
		return Value{}, fmt.Errorf("%s: %w", c.side, err)
	}
	v, err := c.read()
	if err != nil {
		return Value{}, fmt.Errorf("%s: %w", c.side, err)
	}
	return v, nil
}

// expectOK writes wbuf, which holds n commands, and checks no reply is an
// error.
func (c *snapConn) expectOK(n int) error {
	if err := c.flush(); err != nil {
		return fmt.Errorf("%s: %w", c.side, err)
	}
	var first error
	for i := 0; i < n; i++ {
		v, err := c.read()
		if err != nil {
			return fmt.Errorf("%s: %w", c.side, err)
		}
		if v.IsError() && first == nil {
			first = fmt.Errorf("%s: %s", c.side, v.Str)
		}
	}
	return first
}

// runID reads INFO server's run_id, "" if it has none.
func (c *snapConn) runID() (string, error) {
	c.wbuf = AppendCommand(c.wbuf[:0], []byte("INFO"), []byte("server"))
	v, err := c.roundTrip()
	if err != nil {
		return "", fmt.Errorf("info: %w", err)
	}
	if v.Kind != Bulk {
		return "", nil
	}
	for _, line := range bytes.Split(v.Str, []byte("\n")) {
		if id, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("run_id:")); ok {
			return string(id), nil
		}
	}
	return "", nil
}

// databases reads the "databases" setting. CONFIG may be renamed away;
// then INFO keyspace names the databases that hold keys.
func (c *snapConn) databases() (int, error) {
	c.wbuf = AppendCommand(c.wbuf[:0], []byte("CONFIG"), []byte("GET"), []byte("databases"))
	v, err := c.roundTrip()
	if err != nil {
		return 0, fmt.Errorf("config get databases: %w", err)
	}
	if v.Kind == Array && len(v.Elems) == 2 {
		if n, err := strconv.Atoi(string(v.Elems[1].Str)); err == nil && n > 0 {
			return n, nil
		}
	}
	c.wbuf = AppendCommand(c.wbuf[:0], []byte("INFO"), []byte("keyspace"))
	if v, err = c.roundTrip(); err != nil {
		return 0, fmt.Errorf("info keyspace: %w", err)
	}
	if v.Kind != Bulk {
		return 0, fmt.Errorf("%s: info keyspace: %v", c.side, v)
	}
	n := 1
	for _, line := range strings.Split(string(v.Str), "\n") {
		name, _, ok := strings.Cut(line, ":")
		if db, err := strconv.Atoi(strings.TrimPrefix(name, "db")); ok && err == nil && strings.HasPrefix(name, "db") {
			n = max(n, db+1)
		}
	}
	return n, nil
}

// scan runs one SCAN step and returns the next cursor and the keys.
func (c *snapConn) scan(cursor string, count int) (string, []string, error) {
	c.wbuf = AppendCommand(c.wbuf[:0], []byte("SCAN"), []byte(cursor), []byte("COUNT"), []byte(strconv.Itoa(count)))
	v, err := c.roundTrip()
	if err != nil {
		return "", nil, err
	}
	if v.Kind != Array || len(v.Elems) != 2 || v.Elems[0].Kind != Bulk || v.Elems[1].Kind != Array {
		return "", nil, errors.New(v.String())
	}
	keys := make([]string, len(v.Elems[1].Elems))
	for i, k := range v.Elems[1].Elems {
		keys[i] = string(k.Str)
	}
	return string(v.Elems[0].Str), keys, nil
}
