package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/replicar/replicar/internal/tlsconf"
	"github.com/replicar/replicar/internal/tlsconf/tlstest"
)

func TestBuildOff(t *testing.T) {
	s, err := tlsconf.Build(nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Client != nil || s.ReplServer != nil || s.Peer != nil || s.Backend != nil || s.NATS != nil || s.MutualTLS {
		t.Fatalf("TLS off should give no configs: %+v", s)
	}
}

func TestBuildErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other")
	node := ca.Loopback(t, "n1")
	foreign := other.Loopback(t, "n1")
	serverOnly := ca.Issue(t, tlstest.LeafOptions{CommonName: "s", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	clientOnly := ca.Issue(t, tlstest.LeafOptions{CommonName: "c", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	expired := ca.Issue(t, tlstest.LeafOptions{CommonName: "e", NotAfter: time.Now().Add(-time.Second)})
	for _, tc := range []struct {
		name            string
		cert, key, ca   []byte
		backend, errHas string
	}{
		{"cert without key", node.CertPEM, nil, nil, "", "want both a certificate and its key"},
		{"key of another cert", node.CertPEM, foreign.KeyPEM, nil, "", "tls cert: "},
		{"ca file without certificates", node.CertPEM, node.KeyPEM, node.KeyPEM, "", "no PEM certificate"},
		{"cert of another CA", foreign.CertPEM, foreign.KeyPEM, ca.PEM, "", "would refuse it"},
		{"expired", expired.CertPEM, expired.KeyPEM, ca.PEM, "", "expired"},
		{"no serverAuth", clientOnly.CertPEM, clientOnly.KeyPEM, nil, "", "lacks serverAuth"},
		{"no clientAuth with mTLS", serverOnly.CertPEM, serverOnly.KeyPEM, ca.PEM, "", "lacks clientAuth"},
		{"bad backend mode", nil, nil, nil, "yes", `backend tls "yes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconf.Build(tc.cert, tc.key, tc.ca, tc.backend)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
			}
		})
	}
	// serverAuth alone is enough without mutual TLS.
	if _, err := tlsconf.Build(serverOnly.CertPEM, serverOnly.KeyPEM, nil, ""); err != nil {
		t.Fatalf("server-only certificate without a CA: %v", err)
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	cert, key := ca.Loopback(t, "n1").Write(t, dir, "n1")
	caFile := ca.Write(t, dir, "ca")
	s, err := tlsconf.Load(tlsconf.Files{Cert: cert, Key: key, CA: caFile}, "verify")
	if err != nil {
		t.Fatal(err)
	}
	if !s.MutualTLS || s.ReplServer.ClientAuth != tls.RequireAndVerifyClientCert || s.Backend == nil || s.Backend.InsecureSkipVerify {
		t.Fatalf("unexpected set: %+v", s)
	}
	if _, err := tlsconf.Load(tlsconf.Files{Cert: filepath.Join(dir, "missing"), Key: key}, ""); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	on, err := tlsconf.Load(tlsconf.Files{}, "on")
	if err != nil || on.Backend == nil || !on.Backend.InsecureSkipVerify || on.Client != nil {
		t.Fatalf("BACKEND_TLS=on alone: %+v %v", on, err)
	}
}

// TestMutualTLS runs real handshakes between ReplServer and Peer: a node
// of the CA gets in, a certificate of another CA and no certificate do
// not, and a node checks the server's name (an IP SAN for 127.0.0.1).
func TestMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other")
	build := func(l tlstest.Leaf, caPEM []byte) *tlsconf.Set {
		t.Helper()
		s, err := tlsconf.Build(l.CertPEM, l.KeyPEM, caPEM, "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	srv := build(ca.Loopback(t, "n1"), ca.PEM)
	good := build(ca.Loopback(t, "n2"), ca.PEM)
	foreign := build(other.Loopback(t, "x"), other.PEM)
	// A node of another CA that trusts ours: only the server's check can
	// refuse it.
	foreignPeer := foreign.Peer.Clone()
	foreignPeer.RootCAs = ca.Pool()
	noCert := &tls.Config{RootCAs: ca.Pool()}
	dnsOnly := build(ca.Issue(t, tlstest.LeafOptions{CommonName: "n3", DNSNames: []string{"n3.example"}}), ca.PEM)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErrs := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, srv.ReplServer)
				err := tc.HandshakeContext(context.Background())
				if err == nil {
					_, err = tc.Write([]byte("ok"))
				}
				serverErrs <- err
			}()
		}
	}()
	dial := func(cfg *tls.Config, addr string) error {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		// TLS 1.3 clients learn of a refused certificate on their first read.
		_, err = io.ReadFull(c, make([]byte, 2))
		return err
	}
	if err := dial(good.Peer, ln.Addr().String()); err != nil {
		t.Fatalf("a node of the CA: %v", err)
	}
	if err := <-serverErrs; err != nil {
		t.Fatalf("server side of a good handshake: %v", err)
	}
	for name, cfg := range map[string]*tls.Config{"other CA": foreignPeer, "no certificate": noCert} {
		if err := dial(cfg, ln.Addr().String()); err == nil {
			t.Fatalf("%s: handshake succeeded", name)
		}
		if err := <-serverErrs; err == nil {
			t.Fatalf("%s: the server accepted it", name)
		}
	}
	// The peer checks the server's name: 127.0.0.1 is in n1's IP SANs,
	// localhost in its DNS names; a server certificate for another name
	// is refused.
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := dial(good.Peer, "localhost:"+port); err != nil {
		t.Fatalf("by DNS name: %v", err)
	}
	<-serverErrs
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go func() {
		c, err := ln2.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = tls.Server(c, dnsOnly.ReplServer).HandshakeContext(context.Background())
	}()
	var verr *tls.CertificateVerificationError
	if err := dial(good.Peer, ln2.Addr().String()); !errors.As(err, &verr) {
		t.Fatalf("a server certificate without 127.0.0.1: %v, want a verification error", err)
	}
}
