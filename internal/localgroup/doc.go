// Package localgroup starts redis-server and mariadbd processes on free
// loopback ports for the benchmarks (bench/replbench, bench/mysqlbench),
// which run outside `go test` and so cannot use test/harness. The replicar
// nodes they measure are the `replicar` binary, started as processes of
// their own.
package localgroup
