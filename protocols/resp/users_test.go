package resp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replicar/replicar/internal/users"
)

// TestUsersFile reads a users file with the RESP rule on user names: the
// syntax is internal/users', tested there; here the names RESP refuses.
func TestUsersFile(t *testing.T) {
	got, err := users.Parse(strings.NewReader("# accounts\n\nalice:s3cret\r\nbob: with:colons and spaces \n"), ValidUser)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["alice"] != "s3cret" || got["bob"] != " with:colons and spaces " {
		t.Fatalf("users = %q", got)
	}
	for _, tc := range []struct{ in, want string }{
		{"a b:pw\n", `line 1: user "a b": a RESP user name has no spaces`},
		{"ok:1\na\tb:pw\n", `line 2: user "a\tb": a RESP user name has no spaces`},
		{"a\x00b:pw\n", `line 1: user "a\x00b": a RESP user name has no spaces`},
	} {
		_, err := users.Parse(strings.NewReader(tc.in), ValidUser)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: err = %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the error shows a password: %v", tc.in, err)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("# nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Load(empty, ValidUser); err == nil || !strings.Contains(err.Error(), "no user:password line") {
		t.Errorf("empty file: %v", err)
	}
}

func TestCheckCredentials(t *testing.T) {
	s := &Server{cfg: Config{User: "default", Password: "pw", Users: map[string]string{"alice": "a1", "default": "other"}}}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"default", "pw", true},
		{"default", "other", false}, // USER's PASSWORD wins over a file line for the same name
		{"default", "", false},
		{"alice", "a1", true},
		{"alice", "pw", false},
		{"bob", "pw", false},
	} {
		if got := s.checkCredentials(tc.user, tc.pass); got != tc.ok {
			t.Errorf("%s/%s: %v, want %v", tc.user, tc.pass, got, tc.ok)
		}
	}
	// Without PASSWORD, the default user has no password to match, and
	// AUTH is not required; file users can still log in.
	s = &Server{cfg: Config{User: "default", Users: map[string]string{"alice": "a1"}}}
	if s.checkCredentials("default", "") || !s.checkCredentials("alice", "a1") || !s.hasAccounts() {
		t.Error("users file without PASSWORD")
	}
	if (&Server{cfg: Config{User: "default"}}).hasAccounts() {
		t.Error("no accounts at all, yet hasAccounts")
	}
}
