package resp

import "testing"

func benchmarkPrepareEffect(b *testing.B, cmd string, reply string) {
	args := rwArgs(cmd)
	replies := rwReplies(b, reply)
	b.ReportAllocs()
	for b.Loop() {
		p, err := Prepare(args, rwNow, nil)
		if err != nil {
			b.Fatal(err)
		}
		log, err := p.Effect(replies)
		if err != nil || len(log) != 1 {
			b.Fatal(log, err)
		}
	}
}

// BenchmarkPrepareEffect measures the rewriting every write goes through.
func BenchmarkPrepareEffect(b *testing.B) {
	b.Run("SET", func(b *testing.B) { benchmarkPrepareEffect(b, "SET key value", rwOK) })
	b.Run("SET-EX", func(b *testing.B) { benchmarkPrepareEffect(b, "SET key value EX 10", rwOK) })
	b.Run("EXPIRE", func(b *testing.B) { benchmarkPrepareEffect(b, "EXPIRE key 10", rwOne) })
	b.Run("INCR", func(b *testing.B) { benchmarkPrepareEffect(b, "INCR counter", ":5\r\n") })
}

func BenchmarkAppendPayload(b *testing.B) {
	p := Payload{DB: 0, Cmds: [][][]byte{rwArgs("SET key:000001 value-of-some-length PXAT 1700000010000")}}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPayload(buf[:0], p)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodePayload(b *testing.B) {
	buf := AppendPayload(nil, Payload{DB: 0, Cmds: [][][]byte{rwArgs("SET key:000001 value-of-some-length PXAT 1700000010000")}})
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := DecodePayload(buf); err != nil {
			b.Fatal(err)
		}
	}
}
