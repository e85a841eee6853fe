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
func readReply(br *bufio.Reader, dst []byte) ([]byte, error) {
	return readReplyDepth(br, dst, 0)
}

func readReplyDepth(br *bufio.Reader, dst []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, fmt.Errorf("%w: reply nested deeper than %d", ErrMalformed, maxDepth)
	}
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
		return dst, nil
	case Bulk:
		n, ok := parseInt(body)
		if !ok || n < -1 || n > maxReplyBulk {
			return dst, fmt.Errorf("%w: bulk length %q", ErrMalformed, body)
		}
		if n == -1 {
			return dst, nil
		}
		start := len(dst)
		dst = grow(dst, int(n)+2)
		if _, err := io.ReadFull(br, dst[start:]); err != nil {
			return dst, noEOF(err)
		}
		if dst[len(dst)-2] != '\r' || dst[len(dst)-1] != '\n' {
			return dst, fmt.Errorf("%w: bulk not terminated by CRLF", ErrMalformed)
		}
		return dst, nil
	case Array:
		n, ok := parseInt(body)
		if !ok || n < -1 {
			return dst, fmt.Errorf("%w: array length %q", ErrMalformed, body)
		}
		for i := int64(0); i < n; i++ {
			if dst, err = readReplyDepth(br, dst, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: reply type %q", ErrMalformed, line[0])
}

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
