// Package resp is replicar's Redis front end.
//
// It will hold, per DESIGN.md: the RESP listener (tidwall/redcon), the command
// table taken from the backend's COMMAND output and the classification built
// on it, the deterministic rewriting of writes (relative expiry made absolute
// before execution; SPOP, INCRBYFLOAT, XADD * and friends rewritten from the
// primary's reply), the one ordered, pipelined writer connection that makes
// execution order equal backlog order, the Redis applier (MULTI … EXEC batches
// that also SET the position marker __replicar:pos), the SCAN + DUMP/RESTORE
// snapshotter, and the forwarder to the leader.
package resp
