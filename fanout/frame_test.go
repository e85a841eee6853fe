package fanout

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/replicar/replicar/backlog"
)

func TestFrameRoundTrip(t *testing.T) {
	var stream []byte
	frames := sampleFrames()
	for _, f := range frames {
		stream = AppendFrame(stream, f)
	}
	for i, want := range frames {
		got, n, err := DecodeFrame(stream)
		if err != nil {
			t.Fatalf("frame %d (%v): %v", i, want.Type, err)
		}
		if !equalFrames(got, want) {
			t.Fatalf("frame %d: got %+v, want %+v", i, got, want)
		}
		stream = stream[n:]
	}
	if len(stream) != 0 {
		t.Fatalf("%d bytes left", len(stream))
	}
}

func equalFrames(a, b Frame) bool {
	return bytes.Equal(AppendFrame(nil, a), AppendFrame(nil, b))
}

// TestFrameLayout pins the header bytes documented in doc.go.
func TestFrameLayout(t *testing.T) {
	b := AppendFrame(nil, Frame{Type: TypeAck, Ack: Ack{Applied: 300, Epoch: 7, EchoUnixNano: 0}})
	want := []byte{'R', 'R', 1, byte(TypeAck), 0, 0, 0, 4}
	if !bytes.Equal(b[:8], want) {
		t.Fatalf("header %x, want %x", b[:8], want)
	}
	if body := b[12:]; !bytes.Equal(body, []byte{0xac, 0x02, 7, 0}) {
		t.Fatalf("body %x", body)
	}
	crc := crc32.Update(crc32.Update(0, crc32.MakeTable(crc32.Castagnoli), b[:8]), crc32.MakeTable(crc32.Castagnoli), b[12:])
	if got := binary.BigEndian.Uint32(b[8:]); got != crc {
		t.Fatalf("crc %08x, want %08x", got, crc)
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	good := AppendFrame(nil, sampleFrames()[0])
	reseal := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[4:], uint32(len(b)-12))
		crc := crc32.Update(0, castagnoli, b[:8])
		binary.BigEndian.PutUint32(b[8:], crc32.Update(crc, castagnoli, b[12:]))
		return b
	}
	mutate := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	huge := []byte{'R', 'R', 1, byte(TypeEntries), 0xff, 0xff, 0xff, 0xff}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShortFrame},
		{"header only", good[:12], ErrShortFrame},
		{"body cut", good[:len(good)-1], ErrShortFrame},
		{"bad magic", []byte("GET / HTTP/1.1"), ErrCorruptFrame},
		{"bad magic second byte", []byte("RX"), ErrCorruptFrame},
		{"version", mutate(func(b []byte) []byte { b[2] = 2; return b }), ErrVersion},
		{"too large", huge, ErrFrameTooLarge},
		{"checksum", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrCorruptFrame},
		{"type flipped", mutate(func(b []byte) []byte { b[3] = byte(TypeAck); return b }), ErrCorruptFrame},
		{"unknown type", mutate(func(b []byte) []byte { b[3] = 99; return reseal(b) }), ErrCorruptFrame},
		{"trailing garbage", mutate(func(b []byte) []byte { return reseal(append(b, 0)) }), ErrCorruptFrame},
		{"truncated body", mutate(func(b []byte) []byte { return reseal(b[:len(b)-1]) }), ErrCorruptFrame},
		{"bad verdict", reseal([]byte{'R', 'R', 1, byte(TypeVerdict), 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0}), ErrCorruptFrame},
		{"non-minimal varint", reseal([]byte{'R', 'R', 1, byte(TypeAck), 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0x00, 0, 0}), ErrCorruptFrame},
		// A count of a billion entries in a small body must not allocate
		// a billion entries.
		{"hostile count", reseal([]byte{'R', 'R', 1, byte(TypeEntries), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03}), ErrCorruptFrame},
		{"hostile string", reseal([]byte{'R', 'R', 1, byte(TypeError), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0x7f, 'x'}), ErrCorruptFrame},
	}
	for _, c := range cases {
		_, n, err := DecodeFrame(c.b)
		if !errors.Is(err, c.want) || n != 0 {
			t.Errorf("%s: n=%d err=%v, want %v", c.name, n, err, c.want)
		}
	}
}

func TestAppendFrameTruncatesText(t *testing.T) {
	f := Frame{Type: TypeError, Error: Error{Code: ErrCodeInternal, Message: strings.Repeat("x", MaxTextLen+10)}}
	got, _, err := DecodeFrame(AppendFrame(nil, f))
	if err != nil || len(got.Error.Message) != MaxTextLen {
		t.Fatalf("got %d bytes, %v", len(got.Error.Message), err)
	}
}

func entriesFrame() Frame {
	es := make([]backlog.Entry, 64)
	payload := bytes.Repeat([]byte{'x'}, 100)
	for i := range es {
		es[i] = backlog.Entry{Epoch: 7, Offset: 1000 + uint64(i), Payload: payload}
	}
	return Frame{Type: TypeEntries, Entries: Entries{Committed: 999, Entries: es}}
}

func BenchmarkAppendFrameEntries(b *testing.B) {
	f := entriesFrame()
	buf := AppendFrame(nil, f)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], f)
	}
}

func BenchmarkDecodeFrameEntries(b *testing.B) {
	buf := AppendFrame(nil, entriesFrame())
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeFrame(buf); err != nil {
			b.Fatal(err)
		}
	}
}
