package wal

import "errors"

// Sentinel errors. Callers compare with errors.Is; the package wraps them with
// the file, byte position or offsets involved.
var (
	// ErrClosed means the WAL has been closed.
	ErrClosed = errors.New("wal: closed")

	// ErrLocked means another WAL, in this process or another, has the
	// directory open. Two writers on one directory would interleave frames.
	ErrLocked = errors.New("wal: directory is locked by another writer")

	// ErrFailed means an earlier write, fsync or repair failed in a way that
	// leaves the files' state unknown (after a failed fsync the kernel may
	// already have dropped the dirty pages, so retrying it proves nothing).
	// The WAL refuses further changes; Close it and Open it again, which
	// recovers from what is really on disk.
	ErrFailed = errors.New("wal: failed")

	// ErrCorrupt means bytes on disk cannot be a valid segment header or
	// frame: a checksum mismatch, an impossible length, an undecodable record,
	// a record out of sequence, or a segment whose name disagrees with its
	// contents.
	ErrCorrupt = errors.New("wal: corrupt data")

	// ErrTorn means a file ends part-way through a segment header or a frame,
	// which is what a crash during a write leaves behind.
	ErrTorn = errors.New("wal: torn write")

	// ErrSuperseded means a segment belongs to a history that a later Reset
	// replaced; recovery removes it.
	ErrSuperseded = errors.New("wal: segment superseded by a reset")

	// ErrVersion means a segment was written in a format version newer than
	// this code knows. Open refuses the directory rather than truncate data
	// it cannot read.
	ErrVersion = errors.New("wal: unsupported segment format version")
)
