package wal

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/replicar/replicar/backlog"
)

// Recovery reports what Open found on disk and what it changed. The package
// never logs; the caller decides how loudly to report a repair.
type Recovery struct {
	// Segments is the number of segment files found.
	Segments int
	// Records is the number of records kept.
	Records int
	// FirstOffset is the offset of the first record kept; LastOffset+1 when
	// none is.
	FirstOffset uint64
	// LastOffset is the offset of the last record kept or, when none is, the
	// position the WAL was last Reset to (0 for a new WAL).
	LastOffset uint64
	// LastEpoch is the epoch of the record at LastOffset, or the Reset
	// epoch when no record is kept.
	LastEpoch uint64
	// TruncatedBytes is the number of bytes recovery discarded, in cut
	// tails and in removed files.
	TruncatedBytes int64
	// Repairs lists each file recovery cut, rewrote or removed, in the
	// order it did so. It is empty after a clean shutdown.
	Repairs []Repair
}

// Clean reports whether recovery found nothing to repair.
func (r Recovery) Clean() bool { return len(r.Repairs) == 0 }

// String summarises the recovery for a log line.
func (r Recovery) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d segments, %d records", r.Segments, r.Records)
	if r.Records > 0 {
		fmt.Fprintf(&b, " (offsets %d..%d, last epoch %d)", r.FirstOffset, r.LastOffset, r.LastEpoch)
	} else {
		fmt.Fprintf(&b, " (position %d, epoch %d)", r.LastOffset, r.LastEpoch)
	}
	if !r.Clean() {
		fmt.Fprintf(&b, ", %d repairs dropped %d bytes", len(r.Repairs), r.TruncatedBytes)
		for _, rep := range r.Repairs {
			b.WriteString("; ")
			b.WriteString(rep.String())
		}
	}
	return b.String()
}

// Repair is one change recovery made to the directory.
type Repair struct {
	// File is the file's name inside Options.Dir.
	File string
	// Removed says the whole file was deleted. Otherwise it was cut (or, for
	// a first segment whose header was unreadable, rewritten) to Size bytes.
	Removed bool
	// Size is the file's size after the repair; 0 when it was removed.
	Size int64
	// Dropped is the number of bytes discarded.
	Dropped int64
	// Reason wraps ErrTorn, ErrCorrupt or ErrSuperseded, with the byte
	// position and offsets involved.
	Reason error
}

// String describes the repair for a log line.
func (r Repair) String() string {
	if r.Removed {
		return fmt.Sprintf("removed %s (%d bytes): %v", r.File, r.Dropped, r.Reason)
	}
	return fmt.Sprintf("cut %s to %d bytes (%d dropped): %v", r.File, r.Size, r.Dropped, r.Reason)
}

// segment is the WAL's in-memory view of one segment file.
type segment struct {
	base      uint64
	prevEpoch uint64
	size      int64 // bytes in the file, all of them whole frames
}

// recovered is the state recovery hands to Open.
type recovered struct {
	gen       uint64
	segs      []segment // never empty; the last one is the active segment
	last      uint64
	lastEpoch uint64
}

// foundSegment is a segment file as the scan sees it.
type foundSegment struct {
	name string
	base uint64
	size int64
	hdr  segHeader
	herr error // why the header cannot be used, nil if it can
}

type repairKind uint8

const (
	repairRemove repairKind = iota
	repairTruncate
	repairRewrite
)

// plannedRepair is a change decided by the scan. Nothing is changed until the
// whole directory has been read, so a failed read or a newer format aborts
// Open with the files untouched.
type plannedRepair struct {
	kind repairKind
	seg  foundSegment
	size int64 // truncate: the size to cut to
	why  error
}

// scanBufferSize is large enough that reading a segment costs few syscalls.
const scanBufferSize = 256 << 10

// recoverDir scans dir, decides what is valid, repairs the rest and returns
// the resulting state. The valid log is the longest run, from the first
// segment of the newest generation, of whole frames whose checksums match
// and whose offsets follow one another with epochs that never go down.
// Everything after the first damaged byte goes, since a record after a hole
// could never be replayed in order anyway.
func recoverDir(ctx context.Context, dir string) (recovered, Recovery, error) {
	var rec Recovery
	var plan []plannedRepair

	ents, err := os.ReadDir(dir)
	if err != nil {
		return recovered{}, rec, fmt.Errorf("read dir: %w", err)
	}
	var found []foundSegment
	for _, ent := range ents {
		name := ent.Name()
		if ent.IsDir() {
			continue
		}
		if isTempName(name) {
			var size int64
			if info, err := ent.Info(); err == nil {
				size = info.Size()
			}
			plan = append(plan, plannedRepair{
				kind: repairRemove,
				seg:  foundSegment{name: name, size: size},
				why:  fmt.Errorf("%w: unfinished segment creation", ErrTorn),
			})
			continue
		}
		base, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		found = append(found, foundSegment{name: name, base: base})
	}
	slices.SortFunc(found, func(a, b foundSegment) int {
		switch {
		case a.base < b.base:
			return -1
		case a.base > b.base:
			return 1
		}
		return 0
	})
	rec.Segments = len(found)

	var gen uint64
	for i := range found {
		s := &found[i]
		if err := readHeader(dir, s); err != nil {
			return recovered{}, rec, err
		}
		if s.herr == nil {
			gen = max(gen, s.hdr.gen)
		}
	}

	// Segments of an older generation are what an interrupted Reset had not
	// yet removed. Segments whose header is unreadable stay in line: where
	// they sit is where the damage is.
	var live []foundSegment
	for _, s := range found {
		if s.herr == nil && s.hdr.gen < gen {
			plan = append(plan, plannedRepair{
				kind: repairRemove,
				seg:  s,
				why:  fmt.Errorf("%w: generation %d, current is %d", ErrSuperseded, s.hdr.gen, gen),
			})
			continue
		}
		live = append(live, s)
	}

	st := recovered{gen: gen}
	cut := len(live) // live[cut:] are removed
	var cutWhy error
	br := bufio.NewReaderSize(nil, scanBufferSize)
	var fr frameReader
scan:
	for i, s := range live {
		if err := ctx.Err(); err != nil {
			return recovered{}, rec, err
		}
		if i == 0 {
			if s.herr != nil {
				// Nothing is trustworthy before a record of this segment, so
				// the WAL restarts empty at the position its name gives. The
				// epoch there is unknown; 0 never refuses a later append.
				plan = append(plan, plannedRepair{kind: repairRewrite, seg: s, why: fmt.Errorf("%s: %w", s.name, s.herr)})
				st.segs = append(st.segs, segment{base: s.base, size: headerSize})
				st.last, st.lastEpoch = s.base-1, 0
				cut, cutWhy = 1, fmt.Errorf("%w: follows unreadable %s", ErrCorrupt, s.name)
				break scan
			}
			st.last, st.lastEpoch = s.base-1, s.hdr.prevEpoch
		} else {
			var why error
			switch {
			case s.herr != nil:
				why = fmt.Errorf("%s: %w", s.name, s.herr)
			case st.last == math.MaxUint64 || s.base != st.last+1:
				why = fmt.Errorf("%w: %s starts at offset %d, the previous record is %d: %w", ErrCorrupt, s.name, s.base, st.last, backlog.ErrOffsetGap)
			case s.hdr.prevEpoch != st.lastEpoch:
				why = fmt.Errorf("%w: %s follows epoch %d, the previous record has %d", ErrCorrupt, s.name, s.hdr.prevEpoch, st.lastEpoch)
			}
			if why != nil {
				cut, cutWhy = i, why
				break scan
			}
		}

		good, n, err := scanSegment(ctx, dir, s, br, &fr, &st)
		rec.Records += n
		if err != nil && !isDamage(err) {
			return recovered{}, rec, err
		}
		st.segs = append(st.segs, segment{base: s.base, prevEpoch: s.hdr.prevEpoch, size: good})
		if err != nil {
			plan = append(plan, plannedRepair{kind: repairTruncate, seg: s, size: good, why: fmt.Errorf("%s: %w", s.name, err)})
			cut, cutWhy = i+1, fmt.Errorf("%w: follows the damage in %s", ErrCorrupt, s.name)
			break scan
		}
	}
	// Later segments go newest first, so that a crash part-way leaves a
	// directory the next recovery reads the same way.
	for j := len(live) - 1; j >= cut; j-- {
		why := cutWhy
		if j > cut {
			why = fmt.Errorf("%w: follows the damage at %s", ErrCorrupt, live[cut].name)
		}
		plan = append(plan, plannedRepair{kind: repairRemove, seg: live[j], why: why})
	}

	if err := applyRepairs(dir, st.gen, plan, &rec); err != nil {
		return recovered{}, rec, err
	}
	if len(st.segs) == 0 {
		f, _, err := createSegment(dir, segHeader{gen: st.gen, base: 1})
		if err != nil {
			return recovered{}, rec, err
		}
		if err := f.Close(); err != nil {
			return recovered{}, rec, fmt.Errorf("create segment: %w", err)
		}
		st.segs = []segment{{base: 1, size: headerSize}}
		st.last, st.lastEpoch = 0, 0
	}

	rec.FirstOffset = st.segs[0].base
	rec.LastOffset, rec.LastEpoch = st.last, st.lastEpoch
	return st, rec, nil
}

// readHeader fills in s.size, s.hdr and s.herr. It returns an error only for
// what must stop recovery: a failed read or a newer format.
func readHeader(dir string, s *foundSegment) error {
	f, err := os.Open(filepath.Join(dir, s.name))
	if err != nil {
		return fmt.Errorf("open %s: %w", s.name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", s.name, err)
	}
	s.size = info.Size()
	var b [headerSize]byte
	n := int(min(s.size, headerSize))
	if _, err := io.ReadFull(f, b[:n]); err != nil {
		return fmt.Errorf("read %s: %w", s.name, err)
	}
	s.hdr, s.herr = parseHeader(b[:n])
	switch {
	case s.herr != nil && !isDamage(s.herr):
		return fmt.Errorf("%s: %w", s.name, s.herr)
	case s.herr == nil && s.hdr.base != s.base:
		s.herr = fmt.Errorf("%w: header says first offset %d", ErrCorrupt, s.hdr.base)
	}
	return nil
}

// scanSegment reads s's frames, checking that they continue st's sequence
// and advancing st.last and st.lastEpoch over each good one. It returns the
// byte size of the valid prefix, the number of records in it, and the error
// that ended it (nil at a clean end).
func scanSegment(ctx context.Context, dir string, s foundSegment, br *bufio.Reader, fr *frameReader, st *recovered) (int64, int, error) {
	f, err := os.Open(filepath.Join(dir, s.name))
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", s.name, err)
	}
	defer f.Close()
	if _, err := f.Seek(headerSize, io.SeekStart); err != nil {
		return 0, 0, fmt.Errorf("seek %s: %w", s.name, err)
	}
	br.Reset(f)
	fr.reset(br, headerSize, s.size)
	n := 0
	for {
		if n%4096 == 4095 {
			if err := ctx.Err(); err != nil {
				return 0, n, err
			}
		}
		start := fr.pos
		e, err := fr.next()
		if err == io.EOF {
			return fr.pos, n, nil
		}
		if err != nil {
			return fr.pos, n, err
		}
		if err := follows(st.last, st.lastEpoch, e, start); err != nil {
			return start, n, err
		}
		st.last, st.lastEpoch = e.Offset, e.Epoch
		n++
	}
}

// follows checks that e may come right after a record (last, lastEpoch).
// at is e's byte position, for the message.
func follows(last, lastEpoch uint64, e backlog.Entry, at int64) error {
	if last == math.MaxUint64 || e.Offset != last+1 {
		return fmt.Errorf("%w: record at byte %d has offset %d after %d: %w", ErrCorrupt, at, e.Offset, last, backlog.ErrOffsetGap)
	}
	if e.Epoch < lastEpoch {
		return fmt.Errorf("%w: record at byte %d has epoch %d after %d: %w", ErrCorrupt, at, e.Epoch, lastEpoch, backlog.ErrEpochRegression)
	}
	return nil
}

// applyRepairs carries out the plan in order and records each step in rec.
// Repeating a partly applied plan reaches the same state, so a crash here is
// harmless.
func applyRepairs(dir string, gen uint64, plan []plannedRepair, rec *Recovery) error {
	removed := false
	for _, p := range plan {
		path := filepath.Join(dir, p.seg.name)
		r := Repair{File: p.seg.name, Reason: p.why}
		switch p.kind {
		case repairRemove:
			if err := removeFile(path); err != nil {
				return fmt.Errorf("remove %s: %w", p.seg.name, err)
			}
			removed = true
			r.Removed, r.Dropped = true, p.seg.size
		case repairTruncate:
			if err := truncateFile(path, p.size); err != nil {
				return fmt.Errorf("truncate %s: %w", p.seg.name, err)
			}
			r.Size, r.Dropped = p.size, p.seg.size-p.size
		case repairRewrite:
			f, _, err := createSegment(dir, segHeader{gen: gen, base: p.seg.base})
			if err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("rewrite %s: %w", p.seg.name, err)
			}
			r.Size, r.Dropped = headerSize, p.seg.size
		}
		rec.TruncatedBytes += r.Dropped
		rec.Repairs = append(rec.Repairs, r)
	}
	if removed {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("sync dir: %w", err)
		}
	}
	return nil
}

// truncateFile cuts path to size and makes the cut durable, so the damaged
// tail cannot reappear after another crash.
func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, filePerm)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
