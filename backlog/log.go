package backlog

import "fmt"

// Defaults for Options fields left at zero.
const (
	DefaultMaxBytes  = 64 << 20
	DefaultChunkSize = 64 << 10
	DefaultMaxEpochs = 1024
)

// EntryOverhead is what each retained entry costs on top of its payload when
// retention is counted. It stands for the bookkeeping, so that a flood of empty
// entries is bounded too.
const EntryOverhead = 32

// Options configures a Log. The zero value uses the defaults.
type Options struct {
	// MaxBytes bounds the retained entries, counted as payload plus
	// EntryOverhead each (REPLICAR_BACKLOG_BYTES).
	MaxBytes int64
	// ChunkSize is the size of the recycled buffers payloads are copied into.
	// Payloads larger than a quarter of it get a buffer of their own.
	ChunkSize int
	// MaxEpochs bounds the epoch history. Older epochs are forgotten first;
	// a follower positioned before the oldest one remembered must full-resync.
	MaxEpochs int
}

// Position names one entry: the epoch that wrote it and its offset. The zero
// Position is "before the first entry".
type Position struct {
	Epoch  uint64
	Offset uint64
}

// String formats p as epoch:offset.
func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Epoch, p.Offset) }

// slot is one retained entry. It holds no pointer, so the garbage collector
// never scans the ring, however many million entries a large backlog keeps:
// the payload is found through ref instead.
type slot struct {
	epoch uint64
	// ref is the seq of the chunk that holds the payload at off, or, with
	// largeRef set, the seq of the payload's own buffer in large.
	ref uint64
	off uint32
	n   uint32
}

// largeRef marks a slot whose payload has a buffer of its own.
const largeRef = 1 << 63

type chunk struct {
	// seq numbers chunks in the order they were taken, so a slot can find
	// its chunk as chunks[ref-chunks[0].seq].
	seq         uint64
	buf         []byte
	used        int
	firstOffset uint64
	lastOffset  uint64
	sealed      bool
}

// Log is the in-memory backlog. It is not safe for concurrent use.
type Log struct {
	opts Options

	// base is the position just before the first retained entry: the last
	// evicted entry, or the snapshot a follower was reset to.
	base  Position
	slots []slot // ring buffer
	head  int
	count int
	bytes int64

	chunks []*chunk // oldest first; the last one takes new payloads
	free   []*chunk
	// chunkSeqEnd is the seq the next chunk gets: one past the newest,
	// so the seqs in chunks stay consecutive.
	chunkSeqEnd uint64

	// large holds, oldest first, the payloads too big for a chunk; large[0]
	// has seq largeBase.
	large     [][]byte
	largeBase uint64

	hist History
}

// NewLog returns an empty log whose first entry will have offset 1.
func NewLog(opts Options) *Log {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.MaxEpochs <= 0 {
		opts.MaxEpochs = DefaultMaxEpochs
	}
	// Slots address chunk memory with 32-bit offsets.
	opts.ChunkSize = min(opts.ChunkSize, 1<<30)
	return &Log{opts: opts, slots: make([]slot, 64)}
}

// First is the offset of the oldest retained entry. When the log is empty it
// equals Next.
func (l *Log) First() uint64 { return l.base.Offset + 1 }

// Last is the offset of the newest entry the log holds or has held: after
// Reset with no appends it is the reset position. It is 0 for a new log.
func (l *Log) Last() uint64 { return l.base.Offset + uint64(l.count) }

// Next is the offset the next appended entry gets.
func (l *Log) Next() uint64 { return l.Last() + 1 }

// LastPosition is the epoch and offset of the newest entry, or the base
// position when nothing is retained.
func (l *Log) LastPosition() Position {
	if l.count == 0 {
		return l.base
	}
	return Position{Epoch: l.at(l.count - 1).epoch, Offset: l.Last()}
}

// LastEpoch is the epoch of the newest entry (or of the reset position).
func (l *Log) LastEpoch() uint64 { return l.LastPosition().Epoch }

// Len is the number of retained entries.
func (l *Log) Len() int { return l.count }

// Bytes is the retained size as counted for retention.
func (l *Log) Bytes() int64 { return l.bytes }

// MaxBytes is the retention limit in force.
func (l *Log) MaxBytes() int64 { return l.opts.MaxBytes }

// History is the log's epoch history. It is shared; do not modify it.
func (l *Log) History() *History { return &l.hist }

// Append adds an entry written by epoch with the next offset, which it
// returns. The payload is copied. It evicts the oldest entries past MaxBytes.
func (l *Log) Append(epoch uint64, payload []byte) (uint64, error) {
	offset := l.Next()
	if err := l.check(epoch, offset, payload); err != nil {
		return 0, err
	}
	l.push(epoch, offset, payload)
	return offset, nil
}

// AppendEntry adds an entry received from a leader. Its offset must be Next
// and its epoch no lower than LastEpoch.
func (l *Log) AppendEntry(e Entry) error {
	if next := l.Next(); e.Offset != next {
		return fmt.Errorf("%w: got %d, want %d", ErrOffsetGap, e.Offset, next)
	}
	if err := l.check(e.Epoch, e.Offset, e.Payload); err != nil {
		return err
	}
	l.push(e.Epoch, e.Offset, e.Payload)
	return nil
}

func (l *Log) check(epoch, offset uint64, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes at offset %d", ErrEntryTooLarge, len(payload), offset)
	}
	if last := l.LastEpoch(); epoch < last {
		return fmt.Errorf("%w: epoch %d at offset %d after epoch %d", ErrEpochRegression, epoch, offset, last)
	}
	return nil
}

func (l *Log) push(epoch, offset uint64, payload []byte) {
	// check has ruled out a regression, so Observe cannot fail.
	_ = l.hist.Observe(epoch, offset)
	l.hist.keepNewest(l.opts.MaxEpochs)

	if l.count == len(l.slots) {
		l.grow()
	}
	l.slots[(l.head+l.count)%len(l.slots)] = l.store(epoch, offset, payload)
	l.count++
	l.bytes += int64(len(payload)) + EntryOverhead
	for l.bytes > l.opts.MaxBytes && l.count > 1 {
		l.evictOldest()
	}
}

// store copies payload into chunk memory, or into a buffer of its own when it
// is large enough that it would waste most of a chunk, and returns the slot
// that finds it again.
func (l *Log) store(epoch, offset uint64, payload []byte) slot {
	n := len(payload)
	if n > l.opts.ChunkSize/4 {
		own := make([]byte, n)
		copy(own, payload)
		l.large = append(l.large, own)
		seq := l.largeBase + uint64(len(l.large)-1)
		return slot{epoch: epoch, ref: seq | largeRef, n: uint32(n)}
	}
	var cur *chunk
	if k := len(l.chunks); k > 0 {
		cur = l.chunks[k-1]
	}
	if cur == nil || cur.sealed || len(cur.buf)-cur.used < n {
		cur = l.newChunk(offset)
		l.chunks = append(l.chunks, cur)
	}
	copy(cur.buf[cur.used:], payload)
	s := slot{epoch: epoch, ref: cur.seq, off: uint32(cur.used), n: uint32(n)}
	cur.used += n
	cur.lastOffset = offset
	return s
}

// payload is the memory a slot's payload lives in.
func (l *Log) payload(s slot) []byte {
	if s.ref&largeRef != 0 {
		return l.large[s.ref&^largeRef-l.largeBase]
	}
	c := l.chunks[s.ref-l.chunks[0].seq]
	return c.buf[s.off : s.off+s.n : s.off+s.n]
}

func cost(s slot) int64 { return int64(s.n) + EntryOverhead }

func (l *Log) newChunk(offset uint64) *chunk {
	var c *chunk
	if k := len(l.free); k > 0 {
		c = l.free[k-1]
		l.free[k-1] = nil
		l.free = l.free[:k-1]
		c.used, c.sealed = 0, false
	} else {
		c = &chunk{buf: make([]byte, l.opts.ChunkSize)}
	}
	c.seq = l.chunkSeqEnd
	l.chunkSeqEnd++
	c.firstOffset, c.lastOffset = offset, offset
	return c
}

// maxFreeChunks bounds the recycled chunks kept for reuse, so that a burst
// followed by truncation does not pin memory forever.
const maxFreeChunks = 4

func (l *Log) recycle(c *chunk) {
	if len(l.free) < maxFreeChunks {
		l.free = append(l.free, c)
	}
}

func (l *Log) grow() {
	bigger := make([]slot, 2*len(l.slots))
	for i := 0; i < l.count; i++ {
		bigger[i] = l.at(i)
	}
	l.slots, l.head = bigger, 0
}

func (l *Log) at(i int) slot { return l.slots[(l.head+i)%len(l.slots)] }

func (l *Log) evictOldest() {
	s := l.slots[l.head]
	l.slots[l.head] = slot{}
	l.head = (l.head + 1) % len(l.slots)
	l.count--
	l.bytes -= cost(s)
	if s.ref&largeRef != 0 {
		// The oldest entry's large payload is the oldest one held.
		l.large[0] = nil
		l.large = l.large[1:]
		l.largeBase++
	}
	l.base = Position{Epoch: s.epoch, Offset: l.base.Offset + 1}
	for len(l.chunks) > 0 && l.chunks[0].lastOffset <= l.base.Offset {
		l.recycle(l.chunks[0])
		copy(l.chunks, l.chunks[1:])
		l.chunks[len(l.chunks)-1] = nil
		l.chunks = l.chunks[:len(l.chunks)-1]
	}
}

// Entry returns the entry at offset. Its payload aliases the log's memory.
func (l *Log) Entry(offset uint64) (Entry, error) {
	if err := l.checkRead(offset); err != nil {
		return Entry{}, err
	}
	if offset == l.Next() {
		return Entry{}, fmt.Errorf("%w: %d is the next offset", ErrFutureOffset, offset)
	}
	s := l.at(int(offset - l.First()))
	return Entry{Epoch: s.epoch, Offset: offset, Payload: l.payload(s)}, nil
}

// Read appends to dst the entries from offset from on, stopping before the
// payloads would exceed maxBytes, but always returning at least one entry
// when there is one, so a single large entry still makes progress. Reading at
// Next returns no entries and no error. Payloads alias the log's memory and
// stay valid until the next call that changes the log.
func (l *Log) Read(from uint64, maxBytes int, dst []Entry) ([]Entry, error) {
	if err := l.checkRead(from); err != nil {
		return dst, err
	}
	total, start := 0, len(dst)
	for off := from; off <= l.Last(); off++ {
		s := l.at(int(off - l.First()))
		if len(dst) > start && total+int(s.n) > maxBytes {
			break
		}
		total += int(s.n)
		dst = append(dst, Entry{Epoch: s.epoch, Offset: off, Payload: l.payload(s)})
	}
	return dst, nil
}

func (l *Log) checkRead(from uint64) error {
	if from < l.First() {
		return fmt.Errorf("%w: offset %d, oldest retained %d", ErrOutOfRetention, from, l.First())
	}
	if from > l.Next() {
		return fmt.Errorf("%w: offset %d, next %d", ErrFutureOffset, from, l.Next())
	}
	return nil
}

// TruncateAfter drops every entry after offset, as a follower does with a
// diverged tail. Truncating below the retained range is ErrOutOfRetention;
// truncating at or after Last does nothing.
func (l *Log) TruncateAfter(offset uint64) error {
	if offset < l.base.Offset {
		return fmt.Errorf("%w: truncate to %d, oldest retained %d", ErrOutOfRetention, offset, l.First())
	}
	if offset >= l.Last() {
		return nil
	}
	for l.Last() > offset {
		i := (l.head + l.count - 1) % len(l.slots)
		s := l.slots[i]
		l.bytes -= cost(s)
		if s.ref&largeRef != 0 {
			// The newest entry's large payload is the newest one held.
			l.large[len(l.large)-1] = nil
			l.large = l.large[:len(l.large)-1]
		}
		l.slots[i] = slot{}
		l.count--
	}
	for len(l.chunks) > 0 {
		c := l.chunks[len(l.chunks)-1]
		if c.firstOffset <= offset {
			// Entries after offset may have used the rest of it; start the
			// next append in a fresh chunk instead of tracking holes.
			c.sealed = true
			c.lastOffset = min(c.lastOffset, offset)
			break
		}
		l.recycle(c)
		l.chunks[len(l.chunks)-1] = nil
		l.chunks = l.chunks[:len(l.chunks)-1]
		l.chunkSeqEnd--
	}
	l.hist.TruncateAfter(offset)
	if l.hist.Len() == 0 && l.base.Offset > 0 {
		l.hist.reset(l.base.Epoch, l.base.Offset)
	}
	return nil
}

// Reset empties the log and places it after pos, as a follower does when a
// full resync leaves its store at pos. The next entry gets pos.Offset+1.
func (l *Log) Reset(pos Position) {
	for l.count > 0 {
		l.slots[(l.head+l.count-1)%len(l.slots)] = slot{}
		l.count--
	}
	for _, c := range l.chunks {
		l.recycle(c)
	}
	clear(l.chunks)
	l.chunks = l.chunks[:0]
	l.largeBase += uint64(len(l.large))
	clear(l.large)
	l.large = l.large[:0]
	l.head, l.bytes, l.base = 0, 0, pos
	l.hist.reset(pos.Epoch, pos.Offset)
}
