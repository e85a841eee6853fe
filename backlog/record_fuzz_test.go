package backlog

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzRecordCodec checks the record codec both ways: DecodeRecord never
// panics on any bytes and classifies every failure, whatever it accepts is
// the one encoding of what it returns, and AppendRecord's output decodes to
// the entry it was given.
func FuzzRecordCodec(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint64(0), []byte{})
	f.Add(AppendRecord(nil, Entry{Epoch: 1, Offset: 1, Payload: []byte("SET k v")}), uint64(7), uint64(1234), []byte("*3\r\n$3\r\nSET\r\n"))
	f.Add([]byte{RecordVersion, 0x80, 0x00, 0x01, 0x00}, uint64(1<<63), uint64(1<<64-1), []byte{0})
	f.Add([]byte{RecordVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, uint64(0x7f), uint64(0x80), bytes.Repeat([]byte{0xab}, 300))
	f.Add([]byte{2, 1, 1, 0}, uint64(1), uint64(2), []byte(nil))
	f.Fuzz(func(t *testing.T, raw []byte, epoch, offset uint64, payload []byte) {
		e, n, err := DecodeRecord(raw)
		if err != nil {
			if !errors.Is(err, ErrShortRecord) && !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("DecodeRecord(%x): unclassified error %v", raw, err)
			}
			if n != 0 {
				t.Fatalf("DecodeRecord(%x): error %v with n=%d", raw, err, n)
			}
		} else {
			if n < 4 || n > len(raw) {
				t.Fatalf("DecodeRecord(%x): n=%d out of range", raw, n)
			}
			if got := RecordSize(e); got != n {
				t.Fatalf("DecodeRecord(%x): used %d bytes, RecordSize says %d", raw, n, got)
			}
			if again := AppendRecord(nil, e); !bytes.Equal(again, raw[:n]) {
				t.Fatalf("DecodeRecord(%x) = %+v re-encodes to %x", raw[:n], e, again)
			}
			// Any prefix of a record is short, never corrupt: a reader
			// waiting for more bytes must not give up on a good stream.
			for i := 0; i < n; i++ {
				if _, _, err := DecodeRecord(raw[:i]); !errors.Is(err, ErrShortRecord) {
					t.Fatalf("DecodeRecord(%x) prefix of a record: %v, want ErrShortRecord", raw[:i], err)
				}
			}
		}

		in := Entry{Epoch: epoch, Offset: offset, Payload: payload}
		enc := AppendRecord([]byte("prefix"), in)
		if len(enc)-len("prefix") != RecordSize(in) {
			t.Fatalf("AppendRecord(%+v) wrote %d bytes, RecordSize says %d", in, len(enc)-6, RecordSize(in))
		}
		enc = append(enc, "trailer"...)
		out, m, err := DecodeRecord(enc[len("prefix"):])
		if err != nil {
			t.Fatalf("DecodeRecord(AppendRecord(%+v)): %v", in, err)
		}
		if m != RecordSize(in) || out.Epoch != epoch || out.Offset != offset || !bytes.Equal(out.Payload, payload) {
			t.Fatalf("round trip of %+v gave %+v (%d bytes)", in, out, m)
		}
	})
}
