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
	return td.DialContext(ctx, "tcp", addr)
}
