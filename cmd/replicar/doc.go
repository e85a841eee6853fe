// Command replicar runs a replicar node: a sidecar proxy in front of a Redis
// or MySQL/MariaDB store that replicates its writes to the other nodes of a
// group and fails over through an election in NATS.
//
// Usage:
//
//	replicar                  run a node configured by the REPLICAR_* environment
//	replicar config [--json]  print the effective configuration, secrets masked
//	replicar version          print the version, commit and Go version
//	replicar help             print usage and the variables with their defaults
//
// # Environment
//
// A node is configured only through environment variables whose names start
// with REPLICAR_. proxy.Config defines them, with their defaults and meaning;
// `replicar help` lists them, and `replicar config` shows what the current
// environment resolves to. The rules:
//
//   - An empty variable counts as unset, so `REPLICAR_X=` in a compose file
//     keeps the default.
//   - Enum values are case-insensitive; durations are Go durations (500ms,
//     5s, 1m); REPLICAR_BACKLOG_BYTES takes the units of redis.conf (64mb,
//     1gb; k = 1000, kb = 1024); booleans take true/false, yes/no, on/off, 1/0.
//   - A REPLICAR_ variable that is not in the contract (a typo such as
//     REPLICAR_ACK_POLICYY) is reported as a warning, with the closest known
//     name, and otherwise ignored.
//
// A bad value stops the process before it does anything else, with one line
// per bad variable on stderr and exit status 2, for example
//
//	replicar: REPLICAR_FSYNC="sometimes": want one of always, everysec, no
//
// # Signals
//
// SIGINT or SIGTERM starts a clean shutdown; a second one kills the process at
// once.
//
// # Exit status
//
//	0  success, or a clean shutdown after a signal
//	1  the node failed while running
//	2  usage error or invalid configuration
//
// # Build
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)" -o bin/replicar ./cmd/replicar
//
// Without -ldflags the version is "dev" (or the module version under
// `go install …@version`) and the commit comes from the VCS information Go
// embeds in the binary, when there is some.
package main
