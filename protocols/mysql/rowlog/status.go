package rowlog

import (
	"encoding/binary"
)

// Status variable codes of a query event (sql/log_event.h of MySQL and
// MariaDB). Each has a fixed layout, and an unknown code cannot be
// skipped, so parsing stops there: the codes that matter come first.
const (
	qFlags2              = 0
	qSQLMode             = 1
	qCatalog             = 2
	qAutoIncrement       = 3
	qCharset             = 4
	qTimeZone            = 5
	qCatalogNZ           = 6
	qLCTimeNames         = 7
	qCharsetDatabase     = 8
	qTableMapForUpdate   = 9
	qMasterDataWritten   = 10
	qInvoker             = 11
	qUpdatedDBNames      = 12
	qMicroseconds        = 13
	qExplicitDefaultsTS  = 16  // MySQL
	qDDLLoggedWithXID    = 17  // MySQL
	qDefaultCollation    = 18  // MySQL
	qSQLRequirePK        = 19  // MySQL
	qDefaultTableEncrypt = 20  // MySQL
	qHRNow               = 128 // MariaDB: microseconds of the timestamp
	qXID                 = 129 // MariaDB
	qGTIDFlags3          = 130 // MariaDB

	overMaxDBs = 254
)

// Bits of the flags2 status variable (OPTION_* in sql_priv.h).
const (
	optionNoForeignKeyChecks  = 1 << 26
	optionRelaxedUniqueChecks = 1 << 27
)

// queryStatus is what the status variables of a query event say about the
// session the statement ran in.
type queryStatus struct {
	flags2    uint32
	hasFlags2 bool
	sqlMode   uint64
	hasMode   bool
	charset   [3]uint32 // character_set_client, collation_connection, collation_server
	hasCS     bool
	timeZone  string
	hasTZ     bool
	autoInc   [2]uint32 // increment, offset
	hasAI     bool
	micros    uint32
	hasMicros bool
}

// parseQueryStatus reads the status variables it knows and stops at the
// first it does not (or at a truncated one): what it has read is still
// right.
func parseQueryStatus(b []byte) queryStatus {
	var s queryStatus
	need := func(n int) bool { return len(b) >= n }
	for len(b) > 0 {
		code := b[0]
		b = b[1:]
		switch code {
		case qFlags2:
			if !need(4) {
				return s
			}
			s.flags2, s.hasFlags2 = binary.LittleEndian.Uint32(b), true
			b = b[4:]
		case qSQLMode:
			if !need(8) {
				return s
			}
			s.sqlMode, s.hasMode = binary.LittleEndian.Uint64(b), true
			b = b[8:]
		case qCatalog:
			// Length, string, and a NUL not counted in the length.
			if !need(1) || !need(2+int(b[0])) {
				return s
			}
			b = b[2+int(b[0]):]
		case qAutoIncrement:
			if !need(4) {
				return s
			}
			s.autoInc = [2]uint32{uint32(binary.LittleEndian.Uint16(b)), uint32(binary.LittleEndian.Uint16(b[2:]))}
			s.hasAI = true
			b = b[4:]
		case qCharset:
			if !need(6) {
				return s
			}
			s.charset = [3]uint32{uint32(binary.LittleEndian.Uint16(b)), uint32(binary.LittleEndian.Uint16(b[2:])), uint32(binary.LittleEndian.Uint16(b[4:]))}
			s.hasCS = true
			b = b[6:]
		case qTimeZone:
			if !need(1) || !need(1+int(b[0])) {
				return s
			}
			s.timeZone, s.hasTZ = string(b[1:1+int(b[0])]), true
			b = b[1+int(b[0]):]
		case qCatalogNZ:
			if !need(1) || !need(1+int(b[0])) {
				return s
			}
			b = b[1+int(b[0]):]
		case qLCTimeNames, qCharsetDatabase, qDefaultCollation:
			if !need(2) {
				return s
			}
			b = b[2:]
		case qTableMapForUpdate, qDDLLoggedWithXID, qXID:
			if !need(8) {
				return s
			}
			b = b[8:]
		case qMasterDataWritten:
			if !need(4) {
				return s
			}
			b = b[4:]
		case qInvoker:
			for range 2 {
				if !need(1) || !need(1+int(b[0])) {
					return s
				}
				b = b[1+int(b[0]):]
			}
		case qUpdatedDBNames:
			if !need(1) {
				return s
			}
			n := int(b[0])
			b = b[1:]
			if n == overMaxDBs {
				break
			}
			for range n {
				i := 0
				for i < len(b) && b[i] != 0 {
					i++
				}
				if i == len(b) {
					return s
				}
				b = b[i+1:]
			}
		case qMicroseconds, qHRNow:
			if !need(3) {
				return s
			}
			s.micros = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
			s.hasMicros = true
			b = b[3:]
		case qExplicitDefaultsTS, qSQLRequirePK, qDefaultTableEncrypt, qGTIDFlags3:
			if !need(1) {
				return s
			}
			b = b[1:]
		default:
			return s
		}
	}
	return s
}

// session turns the status into the Session a follower sets before the
// statement. seconds is the event's timestamp.
func (s queryStatus) session(schema string, seconds uint32) Session {
	out := Session{Has: HasSchema | HasTimestamp, Schema: schema}
	out.Timestamp = int64(seconds)*1_000_000 + int64(s.micros)
	if s.hasMode {
		out.Has |= HasSQLModeBits
		out.SQLModeBits = s.sqlMode
	}
	if s.hasCS {
		out.Has |= HasCharset
		out.CharsetClient, out.CollationConnection, out.CollationServer = s.charset[0], s.charset[1], s.charset[2]
	}
	if s.hasTZ {
		out.Has |= HasTimeZone
		out.TimeZone = s.timeZone
	}
	if s.hasFlags2 {
		out.Has |= HasForeignKeyChecks | HasUniqueChecks
		out.ForeignKeyChecks = s.flags2&optionNoForeignKeyChecks == 0
		out.UniqueChecks = s.flags2&optionRelaxedUniqueChecks == 0
	}
	if s.hasAI {
		out.Has |= HasAutoInc
		out.AutoIncIncrement, out.AutoIncOffset = s.autoInc[0], s.autoInc[1]
	}
	return out
}
