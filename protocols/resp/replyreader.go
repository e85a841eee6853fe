package resp

import (
	"bufio"
	"fmt"
	"io"
)

// maxReplyBulk bounds one bulk in a backend reply. It guards against a
// corrupt length turning into a huge allocation; Redis itself never sends a
// bulk larger than proto-max-bulk-len.
const maxReplyBulk = 1 << 30

// readReply reads one whole RESP2 reply from br and appends its exact bytes
// to dst. It streams bulks, so a large value costs one copy.
//
// It keeps no stack: a count of the values still to read is all the
// framing needs, so a reply may nest as deep as Redis makes it. A Lua
// script returning a table that holds itself nests some 8000 levels
// before Redis ends it with "reached lua stack limit"; a depth limit here
// would drop the backend connection and fail every command in flight on
// it.
func readReply(br *bufio.Reader, dst []byte) ([]byte, error) {
	for pending := int64(1); pending > 0; pending-- {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return dst, fmt.Errorf("%w: reply line longer than %d bytes", ErrMalformed, br.Size())
			}
			return dst, noEOF(err)
		}
		if len(line) < 3 || line[len(line)-2] != '\r' {
			return dst, fmt.Errorf("%w: reply line %q", ErrMalformed, line)
		}
		dst = append(dst, line...)
		body := line[1 : len(line)-2]
		switch Kind(line[0]) {
		case SimpleString, Error, Integer:
		case Bulk:
			n, ok := parseInt(body)
			if !ok || n < -1 || n > maxReplyBulk {
				return dst, fmt.Errorf("%w: bulk length %q", ErrMalformed, body)
			}
			if n == -1 {
				continue
			}
			start := len(dst)
			dst = grow(dst, int(n)+2)
			if _, err := io.ReadFull(br, dst[start:]); err != nil {
				return dst, noEOF(err)
			}
			if dst[len(dst)-2] != '\r' || dst[len(dst)-1] != '\n' {
				return dst, fmt.Errorf("%w: bulk not terminated by CRLF", ErrMalformed)
			}
		case Array:
			n, ok := parseInt(body)
			if !ok || n < -1 || n > maxReplyElems {
				return dst, fmt.Errorf("%w: array length %q", ErrMalformed, body)
			}
			if pending += max(n, 0); pending > 1<<62 {
				return dst, fmt.Errorf("%w: reply holds more than %d values", ErrMalformed, int64(1)<<62)
			}
		default:
			return dst, fmt.Errorf("%w: reply type %q", ErrMalformed, line[0])
		}
	}
	return dst, nil
}

// maxReplyElems bounds one array's length in a backend reply, as
// maxReplyBulk bounds a bulk: far above anything Redis sends (an array
// element takes at least 4 bytes), it only keeps a corrupt header from
// overflowing the count of values still to read.
const maxReplyElems = 1 << 40

// grow extends dst by n bytes.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		bigger := make([]byte, len(dst), max(2*cap(dst), len(dst)+n))
		copy(bigger, dst)
		dst = bigger
	}
	return dst[:len(dst)+n]
}

// readValue reads one reply into buf, which it reuses, and parses it. The
// value's strings alias the returned buffer, so they are valid until the
// next read into it.
func readValue(br *bufio.Reader, buf []byte) (Value, []byte, error) {
	buf, err := readReply(br, buf[:0])
	if err != nil {
		return Value{}, buf, err
	}
	v, _, err := ParseValue(buf)
	return v, buf, err
}
