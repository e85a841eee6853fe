// Command relay is the cheapest proxy we know how to write: one thread, one
// epoll loop, and for each client a connection of its own to the backend,
// with the bytes copied both ways unread. It parses nothing, logs nothing and
// holds nothing back, and it spends no Go scheduling on the way: no goroutine
// per connection, no netpoller wake-ups.
//
// The benchmarks run it in front of Redis next to replicar, so each run shows
// the floor that sitting in front of the store costs on this host: a ratio
// the relay cannot reach is out of reach for a proxy that does real work on
// the same cores too.
//
// It is a measuring tool, not a server: Linux only, IPv4 loopback, and a
// write that the peer is not reading blocks the whole loop.
//
//	go run ./bench/relay LISTEN BACKEND
package main
