package datadriven

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata expectations with the actual output")

// Case is one command of a file.
type Case struct {
	// Pos is file:line of the command, for messages.
	Pos string
	// Cmd is the first word of the command line.
	Cmd string
	// Args are the key=value words after it.
	Args map[string]string
	// Expected is the block after "----".
	Expected string

	expLo, expHi int
}

// Uint returns the unsigned argument key, or def when it is absent.
func (c Case) Uint(t testing.TB, key string, def uint64) uint64 {
	t.Helper()
	v, ok := c.Args[key]
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", c.Pos, key, v, err)
	}
	return n
}

// Int returns the integer argument key, or def when it is absent.
func (c Case) Int(t testing.TB, key string, def int) int {
	t.Helper()
	return int(c.Uint(t, key, uint64(def)))
}

// String returns the argument key, or def when it is absent.
func (c Case) String(key, def string) string {
	if v, ok := c.Args[key]; ok {
		return v
	}
	return def
}

// Line is the command as written, with arguments in sorted order.
func (c Case) Line() string {
	keys := make([]string, 0, len(c.Args))
	for k := range c.Args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(c.Cmd)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, c.Args[k])
	}
	return b.String()
}

func parse(t *testing.T, path string) ([]Case, []string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var cases []Case
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		c := Case{Pos: fmt.Sprintf("%s:%d", filepath.Base(path), i+1), Cmd: fields[0], Args: map[string]string{}}
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("%s: argument %q is not key=value", c.Pos, f)
			}
			c.Args[k] = v
		}
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "----" {
			t.Fatalf("%s: missing ---- after the command", c.Pos)
		}
		i += 2
		c.expLo = i
		var exp []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			exp = append(exp, lines[i])
		}
		c.expHi = i
		c.Expected = strings.Join(exp, "\n")
		cases = append(cases, c)
	}
	return cases, lines
}

// Run executes every file matching testdata/glob as a subtest. do runs one
// command and returns its output; state between commands lives in the
// caller's closure and is the caller's to reset (a "new" command, say).
func Run(t *testing.T, glob string, do func(t *testing.T, c Case) string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", glob))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata files match %s (%v)", glob, err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cases, lines := parse(t, path)
			outputs := make([]string, len(cases))
			for i, c := range cases {
				outputs[i] = do(t, c)
				if !*rewrite && outputs[i] != c.Expected {
					t.Errorf("%s: %s\n got:\n%s\nwant:\n%s", c.Pos, c.Line(), outputs[i], c.Expected)
				}
			}
			if !*rewrite {
				return
			}
			// Keep comments and commands; replace only the expected blocks.
			var out []string
			next := 0
			for i, c := range cases {
				out = append(out, lines[next:c.expLo]...)
				out = append(out, outputs[i])
				next = c.expHi
			}
			out = append(out, lines[next:]...)
			if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
