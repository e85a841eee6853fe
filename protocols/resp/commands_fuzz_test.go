package resp

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzLookupKeys runs Lookup, Classify and Keys on arbitrary commands
// against the real Redis 7.0.15 table. The input is the command's
// arguments separated by NUL bytes. It checks that nothing panics, that
// Lookup's errors are single-line Redis errors, that every key index is
// inside the arguments, and that a write the proxy will log names at least
// one key whenever its arguments are well formed: the property that keeps
// a logged write from losing its key.
func FuzzLookupKeys(f *testing.F) {
	tab := loadCommandTable(f)
	for _, seed := range []string{
		"GET\x00k",
		"set\x00k\x00v\x00EX\x0010\x00GET",
		"mset\x00a\x001\x00b\x002",
		"eval\x00return 1\x002\x00a\x00b\x00c",
		"EVAL\x00s\x00-1\x00a",
		"eval\x00s\x0099999999999999999999\x00a",
		"zunionstore\x00d\x002\x00a\x00b\x00WEIGHTS\x001\x002",
		"zinterstore\x00d\x000\x00a",
		"xread\x00COUNT\x002\x00STREAMS\x00a\x00b\x000\x000",
		"xreadgroup\x00GROUP\x00g\x00c\x00BLOCK\x000\x00STREAMS\x00s\x00>",
		"xreadgroup\x00GROUP\x00g\x00c\x00STREAMS\x00s",
		"sort\x00k\x00BY\x00w\x00LIMIT\x000\x001\x00STORE\x00d",
		"migrate\x00h\x00p\x00\x000\x005000\x00KEYS\x00a\x00b",
		"georadius\x00g\x000\x000\x001\x00km\x00STORE\x00d\x00STOREDIST\x00e",
		"lmpop\x002\x00a\x00b\x00LEFT",
		"blmpop\x000\x002\x00a\x00b\x00LEFT",
		"blpop\x00a\x00b\x000",
		"object\x00ENCODING\x00k",
		"memory\x00usage\x00k",
		"bitop\x00AND\x00d\x00a\x00b",
		"client\x00reply\x00off",
		"debug\x00reload",
		"config\x00get",
		"foo\x00a\r\nb\x00c",
		"pfmerge\x00d",
		"spublish\x00ch\x00m",
		"replicar\x00info",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		args := bytes.Split(data, []byte{0})
		info, err := tab.Lookup(args)
		if err != nil {
			var le *LookupError
			if !errors.As(err, &le) {
				t.Fatalf("%q: error %T %v is not a LookupError", args, err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "ERR ") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("%q: bad error reply %q", args, msg)
			}
			if info != nil {
				t.Fatalf("%q: info with an error", args)
			}
		} else {
			checkResolved(t, tab, info, args)
		}
		// Keys and Classify on whatever command args[0] names, whatever
		// the arity: the server may call them before it checks.
		if c := tab.Command(string(args[0])); c != nil && !strings.Contains(string(args[0]), "|") {
			checkKeysInRange(t, c, args)
			_ = Classify(c, args)
			for _, sub := range c.Subcommands {
				checkKeysInRange(t, sub, args)
				_ = Classify(sub, args)
			}
		}
	})
}

func checkResolved(t *testing.T, tab *CommandTable, info *CommandInfo, args [][]byte) {
	t.Helper()
	if !info.ArityOK(len(args)) {
		t.Fatalf("%q: Lookup accepted %d arguments for %s (arity %d)", args, len(args), info.Name, info.Arity)
	}
	if tab.Command(info.Name) != info {
		t.Fatalf("%q: resolved to %s, which Command does not return", args, info.Name)
	}
	class := Classify(info, args)
	if class < ClassRead || class > ClassRefused {
		t.Fatalf("%q: class %d", args, class)
	}
	keys := checkKeysInRange(t, info, args)
	if class == ClassWrite && hasKeys(info) && len(keys) == 0 && keyRequired(info, args) {
		t.Fatalf("%q: write %s with well-formed arguments has no key", args, info.Name)
	}
}

func checkKeysInRange(t *testing.T, c *CommandInfo, args [][]byte) []int {
	t.Helper()
	keys := c.Keys(args, nil)
	for _, k := range keys {
		if k < 1 || k >= len(args) {
			t.Fatalf("%q: %s: key index %d out of range", args, c.Name, k)
		}
	}
	return keys
}

// keyRequired says whether a write's arguments have the shape its key
// specs describe, so that it must name a key. It is written from the specs
// independently of Keys. Where the shape is wrong (a numkeys that is not a
// positive count of keys that fit, STREAMS with nothing after it), the
// command refuses to run, so there is no write to log and no key needed;
// and a command whose specs are all not_key (SPUBLISH) has no key at all.
func keyRequired(c *CommandInfo, args [][]byte) bool {
	argc := len(args)
	for _, s := range c.KeySpecs {
		if s.Flags&KeyNotKey != 0 || s.FindKeys != FindKeysKeyNum {
			continue
		}
		pos := s.Index + s.KeyNumIdx
		if s.BeginSearch != BeginSearchIndex || pos >= argc {
			return false
		}
		n, ok := strictCount(args[pos])
		if !ok || n < 1 || int64(pos+s.FirstKey)+n-1 >= int64(argc) {
			return false
		}
	}
	for _, s := range c.KeySpecs {
		if s.Flags&KeyNotKey != 0 {
			continue
		}
		switch s.BeginSearch {
		case BeginSearchIndex:
			if s.Index < argc {
				return true
			}
		case BeginSearchKeyword:
			for i := s.StartFrom; i > 0 && i < argc; i++ {
				if strcaseEqual(args[i], s.Keyword) {
					after := argc - i - 1
					if s.FindKeys == FindKeysRange && s.Limit > 0 && after < s.Limit {
						return false // STREAMS without a key and an id
					}
					if after > 0 {
						return true
					}
				}
			}
		}
	}
	if len(c.KeySpecs) == 0 {
		return c.FirstKey > 0 && c.FirstKey < argc
	}
	return false
}

// strictCount parses a count the way Redis's commands do: an optional '-',
// then digits without a leading zero.
func strictCount(b []byte) (int64, bool) {
	s := string(b)
	if s == "0" {
		return 0, true
	}
	d := strings.TrimPrefix(s, "-")
	if d == "" || d[0] < '1' || d[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
