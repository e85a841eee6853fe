package resp

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// CommandFlags is the set of flags Redis reports for a command in the third
// element of a COMMAND entry. Flags this package has no name for are kept as
// text in CommandInfo.OtherFlags.
type CommandFlags uint64

// The command flags Redis 6 and 7 emit, in the order Redis lists them.
const (
	FlagWrite           CommandFlags = 1 << iota // "write": may modify the keyspace
	FlagReadOnly                                 // "readonly": only reads keys
	FlagDenyOOM                                  // "denyoom": refused when over maxmemory
	FlagModule                                   // "module": implemented by a module
	FlagAdmin                                    // "admin": administrative, dangerous
	FlagPubSub                                   // "pubsub": pub/sub related
	FlagNoScript                                 // "noscript": not allowed in scripts
	FlagBlocking                                 // "blocking": may block the client
	FlagLoading                                  // "loading": allowed while loading the dataset
	FlagStale                                    // "stale": allowed on a stale replica
	FlagSkipMonitor                              // "skip_monitor": not shown by MONITOR
	FlagSkipSlowlog                              // "skip_slowlog": not logged in the slow log
	FlagAsking                                   // "asking": cluster ASKING semantics
	FlagFast                                     // "fast": O(1) or O(log N)
	FlagNoAuth                                   // "no_auth": allowed before AUTH
	FlagMayReplicate                             // "may_replicate": may be propagated although not a write
	FlagSentinel                                 // "sentinel": available in sentinel mode
	FlagOnlySentinel                             // "only_sentinel": only in sentinel mode
	FlagNoMandatoryKeys                          // "no_mandatory_keys": keys are optional
	FlagProtected                                // "protected": refused unless enabled (DEBUG, MODULE)
	FlagModuleGetKeys                            // "module_getkeys": module supplies key positions
	FlagModuleNoCluster                          // "module_no_cluster": module command refused in cluster mode
	FlagNoAsyncLoading                           // "no_async_loading": refused during async loading
	FlagNoMulti                                  // "no_multi": refused inside MULTI
	FlagMovableKeys                              // "movablekeys": key positions depend on the arguments
	FlagAllowBusy                                // "allow_busy": allowed while a script is busy
	FlagRandom                                   // "random": nondeterministic output (Redis 6)
	FlagSortForScript                            // "sort_for_script": output sorted for scripts (Redis 6)
)

var commandFlagNames = [...]struct {
	flag CommandFlags
	name string
}{
	{FlagWrite, "write"},
	{FlagReadOnly, "readonly"},
	{FlagDenyOOM, "denyoom"},
	{FlagModule, "module"},
	{FlagAdmin, "admin"},
	{FlagPubSub, "pubsub"},
	{FlagNoScript, "noscript"},
	{FlagBlocking, "blocking"},
	{FlagLoading, "loading"},
	{FlagStale, "stale"},
	{FlagSkipMonitor, "skip_monitor"},
	{FlagSkipSlowlog, "skip_slowlog"},
	{FlagAsking, "asking"},
	{FlagFast, "fast"},
	{FlagNoAuth, "no_auth"},
	{FlagMayReplicate, "may_replicate"},
	{FlagSentinel, "sentinel"},
	{FlagOnlySentinel, "only_sentinel"},
	{FlagNoMandatoryKeys, "no_mandatory_keys"},
	{FlagProtected, "protected"},
	{FlagModuleGetKeys, "module_getkeys"},
	{FlagModuleNoCluster, "module_no_cluster"},
	{FlagNoAsyncLoading, "no_async_loading"},
	{FlagNoMulti, "no_multi"},
	{FlagMovableKeys, "movablekeys"},
	{FlagAllowBusy, "allow_busy"},
	{FlagRandom, "random"},
	{FlagSortForScript, "sort_for_script"},
}

// Has reports whether all of the flags in g are set in f.
func (f CommandFlags) Has(g CommandFlags) bool { return f&g == g }

// String lists the flags by their Redis names, separated by commas.
func (f CommandFlags) String() string {
	var names []string
	for _, n := range commandFlagNames {
		if f&n.flag != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// KeySpecFlags is the set of flags of one Redis 7 key specification.
type KeySpecFlags uint32

// The key specification flags of Redis 7.
const (
	KeyRO            KeySpecFlags = 1 << iota // "RO": read only
	KeyRW                                     // "RW": read and write
	KeyOW                                     // "OW": overwrite without reading
	KeyRM                                     // "RM": remove
	KeyAccess                                 // "access": returns user data
	KeyUpdate                                 // "update": updates data
	KeyInsert                                 // "insert": adds data
	KeyDelete                                 // "delete": deletes data
	KeyNotKey                                 // "not_key": not a key (a shard channel); Redis skips it
	KeyIncomplete                             // "incomplete": may miss keys; Redis falls back to its getkeys proc
	KeyVariableFlags                          // "variable_flags": flags depend on the arguments
)

var keySpecFlagNames = [...]struct {
	flag KeySpecFlags
	name string
}{
	{KeyRO, "RO"},
	{KeyRW, "RW"},
	{KeyOW, "OW"},
	{KeyRM, "RM"},
	{KeyAccess, "access"},
	{KeyUpdate, "update"},
	{KeyInsert, "insert"},
	{KeyDelete, "delete"},
	{KeyNotKey, "not_key"},
	{KeyIncomplete, "incomplete"},
	{KeyVariableFlags, "variable_flags"},
}

// String lists the flags by their Redis names, separated by commas.
func (f KeySpecFlags) String() string {
	var names []string
	for _, n := range keySpecFlagNames {
		if f&n.flag != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// BeginSearchType says how a key specification finds its first key.
type BeginSearchType uint8

// The begin_search types. BeginSearchUnknown covers Redis's own "unknown"
// and any type this package does not know; Keys then falls back the way
// Redis does.
const (
	BeginSearchUnknown BeginSearchType = iota // "unknown" or unrecognised
	BeginSearchIndex                          // "index": a fixed position
	BeginSearchKeyword                        // "keyword": the argument after a keyword
)

// FindKeysType says how a key specification finds the keys after the first.
type FindKeysType uint8

// The find_keys types. FindKeysUnknown covers Redis's own "unknown" and any
// type this package does not know.
const (
	FindKeysUnknown FindKeysType = iota // "unknown" or unrecognised
	FindKeysRange                       // "range": up to a last key, with a step
	FindKeysKeyNum                      // "keynum": a count argument says how many
)

// KeySpec is one Redis 7 key specification, as COMMAND reports it.
type KeySpec struct {
	// Flags are the flags Redis names; OtherFlags the ones it does not.
	Flags      KeySpecFlags
	OtherFlags []string
	// Notes is Redis's free-text remark, if any.
	Notes string

	// BeginSearch finds the first key: at Index, or just after the first
	// argument equal to Keyword (ASCII case-insensitive) searching from
	// StartFrom (forwards; backwards from the end when negative).
	BeginSearch BeginSearchType
	Index       int
	Keyword     string
	StartFrom   int

	// FindKeys finds the rest: for FindKeysRange, keys up to LastKey
	// (relative to the first key; negative counts from the end, and with a
	// nonzero Limit only 1/Limit of the remaining arguments are keys); for
	// FindKeysKeyNum, the argument KeyNumIdx after the first holds the count
	// and keys start FirstKey after it. KeyStep is the distance between keys.
	FindKeys  FindKeysType
	LastKey   int
	KeyStep   int
	Limit     int
	KeyNumIdx int
	FirstKey  int
}

// CommandInfo describes one command or subcommand of the backend.
type CommandInfo struct {
	// Name is the lower-case full name: "get", or "config|get" for a
	// subcommand, the form Redis uses in its arity errors.
	Name string
	// Arity is Redis's: positive means exactly that many arguments
	// (the command name included), negative at least its absolute value.
	Arity int
	// Flags are the flags this package names; OtherFlags the others.
	Flags      CommandFlags
	OtherFlags []string
	// FirstKey, LastKey and Step are the legacy key range: 0 when the
	// command has no keys, LastKey negative counting from the end.
	FirstKey, LastKey, Step int
	// ACLCategories are as Redis sends them, e.g. "@read".
	ACLCategories []string
	// Tips are Redis 7's command tips, e.g. "nondeterministic_output".
	Tips []string
	// KeySpecs are Redis 7's key specifications; empty before Redis 7.
	KeySpecs []KeySpec
	// Subcommands of a container command (CONFIG, CLIENT …) by lower-case
	// subcommand name, e.g. "get" for "config|get".
	Subcommands map[string]*CommandInfo
	// Parent is the container of a subcommand, nil otherwise.
	Parent *CommandInfo
	// Local marks a command replicar itself answers or supplies (REPLICAR,
	// and QUIT when the backend does not list it); it is not in the
	// backend's COMMAND reply.
	Local bool

	// Set by prepare when the table is built: the parts of Keys and
	// Classify that depend only on the command, so that the hot path
	// reads fields instead of looking names up.
	prepared bool
	class    Class                              // class when it does not depend on the arguments
	classFn  func(*CommandInfo, [][]byte) Class // class when it does
	keysProc getKeysFunc                        // Redis's getkeys proc, when Keys needs one
	specKind uint8                              // how Keys uses the key specs: specsNone …
}

// IsContainer reports whether the command has subcommands.
func (c *CommandInfo) IsContainer() bool { return len(c.Subcommands) > 0 }

// ArityOK reports whether argc arguments, the command name included,
// satisfy the arity.
func (c *CommandInfo) ArityOK(argc int) bool {
	if c.Arity >= 0 {
		return argc == c.Arity
	}
	return argc >= -c.Arity
}

// CommandTable is the backend's command table, built by ParseCommandTable.
// It is immutable and safe for concurrent use.
type CommandTable struct {
	cmds map[string]*CommandInfo
}

// ErrCommandTable means a COMMAND reply could not be understood.
var ErrCommandTable = errors.New("resp: malformed COMMAND reply")

// The reasons Lookup fails; its errors wrap one of them.
var (
	// ErrUnknownCommand: the command name is not in the table.
	ErrUnknownCommand = errors.New("resp: unknown command")
	// ErrUnknownSubcommand: the container command has no such subcommand.
	ErrUnknownSubcommand = errors.New("resp: unknown subcommand")
	// ErrWrongArity: the number of arguments does not match the arity.
	ErrWrongArity = errors.New("resp: wrong number of arguments")
)

// LookupError is the error Lookup returns. Its text is, byte for byte, the
// error Redis 7.0 would reply to the same command, without the leading '-'.
type LookupError struct {
	// Reason is ErrUnknownCommand, ErrUnknownSubcommand or ErrWrongArity.
	Reason error
	// Msg is the reply text, e.g. "ERR wrong number of arguments for 'get' command".
	Msg string
}

// Error returns Msg, the text to send after '-'.
func (e *LookupError) Error() string { return e.Msg }

// Unwrap returns the Reason, for errors.Is.
func (e *LookupError) Unwrap() error { return e.Reason }

// maxCommandName bounds the names Lookup lower-cases on the stack. Longer
// names take a slower path that allocates; no built-in command comes close.
const maxCommandName = 64

// Lookup resolves args[0] (and, for a container command given more than one
// argument, args[1]) case-insensitively and checks the arity, with the
// errors Redis itself replies. A container command given alone resolves to
// the container, as in Redis. The common case does not allocate.
func (t *CommandTable) Lookup(args [][]byte) (*CommandInfo, error) {
	if len(args) == 0 {
		return nil, unknownCommandError([][]byte{nil})
	}
	info := lookupFold(t.cmds, args[0])
	if info == nil {
		return nil, unknownCommandError(args)
	}
	if len(args) > 1 && len(info.Subcommands) > 0 {
		sub := lookupFold(info.Subcommands, args[1])
		if sub == nil {
			return nil, unknownSubcommandError(args)
		}
		info = sub
	}
	if !info.ArityOK(len(args)) {
		return nil, &LookupError{
			Reason: ErrWrongArity,
			Msg:    "ERR wrong number of arguments for '" + info.Name + "' command",
		}
	}
	return info, nil
}

// Command returns the command or subcommand with the given full name
// ("get", "config|get"), matched case-insensitively, or nil.
func (t *CommandTable) Command(name string) *CommandInfo {
	parent, sub, isSub := strings.Cut(lowerASCII([]byte(name)), "|")
	info := t.cmds[parent]
	if info == nil || !isSub {
		return info
	}
	return info.Subcommands[sub]
}

// Commands returns the top-level commands sorted by name.
func (t *CommandTable) Commands() []*CommandInfo {
	out := make([]*CommandInfo, 0, len(t.cmds))
	for _, c := range t.cmds {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// lookupFold finds name in m, whose keys are lower case, matching ASCII
// letters case-insensitively as Redis's command dictionary does. It lowers
// into a stack buffer, and the compiler turns m[string(b)] into a lookup
// without a conversion, so the common case does not allocate. A NUL byte
// is part of the name, as in Redis, whose dictionary hashes the whole
// argument.
func lookupFold(m map[string]*CommandInfo, name []byte) *CommandInfo {
	if len(name) > maxCommandName {
		return m[lowerASCII(name)]
	}
	var buf [maxCommandName]byte
	b := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return m[string(b)]
}

// maxErrArg is Redis's truncation of arguments echoed in its errors.
const maxErrArg = 128

// unknownCommandError builds Redis's reply to an unknown command
// (commandCheckExistence in server.c): the name and the first arguments,
// each cut at its first NUL as C's %s does, the arguments together cut near
// 128 bytes, and CR and LF turned into spaces so that the reply stays one
// line.
func unknownCommandError(args [][]byte) error {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(truncate(cString(args[0]), maxErrArg))
	b.WriteString("', with args beginning with: ")
	n := 0
	for _, a := range args[1:] {
		if n >= maxErrArg {
			break
		}
		a = truncate(cString(a), maxErrArg-n)
		b.WriteByte('\'')
		b.Write(a)
		b.WriteString("' ")
		n += len(a) + 3
	}
	return &LookupError{Reason: ErrUnknownCommand, Msg: oneLine(b.String())}
}

// unknownSubcommandError builds Redis's reply to a container command with
// an unknown subcommand.
func unknownSubcommandError(args [][]byte) error {
	var b strings.Builder
	b.WriteString("ERR unknown subcommand '")
	b.Write(truncate(cString(args[1]), maxErrArg))
	b.WriteString("'. Try ")
	for _, c := range cString(args[0]) {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b.WriteByte(c)
	}
	b.WriteString(" HELP.")
	return &LookupError{Reason: ErrUnknownSubcommand, Msg: oneLine(b.String())}
}

// cString cuts b at its first NUL, as C string functions see it.
func cString(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// oneLine replaces CR and LF with spaces, as Redis does before it sends an
// error that echoes client input.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// ParseCommandTable builds the table from the reply to COMMAND (or COMMAND
// INFO, whose nil entries it skips). It accepts the Redis 7 entry format
// [name, arity, flags, first key, last key, step, ACL categories, tips,
// key specs, subcommands] and the shorter entries of Redis 6 and earlier
// (six elements, or seven with ACL categories). It also adds replicar's own
// commands (REPLICAR, and QUIT when the backend does not list it).
func ParseCommandTable(reply Value) (*CommandTable, error) {
	if reply.Kind == Error {
		return nil, fmt.Errorf("%w: error reply %q", ErrCommandTable, reply.Str)
	}
	if reply.Kind != Array {
		return nil, fmt.Errorf("%w: not an array", ErrCommandTable)
	}
	t := &CommandTable{cmds: make(map[string]*CommandInfo, len(reply.Elems)+len(localCommands))}
	for i, e := range reply.Elems {
		if e.IsNil() {
			continue
		}
		info, err := parseCommandEntry(e, nil)
		if err != nil {
			return nil, fmt.Errorf("command entry %d: %w", i, err)
		}
		if strings.Contains(info.Name, "|") {
			return nil, fmt.Errorf("%w: top-level command %q has a '|'", ErrCommandTable, info.Name)
		}
		t.cmds[info.Name] = info
	}
	for _, l := range localCommands {
		if l.Name == "replicar" || t.cmds[l.Name] == nil {
			t.cmds[l.Name] = l
		}
	}
	for _, info := range t.cmds {
		if info.prepared {
			continue // a shared local command, prepared once at init
		}
		info.prepare()
		for _, sub := range info.Subcommands {
			sub.prepare()
		}
	}
	return t, nil
}

// localCommands are the commands replicar adds to any backend's table.
// REPLICAR is its own (REPLICAR INFO …); QUIT is listed because Redis
// before 7 answers it without listing it in COMMAND. They are built once
// and never changed.
var localCommands = []*CommandInfo{
	{
		Name:          "replicar",
		Arity:         -2,
		Flags:         FlagLoading | FlagStale | FlagFast,
		ACLCategories: []string{"@slow"},
		Local:         true,
	},
	{
		Name:          "quit",
		Arity:         -1,
		Flags:         FlagNoScript | FlagLoading | FlagStale | FlagFast | FlagNoAuth | FlagAllowBusy,
		ACLCategories: []string{"@fast", "@connection"},
		Local:         true,
	},
}

func init() {
	for _, l := range localCommands {
		l.prepare()
	}
}

// maxTableInt bounds the integers accepted in a COMMAND reply, so that key
// position arithmetic cannot overflow whatever the backend sends.
const maxTableInt = 1 << 30

func parseCommandEntry(e Value, parent *CommandInfo) (*CommandInfo, error) {
	if e.Kind != Array || len(e.Elems) < 6 {
		return nil, fmt.Errorf("%w: entry is not an array of at least 6 elements", ErrCommandTable)
	}
	el := e.Elems
	name, ok := tableString(el[0])
	if !ok || name == "" {
		return nil, fmt.Errorf("%w: command name %s", ErrCommandTable, el[0])
	}
	info := &CommandInfo{Name: lowerASCII([]byte(name)), Parent: parent}
	fail := func(what string, v Value) error {
		return fmt.Errorf("%w: %s: %s %s", ErrCommandTable, info.Name, what, v)
	}
	ints := []*int{&info.Arity, &info.FirstKey, &info.LastKey, &info.Step}
	for i, idx := range []int{1, 3, 4, 5} {
		n, ok := tableInt(el[idx])
		if !ok {
			return nil, fail("bad integer", el[idx])
		}
		*ints[i] = n
	}
	flags, ok := tableStrings(el[2])
	if !ok {
		return nil, fail("bad flags", el[2])
	}
	for _, f := range flags {
		if bit, ok := commandFlagByName(f); ok {
			info.Flags |= bit
		} else {
			info.OtherFlags = append(info.OtherFlags, f)
		}
	}
	if len(el) > 6 {
		if info.ACLCategories, ok = tableStrings(el[6]); !ok {
			return nil, fail("bad ACL categories", el[6])
		}
	}
	if len(el) > 7 {
		if info.Tips, ok = tableStrings(el[7]); !ok {
			return nil, fail("bad tips", el[7])
		}
	}
	if len(el) > 8 && !el[8].IsNil() {
		if el[8].Kind != Array {
			return nil, fail("bad key specs", el[8])
		}
		for _, s := range el[8].Elems {
			spec, err := parseKeySpec(s)
			if err != nil {
				return nil, fmt.Errorf("%s: key spec: %w", info.Name, err)
			}
			info.KeySpecs = append(info.KeySpecs, spec)
		}
	}
	if len(el) > 9 && !el[9].IsNil() {
		if el[9].Kind != Array {
			return nil, fail("bad subcommands", el[9])
		}
		if parent != nil && len(el[9].Elems) > 0 {
			return nil, fail("subcommands nested more than one level", el[9])
		}
		for _, s := range el[9].Elems {
			sub, err := parseCommandEntry(s, info)
			if err != nil {
				return nil, err
			}
			p, subName, ok := strings.Cut(sub.Name, "|")
			if !ok || p != info.Name || subName == "" {
				return nil, fmt.Errorf("%w: %s: subcommand named %q", ErrCommandTable, info.Name, sub.Name)
			}
			if info.Subcommands == nil {
				info.Subcommands = make(map[string]*CommandInfo, len(el[9].Elems))
			}
			info.Subcommands[subName] = sub
		}
	}
	return info, nil
}

func commandFlagByName(name string) (CommandFlags, bool) {
	for _, n := range commandFlagNames {
		if n.name == name {
			return n.flag, true
		}
	}
	return 0, false
}

// parseKeySpec reads one key specification, a RESP2 flattened map:
// [notes, …, flags, […], begin_search, [type, …, spec, […]], find_keys, […]].
func parseKeySpec(v Value) (KeySpec, error) {
	var s KeySpec
	m, ok := tableMap(v)
	if !ok {
		return s, fmt.Errorf("%w: not a map: %s", ErrCommandTable, v)
	}
	for k, val := range m {
		switch k {
		case "notes":
			s.Notes, _ = tableString(val)
		case "flags":
			flags, ok := tableStrings(val)
			if !ok {
				return s, fmt.Errorf("%w: flags %s", ErrCommandTable, val)
			}
			for _, f := range flags {
				if bit, ok := keySpecFlagByName(f); ok {
					s.Flags |= bit
				} else {
					s.OtherFlags = append(s.OtherFlags, f)
				}
			}
		case "begin_search":
			typ, spec, err := searchTypeAndSpec(val)
			if err != nil {
				return s, fmt.Errorf("begin_search: %w", err)
			}
			switch typ {
			case "index":
				s.BeginSearch = BeginSearchIndex
				if s.Index, ok = tableMapInt(spec, "index"); !ok {
					return s, fmt.Errorf("%w: begin_search index %s", ErrCommandTable, val)
				}
			case "keyword":
				s.BeginSearch = BeginSearchKeyword
				kw, ok1 := tableString(spec["keyword"])
				from, ok2 := tableMapInt(spec, "startfrom")
				if !ok1 || !ok2 {
					return s, fmt.Errorf("%w: begin_search keyword %s", ErrCommandTable, val)
				}
				s.Keyword, s.StartFrom = kw, from
			default:
				s.BeginSearch = BeginSearchUnknown
			}
		case "find_keys":
			typ, spec, err := searchTypeAndSpec(val)
			if err != nil {
				return s, fmt.Errorf("find_keys: %w", err)
			}
			switch typ {
			case "range":
				s.FindKeys = FindKeysRange
				var ok1, ok2, ok3 bool
				s.LastKey, ok1 = tableMapInt(spec, "lastkey")
				s.KeyStep, ok2 = tableMapInt(spec, "keystep")
				s.Limit, ok3 = tableMapInt(spec, "limit")
				if !ok1 || !ok2 || !ok3 {
					return s, fmt.Errorf("%w: find_keys range %s", ErrCommandTable, val)
				}
			case "keynum":
				s.FindKeys = FindKeysKeyNum
				var ok1, ok2, ok3 bool
				s.KeyNumIdx, ok1 = tableMapInt(spec, "keynumidx")
				s.FirstKey, ok2 = tableMapInt(spec, "firstkey")
				s.KeyStep, ok3 = tableMapInt(spec, "keystep")
				if !ok1 || !ok2 || !ok3 {
					return s, fmt.Errorf("%w: find_keys keynum %s", ErrCommandTable, val)
				}
			default:
				s.FindKeys = FindKeysUnknown
			}
		}
	}
	return s, nil
}

func keySpecFlagByName(name string) (KeySpecFlags, bool) {
	for _, n := range keySpecFlagNames {
		if n.name == name {
			return n.flag, true
		}
	}
	return 0, false
}

// searchTypeAndSpec reads a begin_search or find_keys map: its type and its
// spec map (empty for the "unknown" type).
func searchTypeAndSpec(v Value) (string, map[string]Value, error) {
	m, ok := tableMap(v)
	if !ok {
		return "", nil, fmt.Errorf("%w: not a map: %s", ErrCommandTable, v)
	}
	typ, ok := tableString(m["type"])
	if !ok {
		return "", nil, fmt.Errorf("%w: no type: %s", ErrCommandTable, v)
	}
	spec, _ := tableMap(m["spec"])
	return typ, spec, nil
}

func tableString(v Value) (string, bool) {
	switch v.Kind {
	case Bulk, SimpleString:
		return string(v.Str), true
	}
	return "", false
}

func tableStrings(v Value) ([]string, bool) {
	if v.Kind != Array {
		return nil, false
	}
	out := make([]string, 0, len(v.Elems))
	for _, e := range v.Elems {
		s, ok := tableString(e)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func tableInt(v Value) (int, bool) {
	if v.Kind != Integer || v.Int > maxTableInt || v.Int < -maxTableInt {
		return 0, false
	}
	return int(v.Int), true
}

func tableMapInt(m map[string]Value, key string) (int, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	return tableInt(v)
}

// tableMap reads a RESP2 flattened map (an array of alternating names and
// values); the empty array is the empty map.
func tableMap(v Value) (map[string]Value, bool) {
	if v.Kind != Array || len(v.Elems)%2 != 0 {
		return nil, false
	}
	m := make(map[string]Value, len(v.Elems)/2)
	for i := 0; i < len(v.Elems); i += 2 {
		k, ok := tableString(v.Elems[i])
		if !ok {
			return nil, false
		}
		m[k] = v.Elems[i+1]
	}
	return m, true
}
