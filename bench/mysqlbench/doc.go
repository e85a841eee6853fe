// Command mysqlbench measures sysbench oltp_insert and oltp_write_only,
// side by side in one run, for: mariadbd alone, native MariaDB replication
// with two replicas (asynchronous), native semi-synchronous replication
// (AFTER_SYNC, one replica's acknowledgement), and a replicar group of
// three nodes (the `replicar` binary with REPLICAR_PROTOCOL=mysql, one
// process per node in front of its own mariadbd, elected through NATS)
// under the ack policies leader, one and all. The two native setups also
// run with sysbench going through bench/relay, a byte copier that parses
// nothing: the floor of what any proxy in front of the primary costs here.
//
// Every setup gets fresh servers with the same mariadbd settings and the
// same prepared tables; sysbench runs as a process of its own against the
// primary (or the replicar leader's client port). Every server runs on free
// loopback ports in a temp dir removed at exit, and is killed however the
// program ends.
//
//	go run ./bench/mysqlbench [-time 20s] [-threads 16] [-tables 4] [-table-size 10000]
//	                          [-flush-log-at-trx-commit 1] [-sync-binlog 1]
//	                          [-setups direct,async,semisync,async-relay,semisync-relay,leader,one,all]
//	                          [-relay bin/relay] [-rounds 1]
//	                          [-profile-dir DIR (a replicar built with -tags prof)] [-keep]
//
// Under the table, each run's notes: the semi-sync status and yes/no
// counters, the replicar leader's ISR, whether every copy ended equal
// (CHECKSUM TABLE), and the CPU seconds each process of the setup used.
package main
