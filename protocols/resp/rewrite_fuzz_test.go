package resp

import (
	"bytes"
	"errors"
	"testing"
)

// rwFuzzScript is in the fuzz cache, so that EVALSHA gets past NOSCRIPT.
const rwFuzzScript = "return(redis.call('SET',KEYS[1],ARGV[1]))"

// FuzzPrepareEffect prepares arbitrary commands (words separated by
// spaces) and feeds their plans arbitrary replies (RESP values back to
// back). Nothing may panic; Exec and the logged commands are never empty;
// no logged command carries a relative expiry, whatever the input, which
// is what makes the rewriting total; an error reply logs nothing, except
// for scripts, which may have written before failing.
func FuzzPrepareEffect(f *testing.F) {
	for _, c := range rwCases {
		f.Add([]byte(c.cmd), []byte(rwOK), int64(rwNow))
		for _, e := range c.effects {
			f.Add([]byte(c.cmd), []byte(e.replies), int64(rwNow))
		}
	}
	sha := ScriptSHA([]byte(rwFuzzScript))
	f.Add([]byte("EVALSHA "+sha+" 1 k v"), []byte("-MYERR x\r\n"), int64(rwNow))
	f.Add([]byte("MULTI"), []byte(rwOK), int64(0))
	f.Add([]byte("SET k v EX 10"), []byte(rwOK), int64(-1<<63))
	f.Add([]byte("EXPIRE k 10"), []byte(rwOne), int64(1<<63-1))
	f.Fuzz(func(t *testing.T, cmd, reply []byte, now int64) {
		args := bytes.Split(cmd, []byte(" "))
		if len(args) > 64 {
			return
		}
		cache := NewScriptCache(1 << 16)
		cache.Add([]byte(rwFuzzScript))
		p, err := Prepare(args, now, cache)
		if err != nil {
			switch err {
			case ErrNoScript, ErrEmptyCommand, ErrTransactionCommand:
				return
			}
			t.Fatalf("Prepare(%q): unexpected error %v", cmd, err)
		}
		if len(p.Exec) == 0 || (len(p.Exec) > 1 && !p.Atomic) {
			t.Fatalf("Prepare(%q): Exec %q, Atomic %v", cmd, rwText(p.Exec), p.Atomic)
		}
		for _, c := range p.Exec {
			if len(c) == 0 {
				t.Fatalf("Prepare(%q): empty command in Exec", cmd)
			}
		}

		var replies []Value
		for rest := reply; len(replies) < len(p.Exec); {
			v, n, err := ParseValue(rest)
			if err != nil {
				v, n = Value{Kind: Null}, len(rest)
			}
			replies = append(replies, v)
			rest = rest[n:]
		}
		log, err := p.Effect(replies)
		rwCheckLog(t, cmd, log, err)
		if replies[0].IsError() && p.op != planScript && len(log) > 0 {
			t.Fatalf("Effect(%q, %v) logged %q after an error", cmd, replies, rwText(log))
		}
		again, _ := p.Effect(replies)
		if rwText(again) != rwText(log) {
			t.Fatalf("Effect(%q, %v) is not deterministic: %q then %q", cmd, replies, rwText(log), rwText(again))
		}

		// The same plan inside a transaction, next to a read.
		plans := []Plan{p, ReadOnly([][]byte{[]byte("GET"), []byte("k")})}
		exec := Value{Kind: Array, Elems: append(append([]Value(nil), replies...), Value{Kind: Null})}
		txLog, err := TxEffect(plans, exec)
		rwCheckLog(t, cmd, txLog, err)
		if r := TxReply(plans, exec); r.Kind != Array || len(r.Elems) != 2 {
			t.Fatalf("TxReply(%q): %s", cmd, r)
		}

		probe, _, ok, err := NonBlocking(args)
		if ok && err == nil && len(probe) == 0 {
			t.Fatalf("NonBlocking(%q): empty probe", cmd)
		}
	})
}

func rwCheckLog(t *testing.T, cmd []byte, log [][][]byte, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrUnexpectedReply) || log != nil {
			t.Fatalf("Effect(%q): %q, %v", cmd, rwText(log), err)
		}
		return
	}
	for _, c := range log {
		if len(c) == 0 {
			t.Fatalf("Effect(%q): empty logged command", cmd)
		}
		if rwRelativeExpiry(c) {
			t.Fatalf("Effect(%q): logged a relative expiry: %q", cmd, rwText([][][]byte{c}))
		}
	}
}
