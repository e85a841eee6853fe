package election

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// DefaultNATSListen is where the embedded server listens by default
// (REPLICAR_NATS_LISTEN).
const DefaultNATSListen = "127.0.0.1:4222"

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// Listen is the client address, host:port; DefaultNATSListen when
	// empty. Port 0 picks a free port.
	Listen string
	// StoreDir is the JetStream store directory. When empty, a new
	// temporary directory is used and removed by Shutdown.
	StoreDir string
	// ServerName is the server's name; "replicar" when empty.
	ServerName string
	// Logger receives the server's notices, warnings and errors.
	Logger zerolog.Logger
}

// Embedded is a nats-server with JetStream running in this process, used
// when REPLICAR_NATS_URL is empty. Other nodes on the machine point their
// REPLICAR_NATS_URL at URL.
type Embedded struct {
	url      string
	storeDir string
	tmpDir   string
	srv      *server.Server
	once     sync.Once
}

// StartEmbedded starts nats-server as a library with JetStream on
// o.Listen, storing in o.StoreDir with every write synced (a lease or ISR
// write the server acknowledged survives a crash), and waits until
// JetStream answers, or ctx ends (30s when ctx has no deadline).
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	if o.Listen == "" {
		o.Listen = DefaultNATSListen
	}
	if o.ServerName == "" {
		o.ServerName = "replicar"
	}
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("nats listen %q: bad port", o.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // 0 would mean the default, 4222
	}
	e := &Embedded{}
	if o.StoreDir == "" {
		dir, err := os.MkdirTemp("", "replicar-nats-")
		if err != nil {
			return nil, fmt.Errorf("nats store dir: %w", err)
		}
		o.StoreDir, e.tmpDir = dir, dir
	}
	e.storeDir = o.StoreDir
	sopts := &server.Options{
		ServerName: o.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: true,
		NoSigs:     true, // the process owns its signals
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		e.removeTmp()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	logger := serverLogger{l: o.Logger.With().Str("component", "nats-server").Logger(), fatal: make(chan string, 1)}
	srv.SetLoggerV2(logger, false, false, false)
	e.srv = srv
	srv.Start()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	// ReadyForConnections would wait its whole timeout for a server that
	// could not listen; the server says so through Fatalf.
	start := time.Now()
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-logger.fatal:
			e.Shutdown()
			return nil, fmt.Errorf("embedded nats on %s: %s", o.Listen, msg)
		case <-ctx.Done():
			e.Shutdown()
			return nil, fmt.Errorf("embedded nats on %s: not accepting connections after %s: %w",
				o.Listen, time.Since(start).Round(time.Millisecond), ctx.Err())
		default:
		}
	}
	e.url = srv.ClientURL()
	if err := waitJetStream(ctx, e.url); err != nil {
		e.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s: %w", o.Listen, err)
	}
	o.Logger.Info().Str("url", e.url).Str("store_dir", o.StoreDir).Msg("embedded nats ready")
	return e, nil
}

// waitJetStream polls until a client reads the JetStream account info.
func waitJetStream(ctx context.Context, url string) error {
	var err error
	for {
		err = func() error {
			nc, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(time.Second))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			actx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err = js.AccountInfo(actx)
			return err
		}()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jetstream not ready: %w", errors.Join(ctx.Err(), err))
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// URL is the client URL, "nats://host:port".
func (e *Embedded) URL() string { return e.url }

// StoreDir is the JetStream store directory.
func (e *Embedded) StoreDir() string { return e.storeDir }

// Server is the running server, for tests and monitoring.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped, then removes
// the store directory if StartEmbedded made it. It may be called more than
// once.
func (e *Embedded) Shutdown() {
	e.once.Do(func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.removeTmp()
	})
}

func (e *Embedded) removeTmp() {
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
}

// serverLogger passes nats-server's logs to zerolog. The server's own
// logger exits the process on Fatalf; this one logs, and hands the first
// fatal message to StartEmbedded.
type serverLogger struct {
	l     zerolog.Logger
	fatal chan string
}

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info().Msgf(format, v...) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn().Msgf(format, v...) }
func (s serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error().Msg(msg)
	select {
	case s.fatal <- msg:
	default:
	}
}
func (s serverLogger) Errorf(format string, v ...any) { s.l.Error().Msgf(format, v...) }
func (s serverLogger) Debugf(format string, v ...any) { s.l.Debug().Msgf(format, v...) }
func (s serverLogger) Tracef(format string, v ...any) { s.l.Trace().Msgf(format, v...) }
