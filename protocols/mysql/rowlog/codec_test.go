package rowlog

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
)

// sampleTxns covers every kind of change, value and session field.
func sampleTxns() []*Txn {
	cols := []Column{
		{Name: "id", Type: 8, Unsigned: true},
		{Name: "name", Type: 15, Meta: 400, Collation: 45},
		{Name: "price", Type: 246, Meta: 10<<8 | 2},
		{Name: "f", Type: 4, Meta: 4},
		{Name: "d", Type: 5, Meta: 8},
		{Name: "at", Type: 18, Meta: 6},
		{Name: "blob", Type: 252, Meta: 2, Collation: 63},
		{Name: "n", Type: 3},
	}
	row := func(id uint64, name string) []Value {
		return []Value{
			{Kind: Uint, Uint: id},
			{Kind: Bytes, Bytes: []byte(name)},
			{Kind: Decimal, Bytes: []byte("-12.30")},
			{Kind: Float32, Float: float64(float32(1.1))},
			{Kind: Float64, Float: math.Copysign(0, -1)},
			{Kind: Temporal, Bytes: []byte("2024-05-01 12:00:00.250000")},
			{Kind: Bytes, Bytes: []byte{0, 1, 2, 0xff, '\'', '\\'}},
			{Kind: Int, Int: math.MinInt64},
		}
	}
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	tx := &Txn{
		Kind: KindTx, GTID: "0-1001-57", Position: "0-1001-57,1-2-3", Time: 1714564800123456,
		Tables: []Table{{Schema: "shop", Name: "items", Columns: cols, PrimaryKey: []int{0}},
			{Schema: "shop", Name: "nokey", Columns: cols[:2]}},
		Changes: []Change{
			{Rows: &Rows{Op: Insert, Table: 0, AfterCols: all, Rows: []Row{{After: row(1, "a")}, {After: row(2, "b")}}}},
			{Rows: &Rows{Op: Update, Table: 0, Flags: FlagNoForeignKeyChecks, BeforeCols: all, AfterCols: []int{0, 1},
				Rows: []Row{{Before: row(1, "a"), After: []Value{{Kind: Uint, Uint: 1}, {Kind: Null}}}}}},
			{Rows: &Rows{Op: Delete, Table: 1, BeforeCols: []int{0, 1}, Rows: []Row{{Before: []Value{{Kind: Uint, Uint: 9}, {Kind: Null}}}}}},
			{Stmt: &Statement{SQL: "SAVEPOINT a"}},
		},
	}
	ddl := &Txn{
		Kind: KindDDL, GTID: "0-1001-58", Position: "0-1001-58",
		Changes: []Change{{Stmt: &Statement{SQL: "ALTER TABLE shop.items ADD COLUMN c INT", Session: Session{
			Has:    HasSchema | HasSQLModeBits | HasTimestamp | HasCharset | HasTimeZone | HasForeignKeyChecks | HasUniqueChecks,
			Schema: "shop", SQLModeBits: 1411383296, Timestamp: 1714564800123456,
			CharsetClient: 33, CollationConnection: 33, CollationServer: 45, TimeZone: "SYSTEM",
			ForeignKeyChecks: true, UniqueChecks: true,
		}}}},
	}
	stmts := &Txn{
		Kind: KindTx,
		Changes: []Change{
			{Stmt: &Statement{SQL: "INSERT INTO t (v) VALUES (RAND())", Session: Session{
				Has:    HasSchema | HasSQLMode | HasTimestamp | HasInsertID | HasLastInsertID | HasRandSeed | HasAutoInc,
				Schema: "app", SQLMode: "STRICT_TRANS_TABLES", Timestamp: -5, InsertID: 7, LastInsertID: 6,
				RandSeed1: 123, RandSeed2: 456, AutoIncIncrement: 1, AutoIncOffset: 1,
			}}},
			{Stmt: &Statement{SQL: "UPDATE t SET at = NOW()", Session: Session{Has: HasTimestamp, Timestamp: 1}}},
		},
	}
	return []*Txn{tx, ddl, stmts, {Kind: KindTx}}
}

func TestCodecRoundTrip(t *testing.T) {
	for i, tx := range sampleTxns() {
		b, err := Encode(tx)
		if err != nil {
			t.Fatalf("txn %d: encode: %v", i, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("txn %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, tx) {
			t.Fatalf("txn %d: round trip:\n got %+v\nwant %+v", i, got, tx)
		}
		h, err := DecodeHeader(b)
		if err != nil || h.GTID != tx.GTID || h.Position != tx.Position || h.Kind != tx.Kind || h.Time != tx.Time {
			t.Fatalf("txn %d: header %+v, %v", i, h, err)
		}
		// Every strict prefix is refused, never misread.
		for n := 0; n < len(b); n++ {
			if _, err := Decode(b[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("txn %d: prefix of %d bytes: %v", i, n, err)
			}
		}
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	tb := []Table{{Name: "t", Columns: []Column{{Name: "a"}, {Name: "b"}}}}
	cases := map[string]*Txn{
		"kind":          {Kind: 9},
		"ddl no stmt":   {Kind: KindDDL},
		"both":          {Kind: KindTx, Changes: []Change{{Stmt: &Statement{}, Rows: &Rows{}}}},
		"neither":       {Kind: KindTx, Changes: []Change{{}}},
		"table index":   {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Insert, Table: 1, AfterCols: []int{0}}}}},
		"insert before": {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Insert, BeforeCols: []int{0}, AfterCols: []int{0}}}}},
		"update no aft": {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Update, BeforeCols: []int{0}}}}},
		"cols order":    {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Insert, AfterCols: []int{1, 0}}}}},
		"cols range":    {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Insert, AfterCols: []int{2}}}}},
		"row width": {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Insert, AfterCols: []int{0},
			Rows: []Row{{After: []Value{{}, {}}}}}}}},
		"nan": {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Insert, AfterCols: []int{0},
			Rows: []Row{{After: []Value{{Kind: Float64, Float: math.NaN()}}}}}}}},
		"float32 inexact": {Kind: KindTx, Tables: tb, Changes: []Change{{Rows: &Rows{Op: Insert, AfterCols: []int{0},
			Rows: []Row{{After: []Value{{Kind: Float32, Float: 0.1}}}}}}}},
		"pk range":     {Kind: KindTx, Tables: []Table{{Name: "t", PrimaryKey: []int{0}}}},
		"session bits": {Kind: KindTx, Changes: []Change{{Stmt: &Statement{Session: Session{Has: 1 << 30}}}}},
	}
	for name, tx := range cases {
		if _, err := Encode(tx); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := Encode(sampleTxns()[1])
	if err != nil {
		t.Fatal(err)
	}
	version := bytes.Clone(good)
	version[2] = 2
	if _, err := Decode(version); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 2: %v", err)
	}
	cases := map[string][]byte{
		"empty":    nil,
		"magic":    append([]byte("XX"), good[2:]...),
		"kind":     append([]byte{'R', 'L', 1, 7}, good[4:]...),
		"trailing": append(bytes.Clone(good), 0),
		// The GTID's length as a padded varint: 0x89 0x00 instead of 0x09.
		"padded": append([]byte{'R', 'L', 1, 2, 0x89, 0x00}, good[5:]...),
		// A table count larger than the payload could hold.
		"count": {'R', 'L', 1, 1, 0, 0, 0, 0xff, 0xff, 0x03},
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecode feeds Decode arbitrary bytes: it must never panic, and what
// it accepts must re-encode to exactly the same bytes and decode again to
// the same transaction.
func FuzzDecode(f *testing.F) {
	for _, tx := range sampleTxns() {
		b, err := Encode(tx)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{'R', 'L', 1, 1, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := Decode(b)
		if _, herr := DecodeHeader(b); err == nil && herr != nil {
			t.Fatalf("Decode accepts what DecodeHeader refuses: %v", herr)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		again, err := Encode(tx)
		if err != nil {
			t.Fatalf("decoded transaction does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
		tx2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(tx, tx2) {
			t.Fatalf("second decode: %v", err)
		}
	})
}
