package resp

import "math"

// How a command's key specifications are used, decided once per command.
const (
	specsNone       uint8 = iota // no key specs: the legacy range, or a proc
	specsUsable                  // at least one spec that is not not_key
	specsNotKeyOnly              // only not_key specs (SPUBLISH …): no keys
	specsVariable                // usable, but one has variable_flags: Redis prefers its proc
)

// getKeysFunc is one of Redis's getkeys procs: it appends the key positions
// of args to dst.
type getKeysFunc func(args [][]byte, dst []int) []int

// keysProcs are Redis's getkeys procs (db.c), by command name. Keys uses
// them where Redis does: when a command has no key specs (Redis 6 and
// earlier, whose movablekeys commands depend on them), and when the specs
// cannot place the keys (SORT's STORE and MIGRATE's KEYS are declared
// "unknown" or "incomplete"; a numkeys that string2ll rejects). The table
// is built once and never changed.
var keysProcs = map[string]getKeysFunc{
	"eval":        genericKeys(0, 2, 3, 1),
	"evalsha":     genericKeys(0, 2, 3, 1),
	"eval_ro":     genericKeys(0, 2, 3, 1),
	"evalsha_ro":  genericKeys(0, 2, 3, 1),
	"fcall":       genericKeys(0, 2, 3, 1),
	"fcall_ro":    genericKeys(0, 2, 3, 1),
	"zunionstore": genericKeys(1, 2, 3, 1),
	"zinterstore": genericKeys(1, 2, 3, 1),
	"zdiffstore":  genericKeys(1, 2, 3, 1),
	"zunion":      genericKeys(0, 1, 2, 1),
	"zinter":      genericKeys(0, 1, 2, 1),
	"zdiff":       genericKeys(0, 1, 2, 1),
	"zintercard":  genericKeys(0, 1, 2, 1),
	"sintercard":  genericKeys(0, 1, 2, 1),
	"lmpop":       genericKeys(0, 1, 2, 1),
	"zmpop":       genericKeys(0, 1, 2, 1),
	"blmpop":      genericKeys(0, 2, 3, 1),
	"bzmpop":      genericKeys(0, 2, 3, 1),
	"sort":        sortKeys,
	"sort_ro":     sortROKeys,
	"migrate":     migrateKeys,
	"georadius":   georadiusKeys,
	// GEORADIUSBYMEMBER has one argument less before its options, but
	// Redis uses the same proc, which starts looking at index 5 for both.
	"georadiusbymember": georadiusKeys,
	"xread":             xreadKeys,
	"xreadgroup":        xreadKeys,
	// Redis 6's MEMORY is not a container; its proc finds MEMORY USAGE's key.
	"memory": memoryKeys,
	// Their specs say variable_flags, so Redis asks the proc, which only
	// works out the flags: the key is always at 1.
	"set":      firstArgKey,
	"bitfield": firstArgKey,
}

// Keys appends to dst the indexes into args of the key arguments and
// returns the extended slice. args is the whole command, its name at index
// 0, so every index is at least 1 and below len(args).
//
// It follows Redis 7's getKeysFromCommandWithSpecs: the key specs first
// (Redis's getkeys proc instead when a spec has variable_flags, as in
// Redis); when one spec cannot place its keys (an "unknown" type, an
// "incomplete" spec, a count out of range), Redis's getkeys proc for the
// command. Where Redis has no proc either, it gives up on every key; Keys
// keeps what the other specs found instead, so that PFMERGE dest with no
// sources, which does write dest, still names it. Without key specs (Redis
// 6), the proc, else the legacy first/last/step range. Like Redis it
// mostly returns no keys for arguments the command would reject anyway,
// and it never panics: any args are safe, whatever the arity.
func (c *CommandInfo) Keys(args [][]byte, dst []int) []int {
	if c == nil || len(args) == 0 {
		return dst
	}
	kind, proc := c.specKind, c.keysProc
	if !c.prepared {
		kind, proc = c.specKindOf(), procFor(c)
	}
	if kind == specsVariable {
		if proc != nil {
			return proc(args, dst)
		}
		kind = specsUsable
	}
	switch kind {
	case specsUsable:
		base := len(dst)
		if out, ok := c.specKeys(args, dst, false); ok {
			return out
		}
		if proc != nil {
			return proc(args, dst[:base])
		}
		out, _ := c.specKeys(args, dst[:base], true)
		return out
	case specsNotKeyOnly:
		if proc != nil {
			return proc(args, dst)
		}
		return dst
	}
	if proc != nil {
		return proc(args, dst)
	}
	return c.legacyKeys(args, dst)
}

// prepareKeys decides once how Keys treats the command.
func (c *CommandInfo) prepareKeys() {
	c.specKind = c.specKindOf()
	c.keysProc = procFor(c)
}

func (c *CommandInfo) specKindOf() uint8 {
	if len(c.KeySpecs) == 0 {
		return specsNone
	}
	kind := specsNotKeyOnly
	for i := range c.KeySpecs {
		if c.KeySpecs[i].Flags&KeyNotKey == 0 {
			kind = specsUsable
		}
	}
	for i := range c.KeySpecs {
		if kind == specsUsable && c.KeySpecs[i].Flags&KeyVariableFlags != 0 {
			return specsVariable
		}
	}
	return kind
}

// procFor returns Redis's getkeys proc for a top-level command. Subcommands
// have none in Redis.
func procFor(c *CommandInfo) getKeysFunc {
	if c.Parent != nil || c.Local {
		return nil
	}
	return keysProcs[c.Name]
}

// specKeys is Redis's getKeysUsingKeySpecs (db.c). With partial false it
// reports false as soon as one spec cannot place its keys, and the caller
// falls back; with partial true it keeps what the other specs found.
func (c *CommandInfo) specKeys(args [][]byte, dst []int, partial bool) ([]int, bool) {
	base := len(dst)
	argc := len(args)
	for i := range c.KeySpecs {
		s := &c.KeySpecs[i]
		if s.Flags&KeyNotKey != 0 {
			continue
		}
		first, last, step, found, ok := s.bounds(args)
		if ok {
			if !found {
				continue // keyword absent: the spec has nothing to add
			}
			// bounds guarantees 1 <= first <= last < argc and step >= 1.
			for k := first; k <= last && k < argc; k += step {
				dst = append(dst, k)
			}
			if s.Flags&KeyIncomplete == 0 {
				continue
			}
			// An incomplete spec's keys are kept only in partial mode,
			// where Redis also keeps them.
		}
		if !partial {
			return dst[:base], false
		}
	}
	return dst, true
}

// bounds computes where one spec's keys lie in args. found is false when a
// keyword spec's keyword is absent; ok is false when the spec cannot place
// keys (Redis's invalid_spec): an unknown type, a bad count, or a range that
// falls outside args. Besides Redis's checks it rejects what Redis's own
// table never holds (a step below 1, a negative count index), so that a
// hostile table cannot make Keys loop forever or index out of range.
func (s *KeySpec) bounds(args [][]byte) (first, last, step int, found, ok bool) {
	argc := len(args)
	switch s.BeginSearch {
	case BeginSearchIndex:
		first = s.Index
	case BeginSearchKeyword:
		first = findKeyword(args, s.Keyword, s.StartFrom)
		if first == 0 {
			return 0, 0, 0, false, true
		}
	default:
		return 0, 0, 0, false, false
	}
	switch s.FindKeys {
	case FindKeysRange:
		step = s.KeyStep
		switch {
		case s.LastKey >= 0:
			last = first + s.LastKey
		case s.Limit == 0:
			last = argc + s.LastKey
		case s.Limit > 0 && s.LastKey == -1:
			// Only 1/Limit of what follows are keys: XREAD's STREAMS
			// k1 k2 id1 id2 has Limit 2.
			last = first + (argc-first)/s.Limit + s.LastKey
		default:
			return 0, 0, 0, false, false
		}
	case FindKeysKeyNum:
		step = s.KeyStep
		if s.KeyNumIdx < 0 || first < 0 || first+s.KeyNumIdx >= argc {
			return 0, 0, 0, false, false
		}
		n, valid := string2ll(args[first+s.KeyNumIdx])
		if !valid || n < 0 {
			return 0, 0, 0, false, false
		}
		first += s.FirstKey
		// Redis casts the count to a C int, so 4294967297 counts as 1;
		// the cast also keeps this sum from overflowing.
		last = first + int(int32(n)) - 1
	default:
		return 0, 0, 0, false, false
	}
	if step < 1 || first < 1 || last >= argc || last < first {
		return 0, 0, 0, false, false
	}
	return first, last, step, true, true
}

// findKeyword returns the index just after the first argument equal to kw
// (as C's strcasecmp compares them), searching from startFrom forwards, or
// from argc+startFrom backwards when startFrom is not positive, or 0 when
// it is absent. As in Redis the forward search stops before the last
// argument, which could not be followed by a key anyway, and index 0, the
// command name, is never examined.
func findKeyword(args [][]byte, kw string, startFrom int) int {
	argc := len(args)
	if startFrom > 0 {
		for i := startFrom; i < argc-1; i++ {
			if strcaseEqual(args[i], kw) {
				return i + 1
			}
		}
		return 0
	}
	start := argc + startFrom
	if start >= argc {
		return 0 // startFrom 0 begins past the end, where Redis stops at once
	}
	for i := start; i >= 1; i-- {
		if strcaseEqual(args[i], kw) {
			return i + 1
		}
	}
	return 0
}

// legacyKeys is Redis's key range from the command table (first key, last
// key, step), used without key specs. Like Redis, when the range runs past
// the arguments it returns no keys at all.
func (c *CommandInfo) legacyKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	first, last, step := c.FirstKey, c.LastKey, c.Step
	if first < 1 || step < 1 {
		return dst
	}
	if last < 0 {
		last += argc
	}
	if last >= argc {
		return dst
	}
	for k := first; k <= last; k += step {
		dst = append(dst, k)
	}
	return dst
}

// genericKeys is Redis's genericGetKeys: [dest] numkeys key … with the
// count read by C's atoi, and no keys unless 1 <= count <= what fits. The
// destination key comes last, as in Redis.
func genericKeys(storeOfs, countOfs, firstOfs, step int) getKeysFunc {
	return func(args [][]byte, dst []int) []int {
		argc := len(args)
		if countOfs >= argc {
			return dst
		}
		num := cAtoi(args[countOfs])
		if num < 1 || num > (argc-firstOfs)/step {
			return dst
		}
		for i := 0; i < num; i++ {
			dst = append(dst, firstOfs+i*step)
		}
		if storeOfs > 0 {
			dst = append(dst, storeOfs)
		}
		return dst
	}
}

// sortKeys is Redis's sortGetKeys: the sorted key, and the argument after
// the last STORE, skipping the arguments of LIMIT, GET and BY.
func sortKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	if argc < 2 {
		return dst
	}
	dst = append(dst, 1)
	store := 0
	for i := 2; i < argc; i++ {
		a := args[i]
		switch {
		case strcaseEqual(a, "limit"):
			i += 2
		case strcaseEqual(a, "store") && i+1 < argc:
			// Redis does not skip STORE's argument, so "STORE store x"
			// stores into x, as SORT itself does.
			store = i + 1
		case strcaseEqual(a, "get"), strcaseEqual(a, "by"):
			i++
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// sortROKeys is Redis's sortROGetKeys: only the sorted key. SET's and
// BITFIELD's procs place their key the same way.
func sortROKeys(args [][]byte, dst []int) []int { return firstArgKey(args, dst) }

// firstArgKey returns the argument after the command name as the key.
func firstArgKey(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	return append(dst, 1)
}

// migrateKeys is Redis's migrateGetKeys: the key at 3, or, when it is
// empty, every argument after KEYS. The options before KEYS are skipped
// with their arguments (AUTH password, AUTH2 user password), and KEYS with
// a non-empty key at 3 is a syntax error, with no keys.
func migrateKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	if argc < 4 {
		return dst
	}
	first, num := 3, 1
	for i := 6; i < argc; i++ {
		a := args[i]
		if strcaseEqual(a, "keys") {
			if len(args[3]) > 0 {
				num = 0
			} else {
				first, num = i+1, argc-i-1
			}
			break
		}
		switch {
		case strcaseEqual(a, "auth"):
			i++
		case strcaseEqual(a, "auth2"):
			i += 2
		}
	}
	for i := 0; i < num; i++ {
		dst = append(dst, first+i)
	}
	return dst
}

// georadiusKeys is Redis's georadiusGetKeys: the key, and the argument
// after the last STORE or STOREDIST.
func georadiusKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	if argc < 2 {
		return dst
	}
	stored := 0
	for i := 5; i < argc; i++ {
		if (strcaseEqual(args[i], "store") || strcaseEqual(args[i], "storedist")) && i+1 < argc {
			stored = i + 1
			i++
		}
	}
	dst = append(dst, 1)
	if stored > 0 {
		dst = append(dst, stored)
	}
	return dst
}

// xreadKeys is Redis's xreadGetKeys: the first half of what follows the
// STREAMS option, found by skipping the other options.
func xreadKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	streams := -1
loop:
	for i := 1; i < argc; i++ {
		a := args[i]
		switch {
		case strcaseEqual(a, "block"), strcaseEqual(a, "count"):
			i++
		case strcaseEqual(a, "group"):
			i += 2
		case strcaseEqual(a, "noack"):
		case strcaseEqual(a, "streams"):
			streams = i
			break loop
		default:
			break loop
		}
	}
	if streams < 0 {
		return dst
	}
	num := argc - streams - 1
	if num == 0 || num%2 != 0 {
		return dst
	}
	for i := streams + 1; i < argc-num/2; i++ {
		dst = append(dst, i)
	}
	return dst
}

// memoryKeys is Redis 6's memoryGetKeys: MEMORY USAGE key.
func memoryKeys(args [][]byte, dst []int) []int {
	if len(args) >= 3 && strcaseEqual(args[1], "usage") {
		return append(dst, 2)
	}
	return dst
}

// strcaseEqual compares a to the lower- or upper-case ASCII keyword kw as
// C's strcasecmp does in Redis: ASCII letters only, and a stops at its
// first NUL, so "STORE\x00x" is STORE to Redis and to its commands alike.
func strcaseEqual(a []byte, kw string) bool {
	a = cString(a)
	if len(a) != len(kw) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], kw[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// string2ll is Redis's strict integer parser (util.c): no sign but '-', no
// leading zeros, no spaces, at most 20 bytes, within int64.
func string2ll(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) >= 21 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > math.MaxUint64/10 {
			return 0, false
		}
		v *= 10
		if v > math.MaxUint64-uint64(c-'0') {
			return 0, false
		}
		v += uint64(c - '0')
	}
	if neg {
		if v > uint64(math.MaxInt64)+1 {
			return 0, false
		}
		return int64(-v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// cAtoi is glibc's atoi, which Redis's genericGetKeys uses for numkeys:
// strtol in base 10 (leading white space, a sign, digits up to the first
// other byte or NUL, saturating at the int64 limits) truncated to a C int.
func cAtoi(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || (b[i] >= '\t' && b[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var v uint64
	over := false
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if v > (math.MaxUint64-9)/10 {
			over = true
			continue
		}
		v = v*10 + uint64(b[i]-'0')
	}
	var l int64
	switch {
	case neg && (over || v > uint64(math.MaxInt64)+1):
		l = math.MinInt64
	case neg:
		l = int64(-v)
	case over || v > math.MaxInt64:
		l = math.MaxInt64
	default:
		l = int64(v)
	}
	return int(int32(l))
}
