package proxy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes, as REPLICAR_BACKLOG_BYTES takes it.
//
// ParseByteSize accepts the units redis.conf accepts, case-insensitively,
// so that a value copied from repl-backlog-size means the same thing here:
// k, m, g are powers of 1000 and kb, mb, gb powers of 1024. The explicit
// binary forms kib, mib, gib and the t/tb/tib family are accepted too.
type ByteSize int64

// Byte size units.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
)

// byteUnits maps every accepted suffix to its multiplier. Redis reads "k" as
// 1000 and "kb" as 1024; we keep that rather than surprise people who size
// the backlog the way they size repl-backlog-size.
var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"k":   1e3,
	"kb":  1 << 10,
	"kib": 1 << 10,
	"m":   1e6,
	"mb":  1 << 20,
	"mib": 1 << 20,
	"g":   1e9,
	"gb":  1 << 30,
	"gib": 1 << 30,
	"t":   1e12,
	"tb":  1 << 40,
	"tib": 1 << 40,
}

// ParseByteSize parses a non-negative whole number of bytes with an optional
// unit: "65536", "64mb", "1GiB", "512k" (512000, as in redis.conf).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("parse size %q: no number", s)
	}
	mult, ok := byteUnits[strings.TrimSpace(t[i:])]
	if !ok {
		return 0, fmt.Errorf("parse size %q: unknown unit %q", s, strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("parse size %q: too large", s)
	}
	return ByteSize(n * mult), nil
}

// String formats the size with the largest binary unit that divides it
// exactly ("64mb", "1gb"), else in bytes, so that ParseByteSize reads it back
// to the same value.
func (b ByteSize) String() string {
	for _, u := range []struct {
		size ByteSize
		name string
	}{{TiB, "tb"}, {GiB, "gb"}, {MiB, "mb"}, {KiB, "kb"}} {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
