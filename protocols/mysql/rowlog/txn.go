package rowlog

import (
	"fmt"
	"math"
)

// Kind says how a follower applies a transaction.
type Kind uint8

const (
	// KindTx is a transaction: its changes are applied together, in one
	// backend transaction (with the follower's position).
	KindTx Kind = 1
	// KindDDL is one statement that commits on its own (DDL, or any
	// statement the source logged outside a transaction): it cannot share a
	// transaction with the position, so the follower applies it alone.
	KindDDL Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindTx:
		return "tx"
	case KindDDL:
		return "ddl"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Txn is the payload of one backlog entry: one committed transaction of
// the primary, as the binlog (row mode) or the front end (statement mode)
// saw it.
type Txn struct {
	Kind Kind
	// GTID is the source transaction's GTID ("0-1001-57" on MariaDB); empty
	// in statement mode.
	GTID string
	// Position is the source's GTID position once this transaction is
	// included: where a capture resumes after it (see doc.go).
	Position string
	// Time is when the source committed, in microseconds since the Unix
	// epoch (for lag and logs; statements carry their own timestamp).
	Time int64
	// Tables are the tables the Rows changes refer to by index.
	Tables []Table
	// Changes are applied in order.
	Changes []Change
}

// Table describes a table as the source's binlog described it.
type Table struct {
	Schema  string
	Name    string
	Columns []Column
	// PrimaryKey holds the indexes in Columns of the primary key's
	// columns, in key order; empty if the table has none.
	PrimaryKey []int
}

// Column is one column of a Table.
type Column struct {
	Name string
	// Type is the binlog column type (MYSQL_TYPE_* of go-mysql's mysql
	// package) and Meta its metadata, as in the table map event.
	Type byte
	Meta uint16
	// Unsigned is set for unsigned numeric columns.
	Unsigned bool
	// Collation is the collation id of a character column; 63 (binary)
	// for binary strings; 0 when the column holds no string.
	Collation uint32
}

// Change is one step of a transaction: exactly one of Rows and Stmt is set.
type Change struct {
	Rows *Rows
	Stmt *Statement
}

// Op is what a Rows change does.
type Op uint8

const (
	// Insert rows: each Row has After only.
	Insert Op = 1
	// Update rows: each Row has Before and After.
	Update Op = 2
	// Delete rows: each Row has Before only.
	Delete Op = 3
)

func (o Op) String() string {
	switch o {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Flags of a Rows change, as the source's rows event carried them.
const (
	// FlagNoForeignKeyChecks: the source ran with foreign_key_checks=0.
	FlagNoForeignKeyChecks uint16 = 1 << 0
	// FlagRelaxedUniqueChecks: the source ran with unique_checks=0.
	FlagRelaxedUniqueChecks uint16 = 1 << 1
)

// Rows is one rows event: the same operation on rows of one table.
type Rows struct {
	Op Op
	// Table indexes Txn.Tables.
	Table int
	Flags uint16
	// BeforeCols and AfterCols are the indexes of the columns the before
	// and after images hold, ascending (all of them under
	// binlog_row_image=FULL). BeforeCols is empty for Insert, AfterCols
	// for Delete.
	BeforeCols []int
	AfterCols  []int
	Rows       []Row
}

// Row is one row's images; Before[i] is the value of column BeforeCols[i].
type Row struct {
	Before []Value
	After  []Value
}

// ValueKind says which field of a Value holds it.
type ValueKind uint8

const (
	// Null is SQL NULL.
	Null ValueKind = iota
	// Int is a signed integer (Value.Int): TINYINT … BIGINT, YEAR.
	Int
	// Uint is an unsigned integer (Value.Uint): unsigned integers, BIT,
	// SET bitmaps, ENUM indexes.
	Uint
	// Float32 is a FLOAT (Value.Float holds it exactly).
	Float32
	// Float64 is a DOUBLE (Value.Float).
	Float64
	// Decimal is a DECIMAL in its exact text form (Value.Bytes), such as
	// "-12.340".
	Decimal
	// Bytes is a string or blob (Value.Bytes), in the column's character
	// set.
	Bytes
	// Temporal is a DATE, TIME, DATETIME or TIMESTAMP in text form
	// (Value.Bytes), TIMESTAMPs in UTC: "2024-05-01 12:00:00.250".
	Temporal
	numValueKinds
)

func (k ValueKind) String() string {
	switch k {
	case Null:
		return "null"
	case Int:
		return "int"
	case Uint:
		return "uint"
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Decimal:
		return "decimal"
	case Bytes:
		return "bytes"
	case Temporal:
		return "temporal"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Value is one column value.
type Value struct {
	Kind  ValueKind
	Int   int64
	Uint  uint64
	Float float64
	Bytes []byte
}

// Equal reports whether v and o are the same value (floats bit for bit).
func (v Value) Equal(o Value) bool {
	if v.Kind != o.Kind {
		return false
	}
	switch v.Kind {
	case Int:
		return v.Int == o.Int
	case Uint:
		return v.Uint == o.Uint
	case Float32, Float64:
		return math.Float64bits(v.Float) == math.Float64bits(o.Float)
	case Decimal, Bytes, Temporal:
		return string(v.Bytes) == string(o.Bytes)
	}
	return true
}

// Statement is one SQL statement with the session state it ran in.
type Statement struct {
	SQL     string
	Session Session
}

// Session is the state a statement depends on. Has says which fields are
// set; a field not set leaves the follower's session as it is.
type Session struct {
	Has uint32

	// Schema is the default database (USE).
	Schema string
	// SQLMode is sql_mode as names ("STRICT_TRANS_TABLES,…"), as the front
	// end reads it; SQLModeBits is the numeric form a binlog carries,
	// meaningful to a server of the source's kind only.
	SQLMode     string
	SQLModeBits uint64
	// Timestamp is SET timestamp, in microseconds since the Unix epoch.
	Timestamp int64
	// InsertID, LastInsertID, RandSeed1 and RandSeed2 are the session
	// variables of the same names.
	InsertID     uint64
	LastInsertID uint64
	RandSeed1    uint64
	RandSeed2    uint64
	// CharsetClient, CollationConnection and CollationServer are collation
	// ids: character_set_client (the charset of that collation),
	// collation_connection and collation_server.
	CharsetClient       uint32
	CollationConnection uint32
	CollationServer     uint32
	// TimeZone is time_zone ("SYSTEM", "+00:00", "Europe/Paris").
	TimeZone string
	// ForeignKeyChecks and UniqueChecks are the variables of those names.
	ForeignKeyChecks bool
	UniqueChecks     bool
	// AutoIncIncrement and AutoIncOffset are auto_increment_increment and
	// auto_increment_offset.
	AutoIncIncrement uint32
	AutoIncOffset    uint32
}

// Bits of Session.Has.
const (
	HasSchema uint32 = 1 << iota
	HasSQLMode
	HasSQLModeBits
	HasTimestamp
	HasInsertID
	HasLastInsertID
	HasRandSeed
	HasCharset
	HasTimeZone
	HasForeignKeyChecks
	HasUniqueChecks
	HasAutoInc
	hasAll = 1<<iota - 1
)
