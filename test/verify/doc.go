// Package verify is replicar's fault-injection verification suite: a
// three-node group of real processes (nats-server, redis-server and the
// replicar binary), clients that record every operation they send, and a
// nemesis that kills, pauses and partitions nodes meanwhile. At the end it
// checks two properties.
//
//   - Register workload: SET and GET of a few keys with READ_POLICY=leader,
//     checked for per-key linearizability with anishathalye/porcupine. A
//     write whose outcome the client cannot know (UNCOMMITTED, a timeout, a
//     lost connection) may have taken effect at any time after it was sent:
//     it is recorded as never returning. TRYAGAIN and NOREPLICAS promise the
//     write was not executed, so those writes are left out of the history,
//     and a read of their value is a violation.
//   - Append workload: RPUSH of unique ids. After the faults heal and a
//     leader settles, every acknowledged id must be in the list (no lost
//     acknowledged write), no id may appear twice (exactly-once apply), no
//     id refused with TRYAGAIN or NOREPLICAS may appear, each client's
//     acknowledged ids must keep their order, and every store must hold the
//     same data.
//
// Partitions go through toxiproxy, embedded as a library. Each node binds
// its client and replication ports on its own loopback address (127.0.0.2,
// 127.0.0.3, …) and advertises 127.0.0.1, where a proxy with the same port
// forwards to it; each node reaches NATS through its own proxy too. Cutting
// a node's NATS proxy cuts it from the election; cutting the leader's
// client and replication proxies cuts it from its followers. The test
// clients reach the nodes directly.
//
// TestVerifyShort runs a short schedule under the all (MIN_INSYNC=2),
// quorum and leader ack policies as part of `make test`. TestChaos runs
// the same for REPLICAR_CHAOS_DURATION per policy (`make chaos
// DURATION=10m`). Under all and quorum any lost acknowledged write or
// linearizability violation fails the test; under leader the losses are
// measured and reported, not failed. On a failure (and for any
// non-linearizable history) the porcupine HTML visualization, the fault
// log and the node logs are written to an artifacts directory whose path
// the test logs (REPLICAR_VERIFY_OUT chooses its parent; with it set, every
// run keeps its report.json, faults.txt and timeline.txt).
//
// REPLICAR_VERIFY_SEED repeats the nemesis' and the clients' choices (not
// their timing), REPLICAR_VERIFY_POLICIES picks policies ("all,quorum")
// and REPLICAR_VERIFY_DURATION changes the short run's length.
//
// dirtyread_test.go holds deterministic reproductions of what the
// randomized runs found, kept as regression tests.
package verify
