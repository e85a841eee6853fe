package resp

import (
	"errors"
	"fmt"
	"strings"
)

// ValidUser is RESP's rule on a user name in the users file
// (REPLICAR_USERS_FILE, read by internal/users): no spaces, tabs or NUL.
func ValidUser(user string) error {
	switch {
	case user == "":
		return errors.New("empty user name")
	case strings.ContainsAny(user, " \t\x00"):
		return fmt.Errorf("user %q: a RESP user name has no spaces", user)
	}
	return nil
}

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
