package mysql

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"

	gm "github.com/go-mysql-org/go-mysql/mysql"
)

// The proxy relays the MySQL protocol packet by packet: a client's command
// goes to its backend session as is, and the backend's response comes back
// as is, re-framed with the client's sequence numbers. Only what the proxy
// must see is decoded: OK and EOF packets (status flags and session
// tracking), column counts, statement ids. go-mysql does the two
// handshakes; this file is the framing after them.

// maxPayload is the largest payload of one packet; a payload of exactly
// this size is continued in the next packet.
const maxPayload = 1<<24 - 1

// bigBuffer is the read buffer size past which a buffer is dropped after
// use, so that one big row does not pin its memory for the session's life.
const bigBuffer = 1 << 20

// wire frames packets over one connection. Reads and writes are buffered;
// flush sends what was written.
type wire struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	// seq is the sequence number of the next packet written. A read sets
	// it to the read packet's number plus one, as the protocol wants.
	seq  uint8
	rbuf []byte
}

func newWire(conn net.Conn) *wire {
	return &wire{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 64<<10)}
}

// readPacket returns the next payload, joined across continuation packets.
// It stays valid until the next read.
func (w *wire) readPacket() ([]byte, error) {
	if cap(w.rbuf) > bigBuffer {
		w.rbuf = nil
	}
	w.rbuf = w.rbuf[:0]
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(w.br, hdr[:]); err != nil {
			return nil, err
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		w.seq = hdr[3] + 1
		start := len(w.rbuf)
		w.rbuf = slices.Grow(w.rbuf, n)[:start+n]
		if _, err := io.ReadFull(w.br, w.rbuf[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if n < maxPayload {
			return w.rbuf, nil
		}
	}
}

// writePacket buffers one payload, split into continuation packets when
// it is long.
func (w *wire) writePacket(p []byte) error {
	for {
		n := min(len(p), maxPayload)
		hdr := [4]byte{byte(n), byte(n >> 8), byte(n >> 16), w.seq}
		w.seq++
		if _, err := w.bw.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.bw.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if n < maxPayload {
			return nil
		}
	}
}

func (w *wire) flush() error { return w.bw.Flush() }

// Packet headers and flags.
const (
	hdrOK    = 0x00
	hdrEOF   = 0xfe
	hdrERR   = 0xff
	hdrLocal = 0xfb

	statusInTrans      = gm.SERVER_STATUS_IN_TRANS
	statusMoreResults  = gm.SERVER_MORE_RESULTS_EXISTS
	statusCursorExists = gm.SERVER_STATUS_CURSOR_EXISTS
	statusStateChanged = gm.SERVER_SESSION_STATE_CHANGED
)

// lenencInt decodes a length-encoded integer; ok is false when b is too
// short or holds NULL (0xfb). go-mysql's decoder panics on short input,
// and packets come from the network.
func lenencInt(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfb, 0xff:
		return 0, 1, false
	case 0xfc:
		if len(b) < 3 {
			return 0, 0, false
		}
		return uint64(b[1]) | uint64(b[2])<<8, 3, true
	case 0xfd:
		if len(b) < 4 {
			return 0, 0, false
		}
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, true
	case 0xfe:
		if len(b) < 9 {
			return 0, 0, false
		}
		return binary.LittleEndian.Uint64(b[1:]), 9, true
	}
	return uint64(b[0]), 1, true
}

// lenencStr decodes a length-encoded string; ok is false when b is too
// short.
func lenencStr(b []byte) (s []byte, n int, ok bool) {
	l, n, ok := lenencInt(b)
	if !ok || uint64(len(b)-n) < l {
		return nil, 0, false
	}
	return b[n : n+int(l)], n + int(l), true
}

// isEOF says whether p is an EOF packet (not a row that begins with 0xfe,
// which is at least 9 bytes long).
func isEOF(p []byte) bool { return len(p) > 0 && p[0] == hdrEOF && len(p) < 9 }

// eofStatus returns an EOF packet's status flags.
func eofStatus(p []byte) uint16 {
	if len(p) >= 5 {
		return binary.LittleEndian.Uint16(p[3:5])
	}
	return 0
}

// okPacket is a decoded OK packet (also the OK of a prepared statement's
// COM_STMT_RESET, or the final OK of a multi-result).
type okPacket struct {
	affected, insertID uint64
	status, warnings   uint16
	info               []byte
	// state is the raw session state changes, present when status has
	// SERVER_SESSION_STATE_CHANGED.
	state []byte
}

// parseOK decodes an OK packet sent under the given capabilities.
func parseOK(p []byte, caps uint32) (okPacket, error) {
	var ok okPacket
	if len(p) < 1 || (p[0] != hdrOK && p[0] != hdrEOF) {
		return ok, errors.New("not an OK packet")
	}
	pos := 1
	var n int
	var good bool
	if ok.affected, n, good = lenencInt(p[pos:]); !good {
		return ok, errors.New("malformed OK packet: affected rows")
	}
	pos += n
	if ok.insertID, n, good = lenencInt(p[pos:]); !good {
		return ok, errors.New("malformed OK packet: insert id")
	}
	pos += n
	if len(p) < pos+4 {
		return ok, errors.New("malformed OK packet: status")
	}
	ok.status = binary.LittleEndian.Uint16(p[pos:])
	ok.warnings = binary.LittleEndian.Uint16(p[pos+2:])
	pos += 4
	if caps&gm.CLIENT_SESSION_TRACK == 0 {
		ok.info = p[pos:]
		return ok, nil
	}
	if pos >= len(p) {
		return ok, nil
	}
	if ok.info, n, good = lenencStr(p[pos:]); !good {
		return ok, errors.New("malformed OK packet: info")
	}
	pos += n
	if ok.status&statusStateChanged != 0 && pos < len(p) {
		if ok.state, _, good = lenencStr(p[pos:]); !good {
			return ok, errors.New("malformed OK packet: session state")
		}
	}
	return ok, nil
}

// appendOK encodes ok for a client with the given capabilities. A client
// without CLIENT_SESSION_TRACK gets no session state and no
// SERVER_SESSION_STATE_CHANGED flag, as a server would send it.
func appendOK(dst []byte, ok okPacket, caps uint32) []byte {
	status := ok.status
	track := caps&gm.CLIENT_SESSION_TRACK != 0
	if !track || len(ok.state) == 0 {
		status &^= statusStateChanged
	}
	dst = append(dst, hdrOK)
	dst = gm.AppendLengthEncodedInteger(dst, ok.affected)
	dst = gm.AppendLengthEncodedInteger(dst, ok.insertID)
	dst = binary.LittleEndian.AppendUint16(dst, status)
	dst = binary.LittleEndian.AppendUint16(dst, ok.warnings)
	if !track {
		return append(dst, ok.info...)
	}
	if len(ok.info) > 0 || status&statusStateChanged != 0 {
		dst = gm.AppendLengthEncodedInteger(dst, uint64(len(ok.info)))
		dst = append(dst, ok.info...)
	}
	if status&statusStateChanged != 0 {
		dst = gm.AppendLengthEncodedInteger(dst, uint64(len(ok.state)))
		dst = append(dst, ok.state...)
	}
	return dst
}

// Session state change types (MySQL's enum_session_state_type).
const (
	trackSysVar = 0
	trackSchema = 1
	trackGTIDs  = 3
)

// stateEntry is one session state change.
type stateEntry struct {
	typ  byte
	data []byte // the entry's payload
	raw  []byte // type, length and payload, to copy it through
}

// walkState calls fn for each entry of a session state block; it stops at
// a malformed entry and reports it.
func walkState(b []byte, fn func(stateEntry)) error {
	for len(b) > 0 {
		typ := b[0]
		data, n, ok := lenencStr(b[1:])
		if !ok {
			return errors.New("malformed session state")
		}
		fn(stateEntry{typ: typ, data: data, raw: b[:1+n]})
		b = b[1+n:]
	}
	return nil
}

// sysVar decodes a system variable entry's name and value.
func sysVar(data []byte) (name, value []byte, ok bool) {
	name, n, ok := lenencStr(data)
	if !ok {
		return nil, nil, false
	}
	value, _, ok = lenencStr(data[n:])
	if !ok {
		return nil, nil, false
	}
	return name, value, true
}

// lenencString decodes an entry that is one length-encoded string (the
// schema entry).
func lenencString(data []byte) []byte {
	s, _, _ := lenencStr(data)
	return s
}

// errPacket builds an ERR packet payload.
func errPacket(code uint16, state, msg string) []byte {
	p := make([]byte, 0, 9+len(msg))
	p = append(p, hdrERR, byte(code), byte(code>>8), '#')
	p = append(p, state...)
	return append(p, msg...)
}

// parseErr decodes an ERR packet into a MyError (for logs and tests).
func parseErr(p []byte) *gm.MyError {
	e := &gm.MyError{Code: gm.ER_UNKNOWN_ERROR, State: "HY000"}
	if len(p) < 3 {
		e.Message = "malformed error packet"
		return e
	}
	e.Code = binary.LittleEndian.Uint16(p[1:3])
	rest := p[3:]
	if len(rest) >= 6 && rest[0] == '#' {
		e.State = string(rest[1:6])
		rest = rest[6:]
	}
	e.Message = string(rest)
	return e
}

// eofPacket builds an EOF packet payload.
func eofPacket(warnings, status uint16) []byte {
	return []byte{hdrEOF, byte(warnings), byte(warnings >> 8), byte(status), byte(status >> 8)}
}
