// Package test holds replicar's end-to-end and fault tests. They run real
// redis-server, mariadbd and nats-server processes on free loopback ports,
// each in its own temporary directory, started and cleaned up by the helpers
// in test/harness. When CI=true a missing server binary fails a test instead
// of skipping it.
package test
