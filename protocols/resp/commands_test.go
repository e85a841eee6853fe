package resp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/test/harness"
)

// commandTableFile is the raw reply of COMMAND from redis-server 7.0.15,
// captured once, so that tests without a server see a real table.
const commandTableFile = "testdata/command-7.0.15.resp"

// loadCommandTable parses commandTableFile.
func loadCommandTable(tb testing.TB) *CommandTable {
	tb.Helper()
	raw, err := os.ReadFile(commandTableFile)
	if err != nil {
		tb.Fatal(err)
	}
	v, n, err := ParseValue(raw)
	if err != nil {
		tb.Fatalf("parse %s: %v", commandTableFile, err)
	}
	if n != len(raw) {
		tb.Fatalf("%s: %d trailing bytes", commandTableFile, len(raw)-n)
	}
	tab, err := ParseCommandTable(v)
	if err != nil {
		tb.Fatal(err)
	}
	return tab
}

// commandConn speaks RESP2 to a real server over a plain connection, so that
// replies arrive exactly as Redis formats them.
type commandConn struct {
	t testing.TB
	c net.Conn
}

// startCommandRedis starts a redis-server for the test and connects to it.
func startCommandRedis(t *testing.T) *commandConn {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server; skipped in -short mode")
	}
	r := harness.StartRedis(t)
	c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &commandConn{t: t, c: c}
}

// do sends args and returns the parsed reply.
func (r *commandConn) do(args ...[]byte) Value {
	r.t.Helper()
	if err := r.c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.c.Write(AppendCommand(nil, args...)); err != nil {
		r.t.Fatal(err)
	}
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if v, m, perr := ParseValue(buf); perr == nil {
			if m != len(buf) {
				r.t.Fatalf("%d unexpected bytes after the reply", len(buf)-m)
			}
			return v
		} else if !errors.Is(perr, ErrIncomplete) {
			r.t.Fatalf("reply to %q: %v", args, perr)
		}
		if err != nil {
			r.t.Fatalf("reply to %q: %v", args, err)
		}
	}
}

func (r *commandConn) doStrings(args ...string) Value {
	r.t.Helper()
	return r.do(argsOf(args...)...)
}

func argsOf(args ...string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// checkKnownEntries checks the entries the rest of replicar relies on.
func checkKnownEntries(t *testing.T, tab *CommandTable) {
	t.Helper()
	type want struct {
		name                    string
		arity                   int
		has                     CommandFlags
		first, last, step       int
		category                string
		specs                   int
		firstSpecBegin          BeginSearchType
		firstSpecFind           FindKeysType
		firstSpecIndex, lastKey int
	}
	for _, w := range []want{
		{"get", 2, FlagReadOnly | FlagFast, 1, 1, 1, "@read", 1, BeginSearchIndex, FindKeysRange, 1, 0},
		{"set", -3, FlagWrite | FlagDenyOOM, 1, 1, 1, "@write", 1, BeginSearchIndex, FindKeysRange, 1, 0},
		{"xread", -4, FlagReadOnly | FlagBlocking | FlagMovableKeys, 0, 0, 0, "@stream", 1, BeginSearchKeyword, FindKeysRange, 0, -1},
		{"eval", -3, FlagNoScript | FlagMovableKeys | FlagNoMandatoryKeys, 0, 0, 0, "@scripting", 1, BeginSearchIndex, FindKeysKeyNum, 2, 0},
		{"config|set", -4, FlagAdmin | FlagNoScript, 0, 0, 0, "@admin", 0, 0, 0, 0, 0},
		{"client|setname", 3, FlagNoScript | FlagLoading | FlagStale, 0, 0, 0, "@connection", 0, 0, 0, 0, 0},
		{"blpop", -3, FlagWrite | FlagBlocking | FlagNoScript, 1, -2, 1, "@blocking", 1, BeginSearchIndex, FindKeysRange, 1, -2},
		{"object|encoding", 3, FlagReadOnly, 2, 2, 1, "@keyspace", 1, BeginSearchIndex, FindKeysRange, 2, 0},
		{"sort", -2, FlagWrite | FlagDenyOOM | FlagMovableKeys, 1, 1, 1, "@dangerous", 3, BeginSearchIndex, FindKeysRange, 1, 0},
	} {
		c := tab.Command(w.name)
		if c == nil {
			t.Errorf("%s: missing", w.name)
			continue
		}
		if c.Name != w.name || c.Arity != w.arity || !c.Flags.Has(w.has) ||
			c.FirstKey != w.first || c.LastKey != w.last || c.Step != w.step ||
			len(c.KeySpecs) != w.specs {
			t.Errorf("%s: got name %q arity %d flags %s keys %d,%d,%d with %d specs",
				w.name, c.Name, c.Arity, c.Flags, c.FirstKey, c.LastKey, c.Step, len(c.KeySpecs))
		}
		if !containsString(c.ACLCategories, w.category) {
			t.Errorf("%s: categories %v lack %s", w.name, c.ACLCategories, w.category)
		}
		if w.specs > 0 && len(c.KeySpecs) > 0 {
			s := c.KeySpecs[0]
			if s.BeginSearch != w.firstSpecBegin || s.FindKeys != w.firstSpecFind ||
				s.Index != w.firstSpecIndex || s.LastKey != w.lastKey {
				t.Errorf("%s: first key spec %+v", w.name, s)
			}
		}
	}
	if c := tab.Command("config|get"); c == nil || c.Parent != tab.Command("config") || tab.Command("config").Subcommands["get"] != c {
		t.Errorf("config|get is not subcommand get of config")
	}
	xr := tab.Command("xread").KeySpecs[0]
	if xr.Keyword != "STREAMS" || xr.StartFrom != 1 || xr.Limit != 2 || xr.KeyStep != 1 {
		t.Errorf("xread spec: %+v", xr)
	}
	ev := tab.Command("eval").KeySpecs[0]
	if ev.KeyNumIdx != 0 || ev.FirstKey != 1 || ev.KeyStep != 1 || ev.Flags != KeyRW|KeyAccess|KeyUpdate {
		t.Errorf("eval spec: %+v", ev)
	}
	srt := tab.Command("sort").KeySpecs
	if srt[1].BeginSearch != BeginSearchUnknown || srt[2].FindKeys != FindKeysUnknown || srt[2].Flags != KeyOW|KeyUpdate {
		t.Errorf("sort specs: %+v", srt)
	}
	if !containsString(tab.Command("zrandmember").Tips, "nondeterministic_output") {
		t.Errorf("zrandmember tips: %v", tab.Command("zrandmember").Tips)
	}
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestCommandTableFromTestdata(t *testing.T) {
	tab := loadCommandTable(t)
	checkKnownEntries(t, tab)
	if n := len(tab.Commands()); n != 240+1 { // 240 from Redis, REPLICAR ours
		t.Errorf("%d commands", n)
	}
	if c := tab.Command("replicar"); c == nil || !c.Local {
		t.Errorf("replicar: %+v", c)
	}
	if c := tab.Command("quit"); c == nil || c.Local {
		t.Errorf("quit should come from Redis 7.0's own table: %+v", c)
	}
	// Every flag Redis 7.0 emits has a name here.
	for _, c := range allCommands(tab) {
		if len(c.OtherFlags) > 0 {
			t.Errorf("%s: unnamed flags %v", c.Name, c.OtherFlags)
		}
		for _, s := range c.KeySpecs {
			if len(s.OtherFlags) > 0 {
				t.Errorf("%s: unnamed key spec flags %v", c.Name, s.OtherFlags)
			}
		}
	}
}

// allCommands lists every command and subcommand, sorted by name.
func allCommands(tab *CommandTable) []*CommandInfo {
	var out []*CommandInfo
	for _, c := range tab.Commands() {
		out = append(out, c)
		var subs []*CommandInfo
		for _, s := range c.Subcommands {
			subs = append(subs, s)
		}
		sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
		out = append(out, subs...)
	}
	return out
}

// TestCommandTableLive sends COMMAND to a real redis-server, parses the
// reply, and checks it against the known entries and, for the same
// version, against the committed capture.
func TestCommandTableLive(t *testing.T) {
	r := startCommandRedis(t)
	reply := r.doStrings("COMMAND")
	live, err := ParseCommandTable(reply)
	if err != nil {
		t.Fatal(err)
	}
	checkKnownEntries(t, live)
	info := r.doStrings("INFO", "server")
	if !bytes.Contains(info.Str, []byte("redis_version:7.0.15\r\n")) {
		t.Logf("redis-server is not 7.0.15; not comparing with %s", commandTableFile)
		return
	}
	// COMMAND lists commands in hash order, which changes from run to run,
	// so compare what was parsed, not the bytes.
	want := describeTable(loadCommandTable(t))
	got := describeTable(live)
	if !reflect.DeepEqual(got, want) {
		for name, d := range want {
			if got[name] != d {
				t.Errorf("%s:\n live %s\n file %s", name, got[name], d)
			}
		}
		t.Errorf("live table differs from %s (%d vs %d entries)", commandTableFile, len(got), len(want))
	}
}

func describeTable(tab *CommandTable) map[string]string {
	out := make(map[string]string)
	for _, c := range allCommands(tab) {
		subs := make([]string, 0, len(c.Subcommands))
		for s := range c.Subcommands {
			subs = append(subs, s)
		}
		sort.Strings(subs)
		out[c.Name] = fmt.Sprintf("%d %s %v %d %d %d %v %v %+v %v %v", c.Arity, c.Flags, c.OtherFlags,
			c.FirstKey, c.LastKey, c.Step, c.ACLCategories, c.Tips, c.KeySpecs, subs, c.Local)
	}
	return out
}

func TestParseCommandTableRedis6(t *testing.T) {
	// Redis 6.2 entries have 7 elements, Redis 5 entries 6; neither has
	// key specs or subcommands, and CONFIG is a plain command.
	reply := redis6Reply()
	tab, err := ParseCommandTable(reply)
	if err != nil {
		t.Fatal(err)
	}
	get := tab.Command("GET")
	if get == nil || get.Arity != 2 || get.Flags != FlagReadOnly|FlagFast || get.FirstKey != 1 || len(get.KeySpecs) != 0 {
		t.Fatalf("get: %+v", get)
	}
	if got := tab.Command("config"); got == nil || got.IsContainer() || got.Arity != -2 {
		t.Fatalf("config: %+v", got)
	}
	if got := tab.Command("legacy"); got == nil || got.ACLCategories != nil || got.Arity != -1 {
		t.Fatalf("six-element entry: %+v", got)
	}
	if got := tab.Command("getex"); len(got.OtherFlags) != 1 || got.OtherFlags[0] != "some_new_flag" {
		t.Fatalf("unknown flags are kept by name: %+v", got.OtherFlags)
	}
	// CONFIG GET resolves to CONFIG, whose arity is checked.
	info, err := tab.Lookup(argsOf("CONFIG", "GET", "maxmemory"))
	if err != nil || info.Name != "config" {
		t.Fatalf("config get: %v %v", info, err)
	}
	if _, err := tab.Lookup(argsOf("config")); err == nil || err.Error() != "ERR wrong number of arguments for 'config' command" {
		t.Fatalf("config alone: %v", err)
	}
	// Redis 6 has no QUIT entry; ours stands in.
	if q, err := tab.Lookup(argsOf("QUIT")); err != nil || !q.Local {
		t.Fatalf("quit: %+v %v", q, err)
	}
	// A range that runs past the arguments gives no keys at all, as in
	// Redis (which would panic for a fixed arity; Lookup rejects it first).
	if got := tab.Command("rename").Keys(argsOf("rename", "a"), nil); len(got) != 0 {
		t.Errorf("rename a: keys %v", got)
	}
	// Keys: the legacy range, and procs for the movablekeys commands.
	for _, tc := range []struct {
		args string
		want []int
	}{
		{"get k", []int{1}},
		{"mset a 1 b 2", []int{1, 3}},
		{"mset a 1 b", []int{1, 3}}, // MSET's own check rejects it
		{"del a b c", []int{1, 2, 3}},
		{"eval s 2 a b c", []int{3, 4}},
		{"eval s 0", nil},
		{"zunionstore d 2 a b", []int{3, 4, 1}},
		{"sort k by x store d", []int{1, 5}},
		{"xread count 2 streams a b 0 0", []int{4, 5}},
		{"xread streams a b 0", nil},
		{"memory usage k", []int{2}},
		{"memory stats", nil},
		{"config get x", nil},
	} {
		args := bytes.Fields([]byte(tc.args))
		info, err := tab.Lookup(args)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if got := info.Keys(args, nil); !sameInts(got, tc.want) {
			t.Errorf("%s: keys %v, want %v", tc.args, got, tc.want)
		}
	}
}

// redis6Reply is a COMMAND reply in Redis 6 form.
func redis6Reply() Value {
	entry := func(name string, arity int64, flags []string, first, last, step int64, cats ...string) Value {
		fl := make([]Value, len(flags))
		for i, f := range flags {
			fl[i] = Value{Kind: SimpleString, Str: []byte(f)}
		}
		e := Value{Kind: Array, Elems: []Value{
			{Kind: Bulk, Str: []byte(name)},
			{Kind: Integer, Int: arity},
			{Kind: Array, Elems: fl},
			{Kind: Integer, Int: first},
			{Kind: Integer, Int: last},
			{Kind: Integer, Int: step},
		}}
		if cats != nil {
			cv := make([]Value, len(cats))
			for i, c := range cats {
				cv[i] = Value{Kind: SimpleString, Str: []byte(c)}
			}
			e.Elems = append(e.Elems, Value{Kind: Array, Elems: cv})
		}
		return e
	}
	return Value{Kind: Array, Elems: []Value{
		entry("get", 2, []string{"readonly", "fast"}, 1, 1, 1, "@read", "@string", "@fast"),
		entry("set", -3, []string{"write", "denyoom"}, 1, 1, 1, "@write", "@string", "@slow"),
		entry("getex", -2, []string{"write", "fast", "some_new_flag"}, 1, 1, 1, "@write"),
		entry("mset", -3, []string{"write", "denyoom"}, 1, -1, 2, "@write"),
		entry("del", -2, []string{"write"}, 1, -1, 1, "@write"),
		entry("rename", 3, []string{"write"}, 1, 2, 1, "@write"),
		entry("eval", -3, []string{"noscript", "may_replicate", "movablekeys"}, 0, 0, 0, "@scripting"),
		entry("evalsha_ro", -3, []string{"readonly", "noscript", "movablekeys"}, 0, 0, 0, "@scripting"),
		entry("zunionstore", -4, []string{"write", "denyoom", "movablekeys"}, 0, 0, 0, "@write"),
		entry("sort", -2, []string{"write", "denyoom", "movablekeys"}, 1, 1, 1, "@write"),
		entry("xread", -4, []string{"readonly", "movablekeys"}, 0, 0, 0, "@read"),
		entry("memory", -2, []string{"readonly", "random", "movablekeys"}, 0, 0, 0, "@read"),
		entry("config", -2, []string{"admin", "noscript", "loading", "stale"}, 0, 0, 0, "@admin"),
		entry("client", -2, []string{"admin", "noscript", "random", "loading", "stale"}, 0, 0, 0, "@admin"),
		entry("script", -2, []string{"noscript", "may_replicate"}, 0, 0, 0, "@scripting"),
		entry("debug", -2, []string{"admin", "noscript", "loading", "stale"}, 0, 0, 0, "@admin"),
		entry("module", -2, []string{"admin", "noscript"}, 0, 0, 0, "@admin"),
		entry("pfcount", -2, []string{"readonly", "may_replicate"}, 1, -1, 1, "@read"),
		entry("legacy", -1, []string{"readonly"}, 0, 0, 0),
	}}
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseCommandTableErrors(t *testing.T) {
	good := redis6Reply().Elems[0]
	with := func(i int, v Value) Value {
		e := Value{Kind: Array, Elems: append([]Value(nil), good.Elems...)}
		e.Elems[i] = v
		return Value{Kind: Array, Elems: []Value{e}}
	}
	str := func(s string) Value { return Value{Kind: Bulk, Str: []byte(s)} }
	arr := func(e ...Value) Value { return Value{Kind: Array, Elems: e} }
	num := func(n int64) Value { return Value{Kind: Integer, Int: n} }
	// ext returns a reply of one Redis 7 entry: good, no tips, then the
	// key specs and subcommands given.
	ext := func(specsAndSubs ...Value) Value {
		e := append(append([]Value(nil), good.Elems...), arr())
		return arr(arr(append(e, specsAndSubs...)...))
	}
	for name, reply := range map[string]Value{
		"error reply":        {Kind: Error, Str: []byte("ERR unknown command 'COMMAND'")},
		"not an array":       str("x"),
		"short entry":        arr(arr(str("get"), Value{Kind: Integer, Int: 2})),
		"entry not array":    arr(str("get")),
		"empty name":         with(0, str("")),
		"name not a string":  with(0, Value{Kind: Integer, Int: 1}),
		"arity not int":      with(1, str("2")),
		"huge arity":         with(1, Value{Kind: Integer, Int: 1 << 40}),
		"flags not array":    with(2, str("readonly")),
		"flag not string":    with(2, arr(Value{Kind: Integer, Int: 1})),
		"pipe in name":       with(0, str("a|b")),
		"key spec not a map": ext(arr(str("flags"))),
		"key spec odd map":   ext(arr(arr(str("flags")))),
		"begin_search without index": ext(arr(arr(str("begin_search"),
			arr(str("type"), str("index"), str("spec"), arr())))),
		"find_keys range without limit": ext(arr(arr(str("find_keys"),
			arr(str("type"), str("range"), str("spec"), arr(str("lastkey"), num(0), str("keystep"), num(1)))))),
		"subcommand of another":   ext(arr(), arr(arr(str("other|x"), num(2), arr(), num(0), num(0), num(0)))),
		"subcommand not an entry": ext(arr(), arr(str("x"))),
	} {
		if _, err := ParseCommandTable(reply); !errors.Is(err, ErrCommandTable) {
			t.Errorf("%s: got %v, want ErrCommandTable", name, err)
		}
	}
	// COMMAND INFO replies nil for unknown names; those are skipped.
	tab, err := ParseCommandTable(Value{Kind: Array, Elems: []Value{{Kind: NullArray}, good}})
	if err != nil || tab.Command("get") == nil {
		t.Fatalf("COMMAND INFO reply: %v", err)
	}
}

func TestLookup(t *testing.T) {
	tab := loadCommandTable(t)
	for _, tc := range []struct {
		args string
		name string
		err  error
	}{
		{"get k", "get", nil},
		{"GET k", "get", nil},
		{"gEt k", "get", nil},
		{"CONFIG GET maxmemory", "config|get", nil},
		{"config Set a b", "config|set", nil},
		{"Client SETNAME x", "client|setname", nil},
		{"object encoding k", "object|encoding", nil},
		{"command", "command", nil},
		{"command count", "command|count", nil},
		{"REPLICAR INFO", "replicar", nil},
		{"replicar", "", ErrWrongArity},
		{"quit", "quit", nil},
		{"foo", "", ErrUnknownCommand},
		{"config|get x", "", ErrUnknownCommand},
		{"config nope", "", ErrUnknownSubcommand},
		{"config", "", ErrWrongArity},
		{"get", "", ErrWrongArity},
		{"get a b", "", ErrWrongArity},
		{"config get", "", ErrWrongArity},
	} {
		info, err := tab.Lookup(bytes.Fields([]byte(tc.args)))
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("%s: error %v, want %v", tc.args, err, tc.err)
			continue
		}
		if err == nil && info.Name != tc.name {
			t.Errorf("%s: resolved to %s, want %s", tc.args, info.Name, tc.name)
		}
		if err != nil && info != nil {
			t.Errorf("%s: info with an error", tc.args)
		}
	}
	if _, err := tab.Lookup(nil); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("no args: %v", err)
	}
	long := bytes.Repeat([]byte("G"), maxCommandName+1)
	if _, err := tab.Lookup([][]byte{long}); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("long name: %v", err)
	}
	// A NUL is part of the name, as in Redis's dictionary.
	if _, err := tab.Lookup(argsOf("get\x00", "k")); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("name with NUL: %v", err)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab := loadCommandTable(t)
	for _, args := range [][][]byte{
		argsOf("GET", "k"), argsOf("get", "k"), argsOf("SET", "k", "v"),
		argsOf("config", "get", "x"), argsOf("CLIENT", "SETNAME", "x"),
	} {
		dst := make([]int, 0, 8)
		n := testing.AllocsPerRun(100, func() {
			info, err := tab.Lookup(args)
			if err != nil {
				t.Fatal(err)
			}
			_ = Classify(info, args)
			dst = info.Keys(args, dst[:0])
		})
		if n != 0 {
			t.Errorf("%q: %v allocations", args, n)
		}
	}
}

// badCommands are inputs Redis rejects before running them, with every
// shape of its unknown-command, unknown-subcommand and arity errors.
var badCommands = [][]string{
	{"foo"},
	{"foo", "a"},
	{"foo", "a", "b"},
	{"FOO", "a", "b", "c", "d", "e", "f", "g", "h"},
	{"foo", strings.Repeat("a", 200)},
	{"foo", strings.Repeat("a", 100), strings.Repeat("b", 100), "c"},
	{"foo", strings.Repeat("a", 125), "bc", "d"},
	{"foo", strings.Repeat("a", 126), "bc", "d"},
	{"foo", strings.Repeat("a", 127), "bc", "d"},
	{"foo", strings.Repeat("a", 128), "bc", "d"},
	{"foo", strings.Repeat("a", 10), strings.Repeat("b", 10), strings.Repeat("c", 200)},
	{strings.Repeat("x", 300), "a"},
	{"fo\r\no", "a\r\nb", "x\x00y"},
	{"f\x00oo", "a"},
	{"foo", "\xff\xfe", ""},
	{""},
	{"", ""},
	{"config|get", "x"},
	{"get|x", "x"},
	{"config", "x"},
	{"CONFIG", "nope", "a"},
	{"Config", strings.Repeat("y", 300)},
	{"config", ""},
	{"config", "\x00x"},
	{"config", "ge\r\nt"},
	{"c\x00onfig", "x"},
	{"xinfo", "x\r\ny"},
	{"client", "nope"},
	{"object", "nope", "k"},
	{"command", "nope"},
	{"pubsub", "nope"},
	{"get"},
	{"GET", "a", "b"},
	{"set", "a"},
	{"mset"},
	{"del"},
	{"config"},
	{"Config", "GET"},
	{"config", "set", "a"},
	{"object", "encoding"},
	{"object", "encoding", "a", "b"},
	{"client", "setname"},
	{"script", "load"},
	{"multi", "x"},
	{"xread", "count", "1"},
	{"eval", "s"},
	{"blpop", "k"},
	{"monitor", "x"},
	{"memory", "usage"},
}

// TestLookupErrorsMatchRedis sends badCommands to a real redis-server and
// requires Lookup's error to be the same bytes.
func TestLookupErrorsMatchRedis(t *testing.T) {
	r := startCommandRedis(t)
	tab := loadCommandTable(t)
	for _, bad := range badCommands {
		args := argsOf(bad...)
		reply := r.do(args...)
		if reply.Kind != Error {
			t.Errorf("%q: redis replied %s, not an error", bad, reply)
			continue
		}
		_, err := tab.Lookup(args)
		if err == nil {
			t.Errorf("%q: no error, redis said %q", bad, reply.Str)
			continue
		}
		if err.Error() != string(reply.Str) {
			t.Errorf("%q:\n got  %q\n want %q", bad, err.Error(), reply.Str)
		}
	}
}
