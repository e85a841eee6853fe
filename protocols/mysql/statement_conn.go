package mysql

import (
	"encoding/binary"
	"errors"
	"time"

	gm "github.com/go-mysql-org/go-mysql/mysql"
)

// Statement mode sends the proxy's own statements around a client's
// write in the same round trip (pipelined): the backend reads commands
// one after the other from the socket and answers each in turn, so a SET
// before and a COMMIT after a statement cost bytes, not waits.

// queue buffers one command without sending it; flush (or command) sends
// what is queued.
func (b *backendConn) queue(payload []byte) error {
	b.lastUsed = time.Now()
	b.seq = 0
	return b.writePacket(payload)
}

// queueQuery buffers a COM_QUERY.
func (b *backendConn) queueQuery(q string) error {
	p := make([]byte, 0, 1+len(q))
	p = append(p, gm.COM_QUERY)
	return b.queue(append(p, q...))
}

// colDef is the part of a column definition statement mode reads.
type colDef struct {
	charset uint16
	typ     byte
	flags   uint16
}

// nullString is a text-protocol value; valid is false for NULL.
type nullString struct {
	s     string
	valid bool
}

// response is one command's answer as readResponse decodes it.
type response struct {
	ok   okPacket
	err  *gm.MyError // the server refused the command
	cols []colDef    // a result set's columns
	rows [][]nullString
}

// readResponse reads the whole answer to one command: an OK, an ERR, or
// a text result set (rows kept). A multi-result answer is read to its end;
// the last OK (or the result set) is returned. The error is a transport
// or protocol error: the connection is then unusable.
func (b *backendConn) readResponse() (response, error) {
	var r response
	for {
		p, err := b.readPacket()
		if err != nil {
			return r, err
		}
		switch {
		case p[0] == hdrERR:
			r.err = parseErr(p)
			return r, nil
		case p[0] == hdrOK:
			ok, err := parseOK(p, b.caps)
			if err != nil {
				return r, err
			}
			r.ok = ok
			if ok.status&statusMoreResults == 0 {
				return r, nil
			}
			continue
		case p[0] == hdrLocal:
			// Never asked for by the proxy's statements; refuse the file.
			if err := b.writePacket(nil); err != nil {
				return r, err
			}
			if err := b.flush(); err != nil {
				return r, err
			}
			continue
		}
		ncol, _, good := lenencInt(p)
		if !good || ncol == 0 || ncol > 1<<16 {
			return r, errors.New("malformed column count")
		}
		r.cols = make([]colDef, 0, ncol)
		for range ncol {
			p, err := b.readPacket()
			if err != nil {
				return r, err
			}
			c, err := parseColDef(p)
			if err != nil {
				return r, err
			}
			r.cols = append(r.cols, c)
		}
		if p, err := b.readPacket(); err != nil {
			return r, err
		} else if !isEOF(p) {
			return r, errors.New("no EOF after the column definitions")
		}
		r.rows = nil
		for {
			p, err := b.readPacket()
			if err != nil {
				return r, err
			}
			if p[0] == hdrERR {
				r.err = parseErr(p)
				return r, nil
			}
			if isEOF(p) {
				r.ok = okPacket{status: eofStatus(p)}
				if eofStatus(p)&statusMoreResults == 0 {
					return r, nil
				}
				break
			}
			row, err := textRowNull(p, len(r.cols))
			if err != nil {
				return r, err
			}
			r.rows = append(r.rows, row)
		}
	}
}

// parseColDef reads a Protocol::ColumnDefinition41.
func parseColDef(p []byte) (colDef, error) {
	pos := 0
	for range 6 { // catalog, schema, table, org_table, name, org_name
		_, n, ok := lenencStr(p[pos:])
		if !ok {
			return colDef{}, errors.New("malformed column definition")
		}
		pos += n
	}
	_, n, ok := lenencInt(p[pos:])
	if !ok || len(p) < pos+n+10 {
		return colDef{}, errors.New("malformed column definition")
	}
	pos += n
	return colDef{
		charset: binary.LittleEndian.Uint16(p[pos:]),
		typ:     p[pos+6],
		flags:   binary.LittleEndian.Uint16(p[pos+7:]),
	}, nil
}

// textRowNull decodes a text-protocol row, keeping NULL apart from "".
func textRowNull(p []byte, ncol int) ([]nullString, error) {
	row := make([]nullString, 0, ncol)
	pos := 0
	for range ncol {
		if pos >= len(p) {
			return nil, errors.New("short row")
		}
		if p[pos] == 0xfb {
			row = append(row, nullString{})
			pos++
			continue
		}
		s, n, ok := lenencStr(p[pos:])
		if !ok {
			return nil, errors.New("malformed row")
		}
		row = append(row, nullString{s: string(s), valid: true})
		pos += n
	}
	return row, nil
}
