package resp

import (
	"errors"
	"fmt"
	"strconv"
)

// Kind is the type of a RESP2 value.
type Kind byte

// The RESP2 kinds. Null is the nil bulk ($-1), NullArray the nil array (*-1).
const (
	SimpleString Kind = '+'
	Error        Kind = '-'
	Integer      Kind = ':'
	Bulk         Kind = '$'
	Array        Kind = '*'
	Null         Kind = 'n'
	NullArray    Kind = 'N'
)

// Value is one parsed RESP2 reply. Str holds the text of simple strings,
// errors and bulks; Int the integer; Elems the elements of an array. Byte
// slices alias the buffer the value was parsed from.
type Value struct {
	Kind  Kind
	Str   []byte
	Int   int64
	Elems []Value
}

// IsNil reports whether v is a nil bulk or nil array.
func (v Value) IsNil() bool { return v.Kind == Null || v.Kind == NullArray }

// IsError reports whether v is an error reply.
func (v Value) IsError() bool { return v.Kind == Error }

// String formats v for messages and tests.
func (v Value) String() string {
	switch v.Kind {
	case SimpleString:
		return "+" + string(v.Str)
	case Error:
		return "-" + string(v.Str)
	case Integer:
		return ":" + strconv.FormatInt(v.Int, 10)
	case Bulk:
		return strconv.Quote(string(v.Str))
	case Null, NullArray:
		return "(nil)"
	case Array:
		s := "["
		for i, e := range v.Elems {
			if i > 0 {
				s += " "
			}
			s += e.String()
		}
		return s + "]"
	}
	return fmt.Sprintf("kind(%d)", v.Kind)
}

// ErrIncomplete means the buffer ends before the value does.
var ErrIncomplete = errors.New("resp: incomplete value")

// ErrMalformed means the bytes are not RESP2.
var ErrMalformed = errors.New("resp: malformed value")

// maxDepth bounds array nesting so that hostile input cannot exhaust the
// stack. Most Redis replies nest a handful of levels, but a Lua script (or
// function) may return a table nested as deep as Lua's own stack allows:
// Redis gives up at some 8000 levels ("reached lua stack limit"), after
// sending them. The bound leaves room for that; parsing that deep costs a
// few megabytes of goroutine stack at worst.
const maxDepth = 1 << 14

// ParseValue parses the RESP2 value at the start of b and returns it with the
// number of bytes it used.
func ParseValue(b []byte) (Value, int, error) { return parseValue(b, 0) }

func parseValue(b []byte, depth int) (Value, int, error) {
	if depth > maxDepth {
		return Value{}, 0, fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
	}
	line, n, err := readLine(b)
	if err != nil {
		return Value{}, 0, err
	}
	if len(line) == 0 {
		return Value{}, 0, fmt.Errorf("%w: empty line", ErrMalformed)
	}
	body := line[1:]
	switch Kind(line[0]) {
	case SimpleString, Error:
		return Value{Kind: Kind(line[0]), Str: body}, n, nil
	case Integer:
		i, ok := parseInt(body)
		if !ok {
			return Value{}, 0, fmt.Errorf("%w: integer %q", ErrMalformed, body)
		}
		return Value{Kind: Integer, Int: i}, n, nil
	case Bulk:
		size, ok := parseInt(body)
		if !ok || size < -1 {
			return Value{}, 0, fmt.Errorf("%w: bulk length %q", ErrMalformed, body)
		}
		if size == -1 {
			return Value{Kind: Null}, n, nil
		}
		if int64(len(b)-n) < size+2 {
			return Value{}, 0, ErrIncomplete
		}
		end := n + int(size)
		if b[end] != '\r' || b[end+1] != '\n' {
			return Value{}, 0, fmt.Errorf("%w: bulk not terminated by CRLF", ErrMalformed)
		}
		return Value{Kind: Bulk, Str: b[n:end:end]}, end + 2, nil
	case Array:
		count, ok := parseInt(body)
		if !ok || count < -1 {
			return Value{}, 0, fmt.Errorf("%w: array length %q", ErrMalformed, body)
		}
		if count == -1 {
			return Value{Kind: NullArray}, n, nil
		}
		// Each element takes at least 3 bytes, which bounds the allocation
		// by the input size whatever the header claims.
		if count > int64(len(b)-n)/3+1 {
			return Value{}, 0, ErrIncomplete
		}
		v := Value{Kind: Array, Elems: make([]Value, 0, count)}
		for i := int64(0); i < count; i++ {
			e, m, err := parseValue(b[n:], depth+1)
			if err != nil {
				return Value{}, 0, err
			}
			v.Elems = append(v.Elems, e)
			n += m
		}
		return v, n, nil
	}
	return Value{}, 0, fmt.Errorf("%w: type byte %q", ErrMalformed, line[0])
}

// readLine returns the line at the start of b without its CRLF and the
// number of bytes including the CRLF.
func readLine(b []byte) ([]byte, int, error) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\n' {
			return nil, 0, fmt.Errorf("%w: LF without CR", ErrMalformed)
		}
		if b[i] == '\r' {
			if b[i+1] != '\n' {
				return nil, 0, fmt.Errorf("%w: CR without LF", ErrMalformed)
			}
			return b[:i], i + 2, nil
		}
	}
	return nil, 0, ErrIncomplete
}

// parseInt parses a decimal integer without allocating.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		return -n, true
	}
	return n, true
}

// AppendCommand appends args as a RESP array of bulks, the form commands take
// on the wire.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// AppendValue appends v in RESP2 form.
func AppendValue(dst []byte, v Value) []byte {
	switch v.Kind {
	case SimpleString, Error:
		dst = append(dst, byte(v.Kind))
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case Integer:
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, v.Int, 10)
		return append(dst, '\r', '\n')
	case Bulk:
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(v.Str)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case Null:
		return append(dst, "$-1\r\n"...)
	case NullArray:
		return append(dst, "*-1\r\n"...)
	case Array:
		dst = append(dst, '*')
		dst = strconv.AppendInt(dst, int64(len(v.Elems)), 10)
		dst = append(dst, '\r', '\n')
		for _, e := range v.Elems {
			dst = AppendValue(dst, e)
		}
		return dst
	}
	return dst
}
