package resp

import "strconv"

// Class is what the proxy does with a command.
type Class uint8

// The classes. The zero Class is not one of them.
const (
	// ClassRead reads, with no side effect the replicas need: forwarded
	// to the primary (or a local store, as the read policy says), not
	// logged.
	ClassRead Class = iota + 1
	// ClassWrite carries the write or may_replicate flag (or is PUBLISH
	// or SPUBLISH, which Redis propagates too): executed on the ordered
	// writer and logged.
	ClassWrite
	// ClassBlocking may block: BLPOP, BRPOP, BRPOPLPUSH, BLMOVE, BLMPOP,
	// BZPOPMIN, BZPOPMAX, BZMPOP, and XREAD and XREADGROUP when they carry
	// BLOCK.
	ClassBlocking
	// ClassTransaction is MULTI, EXEC, DISCARD, WATCH and UNWATCH.
	ClassTransaction
	// ClassScript runs a script that may write: EVAL, EVALSHA, FCALL. Their
	// _RO variants are ClassRead.
	ClassScript
	// ClassScriptAdmin manages the script cache: SCRIPT LOAD, EXISTS,
	// FLUSH and HELP. (SCRIPT KILL and FUNCTION KILL are ClassRead: they
	// must not wait behind the busy script on the ordered writer.)
	ClassScriptAdmin
	// ClassPubSub enters or leaves subscribed mode: SUBSCRIBE, PSUBSCRIBE,
	// SSUBSCRIBE and their UNSUBSCRIBEs.
	ClassPubSub
	// ClassConnection changes or asks about the client's connection: AUTH,
	// HELLO, SELECT, CLIENT, PING, ECHO, QUIT, RESET.
	ClassConnection
	// ClassAdmin is an administrative command that is safe to pass to the
	// primary unlogged (CONFIG, SLOWLOG, LATENCY, ACL, BGSAVE …). Redis does
	// not replicate these either.
	ClassAdmin
	// ClassWait is WAIT and WAITAOF, which the proxy answers from its own
	// replication state.
	ClassWait
	// ClassProxy is replicar's own command, REPLICAR.
	ClassProxy
	// ClassRefused is not supported through the proxy: MONITOR,
	// replication and cluster commands, SHUTDOWN, MIGRATE, CLIENT TRACKING,
	// the DEBUG subcommands that reload, crash or write, MODULE LOAD …;
	// RefusedError gives the reply.
	ClassRefused
)

var classNames = [...]string{
	ClassRead:        "read",
	ClassWrite:       "write",
	ClassBlocking:    "blocking",
	ClassTransaction: "transaction",
	ClassScript:      "script",
	ClassScriptAdmin: "script-admin",
	ClassPubSub:      "pubsub",
	ClassConnection:  "connection",
	ClassAdmin:       "admin",
	ClassWait:        "wait",
	ClassProxy:       "proxy",
	ClassRefused:     "refused",
}

// String returns the class's name, e.g. "write".
func (c Class) String() string {
	if int(c) < len(classNames) && classNames[c] != "" {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Classify says what the proxy does with a command that Lookup resolved to
// info. The backend's flags decide, except for the commands the proxy has
// to handle itself, which a small table of names overrides; a few of those
// depend on the arguments (XREAD … BLOCK, DEBUG RELOAD, CLIENT REPLY OFF),
// the rest are decided once when the table is built. A nil info is
// ClassRefused.
func Classify(info *CommandInfo, args [][]byte) Class {
	if info == nil {
		return ClassRefused
	}
	if info.prepared {
		if info.classFn != nil {
			return info.classFn(info, args)
		}
		return info.class
	}
	return classify(info, args)
}

// prepareClass decides the class once when it does not depend on the
// arguments.
func (c *CommandInfo) prepareClass() {
	if c.classDependsOnArgs() {
		c.classFn = classify
		return
	}
	c.class = classify(c, nil)
}

// prepare fills in what Keys and Classify need, once, when the table is
// built.
func (c *CommandInfo) prepare() {
	c.prepareKeys()
	c.prepareClass()
	c.prepared = true
}

// topAndSub returns the top-level command name and, for a subcommand, its
// own name ("config", "get" for "config|get").
func (c *CommandInfo) topAndSub() (top, sub string) {
	if c.Parent != nil && len(c.Name) > len(c.Parent.Name) {
		return c.Parent.Name, c.Name[len(c.Parent.Name)+1:]
	}
	return c.Name, ""
}

// subByArg lists the commands whose override depends on a subcommand word,
// for servers where they are not containers: DEBUG everywhere, and CLIENT,
// SCRIPT, FUNCTION and MODULE before Redis 7.
var subByArg = map[string]bool{
	"debug":    true,
	"client":   true,
	"script":   true,
	"function": true,
	"module":   true,
}

func (c *CommandInfo) classDependsOnArgs() bool {
	top, sub := c.topAndSub()
	switch {
	case top == "xread" || top == "xreadgroup":
		return true
	case top == "client" && sub == "reply":
		return true // CLIENT REPLY ON passes, OFF and SKIP do not
	}
	return c.Parent == nil && len(c.Subcommands) == 0 && subByArg[top]
}

func classify(c *CommandInfo, args [][]byte) Class {
	top, sub := c.topAndSub()
	if c.Parent == nil && len(c.Subcommands) == 0 && subByArg[top] && len(args) > 1 {
		sub = lowerASCII(cString(args[1]))
	}
	if cl := overrideClass(c, top, sub, args); cl != 0 {
		return cl
	}
	return flagClass(c.Flags)
}

// overrideClass is the table of commands the proxy handles itself, by
// top-level name and subcommand; 0 means the flags decide.
func overrideClass(c *CommandInfo, top, sub string, args [][]byte) Class {
	switch top {
	case "replicar":
		if c.Local {
			return ClassProxy
		}
	case "multi", "exec", "discard", "watch", "unwatch":
		return ClassTransaction
	case "eval", "evalsha", "fcall":
		return ClassScript
	case "script":
		switch sub {
		case "debug":
			return ClassRefused
		case "kill":
			return ClassRead
		}
		return ClassScriptAdmin
	case "function":
		if sub == "kill" {
			// SCRIPT KILL and FUNCTION KILL stop the script that keeps
			// the ordered writer busy. Queued on the writer, behind that
			// script, they would wait for it forever; as reads they reach
			// the primary on another connection, which Redis serves while
			// the script runs (allow_busy).
			return ClassRead
		}
	case "publish", "spublish":
		// Flagged only pubsub, yet propagated to replicas by Redis.
		return ClassWrite
	case "pfcount":
		// Flagged readonly on 7.0, yet it rewrites the HyperLogLog's
		// cached cardinality and Redis propagates it: logged, so the
		// replicas hold the same bytes.
		return ClassWrite
	case "pubsub":
		// PUBSUB CHANNELS, NUMSUB …: introspection, flagged pubsub.
		return ClassRead
	case "auth", "hello", "select", "ping", "echo", "quit", "reset":
		return ClassConnection
	case "client":
		switch sub {
		case "tracking", "caching":
			return ClassRefused
		case "reply":
			// OFF and SKIP would leave the proxy waiting for replies
			// the backend never sends; ON is harmless.
			if len(args) > 2 && !strcaseEqual(args[2], "on") {
				return ClassRefused
			}
		}
		return ClassConnection
	case "wait", "waitaof":
		return ClassWait
	case "xread", "xreadgroup":
		if xreadBlocks(args) {
			return ClassBlocking
		}
		if c.Flags&FlagWrite != 0 {
			return ClassWrite
		}
		return ClassRead
	case "monitor", "replicaof", "slaveof", "sync", "psync", "replconf",
		"shutdown", "failover", "migrate", "cluster", "readonly", "readwrite", "asking":
		return ClassRefused
	case "debug":
		if refusedDebug[sub] {
			return ClassRefused
		}
		return ClassAdmin
	case "module":
		switch sub {
		case "load", "loadex", "unload":
			return ClassRefused
		}
	}
	return 0
}

// refusedDebug are the DEBUG subcommands that restart, crash or reload the
// backend, or change its data or replication identity without a logged
// write. The others (OBJECT, DIGEST, SLEEP, SET-ACTIVE-EXPIRE …) are
// ClassAdmin.
var refusedDebug = map[string]bool{
	"reload":            true,
	"restart":           true,
	"crash-and-recover": true,
	"segfault":          true,
	"panic":             true,
	"assert":            true,
	"oom":               true,
	"loadaof":           true,
	"populate":          true,
	"change-repl-id":    true,
	"replicate":         true,
}

// flagClass classifies by the backend's flags alone: commands Redis 7 adds
// (streams, functions …) need no entry of their own.
func flagClass(f CommandFlags) Class {
	switch {
	case f&FlagBlocking != 0:
		return ClassBlocking
	case f&FlagPubSub != 0:
		return ClassPubSub
	case f&(FlagWrite|FlagMayReplicate) != 0:
		return ClassWrite
	case f&FlagReadOnly != 0:
		return ClassRead
	case f&FlagAdmin != 0:
		return ClassAdmin
	}
	// Neither reads nor writes keys nor administers: server introspection
	// (INFO, TIME, COMMAND, LASTSAVE, … HELP).
	return ClassRead
}

// xreadBlocks reports whether XREAD or XREADGROUP carries BLOCK among the
// options before STREAMS, parsed as Redis's xreadCommand does.
func xreadBlocks(args [][]byte) bool {
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case strcaseEqual(a, "block"):
			return true
		case strcaseEqual(a, "count"):
			i++
		case strcaseEqual(a, "group"):
			i += 2
		case strcaseEqual(a, "noack"):
		default:
			return false // STREAMS, or a syntax error
		}
	}
	return false
}

// refusalReasons say why, for the commands where it is not obvious.
var refusalReasons = map[string]string{
	"replicaof": "replication and failover are managed by replicar",
	"slaveof":   "replication and failover are managed by replicar",
	"failover":  "replication and failover are managed by replicar",
	"sync":      "replicar replicates the backend itself",
	"psync":     "replicar replicates the backend itself",
	"replconf":  "replicar replicates the backend itself",
	"cluster":   "replicar does not run Redis Cluster",
	"readonly":  "replicar does not run Redis Cluster",
	"readwrite": "replicar does not run Redis Cluster",
	"asking":    "replicar does not run Redis Cluster",
	"migrate":   "it would move keys without logging the change",
	"shutdown":  "stop the replicar node instead",
	"debug":     "it would reload, crash or change the backend behind replicar's back",
	"module":    "modules must be loaded on every backend by its configuration",
	"client":    "the proxy must see every reply, and tracking invalidations cannot be routed",
	"script":    "the Lua debugger needs a direct connection to the backend",
	"monitor":   "it would show only the proxy's connections to the backend",
}

// maxRefusedArg bounds the client's own words echoed in a refusal.
const maxRefusedArg = 32

// RefusedError returns the error reply, without the leading '-', for a
// command classified ClassRefused, e.g.
// "ERR replicar: 'monitor' is not supported through the proxy". It names
// the subcommand or the argument that made the difference, as in
// 'debug reload' or 'client|reply off', and says why when that helps.
func RefusedError(info *CommandInfo, args [][]byte) string {
	if info == nil {
		return "ERR replicar: this command is not supported through the proxy"
	}
	name := info.Name
	top, _ := info.topAndSub()
	if info.Parent == nil && len(info.Subcommands) == 0 && subByArg[top] && len(args) > 1 {
		name += " " + lowerASCII(truncate(cString(args[1]), maxRefusedArg))
	}
	if top == "client" && len(args) > 2 && strcaseEqual(args[1], "reply") {
		name += " " + lowerASCII(truncate(cString(args[2]), maxRefusedArg))
	}
	msg := "ERR replicar: '" + name + "' is not supported through the proxy"
	if r := refusalReasons[top]; r != "" {
		msg += "; " + r
	}
	return oneLine(msg)
}

// lowerASCII lower-cases ASCII letters only, as Redis compares names, and
// leaves every other byte as it is.
func lowerASCII(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}
