package fanout

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/replicar/replicar/backlog"
)

// Frame header constants. See the package documentation for the byte layout.
const (
	// FrameMagic opens every frame ("RR"). A peer that is not speaking the
	// replication protocol (an HTTP probe, a Redis client on the wrong port)
	// is told apart from a corrupt frame at the first bytes.
	FrameMagic uint16 = 0x5252
	// FrameVersion is the header version this package writes and reads.
	FrameVersion byte = 1
	// FrameHeaderSize is the number of bytes before a frame's body.
	FrameHeaderSize = 12
	// MaxFrameBody bounds a frame's body. It is large enough for one entry
	// of backlog.MaxPayload with its record header and the ENTRIES preamble,
	// so any entry the backlog accepts can be streamed; a reader may
	// allocate this much for one frame and no more.
	MaxFrameBody = backlog.MaxPayload + backlog.MaxRecordHeader + 2*binary.MaxVarintLen64
	// MaxNameLen bounds group and node names in frames.
	MaxNameLen = 255
	// MaxTextLen bounds free-text fields (verdict reasons, error messages).
	MaxTextLen = 4096
	// MaxHistory bounds the epoch history a HELLO may carry.
	MaxHistory = 1024
)

// ProtocolVersion is the replication protocol version a follower announces in
// HELLO. It versions the meaning of the frames, where FrameVersion versions
// their layout.
const ProtocolVersion uint64 = 1

// Sentinel errors of DecodeFrame. Compare with errors.Is.
var (
	// ErrShortFrame means b ends before the frame does; read more bytes and
	// call DecodeFrame again with them appended.
	ErrShortFrame = errors.New("fanout: short frame")
	// ErrCorruptFrame means the bytes cannot be a frame: bad magic, bad
	// checksum, an unknown type, or a body that does not parse exactly.
	// The stream cannot be resynchronised; close the connection.
	ErrCorruptFrame = errors.New("fanout: corrupt frame")
	// ErrFrameTooLarge means the header announces a body over MaxFrameBody.
	// It is reported before the body arrives, so a hostile length never
	// turns into an allocation.
	ErrFrameTooLarge = errors.New("fanout: frame too large")
	// ErrVersion means the frame has a header version this package does not
	// speak.
	ErrVersion = errors.New("fanout: unsupported frame version")
)

// FrameType says which of Frame's fields a frame carries.
type FrameType uint8

// The frame types.
const (
	// TypeHello is the follower's handshake (Frame.Hello).
	TypeHello FrameType = iota + 1
	// TypeVerdict is the leader's answer to HELLO (Frame.Verdict).
	TypeVerdict
	// TypeEntries is a batch of backlog entries (Frame.Entries).
	TypeEntries
	// TypeHeartbeat is the leader's liveness and commit signal (Frame.Heartbeat).
	TypeHeartbeat
	// TypeAck is the follower's applied position (Frame.Ack).
	TypeAck
	// TypeError ends a session with a reason (Frame.Error).
	TypeError
	// TypeSnapshot asks the leader for a full resync copy into the
	// follower's store (Frame.Snapshot), on a connection of its own.
	TypeSnapshot
	// TypeSnapshotDone says the copy is done and where it stands
	// (Frame.SnapshotDone).
	TypeSnapshotDone
)

// String names the frame type.
func (t FrameType) String() string {
	switch t {
	case TypeHello:
		return "HELLO"
	case TypeVerdict:
		return "VERDICT"
	case TypeEntries:
		return "ENTRIES"
	case TypeHeartbeat:
		return "HEARTBEAT"
	case TypeAck:
		return "ACK"
	case TypeError:
		return "ERROR"
	case TypeSnapshot:
		return "SNAPSHOT"
	case TypeSnapshotDone:
		return "SNAPSHOT_DONE"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Frame is one message of the replication protocol. Type selects the one field
// that is encoded; the others are ignored by AppendFrame and left zero by
// DecodeFrame. One struct rather than an interface keeps AppendFrame free of
// allocations and type switches on the caller's side.
type Frame struct {
	Type      FrameType
	Hello     Hello
	Verdict   Verdict
	Entries   Entries
	Heartbeat Heartbeat
	Ack       Ack
	Error     Error
	// Snapshot and SnapshotDone are a full resync's request and answer.
	Snapshot     Snapshot
	SnapshotDone SnapshotDone
}

// Snapshot asks the leader to copy a consistent snapshot into Target, the
// follower's own store (host:port), and to say at which position the copy
// stands. The follower then streams from just after it.
type Snapshot struct {
	Protocol uint64
	Group    string
	Node     string
	Target   string
}

// SnapshotDone is the position the copied store stands at: every entry up
// to Offset, the last of them from Epoch, and no later one.
type SnapshotDone struct {
	Epoch  uint64
	Offset uint64
}

// Hello is the follower's handshake: who it is and where its backlog ends, as
// backlog.Log.Resume takes it.
type Hello struct {
	// Protocol is the follower's ProtocolVersion.
	Protocol uint64
	Group    string
	Node     string
	// LastEpoch is the epoch of the last entry the follower holds.
	LastEpoch uint64
	// NextOffset is the first offset the follower wants.
	NextOffset uint64
	// History is the follower's epoch history, oldest first; optional. It
	// lets a leader find a divergence point in one round trip.
	History []backlog.EpochStart
}

// Verdict is the leader's answer to HELLO, carrying backlog.Log.Resume's
// decision and who the leader is.
type Verdict struct {
	// Verdict is Continue, Diverged, FullResync or Refuse.
	Verdict backlog.Verdict
	// From is the first offset the leader streams (Continue).
	From uint64
	// DivergedAt is the first follower offset that is not the leader's.
	DivergedAt uint64
	// Reason is Decision.Reason's text; empty for Continue.
	Reason      string
	LeaderEpoch uint64
	LeaderNode  string
}

// Entries is a batch of consecutive backlog entries. Each is encoded with
// backlog.AppendRecord, so a follower can write the bytes to its WAL as they
// are.
type Entries struct {
	// Committed is the leader's committed offset when it sent the batch.
	Committed uint64
	// Entries are the batch; decoded payloads alias the decoded buffer.
	Entries []backlog.Entry
}

// Heartbeat tells an idle follower the leader is alive and what is committed.
type Heartbeat struct {
	Epoch     uint64
	Last      uint64
	Committed uint64
	// SentUnixNano is the leader's send time, echoed in Ack for RTT. It is
	// an input rather than read here so the codec stays pure.
	SentUnixNano int64
}

// Ack is the follower's applied position.
type Ack struct {
	Applied uint64
	Epoch   uint64
	// EchoUnixNano is the SentUnixNano of the latest heartbeat, or 0.
	EchoUnixNano int64
}

// Error codes of ERROR frames.
const (
	// ErrCodeProtocol: the peer sent something the protocol does not allow.
	ErrCodeProtocol uint64 = 1
	// ErrCodeGroup: HELLO named another group.
	ErrCodeGroup uint64 = 2
	// ErrCodeNotLeader: the node dialled is not (or no longer) the leader.
	ErrCodeNotLeader uint64 = 3
	// ErrCodeStaleEpoch: an entry or ack carried an epoch older than the
	// receiver has seen.
	ErrCodeStaleEpoch uint64 = 4
	// ErrCodeInternal: the sender failed; the peer should reconnect later.
	ErrCodeInternal uint64 = 5
	// ErrCodeNotMember: the node id is not a member of the group (not in
	// its member directory). It may be one that has not published itself
	// yet, so the follower retries with backoff.
	ErrCodeNotMember uint64 = 6
)

// Error ends a session with a reason the peer can log.
type Error struct {
	Code    uint64
	Message string
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendFrame appends the encoding of f to dst and returns the extended slice.
// It allocates only when dst lacks capacity, so a writer that reuses its
// buffer encodes without garbage. f must satisfy the limits DecodeFrame
// enforces (names, history, body size, a known Type and Verdict); a frame
// that does not is a caller bug, and AppendFrame panics rather than send
// bytes the peer would refuse. Texts (Reason, Message) are cut to MaxTextLen
// instead, because they often wrap errors of unbounded length and losing
// their tail is better than losing the frame.
func AppendFrame(dst []byte, f Frame) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, FrameMagic)
	dst = append(dst, FrameVersion, byte(f.Type), 0, 0, 0, 0, 0, 0, 0, 0)
	body := len(dst)
	switch f.Type {
	case TypeHello:
		h := &f.Hello
		if len(h.History) > MaxHistory {
			panic(fmt.Sprintf("fanout: HELLO history of %d epochs", len(h.History)))
		}
		dst = binary.AppendUvarint(dst, h.Protocol)
		dst = appendString(dst, h.Group, MaxNameLen)
		dst = appendString(dst, h.Node, MaxNameLen)
		dst = binary.AppendUvarint(dst, h.LastEpoch)
		dst = binary.AppendUvarint(dst, h.NextOffset)
		dst = binary.AppendUvarint(dst, uint64(len(h.History)))
		for _, s := range h.History {
			dst = binary.AppendUvarint(dst, s.Epoch)
			dst = binary.AppendUvarint(dst, s.StartOffset)
		}
	case TypeVerdict:
		v := &f.Verdict
		if !validVerdict(v.Verdict) {
			panic(fmt.Sprintf("fanout: VERDICT %v", v.Verdict))
		}
		dst = append(dst, byte(v.Verdict))
		dst = binary.AppendUvarint(dst, v.From)
		dst = binary.AppendUvarint(dst, v.DivergedAt)
		dst = appendString(dst, truncate(v.Reason), MaxTextLen)
		dst = binary.AppendUvarint(dst, v.LeaderEpoch)
		dst = appendString(dst, v.LeaderNode, MaxNameLen)
	case TypeEntries:
		dst = binary.AppendUvarint(dst, f.Entries.Committed)
		dst = binary.AppendUvarint(dst, uint64(len(f.Entries.Entries)))
		for _, e := range f.Entries.Entries {
			dst = backlog.AppendRecord(dst, e)
		}
	case TypeHeartbeat:
		h := &f.Heartbeat
		dst = binary.AppendUvarint(dst, h.Epoch)
		dst = binary.AppendUvarint(dst, h.Last)
		dst = binary.AppendUvarint(dst, h.Committed)
		dst = binary.AppendUvarint(dst, uint64(h.SentUnixNano))
	case TypeAck:
		a := &f.Ack
		dst = binary.AppendUvarint(dst, a.Applied)
		dst = binary.AppendUvarint(dst, a.Epoch)
		dst = binary.AppendUvarint(dst, uint64(a.EchoUnixNano))
	case TypeError:
		dst = binary.AppendUvarint(dst, f.Error.Code)
		dst = appendString(dst, truncate(f.Error.Message), MaxTextLen)
	case TypeSnapshot:
		sn := &f.Snapshot
		dst = binary.AppendUvarint(dst, sn.Protocol)
		dst = appendString(dst, sn.Group, MaxNameLen)
		dst = appendString(dst, sn.Node, MaxNameLen)
		dst = appendString(dst, sn.Target, MaxNameLen)
	case TypeSnapshotDone:
		dst = binary.AppendUvarint(dst, f.SnapshotDone.Epoch)
		dst = binary.AppendUvarint(dst, f.SnapshotDone.Offset)
	default:
		panic(fmt.Sprintf("fanout: AppendFrame of %v", f.Type))
	}
	n := len(dst) - body
	if n > MaxFrameBody {
		panic(fmt.Sprintf("fanout: %v frame body of %d bytes exceeds MaxFrameBody", f.Type, n))
	}
	binary.BigEndian.PutUint32(dst[start+4:], uint32(n))
	crc := crc32.Update(0, castagnoli, dst[start:start+8])
	crc = crc32.Update(crc, castagnoli, dst[body:])
	binary.BigEndian.PutUint32(dst[start+8:], crc)
	return dst
}

func appendString(dst []byte, s string, limit int) []byte {
	if len(s) > limit {
		panic(fmt.Sprintf("fanout: string of %d bytes exceeds %d", len(s), limit))
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func truncate(s string) string {
	if len(s) > MaxTextLen {
		return s[:MaxTextLen]
	}
	return s
}

func validVerdict(v backlog.Verdict) bool {
	return v >= backlog.Continue && v <= backlog.Refuse
}

// DecodeFrame decodes the frame at the start of b. It returns the frame, the
// number of bytes it used, and an error: ErrShortFrame when b ends before the
// frame does (read more and retry), ErrFrameTooLarge, ErrVersion or
// ErrCorruptFrame otherwise (close the connection). n is 0 on error.
//
// Byte slices in the result (entry payloads) alias b; strings are copied.
// Allocations are bounded by len(b), never by a length read from it.
func DecodeFrame(b []byte) (Frame, int, error) {
	// Check what has arrived as early as it arrives, so a peer speaking
	// something else is refused at once rather than after it has sent a
	// whole "header".
	if len(b) >= 1 && b[0] != byte(FrameMagic>>8) || len(b) >= 2 && b[1] != byte(FrameMagic&0xff) {
		return Frame{}, 0, fmt.Errorf("%w: bad magic", ErrCorruptFrame)
	}
	if len(b) >= 3 && b[2] != FrameVersion {
		return Frame{}, 0, fmt.Errorf("%w: %d", ErrVersion, b[2])
	}
	if len(b) < 8 {
		return Frame{}, 0, ErrShortFrame
	}
	size := binary.BigEndian.Uint32(b[4:])
	if uint64(size) > MaxFrameBody {
		return Frame{}, 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, size)
	}
	if len(b) < FrameHeaderSize {
		return Frame{}, 0, ErrShortFrame
	}
	if uint64(len(b)-FrameHeaderSize) < uint64(size) {
		return Frame{}, 0, ErrShortFrame
	}
	end := FrameHeaderSize + int(size)
	body := b[FrameHeaderSize:end:end]
	crc := crc32.Update(0, castagnoli, b[:8])
	crc = crc32.Update(crc, castagnoli, body)
	if crc != binary.BigEndian.Uint32(b[8:]) {
		return Frame{}, 0, fmt.Errorf("%w: checksum mismatch", ErrCorruptFrame)
	}
	f := Frame{Type: FrameType(b[3])}
	d := decoder{b: body}
	switch f.Type {
	case TypeHello:
		h := &f.Hello
		h.Protocol = d.uvarint()
		h.Group = d.string(MaxNameLen)
		h.Node = d.string(MaxNameLen)
		h.LastEpoch = d.uvarint()
		h.NextOffset = d.uvarint()
		// Each epoch takes at least two bytes, which bounds the slice by
		// what actually arrived.
		if n := d.count(MaxHistory, 2); n > 0 {
			h.History = make([]backlog.EpochStart, n)
			for i := range h.History {
				h.History[i] = backlog.EpochStart{Epoch: d.uvarint(), StartOffset: d.uvarint()}
			}
		}
	case TypeVerdict:
		v := &f.Verdict
		v.Verdict = backlog.Verdict(d.byte())
		if d.err == nil && !validVerdict(v.Verdict) {
			d.fail("verdict %d", uint8(v.Verdict))
		}
		v.From = d.uvarint()
		v.DivergedAt = d.uvarint()
		v.Reason = d.string(MaxTextLen)
		v.LeaderEpoch = d.uvarint()
		v.LeaderNode = d.string(MaxNameLen)
	case TypeEntries:
		f.Entries.Committed = d.uvarint()
		// A record takes at least four bytes.
		if n := d.count(len(body), 4); n > 0 {
			f.Entries.Entries = make([]backlog.Entry, n)
			for i := range f.Entries.Entries {
				if d.err != nil {
					break
				}
				e, m, err := backlog.DecodeRecord(d.b)
				if err != nil {
					// The frame is whole, so a short record is corrupt too.
					d.fail("entry %d: %v", i, err)
					break
				}
				f.Entries.Entries[i] = e
				d.b = d.b[m:]
			}
		}
	case TypeHeartbeat:
		h := &f.Heartbeat
		h.Epoch = d.uvarint()
		h.Last = d.uvarint()
		h.Committed = d.uvarint()
		h.SentUnixNano = int64(d.uvarint())
	case TypeAck:
		a := &f.Ack
		a.Applied = d.uvarint()
		a.Epoch = d.uvarint()
		a.EchoUnixNano = int64(d.uvarint())
	case TypeError:
		f.Error.Code = d.uvarint()
		f.Error.Message = d.string(MaxTextLen)
	case TypeSnapshot:
		sn := &f.Snapshot
		sn.Protocol = d.uvarint()
		sn.Group = d.string(MaxNameLen)
		sn.Node = d.string(MaxNameLen)
		sn.Target = d.string(MaxNameLen)
	case TypeSnapshotDone:
		f.SnapshotDone.Epoch = d.uvarint()
		f.SnapshotDone.Offset = d.uvarint()
	default:
		return Frame{}, 0, fmt.Errorf("%w: unknown type %d", ErrCorruptFrame, b[3])
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Frame{}, 0, fmt.Errorf("%w: %v: %v", ErrCorruptFrame, f.Type, d.err)
	}
	return f, end, nil
}

// decoder reads a frame body that is known to be complete, so running out of
// bytes is corruption, not a short read. The first error sticks and later
// reads return zero values, which keeps the per-type code linear.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated body")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail("truncated body")
		return 0
	case n < 0:
		d.fail("varint overflow")
		return 0
	case n != uvarintLen(v):
		// Only the minimal form is accepted, so a frame has one encoding
		// and re-encoding what was decoded gives the same bytes.
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and checks it against limit and against the
// bytes left, given that each element takes at least minSize bytes.
func (d *decoder) count(limit, minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(limit) || n > uint64(len(d.b)/minSize) {
		d.fail("count %d exceeds the body", n)
		return 0
	}
	return int(n)
}

func (d *decoder) string(limit int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail("string of %d bytes", n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
