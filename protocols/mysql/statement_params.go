package mysql

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	gm "github.com/go-mysql-org/go-mysql/mysql"
)

// A prepared statement is logged as MySQL logs it: its text with each
// placeholder replaced by the literal of the value the execution bound,
// so a follower runs plain SQL. User variables a statement reads are
// logged as a SET of their values before it.

// literalStyle says how a string literal is written for the session it
// is replayed in: the statement's sql_mode and character_set_client are
// set on replay before it.
type literalStyle struct {
	// noBackslash is sql_mode NO_BACKSLASH_ESCAPES: a backslash is an
	// ordinary character in strings.
	noBackslash bool
	// hexStrings writes strings as _charset X'…': for client character
	// sets in which a multi-byte character may contain the bytes of a
	// quote or a backslash (big5, cp932, gbk, gb18030, sjis).
	hexStrings bool
	// charset is character_set_client, for hexStrings.
	charset string
}

// unsafeClientCharsets are the character sets whose multi-byte
// characters may end in 0x5c or 0x27.
var unsafeClientCharsets = map[string]bool{"big5": true, "cp932": true, "gbk": true, "gb18030": true, "sjis": true}

func newLiteralStyle(sqlMode, clientCharset string) literalStyle {
	return literalStyle{
		noBackslash: strings.Contains(strings.ToUpper(sqlMode), "NO_BACKSLASH_ESCAPES"),
		hexStrings:  unsafeClientCharsets[strings.ToLower(clientCharset)],
		charset:     strings.ToLower(clientCharset),
	}
}

// appendString writes s as a string literal in the client character set.
// A plain quoted literal keeps the semantics of a bound string parameter:
// it is read in character_set_client and takes collation_connection.
func (l literalStyle) appendString(b []byte, s []byte) []byte {
	if l.hexStrings {
		b = append(b, '_')
		b = append(b, l.charset...)
		b = append(b, " X'"...)
		b = hex.AppendEncode(b, s)
		return append(b, '\'')
	}
	b = append(b, '\'')
	for _, c := range s {
		switch {
		case c == '\'':
			b = append(b, '\'', '\'')
		case c == '\\' && !l.noBackslash:
			b = append(b, '\\', '\\')
		case c == 0 && !l.noBackslash:
			b = append(b, '\\', '0')
		default:
			b = append(b, c)
		}
	}
	return append(b, '\'')
}

func appendHex(b, s []byte) []byte {
	if len(s) == 0 {
		return append(b, "''"...)
	}
	b = append(b, "X'"...)
	b = hex.AppendEncode(b, s)
	return append(b, '\'')
}

// errParams is a COM_STMT_EXECUTE whose parameters cannot be read.
var errParams = errors.New("malformed parameters")

// executeParams decodes the parameter values of a COM_STMT_EXECUTE packet
// for a statement with n parameters into SQL literals. types is the type
// block of an earlier execute, used when this one does not bind types;
// long holds the COM_STMT_SEND_LONG_DATA of each parameter, whose value
// the packet then leaves out.
func executeParams(cmd []byte, n int, types []byte, long map[int][]byte, l literalStyle) ([]string, error) {
	if n == 0 {
		return nil, nil
	}
	pos := 10 // command, statement id, flags, iteration count
	nullLen := (n + 7) / 8
	if len(cmd) < pos+nullLen+1 {
		return nil, errParams
	}
	nulls := cmd[pos : pos+nullLen]
	pos += nullLen
	bound := cmd[pos]
	pos++
	if bound == 1 {
		if len(cmd) < pos+2*n {
			return nil, errParams
		}
		types = cmd[pos : pos+2*n]
		pos += 2 * n
	}
	if len(types) < 2*n {
		return nil, errors.New("parameter types were never sent")
	}
	out := make([]string, n)
	for i := range n {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			out[i] = "NULL"
			continue
		}
		typ, unsigned := types[2*i], types[2*i+1]&0x80 != 0
		if data, ok := long[i]; ok {
			out[i] = string(literalBytes(typ, data, l))
			continue
		}
		lit, next, err := paramLiteral(cmd, pos, typ, unsigned, l)
		if err != nil {
			return nil, fmt.Errorf("parameter %d: %w", i+1, err)
		}
		out[i], pos = lit, next
	}
	return out, nil
}

// paramLiteral decodes the binary value of type typ at cmd[pos].
func paramLiteral(cmd []byte, pos int, typ byte, unsigned bool, l literalStyle) (string, int, error) {
	need := func(k int) error {
		if len(cmd) < pos+k {
			return errParams
		}
		return nil
	}
	switch typ {
	case gm.MYSQL_TYPE_NULL:
		return "NULL", pos, nil
	case gm.MYSQL_TYPE_TINY:
		if err := need(1); err != nil {
			return "", 0, err
		}
		if unsigned {
			return strconv.FormatUint(uint64(cmd[pos]), 10), pos + 1, nil
		}
		return strconv.FormatInt(int64(int8(cmd[pos])), 10), pos + 1, nil
	case gm.MYSQL_TYPE_SHORT, gm.MYSQL_TYPE_YEAR:
		if err := need(2); err != nil {
			return "", 0, err
		}
		v := binary.LittleEndian.Uint16(cmd[pos:])
		if unsigned {
			return strconv.FormatUint(uint64(v), 10), pos + 2, nil
		}
		return strconv.FormatInt(int64(int16(v)), 10), pos + 2, nil
	case gm.MYSQL_TYPE_LONG, gm.MYSQL_TYPE_INT24:
		if err := need(4); err != nil {
			return "", 0, err
		}
		v := binary.LittleEndian.Uint32(cmd[pos:])
		if unsigned {
			return strconv.FormatUint(uint64(v), 10), pos + 4, nil
		}
		return strconv.FormatInt(int64(int32(v)), 10), pos + 4, nil
	case gm.MYSQL_TYPE_LONGLONG:
		if err := need(8); err != nil {
			return "", 0, err
		}
		v := binary.LittleEndian.Uint64(cmd[pos:])
		if unsigned {
			return strconv.FormatUint(v, 10), pos + 8, nil
		}
		return strconv.FormatInt(int64(v), 10), pos + 8, nil
	case gm.MYSQL_TYPE_FLOAT:
		if err := need(4); err != nil {
			return "", 0, err
		}
		f := math.Float32frombits(binary.LittleEndian.Uint32(cmd[pos:]))
		lit, err := floatLiteral(float64(f))
		return lit, pos + 4, err
	case gm.MYSQL_TYPE_DOUBLE:
		if err := need(8); err != nil {
			return "", 0, err
		}
		lit, err := floatLiteral(math.Float64frombits(binary.LittleEndian.Uint64(cmd[pos:])))
		return lit, pos + 8, err
	case gm.MYSQL_TYPE_DATE, gm.MYSQL_TYPE_DATETIME, gm.MYSQL_TYPE_TIMESTAMP:
		if err := need(1); err != nil {
			return "", 0, err
		}
		k := int(cmd[pos])
		if err := need(1 + k); err != nil {
			return "", 0, err
		}
		lit, err := dateLiteral(cmd[pos+1:pos+1+k], typ == gm.MYSQL_TYPE_DATE)
		return lit, pos + 1 + k, err
	case gm.MYSQL_TYPE_TIME:
		if err := need(1); err != nil {
			return "", 0, err
		}
		k := int(cmd[pos])
		if err := need(1 + k); err != nil {
			return "", 0, err
		}
		lit, err := timeLiteral(cmd[pos+1 : pos+1+k])
		return lit, pos + 1 + k, err
	}
	// Everything else is a length-encoded string of bytes.
	s, k, ok := lenencStr(cmd[pos:])
	if !ok {
		return "", 0, errParams
	}
	return string(literalBytes(typ, s, l)), pos + k, nil
}

// literalBytes writes a string-typed parameter: binary for BLOB, BIT and
// GEOMETRY types (as the server reads them), a number for a valid DECIMAL,
// else a string in the client character set.
func literalBytes(typ byte, s []byte, l literalStyle) []byte {
	switch typ {
	case gm.MYSQL_TYPE_TINY_BLOB, gm.MYSQL_TYPE_MEDIUM_BLOB, gm.MYSQL_TYPE_LONG_BLOB, gm.MYSQL_TYPE_BLOB,
		gm.MYSQL_TYPE_BIT, gm.MYSQL_TYPE_GEOMETRY:
		return appendHex(nil, s)
	case gm.MYSQL_TYPE_DECIMAL, gm.MYSQL_TYPE_NEWDECIMAL:
		if isDecimalText(s) {
			return append([]byte(nil), s...)
		}
	}
	return l.appendString(nil, s)
}

// isDecimalText accepts [-+]digits[.digits].
func isDecimalText(s []byte) bool {
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	digits, dot := 0, false
	for _, c := range s {
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

// floatLiteral writes a double so that it reads back bit for bit, with an
// exponent so that MySQL reads it as a DOUBLE, not a DECIMAL.
func floatLiteral(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", errors.New("NaN or infinite floating-point parameter")
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	return s, nil
}

// dateLiteral writes a binary DATE/DATETIME/TIMESTAMP value.
func dateLiteral(b []byte, dateOnly bool) (string, error) {
	var y, mo, d, h, mi, s, us int
	switch len(b) {
	case 0:
	case 4, 7, 11:
		y, mo, d = int(binary.LittleEndian.Uint16(b)), int(b[2]), int(b[3])
		if len(b) >= 7 {
			h, mi, s = int(b[4]), int(b[5]), int(b[6])
		}
		if len(b) == 11 {
			us = int(binary.LittleEndian.Uint32(b[7:]))
		}
	default:
		return "", errParams
	}
	if dateOnly {
		return fmt.Sprintf("'%04d-%02d-%02d'", y, mo, d), nil
	}
	if us != 0 {
		return fmt.Sprintf("'%04d-%02d-%02d %02d:%02d:%02d.%06d'", y, mo, d, h, mi, s, us), nil
	}
	return fmt.Sprintf("'%04d-%02d-%02d %02d:%02d:%02d'", y, mo, d, h, mi, s), nil
}

// timeLiteral writes a binary TIME value.
func timeLiteral(b []byte) (string, error) {
	var neg bool
	var days, h, mi, s, us int
	switch len(b) {
	case 0:
	case 8, 12:
		neg = b[0] == 1
		days = int(binary.LittleEndian.Uint32(b[1:]))
		h, mi, s = int(b[5]), int(b[6]), int(b[7])
		if len(b) == 12 {
			us = int(binary.LittleEndian.Uint32(b[8:]))
		}
	default:
		return "", errParams
	}
	sign := ""
	if neg {
		sign = "-"
	}
	if us != 0 {
		return fmt.Sprintf("'%s%02d:%02d:%02d.%06d'", sign, days*24+h, mi, s, us), nil
	}
	return fmt.Sprintf("'%s%02d:%02d:%02d'", sign, days*24+h, mi, s), nil
}

// substituteParams puts literals in place of the placeholders at the byte
// offsets params.
func substituteParams(query string, params []int, lits []string) (string, error) {
	if len(params) != len(lits) {
		return "", fmt.Errorf("%d placeholders for %d values", len(params), len(lits))
	}
	if len(params) == 0 {
		return query, nil
	}
	var b strings.Builder
	last := 0
	for i, p := range params {
		b.WriteString(query[last:p])
		b.WriteString(lits[i])
		last = p + 1
	}
	b.WriteString(query[last:])
	return b.String(), nil
}

// userVarLiteral writes a user variable's value read back with SELECT
// @v, CHARSET(@v), COLLATION(@v), as mysqlbinlog writes a user variable
// event: numbers as numbers, strings with their character set and
// collation.
func userVarLiteral(c colDef, v, charset, collation nullString) string {
	if !v.valid {
		return "NULL"
	}
	switch c.typ {
	case gm.MYSQL_TYPE_TINY, gm.MYSQL_TYPE_SHORT, gm.MYSQL_TYPE_LONG, gm.MYSQL_TYPE_INT24, gm.MYSQL_TYPE_LONGLONG,
		gm.MYSQL_TYPE_DECIMAL, gm.MYSQL_TYPE_NEWDECIMAL:
		if isDecimalText([]byte(v.s)) {
			return v.s
		}
	case gm.MYSQL_TYPE_DOUBLE, gm.MYSQL_TYPE_FLOAT:
		if f, err := strconv.ParseFloat(v.s, 64); err == nil {
			if lit, err := floatLiteral(f); err == nil {
				return lit
			}
		}
	}
	cs := strings.ToLower(charset.s)
	if !charset.valid || cs == "" || cs == "binary" || !validName(cs) || !validName(collation.s) {
		return appendStringHex(v.s)
	}
	return "_" + cs + " " + appendStringHex(v.s) + " COLLATE " + collation.s
}

func appendStringHex(s string) string {
	if s == "" {
		return "''"
	}
	return "X'" + hex.EncodeToString([]byte(s)) + "'"
}

// validName accepts a character set or collation name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// quoteUserVar writes a user variable's name for a SET.
func quoteUserVar(name string) string {
	return "@`" + strings.ReplaceAll(name, "`", "``") + "`"
}
