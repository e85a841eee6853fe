package rowlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// InternalSchema is the schema replicar keeps its own tables in, on every
// backend. Nothing in it is ever captured.
const InternalSchema = "__replicar"

// Errors of the capture that retrying cannot cure.
var (
	// ErrUnsupported means the binlog holds something row capture cannot
	// turn into an entry (XA transactions, statement-format events that
	// need user variables or LOAD DATA files, partial JSON updates).
	ErrUnsupported = errors.New("rowlog: unsupported binlog content")
	// ErrNoRowMetadata means a table map event lacks column names: the
	// server does not log binlog_row_metadata=FULL.
	ErrNoRowMetadata = errors.New("rowlog: binlog has no column names (set binlog_row_metadata=FULL)")
)

// MariaDB GTID event flags that go-mysql does not name.
const (
	flPreparedXA  = 64
	flCompletedXA = 128
)

// Rows event flags (Rows_log_event in sql/log_event.h).
const (
	rowsNoForeignKeyChecks  = 0x02
	rowsRelaxedUniqueChecks = 0x04
)

// group is one completed event group (transaction) of the binlog.
type group struct {
	// txn is nil when nothing in the group is captured (only changes to
	// InternalSchema, or an ignored domain).
	txn      *Txn
	gtid     string
	position string
}

// assembler turns binlog events into transactions. It is pure (no I/O),
// and fed one event at a time in binlog order.
type assembler struct {
	ignore map[uint32]bool
	// pos is the GTID position after the last complete group.
	pos *mysql.MariadbGTIDSet

	in         bool
	gtid       mysql.MariadbGTID
	flags      byte
	skip       bool
	txn        Txn
	tables     map[string]int
	pendingSes Session // INTVAR/RAND values for the next statement
}

func newAssembler(start *mysql.MariadbGTIDSet, ignore []uint32) *assembler {
	a := &assembler{pos: start, ignore: map[uint32]bool{}}
	for _, d := range ignore {
		a.ignore[d] = true
	}
	return a
}

// reset drops a group in progress, as after a reconnect: the stream starts
// again after pos.
func (a *assembler) reset() {
	a.in = false
	a.txn = Txn{}
	a.tables = nil
	a.pendingSes = Session{}
}

// feed takes the next event and returns the group it completes, if any.
func (a *assembler) feed(ev *replication.BinlogEvent) (*group, error) {
	h := ev.Header
	switch e := ev.Event.(type) {
	case *replication.MariadbGTIDEvent:
		if a.in {
			return nil, fmt.Errorf("rowlog: gtid %s begins inside group %s", gtidString(e.GTID), gtidString(a.gtid))
		}
		if e.Flags&(flPreparedXA|flCompletedXA) != 0 {
			return nil, fmt.Errorf("%w: XA transaction %s", ErrUnsupported, gtidString(e.GTID))
		}
		a.in = true
		a.gtid = e.GTID
		a.flags = e.Flags
		a.skip = a.ignore[e.GTID.DomainID]
		a.txn = Txn{Kind: KindTx, GTID: gtidString(e.GTID), Time: int64(h.Timestamp) * 1_000_000}
		a.tables = nil
		a.pendingSes = Session{}
		return nil, nil
	case *replication.XIDEvent:
		if !a.in {
			return nil, errors.New("rowlog: xid event outside a group")
		}
		return a.finish(h)
	case *replication.QueryEvent:
		if !a.in {
			return nil, fmt.Errorf("rowlog: query outside a group: %.80q", e.Query)
		}
		return a.query(h, e)
	case *replication.RowsEvent:
		if !a.in {
			return nil, errors.New("rowlog: rows event outside a group")
		}
		if a.skip {
			return nil, nil
		}
		return nil, a.rows(h, e)
	case *replication.IntVarEvent:
		switch e.Type {
		case replication.INSERT_ID:
			a.pendingSes.Has |= HasInsertID
			a.pendingSes.InsertID = e.Value
		case replication.LAST_INSERT_ID:
			a.pendingSes.Has |= HasLastInsertID
			a.pendingSes.LastInsertID = e.Value
		}
		return nil, nil
	case *replication.GenericEvent:
		switch h.EventType {
		case replication.RAND_EVENT:
			if len(e.Data) < 16 {
				return nil, errors.New("rowlog: short rand event")
			}
			a.pendingSes.Has |= HasRandSeed
			a.pendingSes.RandSeed1 = binary.LittleEndian.Uint64(e.Data)
			a.pendingSes.RandSeed2 = binary.LittleEndian.Uint64(e.Data[8:])
		case replication.USER_VAR_EVENT:
			return nil, fmt.Errorf("%w: user variable in statement-format event of %s", ErrUnsupported, gtidString(a.gtid))
		case replication.XA_PREPARE_LOG_EVENT:
			return nil, fmt.Errorf("%w: XA PREPARE in %s", ErrUnsupported, gtidString(a.gtid))
		}
		return nil, nil
	case *replication.BeginLoadQueryEvent, *replication.ExecuteLoadQueryEvent:
		return nil, fmt.Errorf("%w: LOAD DATA in statement format in %s", ErrUnsupported, gtidString(a.gtid))
	}
	// Rotations, format descriptions, GTID lists, checkpoints, heartbeats,
	// annotations and table maps (rows events carry theirs) change nothing.
	return nil, nil
}

func (a *assembler) query(h *replication.EventHeader, e *replication.QueryEvent) (*group, error) {
	q := string(e.Query)
	standalone := a.flags&replication.BINLOG_MARIADB_FL_STANDALONE != 0
	switch {
	case strings.EqualFold(q, "BEGIN"):
		return nil, nil
	case !standalone && (strings.EqualFold(q, "COMMIT") || strings.EqualFold(q, "ROLLBACK")):
		// A ROLLBACK ends a group whose non-transactional changes stayed
		// on the source, as they are applied here.
		return a.finish(h)
	}
	schema := string(e.Schema)
	st := parseQueryStatus(e.StatusVars)
	ses := st.session(schema, h.Timestamp)
	if st.hasMicros {
		a.txn.Time = ses.Timestamp
	}
	ses.Has |= a.pendingSes.Has
	ses.InsertID, ses.LastInsertID = a.pendingSes.InsertID, a.pendingSes.LastInsertID
	ses.RandSeed1, ses.RandSeed2 = a.pendingSes.RandSeed1, a.pendingSes.RandSeed2
	a.pendingSes = Session{}
	internal := schema == InternalSchema || MentionsInternal(q)
	if !a.skip && !internal {
		if len(a.txn.Changes) == 0 && (standalone || a.flags&replication.BINLOG_MARIADB_FL_DDL != 0) {
			// DDL, or a statement that commits on its own: CREATE TABLE …
			// SELECT logs the CREATE first and its rows after, in one group.
			a.txn.Kind = KindDDL
		}
		a.txn.Changes = append(a.txn.Changes, Change{Stmt: &Statement{SQL: q, Session: ses}})
	}
	if standalone {
		return a.finish(h)
	}
	return nil, nil
}

func (a *assembler) rows(h *replication.EventHeader, e *replication.RowsEvent) error {
	tm := e.Table
	if tm == nil {
		return errors.New("rowlog: rows event without its table map")
	}
	if string(tm.Schema) == InternalSchema {
		return nil
	}
	var op Op
	switch e.Type() {
	case replication.EnumRowsEventTypeInsert:
		op = Insert
	case replication.EnumRowsEventTypeUpdate:
		op = Update
	case replication.EnumRowsEventTypeDelete:
		op = Delete
	default:
		return fmt.Errorf("%w: rows event type %v", ErrUnsupported, h.EventType)
	}
	if h.EventType == replication.PARTIAL_UPDATE_ROWS_EVENT {
		return fmt.Errorf("%w: partial JSON update of %s.%s", ErrUnsupported, tm.Schema, tm.Table)
	}
	ti, err := a.table(tm)
	if err != nil {
		return err
	}
	tb := &a.txn.Tables[ti]
	r := &Rows{Op: op, Table: ti}
	if e.Flags&rowsNoForeignKeyChecks != 0 {
		r.Flags |= FlagNoForeignKeyChecks
	}
	if e.Flags&rowsRelaxedUniqueChecks != 0 {
		r.Flags |= FlagRelaxedUniqueChecks
	}
	ncols := int(e.ColumnCount)
	if ncols != len(tb.Columns) {
		return fmt.Errorf("rowlog: %s.%s: rows event has %d columns, table map %d", tb.Schema, tb.Name, ncols, len(tb.Columns))
	}
	first := presentCols(e.ColumnBitmap1, ncols)
	var second []int
	if op == Update {
		second = presentCols(e.ColumnBitmap2, ncols)
	}
	switch op {
	case Insert:
		r.AfterCols = first
	case Delete:
		r.BeforeCols = first
	case Update:
		r.BeforeCols, r.AfterCols = first, second
	}
	step := 1
	if op == Update {
		step = 2
	}
	if len(e.Rows)%step != 0 {
		return fmt.Errorf("rowlog: %s.%s: odd number of update images", tb.Schema, tb.Name)
	}
	r.Rows = make([]Row, 0, len(e.Rows)/step)
	for i := 0; i < len(e.Rows); i += step {
		var row Row
		var err error
		switch op {
		case Insert:
			row.After, err = values(tb, e.Rows[i], r.AfterCols)
		case Delete:
			row.Before, err = values(tb, e.Rows[i], r.BeforeCols)
		case Update:
			row.Before, err = values(tb, e.Rows[i], r.BeforeCols)
			if err == nil {
				row.After, err = values(tb, e.Rows[i+1], r.AfterCols)
			}
		}
		if err != nil {
			return fmt.Errorf("rowlog: %s.%s: %w", tb.Schema, tb.Name, err)
		}
		r.Rows = append(r.Rows, row)
	}
	if len(r.Rows) > 0 {
		a.txn.Changes = append(a.txn.Changes, Change{Rows: r})
	}
	return nil
}

// presentCols lists the columns a row image bitmap includes; a nil bitmap
// (go-mysql leaves it so for a full image) includes them all.
func presentCols(bitmap []byte, n int) []int {
	cols := make([]int, 0, n)
	for i := 0; i < n; i++ {
		if bitmap == nil || (i>>3 < len(bitmap) && bitmap[i>>3]&(1<<(uint(i)&7)) != 0) {
			cols = append(cols, i)
		}
	}
	return cols
}

// table returns the index in the transaction's tables of tm's table,
// adding it the first time.
func (a *assembler) table(tm *replication.TableMapEvent) (int, error) {
	key := string(tm.Schema) + "\x00" + string(tm.Table)
	if i, ok := a.tables[key]; ok {
		return i, nil
	}
	n := int(tm.ColumnCount)
	if len(tm.ColumnName) != n {
		return 0, fmt.Errorf("%w: table %s.%s", ErrNoRowMetadata, tm.Schema, tm.Table)
	}
	unsigned := tm.UnsignedMap()
	collations := tm.CollationMap()
	tb := Table{Schema: string(tm.Schema), Name: string(tm.Table), Columns: make([]Column, n)}
	for i := range n {
		c := &tb.Columns[i]
		c.Name = string(tm.ColumnName[i])
		c.Type = tm.ColumnType[i]
		c.Meta = tm.ColumnMeta[i]
		c.Unsigned = unsigned[i]
		c.Collation = uint32(collations[i])
		if c.Type == mysql.MYSQL_TYPE_JSON {
			c.Collation = 46 // MySQL's binary JSON arrives as utf8mb4 text
		}
	}
	for _, k := range tm.PrimaryKey {
		if int(k) >= n {
			return 0, fmt.Errorf("rowlog: %s.%s: key column %d of %d", tm.Schema, tm.Table, k, n)
		}
		tb.PrimaryKey = append(tb.PrimaryKey, int(k))
	}
	if a.tables == nil {
		a.tables = map[string]int{}
	}
	a.txn.Tables = append(a.txn.Tables, tb)
	a.tables[key] = len(a.txn.Tables) - 1
	return len(a.txn.Tables) - 1, nil
}

// values converts the columns cols of one decoded row image.
func values(tb *Table, row []any, cols []int) ([]Value, error) {
	out := make([]Value, len(cols))
	for i, c := range cols {
		if c >= len(row) {
			return nil, fmt.Errorf("row image has %d columns, wants column %d", len(row), c)
		}
		v, err := toValue(&tb.Columns[c], row[c])
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", tb.Columns[c].Name, err)
		}
		out[i] = v
	}
	return out, nil
}

// realType is the column's type with ENUM and SET unhidden from STRING.
func realType(c *Column) byte {
	if c.Type == mysql.MYSQL_TYPE_STRING && c.Meta >= 256 {
		if t := byte(c.Meta >> 8); t == mysql.MYSQL_TYPE_ENUM || t == mysql.MYSQL_TYPE_SET {
			return t
		}
	}
	return c.Type
}

// toValue converts a value as go-mysql decodes it.
func toValue(c *Column, x any) (Value, error) {
	typ := realType(c)
	switch v := x.(type) {
	case nil:
		return Value{Kind: Null}, nil
	case int8:
		return intValue(typ, int64(v)), nil
	case int16:
		return intValue(typ, int64(v)), nil
	case int32:
		return intValue(typ, int64(v)), nil
	case int64:
		return intValue(typ, v), nil
	case int:
		return intValue(typ, int64(v)), nil
	case uint8:
		return Value{Kind: Uint, Uint: uint64(v)}, nil
	case uint16:
		return Value{Kind: Uint, Uint: uint64(v)}, nil
	case uint32:
		return Value{Kind: Uint, Uint: uint64(v)}, nil
	case uint64:
		return Value{Kind: Uint, Uint: v}, nil
	case float32:
		return Value{Kind: Float32, Float: float64(v)}, nil
	case float64:
		return Value{Kind: Float64, Float: v}, nil
	case string:
		switch typ {
		case mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_DECIMAL:
			return Value{Kind: Decimal, Bytes: []byte(v)}, nil
		case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE, mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2,
			mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
			return Value{Kind: Temporal, Bytes: []byte(v)}, nil
		}
		return Value{Kind: Bytes, Bytes: []byte(v)}, nil
	case []byte:
		return Value{Kind: Bytes, Bytes: append([]byte(nil), v...)}, nil
	}
	return Value{}, fmt.Errorf("%w: value of type %T for column type %d", ErrUnsupported, x, typ)
}

// intValue keeps signed integers signed, except for the types whose value
// is a bit pattern (BIT, SET) or an index (ENUM), which go-mysql decodes
// as int64 but are unsigned.
func intValue(typ byte, v int64) Value {
	switch typ {
	case mysql.MYSQL_TYPE_BIT, mysql.MYSQL_TYPE_SET, mysql.MYSQL_TYPE_ENUM:
		return Value{Kind: Uint, Uint: uint64(v)}
	}
	return Value{Kind: Int, Int: v}
}

// finish completes the group in progress.
func (a *assembler) finish(h *replication.EventHeader) (*group, error) {
	if err := a.pos.AddSet(&a.gtid); err != nil {
		return nil, fmt.Errorf("rowlog: gtid position: %w", err)
	}
	g := &group{gtid: gtidString(a.gtid), position: a.pos.String()}
	if !a.skip && len(a.txn.Changes) > 0 {
		t := a.txn
		t.Position = g.position
		g.txn = &t
	}
	a.reset()
	return g, nil
}

func gtidString(g mysql.MariadbGTID) string {
	return fmt.Sprintf("%d-%d-%d", g.DomainID, g.ServerID, g.SequenceNumber)
}

// MentionsInternal reports whether a statement names InternalSchema as an
// identifier (`__replicar`.x, __replicar.x, DATABASE __replicar …).
// Statements on replicar's own tables are never captured; a user
// statement would have to use that name in a string literal to be
// mistaken for one.
func MentionsInternal(q string) bool {
	for i := 0; ; {
		j := strings.Index(q[i:], InternalSchema)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(InternalSchema)
		if (j == 0 || !identByte(q[j-1])) && (end == len(q) || !identByte(q[end])) {
			return true
		}
		i = end
	}
}

func identByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
