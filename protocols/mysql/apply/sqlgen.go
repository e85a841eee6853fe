package apply

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/replicar/replicar/backlog"
	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// noCheck marks a statement whose affected-row count is not checked.
const noCheck = -1

// chunk is SQL sent in one round trip: statements separated by ";" and the
// affected-row count each must report (noCheck for any).
type chunk struct {
	sql    []byte
	expect []int64
	// offsets holds the entry each statement comes from.
	offsets []uint64
	// loose says the chunk holds a logged statement (statement mode),
	// which may answer with a result set (a SELECT of a function that
	// writes, a DELETE … RETURNING): the driver counts no affected rows
	// for those, so the number of counts is not checked. The checks that
	// matter run on the server (stmt) either way.
	loose bool
}

// env is what rendering needs to know about the target server: how to
// name a collation's character set, and which columns it computes itself.
type env struct {
	// charsets maps collation ids to character set names.
	charsets map[uint32]string
	// collations maps collation ids to collation names.
	collations map[uint32]string
	// generated holds, by tableKey, the generated columns of each table
	// that has any: they take no value.
	generated map[string]map[string]bool
}

func tableKey(schema, table string) string { return schema + "\x00" + table }

// generatedCols says which of tb's columns the target computes itself.
func (e *env) generatedCols(tb *rowlog.Table) []bool {
	g := e.generated[tableKey(tb.Schema, tb.Name)]
	out := make([]bool, len(tb.Columns))
	if g == nil {
		return out
	}
	for i := range tb.Columns {
		out[i] = g[tb.Columns[i].Name]
	}
	return out
}

// txWriter builds the chunks of one backend transaction.
type txWriter struct {
	env      *env
	maxChunk int
	chunks   []chunk
	cur      chunk
	// dirty is set once a statement changed session variables that row
	// changes depend on; baseline must be sent before the next rows.
	dirty bool
	// offset is the entry being rendered.
	offset uint64
	// guard marks the next checked statement as the position guard.
	guard bool
}

// baselineSQL puts the apply session back in the state row changes are
// rendered for: no binlog (see doc.go), literals parsed byte for byte
// (every string literal carries its own character set), TIMESTAMPs in
// UTC as the capture renders them, explicit zeros kept in AUTO_INCREMENT
// columns, and checks on.
const baselineSQL = "SET SESSION sql_log_bin=0, gtid_domain_id=@@GLOBAL.gtid_domain_id, " + baselineVars

// baselineTxSQL is baselineSQL without what cannot change inside a
// transaction (and that no entry changes): it restores the session after
// a statement's settings, within the batch's transaction.
const baselineTxSQL = "SET SESSION " + baselineVars

const baselineVars = "sql_mode='NO_AUTO_VALUE_ON_ZERO', time_zone='+00:00', " +
	"character_set_client=binary, character_set_connection=binary, character_set_results=binary, " +
	"collation_server=@@GLOBAL.collation_server, foreign_key_checks=1, unique_checks=1, " +
	"timestamp=DEFAULT, insert_id=0, auto_increment_increment=1, auto_increment_offset=1"

// stmt adds one statement. A statement whose affected-row count must be
// expect is followed by a check that raises an error otherwise, so the
// server stops there and the COMMIT at the end never runs: a whole batch
// goes in one round trip, and a mismatch still rolls it back. (IF …
// SIGNAL outside a stored program is MariaDB's.)
func (w *txWriter) stmt(sql []byte, expect int64) {
	var check []byte
	if expect != noCheck {
		errno, what := rowMismatchErrno, fmt.Sprintf("offset %d: a statement matched other than %d rows", w.offset, expect)
		if w.guard {
			errno, what = positionErrno, "position moved"
			w.guard = false
		}
		check = fmt.Appendf(nil, "IF ROW_COUNT()<>%d THEN SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO=%d, MESSAGE_TEXT='%s%s'; END IF",
			expect, errno, signalPrefix, what)
	}
	if len(w.cur.sql) > 0 && len(w.cur.sql)+len(sql)+len(check) > w.maxChunk {
		w.flush()
	}
	if len(w.cur.sql) > 0 {
		w.cur.sql = append(w.cur.sql, ';')
	}
	w.cur.sql = append(w.cur.sql, sql...)
	w.cur.expect = append(w.cur.expect, expect)
	w.cur.offsets = append(w.cur.offsets, w.offset)
	if check != nil {
		w.cur.sql = append(append(w.cur.sql, ';'), check...)
		w.cur.expect = append(w.cur.expect, noCheck)
		w.cur.offsets = append(w.cur.offsets, w.offset)
	}
}

// The errors the checks raise: ER_KEY_NOT_FOUND for a row the follower
// lacks, as a native replica reports it, and ER_SIGNAL_EXCEPTION for the
// position guard; their messages begin with signalPrefix.
const (
	rowMismatchErrno = 1032
	positionErrno    = 1644
	signalPrefix     = "replicar: "
)

func (w *txWriter) flush() {
	if len(w.cur.sql) > 0 {
		w.chunks = append(w.chunks, w.cur)
	}
	w.cur = chunk{}
}

// begin opens the transaction and moves the position from from to to,
// refusing (0 rows) if the store's position is not from.
func (w *txWriter) begin(from, to backlog.Position) {
	w.stmt([]byte("START TRANSACTION"), noCheck)
	w.guard = true
	w.stmt(positionUpdate(from, to, ""), 1)
}

// positionUpdate moves the marker from from to to; extra is more SET
// assignments.
func positionUpdate(from, to backlog.Position, extra string) []byte {
	q := fmt.Sprintf("UPDATE %s SET `epoch`=%d,`offset`=%d,`ddl_offset`=0%s WHERE `id`=1 AND `epoch`=%d AND `offset`=%d AND `state`=''",
		posTable, to.Epoch, to.Offset, extra, from.Epoch, from.Offset)
	return []byte(q)
}

// changes renders a transaction's changes, from index first on.
func (w *txWriter) changes(t *rowlog.Txn, first int) error {
	for i := first; i < len(t.Changes); i++ {
		c := t.Changes[i]
		if c.Stmt != nil {
			if err := w.statement(c.Stmt); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			continue
		}
		if w.dirty {
			w.stmt([]byte(baselineTxSQL), noCheck)
			w.dirty = false
		}
		if err := w.rows(t, c.Rows); err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
	}
	return nil
}

// statement renders a statement with its session settings.
func (w *txWriter) statement(s *rowlog.Statement) error {
	set, use, err := sessionSQL(w.env, &s.Session)
	if err != nil {
		return err
	}
	if use != "" {
		w.stmt([]byte(use), noCheck)
	}
	if set != "" {
		w.stmt([]byte(set), noCheck)
	}
	w.dirty = true
	w.stmt([]byte(s.SQL), noCheck)
	w.cur.loose = true
	return nil
}

// sessionSQL renders the SET for a statement's session (empty if nothing
// is set) and its USE (empty without a schema).
func sessionSQL(e *env, s *rowlog.Session) (set, use string, err error) {
	var b []byte
	add := func(format string, args ...any) {
		if len(b) == 0 {
			b = append(b, "SET SESSION "...)
		} else {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, format, args...)
	}
	if s.Has&rowlog.HasSchema != 0 && s.Schema != "" {
		use = "USE " + quoteIdent(s.Schema)
	}
	if s.Has&rowlog.HasSQLMode != 0 {
		add("sql_mode=%s", quoteString(nil, "", []byte(s.SQLMode)))
	} else if s.Has&rowlog.HasSQLModeBits != 0 {
		add("sql_mode=%d", s.SQLModeBits)
	}
	if s.Has&rowlog.HasTimestamp != 0 {
		ts := s.Timestamp
		sign := ""
		if ts < 0 {
			sign, ts = "-", -ts
		}
		add("timestamp=%s%d.%06d", sign, ts/1_000_000, ts%1_000_000)
	}
	if s.Has&rowlog.HasInsertID != 0 {
		add("insert_id=%d", s.InsertID)
	}
	if s.Has&rowlog.HasLastInsertID != 0 {
		add("last_insert_id=%d", s.LastInsertID)
	}
	if s.Has&rowlog.HasRandSeed != 0 {
		add("rand_seed1=%d,rand_seed2=%d", s.RandSeed1, s.RandSeed2)
	}
	if s.Has&rowlog.HasCharset != 0 {
		cs, ok1 := e.charsets[s.CharsetClient]
		conn, ok2 := e.collations[s.CollationConnection]
		srv, ok3 := e.collations[s.CollationServer]
		if !ok1 || !ok2 || !ok3 {
			return "", "", fmt.Errorf("unknown collation id in %d/%d/%d", s.CharsetClient, s.CollationConnection, s.CollationServer)
		}
		add("character_set_client=%s,collation_connection=%s,collation_server=%s", cs, conn, srv)
	}
	if s.Has&rowlog.HasTimeZone != 0 {
		add("time_zone=%s", quoteString(nil, "", []byte(s.TimeZone)))
	}
	if s.Has&rowlog.HasForeignKeyChecks != 0 {
		add("foreign_key_checks=%d", boolInt(s.ForeignKeyChecks))
	}
	if s.Has&rowlog.HasUniqueChecks != 0 {
		add("unique_checks=%d", boolInt(s.UniqueChecks))
	}
	if s.Has&rowlog.HasAutoInc != 0 {
		add("auto_increment_increment=%d,auto_increment_offset=%d", s.AutoIncIncrement, s.AutoIncOffset)
	}
	return string(b), use, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maxStatement is the size past which a multi-row INSERT is split.
const maxStatement = 1 << 20

// rows renders one rows change: a multi-row INSERT, or one UPDATE or
// DELETE per row, each of which must match exactly one row (a row the
// follower lacks means it has diverged).
func (w *txWriter) rows(t *rowlog.Txn, r *rowlog.Rows) error {
	tb := &t.Tables[r.Table]
	name := quoteIdent(tb.Schema) + "." + quoteIdent(tb.Name)
	fk := r.Flags&rowlog.FlagNoForeignKeyChecks == 0
	uq := r.Flags&rowlog.FlagRelaxedUniqueChecks == 0
	if !fk || !uq {
		w.stmt(fmt.Appendf(nil, "SET SESSION foreign_key_checks=%d,unique_checks=%d", boolInt(fk), boolInt(uq)), noCheck)
		w.dirty = true
	}
	genCols := w.env.generatedCols(tb)
	gen := func(c int) bool { return genCols[c] }
	switch r.Op {
	case rowlog.Insert:
		var cols []int // indexes into AfterCols
		for i, c := range r.AfterCols {
			if !gen(c) {
				cols = append(cols, i)
			}
		}
		if len(cols) == 0 {
			return fmt.Errorf("%s: insert with no stored column", name)
		}
		head := []byte("INSERT INTO " + name + " (")
		for j, i := range cols {
			if j > 0 {
				head = append(head, ',')
			}
			head = append(head, quoteIdent(tb.Columns[r.AfterCols[i]].Name)...)
		}
		head = append(head, ") VALUES "...)
		var q []byte
		n := int64(0)
		for _, row := range r.Rows {
			if len(q) == 0 {
				q = append(q, head...)
			} else {
				q = append(q, ',')
			}
			q = append(q, '(')
			for j, i := range cols {
				if j > 0 {
					q = append(q, ',')
				}
				var err error
				if q, err = w.literal(q, &tb.Columns[r.AfterCols[i]], row.After[i]); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			q = append(q, ')')
			n++
			if len(q) >= maxStatement {
				w.stmt(q, n)
				q, n = nil, 0
			}
		}
		if n > 0 {
			w.stmt(q, n)
		}
	case rowlog.Update:
		for _, row := range r.Rows {
			q := []byte("UPDATE " + name + " SET ")
			set := 0
			for i, c := range r.AfterCols {
				if gen(c) {
					continue
				}
				if j := indexOf(r.BeforeCols, c); j >= 0 && row.Before[j].Equal(row.After[i]) {
					continue
				}
				var err error
				if q, err = w.assign(q, set > 0, &tb.Columns[c], row.After[i]); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				set++
			}
			if set == 0 {
				// Nothing changed, yet the row must exist: assign a column
				// its own value, which matches it without changing it.
				for i, c := range r.AfterCols {
					if !gen(c) {
						var err error
						if q, err = w.assign(q, false, &tb.Columns[c], row.After[i]); err != nil {
							return fmt.Errorf("%s: %w", name, err)
						}
						set++
						break
					}
				}
				if set == 0 {
					return fmt.Errorf("%s: update with no stored column", name)
				}
			}
			var err error
			if q, err = w.where(q, tb, r.BeforeCols, row.Before, gen); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			w.stmt(q, 1)
		}
	case rowlog.Delete:
		for _, row := range r.Rows {
			q := []byte("DELETE FROM " + name)
			var err error
			if q, err = w.where(q, tb, r.BeforeCols, row.Before, gen); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			w.stmt(q, 1)
		}
	default:
		return fmt.Errorf("%s: op %v", name, r.Op)
	}
	return nil
}

func (w *txWriter) assign(q []byte, comma bool, c *rowlog.Column, v rowlog.Value) ([]byte, error) {
	if comma {
		q = append(q, ',')
	}
	q = append(q, quoteIdent(c.Name)...)
	q = append(q, '=')
	return w.literal(q, c, v)
}

// where renders the clause that finds a row by its before image: by the
// primary key when the image holds all of it, else by every stored column
// compared byte for byte (a case-insensitive match could pick another
// row). LIMIT 1, as a table without a key may hold duplicates, any of
// which will do.
func (w *txWriter) where(q []byte, tb *rowlog.Table, cols []int, vals []rowlog.Value, gen func(int) bool) ([]byte, error) {
	q = append(q, " WHERE "...)
	byKey := len(tb.PrimaryKey) > 0
	for _, k := range tb.PrimaryKey {
		if indexOf(cols, k) < 0 {
			byKey = false
		}
	}
	n := 0
	var err error
	if byKey {
		for _, k := range tb.PrimaryKey {
			if n > 0 {
				q = append(q, " AND "...)
			}
			c := &tb.Columns[k]
			q = append(q, quoteIdent(c.Name)...)
			q = append(q, "<=>"...)
			if q, err = w.literal(q, c, vals[indexOf(cols, k)]); err != nil {
				return nil, err
			}
			n++
		}
	} else {
		for i, k := range cols {
			if gen(k) {
				continue
			}
			if n > 0 {
				q = append(q, " AND "...)
			}
			c := &tb.Columns[k]
			if vals[i].Kind == rowlog.Bytes && c.Collation != 0 && c.Collation != binaryCollation {
				q = append(q, "CAST("...)
				q = append(q, quoteIdent(c.Name)...)
				q = append(q, " AS BINARY)<=>"...)
				q = quoteString(q, "_binary", vals[i].Bytes)
			} else {
				q = append(q, quoteIdent(c.Name)...)
				q = append(q, "<=>"...)
				if q, err = w.literal(q, c, vals[i]); err != nil {
					return nil, err
				}
			}
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no column to find the row by")
	}
	return append(q, " LIMIT 1"...), nil
}

func indexOf(xs []int, x int) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// binaryCollation is the id of the binary pseudo-collation.
const binaryCollation = 63

// literal renders v as an SQL literal for column c. Floats are written in
// exponent form so that the server parses them as DOUBLE (a FLOAT's value
// is exactly a double); strings carry their column's character set, so
// they are taken byte for byte whatever the session's.
func (w *txWriter) literal(q []byte, c *rowlog.Column, v rowlog.Value) ([]byte, error) {
	switch v.Kind {
	case rowlog.Null:
		return append(q, "NULL"...), nil
	case rowlog.Int:
		return strconv.AppendInt(q, v.Int, 10), nil
	case rowlog.Uint:
		// BIT, SET and ENUM take a number as their bits, bitmap or index.
		return strconv.AppendUint(q, v.Uint, 10), nil
	case rowlog.Float32, rowlog.Float64:
		start := len(q)
		q = strconv.AppendFloat(q, v.Float, 'g', -1, 64)
		if !bytes.ContainsAny(q[start:], "eE") {
			q = append(q, "e0"...)
		}
		return q, nil
	case rowlog.Decimal:
		if !isDecimal(v.Bytes) {
			return nil, fmt.Errorf("column %s: bad decimal %q", c.Name, v.Bytes)
		}
		return append(q, v.Bytes...), nil
	case rowlog.Temporal:
		return quoteString(q, "", v.Bytes), nil
	case rowlog.Bytes:
		cs := "binary"
		if c.Collation != 0 && c.Collation != binaryCollation {
			name, ok := w.env.charsets[c.Collation]
			if !ok {
				return nil, fmt.Errorf("column %s: collation %d unknown to the target", c.Name, c.Collation)
			}
			cs = name
		}
		return quoteString(q, "_"+cs, v.Bytes), nil
	}
	return nil, fmt.Errorf("column %s: value kind %v", c.Name, v.Kind)
}

// isDecimal accepts [-]digits[.digits], the form go-mysql renders.
func isDecimal(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	digits, dot := 0, false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

// quoteString appends a string literal with an optional introducer
// ("_binary", "_utf8mb4"). It escapes for a session whose
// character_set_client is binary and whose sql_mode lacks
// NO_BACKSLASH_ESCAPES, as the apply session's.
func quoteString(q []byte, introducer string, s []byte) []byte {
	q = append(q, introducer...)
	q = append(q, '\'')
	for _, c := range s {
		switch c {
		case 0:
			q = append(q, '\\', '0')
		case '\n':
			q = append(q, '\\', 'n')
		case '\r':
			q = append(q, '\\', 'r')
		case 0x1a:
			q = append(q, '\\', 'Z')
		case '\\', '\'':
			q = append(q, '\\', c)
		default:
			q = append(q, c)
		}
	}
	return append(q, '\'')
}

// quoteIdent quotes an identifier with backticks.
func quoteIdent(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '`')
	for i := 0; i < len(s); i++ {
		if s[i] == '`' {
			b = append(b, '`')
		}
		b = append(b, s[i])
	}
	return string(append(b, '`'))
}
