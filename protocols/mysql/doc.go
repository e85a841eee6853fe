// Package mysql is replicar's MySQL/MariaDB front end.
//
// It will hold, per DESIGN.md: the go-mysql server handler (one backend
// session per client session), binlog capture in row mode (one committed
// transaction, or one DDL statement, per backlog entry, ordered by GTID),
// statement capture with injected SET timestamp/insert_id/rand_seed, the
// applier that writes each entry and the position table in the __replicar
// schema in one transaction, and the consistent-snapshot copier for full
// resync.
package mysql
