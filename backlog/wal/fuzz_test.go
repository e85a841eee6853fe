package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/replicar/replicar/backlog"
)

// Damage modes for FuzzRecovery.
const (
	damageFlipsOnly = iota // no truncation
	damageTornTail         // cut the stream: the file at the cut is shortened, later files vanish
	damageCutOne           // shorten one file and leave the later ones in place
	damageModes
)

// FuzzRecovery writes a WAL, damages its files (a truncation and byte flips
// at positions the fuzzer picks), reopens it and checks the recovery
// contract: no panic; the records kept are exactly a prefix of those
// written; every record that lies wholly before the first damaged byte is
// kept; appending continues at the next offset; and a second reopen finds
// nothing to repair and the same records.
func FuzzRecovery(f *testing.F) {
	f.Add(uint8(40), uint64(1), uint16(300), uint8(damageTornTail), uint32(5000), []byte{})
	f.Add(uint8(60), uint64(2), uint16(200), uint8(damageFlipsOnly), uint32(0), []byte{0x40, 0x02, 0x01})
	f.Add(uint8(60), uint64(3), uint16(150), uint8(damageCutOne), uint32(700), []byte{0x00, 0x00, 0x80})
	f.Add(uint8(10), uint64(0x55), uint16(0), uint8(damageTornTail), uint32(30), []byte{})
	f.Add(uint8(80), uint64(0xabcdef), uint16(500), uint8(damageFlipsOnly), uint32(0), []byte{0x09, 0x00, 0x01, 0x20, 0x03, 0xff})
	f.Fuzz(func(t *testing.T, n uint8, shape uint64, segSize uint16, mode uint8, cut uint32, flips []byte) {
		rng := rand.New(rand.NewPCG(shape, uint64(n)))
		opts := Options{
			Dir:          t.TempDir(),
			SegmentBytes: MinSegmentBytes + int64(segSize)%1024,
			Sync:         SyncNo,
		}
		w, _ := mustOpen(t, opts)

		// Some WALs start after a snapshot, some have dropped a prefix.
		var want []backlog.Entry
		last, epoch := uint64(0), uint64(0)
		if shape&1 != 0 {
			last, epoch = rng.Uint64N(1<<40), rng.Uint64N(1<<20)
			if err := w.Reset(backlog.Position{Epoch: epoch, Offset: last}); err != nil {
				t.Fatal(err)
			}
		}
		count := int(n)%80 + 1
		for len(want) < count {
			batch := min(1+rng.IntN(4), count-len(want))
			es := make([]backlog.Entry, batch)
			for i := range es {
				if rng.IntN(8) == 0 {
					epoch += 1 + rng.Uint64N(3)
				}
				last++
				p := make([]byte, rng.IntN(3)*rng.IntN(90))
				for j := range p {
					p[j] = byte(rng.Uint32())
				}
				es[i] = backlog.Entry{Epoch: epoch, Offset: last, Payload: p}
			}
			mustAppend(t, w, es...)
			want = append(want, es...)
		}
		if shape&2 != 0 {
			before := want[rng.IntN(len(want))].Offset
			if err := w.DropBefore(before); err != nil {
				t.Fatal(err)
			}
			first := w.FirstOffset()
			want = want[first-want[0].Offset:]
		}
		mustClose(t, w)

		// Lay the segment files end to end and note where each record's
		// frame ends in that stream.
		names := segmentFiles(t, opts.Dir)
		var starts []int64 // stream position of each file
		var recEnds []int64
		var total int64
		for _, name := range names {
			path := filepath.Join(opts.Dir, name)
			starts = append(starts, total)
			for _, end := range frameEnds(t, path) {
				recEnds = append(recEnds, total+end)
			}
			total += fileSize(t, path)
		}
		if len(recEnds) != len(want) {
			t.Fatalf("files hold %d frames, wrote %d records", len(recEnds), len(want))
		}
		locate := func(pos int64) (int, int64) {
			i := len(starts) - 1
			for starts[i] > pos {
				i--
			}
			return i, pos - starts[i]
		}

		firstDamage := total
		versionHit := false
		if len(flips) > 3*16 {
			flips = flips[:3*16]
		}
		for ; len(flips) >= 3; flips = flips[3:] {
			pos := int64(binary.LittleEndian.Uint16(flips)) % total
			mask := flips[2]
			if mask == 0 {
				mask = 0xff
			}
			i, at := locate(pos)
			flipByte(t, filepath.Join(opts.Dir, names[i]), at, mask)
			firstDamage = min(firstDamage, pos)
			versionHit = versionHit || (at >= 8 && at < 12)
		}
		if m := mode % damageModes; m != damageFlipsOnly {
			pos := int64(cut) % (total + 1)
			if pos < total {
				i, at := locate(pos)
				if err := os.Truncate(filepath.Join(opts.Dir, names[i]), at); err != nil {
					t.Fatal(err)
				}
				if m == damageTornTail {
					for _, name := range names[i+1:] {
						if err := os.Remove(filepath.Join(opts.Dir, name)); err != nil {
							t.Fatal(err)
						}
					}
				}
				firstDamage = min(firstDamage, pos)
			}
		}
		mustKeep := 0
		for mustKeep < len(recEnds) && recEnds[mustKeep] <= firstDamage {
			mustKeep++
		}

		w, rec, err := Open(context.Background(), opts)
		if err != nil {
			if errors.Is(err, ErrVersion) && versionHit {
				return // a flip made a newer version, which is refused, not repaired
			}
			t.Fatalf("Open after damage: %v", err)
		}
		got := replayAll(t, w, 0)
		if len(got) < mustKeep {
			t.Fatalf("kept %d records, but %d lay wholly before the first damaged byte %d: %v", len(got), mustKeep, firstDamage, rec)
		}
		if err := diffEntries(got, want[:len(got)]); err != nil {
			t.Fatalf("kept records are not a prefix of those written: %v", err)
		}
		if rec.Records != len(got) {
			t.Fatalf("Recovery.Records = %d, replayed %d", rec.Records, len(got))
		}
		if len(got) > 0 && (rec.FirstOffset != got[0].Offset || rec.LastOffset != got[len(got)-1].Offset || rec.LastEpoch != got[len(got)-1].Epoch) {
			t.Fatalf("recovery %+v disagrees with the records kept", rec)
		}
		if w.LastOffset() != rec.LastOffset || w.LastEpoch() != rec.LastEpoch {
			t.Fatalf("WAL at %d/%d, recovery says %d/%d", w.LastOffset(), w.LastEpoch(), rec.LastOffset, rec.LastEpoch)
		}
		next := backlog.Entry{Epoch: rec.LastEpoch, Offset: rec.LastOffset + 1, Payload: []byte("next")}
		if err := w.Append(next); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		mustClose(t, w)

		w, rec2 := mustOpen(t, opts)
		defer mustClose(t, w)
		if !rec2.Clean() {
			t.Fatalf("second recovery repaired again: %v (first: %v)", rec2, rec)
		}
		if err := diffEntries(replayAll(t, w, 0), append(got, next)); err != nil {
			t.Fatalf("second reopen: %v", err)
		}
	})
}

// FuzzFrameDecode feeds arbitrary bytes to the segment-reading path, as a
// whole segment file (header, then frames). It must never panic, must
// classify every failure as damage, and must never return a record that is
// not exactly what its frame's checksum covers. With fixCRC the checksums
// are made right first, so that the fuzzer also reaches the record checks
// behind them.
func FuzzFrameDecode(f *testing.F) {
	var good []byte
	good = make([]byte, headerSize)
	segHeader{gen: 1, base: 7, prevEpoch: 3}.put(good)
	for i, p := range []string{"", "SET k v", "x", string(bytes.Repeat([]byte{0xaa}, 200))} {
		good = appendFrame(good, backlog.Entry{Epoch: 3 + uint64(i/2), Offset: 7 + uint64(i), Payload: []byte(p)})
	}
	f.Add(good, false)
	f.Add(good[:len(good)-3], false)
	f.Add(good[:headerSize+5], true)
	f.Add(append(bytes.Clone(good), 0, 0, 0, 0, 0, 0, 0, 0), false)
	f.Add([]byte("RPLCWAL\n\x01\x00\x00\x00"), false)
	f.Add(append(bytes.Clone(good[:headerSize]), 5, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0, 0, 0), true)
	f.Fuzz(func(t *testing.T, raw []byte, fixCRC bool) {
		if fixCRC {
			raw = fixChecksums(bytes.Clone(raw))
		}
		_, herr := parseHeader(raw[:min(len(raw), headerSize)])
		if herr != nil && !isDamage(herr) && !errors.Is(herr, ErrVersion) {
			t.Fatalf("parseHeader: unclassified error %v", herr)
		}
		if len(raw) < headerSize {
			return
		}
		var fr frameReader
		fr.reset(bytes.NewReader(raw[headerSize:]), headerSize, int64(len(raw)))
		for {
			at := fr.pos
			e, err := fr.next()
			if err == io.EOF {
				if fr.pos != int64(len(raw)) {
					t.Fatalf("EOF at %d of %d bytes", fr.pos, len(raw))
				}
				return
			}
			if err != nil {
				if !isDamage(err) {
					t.Fatalf("next: unclassified error %v", err)
				}
				if fr.pos != at {
					t.Fatalf("error moved the good end from %d to %d", at, fr.pos)
				}
				return
			}
			n := int64(binary.LittleEndian.Uint32(raw[at:]))
			if fr.pos != at+frameHeaderSize+n {
				t.Fatalf("frame at %d declares %d bytes, reader moved to %d", at, n, fr.pos)
			}
			rec := raw[at+frameHeaderSize : fr.pos]
			if crc32.Checksum(rec, castagnoli) != binary.LittleEndian.Uint32(raw[at+4:]) {
				t.Fatalf("record at %d returned despite a checksum mismatch", at)
			}
			if !bytes.Equal(backlog.AppendRecord(nil, e), rec) {
				t.Fatalf("record at %d returned as %+v, which encodes differently", at, e)
			}
		}
	})
}

// fixChecksums walks b as a segment, trusting each frame's length, and
// writes the checksum each frame should have.
func fixChecksums(b []byte) []byte {
	for pos := headerSize; pos+frameHeaderSize <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[pos:]))
		end := pos + frameHeaderSize + n
		if n < 0 || end > len(b) || end < pos {
			break
		}
		binary.LittleEndian.PutUint32(b[pos+4:], crc32.Checksum(b[pos+frameHeaderSize:end], castagnoli))
		pos = end
	}
	return b
}
