// Package mysql is replicar's MySQL/MariaDB front end: the client port of a
// node with REPLICAR_PROTOCOL=mysql.
//
// Server accepts clients with go-mysql's server package, which does the
// handshake: clients log in with the proxy's own accounts (Config.User and
// Password, plus Config.Users from a users file read with LoadUsersFile),
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
// Binlog capture and the applier live in the sub-packages rowlog and
// apply; the proxy package wires them to this front end.
package mysql
