package fanout

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/replicar/replicar/backlog"
)

// sampleFrames has one frame of each type, for seeds and tests.
func sampleFrames() []Frame {
	return []Frame{
		{Type: TypeHello, Hello: Hello{Protocol: ProtocolVersion, Group: "default", Node: "n2", LastEpoch: 7, NextOffset: 1235,
			History: []backlog.EpochStart{{Epoch: 3, StartOffset: 1}, {Epoch: 7, StartOffset: 1000}}}},
		{Type: TypeHello, Hello: Hello{Protocol: ProtocolVersion, Group: "g", Node: "n3"}},
		{Type: TypeVerdict, Verdict: Verdict{Verdict: backlog.Continue, From: 1235, LeaderEpoch: 7, LeaderNode: "n1"}},
		{Type: TypeVerdict, Verdict: Verdict{Verdict: backlog.FullResync, Reason: "backlog: offset out of retention", LeaderEpoch: 7, LeaderNode: "n1"}},
		{Type: TypeVerdict, Verdict: Verdict{Verdict: backlog.Refuse, Reason: "stale", LeaderEpoch: 3, LeaderNode: "n1"}},
		{Type: TypeEntries, Entries: Entries{Committed: 10, Entries: []backlog.Entry{
			{Epoch: 7, Offset: 11, Payload: []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")},
			{Epoch: 7, Offset: 12, Payload: []byte{}}}}},
		{Type: TypeEntries},
		{Type: TypeHeartbeat, Heartbeat: Heartbeat{Epoch: 7, Last: 12, Committed: 11, SentUnixNano: 1735689600123456789}},
		{Type: TypeAck, Ack: Ack{Applied: 12, Epoch: 7, EchoUnixNano: -1}},
		{Type: TypeError, Error: Error{Code: ErrCodeGroup, Message: "group \"other\" is not \"default\""}},
		{Type: TypeSnapshot, Snapshot: Snapshot{Protocol: ProtocolVersion, Group: "default", Node: "n2", Target: "127.0.0.1:6381"}},
		{Type: TypeSnapshotDone, SnapshotDone: SnapshotDone{Epoch: 7, Offset: 1234}},
	}
}

// normal maps nil and empty slices to nil, so decoded and original frames
// compare equal when their bytes are.
func normal(f Frame) Frame {
	if len(f.Hello.History) == 0 {
		f.Hello.History = nil
	}
	if len(f.Entries.Entries) == 0 {
		f.Entries.Entries = nil
	}
	for i, e := range f.Entries.Entries {
		if len(e.Payload) == 0 {
			f.Entries.Entries[i].Payload = nil
		}
	}
	return f
}

func checkDecodeErr(t *testing.T, raw []byte, n int, err error) {
	t.Helper()
	if !errors.Is(err, ErrShortFrame) && !errors.Is(err, ErrCorruptFrame) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrVersion) {
		t.Fatalf("DecodeFrame(%x): unclassified error %v", raw, err)
	}
	if n != 0 {
		t.Fatalf("DecodeFrame(%x): error %v with n=%d", raw, err, n)
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to DecodeFrame: it never panics,
// classifies every failure, and whatever it accepts is the one encoding of
// what it returns. Every prefix of an accepted frame is short, never corrupt,
// so a reader waiting for more bytes never gives up on a good stream.
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(AppendFrame(nil, fr))
	}
	f.Add([]byte{})
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte{0x52, 0x52, 1, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		fr, n, err := DecodeFrame(raw)
		if err != nil {
			checkDecodeErr(t, raw, n, err)
			return
		}
		if n < FrameHeaderSize || n > len(raw) {
			t.Fatalf("DecodeFrame(%x): n=%d out of range", raw, n)
		}
		if again := AppendFrame(nil, fr); !bytes.Equal(again, raw[:n]) {
			t.Fatalf("DecodeFrame(%x) = %+v re-encodes to %x", raw[:n], fr, again)
		}
		for i := 0; i < n; i++ {
			if _, _, err := DecodeFrame(raw[:i]); !errors.Is(err, ErrShortFrame) {
				t.Fatalf("prefix %d of frame %x: %v, want ErrShortFrame", i, raw[:n], err)
			}
		}
	})
}

// FuzzFrameRoundTrip builds frames of every type from random field values and
// checks that they decode to themselves, with trailing bytes left alone.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add(uint8(1), uint64(7), uint64(1235), int64(-5), "default", "n2", []byte("SET k v"), uint8(3))
	f.Add(uint8(3), uint64(0), uint64(1<<64-1), int64(1<<62), "", "", []byte{}, uint8(0))
	f.Add(uint8(2), uint64(1<<63), uint64(0x80), int64(0), "x", "reason", []byte{0xff}, uint8(4))
	f.Fuzz(func(t *testing.T, typ uint8, a, b uint64, ts int64, s1, s2 string, payload []byte, k uint8) {
		if len(s1) > MaxNameLen || len(s2) > MaxNameLen {
			return
		}
		fr := Frame{Type: TypeHello + FrameType(typ%8)}
		switch fr.Type {
		case TypeHello:
			fr.Hello = Hello{Protocol: a, Group: s1, Node: s2, LastEpoch: b, NextOffset: a ^ b}
			for i := range int(k % 8) {
				fr.Hello.History = append(fr.Hello.History, backlog.EpochStart{Epoch: a + uint64(i), StartOffset: b >> i})
			}
		case TypeVerdict:
			fr.Verdict = Verdict{Verdict: backlog.Continue + backlog.Verdict(k%4), From: a, DivergedAt: b, Reason: s1, LeaderEpoch: uint64(ts), LeaderNode: s2}
		case TypeEntries:
			fr.Entries.Committed = a
			for i := range int(k % 8) {
				fr.Entries.Entries = append(fr.Entries.Entries, backlog.Entry{Epoch: b, Offset: a + uint64(i), Payload: payload[:len(payload)*i/8]})
			}
		case TypeHeartbeat:
			fr.Heartbeat = Heartbeat{Epoch: a, Last: b, Committed: a & b, SentUnixNano: ts}
		case TypeAck:
			fr.Ack = Ack{Applied: a, Epoch: b, EchoUnixNano: ts}
		case TypeError:
			fr.Error = Error{Code: a, Message: s1 + s2}
		case TypeSnapshot:
			fr.Snapshot = Snapshot{Protocol: a, Group: s1, Node: s2, Target: s2}
		case TypeSnapshotDone:
			fr.SnapshotDone = SnapshotDone{Epoch: a, Offset: b}
		}
		enc := AppendFrame([]byte("prefix"), fr)
		enc = append(enc, "trailer"...)
		got, n, err := DecodeFrame(enc[len("prefix"):])
		if err != nil {
			t.Fatalf("DecodeFrame(AppendFrame(%+v)): %v", fr, err)
		}
		if n != len(enc)-len("prefix")-len("trailer") {
			t.Fatalf("DecodeFrame used %d of %d bytes", n, len(enc)-len("prefix")-len("trailer"))
		}
		if !reflect.DeepEqual(normal(got), normal(fr)) {
			t.Fatalf("round trip of %+v gave %+v", fr, got)
		}
	})
}
