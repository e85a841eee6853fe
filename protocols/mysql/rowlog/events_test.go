package rowlog

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

func TestParseQueryStatus(t *testing.T) {
	var b []byte
	b = append(b, qFlags2)
	b = binary.LittleEndian.AppendUint32(b, optionNoForeignKeyChecks)
	b = append(b, qSQLMode)
	b = binary.LittleEndian.AppendUint64(b, 1411383296)
	b = append(b, qCatalogNZ, 3, 's', 't', 'd')
	b = append(b, qAutoIncrement, 2, 0, 1, 0)
	b = append(b, qCharset, 33, 0, 45, 0, 8, 0)
	b = append(b, qTimeZone, 6, '+', '0', '2', ':', '0', '0')
	b = append(b, qLCTimeNames, 0, 0, qCharsetDatabase, 45, 0)
	b = append(b, qInvoker, 4, 'r', 'o', 'o', 't', 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't')
	b = append(b, qUpdatedDBNames, 2, 'a', 0, 'b', 'c', 0)
	b = append(b, qHRNow, 0x40, 0xe2, 0x01) // 123456 µs
	b = append(b, qXID, 1, 2, 3, 4, 5, 6, 7, 8)
	b = append(b, 99, 1, 2, 3) // unknown: parsing stops, keeping the rest
	s := parseQueryStatus(b)
	ses := s.session("db", 1700000000)
	want := Session{
		Has:    HasSchema | HasTimestamp | HasSQLModeBits | HasCharset | HasTimeZone | HasForeignKeyChecks | HasUniqueChecks | HasAutoInc,
		Schema: "db", Timestamp: 1700000000_123456, SQLModeBits: 1411383296,
		CharsetClient: 33, CollationConnection: 45, CollationServer: 8, TimeZone: "+02:00",
		ForeignKeyChecks: false, UniqueChecks: true, AutoIncIncrement: 2, AutoIncOffset: 1,
	}
	if ses != want {
		t.Fatalf("got  %+v\nwant %+v", ses, want)
	}
	// Truncated input never panics and keeps what came before.
	for n := range b {
		parseQueryStatus(b[:n])
	}
	if s := parseQueryStatus([]byte{qSQLMode, 1, 2}); s.hasMode {
		t.Fatal("truncated sql_mode accepted")
	}
}

func TestMentionsInternal(t *testing.T) {
	for q, want := range map[string]bool{
		"CREATE TABLE __replicar.pos (a INT)":         true,
		"DROP DATABASE `__replicar`":                  true,
		"create database if not exists __replicar":    true,
		"INSERT INTO x.__replicar_log VALUES (1)":     false,
		"CREATE TABLE my__replicar (a INT)":           false,
		"CREATE TABLE t (a INT) COMMENT '__replicar'": true, // a literal: the documented false positive
		"ALTER TABLE shop.items ADD c INT":            false,
	} {
		if got := MentionsInternal(q); got != want {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
}

func TestCheckVars(t *testing.T) {
	good := map[string]string{"version": "10.11.6-MariaDB-log", "log_bin": "ON", "binlog_format": "ROW",
		"binlog_row_image": "FULL", "binlog_row_metadata": "FULL", "server_id": "7"}
	if err := checkVars(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{"version": "8.0.36", "log_bin": "ON", "binlog_format": "MIXED",
		"binlog_row_image": "MINIMAL", "server_id": "0"}
	err := checkVars(bad)
	if !errors.Is(err, ErrMisconfigured) {
		t.Fatal(err)
	}
	for _, want := range []string{"not MariaDB", "set binlog_format=ROW", "set binlog_row_image=FULL",
		"binlog_row_metadata is not supported", "server_id is 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestAssemblerRefuses(t *testing.T) {
	newA := func() *assembler {
		p, _ := mysql.ParseMariadbGTIDSet("")
		return newAssembler(p.(*mysql.MariadbGTIDSet), []uint32{7380})
	}
	gtid := func(domain uint32, seq uint64, flags byte) *replication.BinlogEvent {
		return &replication.BinlogEvent{Header: &replication.EventHeader{},
			Event: &replication.MariadbGTIDEvent{GTID: mysql.MariadbGTID{DomainID: domain, ServerID: 1, SequenceNumber: seq}, Flags: flags}}
	}
	query := func(q string) *replication.BinlogEvent {
		return &replication.BinlogEvent{Header: &replication.EventHeader{Timestamp: 5}, Event: &replication.QueryEvent{Query: []byte(q), Schema: []byte("d")}}
	}
	a := newA()
	if _, err := a.feed(gtid(0, 1, flPreparedXA)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("XA: %v", err)
	}
	a = newA()
	a.feed(gtid(0, 1, 0))
	if _, err := a.feed(gtid(0, 2, 0)); err == nil {
		t.Fatal("gtid inside a group accepted")
	}
	if _, err := newA().feed(query("CREATE TABLE t (a INT)")); err == nil {
		t.Fatal("query outside a group accepted")
	}
	// A standalone DDL is one entry; one in an ignored domain is skipped
	// but still moves the position.
	a = newA()
	a.feed(gtid(0, 1, replication.BINLOG_MARIADB_FL_STANDALONE))
	g, err := a.feed(query("CREATE TABLE t (a INT)"))
	if err != nil || g == nil || g.txn == nil || g.txn.Kind != KindDDL || g.position != "0-1-1" {
		t.Fatalf("ddl: %+v, %v", g, err)
	}
	a.feed(gtid(7380, 4, replication.BINLOG_MARIADB_FL_STANDALONE))
	g, err = a.feed(query("CREATE TABLE u (a INT)"))
	if err != nil || g == nil || g.txn != nil || g.position != "0-1-1,7380-1-4" {
		t.Fatalf("ignored domain: %+v, %v", g, err)
	}
}

func TestAhead(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"", "", false},
		{"0-1-5", "0-1-5", false},
		{"0-1-5", "0-2-7", false},
		{"0-1-6", "0-1-5", true},
		{"0-1-5,1-1-1", "0-1-5", true},
		{"0-1-5,7380-2-9", "0-1-5", false}, // the DDL domain is ignored
		{"0-1-5", "", true},
	} {
		got, err := Ahead(c.a, c.b, []uint32{7380})
		if err != nil || got != c.want {
			t.Errorf("Ahead(%q, %q) = %v, %v", c.a, c.b, got, err)
		}
	}
	if _, err := Ahead("x", "", nil); err == nil {
		t.Error("bad position accepted")
	}
}
