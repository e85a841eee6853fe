package wal

import (
	"context"
	"testing"

	"github.com/replicar/replicar/backlog"
)

// Appending in steady state must not allocate: the proxy appends every
// write, and garbage there is paid for on the client's latency.
func TestAppendDoesNotAllocate(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncNo, SyncEverySec} {
		w, _ := mustOpen(t, Options{Dir: t.TempDir(), Sync: policy})
		e := backlog.Entry{Epoch: 1, Payload: make([]byte, 100)}
		batch := entries(1, 8, 100, 0, 1)
		e.Offset = 1
		mustAppend(t, w, e) // grows the encode buffer once
		allocs := testing.AllocsPerRun(1000, func() {
			e.Offset = w.LastOffset() + 1
			if err := w.Append(e); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: Append allocates %.1f times per call", policy, allocs)
		}
		allocs = testing.AllocsPerRun(100, func() {
			for i := range batch {
				batch[i].Offset = w.LastOffset() + 1 + uint64(i)
			}
			if err := w.Append(batch...); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: Append of a batch allocates %.1f times per call", policy, allocs)
		}
		mustClose(t, w)
	}
}

func benchmarkAppend(b *testing.B, policy SyncPolicy, size int) {
	w, _ := mustOpen(b, Options{Dir: b.TempDir(), Sync: policy})
	defer mustClose(b, w)
	e := backlog.Entry{Epoch: 1, Payload: make([]byte, size)}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e.Offset = uint64(i) + 1
		if err := w.Append(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend measures one 100-byte entry per Append, the common case of
// a small Redis write.
func BenchmarkAppend(b *testing.B) {
	b.Run("no", func(b *testing.B) { benchmarkAppend(b, SyncNo, 100) })
	b.Run("everysec", func(b *testing.B) { benchmarkAppend(b, SyncEverySec, 100) })
	b.Run("always", func(b *testing.B) { benchmarkAppend(b, SyncAlways, 100) })
	b.Run("no/4KiB", func(b *testing.B) { benchmarkAppend(b, SyncNo, 4096) })
}

const replayN, replaySize = 100_000, 100

// replayDir writes a closed WAL of replayN entries of replaySize bytes.
func replayDir(b *testing.B) (string, int64) {
	dir := b.TempDir()
	w, _ := mustOpen(b, Options{Dir: dir, SegmentBytes: 4 << 20, Sync: SyncNo})
	batch := entries(1, 1000, replaySize, 0, 1)
	for i := 0; i < replayN; i += len(batch) {
		for j := range batch {
			batch[j].Offset = uint64(i + j + 1)
		}
		mustAppend(b, w, batch...)
	}
	size := w.Size()
	mustClose(b, w)
	return dir, size
}

// BenchmarkReplay measures reading back a WAL of 100,000 entries of 100
// bytes, which is what a restart costs on top of recovery.
func BenchmarkReplay(b *testing.B) {
	dir, size := replayDir(b)
	w, _ := mustOpen(b, Options{Dir: dir, SegmentBytes: 4 << 20, Sync: SyncNo})
	defer mustClose(b, w)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		count := 0
		err := w.Replay(context.Background(), 0, func(backlog.Entry) error {
			count++
			return nil
		})
		if err != nil || count != replayN {
			b.Fatalf("replayed %d: %v", count, err)
		}
	}
}

// BenchmarkOpen measures recovery of the same WAL: every frame is read and
// checked.
func BenchmarkOpen(b *testing.B) {
	dir, size := replayDir(b)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w, rec, err := Open(context.Background(), Options{Dir: dir, SegmentBytes: 4 << 20, Sync: SyncNo})
		if err != nil || rec.Records != replayN {
			b.Fatalf("open: %v %v", rec, err)
		}
		b.StopTimer()
		mustClose(b, w)
		b.StartTimer()
	}
}
