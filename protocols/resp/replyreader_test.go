package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/test/harness"
)

func TestReadReplyExactBytes(t *testing.T) {
	for _, reply := range []string{
		"+OK\r\n",
		"-ERR wrong\r\n",
		":-42\r\n",
		"$0\r\n\r\n",
		"$5\r\na\r\nbc\r\n", // CRLF inside a bulk
		"$-1\r\n",
		"*-1\r\n",
		"*0\r\n",
		"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*0\r\n$-1\r\n",
		"*2\r\n*1\r\n*1\r\n-ERR inner\r\n+after\r\n",
	} {
		// A second reply follows: readReply must stop exactly at the end
		// of the first.
		br := bufio.NewReader(strings.NewReader(reply + "+NEXT\r\n"))
		got, err := readReply(br, []byte("prefix"))
		if err != nil {
			t.Errorf("%q: %v", reply, err)
			continue
		}
		if string(got) != "prefix"+reply {
			t.Errorf("%q: read %q", reply, got)
		}
		next, err := readReply(br, nil)
		if err != nil || string(next) != "+NEXT\r\n" {
			t.Errorf("%q: next reply %q, %v", reply, next, err)
		}
	}
}

// deepReply is what Redis answers to a Lua script returning a table that
// holds itself: depth arrays of one element each, the innermost holding the
// error that ended the conversion.
func deepReply(depth int) string {
	return strings.Repeat("*1\r\n", depth) + "-ERR reached lua stack limit\r\n"
}

func TestReadReplyDeep(t *testing.T) {
	for _, depth := range []int{65, 8000, 100000} {
		reply := deepReply(depth)
		br := bufio.NewReader(strings.NewReader(reply + "+PONG\r\n"))
		got, err := readReply(br, nil)
		if err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		if string(got) != reply {
			t.Fatalf("depth %d: read %d bytes, want %d", depth, len(got), len(reply))
		}
		if next, err := readReply(br, nil); err != nil || string(next) != "+PONG\r\n" {
			t.Fatalf("depth %d: next reply %q, %v", depth, next, err)
		}
	}
}

func TestReadReplyMalformed(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"?what\r\n", ErrMalformed},
		{"+OK\n", ErrMalformed},
		{"$3\r\nabcd\r\n", ErrMalformed},
		{"$-2\r\n", ErrMalformed},
		{"*-2\r\n", ErrMalformed},
		{"*x\r\n", ErrMalformed},
		{"*2099511627776\r\n", ErrMalformed},
		{"", io.ErrUnexpectedEOF},
		{"*2\r\n+a\r\n", io.ErrUnexpectedEOF},
		{"$10\r\nabc", io.ErrUnexpectedEOF},
		{"*1\r\n*1\r\n", io.ErrUnexpectedEOF},
	} {
		_, err := readReply(bufio.NewReader(strings.NewReader(tc.in)), nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%q: err %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestParseValueDeep(t *testing.T) {
	reply := []byte(deepReply(8000))
	v, n, err := ParseValue(reply)
	if err != nil || n != len(reply) {
		t.Fatalf("ParseValue: %d of %d bytes, %v", n, len(reply), err)
	}
	depth := 0
	for v.Kind == Array {
		if len(v.Elems) != 1 {
			t.Fatalf("level %d has %d elements", depth, len(v.Elems))
		}
		v = v.Elems[0]
		depth++
	}
	if depth != 8000 || !v.IsError() {
		t.Fatalf("depth %d, innermost %s", depth, v)
	}
	if got := AppendValue(nil, mustParse(t, reply)); !bytes.Equal(got, reply) {
		t.Fatal("AppendValue does not give back the reply")
	}

	if _, _, err := ParseValue([]byte(deepReply(maxDepth + 1))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("past maxDepth: err %v, want ErrMalformed", err)
	}
}

func mustParse(t *testing.T, b []byte) Value {
	t.Helper()
	v, _, err := ParseValue(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestReadReplyRecursiveScript asks a real redis-server for the deepest
// reply it makes (Redis's own suite: "Script return recursive object") and
// checks that the connection stays in step after it.
func TestReadReplyRecursiveScript(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server; skipped in -short mode")
	}
	r := harness.StartRedis(t)
	c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	script := []byte("local a = {}; local b = {a}; a[1] = b; return a")
	var req []byte
	req = AppendCommand(req, []byte("EVAL"), script, []byte("0"))
	req = AppendCommand(req, []byte("PING"))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	reply, err := readReply(br, nil)
	if err != nil {
		t.Fatalf("EVAL reply: %v", err)
	}
	if !bytes.HasPrefix(reply, []byte("*1\r\n*1\r\n")) || !bytes.HasSuffix(reply, []byte("-ERR reached lua stack limit\r\n")) {
		t.Fatalf("EVAL reply %q … %q", reply[:min(16, len(reply))], reply[max(0, len(reply)-40):])
	}
	if _, _, err := ParseValue(reply); err != nil {
		t.Fatalf("ParseValue of %d levels: %v", bytes.Count(reply, []byte("*1\r\n")), err)
	}
	if pong, err := readReply(br, nil); err != nil || string(pong) != "+PONG\r\n" {
		t.Fatalf("after the deep reply: %q, %v", pong, err)
	}
}
