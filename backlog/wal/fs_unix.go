//go:build !windows

package wal

import "os"

// syncDir makes the directory's entries durable: a created, renamed or
// removed segment is not durable until its directory has been fsynced.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}
