// Package fanout streams the leader's backlog to its followers and tracks
// their progress.
//
// It will hold, per DESIGN.md: per-follower progress (acked offset, lag in
// entries and time, a bounded in-flight window, so a slow follower never holds
// back the leader), ISR tracking (a follower whose lag stays over
// REPLICAR_MAX_LAG leaves the ISR and rejoins once caught up), the streaming
// sessions, and the replication wire protocol on REPLICAR_REPL_LISTEN:
// framed, versioned and checksummed frames that carry the handshake (group,
// node, last epoch, next offset), the leader's verdict from backlog.Log.Resume,
// entry batches encoded with backlog.AppendRecord, heartbeats with the
// committed offset, and acks.
//
// Imports: backlog and ackpolicy. The progress and ISR rules are pure, with
// time as an input, so they can be tested without sockets.
package fanout
