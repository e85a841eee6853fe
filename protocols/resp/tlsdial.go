package resp

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// dialTCP connects to addr within timeout, over TLS when cfg is set: the
// handshake is part of the dial, and the certificate is checked for addr's
// host (an IP needs an IP SAN) unless cfg names a server or skips the check.
func dialTCP(ctx context.Context, addr string, timeout time.Duration, cfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	if cfg == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: cfg}
	return td.DialContext(ctx, "tcp", loopbackForWildcard(addr))
}

// loopbackForWildcard turns a wildcard host (a node that leads forwards to
// its own listener's address, which is 0.0.0.0:port when LISTEN is a
// wildcard) into the loopback address: no certificate names 0.0.0.0, while
// 127.0.0.1 is an IP SAN a node's certificate can carry.
func loopbackForWildcard(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || ip != nil && ip.Equal(net.IPv4zero):
		return net.JoinHostPort("127.0.0.1", port)
	case ip != nil && ip.Equal(net.IPv6unspecified):
		return net.JoinHostPort("::1", port)
	}
	return addr
}
