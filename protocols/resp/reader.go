package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
)

// Limits bound what a client may send before the proxy has read it, the way
// Redis's proto-max-bulk-len and its unauthenticated limits do.
type Limits struct {
	// MaxBulk is the largest bulk argument accepted (proto-max-bulk-len,
	// 512 MB by default). A larger length is refused from its header,
	// before any of its bytes are read.
	MaxBulk int64
	// MaxArgs is the largest multibulk count accepted.
	MaxArgs int64
	// MaxInline is the longest inline command line.
	MaxInline int
}

// Redis's own defaults (server.h PROTO_INLINE_MAX_SIZE and
// proto-max-bulk-len), and its tighter limits before AUTH.
var (
	DefaultLimits         = Limits{MaxBulk: 512 << 20, MaxArgs: 1 << 20, MaxInline: 64 << 10}
	unauthenticatedLimits = Limits{MaxBulk: 16384, MaxArgs: 10, MaxInline: 64 << 10}
)

// ProtocolError is a malformed request. Its text is what Redis replies
// (without "ERR "); like Redis, the proxy closes the connection after it.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// command is one client command: its arguments alias the batch arena.
type command struct {
	args [][]byte
}

// arena holds the bytes and argument slices of a batch of commands so that
// reading a pipeline does not allocate per command. The jobs made from the
// batch hold references; the last one released returns it to the pool.
type arena struct {
	buf  []byte
	argv [][]byte
	refs atomic.Int32
}

var arenaPool = sync.Pool{New: func() any { return new(arena) }}

// maxPooledArena keeps an arena that a huge command grew out of the pool.
const maxPooledArena = 1 << 20

func getArena() *arena {
	a := arenaPool.Get().(*arena)
	a.refs.Store(1)
	return a
}

func (a *arena) retain() { a.refs.Add(1) }

func (a *arena) release() {
	if a.refs.Add(-1) != 0 {
		return
	}
	if cap(a.buf) > maxPooledArena {
		return
	}
	a.buf = a.buf[:0]
	clear(a.argv)
	a.argv = a.argv[:0]
	arenaPool.Put(a)
}

// reserve returns n bytes at the end of the arena's buffer. Growing may move
// the buffer; slices handed out earlier keep the old array alive and stay
// valid, which is why arguments are sliced only after they are complete.
func (a *arena) reserve(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		grown := make([]byte, len(a.buf), max(2*cap(a.buf), len(a.buf)+n, 4096))
		copy(grown, a.buf)
		a.buf = grown
	}
	start := len(a.buf)
	a.buf = a.buf[:start+n]
	return a.buf[start : start+n : start+n]
}

// commandReader reads client commands, RESP multibulk or inline, enforcing
// Limits.
type commandReader struct {
	br  *bufio.Reader
	lim Limits
}

// read reads one command into a. It returns the command (nil args for an
// empty inline line, which Redis ignores), a *ProtocolError for a malformed
// request, or the connection's error.
func (r *commandReader) read(a *arena) (command, error) {
	first, err := r.br.Peek(1)
	if err != nil {
		return command{}, err
	}
	if first[0] != '*' {
		return r.readInline(a)
	}
	line, err := r.readLine(1024 * 64)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return command{}, &ProtocolError{"too big mbulk count string"}
		}
		return command{}, err
	}
	count, ok := parseInt(line[1:])
	if !ok || count > r.lim.MaxArgs {
		if ok && r.lim.MaxArgs == unauthenticatedLimits.MaxArgs {
			return command{}, &ProtocolError{"unauthenticated multibulk length"}
		}
		return command{}, &ProtocolError{"invalid multibulk length"}
	}
	if count <= 0 {
		return command{}, nil
	}
	base := len(a.argv)
	for i := int64(0); i < count; i++ {
		line, err := r.readLine(1024 * 64)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return command{}, &ProtocolError{"too big bulk count string"}
			}
			return command{}, err
		}
		if len(line) == 0 {
			return command{}, &ProtocolError{"expected '$', got ' '"}
		}
		if line[0] != '$' {
			return command{}, &ProtocolError{"expected '$', got '" + string(line[0]) + "'"}
		}
		size, ok := parseInt(line[1:])
		if !ok || size < 0 || size > r.lim.MaxBulk {
			if ok && size >= 0 && r.lim.MaxBulk == unauthenticatedLimits.MaxBulk {
				return command{}, &ProtocolError{"unauthenticated bulk length"}
			}
			return command{}, &ProtocolError{"invalid bulk length"}
		}
		dst := a.reserve(int(size) + 2)
		if _, err := io.ReadFull(r.br, dst); err != nil {
			return command{}, noEOF(err)
		}
		if dst[size] != '\r' || dst[size+1] != '\n' {
			return command{}, &ProtocolError{"invalid bulk length"}
		}
		a.argv = append(a.argv, dst[:size:size])
	}
	return command{args: a.argv[base:len(a.argv):len(a.argv)]}, nil
}

// readLine returns a CRLF-terminated line without the CRLF. The slice is
// only valid until the next read.
func (r *commandReader) readLine(limit int) ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		return nil, noEOF(err)
	}
	if len(line) > limit {
		return nil, bufio.ErrBufferFull
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		// Redis accepts a bare LF on inline commands only.
		return nil, &ProtocolError{"invalid multibulk length"}
	}
	return line[:len(line)-2], nil
}

// noEOF turns an EOF in the middle of a command into ErrUnexpectedEOF, so
// callers can tell a clean close (EOF before a command) from a torn one.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readInline reads a telnet-style command line, split like Redis's
// sdssplitargs: spaces separate arguments, and double quotes (with \n, \xHH
// … escapes) or single quotes group them.
func (r *commandReader) readInline(a *arena) (command, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > r.lim.MaxInline {
			return command{}, &ProtocolError{"too big inline request"}
		}
		if err == io.EOF && len(line) == 0 {
			return command{}, io.EOF
		}
		return command{}, noEOF(err)
	}
	if len(line) > r.lim.MaxInline {
		return command{}, &ProtocolError{"too big inline request"}
	}
	line = bytes.TrimRight(line, "\r\n")
	base := len(a.argv)
	args, ok := splitArgs(line, a)
	if !ok {
		return command{}, &ProtocolError{"unbalanced quotes in request"}
	}
	if len(args) == 0 {
		return command{}, nil
	}
	if int64(len(args)) > r.lim.MaxArgs {
		return command{}, &ProtocolError{"invalid multibulk length"}
	}
	return command{args: a.argv[base:len(a.argv):len(a.argv)]}, nil
}

// splitArgs splits an inline line into arguments appended to a.argv. It
// reports false for unbalanced quotes.
func splitArgs(line []byte, a *arena) ([][]byte, bool) {
	base := len(a.argv)
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return a.argv[base:], true
		}
		var cur []byte
		inDouble, inSingle := false, false
		for done := false; !done; {
			switch {
			case inDouble:
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					cur = append(cur, hexVal(line[i+2])<<4|hexVal(line[i+3]))
					i += 3
				case c == '\\' && i+1 < len(line):
					i++
					switch line[i] {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, line[i])
					}
				case c == '"':
					// A closing quote must be followed by a space or the end.
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, c)
				}
			case inSingle:
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					i++
					cur = append(cur, '\'')
				case c == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, c)
				}
			default:
				if i >= len(line) {
					done = true
					continue
				}
				switch c := line[i]; {
				case isSpace(c):
					done = true
				case c == '"':
					inDouble = true
				case c == '\'':
					inSingle = true
				default:
					cur = append(cur, c)
				}
			}
			if i < len(line) {
				i++
			}
		}
		dst := a.reserve(len(cur))
		copy(dst, cur)
		a.argv = append(a.argv, dst)
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// errorReply formats msg as a RESP error line, replacing CR and LF as Redis
// does so a message can never break the framing.
func appendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

func appendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func appendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func appendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func appendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}
