package resp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/test/harness"
)

// rwConn is a bare RESP connection, so that the tests see Redis's replies
// byte for byte, as Prepare and Effect will.
type rwConn struct {
	t   testing.TB
	c   net.Conn
	buf []byte
}

func rwDial(t testing.TB, r *harness.Redis) *rwConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rwConn{t: t, c: c}
}

// send writes commands without reading.
func (c *rwConn) send(cmds ...[][]byte) {
	c.t.Helper()
	var out []byte
	for _, cmd := range cmds {
		out = AppendCommand(out, cmd...)
	}
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(out); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one reply.
func (c *rwConn) read() Value {
	c.t.Helper()
	chunk := make([]byte, 64<<10)
	for {
		v, n, err := ParseValue(c.buf)
		if err == nil {
			c.buf = append([]byte(nil), c.buf[n:]...)
			return v
		}
		if !errors.Is(err, ErrIncomplete) {
			c.t.Fatalf("reply: %v", err)
		}
		m, err := c.c.Read(chunk)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		c.buf = append(c.buf, chunk[:m]...)
	}
}

func (c *rwConn) do(args ...[]byte) Value {
	c.t.Helper()
	c.send(args)
	return c.read()
}

func (c *rwConn) doS(s string) Value {
	c.t.Helper()
	return c.do(rwSplit(s)...)
}

// exec runs a plan's Exec, in MULTI when it is atomic, and returns one
// reply per command.
func (c *rwConn) exec(p Plan) []Value {
	c.t.Helper()
	if !p.Atomic {
		c.send(p.Exec[0])
		return []Value{c.read()}
	}
	c.send([][]byte{[]byte("MULTI")})
	c.send(p.Exec...)
	c.send([][]byte{[]byte("EXEC")})
	if r := c.read(); r.String() != "+OK" {
		c.t.Fatalf("MULTI: %s", r)
	}
	for range p.Exec {
		if r := c.read(); r.String() != "+QUEUED" {
			c.t.Fatalf("queue: %s", r)
		}
	}
	r := c.read()
	if r.Kind != Array || len(r.Elems) != len(p.Exec) {
		c.t.Fatalf("EXEC: %s", r)
	}
	return r.Elems
}

// rwSplit splits at spaces, keeping "double quoted" words whole.
func rwSplit(s string) [][]byte {
	var out [][]byte
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"') + 1
			out = append(out, []byte(s[1:end]))
			s = s[end+1:]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		out = append(out, []byte(s[:end]))
		s = s[end:]
	}
	return out
}

// rwFill replaces {S+n}, {MS+n} and {MS-n} (seconds or milliseconds from
// nowMs) and {DUMP} in each argument.
func rwFill(args [][]byte, nowMs int64, dump []byte) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		s := string(a)
		switch {
		case s == "{DUMP}":
			out[i] = dump
			continue
		case strings.HasPrefix(s, "{S+") && strings.HasSuffix(s, "}"):
			n, _ := strconv.ParseInt(s[3:len(s)-1], 10, 64)
			s = strconv.FormatInt(nowMs/1000+n, 10)
		case strings.HasPrefix(s, "{MS") && strings.HasSuffix(s, "}"):
			n, _ := strconv.ParseInt(s[3:len(s)-1], 10, 64)
			s = strconv.FormatInt(nowMs+n, 10)
		}
		out[i] = []byte(s)
	}
	return out
}

func rwStartRedis(t *testing.T) *harness.Redis {
	return harness.StartRedis(t, harness.RedisArgs("--enable-debug-command", "yes"))
}

// rwRedisCase runs cmd as sent by a client on one database and as Prepare
// rewrites it on another, after the same setup, and compares the replies
// and the keys.
type rwRedisCase struct {
	setup    string // commands separated by ";"
	cmd      string
	invalid  bool // Redis rejects it whatever the data: sent as is, nothing logged
	fails    bool // Redis rejects it given the setup (WRONGTYPE …): rewritten, nothing logged
	relative bool // the expiry counts from the time of the call
}

func TestRewriteMatchesRedis(t *testing.T) {
	r := rwStartRedis(t)
	orig, rw := rwDial(t, r), rwDial(t, r)
	rw.doS("SELECT 1")
	orig.doS("SET dumpsrc hello")
	dump := orig.doS("DUMP dumpsrc").Str
	orig.doS("FLUSHALL")

	old := "SET k old PXAT {MS+9000000}"
	cases := []rwRedisCase{
		{cmd: "SET k v EX 100", relative: true},
		{cmd: "SET k v PX 100000", relative: true},
		{cmd: "SET k v EXAT {S+100}"},
		{cmd: "SET k v PXAT {MS+100000}"},
		{cmd: "SET k v PXAT {MS-100000}"},
		{setup: "SET k old", cmd: "SET k v EX 100 NX", relative: true},
		{cmd: "SET k v EX 100 NX", relative: true},
		{setup: old, cmd: "SET k v XX GET PX 50000", relative: true},
		{cmd: "SET k v XX GET PX 50000", relative: true},
		{cmd: "SET k v NX GET EX 100", relative: true},
		{setup: old, cmd: "SET k v NX GET EX 100", relative: true},
		{setup: old, cmd: "SET k v KEEPTTL GET"},
		{setup: old, cmd: "SET k v GET get"},
		{cmd: "SET k v EX 100 EX 200", relative: true},
		{cmd: "SET k v px 5 PX 100000", relative: true},
		{cmd: "SET k v \"Ex\x00junk\" 100", relative: true},
		{setup: "LPUSH k x", cmd: "SET k v GET EX 100", fails: true},
		{cmd: "SET k v EX 9223372036854", relative: true},
		{cmd: "SET k v EX 0", invalid: true},
		{cmd: "SET k v EX -1", invalid: true},
		{cmd: "SET k v EX 10 PX 5", invalid: true},
		{cmd: "SET k v PX 5 PXAT 5", invalid: true},
		{cmd: "SET k v NX XX", invalid: true},
		{cmd: "SET k v EX", invalid: true},
		{cmd: "SET k v EX 1.5", invalid: true},
		{cmd: "SET k v EX 010", invalid: true},
		{cmd: "SET k v EX +10", invalid: true},
		{cmd: "SET k v EX \" 10\"", invalid: true},
		{cmd: "SET k v KEEPTTL EX 10", invalid: true},
		{cmd: "SET k v EX 10 KEEPTTL", invalid: true},
		{cmd: "SET k v EX 9223372036854775", invalid: true},
		{cmd: "SET k v EX 9223372036854775808", invalid: true},
		{cmd: "SET k v PX 9223372036854775807", invalid: true},
		{cmd: "SET k v PXAT 0", invalid: true},
		{cmd: "SET k v EXAT 9223372036854776", invalid: true},
		{cmd: "SET k v PERSIST", invalid: true},
		{cmd: "SET k", invalid: true},
		{cmd: "SET k v FOO", invalid: true},

		{cmd: "SETEX k 100 v", relative: true},
		{cmd: "PSETEX k 100000 v", relative: true},
		{setup: "LPUSH k x", cmd: "SETEX k 100 v", relative: true},
		{cmd: "SETEX k 0 v", invalid: true},
		{cmd: "SETEX k -5 v", invalid: true},
		{cmd: "SETEX k x v", invalid: true},
		{cmd: "SETEX k 10", invalid: true},
		{cmd: "SETEX k 10 v NX", invalid: true},
		{cmd: "PSETEX k 9223372036854775807 v", invalid: true},
		{cmd: "SETEX k 9223372036854775 v", invalid: true},

		{setup: "SET k v", cmd: "EXPIRE k 100", relative: true},
		{cmd: "EXPIRE k 100", relative: true},
		{setup: "SET k v", cmd: "EXPIRE k -5", relative: true},
		{setup: "SET k v", cmd: "EXPIRE k 0", relative: true},
		{setup: "SET k v", cmd: "EXPIRE k -9223372036854775", relative: true},
		{setup: old, cmd: "EXPIRE k 100 NX", relative: true},
		{setup: "SET k v", cmd: "EXPIRE k 100 NX", relative: true},
		{setup: "SET k v PXAT {MS+50000}", cmd: "EXPIRE k 100 GT", relative: true},
		{setup: "SET k v PXAT {MS+50000}", cmd: "EXPIRE k 100 LT", relative: true},
		{setup: "SET k v", cmd: "EXPIRE k 100 LT", relative: true},
		{setup: "SET k v", cmd: "EXPIRE k 100 GT", relative: true},
		{setup: "SET k v PXAT {MS+500000}", cmd: "PEXPIRE k 100000 XX", relative: true},
		{setup: "SET k v", cmd: "PEXPIRE k 100000 xx lt xx", relative: true},
		{setup: "SET k v", cmd: "EXPIREAT k {S+100}"},
		{setup: "SET k v", cmd: "EXPIREAT k 1"},
		{setup: "SET k v", cmd: "PEXPIREAT k {MS+100000} NX"},
		{setup: "SET k v", cmd: "EXPIRE k 100 \"nx\x00zz\"", relative: true},
		{setup: "SET k v", cmd: "EXPIRE k 9223372036854775808", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k 9223372036854776", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k -9223372036854776", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k 9223372036854775", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k 10 NX XX", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k 10 NX LT", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k 10 GT LT", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k 10 FOO", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k", invalid: true},
		{setup: "SET k v", cmd: "EXPIRE k 1.5", invalid: true},
		{setup: "SET k v", cmd: "PEXPIRE k 9223372036854775807", invalid: true},
		{setup: "SET k v", cmd: "EXPIREAT k 9223372036854776", invalid: true},

		{setup: "SET k v", cmd: "GETEX k EX 100", relative: true},
		{setup: "SET k v", cmd: "GETEX k PX 100000", relative: true},
		{setup: "SET k v", cmd: "GETEX k EXAT {S+100}"},
		{setup: "SET k v", cmd: "GETEX k PXAT {MS+100000}"},
		{setup: "SET k v", cmd: "GETEX k PXAT {MS-1000}"},
		{setup: old, cmd: "GETEX k PERSIST"},
		{setup: old, cmd: "GETEX k"},
		{cmd: "GETEX k EX 100", relative: true},
		{cmd: "GETEX k EX 0"},
		{setup: "SET k v", cmd: "GETEX k EX 0", invalid: true},
		{setup: "SET k v", cmd: "GETEX k PX 9223372036854775807", invalid: true},
		{setup: "LPUSH k x", cmd: "GETEX k EX 100", fails: true},
		{setup: "SET k v", cmd: "GETEX k NX", invalid: true},
		{setup: "SET k v", cmd: "GETEX k PERSIST EX 10", invalid: true},

		{cmd: "RESTORE k 100000 {DUMP}", relative: true},
		{setup: "SET k x", cmd: "RESTORE k 100000 {DUMP} REPLACE", relative: true},
		{setup: "SET k x", cmd: "RESTORE k 100000 {DUMP} REPLACE IDLETIME 10", relative: true},
		{cmd: "RESTORE k 100000 {DUMP} FREQ 5", relative: true},
		{cmd: "RESTORE k 0 {DUMP}"},
		{cmd: "RESTORE k {MS+100000} {DUMP} ABSTTL"},
		{cmd: "RESTORE k 9223372036854775807 {DUMP}"},
		{setup: "SET k x", cmd: "RESTORE k 9223372036854775807 {DUMP} REPLACE"},
		{setup: "SET k x", cmd: "RESTORE k 100000 {DUMP}", fails: true},
		{cmd: "RESTORE k -1 {DUMP}", invalid: true},
		{cmd: "RESTORE k x {DUMP}", invalid: true},
		{cmd: "RESTORE k 5 {DUMP} IDLETIME", invalid: true},
		{cmd: "RESTORE k 5 {DUMP} FREQ 256", invalid: true},
		{cmd: "RESTORE k 5 {DUMP} IDLETIME 1 FREQ 1", invalid: true},
		{cmd: "RESTORE k 5 {DUMP} FOO", invalid: true},
		{cmd: "RESTORE k 100000 garbage", fails: true},
	}
	for _, c := range cases {
		t.Run(c.cmd, func(t *testing.T) {
			orig.doS("FLUSHALL")
			setupNow := time.Now().UnixMilli()
			for _, s := range strings.Split(c.setup, ";") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				args := rwFill(rwSplit(s), setupNow, dump)
				if a, b := orig.do(args...), rw.do(args...); a.IsError() || b.IsError() {
					t.Fatalf("setup %q: %s %s", s, a, b)
				}
			}
			t0 := time.Now().UnixMilli()
			args := rwFill(rwSplit(c.cmd), t0, dump)
			p, err := Prepare(args, t0, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := orig.do(args...)
			t1 := time.Now().UnixMilli()
			replies := rw.exec(p)
			if got := replies[0]; got.String() != want.String() {
				t.Errorf("reply to %q = %s, want %s", rwText(p.Exec), got, want)
			}
			if (c.invalid || c.fails) != want.IsError() {
				t.Errorf("Redis replied %s; invalid = %v, fails = %v", want, c.invalid, c.fails)
			}
			if c.invalid && rwText(p.Exec) != rwText([][][]byte{args}) {
				t.Errorf("rewrote a command Redis rejects: %q", rwText(p.Exec))
			}
			log, err := p.Effect(replies)
			if err != nil {
				t.Errorf("Effect: %v", err)
			}
			if want.IsError() && log != nil {
				t.Errorf("logged %q after an error", rwText(log))
			}
			// The same key, with the same value and expiry: exactly,
			// or within the time the original took to run.
			slack := int64(0)
			if c.relative {
				slack = t1 - t0
			}
			a, b := orig.doS("PEXPIRETIME k"), rw.doS("PEXPIRETIME k")
			if d := a.Int - b.Int; a.Kind != Integer || b.Kind != Integer || d < 0 || d > slack ||
				(a.Int < 0 || b.Int < 0) && a.Int != b.Int {
				t.Errorf("PEXPIRETIME: original %s, rewritten %s (slack %d ms)", a, b, slack)
			}
			if a, b := orig.doS("DEBUG DIGEST-VALUE k"), rw.doS("DEBUG DIGEST-VALUE k"); a.String() != b.String() {
				t.Errorf("DEBUG DIGEST-VALUE: original %s, rewritten %s", a, b)
			}
		})
	}
}

// TestRewriteReplicates runs a long series of writes through Prepare on
// one Redis, applies what Effect logs to another, as a follower would, and
// then compares the two stores key by key.
func TestRewriteReplicates(t *testing.T) {
	ra, rb := rwStartRedis(t), rwStartRedis(t)
	a, b, other := rwDial(t, ra), rwDial(t, rb), rwDial(t, ra)
	cache := NewScriptCache(0)

	var steps []string
	add := func(s ...string) { steps = append(steps, s...) }
	var members []string
	for i := 0; i < 1000; i++ {
		members = append(members, "m"+strconv.Itoa(i))
	}
	add(
		"SET s1 v EX 1000", "SET s2 v PX 1000000 NX", "SET s2 v2 XX GET EX 2000", "SET s2 v3 NX EX 1",
		"SETEX s3 1000 v", "PSETEX s4 1000000 v", "SET s4b v EXAT {S+1000}", "SET s4c v PXAT {MS+1000000} GET",
		"SET s5 v", "EXPIRE s5 1000", "PEXPIRE s5 2000000 GT", "EXPIREAT s5 {S+3000}", "PEXPIREAT s5 {MS+4000000} LT",
		"EXPIRE s5 10 NX", "SET s6 v", "EXPIRE s6 -1", "EXPIRE s6 100",
		"SET s7 v", "GETEX s7 EX 1000", "SET s8 v PX 100000", "GETEX s8 PERSIST", "SET s9 v", "GETEX s9 PXAT {MS-1}",
		"GETEX nosuch EX 100", "SET s10 v", "GETEX s10 PX 1000000", "GETEX s10",
		"SET f1 1.5", "PEXPIRE f1 5000000", "INCRBYFLOAT f1 0.1", "INCRBYFLOAT f1 1e3", "INCRBYFLOAT fnew 3.0e-5",
		"INCRBYFLOAT f1 notanumber",
		"HSET h1 a 1", "HINCRBYFLOAT h1 a 0.25", "HINCRBYFLOAT h1 b -1.5", "HINCRBYFLOAT h1 a 1e-7",
		"SET g1 v", "GETDEL g1", "GETDEL g1", "GETSET g2 x", "GETSET g2 y", "SET g3 v EX 1000", "GETSET g3 w",
		"SET kt v EX 1000", "SET kt v2 KEEPTTL", "SET kt v3 KEEPTTL GET",
		"SET bad v EX 0", "EXPIRE s1 x", "SETEX bad 0 v",
		"MSET m1 a m2 b", "APPEND m1 zz", "INCR cnt", "INCRBY cnt 5", "DECR cnt", "SETRANGE m2 3 xyz",
		"DEL m2", "UNLINK nothing", "SETNX m1 q", "SETNX m3 q", "MSETNX m3 a m4 b", "RENAME m3 m5", "COPY m5 m6",
		"SADD big "+strings.Join(members, " "), "SPOP big 300", "SPOP big", "SPOP missing", "SPOP missing 3", "SPOP big 0",
		"SADD small a b c", "SPOP small 10", "SADD other m1 m2 m3 m500", "SINTERSTORE inter big other", "SMOVE big other m999",
		"SREM big m1 nope",
		"RPUSH l1 a b c d e f g h", "BLPOP l0 l1 0", "BRPOP l1 1", "BRPOPLPUSH l1 l2 0", "BLMOVE l1 l2 LEFT RIGHT 0",
		"BLMPOP 0 2 l0 l1 RIGHT COUNT 2", "BLPOP empty 0", "BRPOPLPUSH empty l2 0", "BLMPOP 0 1 empty LEFT",
		"LPUSH l3 x", "LPOP l3", "RPOP l3", "LMPOP 1 l2 LEFT COUNT 1", "LPOP l2 0",
		"ZADD z1 1 a 2 b 3 c 4 d 5 e", "BZPOPMIN z1 0", "BZPOPMAX z1 0", "BZMPOP 0 1 z1 MIN COUNT 1",
		"ZINCRBY z1 0.5 d", "ZPOPMIN missingz", "BZPOPMIN none 0", "BZMPOP 0 1 none MAX", "ZPOPMAX z1",
	)
	// A stream long enough for ~ to trim whole nodes (100 entries each).
	for i := 0; i < 2000; i += 100 {
		cmd := "XADD st * f " + strconv.Itoa(i)
		for j := 1; j < 100; j++ {
			add(cmd)
			cmd = "XADD st * f " + strconv.Itoa(i+j)
		}
		add(cmd)
	}
	for i := 1; i <= 1000; i++ {
		add(fmt.Sprintf("XADD st3 %d-1 f v", i))
	}
	add(
		"XADD st MAXLEN ~ 500 * f v", "XADD st2 5-* f v", "XADD st2 5-* f v", "XADD st2 NOMKSTREAM * f v",
		"XADD nost NOMKSTREAM * f v", "XADD nost NOMKSTREAM MAXLEN ~ 5 * f v", "XTRIM st MAXLEN ~ 150",
		"XTRIM st3 MINID ~ 600 LIMIT 200", "XADD st3 MINID ~ 800 * f v", "XTRIM st3 MAXLEN = 100", "XTRIM nost MAXLEN ~ 1",
		"XADD st2 MAXLEN 1 * f last", "XADD st2 1-1 f tooSmall",
		"XGROUP CREATE st g 0", "XREADGROUP GROUP g c COUNT 5 BLOCK 10 STREAMS st >",
		"XREADGROUP GROUP g c2 COUNT 3 STREAMS st >", "XREADGROUP GROUP g c3 BLOCK 0 STREAMS st2 >",
		"XGROUP CREATE st2 g2 $", "XREADGROUP GROUP g2 c BLOCK 5 STREAMS st2 >",

		`EVAL "return(redis.call('SET',KEYS[1],ARGV[1]))" 1 sc1 hello`,
		`SCRIPT LOAD "return(redis.call('INCRBYFLOAT',KEYS[1],'1.5'))"`,
		`EVALSHA `+ScriptSHA([]byte("return(redis.call('INCRBYFLOAT',KEYS[1],'1.5'))"))+` 1 sc2`,
		`EVALSHA `+ScriptSHA([]byte("return(redis.call('INCRBYFLOAT',KEYS[1],'1.5'))"))+` 1 sc2`,
		`EVAL "redis.call('SET',KEYS[1],'x');return(redis.error_reply('MYERR half done'))" 1 sc3`,
		`EVAL "redis.call('SET',KEYS[1],'y');error('boom')" 1 sc4`,
		`EVAL "return+" 0`, `EVAL "return(1)" 2 onlyone`,
		`EVALSHA 0123456789abcdef0123456789abcdef01234567 0`,
		"FUNCTION LOAD \"#!lua name=rwlib\nredis.register_function('rwset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\"",
		"FCALL rwset 1 fk fv", "FCALL nofn 0",

		"SET rsrc hello", "@read DUMP rsrc", "RESTORE rdst 1000000 {DUMP}", "RESTORE rdst2 0 {DUMP}",
		"RESTORE rdst 2000000 {DUMP} REPLACE", "RESTORE rdst3 {MS+3000000} {DUMP} ABSTTL", "RESTORE rdst 5 {DUMP}",

		"@multi", "SET t1 a", "INCR t1", "SPOP big 5", "XADD st MAXLEN ~ 100 * f tx", "INCRBYFLOAT f1 2",
		"@read GET t1", "SETEX t3 1000 v", "SELECT 1", "SET t2 b EX 1000", "BLPOP l1 0", "@exec",
		"SET db1key v PX 1000000", "@db 0",
		"@multi", "SET t4 a", "LPUSH t4 x", "@exec",
		"SET w 1", "@watch w", "@other SET w 2", "@multi", "SET w 3", "@exec",
		"@db 2", "SET d2 v EX 1000", "SADD d2set a b c d", "SPOP d2set 2", "@db 3", "SET x y", "SWAPDB 2 3",
		"FLUSHDB", "SET after flush", "MOVE after 4", "@db 0",
	)

	var (
		db      int
		dump    []byte
		inTx    bool
		txPlans []Plan
		kinds   = map[string]bool{}
		logged  int
	)
	apply := func(cmds [][][]byte, entryDB int) {
		if len(cmds) == 0 {
			return
		}
		for _, c := range cmds {
			if len(c) == 0 {
				t.Fatal("empty logged command")
			}
			if rwRelativeExpiry(c) {
				t.Errorf("logged a relative expiry: %q", rwText([][][]byte{c}))
			}
		}
		logged++
		// What a follower does with one entry.
		var enc []byte
		enc = AppendPayload(enc, Payload{DB: entryDB, Cmds: cmds})
		pl, err := DecodePayload(enc)
		if err != nil {
			t.Fatalf("payload: %v", err)
		}
		b.send([][]byte{[]byte("MULTI")}, [][]byte{[]byte("SELECT"), []byte(strconv.Itoa(pl.DB))})
		b.send(pl.Cmds...)
		b.send([][]byte{[]byte("EXEC")})
		for i := 0; i < len(pl.Cmds)+2; i++ {
			if r := b.read(); r.IsError() {
				t.Fatalf("queueing %q on B: %s", rwText(pl.Cmds), r)
			}
		}
		if r := b.read(); r.Kind != Array {
			t.Fatalf("EXEC on B: %s", r)
		} else {
			for i, e := range r.Elems[1:] {
				if e.IsError() && !bytes.HasPrefix(pl.Cmds[i][0], []byte("EVAL")) {
					t.Errorf("B replied %s to %q", e, rwText(pl.Cmds[i:i+1]))
				}
			}
		}
	}
	for _, step := range steps {
		now := time.Now().UnixMilli()
		switch {
		case strings.HasPrefix(step, "@db "):
			db, _ = strconv.Atoi(step[4:])
			a.do([]byte("SELECT"), []byte(step[4:]))
			continue
		case strings.HasPrefix(step, "@read "):
			r := a.do(rwFill(rwSplit(step[6:]), now, dump)...)
			if strings.HasPrefix(step, "@read DUMP") {
				dump = r.Str
			}
			if inTx {
				txPlans = append(txPlans, ReadOnly(rwSplit(step[6:])))
			}
			continue
		case strings.HasPrefix(step, "@other "):
			// Another client's write, through the proxy too.
			p, err := Prepare(rwSplit(step[7:]), now, cache)
			if err != nil {
				t.Fatal(err)
			}
			cmds, err := p.Effect(other.exec(p))
			if err != nil {
				t.Fatal(err)
			}
			apply(cmds, 0)
			continue
		case strings.HasPrefix(step, "@watch "):
			a.doS("WATCH " + step[7:])
			continue
		case step == "@multi":
			a.doS("MULTI")
			inTx, txPlans = true, nil
			continue
		case step == "@exec":
			exec := a.doS("EXEC")
			cmds, err := TxEffect(txPlans, exec)
			if err != nil {
				t.Fatalf("TxEffect: %v", err)
			}
			apply(cmds, db)
			if exec.Kind == Array {
				for _, p := range txPlans {
					if len(p.Exec[0]) == 2 && planFoldIs(p.Exec[0][0], "SELECT") {
						db, _ = strconv.Atoi(string(p.Exec[0][1]))
					}
				}
			}
			inTx = false
			continue
		}
		args := rwFill(rwSplit(step), now, dump)
		p, err := Prepare(args, now, cache)
		if err != nil {
			if err != ErrNoScript || !strings.Contains(step, "0123456789abcdef") {
				t.Fatalf("Prepare(%q): %v", step, err)
			}
			continue
		}
		kinds[p.Kind] = true
		if inTx {
			a.send(p.Exec...)
			for range p.Exec {
				if r := a.read(); r.String() != "+QUEUED" {
					t.Fatalf("queue %q: %s", step, r)
				}
			}
			txPlans = append(txPlans, p)
			continue
		}
		replies := a.exec(p)
		cmds, err := p.Effect(replies)
		if err != nil {
			t.Fatalf("Effect(%q, %v): %v", step, replies, err)
		}
		apply(cmds, db)
		if len(args) == 2 && planFoldIs(args[0], "SELECT") {
			db, _ = strconv.Atoi(string(args[1]))
		}
	}
	for _, k := range []string{KindExpireAbsolute, KindSetGet, KindGetDel, KindGetSet, KindSpop, KindIncrByFloat,
		KindHIncrByFloat, KindXAddID, KindXTrimExact, KindEvalSHA, KindBlockingPop, KindXReadGroupBlock} {
		if !kinds[k] {
			t.Errorf("no step rewrote as %q", k)
		}
	}
	t.Logf("%d steps, %d entries logged", len(steps), logged)

	if diff := rwCompareStores(t, a, b); diff != "" {
		t.Errorf("stores differ:\n%s", diff)
	}
	if x, y := a.doS("XPENDING st g"), b.doS("XPENDING st g"); x.String() != y.String() {
		t.Errorf("XPENDING st g: %s on A, %s on B", x, y)
	}
	if x, y := a.doS("XINFO GROUPS st2"), b.doS("XINFO GROUPS st2"); x.String() != y.String() {
		t.Errorf("XINFO GROUPS st2: %s on A, %s on B", x, y)
	}

	// The comparison has teeth: SPOP replayed as it is picks other members.
	a.doS("SELECT 9")
	b.doS("SELECT 9")
	for _, c := range []*rwConn{a, b} {
		c.doS("SADD naive " + strings.Join(members, " "))
		c.doS("SPOP naive 100")
	}
	if x, y := a.doS("DEBUG DIGEST-VALUE naive"), b.doS("DEBUG DIGEST-VALUE naive"); x.String() == y.String() {
		t.Error("SPOP replayed as it is left equal sets: the comparison cannot see a divergence")
	}
}

// rwCompareStores compares two stores with DEBUG DIGEST and, when they
// differ, key by key, and returns a readable difference.
func rwCompareStores(t *testing.T, a, b *rwConn) string {
	t.Helper()
	da, db := a.doS("DEBUG DIGEST"), b.doS("DEBUG DIGEST")
	var diff []string
	if da.String() != db.String() {
		diff = append(diff, fmt.Sprintf("DEBUG DIGEST: %s on A, %s on B", da, db))
	}
	// Expiry times are not in DEBUG DIGEST (only whether a key has one), so
	// each key is compared anyway.
	for n := 0; n < 16; n++ {
		a.doS("SELECT " + strconv.Itoa(n))
		b.doS("SELECT " + strconv.Itoa(n))
		keys := map[string]bool{}
		for _, c := range []*rwConn{a, b} {
			for _, k := range c.doS("KEYS *").Elems {
				keys[string(k.Str)] = true
			}
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			va, vb := a.do([]byte("DEBUG"), []byte("DIGEST-VALUE"), []byte(k)), b.do([]byte("DEBUG"), []byte("DIGEST-VALUE"), []byte(k))
			ea, eb := a.do([]byte("PEXPIRETIME"), []byte(k)), b.do([]byte("PEXPIRETIME"), []byte(k))
			if va.String() != vb.String() || ea.String() != eb.String() {
				diff = append(diff, fmt.Sprintf("db %d key %q: value %s, expiry %s on A; value %s, expiry %s on B",
					n, k, va, ea, vb, eb))
			}
		}
	}
	a.doS("SELECT 0")
	b.doS("SELECT 0")
	return strings.Join(diff, "\n")
}

// rwRelativeExpiry reports whether a logged command carries an expiry
// relative to the time it runs.
func rwRelativeExpiry(c [][]byte) bool {
	var nb [16]byte
	switch string(planUpper(nb[:0], c[0])) {
	case "EXPIRE", "PEXPIRE", "SETEX", "PSETEX":
		return true
	case "SET", "GETEX":
		from := 3
		if planFoldIs(c[0], "GETEX") {
			from = 2
		}
		for i := from; i < len(c); i++ {
			o := planCString(c[i])
			if planFoldIs(o, "EX") || planFoldIs(o, "PX") {
				return true
			}
			if planFoldIs(o, "EXAT") || planFoldIs(o, "PXAT") {
				i++
			}
		}
	case "RESTORE":
		if len(c) < 4 {
			return false
		}
		ttl, ok := planInt(c[2])
		if !ok || ttl == 0 {
			return false
		}
		for _, o := range c[4:] {
			if planFoldIs(planCString(o), "ABSTTL") {
				return false
			}
		}
		return true
	}
	return false
}

// TestNonBlockingErrorsMatchRedis compares NonBlocking's timeout errors
// with Redis's own replies to the same commands (all rejected before they
// could block).
func TestNonBlockingErrorsMatchRedis(t *testing.T) {
	c := rwDial(t, rwStartRedis(t))
	for _, cmd := range []string{
		"BLPOP x -1", "BLPOP x inf", "BLPOP x -inf", "BLPOP x 1e300", "BLPOP x abc", "BLPOP x nan",
		"BLPOP x 1_0", "BLPOP x \" 1\"", "BLPOP x \"1 \"", "BLPOP x 1e", "BLPOP x -0.5",
		"BRPOPLPUSH a b -1", "BLMOVE a b LEFT LEFT x", "BLMPOP -1 1 a LEFT", "BZMPOP x 1 z MIN",
		"BZPOPMIN z -2", "XREAD BLOCK -1 STREAMS s 0", "XREAD BLOCK 1.5 STREAMS s 0",
		"XREADGROUP GROUP g c BLOCK x STREAMS s >",
	} {
		_, _, ok, err := NonBlocking(rwSplit(cmd))
		want := c.doS(cmd)
		if !ok || err == nil || !want.IsError() || err.Error() != string(want.Str) {
			t.Errorf("%s: NonBlocking says %v (ok %v), Redis says %s", cmd, err, ok, want)
		}
	}
}
