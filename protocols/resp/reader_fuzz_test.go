package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzCommandReader feeds arbitrary bytes to the client command reader: it
// never panics, never returns a bulk larger than the limit, and a command
// it returns re-encodes to a request that reads back the same.
func FuzzCommandReader(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n",
		"SET k \"a\\x41\\n\" 'b c'\r\n",
		"*1\r\n$99999999999\r\n",
		"*-1\r\n*0\r\n",
		"\"unbalanced\r\n",
		"*2\r\n$3\r\nGET\r\n$2\r\nkXX\r\n",
	} {
		f.Add([]byte(seed))
	}
	lim := Limits{MaxBulk: 1 << 16, MaxArgs: 1 << 10, MaxInline: 1 << 12}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := commandReader{br: bufio.NewReaderSize(bytes.NewReader(data), 4096), lim: lim}
		a := &arena{}
		for i := 0; i < 1000; i++ {
			cmd, err := r.read(a)
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if int64(len(cmd.args)) > lim.MaxArgs {
				t.Fatalf("%d args over the limit", len(cmd.args))
			}
			for _, arg := range cmd.args {
				if int64(len(arg)) > lim.MaxBulk {
					t.Fatalf("bulk of %d over the limit", len(arg))
				}
			}
			if len(cmd.args) == 0 {
				continue
			}
			enc := AppendCommand(nil, cmd.args...)
			back := commandReader{br: bufio.NewReader(bytes.NewReader(enc)), lim: lim}
			again, err := back.read(&arena{})
			if err != nil || len(again.args) != len(cmd.args) {
				t.Fatalf("re-encoded command does not read back: %v", err)
			}
			for k := range again.args {
				if !bytes.Equal(again.args[k], cmd.args[k]) {
					t.Fatalf("arg %d changed: %q vs %q", k, again.args[k], cmd.args[k])
				}
			}
		}
	})
}

// FuzzReply checks the backend reply reader against ParseValue: both
// accept the same complete replies, never panic, and agree on the bytes.
func FuzzReply(f *testing.F) {
	for _, seed := range []string{
		"+OK\r\n", "-ERR x\r\n", ":12\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n",
		"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "*3\r\n", "$5\r\nab\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, rerr := readReply(bufio.NewReaderSize(bytes.NewReader(data), 4096), nil)
		v, n, perr := ParseValue(data)
		if perr == nil {
			if rerr != nil {
				t.Fatalf("ParseValue accepted %q, readReply: %v", data[:n], rerr)
			}
			if !bytes.Equal(raw, data[:n]) {
				t.Fatalf("readReply took %q, ParseValue %q", raw, data[:n])
			}
			if got := AppendValue(nil, v); len(got) > n {
				t.Fatalf("re-encoding grew: %q from %q", got, data[:n])
			}
		}
	})
}
