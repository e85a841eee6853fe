package users

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrNoUsers is a users file with no account in it: naming a file that
// lists nobody is taken for a mistake rather than "no extra accounts".
var ErrNoUsers = errors.New("no user:password line")

// Parse reads `user:password` lines: the password is everything after the
// first colon, kept byte for byte (it may hold colons and spaces); spaces
// around the user name are dropped. Blank lines and lines starting with #
// are skipped. A line without a colon, an empty user name, a name valid
// rejects (nil accepts any), or a user listed twice is an error naming the
// line, never its password.
func Parse(r io.Reader, valid func(user string) error) (map[string]string, error) {
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
		if user == "" {
			return nil, fmt.Errorf("line %d: empty user name", n)
		}
		if valid != nil {
			if err := valid(user); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
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

// Load reads the users file at path with Parse. Errors name the file; a
// file with no account is ErrNoUsers.
func Load(path string, valid func(user string) error) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	users, err := Parse(f, valid)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("users file %s: %w", path, ErrNoUsers)
	}
	return users, nil
}
