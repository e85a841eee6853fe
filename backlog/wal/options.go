package wal

import (
	"errors"
	"fmt"
	"time"
)

// SyncPolicy says when appended frames are forced to stable storage. It is
// REPLICAR_FSYNC, with the meanings of Redis's appendfsync.
type SyncPolicy uint8

const (
	// SyncEverySec fsyncs from a background goroutine at most once per
	// Options.SyncInterval (one second by default), and only when something
	// was written since the last fsync. A crash of the machine loses at most
	// about that interval of acknowledged appends; a crash of the process
	// alone loses nothing. It is the zero value, as in Redis.
	SyncEverySec SyncPolicy = iota

	// SyncAlways fsyncs before Append returns. Concurrent appenders share one
	// fsync (group commit).
	SyncAlways

	// SyncNo never fsyncs while running and leaves flushing to the operating
	// system; Close still syncs. Segments are fsynced once when they are
	// sealed, which costs one fsync per SegmentBytes written.
	SyncNo
)

// ParseSyncPolicy parses the values of REPLICAR_FSYNC: exactly "always",
// "everysec" or "no".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "everysec":
		return SyncEverySec, nil
	case "no":
		return SyncNo, nil
	}
	return 0, fmt.Errorf("wal: unknown sync policy %q (want always, everysec or no)", s)
}

// String returns the policy's REPLICAR_FSYNC spelling.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncEverySec:
		return "everysec"
	case SyncNo:
		return "no"
	}
	return fmt.Sprintf("SyncPolicy(%d)", uint8(p))
}

// MarshalText implements encoding.TextMarshaler so that configuration
// structs can carry a SyncPolicy directly.
func (p SyncPolicy) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("wal: invalid sync policy %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseSyncPolicy, so
// that environment and flag parsers accept the REPLICAR_FSYNC spellings.
func (p *SyncPolicy) UnmarshalText(b []byte) error {
	v, err := ParseSyncPolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

func (p SyncPolicy) valid() bool { return p <= SyncNo }

const (
	// DefaultSegmentBytes is the segment size used when Options.SegmentBytes
	// is zero: large enough that rolling (and its fsyncs) is rare, small
	// enough that retention frees disk in useful steps.
	DefaultSegmentBytes = 64 << 20

	// MinSegmentBytes is the smallest Options.SegmentBytes accepted. Tiny
	// segments are only useful in tests, but they must still hold a header.
	MinSegmentBytes = 64

	// DefaultSyncInterval is SyncEverySec's interval when
	// Options.SyncInterval is zero.
	DefaultSyncInterval = time.Second
)

// Options configures Open. The zero value of every field but Dir is a usable
// default.
type Options struct {
	// Dir holds the segment files and nothing else of importance; it is
	// created if missing. Files that do not look like segments are left
	// alone.
	Dir string

	// SegmentBytes is the size a segment may reach before appends move on to
	// a new one. A single frame larger than this gets a segment to itself.
	// Zero means DefaultSegmentBytes.
	SegmentBytes int64

	// Sync is the fsync policy (REPLICAR_FSYNC).
	Sync SyncPolicy

	// SyncInterval is how often SyncEverySec syncs. Zero means
	// DefaultSyncInterval; tests shorten it instead of sleeping a second.
	SyncInterval time.Duration
}

// Validate reports the first field that is out of range, naming it and the
// values allowed.
func (o Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("wal: Options.Dir is required")
	case o.SegmentBytes != 0 && o.SegmentBytes < MinSegmentBytes:
		return fmt.Errorf("wal: Options.SegmentBytes %d is below the minimum %d", o.SegmentBytes, MinSegmentBytes)
	case !o.Sync.valid():
		return fmt.Errorf("wal: Options.Sync %d is not one of always, everysec, no", uint8(o.Sync))
	case o.SyncInterval < 0:
		return fmt.Errorf("wal: Options.SyncInterval %v is negative", o.SyncInterval)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	return o
}
