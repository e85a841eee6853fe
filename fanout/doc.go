// Package fanout streams the leader's backlog to its followers and tracks
// their progress.
//
// It holds, per DESIGN.md, the replication wire protocol on
// REPLICAR_REPL_LISTEN (frame.go) and the leader's per-follower progress and
// ISR rules (progress.go). Both are pure: no sockets, no goroutines, no clock,
// no logging. The streaming sessions that drive them over TCP are Leader
// (leader.go: one sender and one ack reader per follower, so a slow follower
// only holds up itself) and Follower (follower.go: HELLO from the store's
// position, apply, ack, reconnect with backoff).
//
// Imports: backlog and ackpolicy.
//
// # Frames
//
// Every message is one frame. AppendFrame encodes, DecodeFrame decodes from
// the front of a buffer and says how many bytes it used, or ErrShortFrame when
// more must be read first, so a reader appends what arrives and retries.
//
//	magic    2 bytes  0x52 0x52 ("RR")
//	version  1 byte   FrameVersion (1)
//	type     1 byte   FrameType
//	length   u32 big-endian, body bytes (≤ MaxFrameBody)
//	crc      u32 big-endian, CRC-32C (Castagnoli) of the 8 bytes above
//	         followed by the body
//	body     length bytes
//
// The checksum covers the header too, so a flipped type or length is caught,
// not just a flipped body byte. Magic, version and length are checked as soon
// as their bytes arrive: a peer speaking another protocol, or announcing a
// body over MaxFrameBody, is refused before anything is buffered for it.
//
// Bodies are sequences of fields; uv is an unsigned LEB128 varint in its
// minimal form (a padded varint is corrupt, so a frame has exactly one
// encoding), str is uv length then bytes, i64 is the two's-complement value
// as a uv. Every byte of the body must be used.
//
//	HELLO     (1) follower→leader: protocol uv, group str, node str,
//	              last_epoch uv, next_offset uv,
//	              history_count uv, then count × (epoch uv, start_offset uv)
//	VERDICT   (2) leader→follower: verdict 1 byte (backlog.Verdict: 1
//	              continue, 2 diverged, 3 fullresync, 4 refuse), from uv,
//	              diverged_at uv, reason str, leader_epoch uv, leader_node str
//	ENTRIES   (3) leader→follower: committed uv, count uv, then count
//	              records as backlog.AppendRecord writes them
//	HEARTBEAT (4) leader→follower: epoch uv, last uv, committed uv,
//	              sent_unix_nano i64
//	ACK       (5) follower→leader: applied uv, epoch uv, echo_unix_nano i64
//	ERROR     (6) either way, then close: code uv (ErrCode*), message str
//	SNAPSHOT  (7) follower→leader, first frame of its own connection:
//	              protocol uv, group str, node str, target str (host:port
//	              of the follower's store)
//	SNAPSHOT_DONE (8) leader→follower: epoch uv, offset uv (the position
//	              the copied store stands at), then close
//
// Limits: names (group, node) ≤ MaxNameLen bytes, texts ≤ MaxTextLen,
// history ≤ MaxHistory epochs. Counts are checked against the bytes left in
// the body before anything is allocated, so a hostile count cannot make the
// decoder allocate more than the frame's own size. The codec checks shape,
// not meaning: that an ENTRIES batch is consecutive, that epochs do not go
// down, or that the group matches is the session's to check.
//
// A session: the follower sends HELLO; the leader answers VERDICT (from
// backlog.Log.Resume) and, on continue, streams ENTRIES from Verdict.From,
// with HEARTBEATs while idle; the follower ACKs what it has applied, echoing
// the latest heartbeat's timestamp so the leader can measure the round trip.
//
// # Who may connect
//
// With LeaderConfig.TLS (and SnapshotServer.TLS) every connection is TLS,
// handshaken before the first frame; a tls.Config that requires client
// certificates makes it mutual TLS, and a peer without a valid one is
// refused and logged before it can send anything. FollowerConfig.TLS is
// the dialling side. The first frame is then checked: another group is
// refused with ErrCodeGroup for good, and LeaderConfig.Allow (the proxy
// asks its member directory) refuses an unknown node id with
// ErrCodeNotMember, which the follower retries, since a node that has
// just started may not have published itself yet. fanout itself reads no
// files and no directory.
//
// # Progress and the ISR
//
// A Tracker is the leader's view of its followers, fed with events (Appended,
// Connected, Disconnected, Sent, Ack), each with the time as an argument. Per
// follower it keeps the acked offset, lag in entries (leader last − acked),
// lag in time (how long since the oldest entry the follower lacks was
// appended: Kafka's lastCaughtUpTime, from a bounded ring of append-time
// samples), and an in-flight window (CanSend), so a slow follower stops being
// sent to instead of growing a queue on the leader.
//
// The ISR rules: a member leaves when it has been behind, or disconnected, for
// longer than Config.MaxLag; a non-member joins once it is connected and
// caught up (within Config.CatchUpTolerance entries). Propose only proposes;
// the caller publishes the new ISR (a CAS in NATS KV) and then confirms it
// with SetISR. State, the input of ackpolicy.Commit, uses the confirmed ISR
// only, so the leader never commits without a follower before the world can
// see that follower is out.
package fanout
