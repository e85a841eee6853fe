package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
)

// Backend TLS modes (REPLICAR_BACKEND_TLS).
const (
	BackendOff    = "off"
	BackendOn     = "on"
	BackendVerify = "verify"
)

// Files names the PEM files; empty names are unset.
type Files struct {
	Cert, Key, CA string
}

// Set is a node's TLS configurations; see the package documentation. A
// nil field means that connection is plain TCP.
type Set struct {
	Client     *tls.Config
	ReplServer *tls.Config
	Peer       *tls.Config
	Backend    *tls.Config
	NATS       *tls.Config

	// MutualTLS says whether the replication port requires peer
	// certificates (a CA is set).
	MutualTLS bool
}

// Load reads the files and builds the Set with Build.
func Load(f Files, backend string) (*Set, error) {
	read := func(name, path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("tls %s: %w", name, err)
		}
		return b, nil
	}
	cert, err := read("cert", f.Cert)
	if err != nil {
		return nil, err
	}
	key, err := read("key", f.Key)
	if err != nil {
		return nil, err
	}
	ca, err := read("ca", f.CA)
	if err != nil {
		return nil, err
	}
	s, err := Build(cert, key, ca, backend)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Build makes the Set from PEM bytes: certPEM and keyPEM (both or
// neither) turn on TLS on the node's ports; caPEM, with them, makes the
// replication port require peer certificates it signed, and is the root
// for everything this node verifies (else the system roots are). backend
// is off (or empty), on or verify.
func Build(certPEM, keyPEM, caPEM []byte, backend string) (*Set, error) {
	if (len(certPEM) == 0) != (len(keyPEM) == 0) {
		return nil, errors.New("tls: want both a certificate and its key, or neither")
	}
	var roots *x509.CertPool
	if len(caPEM) > 0 {
		var err error
		if roots, err = parseCA(caPEM); err != nil {
			return nil, err
		}
	}
	s := &Set{}
	var certs []tls.Certificate
	if len(certPEM) > 0 {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("tls cert: %w", err)
		}
		if err := checkLeaf(cert, roots); err != nil {
			return nil, err
		}
		certs = []tls.Certificate{cert}
		s.Client = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
		s.ReplServer = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
		if roots != nil {
			s.ReplServer.ClientAuth = tls.RequireAndVerifyClientCert
			s.ReplServer.ClientCAs = roots
			s.MutualTLS = true
		}
		// The server name is the host dialled, which tls.Dialer fills in.
		s.Peer = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs, RootCAs: roots}
	}
	switch backend {
	case "", BackendOff:
	case BackendOn:
		// Encrypted against eavesdropping only, as asked: the store's
		// certificate is not checked.
		s.Backend = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs, InsecureSkipVerify: true}
	case BackendVerify:
		s.Backend = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs, RootCAs: roots}
	default:
		return nil, fmt.Errorf("backend tls %q: want off, on or verify", backend)
	}
	if roots != nil || certs != nil {
		s.NATS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs, RootCAs: roots}
	}
	return s, nil
}

// parseCA makes a pool of every certificate in pem, refusing a file with
// none (a key or a typo'd path's contents would otherwise give an empty
// pool that trusts nothing, and every peer would be refused).
func parseCA(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls ca: certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("tls ca: no PEM certificate in the file")
	}
	return pool, nil
}

// checkLeaf catches at start what peers would refuse at every handshake:
// a certificate the CA did not sign, or one whose extended key usages
// leave out serving TLS, or (with mutual TLS) being a TLS client.
func checkLeaf(cert tls.Certificate, roots *x509.CertPool) error {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("tls cert: %w", err)
		}
	}
	if !hasUsage(leaf, x509.ExtKeyUsageServerAuth) {
		return errors.New("tls cert: its extended key usage lacks serverAuth, which the client and replication ports need")
	}
	if roots == nil {
		return nil
	}
	if !hasUsage(leaf, x509.ExtKeyUsageClientAuth) {
		return errors.New("tls cert: its extended key usage lacks clientAuth, which mutual TLS between nodes needs (REPLICAR_TLS_CA is set)")
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("tls cert: peers checking it against REPLICAR_TLS_CA would refuse it: %w", err)
	}
	return nil
}

// hasUsage reports whether the certificate may be used for u: a
// certificate that lists no extended key usage may be used for any.
func hasUsage(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	return len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, u) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}
