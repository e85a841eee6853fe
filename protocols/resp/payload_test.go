package resp

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestPayloadEncoding(t *testing.T) {
	p := Payload{DB: 3, Cmds: [][][]byte{rwArgs("SET k v PXAT 1700000010000"), rwArgs("DEL x")}}
	got := string(AppendPayload([]byte("prefix"), p))
	want := "prefix*3\r\n+v1\r\n:3\r\n*2\r\n" +
		"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$4\r\nPXAT\r\n$13\r\n1700000010000\r\n" +
		"*2\r\n$3\r\nDEL\r\n$1\r\nx\r\n"
	if got != want {
		t.Fatalf("AppendPayload:\n got %q\nwant %q", got, want)
	}
	// One RESP value: readable by anything that reads replies.
	v, n, err := ParseValue([]byte(want[len("prefix"):]))
	if err != nil || n != len(want)-len("prefix") {
		t.Fatalf("ParseValue: %v, %d bytes", err, n)
	}
	if s := v.String(); s != `[+v1 :3 [["SET" "k" "v" "PXAT" "1700000010000"] ["DEL" "x"]]]` {
		t.Errorf("as a value: %s", s)
	}
	q, err := DecodePayload([]byte(want[len("prefix"):]))
	if err != nil {
		t.Fatal(err)
	}
	if q.DB != 3 || rwText(q.Cmds) != rwText(p.Cmds) {
		t.Errorf("DecodePayload = %d %q", q.DB, rwText(q.Cmds))
	}

	empty := AppendPayload(nil, Payload{})
	if string(empty) != "*3\r\n+v1\r\n:0\r\n*0\r\n" {
		t.Errorf("empty payload %q", empty)
	}
	if q, err := DecodePayload(empty); err != nil || q.DB != 0 || q.Cmds != nil {
		t.Errorf("empty payload decodes to %+v, %v", q, err)
	}
	max := AppendPayload(nil, Payload{DB: math.MaxInt32, Cmds: [][][]byte{{{}}}})
	if q, err := DecodePayload(max); err != nil || q.DB != math.MaxInt32 || len(q.Cmds) != 1 || len(q.Cmds[0]) != 1 {
		t.Errorf("largest db, empty argument: %+v, %v", q, err)
	}
}

func TestDecodePayloadRejects(t *testing.T) {
	valid := string(AppendPayload(nil, Payload{DB: 1, Cmds: [][][]byte{rwArgs("SET k v")}}))
	for i := 0; i < len(valid); i++ {
		if _, err := DecodePayload([]byte(valid[:i])); !errors.Is(err, ErrPayload) {
			t.Errorf("truncated to %d bytes: %v", i, err)
		}
	}
	for _, bad := range []string{
		valid + "x",
		valid + valid,
		strings.Replace(valid, "+v1", "+v2", 1),
		strings.Replace(valid, "*3", "*4", 1),
		strings.Replace(valid, ":1", ":-1", 1),
		strings.Replace(valid, ":1", ":01", 1),
		strings.Replace(valid, ":1", ":2147483648", 1),
		strings.Replace(valid, ":1", ":99999999999999999999", 1),
		strings.Replace(valid, "*1\r\n*3", "*01\r\n*3", 1),
		strings.Replace(valid, "*1\r\n*3", "*1\r\n*03", 1),
		strings.Replace(valid, "$3\r\nSET", "$03\r\nSET", 1),
		strings.Replace(valid, "$3\r\nSET", "$2\r\nSET", 1),
		strings.Replace(valid, "$3\r\nSET", "$4\r\nSET", 1),
		strings.Replace(valid, "$3\r\nSET\r\n", "$3\r\nSET\n\n", 1),
		strings.Replace(valid, "*1\r\n*3", "*1\r\n*0", 1),
		strings.Replace(valid, "*1\r\n*3", "*1\r\n*-1", 1),
		strings.Replace(valid, "$1\r\nk", "+k", 1),
		"*3\r\n+v1\r\n:0\r\n*1000000000\r\n",
		"*3\r\n+v1\r\n:0\r\n*1\r\n*100000000\r\n",
		"*3\r\n+v1\r\n:0\r\n*1\r\n*1\r\n$1000000000\r\n",
		"*3\r\n+v1\r\n:0\r\n*1\r\n*1\r\n$999999999999999999999\r\n",
		"",
	} {
		if _, err := DecodePayload([]byte(bad)); !errors.Is(err, ErrPayload) {
			t.Errorf("DecodePayload(%q) = %v, want ErrPayload", bad, err)
		}
	}
}

func TestDecodePayloadAllocs(t *testing.T) {
	b := AppendPayload(nil, Payload{DB: 2, Cmds: [][][]byte{rwArgs("SET k v"), rwArgs("SREM s a b c d e f")}})
	if n := testing.AllocsPerRun(100, func() { DecodePayload(b) }); n > 2 {
		t.Errorf("DecodePayload: %v allocations, want 2", n)
	}
}

// FuzzPayload: DecodePayload never panics, and what it accepts is exactly
// what AppendPayload writes (one encoding per payload); and any payload
// survives AppendPayload then DecodePayload.
func FuzzPayload(f *testing.F) {
	f.Add(AppendPayload(nil, Payload{DB: 3, Cmds: [][][]byte{rwArgs("SET k v PXAT 1700000010000")}}), uint32(3), []byte("SET k v\nDEL k"))
	f.Add([]byte("*3\r\n+v1\r\n:0\r\n*0\r\n"), uint32(0), []byte(""))
	f.Add([]byte("*3\r\n+v1\r\n:0\r\n*1\r\n*1\r\n$0\r\n\r\n"), uint32(1<<31), []byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte, db uint32, blob []byte) {
		if p, err := DecodePayload(data); err == nil {
			if again := AppendPayload(nil, p); !bytes.Equal(again, data) {
				t.Fatalf("DecodePayload(%q) re-encodes as %q", data, again)
			}
		} else if !errors.Is(err, ErrPayload) {
			t.Fatalf("DecodePayload(%q): %v", data, err)
		}

		p := Payload{DB: int(db % (math.MaxInt32 + 1))}
		for _, line := range bytes.Split(blob, []byte("\n")) {
			p.Cmds = append(p.Cmds, bytes.Split(line, []byte(" ")))
		}
		q, err := DecodePayload(AppendPayload(nil, p))
		if err != nil {
			t.Fatalf("round trip of %+v: %v", p, err)
		}
		if q.DB != p.DB || len(q.Cmds) != len(p.Cmds) {
			t.Fatalf("round trip: %+v became %+v", p, q)
		}
		for i := range p.Cmds {
			if len(q.Cmds[i]) != len(p.Cmds[i]) {
				t.Fatalf("round trip: command %d: %q became %q", i, p.Cmds[i], q.Cmds[i])
			}
			for j := range p.Cmds[i] {
				if !bytes.Equal(q.Cmds[i][j], p.Cmds[i][j]) {
					t.Fatalf("round trip: command %d: %q became %q", i, p.Cmds[i], q.Cmds[i])
				}
			}
		}
	})
}
