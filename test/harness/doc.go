// Package harness starts real servers for end-to-end and fault tests:
// redis-server, mariadbd and nats-server as child processes, and nats-server
// as an in-process library.
//
// Every helper takes a testing.TB, starts the server in its own t.TempDir()
// on free loopback ports, waits until the server answers, and registers a
// t.Cleanup that kills it and removes its files. Nothing listens outside
// 127.0.0.0/8, and no helper assumes a default port is free.
//
//	r := harness.StartRedis(t, harness.RedisAppendOnly(true))
//	rdb := r.Client()               // closed when the test ends
//	if err := r.Restart(); err != nil { // SIGKILL, then start again on the same port and dir
//		t.Fatal(err)
//	}
//
//	m := harness.StartMariaDB(t) // log_bin=ON, binlog_format=ROW, unique server_id
//	db := m.DB()
//
//	c := harness.StartNATSCluster(t, 3) // JetStream, R3 buckets work
//	nc := c.Conn()
//
// Child processes run in their own process group with a parent-death signal,
// so a test binary that dies takes its servers with it. Their stdout and
// stderr go to a log file next to their data; a failed start reports the
// tail of that log, and a failed test logs it at cleanup.
//
// Fault injection goes through the handles: Kill (SIGKILL), Stop (SIGSTOP),
// Cont (SIGCONT), Shutdown (SIGTERM, graceful), Start and Restart, which reuse
// the same port and data directory. These methods return errors instead of
// failing the test, so they may be called from any goroutine.
//
// A missing binary skips the test, unless CI=true, where it fails with an
// install hint: a test never silently skips in CI. scripts/install-deps.sh
// installs everything this package needs.
package harness
