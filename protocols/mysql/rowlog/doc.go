// Package rowlog turns a MariaDB primary's binlog into backlog entries, and
// defines the payload those entries carry.
//
// # Payload
//
// One entry is one committed transaction (a Txn), encoded by Encode and
// read by Decode. The encoding is binary, versioned (magic "RL", then
// Version; an unknown version is ErrVersion, never misread) and
// self-describing: it names every table it touches, with its columns'
// names, binlog types, signedness, collations and primary key, so a
// follower applies it without asking the source anything. A Txn is either
//
//   - KindTx: an ordered list of changes applied in one backend
//     transaction. A change is a Rows event (insert: after images; delete:
//     before images; update: both; each image lists the columns it holds)
//     or a Statement with the session it ran in (schema, sql_mode,
//     timestamp, insert_id, last_insert_id, rand_seed1/2, character sets,
//     time_zone, foreign_key_checks, unique_checks, auto_increment_*). Row
//     mode produces rows; statement mode (the front end) produces
//     statements.
//   - KindDDL: a statement that commits on its own, first, optionally
//     followed by the rows it wrote (CREATE TABLE … SELECT).
//
// Each Txn also carries the source's GTID and the GTID Position after it.
// DecodeHeader reads those without decoding the rows. Decode refuses
// anything Encode would not write (so a payload that decodes re-encodes to
// the same bytes: FuzzDecode checks it) and never allocates more than the
// payload's size.
//
// # Capture
//
// A Capture tails the primary's binlog with go-mysql's BinlogSyncer from a
// GTID position, assembles each event group (MariaDB GTID event … XID or
// COMMIT; a standalone group for DDL) into one Txn, and appends it through
// Appender from one goroutine, in binlog order. Rows of InternalSchema
// ("__replicar"), statements naming it, and groups in Config.IgnoreDomains
// (the follower applier's DDL domain) are never captured; a group left
// empty still advances the position.
//
// Column names come from the binlog itself: the backend must log
// binlog_row_metadata=FULL (MariaDB 10.5+). Reading information_schema
// instead would describe the table as it is when the capture reads it, not
// as it was when the event was written: a DDL that ran since (and that the
// capture has yet to reach) would rename or reorder columns under rows
// already logged. The binlog's own metadata is exact for every event, and
// costs no query. Check verifies this and the other settings row capture
// needs (log_bin=ON, binlog_format=ROW, binlog_row_image=FULL, a non-zero
// server_id, MariaDB), naming each one that is wrong.
//
// OffsetOf(ctx, gtid) blocks until the transaction with that GTID has been
// appended and returns its offset: the front end takes the GTID of a
// client's COMMIT from session tracking (last_gtid) and holds the reply
// until that offset commits. It is exact for the last Config.Remember
// transactions; older or skipped ones get the last offset appended, which
// is never lower, so holding on it is safe.
//
// # Where a capture starts
//
// A capture streams the transactions after Config.Start, a GTID position;
// Config.LastOffset is the backlog's last offset. The node chooses Start:
//
//   - A node that becomes leader (a new epoch) reads its backend's
//     @@gtid_binlog_pos (Check returns it as ServerInfo.GTIDBinlogPos)
//     before it takes writes, and records it in the store with
//     apply.Applier.MarkLeading: everything before it is either in the
//     backlog already (applied there as a follower) or not replicated
//     (replicar's own DDL domain).
//   - A capture restarted within the same leadership uses the Position of
//     the last entry it appended (DecodeHeader of the last payload, or
//     Capture.Position): no transaction is lost or appended twice.
//   - A node that restarts and finds the leading mark (ReadLeading)
//     crashed while leading. It compares its backend's @@gtid_binlog_pos
//     with the Position of the last entry its own capture appended (or
//     the mark's start, if it appended none) using Ahead: if the backend
//     is ahead, it committed transactions the backlog never logged, and
//     the node must not follow another leader without a full resync (as
//     the RESP side's __replicar:leading key says). A clean step-down
//     waits until Capture.Position reaches @@gtid_binlog_pos, then calls
//     Applier.SetPosition(last entry), which clears the mark.
//
// When the primary restarts or the connection drops, Run reconnects with
// backoff from the position after the last complete group, dropping any
// half-received group, so nothing is appended twice or skipped. It stops
// on what retrying cannot cure: ErrMisconfigured, ErrPositionLost (binlogs
// purged past Start, or a backend whose binlog is behind Start: replaced
// or restored), ErrUnsupported (XA, statement-format events needing user
// variables or LOAD DATA files), ErrNoRowMetadata, or an Append error.
//
// Row capture reads MariaDB GTIDs only; a MySQL backend is refused by
// Check and needs statement mode.
package rowlog
