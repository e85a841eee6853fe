// Package localgroup starts a replicar group on one machine: redis-server
// processes on free loopback ports and replicar nodes in this process (a
// leader with its RESP front end, replication port and HTTP endpoints, and
// followers applying to their own stores). The local demo and the
// replication benchmark use it; tests use test/harness instead.
//
// Until the NATS election lands, the leader is fixed when the group starts.
package localgroup
