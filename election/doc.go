// Package election chooses the group's leader through NATS JetStream KV,
// and keeps the group's member directory and ISR next to the lease.
//
// It holds:
//
//   - the Elector and Leadership interfaces and their sentinel errors
//     (election.go);
//   - NATSElector, the implementation on a JetStream KV bucket (nats.go,
//     lease.go), made with NewNATS;
//   - StartEmbedded, nats-server/v2 running as a library with JetStream,
//     used when REPLICAR_NATS_URL is empty (embedded.go);
//   - Decide, the candidate's pure decision: whether to campaign and how
//     long to back off (rank.go);
//   - package electiontest, an in-memory Elector with a manual clock for
//     unit tests of the proxy's role logic.
//
// # Use
//
//	e, err := election.NewNATS(ctx, election.Options{URL: url, Group: "default", TTL: 3 * time.Second, Logger: log})
//	l, err := e.Campaign(ctx, election.LeaderInfo{Node: "n1", Addrs: addrs})
//	if errors.Is(err, election.ErrLeaseHeld) { /* follow; watch e.WatchLeader */ }
//	// Serve from l.ServeAt(); before every acknowledgement: if !l.Valid() { fenced }
//	<-l.Lost() // l.Err() says why: ErrLeaseLost, ErrLeaseExpired, ErrReleased, ErrClosed
//	l.Release(ctx) // on a controlled handover, once writes have stopped
//
// Every node publishes its Member record every HeartbeatInterval (TTL/3);
// the leader changes the ISR with SetISR (a CAS) before it commits without
// a follower.
//
// # KV layout
//
// One bucket per group, BucketName(group) = "replicar_<group>" with '.'
// mapped to '_'. History 1, file storage, Replicas 1 or 3 (R3 on a NATS
// cluster, with sync_interval: always in production). The bucket's MaxAge
// is the lease TTL, and LimitMarkerTTL (subject delete markers) is on, so a
// key that is not rewritten within a TTL is removed and leaves a marker
// ("Nats-Marker-Reason: MaxAge") that watchers see. Keys:
//
//	leader          {"node":"n1","addrs":{"client":"…","repl":"…","http":"…"},"nonce":"9f…","epoch":42}
//	members.<node>  {"node":"n1","addrs":{…},"role":"follower","epoch":42,"last_epoch":41,
//	                 "applied":1234,"healthy":true,"isr_member":true,"updated":1767225600000}
//	isr             {"epoch":42,"members":["n1","n2","n3"]}
//
// leader is written by Campaign (a Create, by CAS on the key's last
// revision) and rewritten by the holder every RenewInterval (TTL/4) with
// Update(lastRev). The epoch is the revision the winning Create returned;
// the Create cannot contain it, so "epoch" appears from the first renewal
// on, and a reader of a value without it takes the entry's revision.
// Revisions are stream sequences, so epochs only grow — unless the bucket
// is deleted and made again, which starts them over: never do that to a
// live group without also resetting what the followers persisted.
//
// members.<node> expire one TTL after their last Publish, so a dead node
// leaves the directory by itself; Members and WatchMembers show the live
// ones.
//
// Reads that decide something (Campaign's look at the leader key, the
// renewal's check after a conflict, ISR, Members) ask the stream leader
// (the STREAM.MSG.GET and STREAM.INFO APIs), not the direct get API that
// KV reads use: on an R3 bucket any replica that is about caught up
// answers direct gets, and a watch's ordered consumer is placed on a random
// replica, so both may miss the latest acknowledged writes for a moment.
// WatchLeader and WatchMembers accept that lag; they only report.
//
// isr is written with the header "Nats-TTL: never", which exempts it from
// the bucket's MaxAge: it must outlive its leader, since it says who may
// succeed it. SetISR is a CAS on the revision ISR returned (0: create).
//
// # Fencing
//
// The holder keeps a deadline on the monotonic clock: the time a
// successful Create or Update was sent, plus TTL, minus FenceMargin
// (max(TTL/10, 100ms)). A renewal that fails or has no answer does not move
// it. Valid is true before the deadline only, and the proxy checks it right
// before every acknowledgement (and every fenced read).
//
// Why the deadline comes before the server removes the key: the server
// stamps a message when it stores it, which is after the holder sent it, and
// removes it no earlier than stamp + MaxAge (its age check runs at most
// every 250ms, so removal comes late, never early). So removal ≥ send + TTL > deadline, by at
// least the margin, which absorbs the difference between the two clocks'
// rates over one TTL and the time between Valid and the reply. Only after
// the removal can another node's Create succeed. A renewal whose answer was
// lost does not extend the deadline: it may have been stored, and if it was,
// a later Update at the old revision conflicts, the holder finds its own
// nonce on the key and carries on from that revision.
//
// A new leader then waits until the old holder has fenced itself, on its
// own monotonic clock, trusting no server clock (ServeAt):
//
//   - After a release it serves at once. The key's last message, the one
//     its CAS replaced, is the delete a Release writes: a KV delete that
//     carries "Replicar-Released: <epoch>" and is itself a CAS at the
//     releaser's last revision, sent after the releaser fenced itself.
//   - After an expiry marker or a plain delete (an operator's `nats kv
//     del`), when this node's own watch of the key saw the holder's last
//     renewal arrive (observer.go), it serves one TTL after that arrival.
//     The renewal was sent before it arrived, and every successful renewal
//     comes before the removal in the stream, so the holder's deadline
//     (send + TTL − margin) is passed by then. A key removed by expiry was
//     last renewed at least one TTL before, so this is usually at once.
//   - Otherwise (it started watching after that renewal, or the key had no
//     message at all) it waits one TTL after its own Create, which was sent
//     after any renewal the server stored.
//
// None of these trusts the server's expiry time, so a server clock that
// jumped forward, or a stream leader with a clock ahead of its
// predecessor's, which would remove the key early, does not shorten the
// wait. The choice rests on the CAS, not on the read before it: a direct
// get may be answered by a lagging replica, but the CAS only succeeds if
// the message read was still the last.
//
// A deposed leader that was paused past its deadline cannot acknowledge
// (Valid is false) and its next renewal conflicts; followers additionally
// reject entries from an epoch lower than the highest they have seen.
//
// # Timing
//
// With TTL = 3s: renewals every 750ms, each attempt bounded by the
// deadline and cut short when the connection drops (a request lost with a
// broken connection is never answered); margin 300ms;
// client pings every TTL/3 with two outstanding, so a silent partition
// drops the connection within about TTL; reconnects forever. Member
// records every second. A failover after a crash takes up to TTL (the key
// expires) + 250ms (the server's age check) + the backoff of Decide; a
// candidate that never saw the last renewal adds one TTL (ServeAt).
//
// On a NATS cluster, losing the server that leads the bucket's stream
// stops every write until the others elect a new stream leader, which the
// server's Raft does after 4–9s: longer than the default TTL, so the lease
// expires and the group fails over (safely, with a higher epoch). Losing
// any other server only makes the client reconnect; the lease survives.
//
// Every node of a group must use the same TTL: NewNATS refuses a bucket
// whose MaxAge differs from its own TTL. The TTL is at least MinTTL (1s):
// the server's markers live whole seconds.
package election
