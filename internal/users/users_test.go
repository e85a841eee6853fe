package users

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// noSpaces stands for a protocol's rule on user names.
func noSpaces(u string) error {
	if strings.ContainsAny(u, " \t") {
		return fmt.Errorf("user %q: no spaces", u)
	}
	return nil
}

func TestParse(t *testing.T) {
	in := "# accounts\n\nalice:s3cret\r\nbob: with:colons and spaces \n  ops :x\nempty:\n"
	got, err := Parse(strings.NewReader(in), noSpaces)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice": "s3cret", "bob": " with:colons and spaces ", "ops": "x", "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, tc := range []struct{ in, want string }{
		{"alice\n", "line 1: want user:password"},
		{"ok:1\n:pw\n", "line 2: empty user name"},
		{"ok:1\n  :pw\n", "line 2: empty user name"},
		{"a b:pw\n", `line 1: user "a b": no spaces`},
		{"a:1\nb:2\na:3\n", `line 3: user "a" listed twice`},
	} {
		_, err := Parse(strings.NewReader(tc.in), noSpaces)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: err = %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the error shows a password: %v", tc.in, err)
		}
	}
	// Without a rule, any non-empty name goes.
	if u, err := Parse(strings.NewReader("a b:pw\n"), nil); err != nil || u["a b"] != "pw" {
		t.Errorf("nil rule: %q %v", u, err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	if err := os.WriteFile(path, []byte("a:b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if u, err := Load(path, noSpaces); err != nil || !reflect.DeepEqual(u, map[string]string{"a": "b"}) {
		t.Errorf("Load: %q %v", u, err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("a:b\nc d:e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad, noSpaces); err == nil || err.Error() != `users file `+bad+`: line 2: user "c d": no spaces` {
		t.Errorf("bad line: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(empty, nil); !errors.Is(err, ErrNoUsers) || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing"), nil); err == nil || !strings.Contains(err.Error(), "users file") {
		t.Errorf("missing file: %v", err)
	}
}
