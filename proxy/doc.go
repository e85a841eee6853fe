// Package proxy is a replicar node: it wires a protocol (protocols/resp or
// protocols/mysql) to the backlog, fanout, ackpolicy and election packages,
// drives the role changes between leader, follower, candidate and router, and
// owns the node's lifecycle from start to a controlled handover on shutdown.
//
// What is here today:
//
//   - Config: the REPLICAR_* contract (below).
//   - ReplLog: the backlog, its WAL, the ack policy and the committed
//     offset; the protocols append to it in execution order and park replies
//     on it. It is also the fanout.Source followers stream from.
//   - LeaderReplication / ServeFollowers: the fanout leader over a ReplLog,
//     with follower acks driving commits and the ISR kept up to date.
//   - Group: one node of an elected group (group.go): election, leader and
//     follower roles, ISR, controlled handover, partial and full resync,
//     the leading mark and the backend health step-down. It is the same for
//     every protocol and reaches the protocol only through Store.
//   - Store (store.go): what a protocol gives the group: the front end's
//     route, drain and backend health; the applier (fanout.Applier with
//     SetPosition); the leading mark; snapshot copies from a leader or a
//     follower; and a capture hook for protocols whose front end does not
//     log writes itself. store_redis.go implements it for RESP (RedisNode
//     is the RESP front end's core); store_mysql.go for MySQL/MariaDB in
//     row mode (MySQLNode is the MySQL front end's core, and the leader
//     tails its backend's binlog with protocols/mysql/rowlog into the
//     ReplLog; followers apply with protocols/mysql/apply).
//   - Run: the node cmd/replicar starts, for either protocol, with
//     /status, /healthz, /readyz and /metrics on HTTP_LISTEN; RunRouter: a
//     process with no backend that forwards to the leader.
//   - RunFollower: a Redis follower outside an elected group (a static
//     leader's tests), with full resync through a callback.
//   - Security / LoadSecurity: the TLS configurations (internal/tlsconf)
//     and USERS_FILE accounts a node loads at start, and the replication
//     port's membership check (Group.allowPeer, against the member
//     directory).
//
// # Configuration
//
// Config is the whole user-facing contract in one struct: one field per
// REPLICAR_* environment variable, each carrying its name (env tag, without
// the REPLICAR_ prefix), its default (default tag) and a one-line
// description (desc tag) from which the configuration reference is
// generated. Secrets are marked with secret:"true".
//
// The package never reads the environment itself; cmd/replicar does, and
// feeds each variable to Config.Set. The usual sequence is
//
//	cfg := proxy.Default()                 // every default from the tags
//	err := cfg.Set("ACK_POLICY", "all")    // one call per REPLICAR_* variable
//	cfg.ApplyDefaults()                    // protocol-dependent and derived defaults
//	err = cfg.Validate()                   // one *VarError per bad variable
//
// Every error names the variable with its prefix, the value it was given and
// what is allowed, on one line, for example
//
//	REPLICAR_ACK_POLICY="quorom": want one of none, leader, one, quorum, all
//
// Vars lists the variables in a stable order for help output and generated
// docs; Config.Value formats a field back into the text a variable accepts,
// and Config.Masked hides secrets before a config is printed or logged.
package proxy
