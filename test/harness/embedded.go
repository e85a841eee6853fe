package harness

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EmbeddedNATS is a nats-server running inside the test binary, the way a
// replicar node runs one when REPLICAR_NATS_URL is empty.
type EmbeddedNATS struct {
	// URL is the client URL, "nats://127.0.0.1:port".
	URL string
	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the client port.
	Port int
	// StoreDir is the JetStream store directory.
	StoreDir string

	t    testing.TB
	opts *server.Options // as given, before the server fills in defaults

	mu  sync.Mutex
	srv *server.Server
}

// EmbeddedNATSOption changes the server options before the server starts.
type EmbeddedNATSOption func(*server.Options)

// StartEmbeddedNATS starts nats-server in-process with JetStream, storing in
// a new temporary directory, listening on 127.0.0.1 on a port the kernel
// picks when the server binds (so no other process can take it first), and
// waits until a client can read its JetStream account info. It does not
// handle signals and does not log. It is shut down when the test ends.
func StartEmbeddedNATS(t testing.TB, opts ...EmbeddedNATSOption) *EmbeddedNATS {
	t.Helper()
	start := time.Now()
	o := &server.Options{
		ServerName: "embedded",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		// The test binary owns its signals, and the server's log is noise
		// in test output.
		NoSigs: true,
		NoLog:  true,
	}
	for _, f := range opts {
		f(o)
	}
	e := &EmbeddedNATS{StoreDir: o.StoreDir, t: t, opts: o}
	t.Cleanup(e.Shutdown)
	if err := e.Start(); err != nil {
		t.Fatalf("harness: start embedded nats: %v", err)
	}
	t.Logf("harness: embedded nats-server on %s (store %s), ready in %s",
		e.URL, e.StoreDir, time.Since(start).Round(time.Millisecond))
	return e
}

// Server returns the running server, or nil after Shutdown.
func (e *EmbeddedNATS) Server() *server.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// Start starts the server after Shutdown, on the same port and store
// directory, and waits until it is ready.
func (e *EmbeddedNATS) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return fmt.Errorf("start embedded nats: already running")
	}
	o := e.opts.Clone()
	if e.Port != 0 {
		o.Port = e.Port // a restart keeps the port the first start got
	}
	s, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("embedded nats not accepting connections after 10s")
	}
	addr := s.Addr().String()
	url := "nats://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err = jetStreamAccountInfo(pctx, url)
		pcancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			s.Shutdown()
			s.WaitForShutdown()
			return fmt.Errorf("embedded nats jetstream not ready: %w", err)
		case <-time.After(25 * time.Millisecond):
		}
	}
	e.srv = s
	if e.Port == 0 {
		// Set once: a restart keeps the address, and readers need no lock.
		e.Addr, e.URL, e.Port = addr, url, s.Addr().(*net.TCPAddr).Port
	}
	return nil
}

// Shutdown stops the server and waits until it has stopped. It does nothing
// if the server is not running.
func (e *EmbeddedNATS) Shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.srv = nil
}

// Restart shuts the server down and starts it again on the same port and
// store directory.
func (e *EmbeddedNATS) Restart() error {
	e.Shutdown()
	return e.Start()
}

// Connect opens a client connection, which is closed when the test that
// started the server ends.
func (e *EmbeddedNATS) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return connect(e.t, e.URL, opts)
}

// Conn is Connect for the test goroutine: it fails the test on error.
func (e *EmbeddedNATS) Conn(opts ...nats.Option) *nats.Conn {
	e.t.Helper()
	nc, err := e.Connect(opts...)
	if err != nil {
		e.t.Fatalf("harness: %v", err)
	}
	return nc
}

// JetStream returns a JetStream context on a new connection from Conn.
func (e *EmbeddedNATS) JetStream() jetstream.JetStream {
	e.t.Helper()
	return newJetStream(e.t, e.Conn())
}
