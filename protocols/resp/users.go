package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ParseUsers reads `user:password` lines (REPLICAR_USERS_FILE): the
// password is everything after the first colon, kept byte for byte (it may
// hold colons and spaces). Blank lines and lines starting with # are
// skipped. A line without a colon, an empty user name or one with spaces,
// or a user listed twice is an error naming the line, never its password.
func ParseUsers(r io.Reader) (map[string]string, error) {
	users := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want user:password", n)
		}
		user = strings.TrimSpace(user)
		switch {
		case user == "":
			return nil, fmt.Errorf("line %d: empty user name", n)
		case strings.ContainsAny(user, " \t\x00"):
			return nil, fmt.Errorf("line %d: user %q: a RESP user name has no spaces", n, user)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", n, user)
		}
		users[user] = pass
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return users, nil
}

// LoadUsersFile reads a users file with ParseUsers.
func LoadUsersFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	users, err := ParseUsers(f)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("users file %s: %w", path, errNoUsers)
	}
	return users, nil
}

var errNoUsers = errors.New("no user:password line")

// hasAccounts reports whether AUTH can succeed at all: a password is set,
// or a users file lists someone.
func (s *Server) hasAccounts() bool { return s.cfg.Password != "" || len(s.cfg.Users) > 0 }

// checkCredentials reports whether user and pass name an account: USER
// with PASSWORD (which wins over a users file line for the same name, as
// on MySQL), or a users file entry. The passwords are compared in time
// that does not depend on where they differ.
func (s *Server) checkCredentials(user, pass string) bool {
	if user == s.cfg.User {
		return s.cfg.Password != "" && constantTimeEqual(pass, s.cfg.Password)
	}
	want, listed := s.cfg.Users[user]
	return listed && constantTimeEqual(pass, want)
}
