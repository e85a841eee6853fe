package backlog

import (
	"encoding/binary"
	"fmt"
)

// RecordVersion is the first byte of every encoded record. A reader refuses
// versions it does not know instead of guessing.
const RecordVersion byte = 1

// MaxPayload bounds one entry's payload, the same bound as Redis's default
// proto-max-bulk-len. It keeps a corrupt length from turning into a huge
// allocation.
const MaxPayload = 512 << 20

// MaxRecordHeader is the largest number of bytes a record uses before its
// payload.
const MaxRecordHeader = 1 + 3*binary.MaxVarintLen64

// Entry is one replicated unit: a write (or atomic group of writes) as the
// leader decided it, tagged with the leader's epoch and its position.
type Entry struct {
	Epoch   uint64
	Offset  uint64
	Payload []byte
}

// RecordSize is the encoded size of e.
func RecordSize(e Entry) int {
	return 1 + uvarintLen(e.Epoch) + uvarintLen(e.Offset) + uvarintLen(uint64(len(e.Payload))) + len(e.Payload)
}

// AppendRecord appends the encoded form of e to dst and returns the extended
// slice. It allocates only when dst lacks capacity.
func AppendRecord(dst []byte, e Entry) []byte {
	dst = append(dst, RecordVersion)
	dst = binary.AppendUvarint(dst, e.Epoch)
	dst = binary.AppendUvarint(dst, e.Offset)
	dst = binary.AppendUvarint(dst, uint64(len(e.Payload)))
	return append(dst, e.Payload...)
}

// DecodeRecord decodes the record at the start of b. It returns the entry, the
// number of bytes the record used, and an error: ErrShortRecord when b ends
// before the record does, ErrCorruptRecord when the bytes cannot be a record.
// The payload aliases b.
func DecodeRecord(b []byte) (Entry, int, error) {
	if len(b) == 0 {
		return Entry{}, 0, ErrShortRecord
	}
	if b[0] != RecordVersion {
		return Entry{}, 0, fmt.Errorf("%w: version %d", ErrCorruptRecord, b[0])
	}
	pos := 1
	var fields [3]uint64
	for i := range fields {
		v, n := binary.Uvarint(b[pos:])
		switch {
		case n == 0:
			return Entry{}, 0, ErrShortRecord
		case n < 0:
			return Entry{}, 0, fmt.Errorf("%w: varint overflow", ErrCorruptRecord)
		case n != uvarintLen(v):
			// A padded varint decodes, but then the bytes are not the one
			// encoding of the entry, and a checksum or comparison over
			// them would disagree with AppendRecord's.
			return Entry{}, 0, fmt.Errorf("%w: non-minimal varint", ErrCorruptRecord)
		}
		fields[i] = v
		pos += n
	}
	size := fields[2]
	if size > MaxPayload {
		return Entry{}, 0, fmt.Errorf("%w: payload length %d", ErrCorruptRecord, size)
	}
	if uint64(len(b)-pos) < size {
		return Entry{}, 0, ErrShortRecord
	}
	end := pos + int(size)
	return Entry{Epoch: fields[0], Offset: fields[1], Payload: b[pos:end:end]}, end, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
