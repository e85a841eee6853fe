package resp

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// rwNow is the time the table tests prepare at: 2023-11-14T22:13:20Z.
const rwNow = 1_700_000_000_000

// rwArgs splits a command at spaces; arguments hold no spaces in these
// tables.
func rwArgs(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Split(s, " ") {
		out = append(out, []byte(f))
	}
	return out
}

// rwText joins commands for comparison, one per line.
func rwText(cmds [][][]byte) string {
	var lines []string
	for _, c := range cmds {
		var words []string
		for _, a := range c {
			words = append(words, string(a))
		}
		lines = append(lines, strings.Join(words, " "))
	}
	return strings.Join(lines, "\n")
}

// rwReplies parses concatenated RESP values.
func rwReplies(t testing.TB, s string) []Value {
	t.Helper()
	var out []Value
	b := []byte(s)
	for len(b) > 0 {
		v, n, err := ParseValue(b)
		if err != nil {
			t.Fatalf("bad reply text %q: %v", s, err)
		}
		out = append(out, v)
		b = b[n:]
	}
	return out
}

// rwBulk is a bulk string reply.
func rwBulk(s string) string {
	return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n"
}

// rwEffect is one reply to a plan and the commands it logs.
type rwEffect struct {
	replies string // RESP, one value per Exec command
	log     string // logged commands, one per line; "" for none
	err     bool   // Effect fails with ErrUnexpectedReply
}

type rwCase struct {
	cmd     string
	exec    string // Exec, one command per line; "" means the command itself
	kind    string
	atomic  bool
	effects []rwEffect
}

const (
	rwOK   = "+OK\r\n"
	rwNil  = "$-1\r\n"
	rwNilA = "*-1\r\n"
	rwErr  = "-ERR something\r\n"
	rwZero = ":0\r\n"
	rwOne  = ":1\r\n"
)

// rwInvalid is a command Redis 7.0 rejects: sent as is, nothing logged,
// and a success would be a surprise.
func rwInvalid(cmd string) rwCase {
	return rwCase{cmd: cmd, effects: []rwEffect{{replies: rwErr}, {replies: rwOK, err: true}}}
}

var rwCases = []rwCase{
	// SET
	{cmd: "SET k v", effects: []rwEffect{{rwOK, "SET k v", false}, {rwErr, "", false}}},
	{cmd: "SET k v EX 10", exec: "SET k v PXAT 1700000010000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "SET k v PXAT 1700000010000", false}, {rwErr, "", false}}},
	{cmd: "set k v px 1500 nx", exec: "SET k v NX PXAT 1700000001500", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "SET k v PXAT 1700000001500", false}, {rwNil, "", false}}},
	{cmd: "SET k v XX GET EX 5", exec: "SET k v XX GET PXAT 1700000005000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwBulk("old"), "SET k v PXAT 1700000005000", false}, {rwNil, "", false}}},
	{cmd: "SET k v NX GET", kind: KindSetGet,
		effects: []rwEffect{{rwNil, "SET k v", false}, {rwBulk("old"), "", false}, {rwOK, "", true}}},
	{cmd: "SET k v GET", kind: KindSetGet,
		effects: []rwEffect{{rwNil, "SET k v", false}, {rwBulk("old"), "SET k v", false}}},
	{cmd: "SET k v get get", kind: KindSetGet, effects: []rwEffect{{rwNil, "SET k v", false}}},
	{cmd: "SET k v NX", effects: []rwEffect{{rwOK, "SET k v", false}, {rwNil, "", false}}},
	{cmd: "SET k v KEEPTTL", effects: []rwEffect{{rwOK, "SET k v KEEPTTL", false}}},
	{cmd: "SET k v KEEPTTL GET XX", kind: KindSetGet,
		effects: []rwEffect{{rwBulk("o"), "SET k v KEEPTTL", false}, {rwNil, "", false}}},
	{cmd: "SET k v EXAT 1700000100", exec: "SET k v PXAT 1700000100000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "SET k v PXAT 1700000100000", false}}},
	{cmd: "SET k v PXAT 1700000100123", effects: []rwEffect{{rwOK, "SET k v PXAT 1700000100123", false}}},
	{cmd: "SET k v PXAT 1700000100123 NX", effects: []rwEffect{{rwOK, "SET k v PXAT 1700000100123", false}}},
	{cmd: "SET k v EX 10 EX 20", exec: "SET k v PXAT 1700000020000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "SET k v PXAT 1700000020000", false}}},
	{cmd: "SET k v Ex\x00junk 10", exec: "SET k v PXAT 1700000010000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "SET k v PXAT 1700000010000", false}}},
	{cmd: "SET k v EX 9223372036854", exec: "SET k v PXAT 9225072036854000", kind: KindExpireAbsolute},
	rwInvalid("SET k v EX 0"),
	rwInvalid("SET k v EX -1"),
	rwInvalid("SET k v EX 10 PX 5"),
	rwInvalid("SET k v NX XX"),
	rwInvalid("SET k v EX"),
	rwInvalid("SET k v EX 1.5"),
	rwInvalid("SET k v EX 010"),
	rwInvalid("SET k v EX +10"),
	rwInvalid("SET k v KEEPTTL EX 10"),
	rwInvalid("SET k v EX 9223372036854775"),
	rwInvalid("SET k v PX 9223372036854775807"),
	rwInvalid("SET k v PXAT 0"),
	rwInvalid("SET k v EXAT 9223372036854776"),
	rwInvalid("SET k v PERSIST"),
	rwInvalid("SET k"),
	rwInvalid("SET k v FOO"),

	// SETEX, PSETEX
	{cmd: "SETEX k 10 v", exec: "SET k v PXAT 1700000010000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "SET k v PXAT 1700000010000", false}, {rwErr, "", false}}},
	{cmd: "psetex k 1500 v", exec: "SET k v PXAT 1700000001500", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "SET k v PXAT 1700000001500", false}}},
	rwInvalid("SETEX k 0 v"),
	rwInvalid("SETEX k -5 v"),
	rwInvalid("SETEX k x v"),
	rwInvalid("SETEX k 10"),
	rwInvalid("SETEX k 10 v NX"),
	rwInvalid("PSETEX k 9223372036854775807 v"),

	// EXPIRE family
	{cmd: "EXPIRE k 10", exec: "PEXPIREAT k 1700000010000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOne, "PEXPIREAT k 1700000010000", false}, {rwZero, "", false}, {rwOK, "", true}}},
	{cmd: "EXPIRE k 10 NX", exec: "PEXPIREAT k 1700000010000 NX", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOne, "PEXPIREAT k 1700000010000", false}}},
	{cmd: "EXPIRE k -5", exec: "PEXPIREAT k 1699999995000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOne, "PEXPIREAT k 1699999995000", false}}},
	{cmd: "PEXPIRE k 1500 gt", exec: "PEXPIREAT k 1700000001500 gt", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOne, "PEXPIREAT k 1700000001500", false}}},
	{cmd: "EXPIREAT k 1700000100 XX LT xx", exec: "PEXPIREAT k 1700000100000 XX LT xx", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOne, "PEXPIREAT k 1700000100000", false}}},
	{cmd: "EXPIRE k -9223372036854775", exec: "PEXPIREAT k -9223370336854775000", kind: KindExpireAbsolute},
	{cmd: "PEXPIREAT k 1700000100123", effects: []rwEffect{{rwOne, "PEXPIREAT k 1700000100123", false}}},
	{cmd: "PEXPIREAT k -5 NX", effects: []rwEffect{{rwOne, "PEXPIREAT k -5", false}}},
	{cmd: "EXPIRE k 10 nx\x00zz", exec: "PEXPIREAT k 1700000010000 nx\x00zz", kind: KindExpireAbsolute},
	rwInvalid("EXPIRE k 9223372036854775808"),
	rwInvalid("EXPIRE k 9223372036854776"),
	rwInvalid("EXPIRE k -9223372036854776"),
	rwInvalid("EXPIRE k 9223372036854775"),
	rwInvalid("EXPIRE k 10 NX XX"),
	rwInvalid("EXPIRE k 10 NX GT"),
	rwInvalid("EXPIRE k 10 GT LT"),
	rwInvalid("EXPIRE k 10 FOO"),
	rwInvalid("EXPIRE k"),
	rwInvalid("EXPIRE k 1.5"),
	rwInvalid("PEXPIRE k 9223372036854775807"),
	rwInvalid("EXPIREAT k 9223372036854776"),

	// GETEX
	{cmd: "GETEX k", effects: []rwEffect{{rwBulk("v"), "", false}, {rwNil, "", false}}},
	{cmd: "GETEX k EX 10", exec: "GETEX k PXAT 1700000010000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwBulk("v"), "PEXPIREAT k 1700000010000", false}, {rwNil, "", false}, {rwOK, "", true}}},
	{cmd: "GETEX k px 10", exec: "GETEX k PXAT 1700000000010", kind: KindExpireAbsolute},
	{cmd: "GETEX k EXAT 1700000100", exec: "GETEX k PXAT 1700000100000", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwBulk("v"), "PEXPIREAT k 1700000100000", false}}},
	{cmd: "GETEX k PXAT 1700000100001", effects: []rwEffect{{rwBulk("v"), "PEXPIREAT k 1700000100001", false}}},
	{cmd: "GETEX k PERSIST", effects: []rwEffect{{rwBulk("v"), "PERSIST k", false}, {rwNil, "", false}}},
	// A bad expiry on a missing key is not checked: Redis replies nil.
	{cmd: "GETEX k EX 0", effects: []rwEffect{{rwNil, "", false}, {rwErr, "", false}, {rwBulk("v"), "", true}}},
	rwInvalid("GETEX k NX"),
	rwInvalid("GETEX k KEEPTTL"),
	rwInvalid("GETEX k PERSIST EX 10"),
	rwInvalid("GETEX k EX"),

	// RESTORE
	{cmd: "RESTORE k 5000 P", exec: "RESTORE k 1700000005000 P ABSTTL", kind: KindExpireAbsolute,
		effects: []rwEffect{{rwOK, "RESTORE k 1700000005000 P ABSTTL", false}, {rwErr, "", false}}},
	{cmd: "RESTORE k 5000 P replace IDLETIME 10", exec: "RESTORE k 1700000005000 P replace IDLETIME 10 ABSTTL", kind: KindExpireAbsolute},
	{cmd: "RESTORE k 5000 P FREQ 255 REPLACE", exec: "RESTORE k 1700000005000 P FREQ 255 REPLACE ABSTTL", kind: KindExpireAbsolute},
	{cmd: "RESTORE k 0 P", effects: []rwEffect{{rwOK, "RESTORE k 0 P", false}}},
	{cmd: "RESTORE k 1700000005000 P ABSTTL", effects: []rwEffect{{rwOK, "RESTORE k 1700000005000 P ABSTTL", false}}},
	{cmd: "RESTORE k 9223372036854775807 P", exec: "RESTORE k 1 P ABSTTL", kind: KindExpireAbsolute},
	rwInvalid("RESTORE k -1 P"),
	rwInvalid("RESTORE k x P"),
	rwInvalid("RESTORE k 5 P IDLETIME"),
	rwInvalid("RESTORE k 5 P IDLETIME -1"),
	rwInvalid("RESTORE k 5 P FREQ 256"),
	rwInvalid("RESTORE k 5 P IDLETIME 1 FREQ 1"),
	rwInvalid("RESTORE k 5 P FOO"),
	rwInvalid("RESTORE k 5"),

	// Effects from the reply
	{cmd: "GETDEL k", kind: KindGetDel,
		effects: []rwEffect{{rwBulk("v"), "DEL k", false}, {rwNil, "", false}, {rwOne, "", true}}},
	rwInvalid("GETDEL k x"),
	{cmd: "GETSET k v", kind: KindGetSet,
		effects: []rwEffect{{rwBulk("old"), "SET k v", false}, {rwNil, "SET k v", false}}},
	{cmd: "SPOP s", kind: KindSpop,
		effects: []rwEffect{{rwBulk("m"), "SREM s m", false}, {rwNil, "", false}, {"*1\r\n$1\r\nm\r\n", "", true}}},
	{cmd: "SPOP s 3", kind: KindSpop, effects: []rwEffect{
		{"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", "SREM s a b c", false},
		{"*0\r\n", "", false}, {rwNilA, "", false}, {"*1\r\n:1\r\n", "", true}}},
	rwInvalid("SPOP s 1 2"),
	{cmd: "INCRBYFLOAT k 0.1", kind: KindIncrByFloat,
		effects: []rwEffect{{rwBulk("1.6"), "SET k 1.6 KEEPTTL", false}, {rwErr, "", false}}},
	{cmd: "HINCRBYFLOAT h f 1.5", kind: KindHIncrByFloat,
		effects: []rwEffect{{rwBulk("2.5"), "HSET h f 2.5", false}}},

	// Streams
	{cmd: "XADD s * f v", kind: KindXAddID, effects: []rwEffect{
		{rwBulk("1700000000000-0"), "XADD s 1700000000000-0 f v", false}, {rwErr, "", false}, {rwNil, "", true}}},
	{cmd: "XADD s 1700000000000-* f v", kind: KindXAddID,
		effects: []rwEffect{{rwBulk("1700000000000-3"), "XADD s 1700000000000-3 f v", false}}},
	{cmd: "XADD s 5-1 f v", effects: []rwEffect{{rwBulk("5-1"), "XADD s 5-1 f v", false}}},
	{cmd: "XADD s NOMKSTREAM * f v", kind: KindXAddID,
		effects: []rwEffect{{rwNil, "", false}, {rwBulk("1-1"), "XADD s NOMKSTREAM 1-1 f v", false}}},
	{cmd: "XADD s MAXLEN 100 * f v", kind: KindXAddID,
		effects: []rwEffect{{rwBulk("1-0"), "XADD s MAXLEN 100 1-0 f v", false}}},
	{cmd: "XADD s MAXLEN ~ 100 * f v", exec: "XADD s MAXLEN ~ 100 * f v\nXLEN s", kind: KindXTrimExact, atomic: true,
		effects: []rwEffect{
			{rwBulk("1-0") + ":120\r\n", "XADD s MAXLEN = 120 1-0 f v", false},
			{rwErr + ":120\r\n", "", false},
			{rwOK, "", true},
			{rwBulk("1-0") + rwOK, "", true}}},
	{cmd: "XADD s nomkstream minid ~ 5-0 LIMIT 10 * a b c d", exec: "XADD s nomkstream minid ~ 5-0 LIMIT 10 * a b c d\nXLEN s",
		kind: KindXTrimExact, atomic: true, effects: []rwEffect{
			{rwBulk("9-0") + ":7\r\n", "XADD s NOMKSTREAM MAXLEN = 7 9-0 a b c d", false},
			{rwNil + ":0\r\n", "", false}}},
	{cmd: "XADD s MAXLEN = 5 7-1 f v", effects: []rwEffect{{rwBulk("7-1"), "XADD s MAXLEN = 5 7-1 f v", false}}},
	// "MAXLEN" as the last argument before the pairs is an ID to Redis.
	{cmd: "XADD s MAXLEN ~ 10 5 f v", exec: "XADD s MAXLEN ~ 10 5 f v\nXLEN s", kind: KindXTrimExact, atomic: true},
	rwInvalid("XADD s * f"),
	rwInvalid("XADD s *"),
	rwInvalid("XADD s MAXLEN 5"),
	rwInvalid("XADD s MAXLEN 5 MINID 3 * f v"),
	{cmd: "XTRIM s MAXLEN ~ 100", exec: "XTRIM s MAXLEN ~ 100\nXLEN s", kind: KindXTrimExact, atomic: true,
		effects: []rwEffect{{":50\r\n:120\r\n", "XTRIM s MAXLEN = 120", false}, {":0\r\n:120\r\n", "", false}}},
	{cmd: "XTRIM s MINID ~ 5 LIMIT 3", exec: "XTRIM s MINID ~ 5 LIMIT 3\nXLEN s", kind: KindXTrimExact, atomic: true,
		effects: []rwEffect{{":3\r\n:9\r\n", "XTRIM s MAXLEN = 9", false}}},
	{cmd: "XTRIM s MINID 5-0", effects: []rwEffect{{":3\r\n", "XTRIM s MINID 5-0", false}, {rwZero, "", false}}},
	rwInvalid("XTRIM s"),
	rwInvalid("XTRIM s FOO"),

	// Blocking pops
	{cmd: "BLPOP a b 0", kind: KindBlockingPop, atomic: true, effects: []rwEffect{
		{"*2\r\n$1\r\nb\r\n$1\r\nx\r\n", "LPOP b", false}, {rwNilA, "", false}, {rwOK, "", true}}},
	{cmd: "BRPOP a 1.5", kind: KindBlockingPop, atomic: true,
		effects: []rwEffect{{"*2\r\n$1\r\na\r\n$1\r\nx\r\n", "RPOP a", false}}},
	{cmd: "BZPOPMIN z 0", kind: KindBlockingPop, atomic: true,
		effects: []rwEffect{{"*3\r\n$1\r\nz\r\n$1\r\nm\r\n$1\r\n1\r\n", "ZPOPMIN z", false}, {rwNilA, "", false}}},
	{cmd: "BZPOPMAX z y 0", kind: KindBlockingPop, atomic: true,
		effects: []rwEffect{{"*3\r\n$1\r\ny\r\n$1\r\nm\r\n$1\r\n1\r\n", "ZPOPMAX y", false}}},
	{cmd: "BRPOPLPUSH a b 0", kind: KindBlockingPop, atomic: true,
		effects: []rwEffect{{rwBulk("x"), "RPOPLPUSH a b", false}, {rwNil, "", false}}},
	{cmd: "BLMOVE a b LEFT right 0", kind: KindBlockingPop, atomic: true,
		effects: []rwEffect{{rwBulk("x"), "LMOVE a b LEFT right", false}, {rwNil, "", false}}},
	{cmd: "BLMPOP 0 2 a b right COUNT 5", kind: KindBlockingPop, atomic: true, effects: []rwEffect{
		{"*2\r\n$1\r\nb\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n", "LMPOP 1 b RIGHT COUNT 2", false}, {rwNilA, "", false}}},
	{cmd: "BZMPOP 1 1 z MIN", kind: KindBlockingPop, atomic: true, effects: []rwEffect{
		{"*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nm\r\n$1\r\n1\r\n", "ZMPOP 1 z MIN COUNT 1", false}}},
	{cmd: "BLMPOP 0 2 a b UP", atomic: true, effects: []rwEffect{{rwErr, "", false}}},
	{cmd: "BLMPOP 0 3 a b LEFT", atomic: true, effects: []rwEffect{{rwErr, "", false}}},
	{cmd: "XREADGROUP GROUP g c COUNT 10 BLOCK 100 STREAMS s >", exec: "XREADGROUP GROUP g c COUNT 10 STREAMS s >",
		kind: KindXReadGroupBlock, effects: []rwEffect{
			{rwNilA, "XREADGROUP GROUP g c COUNT 10 STREAMS s >", false},
			{"*1\r\n*2\r\n$1\r\ns\r\n*0\r\n", "XREADGROUP GROUP g c COUNT 10 STREAMS s >", false}}},
	{cmd: "XREADGROUP GROUP g c BLOCK -1 STREAMS s >", effects: []rwEffect{{rwErr, "", false}}},
	{cmd: "XREADGROUP GROUP g c NOACK STREAMS s >", effects: []rwEffect{{rwNilA, "XREADGROUP GROUP g c NOACK STREAMS s >", false}}},

	// Commands whose 0, nil or empty reply changed nothing
	{cmd: "DEL a b", effects: []rwEffect{{rwZero, "", false}, {":2\r\n", "DEL a b", false}}},
	{cmd: "SETNX k v", effects: []rwEffect{{rwZero, "", false}, {rwOne, "SETNX k v", false}}},
	{cmd: "LPOP l", effects: []rwEffect{{rwNil, "", false}, {rwBulk("x"), "LPOP l", false}}},
	{cmd: "ZPOPMIN z", effects: []rwEffect{{"*0\r\n", "", false}}},
	{cmd: "LMPOP 1 l LEFT", effects: []rwEffect{{rwNilA, "", false}}},
	{cmd: "HSET h f v", effects: []rwEffect{{rwZero, "HSET h f v", false}}},
	{cmd: "ZADD z 1 m", effects: []rwEffect{{rwZero, "ZADD z 1 m", false}}},
	{cmd: "FCALL f 0", effects: []rwEffect{{rwOne, "FCALL f 0", false},
		{"-ERR Function not found\r\n", "", false}, {"-MYERR x\r\n", "FCALL f 0", false}}},
	{cmd: "SCRIPT FLUSH", effects: []rwEffect{{rwOK, "SCRIPT FLUSH", false}}},
	{cmd: "SCRIPT EXISTS abc", effects: []rwEffect{{"*1\r\n:0\r\n", "", false}}},
	{cmd: "SELECT 2", effects: []rwEffect{{rwOK, "SELECT 2", false}}},
}

func TestPrepareEffect(t *testing.T) {
	for _, c := range rwCases {
		t.Run(c.cmd, func(t *testing.T) {
			p, err := Prepare(rwArgs(c.cmd), rwNow, NewScriptCache(0))
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			want := c.exec
			if want == "" {
				want = c.cmd
			}
			if got := rwText(p.Exec); got != want {
				t.Errorf("Exec:\n got %q\nwant %q", got, want)
			}
			if p.Kind != c.kind {
				t.Errorf("Kind = %q, want %q", p.Kind, c.kind)
			}
			if p.Atomic != c.atomic {
				t.Errorf("Atomic = %v, want %v", p.Atomic, c.atomic)
			}
			for _, e := range c.effects {
				replies := rwReplies(t, e.replies)
				log, err := p.Effect(replies)
				if e.err {
					if !errors.Is(err, ErrUnexpectedReply) {
						t.Errorf("Effect(%v) = %q, %v; want ErrUnexpectedReply", replies, rwText(log), err)
					}
					continue
				}
				if err != nil {
					t.Errorf("Effect(%v): %v", replies, err)
					continue
				}
				if got := rwText(log); got != e.log {
					t.Errorf("Effect(%v):\n got %q\nwant %q", replies, got, e.log)
				}
			}
		})
	}
}

func TestPrepareErrors(t *testing.T) {
	for _, tc := range []struct {
		args [][]byte
		want error
	}{
		{nil, ErrEmptyCommand},
		{rwArgs("MULTI"), ErrTransactionCommand},
		{rwArgs("exec"), ErrTransactionCommand},
		{rwArgs("WATCH k"), ErrTransactionCommand},
		{rwArgs("EVALSHA 0123456789012345678901234567890123456789 0"), ErrNoScript},
		{rwArgs("EVALSHA abc 0"), ErrNoScript},
	} {
		if _, err := Prepare(tc.args, rwNow, NewScriptCache(0)); err != tc.want {
			t.Errorf("Prepare(%q) error = %v, want %v", rwText([][][]byte{tc.args}), err, tc.want)
		}
	}
	if _, err := Prepare(rwArgs("EVALSHA 0123456789012345678901234567890123456789 0"), rwNow, nil); err != ErrNoScript {
		t.Errorf("EVALSHA with no cache: %v, want ErrNoScript", err)
	}
	if ErrNoScript.Error() != "NOSCRIPT No matching script. Please use EVAL." {
		t.Errorf("ErrNoScript text %q", ErrNoScript)
	}
}

func TestEffectReplyCount(t *testing.T) {
	p, _ := Prepare(rwArgs("SET k v"), rwNow, nil)
	if _, err := p.Effect(nil); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("no replies: %v", err)
	}
	p, _ = Prepare(rwArgs("XTRIM s MAXLEN ~ 5"), rwNow, nil)
	if _, err := p.Effect(rwReplies(t, ":1\r\n")); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("one reply for two commands: %v", err)
	}
}

func TestScripts(t *testing.T) {
	cache := NewScriptCache(0)
	body := "return(redis.call('SET',KEYS[1],ARGV[1]))"
	sha := ScriptSHA([]byte(body))

	// EVAL records the body before it runs, so a pipelined EVALSHA finds it.
	p, err := Prepare(rwArgs("EVAL "+body+" 1 k v"), rwNow, cache)
	if err != nil || p.Kind != "" || rwText(p.Exec) != "EVAL "+body+" 1 k v" {
		t.Fatalf("EVAL: %v %q %q", err, p.Kind, rwText(p.Exec))
	}
	if _, ok := cache.Get([]byte(sha)); !ok {
		t.Fatal("EVAL did not record the body")
	}
	for _, e := range []rwEffect{
		{rwOK, "EVAL " + body + " 1 k v", false},
		// It may have written before failing: logged.
		{"-MYERR custom\r\n", "EVAL " + body + " 1 k v", false},
		{"-ERR user_script:1: boom script: " + sha + ", on @user_script:1.\r\n", "EVAL " + body + " 1 k v", false},
		{"-ERR value is not an integer or out of range script: " + sha + ", on @user_script:1.\r\n", "EVAL " + body + " 1 k v", false},
		{"-OOM command not allowed when used memory > 'maxmemory'. script: " + sha + ", on @user_script:1.\r\n", "EVAL " + body + " 1 k v", false},
		// It never ran: nothing.
		{"-BUSY Redis is busy running a script.\r\n", "", false},
		{"-OOM command not allowed when used memory > 'maxmemory'.\r\n", "", false},
		{"-NOSCRIPT No matching script. Please use EVAL.\r\n", "", false},
	} {
		log, err := p.Effect(rwReplies(t, e.replies))
		if err != nil || rwText(log) != e.log {
			t.Errorf("EVAL Effect(%q) = %q, %v; want %q", e.replies, rwText(log), err, e.log)
		}
	}

	// EVALSHA runs and logs as EVAL, whatever the case of the SHA.
	p, err = Prepare(rwArgs("EVALSHA "+strings.ToUpper(sha)+" 1 k v"), rwNow, cache)
	if err != nil || p.Kind != KindEvalSHA || rwText(p.Exec) != "EVAL "+body+" 1 k v" {
		t.Fatalf("EVALSHA: %v %q %q", err, p.Kind, rwText(p.Exec))
	}
	log, err := p.Effect(rwReplies(t, rwOK))
	if err != nil || rwText(log) != "EVAL "+body+" 1 k v" {
		t.Errorf("EVALSHA Effect = %q, %v", rwText(log), err)
	}

	// A body that does not compile is forgotten again.
	bad := "return+"
	p, _ = Prepare(rwArgs("EVAL "+bad+" 0"), rwNow, cache)
	log, err = p.Effect(rwReplies(t, "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'\r\n"))
	if err != nil || log != nil {
		t.Errorf("compile error Effect = %q, %v", rwText(log), err)
	}
	if _, ok := cache.Get([]byte(ScriptSHA([]byte(bad)))); ok {
		t.Error("a body that did not compile stays cached")
	}
	// A bad numkeys: Redis rejects it before compiling, so nothing is
	// recorded, and a success would be a surprise.
	p, _ = Prepare(rwArgs("EVAL "+bad+" 2 k"), rwNow, cache)
	if cache.Len() != 1 {
		t.Errorf("EVAL with bad numkeys recorded its body: %d scripts", cache.Len())
	}
	if _, err := p.Effect(rwReplies(t, rwOK)); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("EVAL with bad numkeys accepted: %v", err)
	}

	// SCRIPT LOAD records and logs; SCRIPT FLUSH forgets everything.
	other := "return(2)"
	p, _ = Prepare(rwArgs("script load "+other), rwNow, cache)
	log, err = p.Effect(rwReplies(t, rwBulk(ScriptSHA([]byte(other)))))
	if err != nil || rwText(log) != "script load "+other {
		t.Errorf("SCRIPT LOAD Effect = %q, %v", rwText(log), err)
	}
	if _, ok := cache.Get([]byte(ScriptSHA([]byte(other)))); !ok {
		t.Error("SCRIPT LOAD did not record")
	}
	if _, err := Prepare(rwArgs("SCRIPT FLUSH ASYNC"), rwNow, cache); err != nil || cache.Len() != 0 {
		t.Errorf("SCRIPT FLUSH left %d scripts (%v)", cache.Len(), err)
	}
	if _, err := Prepare(rwArgs("EVALSHA "+sha+" 1 k v"), rwNow, cache); err != ErrNoScript {
		t.Errorf("EVALSHA after FLUSH: %v", err)
	}
}

func TestScriptCacheLimit(t *testing.T) {
	c := NewScriptCache(4 * (100 + scriptEntryOverhead))
	var shas []string
	for i := 0; i < 5; i++ {
		if i == 4 {
			// Use the first script: the second is now the least
			// recently used, and goes first.
			if _, ok := c.Get([]byte(shas[0])); !ok {
				t.Fatal("first script missing")
			}
		}
		shas = append(shas, c.Add([]byte(strings.Repeat(string(rune('a'+i)), 100))))
	}
	if c.Len() != 4 || c.Bytes() != 4*(100+scriptEntryOverhead) {
		t.Fatalf("Len %d Bytes %d", c.Len(), c.Bytes())
	}
	for i, sha := range shas {
		if _, ok := c.Get([]byte(sha)); ok != (i != 1) {
			t.Errorf("script %d cached = %v", i, ok)
		}
	}
	c.Add(make([]byte, 10*(100+scriptEntryOverhead)))
	if c.Len() != 4 {
		t.Errorf("a body over the limit evicted others: Len %d", c.Len())
	}
	if _, ok := c.Get([]byte("not hex at all, but forty bytes long!!!!")); ok {
		t.Error("bad SHA found")
	}
}

func TestTxEffect(t *testing.T) {
	var plans []Plan
	for _, cmd := range []string{"SET a 1", "", "INCR a", "XADD s MAXLEN ~ 10 * f v", "SPOP t 2", "SELECT 3", "DEL gone"} {
		if cmd == "" {
			plans = append(plans, ReadOnly(rwArgs("GET a")))
			continue
		}
		p, err := Prepare(rwArgs(cmd), rwNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		plans = append(plans, p)
	}
	exec := rwReplies(t, "*8\r\n"+rwOK+rwBulk("1")+"-ERR value is not an integer or out of range\r\n"+
		rwBulk("1-0")+":5\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n"+rwOK+rwZero)[0]
	log, err := TxEffect(plans, exec)
	if err != nil {
		t.Fatal(err)
	}
	want := "SET a 1\nXADD s MAXLEN = 5 1-0 f v\nSREM t x y\nSELECT 3"
	if got := rwText(log); got != want {
		t.Errorf("TxEffect:\n got %q\nwant %q", got, want)
	}
	reply := TxReply(plans, exec)
	if got, want := reply.String(), `[+OK "1" -ERR value is not an integer or out of range "1-0" ["x" "y"] +OK :0]`; got != want {
		t.Errorf("TxReply:\n got %s\nwant %s", got, want)
	}

	for _, r := range []string{rwNilA, "-EXECABORT Transaction discarded because of previous errors.\r\n"} {
		log, err := TxEffect(plans, rwReplies(t, r)[0])
		if err != nil || log != nil {
			t.Errorf("TxEffect(%q) = %q, %v", r, rwText(log), err)
		}
		if got := TxReply(plans, rwReplies(t, r)[0]); got.String() != rwReplies(t, r)[0].String() {
			t.Errorf("TxReply(%q) = %s", r, got)
		}
	}
	if _, err := TxEffect(plans, rwReplies(t, "*1\r\n+OK\r\n")[0]); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("short EXEC reply: %v", err)
	}
	if _, err := TxEffect(plans, rwReplies(t, rwOK)[0]); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("EXEC replied OK: %v", err)
	}
}

func TestNonBlocking(t *testing.T) {
	for _, tc := range []struct {
		cmd     string
		probe   string // "" when not ok
		timeout int64
		err     error
	}{
		{"BLPOP a 0", "BLPOP a 0", 0, nil},
		{"blpop a b 1.5", "blpop a b 1.5", 1500, nil},
		{"BRPOP a 0.0015", "BRPOP a 0.0015", 1, nil},
		{"BLPOP a -0.0001", "BLPOP a -0.0001", 0, nil},
		{"BLPOP a 0x10", "BLPOP a 0x10", 16000, nil},
		{"BLPOP a 1e3", "BLPOP a 1e3", 1000000, nil},
		{"BLPOP a 2\x00junk", "BLPOP a 2\x00junk", 2000, nil},
		{"BLPOP a -1", "", 0, ErrTimeoutNegative},
		{"BLPOP a inf", "", 0, ErrTimeoutNegative},
		{"BLPOP a 1e300", "", 0, ErrTimeoutNegative},
		{"BLPOP a abc", "", 0, ErrTimeoutNotFloat},
		{"BLPOP a nan", "", 0, ErrTimeoutNotFloat},
		{"BLPOP a 1_0", "", 0, ErrTimeoutNotFloat},
		{"BZPOPMIN z 2", "BZPOPMIN z 2", 2000, nil},
		{"BRPOPLPUSH a b 3", "BRPOPLPUSH a b 3", 3000, nil},
		{"BLMOVE a b LEFT LEFT 0.25", "BLMOVE a b LEFT LEFT 0.25", 250, nil},
		{"BLMPOP 2.5 1 l LEFT", "BLMPOP 2.5 1 l LEFT", 2500, nil},
		{"BZMPOP 1 1 z MAX COUNT 2", "BZMPOP 1 1 z MAX COUNT 2", 1000, nil},
		{"XREAD COUNT 1 BLOCK 500 STREAMS s $", "XREAD COUNT 1 STREAMS s $", 500, nil},
		{"XREAD BLOCK 5 BLOCK 0 STREAMS s 0", "XREAD STREAMS s 0", 0, nil},
		{"XREADGROUP GROUP g c BLOCK 10 NOACK STREAMS a b > >", "XREADGROUP GROUP g c NOACK STREAMS a b > >", 10, nil},
		{"XREAD BLOCK -1 STREAMS s 0", "", 0, ErrTimeoutNegative},
		{"XREAD BLOCK 1.5 STREAMS s 0", "", 0, ErrTimeoutNotInteger},
		{"XREAD STREAMS s 0", "", 0, nil},
		{"XREAD COUNT x BLOCK 5 STREAMS s 0", "", 0, nil},
		{"XREAD BLOCK 5 STREAMS s", "", 0, nil},
		{"XREAD GROUP g c BLOCK 5 STREAMS s 0", "", 0, nil},
		{"BLPOP a", "", 0, nil},
		{"GET k", "", 0, nil},
	} {
		probe, ms, ok, err := NonBlocking(rwArgs(tc.cmd))
		if err != tc.err {
			t.Errorf("%q: err %v, want %v", tc.cmd, err, tc.err)
			continue
		}
		if err != nil {
			if !ok {
				t.Errorf("%q: error without ok", tc.cmd)
			}
			continue
		}
		if ok != (tc.probe != "") || (ok && (rwText([][][]byte{probe}) != tc.probe || ms != tc.timeout)) {
			t.Errorf("%q: %q %d %v, want %q %d", tc.cmd, rwText([][][]byte{probe}), ms, ok, tc.probe, tc.timeout)
		}
	}
}

func TestScriptCacheConcurrent(t *testing.T) {
	c := NewScriptCache(8 * (10 + scriptEntryOverhead))
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 500; i++ {
				body := []byte(strconv.Itoa(g*1000 + i%20))
				sha := c.Add(body)
				if got, ok := c.Get([]byte(sha)); ok && string(got) != string(body) {
					t.Errorf("Get(%s) = %q, want %q", sha, got, body)
				}
				if i%50 == 0 {
					c.Flush()
				}
				c.Remove(body)
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	if c.Bytes() > 8*(10+scriptEntryOverhead) || c.Bytes() < 0 {
		t.Errorf("Bytes %d", c.Bytes())
	}
}
