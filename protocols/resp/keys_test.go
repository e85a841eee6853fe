package resp

import (
	"bytes"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// keyCases are commands with the indexes of their keys, as Redis 7.0's
// COMMAND GETKEYS gives them (TestKeysMatchRedis checks that).
var keyCases = []struct {
	args string
	want []int
}{
	{"get k", []int{1}},
	{"set k v", []int{1}},
	{"set k v get", []int{1}},
	{"mset a 1 b 2 c 3", []int{1, 3, 5}},
	{"msetnx a 1 b 2", []int{1, 3}},
	{"del a b c", []int{1, 2, 3}},
	{"mget a b", []int{1, 2}},
	{"eval s 2 a b x y", []int{3, 4}},
	{"eval s 0 x", nil},
	{"evalsha s 1 a", []int{3}},
	{"eval_ro s 1 a", []int{3}},
	{"fcall f 2 a b", []int{3, 4}},
	{"fcall_ro f 1 a x", []int{3}},
	{"eval s 01 a", []int{3}},              // string2ll refuses 01; evalGetKeys's atoi reads 1
	{"eval s 4294967297 a", []int{3}},      // Redis's (int) cast: the count is 1
	{"xread streams a b 0 0", []int{2, 3}}, // the first half after STREAMS
	{"XREAD COUNT 10 BLOCK 0 STREAMS a 0", []int{6}},
	{"xreadgroup group g c streams a b > >", []int{5, 6}},
	{"xreadgroup group g c count 1 noack streams a >", []int{8}},
	{"zunionstore d 2 a b", []int{1, 3, 4}},
	{"zinterstore d 3 a b c weights 1 2 3", []int{1, 3, 4, 5}},
	{"zdiffstore d 1 a", []int{1, 3}},
	{"zunion 2 a b", []int{2, 3}},
	{"zinter 1 a withscores", []int{2}},
	{"sintercard 2 a b limit 1", []int{2, 3}},
	{"zintercard 1 a", []int{2}},
	{"sort k", []int{1}},
	{"sort k store d", []int{1, 3}},
	{"SORT k BY w:* LIMIT 0 10 GET o:* ALPHA STORE d", []int{1, 11}},
	{"sort k store d store e", []int{1, 5}}, // the last STORE wins, as in SORT
	{"sort k get store store d", []int{1, 5}},
	{"sort_ro k by x", []int{1}},
	{"migrate h 6379 k 0 5000", []int{3}},
	{"migrate h 6379 \"\" 0 5000 copy keys a b c", []int{8, 9, 10}},
	{"migrate h 6379 \"\" 0 5000 replace auth pw keys a", []int{10}},
	{"georadius g 0 0 1 km", []int{1}},
	{"georadius g 0 0 1 km store d", []int{1, 7}},
	{"georadius g 0 0 1 km storedist d", []int{1, 7}},
	{"georadius g 0 0 1 km store d storedist e", []int{1, 7, 9}},
	{"georadiusbymember g m 1 km store d", []int{1, 6}},
	{"geosearchstore d s frommember m byradius 1 km", []int{1, 2}},
	{"lmpop 2 a b left", []int{2, 3}},
	{"lmpop 1 a left count 2", []int{2}},
	{"zmpop 2 a b min", []int{2, 3}},
	{"blmpop 0 2 a b left", []int{3, 4}},
	{"bzmpop 1.5 1 a max count 3", []int{3}},
	{"blpop a b 0", []int{1, 2}}, // the last argument is the timeout
	{"brpop a 1.5", []int{1}},
	{"bzpopmin a b c 0", []int{1, 2, 3}},
	{"brpoplpush a b 0", []int{1, 2}},
	{"blmove a b left right 0", []int{1, 2}},
	{"object encoding k", []int{2}},
	{"object freq k", []int{2}},
	{"memory usage k", []int{2}},
	{"memory usage k samples 5", []int{2}},
	{"xinfo stream s full", []int{2}},
	{"xgroup create s g $", []int{2}},
	{"bitop and d a b c", []int{2, 3, 4, 5}},
	{"bitop not d a", []int{2, 3}},
	{"rename a b", []int{1, 2}},
	{"renamenx a b", []int{1, 2}},
	{"smove a b m", []int{1, 2}},
	{"lmove a b left right", []int{1, 2}},
	{"rpoplpush a b", []int{1, 2}},
	{"copy a b", []int{1, 2}},
	{"copy a b db 1 replace", []int{1, 2}},
	{"sinterstore d a b", []int{1, 2, 3}},
	{"pfmerge d a b", []int{1, 2, 3}},
	{"pfcount a b", []int{1, 2}},
	{"lcs a b", []int{1, 2}},
	{"touch a b", []int{1, 2}},
	{"watch a b", []int{1, 2}},
	{"exists a", []int{1}},
	{"bitfield k get u8 0", []int{1}},
	{"spublish ch msg", nil}, // the channel's spec is not_key
}

// splitTestArgs splits on spaces; "" stands for the empty argument.
func splitTestArgs(s string) [][]byte {
	f := bytes.Fields([]byte(s))
	for i, a := range f {
		if string(a) == `""` {
			f[i] = []byte{}
		}
	}
	return f
}

func TestKeys(t *testing.T) {
	tab := loadCommandTable(t)
	for _, tc := range keyCases {
		args := splitTestArgs(tc.args)
		info, err := tab.Lookup(args)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		got := info.Keys(args, nil)
		if !sameInts(got, tc.want) {
			t.Errorf("%s: keys %v, want %v", tc.args, got, tc.want)
		}
		// Keys appends: what dst held stays in front.
		if got := info.Keys(args, []int{-7}); got[0] != -7 || !sameInts(got[1:], tc.want) {
			t.Errorf("%s: appended %v", tc.args, got)
		}
	}
}

// TestKeysMatchRedis asks a real redis-server for COMMAND GETKEYS on
// keyCases and on random argument lists for every command with keys, and
// requires Keys to name the same arguments.
func TestKeysMatchRedis(t *testing.T) {
	r := startCommandRedis(t)
	tab := loadCommandTable(t)
	partialOnly := make(map[string]bool)
	for _, tc := range keyCases {
		compareGetKeys(t, r, tab, splitTestArgs(tc.args), partialOnly)
	}
	// Tokens that steer the keyword and count logic, counts that string2ll
	// and atoi read differently, and counts that overflow a C int.
	tokens := []string{
		"STORE", "store", "STOREDIST", "STREAMS", "streams", "KEYS", "BLOCK", "COUNT",
		"GROUP", "NOACK", "LIMIT", "GET", "BY", "AUTH", "AUTH2", "COPY", "REPLACE",
		"store\x00x", "0", "1", "2", "3", "-1", "01", "+1", " 2", "2x", "4294967297",
		"4294967296", "-4294967295", "99999999999999999999", "9223372036854775807",
		"2147483647", "1073741823", "",
	}
	rng := rand.New(rand.NewSource(1))
	var withKeys []*CommandInfo
	for _, c := range allCommands(tab) {
		if !c.IsContainer() && !c.Local && hasKeys(c) {
			withKeys = append(withKeys, c)
		}
	}
	n := 0
	for round := 0; round < 100; round++ {
		for _, c := range withKeys {
			args := [][]byte{}
			top, sub := c.topAndSub()
			args = append(args, []byte(randomCase(rng, top)))
			if sub != "" {
				args = append(args, []byte(sub))
			}
			for i, k := 0, rng.Intn(9); i < k; i++ {
				if rng.Intn(3) == 0 {
					args = append(args, []byte(fmt.Sprintf("k%d", len(args))))
				} else {
					args = append(args, []byte(tokens[rng.Intn(len(tokens))]))
				}
			}
			compareGetKeys(t, r, tab, args, partialOnly)
			n++
		}
	}
	t.Logf("compared %d random commands over %d commands with keys", n, len(withKeys))
	t.Logf("where Keys kept partial keys and Redis none: %v", partialOnly)
}

func randomCase(rng *rand.Rand, s string) string {
	b := []byte(s)
	for i := range b {
		if rng.Intn(2) == 0 && 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// hasKeys is Redis's doesCommandHaveKeys: a getkeys proc, or a key spec
// that is not not_key; before Redis 7, a first key.
func hasKeys(c *CommandInfo) bool {
	if procFor(c) != nil {
		return true
	}
	switch c.specKindOf() {
	case specsUsable, specsVariable:
		return true
	case specsNone:
		return c.FirstKey > 0
	}
	return false
}

func compareGetKeys(t *testing.T, r *commandConn, tab *CommandTable, args [][]byte, partialOnly map[string]bool) {
	t.Helper()
	req := append(argsOf("COMMAND", "GETKEYS"), args...)
	reply := r.do(req...)
	info, err := tab.Lookup(args)
	switch {
	case len(args) < 2:
		return // COMMAND GETKEYS needs an argument after the command
	case reply.Kind == Error && string(reply.Str) == "ERR Invalid number of arguments specified for command":
		if err == nil {
			t.Errorf("%q: redis says wrong arity, Lookup accepts it", args)
		}
		return
	case reply.Kind == Error && string(reply.Str) == "ERR Invalid command specified":
		if err == nil {
			t.Errorf("%q: redis says no such command, Lookup found %s", args, info.Name)
		}
		return
	case err != nil:
		t.Errorf("%q: Lookup: %v; redis: %s", args, err, reply)
		return
	}
	got := info.Keys(args, nil)
	for _, k := range got {
		if k < 1 || k >= len(args) {
			t.Fatalf("%q: key index %d out of range", args, k)
		}
	}
	if reply.Kind == Error {
		if string(reply.Str) != "ERR Invalid arguments specified for command" &&
			string(reply.Str) != "ERR The command has no key arguments" {
			t.Errorf("%q: unexpected redis error %q", args, reply.Str)
		}
		if len(got) == 0 {
			return
		}
		// Where a spec cannot place its keys and Redis has no getkeys
		// proc to fall back on, Redis gives up on all keys; Keys keeps
		// what the other specs found (PFMERGE dest with no sources
		// still writes dest).
		partial, _ := info.specKeys(args, nil, true)
		if procFor(info) != nil || !sameInts(got, partial) {
			t.Errorf("%q: keys %v, redis: %s", args, got, reply.Str)
		}
		partialOnly[info.Name] = true
		return
	}
	var want []string
	for _, e := range reply.Elems {
		want = append(want, string(e.Str))
	}
	var gotNames []string
	for _, k := range got {
		gotNames = append(gotNames, string(args[k]))
	}
	if strings.Join(gotNames, "\x00") != strings.Join(want, "\x00") || len(gotNames) != len(want) {
		t.Errorf("%q: keys %v = %q, redis %q", args, got, gotNames, want)
	}
}

// TestKeysHostile feeds argument lists no client should send: Keys must
// not panic and must stay in range.
func TestKeysHostile(t *testing.T) {
	tab := loadCommandTable(t)
	hostile := []string{
		"eval s -1 a", "eval s 99999999999999999999 a", "eval s 9223372036854775807 a",
		"eval s -9223372036854775808 a", "eval s 2147483647 a", "eval s -2147483648 a",
		"eval", "eval s", "zunionstore", "zunionstore d", "zunionstore d 5 a",
		"xread streams", "xread streams a", "xread", "xreadgroup group", "sort", "migrate h",
		"migrate h p \"\" 0 5000 keys", "georadius", "blmpop 0", "lmpop", "mset", "mset a",
		"object encoding", "memory usage", "bitop", "get", "blpop", "set",
	}
	for _, h := range hostile {
		args := splitTestArgs(h)
		c := tab.Command(string(args[0]))
		if len(args) > 1 && c.IsContainer() {
			c = c.Subcommands[string(args[1])]
		}
		for _, k := range c.Keys(args, nil) {
			if k < 1 || k >= len(args) {
				t.Errorf("%s: key %d out of range", h, k)
			}
		}
	}
	// Keys on no args at all, and on a nil info.
	if got := tab.Command("get").Keys(nil, nil); len(got) != 0 {
		t.Errorf("no args: %v", got)
	}
	var nilInfo *CommandInfo
	if got := nilInfo.Keys(argsOf("get", "k"), nil); len(got) != 0 {
		t.Errorf("nil info: %v", got)
	}
}

// TestKeysHostileTable builds specs Redis never sends and checks that Keys
// still neither loops forever nor leaves args.
func TestKeysHostileTable(t *testing.T) {
	args := argsOf("cmd", "a", "b", "c", "d")
	for _, s := range []KeySpec{
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysRange, LastKey: -1, KeyStep: 0},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysRange, LastKey: -1, KeyStep: -1},
		{BeginSearch: BeginSearchIndex, Index: -3, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 0, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 9, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysRange, LastKey: 99, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysRange, LastKey: -99, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysRange, LastKey: -3, Limit: 2, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysRange, LastKey: -1, Limit: -2, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysKeyNum, KeyNumIdx: -5, FirstKey: 1, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysKeyNum, KeyNumIdx: 50, FirstKey: 1, KeyStep: 1},
		{BeginSearch: BeginSearchIndex, Index: 1, FindKeys: FindKeysKeyNum, KeyNumIdx: 0, FirstKey: -9, KeyStep: 1},
		{BeginSearch: BeginSearchKeyword, Keyword: "b", StartFrom: -1, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchKeyword, Keyword: "b", StartFrom: -99, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchKeyword, Keyword: "b", StartFrom: 99, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchKeyword, Keyword: "d", StartFrom: -1, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchKeyword, Keyword: "b", StartFrom: 0, FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1},
		{BeginSearch: BeginSearchKeyword, Keyword: "a", StartFrom: 1, FindKeys: FindKeysUnknown},
	} {
		for _, arity := range []int{-1, 5} {
			c := &CommandInfo{Name: "cmd", Arity: arity, KeySpecs: []KeySpec{s}}
			for n := 0; n <= len(args); n++ {
				for _, k := range c.Keys(args[:n], nil) {
					if k < 1 || k >= n {
						t.Errorf("spec %+v on %d args: key %d", s, n, k)
					}
				}
			}
		}
	}
	// A keyword found backwards from the end: index 2 ("b") is found and
	// its key is "c"; a keyword in the last place has no key after it.
	back := &CommandInfo{Name: "cmd", Arity: -1, KeySpecs: []KeySpec{{
		BeginSearch: BeginSearchKeyword, Keyword: "B", StartFrom: -1,
		FindKeys: FindKeysRange, LastKey: 0, KeyStep: 1,
	}}}
	if got := back.Keys(args, nil); !sameInts(got, []int{3}) {
		t.Errorf("backward keyword: %v", got)
	}
	// Legacy ranges from a hostile table.
	for _, c := range []*CommandInfo{
		{Name: "x", Arity: -1, FirstKey: 1, LastKey: -1, Step: 0},
		{Name: "x", Arity: -1, FirstKey: -1, LastKey: -1, Step: 1},
		{Name: "x", Arity: -1, FirstKey: 1, LastKey: -99, Step: 1},
		{Name: "x", Arity: -1, FirstKey: 3, LastKey: 1, Step: 1},
	} {
		for _, k := range c.Keys(args, nil) {
			if k < 1 || k >= len(args) {
				t.Errorf("legacy %+v: key %d", c, k)
			}
		}
	}
}

func TestString2ll(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1": 1, "-1": -1, "42": 42,
		"9223372036854775807":  1<<63 - 1,
		"-9223372036854775808": -1 << 63,
	} {
		if got, ok := string2ll([]byte(in)); !ok || got != want {
			t.Errorf("%q: %d %v", in, got, ok)
		}
	}
	for _, in := range []string{
		"", "-", "01", "-0", "+1", " 1", "1 ", "1x", "00", "9223372036854775808",
		"-9223372036854775809", "123456789012345678901", "1\x00",
	} {
		if got, ok := string2ll([]byte(in)); ok {
			t.Errorf("%q: accepted as %d", in, got)
		}
	}
}

func TestCAtoi(t *testing.T) {
	for in, want := range map[string]int{
		"0": 0, "1": 1, "-1": -1, "+7": 7, "  12": 12, "\t\n\v\f\r 3": 3,
		"01": 1, "2x": 2, "x2": 0, "": 0, "-": 0, "3\x004": 3,
		"4294967297":            1, // (int) of a long: the low 32 bits
		"4294967296":            0,
		"2147483648":            -2147483648,
		"99999999999999999999":  -1, // strtol saturates at LONG_MAX
		"-99999999999999999999": 0,  // and at LONG_MIN
	} {
		if got := cAtoi([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

func TestStrcaseEqual(t *testing.T) {
	for _, tc := range []struct {
		a, kw string
		want  bool
	}{
		{"STORE", "store", true},
		{"StOrE", "STORE", true},
		{"store\x00junk", "store", true}, // C stops at the NUL
		{"stor", "store", false},
		{"stores", "store", false},
		{"\u212aEYS", "keys", false}, // the Kelvin sign is not ASCII K
	} {
		if got := strcaseEqual([]byte(tc.a), tc.kw); got != tc.want {
			t.Errorf("%q vs %q: %v", tc.a, tc.kw, got)
		}
	}
}
