package apply

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replicar/replicar/backlog"
)

// SnapshotOptions configures CopySnapshot. The zero value is usable.
type SnapshotOptions struct {
	// SourceUser/SourcePassword and TargetUser/TargetPassword log in to
	// each side; SourceTLS and TargetTLS, when set, turn TLS on.
	SourceUser, SourcePassword string
	TargetUser, TargetPassword string
	SourceTLS, TargetTLS       *tls.Config
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration
	// Position is where the copy stands. Nil reads it from the source's
	// position table inside the snapshot: right for a follower source,
	// whose applier writes data and position together.
	Position *backlog.Position
	// Snapshotted, if set, is called once the snapshot is open and every
	// definition read: the source may take writes again from then on.
	Snapshotted func()
	// BatchRows and BatchBytes bound one INSERT on the target, and so the
	// memory a copy holds. Defaults 1000 rows and 1 MiB.
	BatchRows  int
	BatchBytes int
	// Progress, if set, is called at most every ProgressEvery (default
	// 1s) with the counters so far, and once at the end with Done set.
	Progress      func(SnapshotStats)
	ProgressEvery time.Duration
}

func (o SnapshotOptions) withDefaults() SnapshotOptions {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.BatchRows <= 0 {
		o.BatchRows = 1000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 1 << 20
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	return o
}

// SnapshotStats reports how far a CopySnapshot has got.
type SnapshotStats struct {
	// Table is the table being copied ("schema.table").
	Table string
	// Tables counts the tables copied, TotalTables those to copy.
	Tables      int
	TotalTables int
	// Rows and Bytes count what the target has received; TotalRows is
	// the source's estimate (information_schema), from which ETA comes.
	Rows      int64
	Bytes     int64
	TotalRows int64
	Elapsed   time.Duration
	// RowsPerSec and BytesPerSec are averages since the start.
	RowsPerSec  float64
	BytesPerSec float64
	// ETA estimates the time left; negative means unknown. 0 at the end.
	ETA time.Duration
	// Position is the position the copy stands at.
	Position backlog.Position
	// Done is set on the last Progress call, after a successful copy.
	Done bool
}

// snapshotRates derives rates and the ETA from the counters; pure, so its
// arithmetic is tested without a clock.
func snapshotRates(rows, bytes, totalRows int64, elapsed time.Duration) (rowsPerSec, bytesPerSec float64, eta time.Duration) {
	if elapsed <= 0 {
		return 0, 0, -1
	}
	secs := elapsed.Seconds()
	rowsPerSec = float64(rows) / secs
	bytesPerSec = float64(bytes) / secs
	switch {
	case rows <= 0:
		eta = -1
	case rows >= totalRows:
		// The estimate may be low; the copy is near its end.
		eta = 0
	default:
		eta = time.Duration(float64(totalRows-rows) / rowsPerSec * float64(time.Second))
	}
	return rowsPerSec, bytesPerSec, eta
}

// systemSchemas are never copied, nor dropped on the target.
var systemSchemas = map[string]bool{"mysql": true, "sys": true, "information_schema": true, "performance_schema": true, Schema: true}

// ErrSameServer means source and target are one server: copying would
// destroy the data it reads.
var ErrSameServer = errors.New("apply: snapshot source and target are the same server")

// CopySnapshot makes the MariaDB at dst (host:port) a copy of the one at
// src, as of one consistent snapshot, and returns the position the copy
// stands at.
//
// The source must be paused at some position X (a follower's applier
// stopped, or the leader's writes paused) until Snapshotted is called:
// CopySnapshot opens START TRANSACTION WITH CONSISTENT SNAPSHOT, reads the
// position (opts.Position, or the source's position table), every
// definition, and takes a shared metadata lock on every table (so a DDL on
// the source waits for the copy), then calls Snapshotted. Writes may go on
// while the rows are copied.
//
// On the target it marks the position table "resync" (an Applier refuses
// a store in that state), drops every user schema, recreates the source's
// schemas, tables, views, routines and triggers, copies every table's
// rows in batches (streamed, never a whole table in memory), and finally
// sets the position to X: the target then continues from X+1. Nothing is
// written to the target's binlog. Generated columns are left for the
// target to compute; the system schemas and Schema are not copied.
//
// On error (or ctx's cancellation) the target is left marked "resync" and
// must be copied again.
func CopySnapshot(ctx context.Context, src, dst string, opts SnapshotOptions) (backlog.Position, SnapshotStats, error) {
	opts = opts.withDefaults()
	s := &snapshot{opts: opts, start: time.Now()}
	pos, err := s.run(ctx, src, dst)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return backlog.Position{}, s.stats, fmt.Errorf("snapshot: %w", err)
	}
	return pos, s.stats, nil
}

type snapshot struct {
	opts     SnapshotOptions
	start    time.Time
	src, dst *sql.Conn
	stats    SnapshotStats
	lastProg time.Time
}

// object is a schema object to recreate on the target.
type object struct {
	schema, name string
	create       string // the CREATE statement
	sqlMode      string // for routines and triggers, their sql_mode
	cols         []string
	rows         int64
}

func open(ctx context.Context, addr, user, password string, tlsCfg *tls.Config, timeout time.Duration) (*sql.DB, *sql.Conn, error) {
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "tcp", addr, user, password
	cfg.Timeout = timeout
	cfg.TLS = tlsCfg
	cfg.MultiStatements = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, nil, err
	}
	db := sql.OpenDB(connector)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return db, conn, nil
}

func (s *snapshot) run(ctx context.Context, srcAddr, dstAddr string) (backlog.Position, error) {
	o := s.opts
	sdb, src, err := open(ctx, srcAddr, o.SourceUser, o.SourcePassword, o.SourceTLS, o.DialTimeout)
	if err != nil {
		return backlog.Position{}, fmt.Errorf("source: %w", err)
	}
	defer sdb.Close()
	defer src.Close()
	ddb, dst, err := open(ctx, dstAddr, o.TargetUser, o.TargetPassword, o.TargetTLS, o.DialTimeout)
	if err != nil {
		return backlog.Position{}, fmt.Errorf("target: %w", err)
	}
	defer ddb.Close()
	defer dst.Close()
	s.src, s.dst = src, dst

	if err := s.distinct(ctx); err != nil {
		return backlog.Position{}, err
	}
	// The target: no binlog, no checks (the source's data passed them),
	// literals byte for byte, times in UTC as on the source session.
	if _, err := dst.ExecContext(ctx, baselineSQL+", foreign_key_checks=0, unique_checks=0"); err != nil {
		return backlog.Position{}, fmt.Errorf("target: session: %w", err)
	}
	if err := ensureSchema(ctx, dst); err != nil {
		return backlog.Position{}, fmt.Errorf("target: %w", err)
	}
	if _, err := dst.ExecContext(ctx, "UPDATE "+posTable+" SET state='resync' WHERE id=1"); err != nil {
		return backlog.Position{}, fmt.Errorf("target: mark resync: %w", err)
	}

	// The source: values in their own character sets, TIMESTAMPs in UTC,
	// and no timeout while the target catches up with a batch.
	if _, err := src.ExecContext(ctx, "SET SESSION character_set_results=NULL, time_zone='+00:00', net_write_timeout=3600;"+
		"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return backlog.Position{}, fmt.Errorf("source: session: %w", err)
	}
	if _, err := src.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return backlog.Position{}, fmt.Errorf("source: snapshot: %w", err)
	}
	defer src.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	pos, err := s.position(ctx)
	if err != nil {
		return backlog.Position{}, err
	}
	s.stats.Position = pos
	schemas, tables, views, routines, err := s.definitions(ctx)
	if err != nil {
		return backlog.Position{}, fmt.Errorf("source: %w", err)
	}
	if o.Snapshotted != nil {
		o.Snapshotted()
	}
	s.stats.TotalTables = len(tables)
	for _, t := range tables {
		s.stats.TotalRows += t.rows
	}

	if err := s.recreate(ctx, schemas, tables); err != nil {
		return backlog.Position{}, fmt.Errorf("target: %w", err)
	}
	for i := range tables {
		if err := s.copyTable(ctx, &tables[i]); err != nil {
			return backlog.Position{}, err
		}
		s.stats.Tables++
	}
	if err := s.createLater(ctx, views, routines); err != nil {
		return backlog.Position{}, fmt.Errorf("target: %w", err)
	}
	if err := setPosition(ctx, dst, pos); err != nil {
		return backlog.Position{}, fmt.Errorf("target: %w", err)
	}
	s.stats.Done = true
	s.report(true)
	return pos, nil
}

// distinct refuses to copy a server onto itself.
func (s *snapshot) distinct(ctx context.Context) error {
	id := func(c *sql.Conn) (string, error) {
		var host, dir string
		var port int
		err := c.QueryRowContext(ctx, "SELECT @@hostname, @@port, @@datadir").Scan(&host, &port, &dir)
		return fmt.Sprintf("%s:%d:%s", host, port, dir), err
	}
	a, err := id(s.src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	b, err := id(s.dst)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if a == b {
		return fmt.Errorf("%w (%s)", ErrSameServer, a)
	}
	return nil
}

// position returns opts.Position, or the source's position as of the
// snapshot.
func (s *snapshot) position(ctx context.Context) (backlog.Position, error) {
	if s.opts.Position != nil {
		return *s.opts.Position, nil
	}
	var p backlog.Position
	var state string
	var ddlOffset uint64
	err := s.src.QueryRowContext(ctx, "SELECT epoch, `offset`, state, ddl_offset FROM "+posTable+" WHERE id=1").Scan(&p.Epoch, &p.Offset, &state, &ddlOffset)
	if err != nil {
		return p, fmt.Errorf("source: read position: %w", err)
	}
	if state != "" {
		return p, fmt.Errorf("source: %w", ErrResyncIncomplete)
	}
	if ddlOffset == p.Offset+1 {
		// Its DDL may have run without its position: the schema and the
		// position may disagree. The source's applier settles it.
		return p, fmt.Errorf("source: a DDL at offset %d is pending; retry once the source has applied it", ddlOffset)
	}
	return p, nil
}

// definitions reads every user schema's definition and locks its tables
// for the snapshot's duration.
func (s *snapshot) definitions(ctx context.Context) (schemas []object, tables, views, routines []object, err error) {
	names, err := queryStrings(ctx, s.src, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	for _, db := range names {
		if systemSchemas[db] {
			continue
		}
		var n, create string
		if err := s.src.QueryRowContext(ctx, "SHOW CREATE DATABASE "+quoteIdent(db)).Scan(&n, &create); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("show create database %s: %w", db, err)
		}
		schemas = append(schemas, object{schema: db, create: create})

		rows, err := s.src.QueryContext(ctx, "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", db)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		var objs []object
		var types []string
		for rows.Next() {
			var o object
			var typ string
			if err := rows.Scan(&o.name, &typ, &o.rows); err != nil {
				rows.Close()
				return nil, nil, nil, nil, err
			}
			o.schema = db
			objs, types = append(objs, o), append(types, typ)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, nil, nil, err
		}
		for i, o := range objs {
			full := quoteIdent(db) + "." + quoteIdent(o.name)
			if types[i] == "VIEW" {
				var n, create, cs, coll string
				if err := s.src.QueryRowContext(ctx, "SHOW CREATE VIEW "+full).Scan(&n, &create, &cs, &coll); err != nil {
					return nil, nil, nil, nil, fmt.Errorf("show create view %s: %w", full, err)
				}
				o.create = create
				views = append(views, o)
				continue
			}
			var n string
			if err := s.src.QueryRowContext(ctx, "SHOW CREATE TABLE "+full).Scan(&n, &o.create); err != nil {
				return nil, nil, nil, nil, fmt.Errorf("show create table %s: %w", full, err)
			}
			// Generated columns are computed by the target; invisible ones
			// are listed by name, as SELECT * leaves them out.
			o.cols, err = queryStrings(ctx, s.src, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? "+
				"AND NOT (EXTRA LIKE '%GENERATED%' OR EXTRA IN ('VIRTUAL','PERSISTENT','STORED')) ORDER BY ORDINAL_POSITION", db, o.name)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			// A shared metadata lock until the snapshot ends: a DDL on the
			// table waits for the copy instead of changing it under it.
			if _, err := s.src.ExecContext(ctx, "SELECT 1 FROM "+full+" LIMIT 0"); err != nil {
				return nil, nil, nil, nil, fmt.Errorf("lock %s: %w", full, err)
			}
			tables = append(tables, o)
		}
		for _, kind := range []string{"PROCEDURE", "FUNCTION"} {
			names, err := queryStrings(ctx, s.src, "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = ?", db, kind)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			for _, name := range names {
				o, err := s.showCreate(ctx, "SHOW CREATE "+kind+" "+quoteIdent(db)+"."+quoteIdent(name), 1, 2)
				if err != nil {
					return nil, nil, nil, nil, err
				}
				o.schema, o.name = db, name
				routines = append(routines, o)
			}
		}
		trig, err := queryStrings(ctx, s.src, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY ACTION_ORDER", db)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		for _, name := range trig {
			o, err := s.showCreate(ctx, "SHOW CREATE TRIGGER "+quoteIdent(db)+"."+quoteIdent(name), 1, 2)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			o.schema, o.name = db, name
			routines = append(routines, o)
		}
	}
	return schemas, tables, views, routines, nil
}

// showCreate runs a SHOW CREATE whose result has the sql_mode in column
// modeCol and the statement in column createCol.
func (s *snapshot) showCreate(ctx context.Context, q string, modeCol, createCol int) (object, error) {
	rows, err := s.src.QueryContext(ctx, q)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return object{}, err
	}
	if !rows.Next() {
		return object{}, fmt.Errorf("%s: no result (missing privilege?)", q)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return object{}, err
	}
	if !vals[createCol].Valid {
		return object{}, fmt.Errorf("%s: no definition (missing privilege?)", q)
	}
	return object{sqlMode: vals[modeCol].String, create: vals[createCol].String}, nil
}

func queryStrings(ctx context.Context, c *sql.Conn, q string, args ...any) ([]string, error) {
	rows, err := c.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// recreate drops the target's user schemas and creates the source's
// schemas and tables.
func (s *snapshot) recreate(ctx context.Context, schemas, tables []object) error {
	have, err := queryStrings(ctx, s.dst, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
	if err != nil {
		return err
	}
	for _, db := range have {
		if !systemSchemas[db] {
			if _, err := s.dst.ExecContext(ctx, "DROP DATABASE "+quoteIdent(db)); err != nil {
				return fmt.Errorf("drop database %s: %w", db, err)
			}
		}
	}
	// Definitions are utf8 text, whatever the columns' character sets.
	if _, err := s.dst.ExecContext(ctx, "SET NAMES utf8mb4"); err != nil {
		return err
	}
	defer s.dst.ExecContext(context.WithoutCancel(ctx), "SET character_set_client=binary, character_set_connection=binary, character_set_results=binary")
	for _, o := range schemas {
		if _, err := s.dst.ExecContext(ctx, o.create); err != nil {
			return fmt.Errorf("%s: %w", o.create, err)
		}
	}
	for _, o := range tables {
		if _, err := s.dst.ExecContext(ctx, "USE "+quoteIdent(o.schema)+";"+o.create); err != nil {
			return fmt.Errorf("create table %s.%s: %w", o.schema, o.name, err)
		}
	}
	return nil
}

// createLater creates views (those that read other views may need a
// second round), then routines and triggers, each with its sql_mode.
func (s *snapshot) createLater(ctx context.Context, views, routines []object) error {
	if _, err := s.dst.ExecContext(ctx, "SET NAMES utf8mb4"); err != nil {
		return err
	}
	for len(views) > 0 {
		var left []object
		var lastErr error
		for _, o := range views {
			if _, err := s.dst.ExecContext(ctx, "USE "+quoteIdent(o.schema)+";"+o.create); err != nil {
				lastErr = fmt.Errorf("create view %s.%s: %w", o.schema, o.name, err)
				left = append(left, o)
			}
		}
		if len(left) == len(views) {
			return lastErr
		}
		views = left
	}
	for _, o := range routines {
		q := "USE " + quoteIdent(o.schema) + ";SET SESSION sql_mode=" + string(quoteString(nil, "", []byte(o.sqlMode))) + ";" + o.create
		if _, err := s.dst.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create %s.%s: %w", o.schema, o.name, err)
		}
	}
	_, err := s.dst.ExecContext(ctx, baselineSQL+", foreign_key_checks=0, unique_checks=0")
	return err
}

// batch is one INSERT for the target.
type batch struct {
	sql   []byte
	rows  int64
	bytes int64
}

// copyTable streams a table's rows from the source in one goroutine while
// this one inserts batches into the target; the channel's small buffer
// bounds the memory.
func (s *snapshot) copyTable(ctx context.Context, t *object) error {
	full := quoteIdent(t.schema) + "." + quoteIdent(t.name)
	s.stats.Table = t.schema + "." + t.name
	if len(t.cols) == 0 {
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan batch, 2)
	var wg sync.WaitGroup
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		readErr = s.read(cctx, t, full, ch)
	}()
	var writeErr error
	for b := range ch {
		if writeErr != nil {
			continue // drain, so the reader ends
		}
		if _, err := s.dst.ExecContext(cctx, string(b.sql)); err != nil {
			writeErr = fmt.Errorf("target: insert into %s: %w", full, err)
			cancel()
			continue
		}
		s.stats.Rows += b.rows
		s.stats.Bytes += b.bytes
		s.report(false)
	}
	wg.Wait()
	if writeErr != nil {
		return writeErr
	}
	if readErr != nil {
		return fmt.Errorf("source: read %s: %w", full, readErr)
	}
	return nil
}

// read selects every row of t and sends INSERT batches.
func (s *snapshot) read(ctx context.Context, t *object, full string, ch chan<- batch) error {
	cols := make([]string, len(t.cols))
	for i, c := range t.cols {
		cols[i] = quoteIdent(c)
	}
	list := strings.Join(cols, ",")
	rows, err := s.src.QueryContext(ctx, "SELECT "+list+" FROM "+full)
	if err != nil {
		return err
	}
	defer rows.Close()
	head := "INSERT INTO " + full + " (" + list + ") VALUES "
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var b batch
	send := func() error {
		select {
		case ch <- b:
			b = batch{}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if b.rows == 0 {
			b.sql = append(make([]byte, 0, s.opts.BatchBytes+len(head)), head...)
		} else {
			b.sql = append(b.sql, ',')
		}
		b.sql = append(b.sql, '(')
		for i, v := range vals {
			if i > 0 {
				b.sql = append(b.sql, ',')
			}
			if v == nil {
				b.sql = append(b.sql, "NULL"...)
				continue
			}
			// Every value as its bytes: the target converts them to the
			// column's type exactly as the source's text protocol wrote
			// them, and strings keep their bytes in any character set.
			b.sql = quoteString(b.sql, "_binary", v)
			b.bytes += int64(len(v))
		}
		b.sql = append(b.sql, ')')
		b.rows++
		if b.rows >= int64(s.opts.BatchRows) || len(b.sql) >= s.opts.BatchBytes {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if b.rows > 0 {
		return send()
	}
	return nil
}

// report updates the rates and calls Progress if it is due (or final).
func (s *snapshot) report(final bool) {
	now := time.Now()
	if !final && (s.opts.Progress == nil || now.Sub(s.lastProg) < s.opts.ProgressEvery) {
		return
	}
	s.lastProg = now
	s.stats.Elapsed = now.Sub(s.start)
	s.stats.RowsPerSec, s.stats.BytesPerSec, s.stats.ETA = snapshotRates(s.stats.Rows, s.stats.Bytes, s.stats.TotalRows, s.stats.Elapsed)
	if final {
		s.stats.ETA = 0
	}
	if s.opts.Progress != nil {
		s.opts.Progress(s.stats)
	}
}
