package rowlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Version is the payload format Encode writes. Decode reads this version
// only; a later format gets a new number, so an old follower refuses an
// entry it cannot read instead of misapplying it.
const Version = 1

// magic opens every payload, so that a payload of another protocol (or a
// wrong offset) is refused at once.
var magic = [2]byte{'R', 'L'}

// Errors of Decode and Encode; test with errors.Is.
var (
	// ErrCorrupt means the payload is not a well-formed encoding.
	ErrCorrupt = errors.New("rowlog: corrupt payload")
	// ErrVersion means the payload has a format version this code does not
	// read.
	ErrVersion = errors.New("rowlog: unknown payload version")
	// ErrInvalid means a Txn given to Encode is inconsistent (an index out
	// of range, images missing for its operation …).
	ErrInvalid = errors.New("rowlog: invalid transaction")
)

// Header is what DecodeHeader reads: the fields before the tables and
// changes.
type Header struct {
	Version  int
	Kind     Kind
	GTID     string
	Position string
	Time     int64
}

// Encode validates t and returns its encoding.
func Encode(t *Txn) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t.appendTo(make([]byte, 0, 256)), nil
}

// Validate checks that t can be encoded and applied: indexes in range,
// column lists ascending, images that fit the operation.
func (t *Txn) Validate() error {
	if t.Kind != KindTx && t.Kind != KindDDL {
		return fmt.Errorf("%w: kind %d", ErrInvalid, t.Kind)
	}
	if t.Kind == KindDDL && (len(t.Changes) == 0 || t.Changes[0].Stmt == nil) {
		return fmt.Errorf("%w: a ddl transaction must begin with its statement", ErrInvalid)
	}
	for i, tb := range t.Tables {
		for _, k := range tb.PrimaryKey {
			if k < 0 || k >= len(tb.Columns) {
				return fmt.Errorf("%w: table %d: key column %d of %d", ErrInvalid, i, k, len(tb.Columns))
			}
		}
	}
	for i, c := range t.Changes {
		if (c.Rows == nil) == (c.Stmt == nil) {
			return fmt.Errorf("%w: change %d: exactly one of rows and statement must be set", ErrInvalid, i)
		}
		if c.Stmt != nil {
			if c.Stmt.Session.Has&^hasAll != 0 {
				return fmt.Errorf("%w: change %d: unknown session bits %#x", ErrInvalid, i, c.Stmt.Session.Has&^hasAll)
			}
			continue
		}
		if err := t.validateRows(c.Rows); err != nil {
			return fmt.Errorf("%w: change %d: %v", ErrInvalid, i, err)
		}
	}
	return nil
}

func (t *Txn) validateRows(r *Rows) error {
	if r.Table < 0 || r.Table >= len(t.Tables) {
		return fmt.Errorf("table %d of %d", r.Table, len(t.Tables))
	}
	ncols := len(t.Tables[r.Table].Columns)
	wantBefore := r.Op == Update || r.Op == Delete
	wantAfter := r.Op == Update || r.Op == Insert
	if r.Op < Insert || r.Op > Delete {
		return fmt.Errorf("op %d", r.Op)
	}
	if err := checkCols(r.BeforeCols, ncols, wantBefore); err != nil {
		return fmt.Errorf("before image: %v", err)
	}
	if err := checkCols(r.AfterCols, ncols, wantAfter); err != nil {
		return fmt.Errorf("after image: %v", err)
	}
	for j, row := range r.Rows {
		if len(row.Before) != len(r.BeforeCols) || len(row.After) != len(r.AfterCols) {
			return fmt.Errorf("row %d: %d/%d values for %d/%d columns", j, len(row.Before), len(row.After), len(r.BeforeCols), len(r.AfterCols))
		}
		for _, img := range [2][]Value{row.Before, row.After} {
			for _, v := range img {
				if err := checkValue(v); err != nil {
					return fmt.Errorf("row %d: %v", j, err)
				}
			}
		}
	}
	return nil
}

// checkCols checks a column list is present exactly when wanted, strictly
// ascending and in range.
func checkCols(cols []int, ncols int, want bool) error {
	if !want {
		if len(cols) != 0 {
			return errors.New("present for an operation without it")
		}
		return nil
	}
	if len(cols) == 0 {
		return errors.New("no columns")
	}
	prev := -1
	for _, c := range cols {
		if c <= prev || c >= ncols {
			return fmt.Errorf("column %d after %d of %d", c, prev, ncols)
		}
		prev = c
	}
	return nil
}

func checkValue(v Value) error {
	switch v.Kind {
	case Float32:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) || float64(float32(v.Float)) != v.Float {
			return fmt.Errorf("float32 value %v", v.Float)
		}
	case Float64:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return fmt.Errorf("float64 value %v", v.Float)
		}
	case Null, Int, Uint, Decimal, Bytes, Temporal:
	default:
		return fmt.Errorf("value kind %d", v.Kind)
	}
	return nil
}

// appendTo encodes a validated t.
func (t *Txn) appendTo(b []byte) []byte {
	b = append(b, magic[0], magic[1], Version, byte(t.Kind))
	b = appendString(b, t.GTID)
	b = appendString(b, t.Position)
	b = binary.AppendVarint(b, t.Time)
	b = binary.AppendUvarint(b, uint64(len(t.Tables)))
	for _, tb := range t.Tables {
		b = appendString(b, tb.Schema)
		b = appendString(b, tb.Name)
		b = binary.AppendUvarint(b, uint64(len(tb.Columns)))
		for _, c := range tb.Columns {
			b = appendString(b, c.Name)
			b = append(b, c.Type)
			b = binary.AppendUvarint(b, uint64(c.Meta))
			b = appendBool(b, c.Unsigned)
			b = binary.AppendUvarint(b, uint64(c.Collation))
		}
		b = appendInts(b, tb.PrimaryKey)
	}
	b = binary.AppendUvarint(b, uint64(len(t.Changes)))
	for _, c := range t.Changes {
		if c.Stmt != nil {
			b = append(b, changeStmt)
			b = appendSession(b, &c.Stmt.Session)
			b = appendString(b, c.Stmt.SQL)
			continue
		}
		r := c.Rows
		b = append(b, changeRows, byte(r.Op))
		b = binary.AppendUvarint(b, uint64(r.Table))
		b = binary.AppendUvarint(b, uint64(r.Flags))
		b = appendInts(b, r.BeforeCols)
		b = appendInts(b, r.AfterCols)
		b = binary.AppendUvarint(b, uint64(len(r.Rows)))
		for _, row := range r.Rows {
			for _, v := range row.Before {
				b = appendValue(b, v)
			}
			for _, v := range row.After {
				b = appendValue(b, v)
			}
		}
	}
	return b
}

const (
	changeRows = 1
	changeStmt = 2
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendInts(b []byte, xs []int) []byte {
	b = binary.AppendUvarint(b, uint64(len(xs)))
	for _, x := range xs {
		b = binary.AppendUvarint(b, uint64(x))
	}
	return b
}

func appendValue(b []byte, v Value) []byte {
	b = append(b, byte(v.Kind))
	switch v.Kind {
	case Int:
		b = binary.AppendVarint(b, v.Int)
	case Uint:
		b = binary.AppendUvarint(b, v.Uint)
	case Float32:
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v.Float)))
	case Float64:
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Float))
	case Decimal, Bytes, Temporal:
		b = appendBytes(b, v.Bytes)
	}
	return b
}

// appendSession writes Has, then each field it names, in bit order.
func appendSession(b []byte, s *Session) []byte {
	b = binary.AppendUvarint(b, uint64(s.Has))
	if s.Has&HasSchema != 0 {
		b = appendString(b, s.Schema)
	}
	if s.Has&HasSQLMode != 0 {
		b = appendString(b, s.SQLMode)
	}
	if s.Has&HasSQLModeBits != 0 {
		b = binary.AppendUvarint(b, s.SQLModeBits)
	}
	if s.Has&HasTimestamp != 0 {
		b = binary.AppendVarint(b, s.Timestamp)
	}
	if s.Has&HasInsertID != 0 {
		b = binary.AppendUvarint(b, s.InsertID)
	}
	if s.Has&HasLastInsertID != 0 {
		b = binary.AppendUvarint(b, s.LastInsertID)
	}
	if s.Has&HasRandSeed != 0 {
		b = binary.AppendUvarint(b, s.RandSeed1)
		b = binary.AppendUvarint(b, s.RandSeed2)
	}
	if s.Has&HasCharset != 0 {
		b = binary.AppendUvarint(b, uint64(s.CharsetClient))
		b = binary.AppendUvarint(b, uint64(s.CollationConnection))
		b = binary.AppendUvarint(b, uint64(s.CollationServer))
	}
	if s.Has&HasTimeZone != 0 {
		b = appendString(b, s.TimeZone)
	}
	if s.Has&HasForeignKeyChecks != 0 {
		b = appendBool(b, s.ForeignKeyChecks)
	}
	if s.Has&HasUniqueChecks != 0 {
		b = appendBool(b, s.UniqueChecks)
	}
	if s.Has&HasAutoInc != 0 {
		b = binary.AppendUvarint(b, uint64(s.AutoIncIncrement))
		b = binary.AppendUvarint(b, uint64(s.AutoIncOffset))
	}
	return b
}

// Decode parses a payload written by Encode. It never panics, and refuses
// anything Encode would not have written (unknown kinds, indexes out of
// range, padded varints, trailing bytes), so that a payload that decodes
// re-encodes to the same bytes.
func Decode(p []byte) (*Txn, error) {
	d := decoder{b: p}
	h, err := d.header()
	if err != nil {
		return nil, err
	}
	t := &Txn{Kind: h.Kind, GTID: h.GTID, Position: h.Position, Time: h.Time}
	ntables := d.count(3) // schema, name and column count take a byte each
	if ntables > 0 {
		t.Tables = make([]Table, ntables)
	}
	for i := range t.Tables {
		tb := &t.Tables[i]
		tb.Schema = d.str()
		tb.Name = d.str()
		ncols := d.count(5)
		if ncols > 0 {
			tb.Columns = make([]Column, ncols)
		}
		for j := range tb.Columns {
			c := &tb.Columns[j]
			c.Name = d.str()
			c.Type = d.byte()
			c.Meta = uint16(d.uvarintMax(math.MaxUint16))
			c.Unsigned = d.bool()
			c.Collation = uint32(d.uvarintMax(math.MaxUint32))
		}
		tb.PrimaryKey = d.ints(ncols)
	}
	nchanges := d.count(2)
	if nchanges > 0 {
		t.Changes = make([]Change, nchanges)
	}
	for i := range t.Changes {
		if d.err != nil {
			break
		}
		switch tag := d.byte(); tag {
		case changeStmt:
			s := &Statement{}
			d.session(&s.Session)
			s.SQL = d.str()
			t.Changes[i].Stmt = s
		case changeRows:
			t.Changes[i].Rows = d.rows(t)
		default:
			d.fail("change %d: tag %d", i, tag)
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return t, nil
}

// DecodeHeader reads only the fields before the tables and changes: a
// node finds the GTID position to resume a capture from in its last
// entry this way.
func DecodeHeader(p []byte) (Header, error) {
	d := decoder{b: p}
	return d.header()
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *decoder) header() (Header, error) {
	if len(d.b) < 4 || d.b[0] != magic[0] || d.b[1] != magic[1] {
		d.fail("no magic")
		return Header{}, d.err
	}
	if d.b[2] != Version {
		return Header{}, fmt.Errorf("%w: %d (this build reads %d)", ErrVersion, d.b[2], Version)
	}
	h := Header{Version: int(d.b[2]), Kind: Kind(d.b[3])}
	d.b = d.b[4:]
	if h.Kind != KindTx && h.Kind != KindDDL {
		d.fail("kind %d", h.Kind)
	}
	h.GTID = d.str()
	h.Position = d.str()
	h.Time = d.varint()
	return h, d.err
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("short")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	// Only the shortest form is accepted, so that decoding is one-to-one.
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("padded varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarintMax(limit uint64) uint64 {
	v := d.uvarint()
	if v > limit {
		d.fail("%d above %d", v, limit)
		return 0
	}
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	// Zigzag, as binary.Varint.
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a length whose elements take at least min bytes each, so a
// corrupt length cannot make Decode allocate more than the payload's size.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/min) {
		d.fail("count %d for %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d for %d bytes", n, len(d.b))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes()) }

// ints reads a list of indexes below limit.
func (d *decoder) ints(limit int) []int {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	xs := make([]int, n)
	for i := range xs {
		xs[i] = int(d.uvarintMax(uint64(limit)))
	}
	return xs
}

func (d *decoder) rows(t *Txn) *Rows {
	r := &Rows{Op: Op(d.byte())}
	r.Table = int(d.uvarintMax(uint64(len(t.Tables))))
	if d.err != nil {
		return r
	}
	if r.Table >= len(t.Tables) {
		d.fail("table %d of %d", r.Table, len(t.Tables))
		return r
	}
	r.Flags = uint16(d.uvarintMax(math.MaxUint16))
	ncols := len(t.Tables[r.Table].Columns)
	r.BeforeCols = d.ints(ncols)
	r.AfterCols = d.ints(ncols)
	per := len(r.BeforeCols) + len(r.AfterCols)
	if per == 0 {
		// Rows of no values would cost no bytes: refuse before count.
		d.fail("rows with no columns")
		return r
	}
	n := d.count(per)
	if n > 0 {
		r.Rows = make([]Row, n)
	}
	for i := range r.Rows {
		row := &r.Rows[i]
		if len(r.BeforeCols) > 0 {
			row.Before = make([]Value, len(r.BeforeCols))
			for j := range row.Before {
				row.Before[j] = d.value()
			}
		}
		if len(r.AfterCols) > 0 {
			row.After = make([]Value, len(r.AfterCols))
			for j := range row.After {
				row.After[j] = d.value()
			}
		}
		if d.err != nil {
			break
		}
	}
	return r
}

func (d *decoder) value() Value {
	v := Value{Kind: ValueKind(d.byte())}
	switch v.Kind {
	case Null:
	case Int:
		v.Int = d.varint()
	case Uint:
		v.Uint = d.uvarint()
	case Float32:
		if len(d.b) < 4 {
			d.fail("short float32")
			break
		}
		v.Float = float64(math.Float32frombits(binary.LittleEndian.Uint32(d.b)))
		d.b = d.b[4:]
	case Float64:
		if len(d.b) < 8 {
			d.fail("short float64")
			break
		}
		v.Float = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
		d.b = d.b[8:]
	case Decimal, Bytes, Temporal:
		v.Bytes = d.bytes()
	default:
		d.fail("value kind %d", v.Kind)
	}
	return v
}

func (d *decoder) session(s *Session) {
	s.Has = uint32(d.uvarintMax(hasAll))
	if s.Has&HasSchema != 0 {
		s.Schema = d.str()
	}
	if s.Has&HasSQLMode != 0 {
		s.SQLMode = d.str()
	}
	if s.Has&HasSQLModeBits != 0 {
		s.SQLModeBits = d.uvarint()
	}
	if s.Has&HasTimestamp != 0 {
		s.Timestamp = d.varint()
	}
	if s.Has&HasInsertID != 0 {
		s.InsertID = d.uvarint()
	}
	if s.Has&HasLastInsertID != 0 {
		s.LastInsertID = d.uvarint()
	}
	if s.Has&HasRandSeed != 0 {
		s.RandSeed1 = d.uvarint()
		s.RandSeed2 = d.uvarint()
	}
	if s.Has&HasCharset != 0 {
		s.CharsetClient = uint32(d.uvarintMax(math.MaxUint32))
		s.CollationConnection = uint32(d.uvarintMax(math.MaxUint32))
		s.CollationServer = uint32(d.uvarintMax(math.MaxUint32))
	}
	if s.Has&HasTimeZone != 0 {
		s.TimeZone = d.str()
	}
	if s.Has&HasForeignKeyChecks != 0 {
		s.ForeignKeyChecks = d.bool()
	}
	if s.Has&HasUniqueChecks != 0 {
		s.UniqueChecks = d.bool()
	}
	if s.Has&HasAutoInc != 0 {
		s.AutoIncIncrement = uint32(d.uvarintMax(math.MaxUint32))
		s.AutoIncOffset = uint32(d.uvarintMax(math.MaxUint32))
	}
}
