package backlog

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestLogMatchesModel drives a Log with random operations and checks it
// against a plain slice after each one. It is what catches chunk memory being
// reused while an entry still points into it.
func TestLogMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7919))
		maxBytes := int64(200 + rng.IntN(2000))
		l := NewLog(Options{MaxBytes: maxBytes, ChunkSize: 256, MaxEpochs: 8})
		var model []Entry // every entry ever appended and not truncated
		base := uint64(0)
		epoch := uint64(1)
		for step := 0; step < 3000; step++ {
			switch op := rng.IntN(100); {
			case op < 80:
				if rng.IntN(40) == 0 {
					epoch++
				}
				size := rng.IntN(100)
				if rng.IntN(50) == 0 {
					size = 300 + rng.IntN(500) // own buffer
				}
				p := make([]byte, size)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				off, err := l.Append(epoch, p)
				if err != nil {
					t.Fatalf("seed %d step %d: append: %v", seed, step, err)
				}
				if want := base + uint64(len(model)) + 1; off != want {
					t.Fatalf("seed %d: offset %d, want %d", seed, off, want)
				}
				model = append(model, Entry{Epoch: epoch, Offset: off, Payload: p})
			case op < 90:
				if l.Len() == 0 {
					continue
				}
				to := l.First() - 1 + uint64(rng.IntN(l.Len()+1))
				if err := l.TruncateAfter(to); err != nil {
					t.Fatalf("seed %d: truncate %d: %v", seed, to, err)
				}
				model = model[:to-base]
			case op < 92:
				base = l.Last() + uint64(rng.IntN(10))
				epoch++
				l.Reset(Position{Epoch: epoch, Offset: base})
				model = model[:0]
			default:
				from := l.First() + uint64(rng.IntN(l.Len()+1))
				got, err := l.Read(from, rng.IntN(500), nil)
				if err != nil {
					t.Fatalf("seed %d: read %d: %v", seed, from, err)
				}
				if l.Len() > int(from-l.First()) && len(got) == 0 {
					t.Fatalf("seed %d: read %d returned nothing", seed, from)
				}
			}
			checkAgainstModel(t, l, model, base, maxBytes)
		}
	}
}

func checkAgainstModel(t *testing.T, l *Log, model []Entry, base uint64, maxBytes int64) {
	t.Helper()
	if got, want := l.Last(), base+uint64(len(model)); got != want {
		t.Fatalf("last %d, want %d", got, want)
	}
	var bytesSum int64
	for off := l.First(); off <= l.Last(); off++ {
		e, err := l.Entry(off)
		if err != nil {
			t.Fatalf("entry %d: %v", off, err)
		}
		m := model[off-base-1]
		if e.Epoch != m.Epoch || !bytes.Equal(e.Payload, m.Payload) {
			t.Fatalf("entry %d differs from the model", off)
		}
		bytesSum += int64(len(e.Payload)) + EntryOverhead
	}
	if bytesSum != l.Bytes() {
		t.Fatalf("bytes %d, counted %d", l.Bytes(), bytesSum)
	}
	// Own buffers are let go with their entries, and chunks stay numbered
	// one after another, which is how slots find them.
	large := 0
	for i := range l.count {
		if l.at(i).ref&largeRef != 0 {
			large++
		}
	}
	if large != len(l.large) {
		t.Fatalf("%d entries have their own buffer, %d buffers held", large, len(l.large))
	}
	for i, c := range l.chunks {
		if c.seq != l.chunks[0].seq+uint64(i) {
			t.Fatalf("chunk %d has seq %d after %d", i, c.seq, l.chunks[0].seq)
		}
	}
	if l.Bytes() > maxBytes && l.Len() > 1 {
		t.Fatalf("retained %d bytes in %d entries over the %d limit", l.Bytes(), l.Len(), maxBytes)
	}
	// Every retained entry's epoch is what the history says.
	for off := l.First(); off <= l.Last(); off++ {
		e, _ := l.Entry(off)
		if ep, ok := l.History().EpochAt(off); ok && ep != e.Epoch {
			t.Fatalf("history says epoch %d at %d, entry has %d", ep, off, e.Epoch)
		}
	}
}

func TestLogErrors(t *testing.T) {
	l := NewLog(Options{})
	if _, err := l.Append(1, make([]byte, MaxPayload+1)); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("oversized append: %v", err)
	}
	if l.Len() != 0 {
		t.Fatal("a refused append left an entry")
	}
	if _, err := l.Entry(1); !errors.Is(err, ErrFutureOffset) {
		t.Fatalf("entry past the end: %v", err)
	}
	if _, err := l.Append(2, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(1, []byte("x")); !errors.Is(err, ErrEpochRegression) {
		t.Fatalf("epoch regression: %v", err)
	}
	if err := l.AppendEntry(Entry{Epoch: 2, Offset: 5}); !errors.Is(err, ErrOffsetGap) {
		t.Fatalf("gap: %v", err)
	}
	if _, err := l.Read(0, 10, nil); !errors.Is(err, ErrOutOfRetention) {
		t.Fatalf("read 0: %v", err)
	}
}

func TestLogAppendCopiesPayload(t *testing.T) {
	l := NewLog(Options{})
	p := []byte("hello")
	off, _ := l.Append(1, p)
	p[0] = 'j'
	e, _ := l.Entry(off)
	if string(e.Payload) != "hello" {
		t.Fatalf("payload %q changed with the caller's buffer", e.Payload)
	}
}

func TestHistory(t *testing.T) {
	var h History
	for _, s := range []EpochStart{{1, 1}, {1, 4}, {3, 10}, {4, 10}, {7, 20}} {
		if err := h.Observe(s.Epoch, s.StartOffset); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Observe(5, 30); !errors.Is(err, ErrEpochRegression) {
		t.Fatalf("regression: %v", err)
	}
	if err := h.Observe(9, 19); !errors.Is(err, ErrOffsetGap) {
		t.Fatalf("new epoch before the last start: %v", err)
	}
	tests := []struct {
		name     string
		offset   uint64
		epoch    uint64
		ok       bool
		endEpoch uint64
		end      uint64
		endOK    bool
	}{
		{"zero offset", 0, 0, false, 0, 0, false},
		{"first epoch", 9, 1, true, 1, 9, true},
		{"empty epoch 3 is shadowed by 4", 10, 4, true, 3, 9, true},
		{"epoch not in history ends where the next begins", 15, 4, true, 5, 19, true},
		{"current epoch ends at the log end", 25, 7, true, 7, 99, true},
		{"future epoch", 25, 7, true, 8, 99, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, ok := h.EpochAt(tt.offset)
			if ep != tt.epoch || ok != tt.ok {
				t.Errorf("EpochAt(%d) = %d,%v want %d,%v", tt.offset, ep, ok, tt.epoch, tt.ok)
			}
			end, ok := h.EndOffsetFor(tt.endEpoch, 99)
			if end != tt.end || ok != tt.endOK {
				t.Errorf("EndOffsetFor(%d) = %d,%v want %d,%v", tt.endEpoch, end, ok, tt.end, tt.endOK)
			}
		})
	}
	h.TruncateAfter(12)
	if h.LastEpoch() != 4 || h.Len() != 3 {
		t.Fatalf("after truncate: %+v", h.Starts())
	}
	h.keepNewest(1)
	if _, ok := h.EpochAt(5); ok {
		t.Fatal("forgotten epoch still answers")
	}
	if _, ok := h.EndOffsetFor(1, 99); ok {
		t.Fatal("forgotten epoch still has an end")
	}
}

var sink []Entry

// fullLog is a log of maxBytes filled to its limit with payloads of size
// bytes, and that payload: appending more evicts and recycles chunks, as in
// a leader's steady state.
func fullLog(maxBytes int64, size int) (*Log, []byte) {
	l := NewLog(Options{MaxBytes: maxBytes})
	p := bytes.Repeat([]byte("x"), size)
	for l.Bytes() < l.MaxBytes()-1000 {
		l.Append(1, p)
	}
	return l, p
}

func BenchmarkAppend100(b *testing.B) {
	l, p := fullLog(8<<20, 100)
	b.ReportAllocs()
	b.SetBytes(100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Append(1, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead64KiB(b *testing.B) {
	l, _ := fullLog(8<<20, 100)
	dst := make([]Entry, 0, 1024)
	from := l.First()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := l.Read(from, 64<<10, dst[:0])
		if err != nil {
			b.Fatal(err)
		}
		sink = got
	}
}

// BenchmarkGCFullBacklog is one garbage collection with a full 256 MiB
// backlog of small entries retained, as a busy leader holds: the cost every
// GC cycle of the process pays for the backlog.
func BenchmarkGCFullBacklog(b *testing.B) {
	l, _ := fullLog(256<<20, 40)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
	}
	b.ReportMetric(float64(l.Len()), "entries")
	runtime.KeepAlive(l)
}

// Appending to a full log recycles the evicted entries' space: in steady
// state an append of a small entry allocates nothing. The benchmark reports
// the same; this makes a regression fail.
func TestAppendDoesNotAllocate(t *testing.T) {
	l, p := fullLog(8<<20, 100)
	allocs := testing.AllocsPerRun(10000, func() {
		if _, err := l.Append(1, p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Append of a 100-byte entry to a full log: %v allocations per call, want 0", allocs)
	}
}
