package resp

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var updateClasses = flag.Bool("update-classes", false, "rewrite "+classesFile)

// classesFile lists the class of every command in commandTableFile, so
// that a change in classification shows in review.
const classesFile = "testdata/classes-7.0.15.txt"

func TestClassify(t *testing.T) {
	tab := loadCommandTable(t)
	for _, tc := range []struct {
		args string
		want Class
	}{
		{"get k", ClassRead},
		{"GET k", ClassRead},
		{"set k v", ClassWrite},
		{"mget a b", ClassRead},
		{"del a", ClassWrite},
		{"flushall", ClassWrite},
		{"swapdb 0 1", ClassWrite},
		{"publish ch m", ClassWrite},
		{"spublish ch m", ClassWrite},
		{"pubsub channels", ClassRead},
		{"pubsub numsub a", ClassRead},
		{"subscribe a", ClassPubSub},
		{"psubscribe a*", ClassPubSub},
		{"ssubscribe a", ClassPubSub},
		{"unsubscribe", ClassPubSub},
		{"punsubscribe", ClassPubSub},
		{"sunsubscribe", ClassPubSub},
		{"blpop a 0", ClassBlocking},
		{"brpop a 0", ClassBlocking},
		{"brpoplpush a b 0", ClassBlocking},
		{"blmove a b left left 0", ClassBlocking},
		{"blmpop 0 1 a left", ClassBlocking},
		{"bzpopmin a 0", ClassBlocking},
		{"bzpopmax a 0", ClassBlocking},
		{"bzmpop 0 1 a min", ClassBlocking},
		{"xread streams s 0", ClassRead},
		{"xread count 1 streams s 0", ClassRead},
		{"XREAD COUNT 1 BLOCK 100 STREAMS s $", ClassBlocking},
		{"xread block 0 streams s $", ClassBlocking},
		{"xread streams block 0", ClassRead}, // a stream named block
		{"xreadgroup group g c streams s >", ClassWrite},
		{"xreadgroup group g c count 1 noack block 0 streams s >", ClassBlocking},
		{"xreadgroup group block c streams s >", ClassWrite}, // a group named block
		{"multi", ClassTransaction},
		{"exec", ClassTransaction},
		{"discard", ClassTransaction},
		{"watch a", ClassTransaction},
		{"unwatch", ClassTransaction},
		{"eval s 0", ClassScript},
		{"evalsha s 0", ClassScript},
		{"fcall f 0", ClassScript},
		{"eval_ro s 0", ClassRead},
		{"evalsha_ro s 0", ClassRead},
		{"fcall_ro f 0", ClassRead},
		{"script load s", ClassScriptAdmin},
		{"script exists a", ClassScriptAdmin},
		{"script flush", ClassScriptAdmin},
		{"script kill", ClassRead}, // not behind the busy script on the writer
		{"script help", ClassScriptAdmin},
		{"script debug yes", ClassRefused},
		{"function load code", ClassWrite},
		{"function delete lib", ClassWrite},
		{"function flush", ClassWrite},
		{"function restore payload", ClassWrite},
		{"function list", ClassRead},
		{"function dump", ClassRead},
		{"function kill", ClassRead},
		{"auth pw", ClassConnection},
		{"hello 2", ClassConnection},
		{"select 1", ClassConnection},
		{"ping", ClassConnection},
		{"echo x", ClassConnection},
		{"quit", ClassConnection},
		{"reset", ClassConnection},
		{"client setname x", ClassConnection},
		{"client kill id 1", ClassConnection},
		{"client list", ClassConnection},
		{"client reply on", ClassConnection},
		{"client reply off", ClassRefused},
		{"client reply skip", ClassRefused},
		{"client tracking on", ClassRefused},
		{"client caching yes", ClassRefused},
		{"config get maxmemory", ClassAdmin},
		{"config set maxmemory 1", ClassAdmin},
		{"config resetstat", ClassAdmin},
		{"config help", ClassRead},
		{"info", ClassRead},
		{"info server", ClassRead},
		{"time", ClassRead},
		{"dbsize", ClassRead},
		{"slowlog get", ClassAdmin},
		{"latency latest", ClassAdmin},
		{"acl setuser u on", ClassAdmin},
		{"acl whoami", ClassRead},
		{"bgsave", ClassAdmin},
		{"save", ClassAdmin},
		{"bgrewriteaof", ClassAdmin},
		{"lastsave", ClassRead},
		{"command", ClassRead},
		{"command info get", ClassRead},
		{"command docs", ClassRead},
		{"memory doctor", ClassRead},
		{"memory usage k", ClassRead},
		{"object freq k", ClassRead},
		{"object encoding k", ClassRead},
		{"debug object k", ClassAdmin},
		{"debug sleep 0", ClassAdmin},
		{"DEBUG RELOAD", ClassRefused},
		{"debug restart", ClassRefused},
		{"debug crash-and-recover", ClassRefused},
		{"debug segfault", ClassRefused},
		{"debug populate 10", ClassRefused},
		{"debug loadaof", ClassRefused},
		{"wait 1 0", ClassWait},
		{"replicar info", ClassProxy},
		{"monitor", ClassRefused},
		{"replicaof no one", ClassRefused},
		{"slaveof no one", ClassRefused},
		{"sync", ClassRefused},
		{"psync ? -1", ClassRefused},
		{"replconf listening-port 1", ClassRefused},
		{"shutdown", ClassRefused},
		{"failover", ClassRefused},
		{"migrate h 1 k 0 5", ClassRefused},
		{"cluster info", ClassRefused},
		{"readonly", ClassRefused},
		{"readwrite", ClassRefused},
		{"asking", ClassRefused},
		{"module load /x.so", ClassRefused},
		{"module loadex /x.so", ClassRefused},
		{"module unload m", ClassRefused},
		{"module list", ClassAdmin},
		// Redis 7 commands with no entry of their own: flags decide.
		{"lmpop 1 a left", ClassWrite},
		{"zmpop 1 a min", ClassWrite},
		{"sintercard 1 a", ClassRead},
		{"zintercard 1 a", ClassRead},
		{"xautoclaim s g c 0 0", ClassWrite},
		{"expiretime k", ClassRead},
		{"pexpiretime k", ClassRead},
		{"getex k persist", ClassWrite},
		{"getdel k", ClassWrite},
		{"lcs a b", ClassRead},
		{"sort_ro k", ClassRead},
		{"sort k store d", ClassWrite},
		{"georadius_ro g 0 0 1 km", ClassRead},
		{"geosearchstore d s frommember m byradius 1 km", ClassWrite},
		{"xgroup createconsumer s g c", ClassWrite},
		{"xinfo stream s", ClassRead},
		{"pfcount h", ClassWrite}, // 7.0 flags it readonly, but it rewrites the HLL cache and Redis propagates it
		{"pfadd h a", ClassWrite},
		{"pfdebug getreg h", ClassWrite},
		{"pfselftest", ClassAdmin},
		{"restore-asking k 0 x", ClassWrite},
	} {
		args := splitTestArgs(tc.args)
		info, err := tab.Lookup(args)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if got := Classify(info, args); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.args, got, tc.want)
		}
	}
	if got := Classify(nil, nil); got != ClassRefused {
		t.Errorf("nil info: %s", got)
	}
}

// TestClassifyFromFlagsAlone checks that the Redis 7 commands the override
// table does not name classify correctly from the backend's flags.
func TestClassifyFromFlagsAlone(t *testing.T) {
	tab := loadCommandTable(t)
	for name, want := range map[string]Class{
		"lmpop":                 ClassWrite,
		"sintercard":            ClassRead,
		"function|load":         ClassWrite,
		"fcall_ro":              ClassRead,
		"object|freq":           ClassRead,
		"xautoclaim":            ClassWrite,
		"expiretime":            ClassRead,
		"blmpop":                ClassBlocking,
		"bzmpop":                ClassBlocking,
		"xgroup|createconsumer": ClassWrite,
		"latency|histogram":     ClassAdmin,
	} {
		c := tab.Command(name)
		top, sub := c.topAndSub()
		if o := overrideClass(c, top, sub, nil); o != 0 {
			t.Errorf("%s has an override (%s); the test wants flags alone", name, o)
		}
		if got := flagClass(c.Flags); got != want {
			t.Errorf("%s: flags %s classify as %s, want %s", name, c.Flags, got, want)
		}
	}
}

// TestClassifyRedis6 classifies on a table where CLIENT, SCRIPT, MODULE and
// DEBUG are plain commands and the subcommand is only an argument.
func TestClassifyRedis6(t *testing.T) {
	tab, err := ParseCommandTable(redis6Reply())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args string
		want Class
	}{
		{"get k", ClassRead},
		{"set k v", ClassWrite},
		{"eval s 0", ClassScript},
		{"evalsha_ro s 0", ClassRead},
		{"pfcount h", ClassWrite}, // may_replicate in Redis 6.2
		{"client setname x", ClassConnection},
		{"client tracking on", ClassRefused},
		{"CLIENT REPLY OFF", ClassRefused},
		{"client reply on", ClassConnection},
		{"script load s", ClassScriptAdmin},
		{"script debug yes", ClassRefused},
		{"module load x", ClassRefused},
		{"module list", ClassAdmin},
		{"debug reload", ClassRefused},
		{"debug object k", ClassAdmin},
		{"config get x", ClassAdmin},
		{"quit", ClassConnection},
		{"replicar info", ClassProxy},
	} {
		args := splitTestArgs(tc.args)
		info, err := tab.Lookup(args)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if got := Classify(info, args); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.args, got, tc.want)
		}
	}
}

// TestClassifyUnprepared classifies CommandInfos built by hand, which
// ParseCommandTable has not prepared, the same way.
func TestClassifyUnprepared(t *testing.T) {
	tab := loadCommandTable(t)
	for _, c := range allCommands(tab) {
		if c.Local {
			continue
		}
		copied := *c
		copied.prepared = false
		copied.classFn, copied.class, copied.keysProc, copied.specKind = nil, 0, nil, 0
		for _, args := range [][][]byte{
			argsOf(c.Name, "x", "y"),
			argsOf(c.Name, "block", "0", "streams", "s", "$"),
			argsOf(c.Name, "reply", "off"),
			argsOf(c.Name, "3", "a", "b", "c", "store", "d"),
		} {
			if a, b := Classify(c, args), Classify(&copied, args); a != b {
				t.Errorf("%s %q: prepared %s, unprepared %s", c.Name, args, a, b)
			}
			if a, b := c.Keys(args, nil), copied.Keys(args, nil); !sameInts(a, b) {
				t.Errorf("%s %q: prepared keys %v, unprepared %v", c.Name, args, a, b)
			}
		}
	}
}

// TestClassesFile compares the class of every command with classesFile;
// run with -update-classes to rewrite it after a deliberate change.
func TestClassesFile(t *testing.T) {
	tab := loadCommandTable(t)
	var b strings.Builder
	b.WriteString("# The class of every command of redis-server 7.0.15 (testdata/command-7.0.15.resp)\n")
	b.WriteString("# with its flags, as Classify gives it for arguments that do not change it.\n")
	b.WriteString("# Generated by: go test ./protocols/resp -run TestClassesFile -update-classes\n")
	for _, c := range allCommands(tab) {
		class := Classify(c, nil)
		if c.prepared && c.classFn != nil {
			class = 0
		}
		name := class.String()
		if class == 0 {
			name = "(by arguments)"
		}
		line := fmt.Sprintf("%-30s %-14s %s", c.Name, name, c.Flags)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	if *updateClasses {
		if err := os.WriteFile(classesFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(classesFile)
	if err != nil {
		t.Fatalf("%v (run with -update-classes to create it)", err)
	}
	if string(want) != b.String() {
		gotLines, wantLines := strings.Split(b.String(), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gotLines) || i < len(wantLines); i++ {
			var g, w string
			if i < len(gotLines) {
				g = gotLines[i]
			}
			if i < len(wantLines) {
				w = wantLines[i]
			}
			if g != w {
				t.Errorf("%s line %d:\n got  %s\n want %s", classesFile, i+1, g, w)
				break
			}
		}
	}
}

func TestClassString(t *testing.T) {
	seen := make(map[string]bool)
	for c := ClassRead; c <= ClassRefused; c++ {
		s := c.String()
		if s == "" || strings.HasPrefix(s, "class(") || seen[s] {
			t.Errorf("class %d: %q", c, s)
		}
		seen[s] = true
	}
	if got := Class(0).String(); got != "class(0)" {
		t.Errorf("zero class: %q", got)
	}
	if got := Class(200).String(); got != "class(200)" {
		t.Errorf("class 200: %q", got)
	}
}

func TestRefusedError(t *testing.T) {
	tab := loadCommandTable(t)
	for _, tc := range []struct {
		args, want string
	}{
		{"monitor", "ERR replicar: 'monitor' is not supported through the proxy; it would show only the proxy's connections to the backend"},
		{"MIGRATE h 1 k 0 5", "ERR replicar: 'migrate' is not supported through the proxy; it would move keys without logging the change"},
		{"cluster nodes", "ERR replicar: 'cluster|nodes' is not supported through the proxy; replicar does not run Redis Cluster"},
		{"replicaof no one", "ERR replicar: 'replicaof' is not supported through the proxy; replication and failover are managed by replicar"},
		{"DEBUG RELOAD", "ERR replicar: 'debug reload' is not supported through the proxy; it would reload, crash or change the backend behind replicar's back"},
		{"client tracking on", "ERR replicar: 'client|tracking' is not supported through the proxy; the proxy must see every reply, and tracking invalidations cannot be routed"},
		{"client reply OFF", "ERR replicar: 'client|reply off' is not supported through the proxy; the proxy must see every reply, and tracking invalidations cannot be routed"},
		{"module load /x.so", "ERR replicar: 'module|load' is not supported through the proxy; modules must be loaded on every backend by its configuration"},
		{"debug Cr\r\nash-and-recover", "ERR replicar: 'debug cr  ash-and-recover' is not supported through the proxy; it would reload, crash or change the backend behind replicar's back"},
	} {
		args := splitTestArgs(tc.args)
		if strings.Contains(tc.args, "\r\n") {
			args = [][]byte{[]byte("debug"), []byte("Cr\r\nash-and-recover")}
		}
		info, err := tab.Lookup(args)
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		if got := RefusedError(info, args); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.args, got, tc.want)
		}
	}
	if got := RefusedError(nil, nil); !strings.HasPrefix(got, "ERR replicar: ") {
		t.Errorf("nil info: %q", got)
	}
	long := [][]byte{[]byte("debug"), []byte(strings.Repeat("x", 1000))}
	if got := RefusedError(tab.Command("debug"), long); len(got) > 200 {
		t.Errorf("long argument echoed in full: %d bytes", len(got))
	}
}

// BenchmarkLookupClassify is the hot path of every proxied command:
// Lookup, Classify and Keys. It should not allocate.
func BenchmarkLookupClassify(b *testing.B) {
	tab := loadCommandTable(b)
	for _, bc := range []struct {
		name string
		args [][]byte
	}{
		{"GET", argsOf("GET", "key:000000000001")},
		{"get", argsOf("get", "key:000000000001")},
		{"SET", argsOf("SET", "key:000000000001", "value")},
		{"set", argsOf("set", "key:000000000001", "value")},
		{"MSET", argsOf("MSET", "a", "1", "b", "2", "c", "3")},
		{"XREAD", argsOf("XREAD", "COUNT", "10", "BLOCK", "0", "STREAMS", "a", "b", "0", "0")},
		{"CONFIG_GET", argsOf("CONFIG", "GET", "maxmemory")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dst := make([]int, 0, 8)
			b.ReportAllocs()
			for b.Loop() {
				info, err := tab.Lookup(bc.args)
				if err != nil {
					b.Fatal(err)
				}
				if Classify(info, bc.args) == 0 {
					b.Fatal("no class")
				}
				dst = info.Keys(bc.args, dst[:0])
			}
		})
	}
}
