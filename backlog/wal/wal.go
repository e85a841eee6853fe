package wal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/replicar/replicar/backlog"
)

const (
	// flushBytes bounds how much of one Append is encoded before it is
	// written, so a large batch does not grow the buffer without limit.
	flushBytes = 1 << 20
	// keepBufBytes is the largest encode buffer kept between appends; a rare
	// huge entry should not pin its size in memory for good.
	keepBufBytes = 4 << 20
)

// WAL is an append-only, segmented, checksummed log of backlog entries on
// disk. It is safe for concurrent use.
type WAL struct {
	opts Options
	lock *os.File // holds the directory's flock while open

	mu   sync.Mutex
	cond sync.Cond // on mu; broadcast when an fsync outside mu ends

	segs      []segment   // in offset order; the last is active
	f         segmentFile // the active segment, opened for appending
	gen       uint64      // generation of the live history (see segHeader)
	last      uint64      // offset of the newest record, or the Reset position
	lastEpoch uint64      // epoch at last
	buf       []byte      // reused encode buffer

	// written counts bytes handed to the operating system since Open and
	// synced how many of them are known durable. Comparing them is how
	// appenders share an fsync and how SyncEverySec knows there is work.
	written uint64
	synced  uint64
	syncing bool   // an fsync is running outside mu
	fsyncs  uint64 // data fsyncs done, for tests

	err    error // sticky; wraps ErrFailed
	closed bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open opens the WAL in opts.Dir, creating the directory if it is missing,
// and recovers it: every segment is read and checked, a torn or corrupt tail
// is cut off, and the files after it are removed. Recovery reports what was
// kept and what was repaired; use Replay to read the kept records.
//
// ctx bounds recovery only. Nothing is changed on disk unless the whole
// directory could be read, so an Open cancelled or failed by an I/O error
// can simply be retried.
func Open(ctx context.Context, opts Options) (*WAL, Recovery, error) {
	if err := opts.Validate(); err != nil {
		return nil, Recovery{}, err
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(opts.Dir, dirPerm); err != nil {
		return nil, Recovery{}, fmt.Errorf("wal: create dir: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, Recovery{}, fmt.Errorf("wal: %w", err)
	}
	st, rec, err := recoverDir(ctx, opts.Dir)
	if err != nil {
		_ = lock.Close()
		return nil, rec, fmt.Errorf("wal: recover %s: %w", opts.Dir, err)
	}
	active := st.segs[len(st.segs)-1]
	f, err := openAppend(filepath.Join(opts.Dir, segmentName(active.base)))
	if err != nil {
		_ = lock.Close()
		return nil, rec, fmt.Errorf("wal: open active segment: %w", err)
	}
	w := &WAL{
		opts:      opts,
		lock:      lock,
		segs:      st.segs,
		f:         f,
		gen:       st.gen,
		last:      st.last,
		lastEpoch: st.lastEpoch,
	}
	w.cond.L = &w.mu
	if opts.Sync == SyncEverySec {
		ctx, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		w.wg.Add(1)
		go w.syncLoop(ctx, opts.SyncInterval)
	}
	return w, rec, nil
}

// Append writes entries at the end of the log, rolling to a new segment when
// the active one is full. The first entry's offset must be LastOffset()+1
// and the rest must follow one by one (else an error wrapping
// backlog.ErrOffsetGap); epochs must not go down (backlog.ErrEpochRegression);
// payloads must fit backlog.MaxPayload (backlog.ErrEntryTooLarge). A refused
// batch writes nothing.
//
// When Append returns nil the entries have been handed to the operating
// system, so a crash of the process loses none of them; whether a crash of
// the machine can is the sync policy's business (with SyncAlways they have
// been fsynced). When a write fails, Append takes the whole batch back off
// the disk before returning the error; if even that fails, the WAL is failed
// (ErrFailed).
func (w *WAL) Append(entries ...backlog.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	if err := w.checkLocked(entries); err != nil {
		return err
	}
	startSeg, startSize := len(w.segs)-1, w.segs[len(w.segs)-1].size
	startLast, startEpoch := w.last, w.lastEpoch
	if err := w.writeLocked(entries); err != nil {
		if rerr := w.truncateLocked(startSeg, startSize, startLast, startEpoch); rerr != nil {
			return w.failLocked("append", fmt.Errorf("%w; taking the batch back: %w", err, rerr))
		}
		return fmt.Errorf("wal: append: %w", err)
	}
	if w.opts.Sync == SyncAlways {
		return w.syncToLocked(w.written)
	}
	return nil
}

// checkLocked refuses a batch that would break the log's order before any of
// it is written.
func (w *WAL) checkLocked(entries []backlog.Entry) error {
	last, epoch := w.last, w.lastEpoch
	for i := range entries {
		e := &entries[i]
		if last == math.MaxUint64 || e.Offset != last+1 {
			return fmt.Errorf("wal: append offset %d after %d: %w", e.Offset, last, backlog.ErrOffsetGap)
		}
		if e.Epoch < epoch {
			return fmt.Errorf("wal: append offset %d with epoch %d after %d: %w", e.Offset, e.Epoch, epoch, backlog.ErrEpochRegression)
		}
		if len(e.Payload) > backlog.MaxPayload {
			return fmt.Errorf("wal: append offset %d with %d bytes: %w", e.Offset, len(e.Payload), backlog.ErrEntryTooLarge)
		}
		last, epoch = e.Offset, e.Epoch
	}
	return nil
}

// writeLocked encodes and writes entries, rolling segments as it goes. On
// error the caller takes the batch back.
func (w *WAL) writeLocked(entries []backlog.Entry) error {
	buf := w.buf[:0]
	for i := range entries {
		e := entries[i]
		active := &w.segs[len(w.segs)-1]
		size := frameSize(e)
		if used := active.size + int64(len(buf)); used > headerSize && used+size > w.opts.SegmentBytes {
			var err error
			if buf, err = w.flushLocked(buf); err != nil {
				return err
			}
			if err := w.rollLocked(e.Offset); err != nil {
				return err
			}
		}
		buf = appendFrame(buf, e)
		w.last, w.lastEpoch = e.Offset, e.Epoch
		if len(buf) >= flushBytes {
			var err error
			if buf, err = w.flushLocked(buf); err != nil {
				return err
			}
		}
	}
	buf, err := w.flushLocked(buf)
	if cap(buf) <= keepBufBytes {
		w.buf = buf
	} else {
		w.buf = nil
	}
	return err
}

// flushLocked writes buf to the active segment and returns it emptied. One
// write per Append keeps a torn frame confined to the tail.
func (w *WAL) flushLocked(buf []byte) ([]byte, error) {
	if len(buf) == 0 {
		return buf, nil
	}
	n, err := w.f.Write(buf)
	w.segs[len(w.segs)-1].size += int64(n)
	w.written += uint64(n)
	if err != nil {
		return buf[:0], fmt.Errorf("write %s: %w", segmentName(w.segs[len(w.segs)-1].base), err)
	}
	return buf[:0], nil
}

// rollLocked seals the active segment and starts a new one at base. Sealed
// segments are fsynced whatever the policy, once each, so that damage after
// a machine crash can only be in the newest segment and Close only has the
// active one to sync.
func (w *WAL) rollLocked(base uint64) error {
	w.waitIdleLocked()
	if err := w.f.Sync(); err != nil {
		// A failed fsync cannot be retried into a durable state.
		return w.failLocked("seal segment", err)
	}
	w.fsyncs++
	f, renamed, err := createSegment(w.opts.Dir, segHeader{gen: w.gen, base: base, prevEpoch: w.lastEpoch})
	if err != nil {
		if renamed {
			// A segment the WAL does not track may exist; a later roll
			// could leave it out of sequence.
			return w.failLocked("roll", err)
		}
		return err
	}
	if err := w.f.Close(); err != nil {
		_ = f.Close()
		return w.failLocked("roll", fmt.Errorf("close sealed segment: %w", err))
	}
	w.f = f
	w.segs = append(w.segs, segment{base: base, prevEpoch: w.lastEpoch, size: headerSize})
	w.synced = w.written
	return nil
}

// truncateLocked makes segs[idx] the active segment, cut to size bytes, with
// last and epoch as the log's end, and removes the segments after it. The
// cut is fsynced before anything is removed, so after a crash part-way the
// later segments no longer follow on and recovery removes them.
//
// Any failure leaves files and memory possibly out of step, so it fails the
// WAL.
func (w *WAL) truncateLocked(idx int, size int64, last, epoch uint64) error {
	w.waitIdleLocked()
	if w.err != nil {
		return w.err
	}
	activeIdx := len(w.segs) - 1
	f := w.f
	if idx != activeIdx {
		path := filepath.Join(w.opts.Dir, segmentName(w.segs[idx].base))
		of, err := openAppend(path)
		if err != nil {
			return w.failLocked("truncate", err)
		}
		f = of
	}
	if err := f.Truncate(size); err != nil {
		return w.failLocked("truncate", err)
	}
	if err := f.Sync(); err != nil {
		return w.failLocked("truncate", err)
	}
	w.fsyncs++
	if idx != activeIdx {
		_ = w.f.Close() // everything in it is being removed
		w.f = f
		for j := activeIdx; j > idx; j-- {
			if err := removeFile(filepath.Join(w.opts.Dir, segmentName(w.segs[j].base))); err != nil {
				w.segs = w.segs[:j+1]
				return w.failLocked("truncate", err)
			}
		}
		if err := syncDir(w.opts.Dir); err != nil {
			w.segs = w.segs[:idx+1]
			return w.failLocked("truncate", fmt.Errorf("sync dir: %w", err))
		}
	}
	w.segs = w.segs[:idx+1]
	w.segs[idx].size = size
	w.last, w.lastEpoch = last, epoch
	w.synced = w.written
	return nil
}

// Sync fsyncs everything appended so far, whatever the policy.
func (w *WAL) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	return w.syncToLocked(w.written)
}

// syncToLocked returns once the first target bytes written are durable. The
// fsync runs without mu so that appends go on meanwhile, and whoever finds
// one running waits for it instead of starting another: concurrent
// SyncAlways appenders share fsyncs.
func (w *WAL) syncToLocked(target uint64) error {
	for w.synced < target {
		switch {
		case w.err != nil:
			return w.err
		case w.syncing:
			w.cond.Wait()
			continue
		case w.f == nil:
			return ErrClosed
		}
		f, upto := w.f, w.written
		w.syncing = true
		w.mu.Unlock()
		err := f.Sync()
		w.mu.Lock()
		w.syncing = false
		w.cond.Broadcast()
		if err != nil {
			return w.failLocked("sync", err)
		}
		w.fsyncs++
		w.synced = max(w.synced, upto)
	}
	return nil
}

// waitIdleLocked waits until no fsync runs outside mu, before the active
// file is closed or cut.
func (w *WAL) waitIdleLocked() {
	for w.syncing {
		w.cond.Wait()
	}
}

// syncLoop is SyncEverySec's background fsync.
func (w *WAL) syncLoop(ctx context.Context, every time.Duration) {
	defer w.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		if !w.closed && w.err == nil && w.synced < w.written {
			// A failure is sticky; the next Append or Sync returns it.
			_ = w.syncToLocked(w.written)
		}
		w.mu.Unlock()
	}
}

// DropBefore removes the oldest segments whose records all have offsets
// below offset. It is how disk usage follows the in-memory log's retention:
// records at or after offset are always kept, and so may some before it,
// since only whole segments go. The active segment is never removed.
func (w *WAL) DropBefore(offset uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	// Oldest first, with the directory synced after each removal: if
	// removals reached the disk out of order, a crash could leave a hole
	// that recovery would have to treat as the end of the log.
	for len(w.segs) > 1 && w.segs[1].base <= offset {
		name := segmentName(w.segs[0].base)
		if err := removeFile(filepath.Join(w.opts.Dir, name)); err != nil {
			return fmt.Errorf("wal: drop %s: %w", name, err)
		}
		w.segs = w.segs[1:]
		if err := syncDir(w.opts.Dir); err != nil {
			return fmt.Errorf("wal: drop %s: sync dir: %w", name, err)
		}
	}
	return nil
}

// TruncateAfter removes every record after offset, such as a diverged tail
// that was never committed; the next append is offset+1. offset may be the
// one before the first record held (FirstOffset()-1), which empties the WAL
// but keeps its position. As with backlog.Log, truncating at or after
// LastOffset does nothing, and truncating below the records held returns an
// error wrapping backlog.ErrOutOfRetention. The cut is fsynced before
// TruncateAfter returns, whatever the policy, so the removed records cannot
// come back after a crash.
func (w *WAL) TruncateAfter(offset uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	switch {
	case offset >= w.last:
		return nil
	case offset < w.segs[0].base-1:
		return fmt.Errorf("wal: truncate after %d, first held is %d: %w", offset, w.segs[0].base, backlog.ErrOutOfRetention)
	}
	// The segment that will end with offset: the last one starting at or
	// before offset+1.
	idx := sort.Search(len(w.segs), func(i int) bool { return w.segs[i].base-1 > offset }) - 1
	size, epoch, err := w.findEndLocked(idx, offset)
	if err != nil {
		return fmt.Errorf("wal: truncate after %d: %w", offset, err)
	}
	if err := w.truncateLocked(idx, size, offset, epoch); err != nil {
		return fmt.Errorf("wal: truncate after %d: %w", offset, err)
	}
	return nil
}

// findEndLocked returns the byte size segs[idx] has when it ends with the
// record at offset, and that record's epoch.
func (w *WAL) findEndLocked(idx int, offset uint64) (int64, uint64, error) {
	s := w.segs[idx]
	if offset == s.base-1 {
		return headerSize, s.prevEpoch, nil
	}
	var fr frameReader
	f, err := w.openSegmentLocked(idx, bufio.NewReaderSize(nil, scanBufferSize), &fr)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	for {
		e, err := fr.next()
		if err == io.EOF {
			return 0, 0, fmt.Errorf("%w: %s ends before offset %d", ErrCorrupt, segmentName(s.base), offset)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", segmentName(s.base), err)
		}
		if e.Offset == offset {
			return fr.pos, e.Epoch, nil
		}
	}
}

// openSegmentLocked opens segs[idx] for reading, checks its header against
// what the WAL knows and sets fr up over its frames.
func (w *WAL) openSegmentLocked(idx int, br *bufio.Reader, fr *frameReader) (*os.File, error) {
	s := w.segs[idx]
	name := segmentName(s.base)
	f, err := os.Open(filepath.Join(w.opts.Dir, name))
	if err != nil {
		return nil, err
	}
	var b [headerSize]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	h, err := parseHeader(b[:])
	if err == nil && (h.base != s.base || h.gen != w.gen) {
		err = fmt.Errorf("%w: header changed since open", ErrCorrupt)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	br.Reset(f)
	fr.reset(br, headerSize, s.size)
	return f, nil
}

// Reset discards every record and restarts the log after a snapshot
// position, as backlog.Log.Reset does: LastPosition becomes pos and the next
// append is pos.Offset+1. It is atomic across crashes: the new segment carries a newer
// generation, and recovery discards older ones, so a crash part-way leaves
// either the old log or the new one.
//
// If removing the old files fails after the new segment is in place, Reset
// returns the error but the WAL is already at the new position (the next
// Open removes the leftovers); calling Reset again is safe.
func (w *WAL) Reset(pos backlog.Position) error {
	epoch, offset := pos.Epoch, pos.Offset
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	if offset == math.MaxUint64 {
		return fmt.Errorf("wal: reset to offset %d: no next offset: %w", offset, backlog.ErrOffsetGap)
	}
	w.waitIdleLocked()
	base := offset + 1
	f, renamed, err := createSegment(w.opts.Dir, segHeader{gen: w.gen + 1, base: base, prevEpoch: epoch})
	if err != nil {
		if renamed {
			return w.failLocked("reset", err)
		}
		return fmt.Errorf("wal: reset: %w", err)
	}
	old := w.segs
	_ = w.f.Close() // its records are being discarded
	w.f = f
	w.gen++
	w.segs = []segment{{base: base, prevEpoch: epoch, size: headerSize}}
	w.last, w.lastEpoch = offset, epoch
	w.synced = w.written

	var errs []error
	for _, s := range old {
		if s.base == base {
			continue // replaced by the rename
		}
		if err := removeFile(filepath.Join(w.opts.Dir, segmentName(s.base))); err != nil {
			errs = append(errs, err)
		}
	}
	if err := syncDir(w.opts.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wal: reset: remove old segments: %w", err)
	}
	return nil
}

// Replay calls fn, in offset order, for every record held whose offset is at
// least from; Replay(ctx, 0, fn) replays everything, which is how a node
// rebuilds its in-memory backlog after Open. Records are checked again as
// they are read, so damage since Open is reported (wrapping ErrCorrupt) and
// never handed to fn.
//
// The entry's payload is only valid during the call: copy it to keep it. fn
// runs with the WAL locked and must not call the WAL's methods. Replay
// returns fn's error unchanged.
func (w *WAL) Replay(ctx context.Context, from uint64, fn func(backlog.Entry) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	// Start in the last segment beginning at or before from.
	start := max(sort.Search(len(w.segs), func(i int) bool { return w.segs[i].base > from })-1, 0)
	br := bufio.NewReaderSize(nil, scanBufferSize)
	var fr frameReader
	last, epoch := w.segs[start].base-1, w.segs[start].prevEpoch
	n := 0
	for i := start; i < len(w.segs); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := w.openSegmentLocked(i, br, &fr)
		if err != nil {
			return fmt.Errorf("wal: replay: %w", err)
		}
		err = replaySegment(ctx, segmentName(w.segs[i].base), &fr, &last, &epoch, &n, from, fn)
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// replaySegment hands fn the records of one segment, checking that they
// continue the sequence (*last, *epoch) and counting them in *n.
func replaySegment(ctx context.Context, name string, fr *frameReader, last, epoch *uint64, n *int, from uint64, fn func(backlog.Entry) error) error {
	for {
		start := fr.pos
		e, err := fr.next()
		if err == io.EOF {
			return nil
		}
		if err == nil {
			err = follows(*last, *epoch, e, start)
		}
		if err != nil {
			return fmt.Errorf("wal: replay %s: %w", name, err)
		}
		*last, *epoch = e.Offset, e.Epoch
		if *n++; *n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if e.Offset < from {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// FirstOffset returns the offset of the oldest record held. When the WAL
// holds none it is LastOffset()+1, the offset the next append gets, as with
// backlog.Log.First.
func (w *WAL) FirstOffset() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.segs[0].base
}

// Base returns the position just before the first record held: the epoch
// and offset of the last record dropped, or the Reset position. It is where
// an in-memory backlog.Log must be Reset before the WAL is replayed into it.
func (w *WAL) Base() backlog.Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return backlog.Position{Epoch: w.segs[0].prevEpoch, Offset: w.segs[0].base - 1}
}

// LastOffset returns the offset of the newest record or, when the WAL holds
// none, the position it was Reset to (0 for a new WAL). The next append is
// LastOffset()+1.
func (w *WAL) LastOffset() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// LastEpoch returns the epoch of the record at LastOffset, or the Reset
// epoch when the WAL holds no record.
func (w *WAL) LastEpoch() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastEpoch
}

// LastPosition returns LastEpoch and LastOffset together, as
// backlog.Log.LastPosition does.
func (w *WAL) LastPosition() backlog.Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return backlog.Position{Epoch: w.lastEpoch, Offset: w.last}
}

// Size returns the bytes the segment files take, headers included.
func (w *WAL) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, s := range w.segs {
		n += s.size
	}
	return n
}

// Segments returns the number of segment files.
func (w *WAL) Segments() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.segs)
}

// Close stops the background fsync, fsyncs what is not yet durable (under
// every policy) and releases the directory. Closing a closed WAL returns
// nil. A failed WAL closes its files and returns its failure.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
		w.wg.Wait()
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.waitIdleLocked()
	err := w.err
	if err == nil && w.synced < w.written {
		if serr := w.f.Sync(); serr != nil {
			err = w.failLocked("sync", serr)
		} else {
			w.fsyncs++
			w.synced = w.written
		}
	}
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("wal: close: %w", cerr)
	}
	w.f = nil
	if cerr := w.lock.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("wal: unlock: %w", cerr)
	}
	w.cond.Broadcast()
	return err
}

// usableLocked returns why the WAL cannot take a change, if it cannot.
func (w *WAL) usableLocked() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// failLocked makes err the WAL's sticky failure (the first one wins) and
// returns it.
func (w *WAL) failLocked(op string, err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("%w: %s: %w", ErrFailed, op, err)
	}
	return w.err
}
