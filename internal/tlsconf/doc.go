// Package tlsconf builds a node's TLS configurations, in one place, from
// REPLICAR_TLS_CERT, REPLICAR_TLS_KEY, REPLICAR_TLS_CA and
// REPLICAR_BACKEND_TLS.
//
// Build is pure: it takes the PEM bytes and returns a Set, checking at
// start what would otherwise fail at the first handshake (a key that does
// not match its certificate, a certificate the CA did not sign, a missing
// extended key usage). Load reads the files and calls Build.
//
// A Set holds one *tls.Config per use, nil when that TLS is off:
//
//   - Client, the client port's server side (rediss-style: the whole
//     connection is TLS). Clients are not asked for certificates.
//   - ReplServer, the replication port's server side. With a CA, a peer
//     must present a certificate the CA signed: mutual TLS between nodes.
//   - Peer, for dialling other nodes (the replication port, snapshot
//     requests, and a follower or router forwarding to the leader's client
//     port). It checks the node's certificate against the CA, or the
//     system roots without one, for the host dialled (an IP needs an IP
//     SAN), and presents this node's certificate.
//   - Backend, for dialling the store: "on" encrypts without checking,
//     "verify" checks the certificate and host like Peer does.
//   - NATS, for NATS connections that use TLS (tls:// URLs, or servers
//     that require it): the CA as root and this node's certificate.
//
// The callers give these to the packages that dial and listen (fanout,
// protocols/resp, nats.go); those packages never read files or the
// environment.
package tlsconf
