package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	dirPerm  = 0o750
	filePerm = 0o640
	lockName = "LOCK"
)

// segmentFile is what the WAL needs from the open, active segment. *os.File
// implements it; tests wrap it to inject failures.
type segmentFile interface {
	Write(b []byte) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
}

// createSegment makes a new segment holding only its header and returns it
// open for appending. The header is written and fsynced under a temporary
// name and then renamed into place, so a segment file never exists without a
// whole header, and an existing segment of the same name is replaced
// atomically.
//
// renamed reports that the file reached its final name: an error after that
// point leaves a segment the caller does not know about, and only a reopen
// (which recovers) can tell whether it survived.
func createSegment(dir string, h segHeader) (f *os.File, renamed bool, err error) {
	name := segmentName(h.base)
	final := filepath.Join(dir, name)
	tmp := final + tmpExt
	f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, filePerm)
	if err != nil {
		return nil, false, fmt.Errorf("create segment %s: %w", name, err)
	}
	abandon := func(err error) (*os.File, bool, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return nil, false, fmt.Errorf("create segment %s: %w", name, err)
	}
	var b [headerSize]byte
	h.put(b[:])
	if _, err := f.Write(b[:]); err != nil {
		return abandon(err)
	}
	if err := f.Sync(); err != nil {
		return abandon(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return abandon(err)
	}
	if err := syncDir(dir); err != nil {
		_ = f.Close()
		return nil, true, fmt.Errorf("create segment %s: %w", name, err)
	}
	return f, true, nil
}

// openAppend opens an existing segment for appending.
func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, filePerm)
}

// removeFile removes path; a file that is already gone is what was wanted.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
