// Package ackpolicy is the commit maths of replicar: given an ack policy, the
// leader's own offset, the followers' applied offsets and the in-sync replica
// set (ISR), it says which offset is committed and whether a new write may be
// accepted at all. It also holds the waiters that park a client's reply until
// its offset commits.
//
// The policies (REPLICAR_ACK_POLICY) and their peers:
//
//	none    NoAck()              committed once the primary replied      Kafka acks=0
//	leader  LeaderAck()          in the leader's backlog, durable per     Kafka acks=1, MySQL async
//	                             REPLICAR_FSYNC
//	one     FollowerAcks(k)      the leader plus k in-sync followers      MySQL semi-sync, Redis WAIT k
//	quorum  QuorumAcks()         a majority of the group's nodes          Cassandra QUORUM, Raft
//	all     AllISRAcks(min)      every ISR member, ISR ≥ min (counting    Kafka acks=all +
//	                             the leader)                              min.insync.replicas
//
// Only in-sync followers count for one and all, because only they may become
// leader: a copy on a follower that cannot be elected does not survive a
// failover. Quorum counts every node, because its election first asks a
// majority for their offsets and any two majorities share a node.
//
// Like Kafka, a write is refused before it executes (ErrNoReplicas, which the
// protocols turn into NOREPLICAS) when the ISR is too small for the policy to
// ever commit it.
//
// The package does no I/O, starts no goroutines, reads no clock and does not
// log. Commit, Accept and Policy are pure functions of their inputs; Commits
// is a small synchronised structure that keeps the committed offset monotonic
// and wakes waiters, with deadlines coming from the caller's context.
package ackpolicy
