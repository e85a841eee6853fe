// Command replbench measures SET throughput and latency, side by side in one
// run, for: the store alone, native Redis replication (a primary and two
// replicas, asynchronous), native Redis with WAIT 1 after every write, and
// a replicar group of three nodes (the `replicar` binary, one process per
// node in front of its own redis-server, elected through NATS) under the
// ack policies leader, one and all.
//
// With -relay (bench/relay, a byte copier that parses nothing) it also runs
// the native setups with the clients going through that relay: the floor of
// what any proxy in front of the primary costs on this host, before it does
// any work of its own.
//
// The clients run in a process of their own (this program started again
// with -load), as an application would, so they share neither a Go runtime
// nor a garbage collector with what they measure. Every server runs on free
// loopback ports in a temp dir removed at exit.
//
//	go run ./bench/replbench [-clients 50] [-duration 5s] [-replicar bin/replicar] [-relay bin/relay]
package main
