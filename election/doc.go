// Package election chooses the group's leader through NATS JetStream KV.
//
// It will hold, per DESIGN.md: the Elector interface (ctx first); the NATS KV
// implementation, where the key "leader" holds {node, addrs, nonce} and the
// epoch is the revision of the winning Create, renewed with Update(rev) every
// LEASE_TTL/4, with the leader fencing itself from the monotonic clock; the
// member directory and ISR kept in the same bucket; the embedded nats-server
// used when REPLICAR_NATS_URL is empty; and an in-memory fake for unit tests
// of the election state.
package election
