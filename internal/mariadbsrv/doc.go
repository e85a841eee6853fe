// Package mariadbsrv holds what the tests' starter (test/harness) and the
// benchmarks' starter (internal/localgroup) share to run mariadbd: finding
// the binaries, a datadir template made once by mariadb-install-db with
// the accounts set up, copying it, the server's command line and the
// readiness query. It never imports testing, so the benchmarks, which run
// outside `go test`, can use it; each starter keeps its own process
// handling (the harness restarts and cleans up through testing.TB).
package mariadbsrv
