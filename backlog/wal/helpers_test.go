package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/replicar/replicar/backlog"
)

// entries makes n entries starting at offset first whose epoch goes up every
// epochEvery entries (never when 0) and whose payloads, of size bytes each,
// say which offset they belong to.
func entries(first uint64, n, size, epochEvery int, epoch uint64) []backlog.Entry {
	out := make([]backlog.Entry, n)
	for i := range out {
		if epochEvery > 0 && i > 0 && i%epochEvery == 0 {
			epoch++
		}
		off := first + uint64(i)
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(off*31 + uint64(j))
		}
		out[i] = backlog.Entry{Epoch: epoch, Offset: off, Payload: p}
	}
	return out
}

func mustOpen(t testing.TB, opts Options) (*WAL, Recovery) {
	t.Helper()
	w, rec, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w, rec
}

func mustAppend(t testing.TB, w *WAL, es ...backlog.Entry) {
	t.Helper()
	if err := w.Append(es...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// replayAll returns copies of every record w holds from offset from.
func replayAll(t testing.TB, w *WAL, from uint64) []backlog.Entry {
	t.Helper()
	var out []backlog.Entry
	err := w.Replay(context.Background(), from, func(e backlog.Entry) error {
		e.Payload = bytes.Clone(e.Payload)
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return out
}

func diffEntries(got, want []backlog.Entry) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Epoch != w.Epoch || g.Offset != w.Offset || !bytes.Equal(g.Payload, w.Payload) {
			return fmt.Errorf("record %d: got epoch %d offset %d payload %x, want epoch %d offset %d payload %x",
				i, g.Epoch, g.Offset, g.Payload, w.Epoch, w.Offset, w.Payload)
		}
	}
	return nil
}

func checkEntries(t testing.TB, got, want []backlog.Entry) {
	t.Helper()
	if err := diffEntries(got, want); err != nil {
		t.Fatal(err)
	}
}

// segmentFiles lists the segment files in dir in offset order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseSegmentName(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// frameEnds returns the byte position after each frame in a segment file.
func frameEnds(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fr frameReader
	fr.reset(bytes.NewReader(b[headerSize:]), headerSize, int64(len(b)))
	var ends []int64
	for {
		_, err := fr.next()
		if err != nil {
			break
		}
		ends = append(ends, fr.pos)
	}
	return ends
}

// writeSegment writes a segment file by hand, for layouts the WAL would
// never produce.
func writeSegment(t testing.TB, dir string, name string, h segHeader, es ...backlog.Entry) {
	t.Helper()
	b := make([]byte, headerSize)
	h.put(b)
	for _, e := range es {
		b = appendFrame(b, e)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == lockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func wantRepair(t testing.TB, rec Recovery, file string, removed bool, reason error) Repair {
	t.Helper()
	for _, r := range rec.Repairs {
		if r.File == file && r.Removed == removed && errors.Is(r.Reason, reason) {
			return r
		}
	}
	t.Fatalf("no repair of %s (removed=%v, reason %v) in %v", file, removed, reason, rec)
	return Repair{}
}
