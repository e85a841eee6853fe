package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/replicar/replicar/backlog"
)

// fixture is a closed WAL directory with records spread over several
// segments.
type fixture struct {
	dir   string
	opts  Options
	want  []backlog.Entry
	names []string // segment files, oldest first
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	opts := Options{Dir: t.TempDir(), SegmentBytes: 400, Sync: SyncNo}
	w, _ := mustOpen(t, opts)
	want := entries(1, 60, 37, 9, 2)
	mustAppend(t, w, want...)
	mustClose(t, w)
	names := segmentFiles(t, opts.Dir)
	if len(names) < 5 {
		t.Fatalf("fixture has %d segments", len(names))
	}
	return fixture{dir: opts.Dir, opts: opts, want: want, names: names}
}

// clone copies the fixture into a fresh directory to damage.
func (fx fixture) clone(t *testing.T) fixture {
	fx.dir = copyDir(t, fx.dir)
	fx.opts.Dir = fx.dir
	return fx
}

func (fx fixture) path(i int) string { return filepath.Join(fx.dir, fx.names[i]) }

// firstOffset returns the offset of segment i's first record.
func (fx fixture) firstOffset(i int) uint64 { b, _ := parseSegmentName(fx.names[i]); return b }

// reopen opens the damaged directory and checks that what was recovered is
// want[:keep], that a second recovery finds nothing left to repair, and that
// appending continues after it.
func (fx fixture) reopen(t *testing.T, keep int) Recovery {
	t.Helper()
	w, rec := mustOpen(t, fx.opts)
	if rec.Records != keep || rec.LastOffset != uint64(keep) {
		t.Fatalf("recovered %d records up to %d, want %d: %v", rec.Records, rec.LastOffset, keep, rec)
	}
	checkEntries(t, replayAll(t, w, 0), fx.want[:keep])
	var dropped int64
	for _, r := range rec.Repairs {
		dropped += r.Dropped
	}
	if dropped != rec.TruncatedBytes {
		t.Fatalf("repairs drop %d bytes, TruncatedBytes is %d", dropped, rec.TruncatedBytes)
	}
	next := backlog.Entry{Epoch: 100, Offset: uint64(keep) + 1, Payload: []byte("after recovery")}
	mustAppend(t, w, next)
	mustClose(t, w)
	w, rec2 := mustOpen(t, fx.opts)
	defer mustClose(t, w)
	if !rec2.Clean() {
		t.Fatalf("second recovery repaired again: %v", rec2)
	}
	checkEntries(t, replayAll(t, w, 0), append(fx.want[:keep:keep], next))
	return rec
}

func TestTornTail(t *testing.T) {
	base := newFixture(t)
	last := len(base.names) - 1
	ends := frameEnds(t, base.path(last))
	start, end := ends[len(ends)-2], ends[len(ends)-1]
	for cut := start; cut < end; cut++ {
		fx := base.clone(t)
		if err := os.Truncate(fx.path(last), cut); err != nil {
			t.Fatal(err)
		}
		rec := fx.reopen(t, len(fx.want)-1)
		if cut == start {
			if !rec.Clean() {
				t.Fatalf("cut at a frame boundary repaired: %v", rec)
			}
			continue
		}
		r := wantRepair(t, rec, fx.names[last], false, ErrTorn)
		if r.Size != start || r.Dropped != cut-start || len(rec.Repairs) != 1 {
			t.Fatalf("cut at %d: %v", cut, rec)
		}
	}
}

func TestTornSegmentHeader(t *testing.T) {
	base := newFixture(t)
	last := len(base.names) - 1
	keep := int(base.firstOffset(last)) - 1
	for cut := int64(0); cut < headerSize; cut++ {
		fx := base.clone(t)
		if err := os.Truncate(fx.path(last), cut); err != nil {
			t.Fatal(err)
		}
		rec := fx.reopen(t, keep)
		wantRepair(t, rec, fx.names[last], true, ErrTorn)
	}
}

func TestCorruptMiddle(t *testing.T) {
	base := newFixture(t)
	const seg = 2
	ends := frameEnds(t, base.path(seg))
	frame := 1 // the second frame of the segment
	start, end := ends[frame-1], ends[frame]
	keep := int(base.firstOffset(seg)) - 1 + frame
	for _, tc := range []struct {
		name string
		at   int64
	}{
		{"length", start},
		{"length high byte", start + 3},
		{"checksum", start + 5},
		{"record version", start + 8},
		{"record epoch", start + 9},
		{"payload", end - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := base.clone(t)
			flipByte(t, fx.path(seg), tc.at, 0x40)
			rec := fx.reopen(t, keep)
			r := wantRepair(t, rec, fx.names[seg], false, ErrCorrupt)
			if r.Size != start {
				t.Fatalf("cut to %d, want %d", r.Size, start)
			}
			for _, name := range fx.names[seg+1:] {
				wantRepair(t, rec, name, true, ErrCorrupt)
			}
			if names := segmentFiles(t, fx.dir); len(names) != seg+1 {
				t.Fatalf("files left: %v", names)
			}
		})
	}
	t.Run("segment header", func(t *testing.T) {
		for _, at := range []int64{0, 7, 8, 9, 11, 12, 16, 24, 32, 40, 43} {
			fx := base.clone(t)
			flipByte(t, fx.path(seg), at, 0x01)
			if at > 8 && at < 12 {
				// A version above ours is refused, not repaired. (At byte 8
				// the flip makes version 0, which is damage.)
				if _, _, err := Open(context.Background(), fx.opts); !errors.Is(err, ErrVersion) {
					t.Fatalf("flip at %d: Open = %v, want ErrVersion", at, err)
				}
				continue
			}
			rec := fx.reopen(t, int(base.firstOffset(seg))-1)
			wantRepair(t, rec, fx.names[seg], true, ErrCorrupt)
		}
	})
}

func flipByte(t *testing.T, path string, at int64, mask byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= mask
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTrailingGarbage(t *testing.T) {
	base := newFixture(t)
	last := len(base.names) - 1
	size := fileSize(t, base.path(last))
	valid := appendFrame(nil, backlog.Entry{Epoch: 9, Offset: 61, Payload: []byte("whole frame")})
	for _, tc := range []struct {
		name   string
		tail   []byte
		reason error
	}{
		{"zeros", make([]byte, 4096), ErrTorn},
		{"one byte", []byte{7}, ErrTorn},
		{"random", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x01}, 50), ErrCorrupt},
		{"half a frame", valid[:len(valid)/2], ErrTorn},
		{"frame with a bad checksum", append(append([]byte{}, valid[:len(valid)-1]...), valid[len(valid)-1]^1), ErrCorrupt},
		{"frame length too large", append(binary.LittleEndian.AppendUint32(nil, maxRecordSize+1), 1, 2, 3, 4), ErrCorrupt},
		{"frame length past the end", append(binary.LittleEndian.AppendUint32(nil, 1<<20), 1, 2, 3, 4, 5), ErrTorn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := base.clone(t)
			appendBytes(t, fx.path(last), tc.tail)
			rec := fx.reopen(t, len(fx.want))
			r := wantRepair(t, rec, fx.names[last], false, tc.reason)
			if r.Size != size || r.Dropped != int64(len(tc.tail)) {
				t.Fatalf("repair %v, want cut to %d dropping %d", r, size, len(tc.tail))
			}
		})
	}
	t.Run("a whole valid frame after a gap in offsets", func(t *testing.T) {
		fx := base.clone(t)
		appendBytes(t, fx.path(last), appendFrame(nil, backlog.Entry{Epoch: 9, Offset: 62}))
		rec := fx.reopen(t, len(fx.want))
		wantRepair(t, rec, fx.names[last], false, backlog.ErrOffsetGap)
	})
}

func TestMissingOrEmptySegment(t *testing.T) {
	base := newFixture(t)
	n := len(base.names)
	t.Run("middle removed", func(t *testing.T) {
		fx := base.clone(t)
		if err := os.Remove(fx.path(2)); err != nil {
			t.Fatal(err)
		}
		rec := fx.reopen(t, int(fx.firstOffset(2))-1)
		wantRepair(t, rec, fx.names[3], true, backlog.ErrOffsetGap)
		for _, name := range fx.names[4:] {
			wantRepair(t, rec, name, true, ErrCorrupt)
		}
	})
	t.Run("oldest removed", func(t *testing.T) {
		fx := base.clone(t)
		if err := os.Remove(fx.path(0)); err != nil {
			t.Fatal(err)
		}
		w, rec := mustOpen(t, fx.opts)
		defer mustClose(t, w)
		if !rec.Clean() || rec.FirstOffset != fx.firstOffset(1) || rec.LastOffset != 60 {
			t.Fatalf("a missing oldest segment is retention, not damage: %v", rec)
		}
		checkEntries(t, replayAll(t, w, 0), fx.want[fx.firstOffset(1)-1:])
	})
	t.Run("newest empty", func(t *testing.T) {
		fx := base.clone(t)
		if err := os.Truncate(fx.path(n-1), 0); err != nil {
			t.Fatal(err)
		}
		rec := fx.reopen(t, int(fx.firstOffset(n-1))-1)
		wantRepair(t, rec, fx.names[n-1], true, ErrTorn)
	})
	t.Run("middle empty", func(t *testing.T) {
		fx := base.clone(t)
		if err := os.Truncate(fx.path(1), 0); err != nil {
			t.Fatal(err)
		}
		rec := fx.reopen(t, int(fx.firstOffset(1))-1)
		wantRepair(t, rec, fx.names[1], true, ErrTorn)
	})
	t.Run("only segment empty", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(41)), nil, 0o640); err != nil {
			t.Fatal(err)
		}
		w, rec := mustOpen(t, Options{Dir: dir})
		defer mustClose(t, w)
		r := wantRepair(t, rec, segmentName(41), false, ErrTorn)
		if r.Size != headerSize || rec.LastOffset != 40 || rec.Records != 0 {
			t.Fatalf("recovery %v", rec)
		}
		mustAppend(t, w, backlog.Entry{Epoch: 1, Offset: 41})
	})
	t.Run("first segment header corrupt", func(t *testing.T) {
		fx := base.clone(t)
		flipByte(t, fx.path(0), 20, 0xff)
		rec := fx.reopen(t, 0)
		wantRepair(t, rec, fx.names[0], false, ErrCorrupt)
		for _, name := range fx.names[1:] {
			wantRepair(t, rec, name, true, ErrCorrupt)
		}
	})
}

func TestSequenceViolations(t *testing.T) {
	e := func(epoch, offset uint64) backlog.Entry {
		return backlog.Entry{Epoch: epoch, Offset: offset, Payload: []byte{byte(offset)}}
	}
	type seg struct {
		name string
		hdr  segHeader
		es   []backlog.Entry
	}
	for _, tc := range []struct {
		name   string
		segs   []seg
		keep   []backlog.Entry
		file   string // repaired file
		remove bool
		reason error
	}{
		{
			name:   "offset skips",
			segs:   []seg{{segmentName(1), segHeader{base: 1}, []backlog.Entry{e(1, 1), e(1, 2), e(1, 4), e(1, 5)}}},
			keep:   []backlog.Entry{e(1, 1), e(1, 2)},
			file:   segmentName(1),
			reason: backlog.ErrOffsetGap,
		},
		{
			name:   "offset repeats",
			segs:   []seg{{segmentName(1), segHeader{base: 1}, []backlog.Entry{e(1, 1), e(1, 2), e(1, 2)}}},
			keep:   []backlog.Entry{e(1, 1), e(1, 2)},
			file:   segmentName(1),
			reason: backlog.ErrOffsetGap,
		},
		{
			name:   "epoch goes down",
			segs:   []seg{{segmentName(1), segHeader{base: 1}, []backlog.Entry{e(3, 1), e(3, 2), e(2, 3)}}},
			keep:   []backlog.Entry{e(3, 1), e(3, 2)},
			file:   segmentName(1),
			reason: backlog.ErrEpochRegression,
		},
		{
			name:   "epoch below the segment's previous epoch",
			segs:   []seg{{segmentName(1), segHeader{base: 1, prevEpoch: 5}, []backlog.Entry{e(4, 1)}}},
			keep:   nil,
			file:   segmentName(1),
			reason: backlog.ErrEpochRegression,
		},
		{
			name:   "first record disagrees with the name",
			segs:   []seg{{segmentName(1), segHeader{base: 1}, []backlog.Entry{e(1, 1)}}, {segmentName(2), segHeader{base: 2, prevEpoch: 1}, []backlog.Entry{e(1, 3)}}},
			keep:   []backlog.Entry{e(1, 1)},
			file:   segmentName(2),
			reason: backlog.ErrOffsetGap,
		},
		{
			name:   "header disagrees with the name",
			segs:   []seg{{segmentName(1), segHeader{base: 1}, []backlog.Entry{e(1, 1)}}, {segmentName(2), segHeader{base: 3, prevEpoch: 1}, []backlog.Entry{e(1, 2)}}},
			keep:   []backlog.Entry{e(1, 1)},
			file:   segmentName(2),
			remove: true,
			reason: ErrCorrupt,
		},
		{
			name:   "segments overlap",
			segs:   []seg{{segmentName(1), segHeader{base: 1}, []backlog.Entry{e(1, 1), e(1, 2)}}, {segmentName(2), segHeader{base: 2, prevEpoch: 1}, []backlog.Entry{e(1, 2)}}},
			keep:   []backlog.Entry{e(1, 1), e(1, 2)},
			file:   segmentName(2),
			remove: true,
			reason: backlog.ErrOffsetGap,
		},
		{
			name:   "previous epoch disagrees across segments",
			segs:   []seg{{segmentName(1), segHeader{base: 1}, []backlog.Entry{e(1, 1)}}, {segmentName(2), segHeader{base: 2, prevEpoch: 2}, []backlog.Entry{e(2, 2)}}},
			keep:   []backlog.Entry{e(1, 1)},
			file:   segmentName(2),
			remove: true,
			reason: ErrCorrupt,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, s := range tc.segs {
				writeSegment(t, dir, s.name, s.hdr, s.es...)
			}
			w, rec := mustOpen(t, Options{Dir: dir})
			defer mustClose(t, w)
			wantRepair(t, rec, tc.file, tc.remove, tc.reason)
			checkEntries(t, replayAll(t, w, 0), tc.keep)
		})
	}
}

func TestTempLeftoverRemoved(t *testing.T) {
	fx := newFixture(t).clone(t)
	tmp := fx.names[len(fx.names)-1] + tmpExt
	if err := os.WriteFile(filepath.Join(fx.dir, tmp), []byte("half a header"), 0o640); err != nil {
		t.Fatal(err)
	}
	rec := fx.reopen(t, len(fx.want))
	wantRepair(t, rec, tmp, true, ErrTorn)
	if _, err := os.Stat(filepath.Join(fx.dir, tmp)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover still there: %v", err)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		patch func(b []byte)
	}{
		{"version 2", func(b []byte) { binary.LittleEndian.PutUint32(b[8:12], 2) }},
		{"version 2 with another header size", func(b []byte) {
			binary.LittleEndian.PutUint32(b[8:12], 2)
			binary.LittleEndian.PutUint32(b[40:44], 0)
		}},
		{"unknown flag", func(b []byte) {
			binary.LittleEndian.PutUint32(b[12:16], 1)
			binary.LittleEndian.PutUint32(b[40:44], crc32.Checksum(b[:40], castagnoli))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t).clone(t)
			last := fx.path(len(fx.names) - 1)
			b, err := os.ReadFile(last)
			if err != nil {
				t.Fatal(err)
			}
			tc.patch(b)
			if err := os.WriteFile(last, b, 0o640); err != nil {
				t.Fatal(err)
			}
			before := snapshotDir(t, fx.dir)
			if _, _, err := Open(context.Background(), fx.opts); !errors.Is(err, ErrVersion) {
				t.Fatalf("Open = %v, want ErrVersion", err)
			}
			if after := snapshotDir(t, fx.dir); !equalSnapshots(before, after) {
				t.Fatal("Open changed a directory it refused")
			}
		})
	}
}

func TestOpenCancelledChangesNothing(t *testing.T) {
	fx := newFixture(t).clone(t)
	flipByte(t, fx.path(1), headerSize+3, 0x10)
	before := snapshotDir(t, fx.dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Open(ctx, fx.opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context: %v", err)
	}
	if after := snapshotDir(t, fx.dir); !equalSnapshots(before, after) {
		t.Fatal("a cancelled Open repaired the directory")
	}
	fx.reopen(t, int(fx.firstOffset(1))-1)
}

func TestReplayDetectsLaterDamage(t *testing.T) {
	fx := newFixture(t).clone(t)
	w, _ := mustOpen(t, fx.opts)
	defer mustClose(t, w)
	ends := frameEnds(t, fx.path(2))
	flipByte(t, fx.path(2), ends[0]+10, 0x01)
	var got []uint64
	err := w.Replay(context.Background(), 0, func(e backlog.Entry) error {
		got = append(got, e.Offset)
		return nil
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Replay over a damaged frame: %v", err)
	}
	if want := fx.firstOffset(2); uint64(len(got)) != want {
		t.Fatalf("Replay handed %d records before the damage, want %d", len(got), want)
	}
}

func TestRecoveryString(t *testing.T) {
	fx := newFixture(t).clone(t)
	appendBytes(t, fx.path(len(fx.names)-1), []byte{1, 2, 3})
	w, rec := mustOpen(t, fx.opts)
	defer mustClose(t, w)
	s := rec.String()
	for _, want := range []string{"60 records", "offsets 1..60", "1 repairs dropped 3 bytes", "cut " + fx.names[len(fx.names)-1]} {
		if !bytes.Contains([]byte(s), []byte(want)) {
			t.Errorf("Recovery.String() = %q, missing %q", s, want)
		}
	}
}

func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		if e.Name() == lockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func equalSnapshots(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
