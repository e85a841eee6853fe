package resp

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Payload is what one backlog entry holds for the Redis protocol: the
// commands that reproduce one client write (or one MULTI … EXEC) on a
// replica, and the database they run in. The applier runs SELECT DB and
// then Cmds, all inside one MULTI … EXEC, so the entry is applied whole or
// not at all. A SELECT among Cmds (one queued in the client's MULTI)
// switches the database for the commands after it, as it did on the
// primary.
//
// The encoding, version 1, is one RESP2 value, so that a backlog entry can
// be read with the same tools as a Redis reply (ParseValue, redis-cli's
// reply printer):
//
//	*3\r\n                 an array of three elements:
//	+v1\r\n                the format version, a simple string;
//	:<db>\r\n              the database, an integer 0 … 2147483647;
//	*<n>\r\n               the n ≥ 0 commands, each as AppendCommand writes
//	*<m>\r\n$<len>\r\n<bytes>\r\n …   it: an array of m ≥ 1 bulk strings.
//
// Every integer is in its shortest form: no sign on counts and lengths, no
// leading zeros. A payload therefore has exactly one encoding, and
// DecodePayload accepts that encoding only: anything else, including bytes
// after the value, is an error. A later version of the format changes the
// marker, and DecodePayload rejects markers it does not know.
type Payload struct {
	// DB is the database the client had selected.
	DB int
	// Cmds are the commands, each with at least one argument.
	Cmds [][][]byte
}

// payloadVersion is the marker of the encoding described at Payload.
const payloadVersion = "v1"

// payloadMaxDB is the largest database index a payload carries: Redis's
// "databases" setting is an int.
const payloadMaxDB = math.MaxInt32

// ErrPayload is wrapped by every DecodePayload error.
var ErrPayload = errors.New("resp: bad payload")

// AppendPayload appends the encoding of p to dst. Every command must have
// at least one argument, which Effect and TxEffect guarantee, and DB must
// be between 0 and 2147483647; DecodePayload rejects anything else.
func AppendPayload(dst []byte, p Payload) []byte {
	dst = append(dst, "*3\r\n+"+payloadVersion+"\r\n:"...)
	dst = strconv.AppendInt(dst, int64(p.DB), 10)
	dst = append(dst, "\r\n*"...)
	dst = strconv.AppendInt(dst, int64(len(p.Cmds)), 10)
	dst = append(dst, '\r', '\n')
	for _, c := range p.Cmds {
		dst = AppendCommand(dst, c...)
	}
	return dst
}

// DecodePayload decodes a payload written by AppendPayload. The arguments
// of the commands alias b. It never panics, and it allocates at most twice
// (the command list and all arguments together), within a constant factor
// of len(b) whatever the input claims.
func DecodePayload(b []byte) (Payload, error) {
	d := payloadDecoder{b: b}
	// The first pass checks everything and counts; the second fills in.
	n, args, err := d.walk(nil, nil)
	if err != nil {
		return Payload{}, err
	}
	p := Payload{DB: d.db}
	if n > 0 {
		p.Cmds = make([][][]byte, 0, n)
		d.at = 0
		if _, _, err := d.walk(p.Cmds, make([][]byte, 0, args)); err != nil {
			return Payload{}, err
		}
		p.Cmds = d.cmds
	}
	return p, nil
}

type payloadDecoder struct {
	b    []byte
	at   int
	db   int
	cmds [][][]byte
}

// walk reads the whole payload. With cmds and flat not nil it also fills
// them, flat holding every argument back to back.
func (d *payloadDecoder) walk(cmds [][][]byte, flat [][]byte) (n, args int, err error) {
	if err := d.literal("*3\r\n+" + payloadVersion + "\r\n:"); err != nil {
		return 0, 0, err
	}
	db, err := d.number(payloadMaxDB)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: database: %v", ErrPayload, err)
	}
	d.db = int(db)
	if err := d.literal("*"); err != nil {
		return 0, 0, err
	}
	// A command takes at least 10 bytes: *1\r\n$0\r\n\r\n.
	count, err := d.number(int64(len(d.b)-d.at) / 10)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: command count: %v", ErrPayload, err)
	}
	for i := int64(0); i < count; i++ {
		if err := d.literal("*"); err != nil {
			return 0, 0, err
		}
		// An argument takes at least 6 bytes: $0\r\n\r\n.
		m, err := d.number(int64(len(d.b)-d.at) / 6)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: command %d: argument count: %v", ErrPayload, i, err)
		}
		if m == 0 {
			return 0, 0, fmt.Errorf("%w: command %d has no arguments", ErrPayload, i)
		}
		start := len(flat)
		for j := int64(0); j < m; j++ {
			if err := d.literal("$"); err != nil {
				return 0, 0, err
			}
			size, err := d.number(int64(len(d.b) - d.at))
			if err != nil {
				return 0, 0, fmt.Errorf("%w: command %d: argument %d: length: %v", ErrPayload, i, j, err)
			}
			if int64(len(d.b)-d.at) < size+2 {
				return 0, 0, fmt.Errorf("%w: command %d: argument %d: %d bytes, %d left", ErrPayload, i, j, size, len(d.b)-d.at)
			}
			end := d.at + int(size)
			if d.b[end] != '\r' || d.b[end+1] != '\n' {
				return 0, 0, fmt.Errorf("%w: command %d: argument %d: no CRLF after %d bytes", ErrPayload, i, j, size)
			}
			if flat != nil {
				flat = append(flat, d.b[d.at:end:end])
			}
			d.at = end + 2
		}
		if cmds != nil {
			cmds = append(cmds, flat[start:len(flat):len(flat)])
		}
		args += int(m)
	}
	if d.at != len(d.b) {
		return 0, 0, fmt.Errorf("%w: %d bytes after the end", ErrPayload, len(d.b)-d.at)
	}
	d.cmds = cmds
	return int(count), args, nil
}

// literal consumes s.
func (d *payloadDecoder) literal(s string) error {
	if len(d.b)-d.at < len(s) || string(d.b[d.at:d.at+len(s)]) != s {
		return fmt.Errorf("%w: want %q at byte %d", ErrPayload, s, d.at)
	}
	d.at += len(s)
	return nil
}

// number consumes a non-negative integer in shortest form and its CRLF,
// and checks that it is at most max.
func (d *payloadDecoder) number(max int64) (int64, error) {
	start := d.at
	var v int64
	for d.at < len(d.b) && d.b[d.at] >= '0' && d.b[d.at] <= '9' {
		if d.at-start == 18 {
			return 0, fmt.Errorf("too long at byte %d", start)
		}
		v = v*10 + int64(d.b[d.at]-'0')
		d.at++
	}
	switch {
	case d.at == start:
		return 0, fmt.Errorf("no digits at byte %d", start)
	case d.b[start] == '0' && d.at-start > 1:
		return 0, fmt.Errorf("leading zero at byte %d", start)
	case len(d.b)-d.at < 2 || d.b[d.at] != '\r' || d.b[d.at+1] != '\n':
		return 0, fmt.Errorf("no CRLF at byte %d", d.at)
	case v > max:
		return 0, fmt.Errorf("%d is more than %d", v, max)
	}
	d.at += 2
	return v, nil
}
