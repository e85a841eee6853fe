// Package users reads the users file (REPLICAR_USERS_FILE): one
// `user:password` line per account a client may log in as. The syntax is
// the same for every protocol, so it lives here once; what a user name may
// hold is each protocol's own rule, passed in as a function. The proxy
// loads the file and hands the map to the front end's config.
package users
