package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"

	"github.com/replicar/replicar/backlog"
)

// FormatVersion is the segment format this package writes and the only one it
// reads. See the package documentation for the layout.
const FormatVersion = 1

const (
	magic = "RPLCWAL\n"

	// headerSize is the size of a version 1 segment header:
	// magic(8) version(4) flags(4) generation(8) base(8) prevEpoch(8) crc(4).
	headerSize = 44
	// headerPrefix is what every format version keeps in place (magic and
	// version), so that an old reader can recognise a newer file.
	headerPrefix = 12

	frameHeaderSize = 8
	// minRecordSize is the smallest record: version and three one-byte
	// uvarints.
	minRecordSize = 4
	// maxRecordSize is the largest record length a frame may declare.
	maxRecordSize = backlog.MaxRecordHeader + backlog.MaxPayload

	segmentExt = ".wal"
	tmpExt     = ".tmp"
	nameDigits = 20
)

// castagnoli is read-only after package initialisation; crc32 picks the
// hardware implementation for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segmentName is the file name of the segment whose first offset is base.
// Zero padding makes lexical order equal offset order for people listing the
// directory; the code itself sorts numerically.
func segmentName(base uint64) string {
	s := strconv.FormatUint(base, 10)
	return strings.Repeat("0", nameDigits-len(s)) + s + segmentExt
}

// parseSegmentName returns the base offset a segment file name declares. Only
// exactly twenty digits followed by ".wal" qualify; base 0 does not, since
// offset 0 means "nothing".
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != nameDigits {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// isTempName reports whether name is a segment being created (see
// createSegment); one that survives a crash was never made visible.
func isTempName(name string) bool {
	seg, ok := strings.CutSuffix(name, tmpExt)
	if !ok {
		return false
	}
	_, ok = parseSegmentName(seg)
	return ok
}

// segHeader is the content of a segment header.
type segHeader struct {
	// gen counts Resets. Every segment of the live history carries the same
	// generation; recovery drops segments of older ones, which is what makes
	// Reset atomic.
	gen uint64
	// base is the offset of the segment's first record, or the offset its
	// first record will have when it is still empty. It equals the name.
	base uint64
	// prevEpoch is the epoch of the record at base-1: the last record of the
	// previous segment, or the snapshot epoch given to Reset. It lets an
	// empty WAL remember its position and lets recovery check the epoch
	// order across segment boundaries.
	prevEpoch uint64
}

func (h segHeader) put(b []byte) {
	_ = b[headerSize-1]
	copy(b[0:8], magic)
	binary.LittleEndian.PutUint32(b[8:12], FormatVersion)
	binary.LittleEndian.PutUint32(b[12:16], 0)
	binary.LittleEndian.PutUint64(b[16:24], h.gen)
	binary.LittleEndian.PutUint64(b[24:32], h.base)
	binary.LittleEndian.PutUint64(b[32:40], h.prevEpoch)
	binary.LittleEndian.PutUint32(b[40:44], crc32.Checksum(b[0:40], castagnoli))
}

// parseHeader decodes the header at the start of b, which holds the first
// min(headerSize, file size) bytes of a segment. It returns ErrTorn when the
// file is too short to hold a header, ErrCorrupt when the bytes are wrong,
// and ErrVersion when the file is a newer format.
func parseHeader(b []byte) (segHeader, error) {
	if len(b) == 0 {
		return segHeader{}, fmt.Errorf("%w: empty segment file", ErrTorn)
	}
	n := min(len(b), len(magic))
	if !bytes.Equal(b[:n], []byte(magic)[:n]) {
		return segHeader{}, fmt.Errorf("%w: bad segment magic", ErrCorrupt)
	}
	if len(b) < headerPrefix {
		return segHeader{}, fmt.Errorf("%w: segment header cut at %d bytes", ErrTorn, len(b))
	}
	// A newer version is refused before its checksum is looked at, because
	// a newer header need not be laid out (or checksummed) like this one.
	// Version 0 is never written, so it is damage (zeroed blocks, for
	// instance), not the future.
	switch v := binary.LittleEndian.Uint32(b[8:12]); {
	case v > FormatVersion:
		return segHeader{}, fmt.Errorf("%w: version %d, this build reads %d", ErrVersion, v, FormatVersion)
	case v != FormatVersion:
		return segHeader{}, fmt.Errorf("%w: segment version %d", ErrCorrupt, v)
	}
	if len(b) < headerSize {
		return segHeader{}, fmt.Errorf("%w: segment header cut at %d bytes", ErrTorn, len(b))
	}
	if crc32.Checksum(b[0:40], castagnoli) != binary.LittleEndian.Uint32(b[40:44]) {
		return segHeader{}, fmt.Errorf("%w: segment header checksum mismatch", ErrCorrupt)
	}
	if flags := binary.LittleEndian.Uint32(b[12:16]); flags != 0 {
		// A checksummed, non-zero flag word was put there on purpose by a
		// writer that knows a feature this one does not.
		return segHeader{}, fmt.Errorf("%w: unknown segment flags %#x", ErrVersion, flags)
	}
	return segHeader{
		gen:       binary.LittleEndian.Uint64(b[16:24]),
		base:      binary.LittleEndian.Uint64(b[24:32]),
		prevEpoch: binary.LittleEndian.Uint64(b[32:40]),
	}, nil
}

// appendFrame appends e framed as length, CRC-32C and record. The caller has
// already checked the payload against backlog.MaxPayload.
func appendFrame(dst []byte, e backlog.Entry) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = backlog.AppendRecord(dst, e)
	rec := dst[start+frameHeaderSize:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(rec)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(rec, castagnoli))
	return dst
}

// frameSize is the number of bytes appendFrame adds for e.
func frameSize(e backlog.Entry) int64 {
	return frameHeaderSize + int64(backlog.RecordSize(e))
}

// frameReader reads frames from one segment body. It knows how many bytes the
// file holds, so that a corrupt length is recognised as running past the end
// before anything is allocated for it.
//
// After next returns an error other than io.EOF, pos is the end of the last
// good frame (where recovery cuts the file) and the reader must not be used
// again.
type frameReader struct {
	r     io.Reader
	pos   int64 // offset in the file of the next frame
	limit int64 // file size
	hdr   [frameHeaderSize]byte
	buf   []byte // record bytes; entries returned alias it
}

func (fr *frameReader) reset(r io.Reader, pos, limit int64) {
	fr.r, fr.pos, fr.limit = r, pos, limit
}

// next returns the next record, io.EOF at a clean end, an error wrapping
// ErrTorn or ErrCorrupt for damaged bytes, and any other error for a failed
// read, which says nothing about the data and must not lead to truncation.
// The entry's payload is valid until the following call.
func (fr *frameReader) next() (backlog.Entry, error) {
	rem := fr.limit - fr.pos
	if rem <= 0 {
		return backlog.Entry{}, io.EOF
	}
	if rem < frameHeaderSize {
		return backlog.Entry{}, fmt.Errorf("%w: frame header cut at byte %d", ErrTorn, fr.pos)
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return backlog.Entry{}, fr.readErr(err)
	}
	n := binary.LittleEndian.Uint32(fr.hdr[0:4])
	sum := binary.LittleEndian.Uint32(fr.hdr[4:8])
	if n == 0 && sum == 0 {
		// Filesystems may extend a file with zeroed blocks whose data never
		// reached the disk; that is a torn write, not bit rot.
		return backlog.Entry{}, fmt.Errorf("%w: zeroed bytes at byte %d", ErrTorn, fr.pos)
	}
	if n < minRecordSize || n > maxRecordSize {
		return backlog.Entry{}, fmt.Errorf("%w: frame length %d at byte %d", ErrCorrupt, n, fr.pos)
	}
	if int64(n) > rem-frameHeaderSize {
		return backlog.Entry{}, fmt.Errorf("%w: frame at byte %d needs %d bytes, file has %d", ErrTorn, fr.pos, n, rem-frameHeaderSize)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, max(int(n), 2*cap(fr.buf), 4096))
	}
	rec := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, rec); err != nil {
		return backlog.Entry{}, fr.readErr(err)
	}
	if crc32.Checksum(rec, castagnoli) != sum {
		return backlog.Entry{}, fmt.Errorf("%w: frame checksum mismatch at byte %d", ErrCorrupt, fr.pos)
	}
	e, used, err := backlog.DecodeRecord(rec)
	switch {
	case err != nil:
		return backlog.Entry{}, fmt.Errorf("%w: frame at byte %d: %w", ErrCorrupt, fr.pos, err)
	case used != int(n):
		return backlog.Entry{}, fmt.Errorf("%w: frame at byte %d has %d bytes after its record", ErrCorrupt, fr.pos, int(n)-used)
	}
	fr.pos += frameHeaderSize + int64(n)
	return e, nil
}

// readErr classifies a read failure: running out of bytes the size promised
// means the file is shorter than it claimed (torn); anything else is an I/O
// error.
func (fr *frameReader) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: file ends inside the frame at byte %d", ErrTorn, fr.pos)
	}
	return fmt.Errorf("read at byte %d: %w", fr.pos, err)
}

// isDamage reports whether err describes bad bytes, as opposed to a failed
// read or a newer format, which recovery must never repair by deleting data.
func isDamage(err error) bool {
	return errors.Is(err, ErrTorn) || errors.Is(err, ErrCorrupt)
}
