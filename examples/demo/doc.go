// Command demo is what `make run` runs: a local replicar group of real
// processes, and a failover shown as it happens.
//
// It starts a nats-server, three redis-servers and three replicar nodes
// (bin/replicar) on free loopback ports, each in its own session so that
// they outlive the demo, with their state, logs and pid files under -dir
// (.run/group). It then drives writes through all three nodes, SIGKILLs
// the leader, prints who leads, the offsets, each follower's lag and the
// writes acknowledged as the group fails over, restarts the killed node so
// it rejoins as a follower, and reads back every acknowledged write through
// replicar and on each store: writes lost must be 0. It leaves the group
// running and prints its ports.
//
//	go build -o bin/replicar-demo ./examples/demo
//	bin/replicar-demo [-dir .run/group] [-bin bin/replicar] [-policy quorum]
//	bin/replicar-demo stop [-dir .run/group]
//
// `stop` signals every process recorded in the pid files (the nodes first,
// with SIGTERM, so a leader hands over; SIGKILL after a grace period), and
// removes the directory. A pid is signalled only if its command line still
// names the program the demo started.
//
// The nodes share a separate nats-server rather than the embedded NATS of
// the first node: the demo kills the leader, and if that node hosted the
// group's NATS, the election would go down with it.
package main
