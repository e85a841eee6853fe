package wal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/replicar/replicar/backlog"
)

func TestAppendReplayRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name       string
		segBytes   int64
		n, size    int
		batch      int
		epochEvery int
		minSegs    int
	}{
		{name: "empty", segBytes: 0, n: 0, size: 10, batch: 1, minSegs: 1},
		{name: "one record", segBytes: 0, n: 1, size: 100, batch: 1, minSegs: 1},
		{name: "one segment", segBytes: 0, n: 500, size: 100, batch: 1, epochEvery: 50, minSegs: 1},
		{name: "many segments", segBytes: 1024, n: 500, size: 100, batch: 1, epochEvery: 7, minSegs: 40},
		{name: "batches across segments", segBytes: 1024, n: 500, size: 100, batch: 33, epochEvery: 100, minSegs: 40},
		{name: "empty payloads", segBytes: 256, n: 300, size: 0, batch: 5, epochEvery: 3, minSegs: 10},
		{name: "frames larger than segments", segBytes: 100, n: 20, size: 300, batch: 3, minSegs: 20},
		{name: "one big batch", segBytes: 4096, n: 3000, size: 700, batch: 3000, epochEvery: 1000, minSegs: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Dir: t.TempDir(), SegmentBytes: tc.segBytes, Sync: SyncNo}
			w, rec := mustOpen(t, opts)
			if !rec.Clean() || rec.Segments != 0 || rec.Records != 0 || rec.LastOffset != 0 || rec.FirstOffset != 1 {
				t.Fatalf("new WAL recovery: %+v", rec)
			}
			want := entries(1, tc.n, tc.size, tc.epochEvery, 1)
			for i := 0; i < len(want); i += tc.batch {
				mustAppend(t, w, want[i:min(i+tc.batch, len(want))]...)
			}
			if got := w.Segments(); got < tc.minSegs {
				t.Errorf("Segments() = %d, want at least %d", got, tc.minSegs)
			}
			checkEntries(t, replayAll(t, w, 0), want)
			if w.FirstOffset() != 1 || w.LastOffset() != uint64(tc.n) {
				t.Errorf("FirstOffset, LastOffset = %d, %d; want 1, %d", w.FirstOffset(), w.LastOffset(), tc.n)
			}
			segs := w.Segments()
			size := w.Size()
			mustClose(t, w)

			w, rec = mustOpen(t, opts)
			defer mustClose(t, w)
			if !rec.Clean() {
				t.Fatalf("reopen after Close repaired: %v", rec)
			}
			if rec.Segments != segs || rec.Records != tc.n || rec.LastOffset != uint64(tc.n) {
				t.Errorf("recovery %+v, want %d segments, %d records", rec, segs, tc.n)
			}
			if tc.n > 0 && rec.LastEpoch != want[tc.n-1].Epoch {
				t.Errorf("recovered last epoch %d, want %d", rec.LastEpoch, want[tc.n-1].Epoch)
			}
			if w.Size() != size {
				t.Errorf("Size() = %d after reopen, %d before", w.Size(), size)
			}
			checkEntries(t, replayAll(t, w, 0), want)
			more := entries(uint64(tc.n)+1, 3, 10, 0, w.LastEpoch())
			mustAppend(t, w, more...)
			checkEntries(t, replayAll(t, w, 0), append(want, more...))
		})
	}
}

func TestReplayFrom(t *testing.T) {
	w, _ := mustOpen(t, Options{Dir: t.TempDir(), SegmentBytes: 512, Sync: SyncNo})
	defer mustClose(t, w)
	want := entries(1, 200, 50, 10, 3)
	mustAppend(t, w, want...)
	for _, from := range []uint64{0, 1, 2, 9, 10, 11, 57, 199, 200, 201, 1000} {
		got := replayAll(t, w, from)
		start := min(max(int(from), 1)-1, len(want))
		if err := diffEntries(got, want[start:]); err != nil {
			t.Errorf("Replay from %d: %v", from, err)
		}
	}

	stop := errors.New("stop")
	n := 0
	err := w.Replay(context.Background(), 0, func(backlog.Entry) error {
		if n++; n == 5 {
			return stop
		}
		return nil
	})
	if err != stop || n != 5 {
		t.Errorf("Replay returned %v after %d calls, want fn's error after 5", err, n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Replay(ctx, 0, func(backlog.Entry) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Replay with a cancelled context: %v", err)
	}
}

func TestSegmentLayout(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 1000
	w, _ := mustOpen(t, Options{Dir: dir, SegmentBytes: segBytes, Sync: SyncNo})
	es := entries(1, 100, 90, 0, 1)
	es = append(es, entries(101, 1, 5000, 0, 1)...) // larger than a segment
	es = append(es, entries(102, 30, 90, 0, 1)...)
	mustAppend(t, w, es...)
	mustClose(t, w)

	names := segmentFiles(t, dir)
	next := uint64(1)
	for i, name := range names {
		base, _ := parseSegmentName(name)
		if base != next {
			t.Fatalf("segment %s starts at %d, want %d", name, base, next)
		}
		path := filepath.Join(dir, name)
		size := fileSize(t, path)
		ends := frameEnds(t, path)
		if len(ends) == 0 {
			t.Fatalf("segment %s holds no frame", name)
		}
		if size > segBytes && len(ends) != 1 {
			t.Errorf("segment %s is %d bytes with %d frames; only a lone frame may pass SegmentBytes", name, size, len(ends))
		}
		if i < len(names)-1 && size+frameSize(es[next-1+uint64(len(ends))]) <= segBytes {
			t.Errorf("segment %s sealed at %d bytes though the next frame fit", name, size)
		}
		next += uint64(len(ends))
	}
	if next != 132 {
		t.Fatalf("segments hold offsets up to %d, want 131", next-1)
	}
	if want := "00000000000000000001.wal"; names[0] != want {
		t.Errorf("first segment is %s, want %s", names[0], want)
	}
}

func TestAppendRefusesOutOfOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch []backlog.Entry
		want  error
	}{
		{"gap", []backlog.Entry{{Epoch: 2, Offset: 12}}, backlog.ErrOffsetGap},
		{"repeat", []backlog.Entry{{Epoch: 2, Offset: 10}}, backlog.ErrOffsetGap},
		{"zero", []backlog.Entry{{Epoch: 2, Offset: 0}}, backlog.ErrOffsetGap},
		{"gap inside the batch", []backlog.Entry{{Epoch: 2, Offset: 11}, {Epoch: 2, Offset: 13}}, backlog.ErrOffsetGap},
		{"epoch regression", []backlog.Entry{{Epoch: 1, Offset: 11}}, backlog.ErrEpochRegression},
		{"epoch regression inside the batch", []backlog.Entry{{Epoch: 3, Offset: 11}, {Epoch: 2, Offset: 12}}, backlog.ErrEpochRegression},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, _ := mustOpen(t, Options{Dir: dir, SegmentBytes: 256, Sync: SyncNo})
			defer mustClose(t, w)
			want := entries(1, 10, 20, 0, 2)
			mustAppend(t, w, want...)
			size := w.Size()
			if err := w.Append(tc.batch...); !errors.Is(err, tc.want) {
				t.Fatalf("Append(%+v) = %v, want %v", tc.batch, err, tc.want)
			}
			if w.LastOffset() != 10 || w.Size() != size {
				t.Fatalf("refused batch changed the WAL: last %d, size %d (was %d)", w.LastOffset(), w.Size(), size)
			}
			checkEntries(t, replayAll(t, w, 0), want)
			mustAppend(t, w, backlog.Entry{Epoch: 2, Offset: 11})
		})
	}
}

func TestDropBefore(t *testing.T) {
	// 10 records of 100 bytes per segment: segment k holds
	// offsets 10k+1 .. 10k+10.
	setup := func(t *testing.T) (*WAL, Options, []backlog.Entry) {
		opts := Options{Dir: t.TempDir(), SegmentBytes: headerSize + 1000, Sync: SyncNo}
		w, _ := mustOpen(t, opts)
		want := entries(1, 55, 100-frameHeaderSize-4, 0, 1)
		mustAppend(t, w, want...)
		if w.Segments() != 6 {
			t.Fatalf("setup made %d segments, want 6", w.Segments())
		}
		return w, opts, want
	}
	for _, tc := range []struct {
		offset    uint64
		wantFirst uint64
	}{
		{0, 1}, {1, 1}, {10, 1}, {11, 11}, {12, 11}, {31, 31}, {50, 41}, {51, 51}, {55, 51}, {56, 51}, {1 << 40, 51},
	} {
		w, opts, want := setup(t)
		if err := w.DropBefore(tc.offset); err != nil {
			t.Fatalf("DropBefore(%d): %v", tc.offset, err)
		}
		if got := w.FirstOffset(); got != tc.wantFirst {
			t.Errorf("DropBefore(%d): FirstOffset = %d, want %d", tc.offset, got, tc.wantFirst)
		}
		if w.LastOffset() != 55 {
			t.Errorf("DropBefore(%d): LastOffset = %d", tc.offset, w.LastOffset())
		}
		checkEntries(t, replayAll(t, w, 0), want[tc.wantFirst-1:])
		if names := segmentFiles(t, opts.Dir); len(names) != w.Segments() || names[0] != segmentName(tc.wantFirst) {
			t.Errorf("DropBefore(%d) left files %v", tc.offset, names)
		}
		mustClose(t, w)
		w, rec := mustOpen(t, opts)
		if !rec.Clean() || rec.FirstOffset != tc.wantFirst || rec.LastOffset != 55 {
			t.Errorf("reopen after DropBefore(%d): %v", tc.offset, rec)
		}
		mustAppend(t, w, entries(56, 1, 10, 0, 1)...)
		mustClose(t, w)
	}

	t.Run("everything dropped but an empty active segment", func(t *testing.T) {
		opts := Options{Dir: t.TempDir(), SegmentBytes: headerSize + 1000, Sync: SyncNo}
		w, _ := mustOpen(t, opts)
		mustAppend(t, w, entries(1, 20, 100-frameHeaderSize-4, 0, 4)...)
		if err := w.TruncateAfter(10); err != nil {
			t.Fatal(err)
		}
		if err := w.DropBefore(100); err != nil {
			t.Fatal(err)
		}
		if w.Segments() != 1 || w.FirstOffset() != 11 || w.LastOffset() != 10 || w.LastEpoch() != 4 {
			t.Fatalf("segments %d, first %d, last %d epoch %d", w.Segments(), w.FirstOffset(), w.LastOffset(), w.LastEpoch())
		}
		mustClose(t, w)
		w, rec := mustOpen(t, opts)
		defer mustClose(t, w)
		if rec.Records != 0 || rec.LastOffset != 10 || rec.LastEpoch != 4 || rec.FirstOffset != 11 {
			t.Fatalf("recovery %+v", rec)
		}
		if err := w.Append(backlog.Entry{Epoch: 3, Offset: 11}); !errors.Is(err, backlog.ErrEpochRegression) {
			t.Fatalf("epoch below the remembered one: %v", err)
		}
		mustAppend(t, w, backlog.Entry{Epoch: 4, Offset: 11})
	})
}

func TestTruncateAfter(t *testing.T) {
	// Same layout as TestDropBefore: segment k holds 10k+1 .. 10k+10; the
	// epoch goes up every 7 records.
	for _, tc := range []struct {
		name      string
		drop      uint64 // DropBefore first
		offset    uint64
		wantErr   error
		wantLast  uint64
		wantSegs  int
		wantFirst uint64
	}{
		{name: "inside the active segment", offset: 53, wantLast: 53, wantSegs: 6, wantFirst: 1},
		{name: "inside an older segment", offset: 23, wantLast: 23, wantSegs: 3, wantFirst: 1},
		{name: "at a segment's last record", offset: 30, wantLast: 30, wantSegs: 4, wantFirst: 1},
		{name: "first record", offset: 1, wantLast: 1, wantSegs: 1, wantFirst: 1},
		{name: "everything", offset: 0, wantLast: 0, wantSegs: 1, wantFirst: 1},
		{name: "at the last record", offset: 55, wantLast: 55, wantSegs: 6, wantFirst: 1},
		{name: "after the last record", offset: 99, wantLast: 55, wantSegs: 6, wantFirst: 1},
		{name: "everything after a drop", drop: 21, offset: 20, wantLast: 20, wantSegs: 1, wantFirst: 21},
		{name: "below retention", drop: 21, offset: 19, wantErr: backlog.ErrOutOfRetention, wantLast: 55, wantSegs: 4, wantFirst: 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Dir: t.TempDir(), SegmentBytes: headerSize + 1000, Sync: SyncNo}
			w, _ := mustOpen(t, opts)
			want := entries(1, 55, 100-frameHeaderSize-4, 7, 1)
			mustAppend(t, w, want...)
			if err := w.DropBefore(tc.drop); err != nil {
				t.Fatal(err)
			}
			err := w.TruncateAfter(tc.offset)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("TruncateAfter(%d) = %v, want %v", tc.offset, err, tc.wantErr)
			}
			wantEpoch := uint64(0) // a new WAL's position
			if tc.wantLast > 0 {
				wantEpoch = want[tc.wantLast-1].Epoch
			}
			check := func(w *WAL) {
				t.Helper()
				if w.LastOffset() != tc.wantLast || w.LastEpoch() != wantEpoch || w.Segments() != tc.wantSegs || w.FirstOffset() != tc.wantFirst {
					t.Fatalf("last %d epoch %d segments %d first %d; want %d, %d, %d, %d",
						w.LastOffset(), w.LastEpoch(), w.Segments(), w.FirstOffset(), tc.wantLast, wantEpoch, tc.wantSegs, tc.wantFirst)
				}
				checkEntries(t, replayAll(t, w, 0), want[tc.wantFirst-1:tc.wantLast])
			}
			check(w)
			if got := segmentFiles(t, opts.Dir); len(got) != tc.wantSegs {
				t.Fatalf("files %v, want %d segments", got, tc.wantSegs)
			}
			mustClose(t, w)
			w, rec := mustOpen(t, opts)
			if !rec.Clean() {
				t.Fatalf("reopen after TruncateAfter repaired: %v", rec)
			}
			check(w)
			// A new leader's entries replace the truncated tail.
			next := entries(tc.wantLast+1, 30, 40, 0, wantEpoch+1)
			mustAppend(t, w, next...)
			mustClose(t, w)
			w, _ = mustOpen(t, opts)
			defer mustClose(t, w)
			checkEntries(t, replayAll(t, w, 0), append(want[tc.wantFirst-1:tc.wantLast:tc.wantLast], next...))
		})
	}
}

func TestReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		pos  backlog.Position
	}{
		{"ahead", backlog.Position{Epoch: 9, Offset: 1000}},
		{"behind", backlog.Position{Epoch: 1, Offset: 5}},
		{"onto an existing segment's name", backlog.Position{Epoch: 3, Offset: 10}},
		{"to the current end", backlog.Position{Epoch: 2, Offset: 55}},
		{"to zero", backlog.Position{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Dir: t.TempDir(), SegmentBytes: headerSize + 1000, Sync: SyncNo}
			w, _ := mustOpen(t, opts)
			mustAppend(t, w, entries(1, 55, 100-frameHeaderSize-4, 30, 1)...)
			if err := w.Reset(tc.pos); err != nil {
				t.Fatalf("Reset(%v): %v", tc.pos, err)
			}
			check := func(w *WAL) {
				t.Helper()
				if w.LastPosition() != tc.pos || w.FirstOffset() != tc.pos.Offset+1 || w.Segments() != 1 {
					t.Fatalf("after Reset(%v): position %v, first %d, %d segments", tc.pos, w.LastPosition(), w.FirstOffset(), w.Segments())
				}
				if got := replayAll(t, w, 0); len(got) != 0 {
					t.Fatalf("after Reset: %d records", len(got))
				}
				if names := segmentFiles(t, opts.Dir); len(names) != 1 || names[0] != segmentName(tc.pos.Offset+1) {
					t.Fatalf("after Reset: files %v", names)
				}
			}
			check(w)
			mustClose(t, w)
			w, rec := mustOpen(t, opts)
			if !rec.Clean() || rec.LastOffset != tc.pos.Offset || rec.LastEpoch != tc.pos.Epoch || rec.Records != 0 {
				t.Fatalf("reopen after Reset: %v", rec)
			}
			check(w)
			if err := w.Append(backlog.Entry{Epoch: tc.pos.Epoch, Offset: tc.pos.Offset + 2}); !errors.Is(err, backlog.ErrOffsetGap) {
				t.Fatalf("append past the reset position: %v", err)
			}
			next := entries(tc.pos.Offset+1, 40, 50, 0, tc.pos.Epoch)
			mustAppend(t, w, next...)
			mustClose(t, w)
			w, _ = mustOpen(t, opts)
			defer mustClose(t, w)
			checkEntries(t, replayAll(t, w, 0), next)
		})
	}
}

// A crash between a Reset's new segment and the removal of the old ones
// leaves both generations; recovery keeps the newer.
func TestResetInterrupted(t *testing.T) {
	dir := t.TempDir()
	old := entries(1, 30, 10, 0, 1)
	writeSegment(t, dir, segmentName(1), segHeader{gen: 4, base: 1}, old[:10]...)
	writeSegment(t, dir, segmentName(11), segHeader{gen: 4, base: 11, prevEpoch: 1}, old[10:20]...)
	writeSegment(t, dir, segmentName(21), segHeader{gen: 4, base: 21, prevEpoch: 1}, old[20:]...)
	next := entries(16, 5, 10, 0, 7)
	writeSegment(t, dir, segmentName(16), segHeader{gen: 5, base: 16, prevEpoch: 6}, next...)

	w, rec := mustOpen(t, Options{Dir: dir, Sync: SyncNo})
	defer mustClose(t, w)
	for _, name := range []string{segmentName(1), segmentName(11), segmentName(21)} {
		wantRepair(t, rec, name, true, ErrSuperseded)
	}
	if rec.Records != 5 || rec.FirstOffset != 16 || rec.LastOffset != 20 || rec.LastEpoch != 7 {
		t.Fatalf("recovery %v", rec)
	}
	checkEntries(t, replayAll(t, w, 0), next)
	if err := w.Reset(backlog.Position{Epoch: 8, Offset: 100}); err != nil {
		t.Fatal(err)
	}
	if w.gen != 6 {
		t.Fatalf("generation %d after another Reset, want 6", w.gen)
	}
}

func TestCloseAndLock(t *testing.T) {
	dir := t.TempDir()
	w, _ := mustOpen(t, Options{Dir: dir})
	if _, _, err := Open(context.Background(), Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of one directory: %v, want ErrLocked", err)
	}
	mustAppend(t, w, entries(1, 3, 10, 0, 1)...)
	mustClose(t, w)
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Append":        w.Append(entries(4, 1, 1, 0, 1)...),
		"Sync":          w.Sync(),
		"DropBefore":    w.DropBefore(2),
		"TruncateAfter": w.TruncateAfter(2),
		"Reset":         w.Reset(backlog.Position{}),
		"Replay":        w.Replay(context.Background(), 0, func(backlog.Entry) error { return nil }),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	w2, rec := mustOpen(t, Options{Dir: dir})
	defer mustClose(t, w2)
	if rec.Records != 3 {
		t.Fatalf("reopen: %v", rec)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Dir: t.TempDir(), SegmentBytes: 10},
		{Dir: t.TempDir(), SegmentBytes: -1},
		{Dir: t.TempDir(), Sync: 7},
		{Dir: t.TempDir(), SyncInterval: -time.Second},
	} {
		if _, _, err := Open(context.Background(), opts); err == nil {
			t.Errorf("Open(%+v) succeeded", opts)
		}
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	w, _ := mustOpen(t, Options{Dir: dir})
	mustClose(t, w)
	if names := segmentFiles(t, dir); len(names) != 1 {
		t.Fatalf("new nested dir holds %v", names)
	}
}

func TestSyncPolicies(t *testing.T) {
	es := entries(1, 20, 100, 0, 1)

	t.Run("always", func(t *testing.T) {
		w, _ := mustOpen(t, Options{Dir: t.TempDir(), Sync: SyncAlways})
		for i, e := range es {
			mustAppend(t, w, e)
			w.mu.Lock()
			fsyncs, durable := w.fsyncs, w.synced == w.written
			w.mu.Unlock()
			if fsyncs != uint64(i+1) || !durable {
				t.Fatalf("after append %d: %d fsyncs, durable %v", i+1, fsyncs, durable)
			}
		}
		mustClose(t, w)
		if w.fsyncs != uint64(len(es)) {
			t.Fatalf("Close fsynced again with nothing new: %d", w.fsyncs)
		}
	})

	t.Run("no", func(t *testing.T) {
		w, _ := mustOpen(t, Options{Dir: t.TempDir(), Sync: SyncNo})
		mustAppend(t, w, es...)
		time.Sleep(10 * time.Millisecond)
		w.mu.Lock()
		fsyncs := w.fsyncs
		w.mu.Unlock()
		if fsyncs != 0 {
			t.Fatalf("%d fsyncs before Close", fsyncs)
		}
		if err := w.Sync(); err != nil || w.fsyncs != 1 {
			t.Fatalf("explicit Sync: %v, %d fsyncs", err, w.fsyncs)
		}
		mustAppend(t, w, entries(21, 1, 5, 0, 1)...)
		mustClose(t, w)
		if w.fsyncs != 2 || w.synced != w.written {
			t.Fatalf("Close: %d fsyncs, synced %d of %d", w.fsyncs, w.synced, w.written)
		}
	})

	t.Run("everysec", func(t *testing.T) {
		const every = 2 * time.Millisecond
		w, _ := mustOpen(t, Options{Dir: t.TempDir(), Sync: SyncEverySec, SyncInterval: every})
		state := func() (uint64, bool) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.fsyncs, w.synced == w.written
		}
		waitDurable := func() uint64 {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for {
				if n, ok := state(); ok {
					return n
				}
				if time.Now().After(deadline) {
					t.Fatal("background sync never ran")
				}
				time.Sleep(every)
			}
		}
		if n, _ := state(); n != 0 {
			t.Fatalf("%d fsyncs with nothing written", n)
		}
		mustAppend(t, w, es[:10]...)
		n1 := waitDurable()
		if n1 == 0 {
			t.Fatal("durable without an fsync")
		}
		// Idle: no writes, so no more fsyncs.
		time.Sleep(20 * every)
		if n, _ := state(); n != n1 {
			t.Fatalf("%d fsyncs while idle, want %d", n, n1)
		}
		mustAppend(t, w, es[10:]...)
		if n2 := waitDurable(); n2 <= n1 {
			t.Fatalf("second batch: %d fsyncs, had %d", n2, n1)
		}
		mustClose(t, w)
	})

	t.Run("everysec stops with Close", func(t *testing.T) {
		w, _ := mustOpen(t, Options{Dir: t.TempDir(), Sync: SyncEverySec, SyncInterval: time.Hour})
		mustAppend(t, w, es...)
		mustClose(t, w) // must not wait an hour, and must sync
		if w.synced != w.written || w.fsyncs != 1 {
			t.Fatalf("Close under everysec: %d fsyncs, synced %d of %d", w.fsyncs, w.synced, w.written)
		}
	})
}

// Concurrent appenders that release their own lock before Sync share fsyncs.
func TestConcurrentAppendAndSync(t *testing.T) {
	opts := Options{Dir: t.TempDir(), SegmentBytes: 4096, Sync: SyncNo}
	w, _ := mustOpen(t, opts)
	var mu sync.Mutex
	next := uint64(1)
	var wg sync.WaitGroup
	const writers, each = 8, 100
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				mu.Lock()
				e := entries(next, 1, 64, 0, 1)[0]
				err := w.Append(e)
				next++
				mu.Unlock()
				if err == nil {
					err = w.Sync()
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Readers and retention run alongside.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			_ = w.Replay(context.Background(), 0, func(backlog.Entry) error { return nil })
			_ = w.DropBefore(w.LastOffset() / 2)
		}
	}()
	wg.Wait()
	if w.LastOffset() != writers*each {
		t.Fatalf("LastOffset %d", w.LastOffset())
	}
	if w.fsyncs > writers*each+uint64(w.Segments())+100 {
		t.Fatalf("%d fsyncs for %d syncs", w.fsyncs, writers*each)
	}
	first := w.FirstOffset()
	mustClose(t, w)
	w, rec := mustOpen(t, opts)
	defer mustClose(t, w)
	if !rec.Clean() || rec.LastOffset != writers*each {
		t.Fatalf("reopen: %v", rec)
	}
	checkEntries(t, replayAll(t, w, 0), entries(first, int(writers*each-first+1), 64, 0, 1))
}

// faultyFile fails chosen calls on the active segment.
type faultyFile struct {
	segmentFile
	writeFails  bool
	partial     int // bytes a failing write still writes
	syncFails   bool
	syncStarted chan struct{}
}

var errInjected = errors.New("injected fault")

func (f *faultyFile) Write(b []byte) (int, error) {
	if f.writeFails {
		n, _ := f.segmentFile.Write(b[:min(f.partial, len(b))])
		return n, errInjected
	}
	return f.segmentFile.Write(b)
}

func (f *faultyFile) Sync() error {
	if f.syncFails {
		return errInjected
	}
	return f.segmentFile.Sync()
}

func TestWriteFailureTakesTheBatchBack(t *testing.T) {
	for _, partial := range []int{0, 1, 7, 8, 30, 500} {
		opts := Options{Dir: t.TempDir(), SegmentBytes: 1 << 20, Sync: SyncNo}
		w, _ := mustOpen(t, opts)
		want := entries(1, 10, 40, 0, 1)
		mustAppend(t, w, want...)
		size := w.Size()
		ff := &faultyFile{segmentFile: w.f, writeFails: true, partial: partial}
		w.f = ff
		err := w.Append(entries(11, 5, 40, 0, 1)...)
		if !errors.Is(err, errInjected) || errors.Is(err, ErrFailed) {
			t.Fatalf("partial %d: Append = %v, want the injected error, WAL usable", partial, err)
		}
		if w.LastOffset() != 10 || w.Size() != size {
			t.Fatalf("partial %d: after a failed write last %d size %d (was %d)", partial, w.LastOffset(), w.Size(), size)
		}
		if fs := fileSize(t, filepath.Join(opts.Dir, segmentName(1))); fs != size {
			t.Fatalf("partial %d: file is %d bytes, want %d", partial, fs, size)
		}
		ff.writeFails = false
		more := entries(11, 5, 40, 0, 1)
		mustAppend(t, w, more...)
		mustClose(t, w)
		w, rec := mustOpen(t, opts)
		if !rec.Clean() {
			t.Fatalf("partial %d: reopen repaired %v", partial, rec)
		}
		checkEntries(t, replayAll(t, w, 0), append(want, more...))
		mustClose(t, w)
	}
}

func TestSyncFailureIsSticky(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Sync: SyncAlways}
	w, _ := mustOpen(t, opts)
	mustAppend(t, w, entries(1, 5, 10, 0, 1)...)
	w.f = &faultyFile{segmentFile: w.f, syncFails: true}
	if err := w.Append(entries(6, 1, 10, 0, 1)...); !errors.Is(err, ErrFailed) || !errors.Is(err, errInjected) {
		t.Fatalf("Append with a failing fsync: %v", err)
	}
	w.f.(*faultyFile).syncFails = false
	for name, err := range map[string]error{
		"Append":        w.Append(entries(7, 1, 10, 0, 1)...),
		"Sync":          w.Sync(),
		"TruncateAfter": w.TruncateAfter(2),
		"Reset":         w.Reset(backlog.Position{}),
	} {
		if !errors.Is(err, ErrFailed) {
			t.Errorf("%s on a failed WAL: %v", name, err)
		}
	}
	if err := w.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close of a failed WAL: %v", err)
	}
	w, rec := mustOpen(t, opts)
	defer mustClose(t, w)
	// The record whose fsync failed was written; recovery keeps what is
	// there.
	if rec.LastOffset != 6 {
		t.Fatalf("reopen after a failed fsync: %v", rec)
	}
}

func TestRollFailureIsSticky(t *testing.T) {
	opts := Options{Dir: t.TempDir(), SegmentBytes: 200, Sync: SyncNo}
	w, _ := mustOpen(t, opts)
	mustAppend(t, w, entries(1, 2, 50, 0, 1)...)
	w.f = &faultyFile{segmentFile: w.f, syncFails: true}
	if err := w.Append(entries(3, 5, 50, 0, 1)...); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append that must seal a segment whose fsync fails: %v", err)
	}
	_ = w.Close()
	w, rec := mustOpen(t, opts)
	defer mustClose(t, w)
	if rec.LastOffset < 2 {
		t.Fatalf("reopen lost records before the failure: %v", rec)
	}
}

func TestParseSyncPolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SyncPolicy
		ok   bool
	}{
		{"always", SyncAlways, true},
		{"everysec", SyncEverySec, true},
		{"no", SyncNo, true},
		{"", 0, false},
		{"Always", 0, false},
		{"everysec ", 0, false},
		{"yes", 0, false},
		{"1s", 0, false},
	} {
		got, err := ParseSyncPolicy(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok {
			if got.String() != tc.in {
				t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
			}
			var p SyncPolicy
			if err := p.UnmarshalText([]byte(tc.in)); err != nil || p != tc.want {
				t.Errorf("UnmarshalText(%q) = %v, %v", tc.in, p, err)
			}
			if b, err := tc.want.MarshalText(); err != nil || !bytes.Equal(b, []byte(tc.in)) {
				t.Errorf("MarshalText(%v) = %q, %v", tc.want, b, err)
			}
		}
	}
	if s := SyncPolicy(9).String(); s != "SyncPolicy(9)" {
		t.Errorf("unknown policy String() = %q", s)
	}
	if _, err := SyncPolicy(9).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown policy succeeded")
	}
	var zero Options
	if zero.Sync != SyncEverySec {
		t.Error("the zero policy is not everysec")
	}
}

func TestUnrelatedFilesAreLeftAlone(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"notes.txt", "1.wal", "00000000000000000000.wal", "0000000000000000000x.wal", "00000000000000000001.wal.bak"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "00000000000000000005.wal"), 0o750); err != nil {
		t.Fatal(err)
	}
	w, rec := mustOpen(t, Options{Dir: dir})
	mustAppend(t, w, entries(1, 3, 3, 0, 1)...)
	mustClose(t, w)
	if !rec.Clean() {
		t.Fatalf("recovery touched unrelated files: %v", rec)
	}
	for _, name := range []string{"notes.txt", "1.wal", "00000000000000000000.wal", "0000000000000000000x.wal", "00000000000000000001.wal.bak"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The proxy rebuilds its in-memory backlog from the WAL after a restart.
func TestRebuildBacklogLog(t *testing.T) {
	opts := Options{Dir: t.TempDir(), SegmentBytes: 512, Sync: SyncNo}
	w, _ := mustOpen(t, opts)
	want := entries(1, 300, 40, 25, 1)
	mustAppend(t, w, want...)
	if err := w.DropBefore(101); err != nil {
		t.Fatal(err)
	}
	if err := w.TruncateAfter(250); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)

	w, _ = mustOpen(t, opts)
	defer mustClose(t, w)
	first := w.FirstOffset()
	if base := w.Base(); base.Offset != first-1 || base.Epoch != want[first-2].Epoch {
		t.Fatalf("Base() = %v, want %d:%d", base, want[first-2].Epoch, first-1)
	}
	l := backlog.NewLog(backlog.Options{})
	l.Reset(w.Base())
	if err := w.Replay(context.Background(), 0, l.AppendEntry); err != nil {
		t.Fatal(err)
	}
	if l.First() != first || l.Last() != 250 || l.LastPosition() != w.LastPosition() {
		t.Fatalf("rebuilt log spans %d..%d at %v; WAL %d..%d at %v", l.First(), l.Last(), l.LastPosition(), first, w.LastOffset(), w.LastPosition())
	}
	for off := first; off <= 250; off++ {
		e, err := l.Entry(off)
		if err != nil || e.Epoch != want[off-1].Epoch || !bytes.Equal(e.Payload, want[off-1].Payload) {
			t.Fatalf("rebuilt entry %d: %+v, %v", off, e, err)
		}
	}
}
