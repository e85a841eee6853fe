// Package wal persists a backlog to disk: an append-only log of
// backlog.Entry records in CRC-framed segment files, with an fsync policy
// (REPLICAR_FSYNC) and crash recovery that cuts a torn tail. It is the only
// part of the backlog that touches files; backlog.Log stays pure, and the
// proxy writes every entry to both.
//
// # Use
//
//	w, rec, err := wal.Open(ctx, wal.Options{Dir: dataDir, Sync: policy})
//	if err != nil { ... }
//	if !rec.Clean() { logger.Warn("wal repaired", "recovery", rec.String()) }
//	blog := backlog.NewLog(opts)
//	blog.Reset(w.Base()) // the position before the first record on disk
//	err = w.Replay(ctx, 0, blog.AppendEntry) // AppendEntry copies the payload
//	...
//	err = w.Append(entry)                   // same order as blog
//	err = w.DropBefore(blog.First())        // follow the in-memory retention
//	err = w.TruncateAfter(x)                // drop a diverged, uncommitted tail
//	err = w.Reset(snapshotPos)              // after a full resync
//	err = w.Close()
//
// A WAL is safe for concurrent use. Append hands the frames to the operating
// system before it returns, so a crash of the process alone loses nothing;
// what a crash of the machine may lose is set by SyncPolicy:
//
//   - SyncAlways: Append returns after fsync. Concurrent appenders share one
//     fsync.
//   - SyncEverySec: a goroutine fsyncs at most once per SyncInterval (1s), and
//     only if something was written. Appends never wait for it.
//   - SyncNo: no fsync until Close; the operating system flushes when it likes.
//
// Under every policy a segment is fsynced once when it is sealed, a new
// segment's header is fsynced before the segment appears, and the directory is
// fsynced after segments are created or removed. TruncateAfter and Reset are
// durable when they return. A failed fsync fails the WAL for good (ErrFailed):
// the kernel may have dropped the pages it could not write, so a retry that
// succeeds would prove nothing. Close and reopen it; recovery then reads what
// is really on disk.
//
// # Files
//
// Options.Dir holds the segments, named by the offset of the first record they
// hold (or will hold), in twenty zero-padded decimal digits:
//
//	00000000000000000001.wal
//	00000000000000350017.wal
//	LOCK
//
// A new WAL starts at offset 1. Segments are created as NAME.wal.tmp, fsynced
// and renamed into place, so a segment never exists without its whole header;
// a leftover .tmp file is an interrupted creation and recovery removes it.
// LOCK carries an flock(2) lock while the WAL is open (ErrLocked to a second
// opener). Other files are ignored.
//
// A segment is a 44-byte header followed by frames, back to back. Appends go
// to the newest (active) segment; before a frame would take it past
// Options.SegmentBytes (64 MiB by default), the WAL seals it and starts the
// next one, named by that frame's offset. A single frame larger than
// SegmentBytes gets a segment to itself.
//
// # Segment header
//
// All integers are little-endian.
//
//	offset  size  field
//	0       8     magic "RPLCWAL\n"
//	8       4     format version, 1 (FormatVersion)
//	12      4     flags, 0
//	16      8     generation
//	24      8     base offset: the first record's offset, equal to the file name
//	32      8     previous epoch: the epoch of the record at base-1
//	40      4     CRC-32C (Castagnoli) of bytes 0..39
//
// Magic and version stay at bytes 0..11 in every future version. A reader
// that finds the magic with a newer version refuses to open the directory
// (ErrVersion) rather than truncate what it cannot read.
//
// The previous epoch lets an empty segment carry the log's position: after
// Reset(pos) the WAL is one segment named pos.Offset+1 whose previous epoch
// is pos.Epoch. The generation goes up by one on every Reset and every
// segment of the live history carries it; recovery removes segments of older
// generations, which is what makes Reset atomic.
//
// # Frames
//
//	offset  size  field
//	0       4     record length n, 4 ≤ n ≤ backlog.MaxRecordHeader+backlog.MaxPayload
//	4       4     CRC-32C (Castagnoli) of the n record bytes
//	8       n     record, as backlog.AppendRecord encodes it
//
// The record carries its own epoch and offset, so a frame is self-describing;
// the record must fill the frame exactly.
//
// # Recovery
//
// Open reads every segment in offset order. The valid log is the longest
// prefix, from the first segment of the newest generation, in which each
// segment's header is intact, names the offset its file name does and
// continues the previous segment (base = last offset + 1, previous epoch =
// last epoch), and each frame is whole, matches its checksum, decodes, and
// holds the offset after the previous record with an epoch no lower than it.
// The first failure ends the log: the segment is cut after its last good frame
// (fsynced), and every later segment is removed, newest first. No record
// before the first damaged byte is lost; nothing after it is kept, because a
// record after a hole could not be replayed in order. If the first segment's
// header itself is unreadable, the WAL restarts empty at the position its
// name gives, with epoch 0.
//
// Recovery decides before it changes anything: a failed read or a newer format
// aborts Open with the directory untouched, and a crash during repairs is
// repaired the same way on the next Open. Everything recovery did is in the
// returned Recovery; the package never logs.
package wal
