// Package mysql is replicar's MySQL/MariaDB front end: the client port of a
// node with REPLICAR_PROTOCOL=mysql.
//
// Server accepts clients with go-mysql's server package, which does the
// handshake: clients log in with the proxy's own accounts (Config.User and
// Password, plus Config.Users from a users file the proxy reads),
// over mysql_native_password or caching_sha2_password, whichever the
// client answers with. The backend credentials are separate and never
// seen by clients.
//
// Each client session then gets a backend session of its own, opened with
// go-mysql's client, and the proxy relays the protocol between them packet
// by packet: default database, session variables, transactions, prepared
// statements (with the backend's own parameter and column metadata;
// statement ids are the proxy's, mapped to the backend's), multi-statements
// with multi-results, LOAD DATA LOCAL, COM_RESET_CONNECTION,
// COM_CHANGE_USER and COM_PING. Result sets stream through a bounded
// buffer. Backend errors reach the client with their codes and SQLSTATE.
// A client that disconnects while a statement runs (go-sql-driver does on
// context cancellation) has the statement killed on the backend.
//
// On the leader (RouteLocal) the write path is:
//
//   - each query is classified (Classify: read, write, DDL, transaction
//     control, session state) and a write is admitted with Log.Admit before
//     it runs; a refusal is MySQL error 1290 with TRYAGAIN or NOREPLICAS
//     opening the message, and the statement did not run (a refused COMMIT
//     rolls the transaction back);
//   - the backend session tracks last_gtid (MariaDB's
//     session_track_system_variables; session_track_gtids=OWN_GTID on
//     MySQL), so every OK that ends a committed transaction carries its
//     GTID, exact under any concurrency and whatever the statement was;
//   - that OK is held until GTIDOffsets.OffsetOf (the binlog capture) gives
//     the transaction's backlog offset and Log.WaitCommitted says the ack
//     policy committed it; otherwise the client gets 1105 UNCOMMITTED
//     (or, with Config.AckTimeoutDegrade, the OK and a warning in the log).
//
// With Config.FenceReads (READ_POLICY=leader) a read is admitted with
// Log.AdmitRead and its final packet waits for Log.WaitReadable.
//
// Elsewhere (RouteForward) each session is proxied whole to the leader's
// client port, logging in as the same user; the leader admits and holds.
// During an election (RouteNone) a statement waits up to
// Config.FailoverWait, then gets 1290 TRYAGAIN. When the route changes an
// idle session moves to the new target before its next statement (its
// database, character set, SET statements and prepared statements are
// carried over); a session with a transaction open, tables locked or a
// cursor open is closed with an error instead.
//
// SHOW REPLICAR STATUS answers the fields of RESP's REPLICAR INFO and
// /status as (Variable_name, Value) rows. Past Config.MaxClients a client
// gets error 1040 "Too many connections".
//
// At start, Run checks the backend (CheckBackend): row mode needs log_bin
// ON, binlog_format=ROW, a non-zero server_id, and GTIDs (MariaDB always;
// MySQL with gtid_mode=ON and enforce_gtid_consistency=ON). A
// misconfigured backend is refused with a *MisconfiguredError naming the
// setting to change.
//
// # Statement mode
//
// With Config.Format = FormatStatement (REPLICAR_MYSQL_FORMAT=statement),
// for backends whose binary log cannot be read, the front end logs the
// writes itself, as statements, through the Appender the node gives it
// with Server.SetAppender when it leads (statement.go). The primary needs
// no binary log; CheckBackend demands innodb_autoinc_lock_mode 0 or 1 and
// a default isolation of REPEATABLE READ or SERIALIZABLE. Each committed
// transaction becomes one rowlog entry (KindTx) holding its statements;
// a DDL statement is an entry of its own (KindDDL). The apply package
// replays them on followers.
//
// Determinism is injected as MySQL's statement-based binlog does it.
// Before each write, in the same round trip: SET timestamp (NOW() and the
// like give the logged time), rand_seed1/2 (RAND() follows the logged
// seeds), and a SELECT of LAST_INSERT_ID() and of the user variables the
// statement reads, whose values are logged (a SET of them precedes the
// statement in the entry). After it, the AUTO_INCREMENT value it generated
// comes from its OK and is logged as insert_id. Each statement also
// carries its default schema, sql_mode, time_zone, character sets,
// foreign_key_checks, unique_checks and auto_increment_increment/offset,
// read again after any statement that may have changed them. A prepared
// statement is logged with its parameters' values in place of its
// placeholders, an SQL-level EXECUTE … USING likewise; a multi-statement
// query is run one statement at a time, each answer marked "more
// results", so each statement is made deterministic, checked and
// committed on its own.
//
// Commit order (statement_order.go): a commit takes a ticket, the offset
// of its entry, right before its COMMIT is sent; entries are appended in
// ticket order. A transaction that read or overwrote another's rows could
// only do so once that one had committed (InnoDB's locks, and DML's
// locking reads at REPEATABLE READ), so its ticket is later; transactions
// whose COMMITs overlap touched no common rows. COMMITs therefore run
// concurrently and InnoDB still groups their log flushes. (A lock held
// from COMMIT to append, the simple alternative, made concurrent
// autocommit INSERTs run at about 0.2x the direct rate.) An autocommit
// write is run inside a transaction of the proxy's (SET autocommit=0 …
// SET autocommit=1) so that its commit takes a ticket too: it costs a
// second round trip. DDL, which commits on its own, and writes to
// non-transactional tables, which take effect at once, take the order
// exclusively: they wait for commits in flight, and run with no lock wait
// (lock_wait_timeout and innodb_lock_wait_timeout 0, or 1 on MySQL), and
// are run again while a transaction that must commit first holds a lock
// they need; other sessions' commits wait while a DDL runs.
//
// The store records what it holds, so that a node that dies between a
// COMMIT and its append is found out: every logged transaction inserts
// its entry's (epoch, offset) into __replicar.stmt_log in the same
// transaction; a DDL is marked pending in __replicar.pos (ddl_epoch,
// ddl_offset) before it runs. ReadStoreMark reads these; StoreMark.Ahead
// says whether the store holds a change the log lacks (then the node must
// full-resync it before following a leader), StoreMark.Position where it
// stands otherwise (the node records it with apply.Applier.SetPosition
// before its applier takes over). SetAppender clears stmt_log at the
// first commit of a leadership. If an Append fails after the primary
// committed, the client gets UNCOMMITTED, every later write TRYAGAIN, and
// Server.StatementLogErr says why.
//
// Statements MySQL documents as unsafe for statement-based logging are
// refused before they run, with error 1105 and a message that opens with
// "unsafe for statement replication:" (statement_safety.go): UUID(),
// UUID_SHORT(), SYS_GUID(), SYSDATE(), USER(), CURRENT_USER and the like,
// FOUND_ROWS(), ROW_COUNT(), LOAD_FILE(), GET_LOCK() and the lock family,
// SLEEP(), CONNECTION_ID(), VERSION(), sequences, replication position
// functions, system variables other than those replayed; UPDATE, DELETE
// (and any subquery) with LIMIT but no ORDER BY; INSERT IGNORE … SELECT,
// REPLACE … SELECT, INSERT … SELECT … ON DUPLICATE KEY UPDATE, UPDATE
// IGNORE and CREATE TABLE … IGNORE/REPLACE SELECT without ORDER BY;
// INSERT … SELECT into, or CREATE TABLE … SELECT of, a table with an
// AUTO_INCREMENT column without ORDER BY; INSERT … ON DUPLICATE KEY
// UPDATE on a table with more than one unique key; INSERTs into a table
// whose AUTO_INCREMENT column is not the first of its primary key, or
// that leave a column to a non-deterministic default; writes to a table
// with a trigger that inserts into an AUTO_INCREMENT table, or whose
// trigger for the statement's event (INSERT, UPDATE, DELETE) calls an
// unsafe function such as UUID() in its body; INSERT
// DELAYED; stored functions not declared DETERMINISTIC, NO SQL or READS
// SQL DATA, and loadable functions, in logged statements; CALL of a
// procedure not declared READS SQL DATA or NO SQL; writes at READ
// COMMITTED or READ UNCOMMITTED; writes to non-transactional tables
// inside a transaction; LOAD DATA, XA, temporary tables, events,
// compound statements outside stored programs, INSERT … RETURNING, and
// statements naming __replicar or the log tables. A read or SET that
// calls a stored function that may write is logged as a write.
//
// What a token-level reading cannot see is not covered: statements run
// inside stored functions, and in triggers beyond the unsafe calls and
// AUTO_INCREMENT inserts above (a function's DETERMINISTIC
// declaration is trusted, as MySQL trusts it); the base tables of a view
// written to; the targets of a multi-table DELETE after the first;
// session variables other than those listed above (div_precision_increment,
// lc_time_names, sql_auto_is_null, group_concat_max_len … replay at the
// follower's defaults); time_zone SYSTEM (the backends must share their
// system time zone); DOUBLE user variables (logged as the server prints
// them); sql_mode changed within one multi-statement query; writes that do
// not go through the front end (cron jobs on the backend, direct
// connections). A statement that fails on the primary is not logged, so a
// failed multi-row write to a non-transactional table that left rows
// behind diverges (MySQL logs it with its error). After an autocommit
// write, ROW_COUNT() read by the next statement is 0 (the proxy's commit
// ran in between); drivers read the affected rows from the OK, which is
// exact. A follower's applier logs DDL in its binary log, where MariaDB
// creates a function not declared DETERMINISTIC only with
// log_bin_trust_function_creators=ON.
//
// Binlog capture and the applier live in the sub-packages rowlog and
// apply; the proxy package wires them to this front end.
package mysql
