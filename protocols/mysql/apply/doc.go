// Package apply writes backlog entries (rowlog payloads) into a follower's
// MariaDB exactly once, and copies a consistent snapshot of one backend
// into another for a full resync.
//
// # Applier
//
// Applier implements fanout.Applier. Its position lives in the follower's
// backend, in the table __replicar.pos (id, epoch, offset, plus the state
// and pending-DDL columns described in schema.go), created on first
// connect. Position reads it; Apply continues from it, never from memory
// alone, so a follower killed at any moment (SIGKILL of the node or of
// its backend) resumes with no duplicate and no gap.
//
// The same row holds the leading mark (MarkLeading, ReadLeading): the
// epoch a node leads in and the GTID position its capture started from,
// cleared by SetPosition when it steps down cleanly; see the rowlog
// package for how a node uses it at start.
//
// Transaction entries are applied in batches: consecutive entries (up to
// Options.MaxTxEntries and MaxTxBytes) go into one backend transaction
// that begins by moving the position (guarded: it must still be the
// position the Applier read, or nothing is applied) and ends with COMMIT.
// One transaction per batch rather than per entry because a batch's
// commit costs one log flush and two round trips however many entries it
// holds; a crash rolls the whole batch back, position included, and it is
// applied again. Row changes become SQL on the follower: a multi-row
// INSERT, and one UPDATE or DELETE per row found by its primary key (or,
// in a table without one, by every stored column compared byte for byte)
// with LIMIT 1. Every UPDATE and DELETE must match exactly one row and
// every INSERT write all its rows, else the batch is rolled back with
// ErrRowMismatch: the follower does not hold the data the source changed,
// and only a full resync repairs that. Generated columns are left for the
// follower to compute. Foreign-key actions (ON DELETE CASCADE …) are not
// in the binlog, and run on the follower, with foreign_key_checks as the
// source's rows event says.
//
// # DDL
//
// DDL commits on its own, so it cannot share a transaction with the
// position. A DDL entry is applied in three steps: (1) record it as
// pending in __replicar.pos together with the DDL domain's GTID in
// @@gtid_binlog_pos; (2) run it with sql_log_bin=1 in the GTID domain
// Options.DDLDomain (default 7380); (3) record the position, in one
// transaction with the rows that may follow the statement (CREATE TABLE …
// SELECT). MariaDB writes a DDL to the binlog if and only if it took
// effect, and since 10.6 keeps the two consistent across a crash. So
// after a crash between (2) and (3), the DDL domain's GTID has moved past
// the one recorded in (1) exactly when the statement ran: the Applier then
// skips the statement and does (3); otherwise it runs the statement again.
// This needs no parsing or rewriting of the DDL, and is exact for any
// statement, where re-running "idempotent" forms (IF NOT EXISTS, ignoring
// "already exists" errors) is not: a RENAME TABLE a TO b, b TO a run twice
// undoes itself. Hence every backend needs log_bin=ON (ErrNoBinlog), as
// it does anyway to become a leader.
//
// # Binlog on the followers
//
// Row and statement transactions are applied with sql_log_bin=0: the
// follower's binlog does not grow with replicated data, and no GTID it
// would generate for them (in domain 0, with its own server_id) can ever
// collide with the primary's. Only the DDL statements go to the follower's
// binlog, in the DDL domain, which rowlog.Config.IgnoreDomains keeps out
// of any capture. After a failover the new leader's backend becomes the
// binlog source: its capture starts from that backend's own
// @@gtid_binlog_pos read at promotion (see the rowlog package), not from a
// GTID of the old primary, because everything before that point is
// already in the backlog, applied here. The alternative, applying with the
// binlog on, would make the follower's binlog a copy of the data under
// GTIDs of its own, which the new leader's capture would have to skip
// exactly; it would only be worth it for native replicas hanging off a
// follower.
//
// The backend user needs the privileges the entries' statements need,
// plus SUPER (or BINLOG ADMIN and REPLICATION MASTER ADMIN on 10.5+) for
// sql_log_bin and gtid_domain_id.
//
// Known limits: triggers on the follower fire again for replicated rows
// (whose trigger effects the binlog already holds as rows), so tables with
// triggers are not supported in row mode; changes to non-transactional
// tables (MyISAM, Aria) are applied but cannot be rolled back with the
// position, so a crash in the middle of a batch may apply them twice (as
// with MariaDB's own replication); a table without a primary key costs a
// scan per updated or deleted row, as on a native replica. The Applier
// uses MariaDB syntax (IF … SIGNAL outside stored programs,
// gtid_domain_id).
//
// # Snapshot
//
// CopySnapshot(ctx, src, dst, opts) makes dst a copy of src for a full
// resync: START TRANSACTION WITH CONSISTENT SNAPSHOT on src, while the
// caller keeps src paused at a position X (a follower's applier stopped,
// or the leader's writes paused) until opts.Snapshotted is called; X is
// opts.Position, or, for a follower source, its __replicar.pos read inside
// the snapshot. The target is marked "resync" (an Applier refuses it,
// ErrResyncIncomplete, until the copy finishes), its user schemas are
// dropped, and every schema except mysql, sys, information_schema,
// performance_schema and __replicar is recreated from SHOW CREATE
// (databases, tables, then views, routines and triggers) and its rows
// copied table by table in bounded batches, streamed from the source.
// Finally the target's position is set to X, and it continues from X+1.
// Progress (tables, rows, bytes, rates, ETA) goes to opts.Progress.
package apply
