package resp

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// This file makes a write's effect independent of when and where it runs,
// as Redis does for its own replicas and AOF (DESIGN.md, "The write path",
// step 4). Prepare rewrites a write before the primary executes it, so that
// relative times become absolute; Plan.Effect then derives, from the
// primary's replies, the commands that reproduce the write on a replica
// holding the same data. Both are pure: the time is an input, and the only
// state is the ScriptCache the caller passes in.
//
// The validation below mirrors Redis 7.0 argument by argument, because a
// rewrite must never turn a command Redis rejects into one it accepts: when
// Redis would reject the original, Prepare leaves it alone so that the
// client gets Redis's own error, and nothing is logged.
//
// Unexported names here start with "plan" so that they stay clear of the
// rest of the package.

// The values of Plan.Kind, one per rewrite, for metrics labels.
const (
	// KindExpireAbsolute: a relative or second-based expiry became an
	// absolute PXAT, PEXPIREAT or RESTORE … ABSTTL.
	KindExpireAbsolute = "expire-absolute"
	// KindSetGet: SET … GET is logged without GET.
	KindSetGet = "set-get"
	// KindGetDel: GETDEL is logged as DEL.
	KindGetDel = "getdel"
	// KindGetSet: GETSET is logged as SET.
	KindGetSet = "getset"
	// KindSpop: SPOP is logged as SREM of the members it popped.
	KindSpop = "spop"
	// KindIncrByFloat: INCRBYFLOAT is logged as SET … KEEPTTL of the result.
	KindIncrByFloat = "incrbyfloat"
	// KindHIncrByFloat: HINCRBYFLOAT is logged as HSET of the result.
	KindHIncrByFloat = "hincrbyfloat"
	// KindXAddID: XADD with a generated ID is logged with the ID it got.
	KindXAddID = "xadd-id"
	// KindXTrimExact: approximate (~) stream trimming is logged as the
	// exact MAXLEN it came to.
	KindXTrimExact = "xtrim-exact"
	// KindEvalSHA: EVALSHA is executed and logged as EVAL of the body.
	KindEvalSHA = "evalsha-body"
	// KindBlockingPop: a blocking pop is executed inside MULTI, where it
	// cannot block, and logged as the plain pop.
	KindBlockingPop = "blocking-pop"
	// KindXReadGroupBlock: XREADGROUP … BLOCK is executed and logged
	// without BLOCK.
	KindXReadGroupBlock = "xreadgroup-block"
)

// ErrNoScript is what Prepare returns for EVALSHA of a script the
// ScriptCache does not hold. Its text is Redis's own NOSCRIPT reply, so the
// caller sends it as is; clients (go-redis, redis-py, Jedis, ioredis) answer
// it by sending EVAL with the body.
var ErrNoScript = errors.New("NOSCRIPT No matching script. Please use EVAL.")

// ErrUnexpectedReply means a reply does not fit the command it answers, for
// example a success where Redis 7.0 would have replied with an error, or
// the wrong number of replies. The write's effect is then unknown: the
// caller should treat it like a divergence (stop logging, resynchronise the
// followers), not guess.
var ErrUnexpectedReply = errors.New("resp: reply does not fit the command")

// ErrEmptyCommand is returned by Prepare for a command with no arguments.
var ErrEmptyCommand = errors.New("ERR empty command")

// ErrTransactionCommand is returned by Prepare for MULTI, EXEC, DISCARD,
// WATCH and UNWATCH: the caller runs transactions itself and logs them with
// TxEffect.
var ErrTransactionCommand = errors.New("ERR MULTI, EXEC, DISCARD, WATCH and UNWATCH are not prepared one by one")

// The errors NonBlocking returns for a bad timeout, worded as Redis 7.0's
// getTimeoutFromObjectOrReply (timeout.c) words them.
var (
	ErrTimeoutNotFloat   = errors.New("ERR timeout is not a float or out of range")
	ErrTimeoutNotInteger = errors.New("ERR timeout is not an integer or out of range")
	ErrTimeoutNegative   = errors.New("ERR timeout is negative")
)

// Plan is how one client write is executed on the primary and logged.
//
// The caller sends Exec to the primary, in one MULTI … EXEC when Atomic is
// set, and gives the client the reply to Exec[0]: the other commands only
// feed Effect (XLEN after approximate trimming). Inside a client's own
// MULTI, the caller queues every command of every Plan and answers EXEC
// with TxReply.
//
// A Plan aliases the args it was prepared from, and Effect's commands alias
// both the args and the replies: they must not change until the logged
// commands have been encoded.
type Plan struct {
	// Exec is what to send to the primary, one command per element.
	Exec [][][]byte
	// Atomic asks for MULTI … EXEC around Exec even when it holds one
	// command. It is set whenever len(Exec) > 1, and for blocking pops,
	// which Redis never blocks inside a transaction.
	Atomic bool
	// Kind names the rewrite, one of the Kind constants, for metrics; ""
	// when the write is executed and logged as sent.
	Kind string

	op      planOp
	log     [][]byte // the command to log when it is not Exec[0] (GETEX: nil logs nothing)
	flags   uint16   // planSet… bits for SET
	idx     int      // XADD: index of the ID
	approx  bool     // XADD, XTRIM: ~ trimming, followed by XLEN in Exec
	nomk    bool     // XADD: NOMKSTREAM
	name    string   // blocking pops: the plain pop to log
	dir     string   // BLMPOP, BZMPOP: LEFT, RIGHT, MIN or MAX
	scripts *ScriptCache
	body    []byte // EVAL, EVALSHA, SCRIPT LOAD: the script
}

// planOp says how Effect reads the replies.
type planOp uint8

const (
	planPlain        planOp = iota // log Exec[0] unless the reply is an error
	planRead                       // log nothing
	planInvalid                    // Redis 7.0 rejects it: expect an error (or a nil)
	planZeroNoop                   // planPlain, but a reply of 0 changed nothing
	planNilNoop                    // planPlain, but a nil or empty array changed nothing
	planExpire                     // log p.log when the reply is 1
	planSet                        // log p.log when the reply says the SET happened
	planGetEx                      // log p.log (if any) when the key existed
	planGetDel                     // DEL key when the key existed
	planGetSet                     // SET key value
	planSpop                       // SREM key <popped>
	planIncrByFloat                // SET key <reply> KEEPTTL
	planHIncrByFloat               // HSET key field <reply>
	planXAdd                       // XADD with the reply's ID, exact trimming
	planXTrim                      // XTRIM with exact trimming
	planPop                        // BLPOP …: <name> key
	planMove                       // BRPOPLPUSH, BLMOVE: p.log when an element moved
	planMPop                       // BLMPOP, BZMPOP: <name> 1 key <dir> COUNT n
	planScript                     // EVAL, EVALSHA, FCALL: see planScriptNotRun
	planScriptLoad                 // SCRIPT LOAD
)

// The words the commonest rewrites put into commands, shared by every Plan
// and never modified: a rewritten command aliases them as it aliases the
// client's arguments.
var (
	planWordSET       = []byte("SET")
	planWordPXAT      = []byte("PXAT")
	planWordPEXPIREAT = []byte("PEXPIREAT")
	planWordKEEPTTL   = []byte("KEEPTTL")
	planWordNX        = []byte("NX")
	planWordXX        = []byte("XX")
	planWordGET       = []byte("GET")
)

// Bits of Plan.flags for SET and GETEX, named after Redis's OBJ_* flags.
const (
	planSetNX uint16 = 1 << iota
	planSetXX
	planSetGet
	planSetKeepTTL
	planSetPersist
	planSetEX
	planSetPX
	planSetEXAT
	planSetPXAT
	planSetExpiry = planSetEX | planSetPX | planSetEXAT | planSetPXAT
)

// Prepare rewrites a write before the primary executes it. nowMs is the
// time, in Unix milliseconds, that relative expiries count from; it should
// come from a clock close to the primary's. scripts resolves EVALSHA and
// records the bodies of EVAL and SCRIPT LOAD (and SCRIPT FLUSH empties it);
// it may be nil, and then every EVALSHA gets ErrNoScript.
//
// The only errors are ErrNoScript, ErrEmptyCommand and
// ErrTransactionCommand, whose text is meant as the client's error reply.
// A command Redis would reject is not an error here: it is sent as is, so
// that the client sees Redis's exact message.
//
// Prepare does not know which commands are reads; the caller classifies
// them and prepares only writes (inside MULTI, reads get ReadOnly).
func Prepare(args [][]byte, nowMs int64, scripts *ScriptCache) (Plan, error) {
	if len(args) == 0 {
		return Plan{}, ErrEmptyCommand
	}
	p := Plan{Exec: [][][]byte{args}}
	var nb [16]byte
	switch string(planUpper(nb[:0], args[0])) {
	case "SET":
		planPrepareSet(&p, args, nowMs)
	case "SETEX":
		planPrepareSetEx(&p, args, nowMs, planSetEX)
	case "PSETEX":
		planPrepareSetEx(&p, args, nowMs, planSetPX)
	case "EXPIRE":
		planPrepareExpire(&p, args, nowMs, true, true)
	case "PEXPIRE":
		planPrepareExpire(&p, args, nowMs, false, true)
	case "EXPIREAT":
		planPrepareExpire(&p, args, nowMs, true, false)
	case "PEXPIREAT":
		planPrepareExpire(&p, args, nowMs, false, false)
	case "GETEX":
		planPrepareGetEx(&p, args, nowMs)
	case "RESTORE":
		planPrepareRestore(&p, args, nowMs)
	case "GETDEL":
		p.setOp(len(args) == 2, planGetDel, KindGetDel)
	case "GETSET":
		p.setOp(len(args) == 3, planGetSet, KindGetSet)
	case "SPOP":
		p.setOp(len(args) == 2 || len(args) == 3, planSpop, KindSpop)
	case "INCRBYFLOAT":
		p.setOp(len(args) == 3, planIncrByFloat, KindIncrByFloat)
	case "HINCRBYFLOAT":
		p.setOp(len(args) == 4, planHIncrByFloat, KindHIncrByFloat)
	case "XADD":
		planPrepareStream(&p, args, true)
	case "XTRIM":
		planPrepareStream(&p, args, false)
	case "BLPOP":
		planPrepareBPop(&p, args, "LPOP")
	case "BRPOP":
		planPrepareBPop(&p, args, "RPOP")
	case "BZPOPMIN":
		planPrepareBPop(&p, args, "ZPOPMIN")
	case "BZPOPMAX":
		planPrepareBPop(&p, args, "ZPOPMAX")
	case "BRPOPLPUSH":
		if len(args) == 4 {
			p.log = [][]byte{[]byte("RPOPLPUSH"), args[1], args[2]}
		}
		p.setOp(len(args) == 4, planMove, KindBlockingPop)
		p.Atomic = true
	case "BLMOVE":
		if len(args) == 6 {
			p.log = [][]byte{[]byte("LMOVE"), args[1], args[2], args[3], args[4]}
		}
		p.setOp(len(args) == 6, planMove, KindBlockingPop)
		p.Atomic = true
	case "BLMPOP":
		planPrepareBMPop(&p, args, "LMPOP", "LEFT", "RIGHT")
	case "BZMPOP":
		planPrepareBMPop(&p, args, "ZMPOP", "MIN", "MAX")
	case "XREADGROUP":
		if probe, _, ok, err := planStripBlock(args, true); ok && err == nil {
			p.Exec[0] = probe
			p.Kind = KindXReadGroupBlock
		}
	case "EVAL":
		planPrepareEval(&p, args, scripts)
	case "EVALSHA":
		if len(args) < 3 {
			p.op = planInvalid
			break
		}
		body, ok := scripts.get(args[1])
		if !ok {
			return Plan{}, ErrNoScript
		}
		cmd := make([][]byte, len(args))
		cmd[0], cmd[1] = []byte("EVAL"), body
		copy(cmd[2:], args[2:])
		p.Exec[0], p.Kind = cmd, KindEvalSHA
		planPrepareEval(&p, cmd, scripts)
	case "FCALL":
		p.op = planScript
	case "SCRIPT":
		planPrepareScript(&p, args, scripts)
	case "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH":
		return Plan{}, ErrTransactionCommand
	// A reply of 0 from these means that nothing changed, so Redis
	// propagates nothing either (its dirty counter did not move).
	case "DEL", "UNLINK", "PERSIST", "HDEL", "SREM", "ZREM", "LREM", "SADD",
		"SETNX", "HSETNX", "MSETNX", "RENAMENX", "SMOVE", "MOVE", "COPY",
		"XDEL", "XACK", "LPUSHX", "RPUSHX",
		"ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZREMRANGEBYLEX":
		p.op = planZeroNoop
	// A nil or empty reply from these means that there was nothing to pop.
	case "LPOP", "RPOP", "RPOPLPUSH", "LMOVE", "LMPOP", "ZMPOP", "ZPOPMIN", "ZPOPMAX":
		p.op = planNilNoop
	}
	if len(p.Exec) > 1 {
		p.Atomic = true
	}
	return p, nil
}

// ReadOnly returns the Plan of a command that changes nothing: executed as
// is, logged never. Inside a client's MULTI the caller prepares the writes
// with Prepare and the reads with ReadOnly, so that TxEffect and TxReply
// can match every EXEC element to its command.
func ReadOnly(args [][]byte) Plan {
	return Plan{Exec: [][][]byte{args}, op: planRead}
}

// setOp sets the Effect rule and Kind when the arity is what Redis
// requires, and otherwise expects Redis's arity error.
func (p *Plan) setOp(arityOK bool, op planOp, kind string) {
	if !arityOK {
		p.op = planInvalid
		return
	}
	p.op, p.Kind = op, kind
}

// Effect returns the commands that reproduce the write on a replica, given
// the primary's replies to Exec, one per command, in order. It returns no
// commands when the write changed nothing a replica needs: an error reply,
// GETDEL or a pop of a missing key, SET NX that found the key, XADD
// NOMKSTREAM without a stream, EXPIRE that set nothing, and so on.
//
// An error reply logs nothing, with one exception: a script (EVAL, EVALSHA,
// FCALL) that failed while running may have written before it failed, and
// Redis keeps those writes, so it is logged unless the error shows that it
// never ran. The replica then fails the same way, after the same writes;
// the applier must accept error replies to logged commands.
//
// The error is ErrUnexpectedReply, wrapped, when the replies do not fit the
// plan; the commands are then nil.
func (p Plan) Effect(replies []Value) ([][][]byte, error) {
	if len(replies) != len(p.Exec) {
		return nil, fmt.Errorf("%w: %d replies to %d commands", ErrUnexpectedReply, len(replies), len(p.Exec))
	}
	r := replies[0]
	if r.IsError() && p.op != planScript && p.op != planScriptLoad {
		return nil, nil
	}
	args := p.Exec[0]
	switch p.op {
	case planPlain:
		return p.Exec[:1:1], nil
	case planRead:
		return nil, nil
	case planInvalid:
		if r.IsNil() {
			return nil, nil
		}
	case planZeroNoop:
		if r.Kind == Integer && r.Int == 0 {
			return nil, nil
		}
		return p.Exec[:1:1], nil
	case planNilNoop:
		if r.IsNil() || (r.Kind == Array && len(r.Elems) == 0) {
			return nil, nil
		}
		return p.Exec[:1:1], nil
	case planExpire:
		switch {
		case r.Kind == Integer && r.Int == 0:
			return nil, nil
		case r.Kind == Integer && r.Int == 1:
			return p.logged(), nil
		}
	case planSet:
		if done, ok := planSetHappened(p.flags, r); ok {
			if !done {
				return nil, nil
			}
			return p.logged(), nil
		}
	case planGetEx:
		switch {
		case r.Kind == Null:
			return nil, nil
		case r.Kind == Bulk && p.log == nil:
			return nil, nil
		case r.Kind == Bulk:
			return [][][]byte{p.log}, nil
		}
	case planGetDel:
		switch r.Kind {
		case Null:
			return nil, nil
		case Bulk:
			return [][][]byte{{[]byte("DEL"), args[1]}}, nil
		}
	case planGetSet:
		if r.Kind == Null || r.Kind == Bulk {
			return [][][]byte{{planWordSET, args[1], args[2]}}, nil
		}
	case planSpop:
		return planSpopEffect(args, r)
	case planIncrByFloat:
		if r.Kind == Bulk {
			return [][][]byte{{planWordSET, args[1], r.Str, planWordKEEPTTL}}, nil
		}
	case planHIncrByFloat:
		if r.Kind == Bulk {
			return [][][]byte{{[]byte("HSET"), args[1], args[2], r.Str}}, nil
		}
	case planXAdd:
		return p.xaddEffect(replies)
	case planXTrim:
		return p.xtrimEffect(replies)
	case planPop:
		switch {
		case r.IsNil():
			return nil, nil
		case r.Kind == Array && len(r.Elems) >= 2 && r.Elems[0].Kind == Bulk:
			return [][][]byte{{[]byte(p.name), r.Elems[0].Str}}, nil
		}
	case planMove:
		switch r.Kind {
		case Null, NullArray:
			return nil, nil
		case Bulk:
			return p.logged(), nil
		}
	case planMPop:
		switch {
		case r.IsNil():
			return nil, nil
		case r.Kind == Array && len(r.Elems) == 2 && r.Elems[0].Kind == Bulk &&
			r.Elems[1].Kind == Array && len(r.Elems[1].Elems) > 0:
			n := strconv.AppendInt(nil, int64(len(r.Elems[1].Elems)), 10)
			return [][][]byte{{[]byte(p.name), []byte("1"), r.Elems[0].Str, []byte(p.dir), []byte("COUNT"), n}}, nil
		}
	case planScript:
		if r.IsError() && planScriptNotRun(r.Str) {
			if p.body != nil && bytes.HasPrefix(r.Str, []byte("ERR Error compiling script")) {
				p.scripts.remove(p.body)
			}
			return nil, nil
		}
		return p.Exec[:1:1], nil
	case planScriptLoad:
		if r.IsError() {
			p.scripts.remove(p.body)
			return nil, nil
		}
		if r.Kind == Bulk {
			return p.Exec[:1:1], nil
		}
	}
	return nil, fmt.Errorf("%w: %s to %s", ErrUnexpectedReply, r, planName(args))
}

// TxEffect returns the commands to log, as one atomic entry, for a client's
// MULTI … EXEC: plans are the queued commands in order (writes from
// Prepare, reads from ReadOnly) and exec is the reply to EXEC, whose
// elements answer every command of every plan's Exec in turn. A command
// whose element is an error is skipped, as Redis skips it: the others
// stand. An EXEC that returned nil (a WATCHed key changed) or an error
// (EXECABORT) logs nothing.
func TxEffect(plans []Plan, exec Value) ([][][]byte, error) {
	if exec.Kind != Array {
		if exec.IsNil() || exec.IsError() {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %s to EXEC", ErrUnexpectedReply, exec)
	}
	if n := planExecCount(plans); n != len(exec.Elems) {
		return nil, fmt.Errorf("%w: EXEC returned %d replies to %d commands", ErrUnexpectedReply, len(exec.Elems), n)
	}
	var out [][][]byte
	at := 0
	for _, p := range plans {
		cmds, err := p.Effect(exec.Elems[at : at+len(p.Exec)])
		if err != nil {
			return nil, err
		}
		out = append(out, cmds...)
		at += len(p.Exec)
	}
	return out, nil
}

// TxReply returns the EXEC reply the client should see: the reply to the
// first command of each plan's Exec, leaving out the commands the proxy
// added. A nil or error EXEC reply is returned as it is.
func TxReply(plans []Plan, exec Value) Value {
	if exec.Kind != Array || planExecCount(plans) != len(exec.Elems) {
		return exec
	}
	if len(plans) == len(exec.Elems) {
		return exec
	}
	out := Value{Kind: Array, Elems: make([]Value, 0, len(plans))}
	at := 0
	for _, p := range plans {
		out.Elems = append(out.Elems, exec.Elems[at])
		at += len(p.Exec)
	}
	return out
}

func planExecCount(plans []Plan) int {
	n := 0
	for _, p := range plans {
		n += len(p.Exec)
	}
	return n
}

// NonBlocking tells how to run a command that may block. ok is false when
// args cannot block (not a blocking command, XREAD without BLOCK, or the
// wrong number of arguments, which Redis rejects before blocking); the
// caller then runs it like any other command.
//
// When ok is true, probe is the command to try without blocking: the
// BLPOP family as it is, to be sent inside MULTI … EXEC, where Redis never
// blocks; XREAD and XREADGROUP without BLOCK. A nil (empty) result means
// that the caller should park the client, for timeoutMs milliseconds (0 is
// forever), and probe again when the keys change. err, when not nil, is
// Redis's reply to a bad timeout.
//
// XREAD … $ asks for entries added after the call: before parking, the
// caller must replace each $ in the probe by the stream's last ID at the
// time of the first probe, or every later probe would wait for yet newer
// entries.
func NonBlocking(args [][]byte) (probe [][]byte, timeoutMs int64, ok bool, err error) {
	if len(args) == 0 {
		return nil, 0, false, nil
	}
	var nb [16]byte
	var timeout []byte
	switch string(planUpper(nb[:0], args[0])) {
	case "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX":
		if len(args) < 3 {
			return nil, 0, false, nil
		}
		timeout = args[len(args)-1]
	case "BRPOPLPUSH":
		if len(args) != 4 {
			return nil, 0, false, nil
		}
		timeout = args[3]
	case "BLMOVE":
		if len(args) != 6 {
			return nil, 0, false, nil
		}
		timeout = args[5]
	case "BLMPOP", "BZMPOP":
		if len(args) < 5 {
			return nil, 0, false, nil
		}
		timeout = args[1]
	case "XREAD":
		return planStripBlock(args, false)
	case "XREADGROUP":
		return planStripBlock(args, true)
	default:
		return nil, 0, false, nil
	}
	ms, err := planTimeoutSeconds(timeout)
	if err != nil {
		return nil, 0, true, err
	}
	return args, ms, true, nil
}

// planPrepareSet rewrites SET … EX|PX|EXAT to SET … PXAT and logs SET key
// value [KEEPTTL] [PXAT ms] when the SET happens: like Redis's
// setGenericCommand, which propagates SET key value PXAT ms, and drops GET.
func planPrepareSet(p *Plan, args [][]byte, now int64) {
	if len(args) < 3 {
		p.op = planInvalid
		return
	}
	flags, expire, ok := planStringOptions(args, true)
	if !ok {
		p.op = planInvalid
		return
	}
	var at int64
	if flags&planSetExpiry != 0 {
		if at, ok = planExpireMillis(expire, flags, now); !ok {
			p.op = planInvalid
			return
		}
	}
	p.op, p.flags = planSet, flags
	if flags&planSetGet != 0 {
		p.Kind = KindSetGet
	}
	simple := len(args) == 3 ||
		(len(args) == 4 && flags == planSetKeepTTL) ||
		(len(args) == 5 && flags == planSetPXAT)
	if simple {
		return
	}
	// One array holds both commands: SET k v [KEEPTTL] [PXAT ms], then
	// SET k v [NX|XX] [GET] PXAT ms.
	var atText []byte
	if flags&planSetExpiry != 0 {
		atText = strconv.AppendInt(make([]byte, 0, 20), at, 10)
	}
	buf := make([][]byte, 0, 12)
	buf = append(buf, planWordSET, args[1], args[2])
	if flags&planSetKeepTTL != 0 {
		buf = append(buf, planWordKEEPTTL)
	}
	if flags&planSetExpiry != 0 {
		buf = append(buf, planWordPXAT, atText)
	}
	p.log = buf[:len(buf):len(buf)]
	if flags&(planSetEX|planSetPX|planSetEXAT) == 0 {
		return
	}
	exec := append(buf[len(buf):], planWordSET, args[1], args[2])
	switch {
	case flags&planSetNX != 0:
		exec = append(exec, planWordNX)
	case flags&planSetXX != 0:
		exec = append(exec, planWordXX)
	}
	if flags&planSetGet != 0 {
		exec = append(exec, planWordGET)
	}
	p.Exec[0] = append(exec, planWordPXAT, atText)
	p.Kind = KindExpireAbsolute
}

// logged returns the one command to log: p.log, or else Exec[0].
func (p Plan) logged() [][][]byte {
	if p.log == nil {
		return p.Exec[:1:1]
	}
	return [][][]byte{p.log}
}

// planSetHappened reads SET's reply: done reports whether the key was set;
// ok is false when the reply cannot answer SET with these flags.
func planSetHappened(flags uint16, r Value) (done, ok bool) {
	if flags&planSetGet == 0 {
		switch {
		case r.Kind == SimpleString && string(r.Str) == "OK":
			return true, true
		case r.Kind == Null:
			return false, true
		}
		return false, false
	}
	// With GET the reply is the old value: nil when the key was missing.
	if r.Kind != Null && r.Kind != Bulk {
		return false, false
	}
	switch {
	case flags&planSetNX != 0:
		return r.Kind == Null, true
	case flags&planSetXX != 0:
		return r.Kind == Bulk, true
	}
	return true, true
}

// planPrepareSetEx rewrites SETEX and PSETEX to SET key value PXAT ms.
// Both reply OK and replace a value of any type, as SET does.
func planPrepareSetEx(p *Plan, args [][]byte, now int64, unit uint16) {
	if len(args) != 4 {
		p.op = planInvalid
		return
	}
	at, ok := planExpireMillis(args[2], unit, now)
	if !ok {
		p.op = planInvalid
		return
	}
	cmd := [][]byte{planWordSET, args[1], args[3], planWordPXAT, strconv.AppendInt(make([]byte, 0, 20), at, 10)}
	p.Exec[0], p.op, p.flags, p.Kind = cmd, planSet, planSetPXAT, KindExpireAbsolute
}

// planExpireMillis turns the EX, PX, EXAT or PXAT argument into absolute
// milliseconds, mirroring getExpireMillisecondsOrReply (t_string.c): the
// value must be a positive integer, and neither the conversion to
// milliseconds nor adding the time may overflow.
func planExpireMillis(arg []byte, unit uint16, now int64) (int64, bool) {
	v, ok := planInt(arg)
	if !ok || v <= 0 {
		return 0, false
	}
	if unit&(planSetEX|planSetEXAT) != 0 {
		if v > math.MaxInt64/1000 {
			return 0, false
		}
		v *= 1000
	}
	if unit&(planSetEX|planSetPX) != 0 {
		if v, ok = planAdd(v, now); !ok {
			return 0, false
		}
	}
	return v, v > 0
}

// planStringOptions parses the options of SET (isSet) or GETEX the way
// parseExtendedStringArgumentsOrReply (t_string.c) does: options compare as
// C strings, so an argument is cut at its first NUL byte; an expiry may be
// repeated (the last one counts) but not mixed with another kind.
func planStringOptions(args [][]byte, isSet bool) (flags uint16, expire []byte, ok bool) {
	j := 2
	if isSet {
		j = 3
	}
	for ; j < len(args); j++ {
		opt := planCString(args[j])
		next := j < len(args)-1
		var bit, excl uint16
		switch {
		case isSet && planFoldIs(opt, "NX"):
			bit, excl = planSetNX, planSetXX
		case isSet && planFoldIs(opt, "XX"):
			bit, excl = planSetXX, planSetNX
		case isSet && planFoldIs(opt, "GET"):
			bit = planSetGet
		case isSet && planFoldIs(opt, "KEEPTTL"):
			bit, excl = planSetKeepTTL, planSetPersist|planSetExpiry
		case !isSet && planFoldIs(opt, "PERSIST"):
			bit, excl = planSetPersist, planSetKeepTTL|planSetExpiry
		case next && planFoldIs(opt, "EX"):
			bit, excl = planSetEX, planSetKeepTTL|planSetPersist|planSetExpiry&^planSetEX
		case next && planFoldIs(opt, "PX"):
			bit, excl = planSetPX, planSetKeepTTL|planSetPersist|planSetExpiry&^planSetPX
		case next && planFoldIs(opt, "EXAT"):
			bit, excl = planSetEXAT, planSetKeepTTL|planSetPersist|planSetExpiry&^planSetEXAT
		case next && planFoldIs(opt, "PXAT"):
			bit, excl = planSetPXAT, planSetKeepTTL|planSetPersist|planSetExpiry&^planSetPXAT
		default:
			return 0, nil, false
		}
		if flags&excl != 0 {
			return 0, nil, false
		}
		flags |= bit
		if bit&planSetExpiry != 0 {
			expire = args[j+1]
			j++
		}
	}
	return flags, expire, true
}

// planPrepareExpire rewrites EXPIRE, PEXPIRE and EXPIREAT to PEXPIREAT,
// keeping NX, XX, GT and LT, as expireGenericCommand (expire.c) propagates
// them. The log drops the flags: a reply of 1 says they were met.
func planPrepareExpire(p *Plan, args [][]byte, now int64, seconds, relative bool) {
	if len(args) < 3 || !planExpireFlagsOK(args[3:]) {
		p.op = planInvalid
		return
	}
	when, ok := planInt(args[2])
	if !ok {
		p.op = planInvalid
		return
	}
	// Negative values are valid: the key is deleted. Only overflow is not.
	if seconds {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			p.op = planInvalid
			return
		}
		when *= 1000
	}
	if relative {
		if when, ok = planAdd(when, now); !ok {
			p.op = planInvalid
			return
		}
	}
	p.op = planExpire
	if !seconds && !relative {
		if len(args) > 3 {
			p.log = args[:3:3]
		}
		return
	}
	at := strconv.AppendInt(make([]byte, 0, 20), when, 10)
	cmd := make([][]byte, len(args))
	cmd[0], cmd[1], cmd[2] = planWordPEXPIREAT, args[1], at
	copy(cmd[3:], args[3:])
	p.Exec[0], p.log, p.Kind = cmd, cmd[:3:3], KindExpireAbsolute
}

// planExpireFlagsOK mirrors parseExtendedExpireArgumentsOrReply (expire.c):
// NX, XX, GT, LT, repeatable, with NX alone and GT and LT exclusive.
func planExpireFlagsOK(opts [][]byte) bool {
	var nx, xx, gt, lt bool
	for _, o := range opts {
		o = planCString(o)
		switch {
		case planFoldIs(o, "NX"):
			nx = true
		case planFoldIs(o, "XX"):
			xx = true
		case planFoldIs(o, "GT"):
			gt = true
		case planFoldIs(o, "LT"):
			lt = true
		default:
			return false
		}
	}
	return !(nx && (xx || gt || lt)) && !(gt && lt)
}

// planPrepareGetEx rewrites GETEX … EX|PX|EXAT to GETEX … PXAT and logs
// PEXPIREAT or PERSIST when the key existed, as getexCommand (t_string.c)
// propagates it. GETEX checks the expiry only after finding the key, so a
// bad one on a missing key replies nil: planInvalid accepts that.
func planPrepareGetEx(p *Plan, args [][]byte, now int64) {
	if len(args) < 2 {
		p.op = planInvalid
		return
	}
	flags, expire, ok := planStringOptions(args, false)
	if !ok {
		p.op = planInvalid
		return
	}
	p.op = planGetEx
	switch {
	case flags&planSetPersist != 0:
		p.log = [][]byte{[]byte("PERSIST"), args[1]}
	case flags&planSetExpiry != 0:
		at, ok := planExpireMillis(expire, flags, now)
		if !ok {
			p.op = planInvalid
			return
		}
		atText := strconv.AppendInt(make([]byte, 0, 20), at, 10)
		p.log = [][]byte{planWordPEXPIREAT, args[1], atText}
		if flags&planSetPXAT == 0 {
			p.Exec[0] = [][]byte{[]byte("GETEX"), args[1], planWordPXAT, atText}
			p.Kind = KindExpireAbsolute
		}
	}
}

// planPrepareRestore rewrites RESTORE key ttl payload … (ttl > 0, no
// ABSTTL) to RESTORE key <now+ttl> payload … ABSTTL, as restoreCommand
// (cluster.c) propagates it. The options are checked as restoreCommand
// checks them, before the rewrite could change their meaning.
func planPrepareRestore(p *Plan, args [][]byte, now int64) {
	if len(args) < 4 {
		p.op = planInvalid
		return
	}
	absttl, idle, freq := false, false, false
	for j := 4; j < len(args); j++ {
		opt := planCString(args[j])
		more := len(args) - j - 1
		switch {
		case planFoldIs(opt, "REPLACE"):
		case planFoldIs(opt, "ABSTTL"):
			absttl = true
		case planFoldIs(opt, "IDLETIME") && more >= 1 && !freq:
			v, ok := planInt(args[j+1])
			if !ok || v < 0 {
				p.op = planInvalid
				return
			}
			idle = true
			j++
		case planFoldIs(opt, "FREQ") && more >= 1 && !idle:
			v, ok := planInt(args[j+1])
			if !ok || v < 0 || v > 255 {
				p.op = planInvalid
				return
			}
			freq = true
			j++
		default:
			p.op = planInvalid
			return
		}
	}
	ttl, ok := planInt(args[2])
	if !ok || ttl < 0 {
		p.op = planInvalid
		return
	}
	if ttl == 0 || absttl {
		return
	}
	// Redis adds the time without an overflow check, and a time that wraps
	// around is in the past: the key is not created. Any past absolute
	// time (but not 0, which means no expiry) does the same.
	at, ok := planAdd(ttl, now)
	if !ok || at <= 0 {
		at = 1
	}
	cmd := make([][]byte, 0, len(args)+1)
	cmd = append(cmd, []byte("RESTORE"), args[1], strconv.AppendInt(nil, at, 10))
	cmd = append(cmd, args[3:]...)
	p.Exec[0], p.Kind = append(cmd, []byte("ABSTTL")), KindExpireAbsolute
}

// planSpopEffect logs SPOP as SREM of what it popped, as
// spopCommand/spopWithCountCommand (t_set.c) propagate it: which members
// SPOP picks is random.
func planSpopEffect(args [][]byte, r Value) ([][][]byte, error) {
	switch {
	case r.Kind == Null || r.Kind == NullArray:
		return nil, nil
	case r.Kind == Bulk && len(args) == 2:
		return [][][]byte{{[]byte("SREM"), args[1], r.Str}}, nil
	case r.Kind == Array && len(args) == 3:
		if len(r.Elems) == 0 {
			return nil, nil
		}
		cmd := make([][]byte, 0, 2+len(r.Elems))
		cmd = append(cmd, []byte("SREM"), args[1])
		for _, e := range r.Elems {
			if e.Kind != Bulk {
				return nil, fmt.Errorf("%w: SPOP member %s", ErrUnexpectedReply, e)
			}
			cmd = append(cmd, e.Str)
		}
		return [][][]byte{cmd}, nil
	}
	return nil, fmt.Errorf("%w: %s to SPOP", ErrUnexpectedReply, r)
}

// planStream is the shape of XADD's or XTRIM's arguments.
type planStream struct {
	id       int  // XADD: index of the ID
	strategy int  // index of MAXLEN or MINID, 0 for none
	approx   bool // ~
	nomk     bool // NOMKSTREAM
	limit    bool // LIMIT given
}

// planParseStream finds the parts of XADD (xadd) or XTRIM the way
// streamParseAddOrTrimArgsOrReply (t_stream.c) walks them. It checks only
// what decides the shape: thresholds, LIMIT counts and IDs it accepts
// blindly, since the command goes to Redis as it is and a bad one just
// makes Redis reply with an error, which logs nothing.
func planParseStream(args [][]byte, xadd bool) (planStream, bool) {
	var s planStream
	i := 2
	for ; i < len(args); i++ {
		more := len(args) - 1 - i
		opt := planCString(args[i])
		switch {
		case xadd && len(opt) == 1 && opt[0] == '*':
			s.id = i
			return s, planXAddArityOK(args, i)
		case (planFoldIs(opt, "MAXLEN") || planFoldIs(opt, "MINID")) && more > 0:
			if s.strategy != 0 {
				return s, false
			}
			s.strategy, s.approx = i, false
			next := planCString(args[i+1])
			if more >= 2 && len(next) == 1 && (next[0] == '~' || next[0] == '=') {
				s.approx = next[0] == '~'
				i++
			}
			i++
		case planFoldIs(opt, "LIMIT") && more > 0:
			s.limit = true
			i++
		case xadd && planFoldIs(opt, "NOMKSTREAM"):
			s.nomk = true
		case xadd:
			s.id = i
			return s, planXAddArityOK(args, i)
		default:
			return s, false
		}
	}
	// XADD without an ID, or XTRIM without a strategy, is an error.
	return s, !xadd && s.strategy != 0
}

// planXAddArityOK checks for field-value pairs after the ID.
func planXAddArityOK(args [][]byte, id int) bool {
	n := len(args) - id - 1
	return n >= 2 && n%2 == 0
}

// planPrepareStream plans XADD and XTRIM. With ~, how much Redis trims
// depends on how the stream is laid out in memory, so XLEN follows in the
// same transaction and the trim is logged as the exact MAXLEN it came to:
// the stream loses its oldest entries down to that length whether the
// option was MAXLEN or MINID. This is what streamRewriteApproxSpecifier and
// streamRewriteTrimArgument do for Redis's replicas; LIMIT is dropped, since
// Redis refuses it with = (its own replicas ignore it).
func planPrepareStream(p *Plan, args [][]byte, xadd bool) {
	s, ok := planParseStream(args, xadd)
	if !ok {
		p.op = planInvalid
		return
	}
	p.op, p.idx, p.approx, p.nomk = planXTrim, s.id, s.approx, s.nomk
	if xadd {
		p.op = planXAdd
		if planXAddAutoID(args[s.id]) {
			p.Kind = KindXAddID
		}
	}
	if s.approx {
		p.Exec = append(p.Exec, [][]byte{[]byte("XLEN"), args[1]})
		p.Kind = KindXTrimExact
	}
}

// planXAddAutoID reports whether an XADD ID asks Redis to generate all or
// part of it: "*", or "<ms>-*" (streamGenericParseIDOrReply).
func planXAddAutoID(id []byte) bool {
	id = planCString(id)
	if len(id) == 1 && id[0] == '*' {
		return true
	}
	dash := bytes.IndexByte(id, '-')
	return dash >= 0 && string(id[dash+1:]) == "*"
}

func (p Plan) xaddEffect(replies []Value) ([][][]byte, error) {
	r := replies[0]
	if r.Kind == Null && p.nomk {
		return nil, nil
	}
	if r.Kind != Bulk {
		return nil, fmt.Errorf("%w: %s to XADD", ErrUnexpectedReply, r)
	}
	args := p.Exec[0]
	if !p.approx {
		if !planXAddAutoID(args[p.idx]) {
			return p.Exec[:1:1], nil
		}
		cmd := append([][]byte(nil), args...)
		cmd[p.idx] = r.Str
		return [][][]byte{cmd}, nil
	}
	n, err := planLength(replies[1])
	if err != nil {
		return nil, err
	}
	fields := args[p.idx+1:]
	cmd := make([][]byte, 0, 7+len(fields))
	cmd = append(cmd, []byte("XADD"), args[1])
	if p.nomk {
		cmd = append(cmd, []byte("NOMKSTREAM"))
	}
	cmd = append(cmd, []byte("MAXLEN"), []byte("="), n, r.Str)
	return [][][]byte{append(cmd, fields...)}, nil
}

func (p Plan) xtrimEffect(replies []Value) ([][][]byte, error) {
	r := replies[0]
	if r.Kind != Integer {
		return nil, fmt.Errorf("%w: %s to XTRIM", ErrUnexpectedReply, r)
	}
	if r.Int == 0 {
		return nil, nil
	}
	if !p.approx {
		return p.Exec[:1:1], nil
	}
	n, err := planLength(replies[1])
	if err != nil {
		return nil, err
	}
	return [][][]byte{{[]byte("XTRIM"), p.Exec[0][1], []byte("MAXLEN"), []byte("="), n}}, nil
}

// planLength reads the XLEN reply that follows approximate trimming.
func planLength(r Value) ([]byte, error) {
	if r.Kind != Integer || r.Int < 0 {
		return nil, fmt.Errorf("%w: %s to XLEN", ErrUnexpectedReply, r)
	}
	return strconv.AppendInt(nil, r.Int, 10), nil
}

// planPrepareBPop plans BLPOP, BRPOP, BZPOPMIN and BZPOPMAX: executed in
// MULTI, logged as the plain pop of the key the reply names (Redis's
// serveClientBlockedOnList propagates the same).
func planPrepareBPop(p *Plan, args [][]byte, pop string) {
	p.setOp(len(args) >= 3, planPop, KindBlockingPop)
	p.name, p.Atomic = pop, true
}

// planPrepareBMPop plans BLMPOP and BZMPOP (timeout numkeys key … dir
// [COUNT n]): logged as LMPOP or ZMPOP of the one key the reply names,
// with the number of elements it popped.
func planPrepareBMPop(p *Plan, args [][]byte, pop, dir1, dir2 string) {
	p.Atomic = true
	n, ok := planInt(planArg(args, 2))
	if !ok || n < 1 || n > int64(len(args)-4) {
		p.op = planInvalid
		return
	}
	dir := planCString(args[3+n])
	switch {
	case planFoldIs(dir, dir1):
		p.dir = dir1
	case planFoldIs(dir, dir2):
		p.dir = dir2
	default:
		p.op = planInvalid
		return
	}
	p.op, p.name, p.Kind = planMPop, pop, KindBlockingPop
}

// planArg returns args[i], or nil when there is none.
func planArg(args [][]byte, i int) []byte {
	if i < len(args) {
		return args[i]
	}
	return nil
}

// planStripBlock returns XREAD or XREADGROUP without BLOCK, and the BLOCK
// timeout, walking the options as xreadCommand (t_stream.c) does. ok is
// false when there is no BLOCK, or when an option before it is bad (Redis
// then replies with an error without blocking).
func planStripBlock(args [][]byte, group bool) (probe [][]byte, timeoutMs int64, ok bool, err error) {
	var blocks []int
	for i := 1; i < len(args); i++ {
		more := len(args) - 1 - i
		o := planCString(args[i])
		switch {
		case planFoldIs(o, "BLOCK") && more > 0:
			i++
			v, isInt := planInt(args[i])
			switch {
			case !isInt:
				return nil, 0, true, ErrTimeoutNotInteger
			case v < 0:
				return nil, 0, true, ErrTimeoutNegative
			}
			timeoutMs = v
			blocks = append(blocks, i-1)
		case planFoldIs(o, "COUNT") && more > 0:
			i++
			if _, isInt := planInt(args[i]); !isInt {
				return nil, 0, false, nil
			}
		case planFoldIs(o, "STREAMS") && more > 0:
			if (len(args)-i-1)%2 != 0 || len(blocks) == 0 {
				return nil, 0, false, nil
			}
			probe = make([][]byte, 0, len(args)-2*len(blocks))
			from := 0
			for _, b := range blocks {
				probe = append(probe, args[from:b]...)
				from = b + 2
			}
			return append(probe, args[from:]...), timeoutMs, true, nil
		case group && planFoldIs(o, "GROUP") && more >= 2:
			i += 2
		case group && planFoldIs(o, "NOACK"):
		default:
			return nil, 0, false, nil
		}
	}
	return nil, 0, false, nil
}

// planTimeoutSeconds parses the timeout of the BLPOP family into
// milliseconds as getTimeoutFromObjectOrReply (timeout.c) does: a float of
// seconds, times 1000, truncated toward zero, and negative rejected. Redis
// converts with long double; this uses float64, which can differ by 1 ms
// on fractions of a millisecond, and on values past float64's range.
func planTimeoutSeconds(arg []byte) (int64, error) {
	s := planCString(arg)
	if len(s) == 0 || len(s) >= 5*1024 {
		return 0, ErrTimeoutNotFloat
	}
	// strtold reads hex without a binary exponent; ParseFloat wants one.
	text := string(s)
	if h := bytes.TrimLeft(s, "+-"); len(h) > 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X') &&
		bytes.IndexAny(h, "pP") < 0 {
		text += "p0"
	}
	if bytes.IndexByte(s, '_') >= 0 {
		return 0, ErrTimeoutNotFloat
	}
	v, err := strconv.ParseFloat(text, 64)
	if math.IsNaN(v) || (err != nil && !math.IsInf(v, 0)) {
		return 0, ErrTimeoutNotFloat
	}
	ms := v * 1000
	// (long long) of a value out of range gives LLONG_MIN on x86-64.
	if !(ms < math.MaxInt64 && ms >= math.MinInt64) || int64(ms) < 0 {
		return 0, ErrTimeoutNegative
	}
	return int64(ms), nil
}

// planPrepareEval records an EVAL body in the cache as soon as Redis would
// have it (numkeys is checked before the script is compiled), so that a
// pipelined EVALSHA right behind it finds it.
func planPrepareEval(p *Plan, args [][]byte, scripts *ScriptCache) {
	p.op = planScript
	if len(args) < 3 {
		p.op = planInvalid
		return
	}
	// evalGenericCommand (eval.c) checks numkeys before the script.
	n, ok := planInt(args[2])
	if !ok || n < 0 || n > int64(len(args)-3) {
		p.op = planInvalid
		return
	}
	p.scripts, p.body = scripts, args[1]
	scripts.add(args[1])
}

// planPrepareScript handles SCRIPT LOAD (recorded, and logged so that the
// followers' stores have it too) and SCRIPT FLUSH (empties the cache,
// logged). The other subcommands change no data.
func planPrepareScript(p *Plan, args [][]byte, scripts *ScriptCache) {
	p.op = planRead
	if len(args) < 2 {
		return
	}
	sub := planCString(args[1])
	switch {
	case planFoldIs(sub, "LOAD") && len(args) == 3:
		p.op, p.scripts, p.body = planScriptLoad, scripts, args[2]
		scripts.add(args[2])
	case planFoldIs(sub, "FLUSH"):
		p.op = planPlain
		if scripts != nil {
			scripts.Flush()
		}
	}
}

// planScriptNotRun reports whether a script's error reply shows that it
// never started, so that it wrote nothing. Errors raised while it ran
// carry " script: " (Redis 7.0 appends "script: <sha>, on @user_script:N."),
// except what the script returns itself, which can be anything: the list
// is of errors a script cannot be stopped by once it runs.
func planScriptNotRun(msg []byte) bool {
	if bytes.HasPrefix(msg, []byte("ERR Error compiling script")) {
		return true
	}
	if bytes.Contains(msg, []byte(" script: ")) {
		return false
	}
	for _, p := range [...]string{
		"NOSCRIPT ", "BUSY ", "NOPERM ", "READONLY ", "NOREPLICAS ", "MASTERDOWN ",
		"LOADING ", "MISCONF ", "OOM ", "EXECABORT ",
		"ERR Number of keys can't be", "ERR Function not found", "ERR Bad number of keys provided",
	} {
		if bytes.HasPrefix(msg, []byte(p)) {
			return true
		}
	}
	return false
}

// planName returns a command's name for messages.
func planName(args [][]byte) string {
	if len(args) == 0 {
		return "(empty)"
	}
	const max = 32
	if len(args[0]) > max {
		return strconv.Quote(string(args[0][:max])) + "…"
	}
	return strconv.Quote(string(args[0]))
}

// planUpper appends a upper-cased to dst, or nothing when a does not fit in
// dst's capacity: no command this file knows has a longer name.
func planUpper(dst, a []byte) []byte {
	if len(a) > cap(dst) {
		return dst
	}
	for _, c := range a {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// planFoldIs reports whether a equals the upper-case ASCII word w, ignoring
// case.
func planFoldIs(a []byte, w string) bool {
	if len(a) != len(w) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// planCString cuts a at its first NUL byte: Redis compares options with
// strcasecmp on the argument's C string, so "EX\x00junk" is EX to it.
func planCString(a []byte) []byte {
	if i := bytes.IndexByte(a, 0); i >= 0 {
		return a[:i]
	}
	return a
}

// planInt parses an integer as string2ll (util.c) does, which is what
// getLongLongFromObject uses for command arguments: optional '-', no '+',
// no spaces, no leading zeros, at most 20 bytes, within int64.
func planInt(b []byte) (int64, bool) {
	n := len(b)
	if n == 0 || n >= 21 {
		return 0, false
	}
	if n == 1 && b[0] == '0' {
		return 0, true
	}
	i, neg := 0, false
	if b[0] == '-' {
		neg, i = true, 1
		if n == 1 {
			return 0, false
		}
	}
	if b[i] < '1' || b[i] > '9' {
		return 0, false
	}
	v := uint64(b[i] - '0')
	for i++; i < n; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return int64(-v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// planAdd returns a+b and whether it did not overflow.
func planAdd(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}
