package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/replicar/replicar/election"
	"github.com/replicar/replicar/internal/tlsconf"
	"github.com/replicar/replicar/internal/users"
	"github.com/replicar/replicar/protocols/mysql"
	"github.com/replicar/replicar/protocols/resp"
)

// Security is what a node loads at start to encrypt and authenticate: its
// TLS configurations (REPLICAR_TLS_CERT/KEY/CA, BACKEND_TLS) and the client
// accounts of REPLICAR_USERS_FILE. A nil *Security is plain TCP with no
// extra accounts.
type Security struct {
	// TLS holds one *tls.Config per use, nil where TLS is off.
	TLS *tlsconf.Set
	// Users are the accounts of USERS_FILE, user → password.
	Users map[string]string
}

// LoadSecurity reads the files cfg names. Errors name the variable; they
// never hold a password.
func LoadSecurity(cfg Config) (*Security, error) {
	set, err := tlsconf.Load(tlsconf.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSCA}, string(cfg.BackendTLS))
	if err != nil {
		return nil, fmt.Errorf("%sTLS_*: %w", EnvPrefix, err)
	}
	s := &Security{TLS: set}
	// The users file's syntax is shared; what a user name may hold is the
	// protocol's.
	if cfg.UsersFile != "" {
		valid := resp.ValidUser
		if cfg.Protocol == ProtocolMySQL {
			valid = mysql.ValidUser
		}
		if s.Users, err = users.Load(cfg.UsersFile, valid); err != nil {
			return nil, fmt.Errorf("%sUSERS_FILE: %w", EnvPrefix, err)
		}
	}
	return s, nil
}

// tlsSet is s.TLS, or an empty set (everything plain) for a nil s.
func (s *Security) tlsSet() *tlsconf.Set {
	if s == nil || s.TLS == nil {
		return &tlsconf.Set{}
	}
	return s.TLS
}

func (s *Security) users() map[string]string {
	if s == nil {
		return nil
	}
	return s.Users
}

// logSummary says what is encrypted and who may connect, without a secret.
func (s *Security) logSummary(cfg Config, logger zerolog.Logger) {
	t := s.tlsSet()
	logger.Info().
		Bool("client_tls", t.Client != nil).
		Bool("repl_tls", t.ReplServer != nil).
		Bool("repl_mutual_tls", t.MutualTLS).
		Str("backend_tls", string(cfg.BackendTLS)).
		Bool("client_auth", cfg.Password != "").
		Int("users_file_accounts", len(s.users())).
		Bool("nats_creds", cfg.NATSCreds != "").
		Msg("security")
}

// listen opens the client port: TLS for the whole connection
// (rediss-style) when a certificate is set.
func (s *Security) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if c := s.tlsSet().Client; c != nil {
		return resp.TLSListener(ln, c), nil
	}
	return ln, nil
}

// applierOptions are the options of every connection to this node's own
// backend outside the front end: the follower's applier, the leader's
// store marks, the health ping.
func (s *Security) applierOptions(cfg Config) resp.ApplierOptions {
	return resp.ApplierOptions{User: cfg.BackendUser, Password: cfg.BackendPassword, TLS: s.tlsSet().Backend}
}

// snapshotOptions are a full resync copy's connections: from this node's
// store into another node's, both under the group's BACKEND_TLS and
// backend credentials.
func (s *Security) snapshotOptions(cfg Config) resp.SnapshotOptions {
	return resp.SnapshotOptions{
		SourceUser: cfg.BackendUser, SourcePassword: cfg.BackendPassword,
		TargetUser: cfg.BackendUser, TargetPassword: cfg.BackendPassword,
		TLS: s.tlsSet().Backend,
	}
}

// natsOptions are the standard NATS client options the configuration
// asks for: the credentials file, and the TLS configuration (TLS_CA as the
// root, TLS_CERT as the client certificate). The TLS configuration is set
// without requiring TLS, so that it serves tls:// URLs and servers that
// require TLS, while a nats:// URL to a plain server (the embedded one)
// stays plain. A user and password or a token travel in NATS_URL itself.
func (s *Security) natsOptions(cfg Config) []nats.Option {
	var opts []nats.Option
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if c := s.tlsSet().NATS; c != nil {
		opts = append(opts, func(o *nats.Options) error {
			o.TLSConfig = c.Clone()
			return nil
		})
	}
	return opts
}

// respTLS fills the TLS and account parts of the front end's config.
func (s *Security) respTLS(rc *resp.Config) {
	t := s.tlsSet()
	rc.BackendTLS = t.Backend
	rc.ForwardTLS = t.Peer
	rc.Users = s.users()
}

// replServerTLS is the replication port's TLS, nil when off.
func (s *Security) replServerTLS() *tls.Config { return s.tlsSet().ReplServer }

// peerTLS dials other nodes' ports, nil when off.
func (s *Security) peerTLS() *tls.Config { return s.tlsSet().Peer }

// allowPeer is the replication port's membership check (fanout's Allow):
// a node id may stream or ask for a snapshot only if the group's member
// directory lists it as a node (routers replicate nothing). A node that
// has just started may connect before its first record is published, so
// an unknown id is looked up once more a heartbeat interval later before
// it is refused. The refusal is an ERROR frame the follower logs and
// retries, and a warning in this node's log (fanout writes it).
func (g *Group) allowPeer(ctx context.Context, node string) error {
	wait := election.HeartbeatInterval(g.cfg.LeaseTTL)
	for try := 0; ; try++ {
		lctx, cancel := context.WithTimeout(ctx, g.cfg.LeaseTTL)
		members, err := g.el.Members(lctx)
		cancel()
		if err == nil {
			for _, m := range members {
				if m.Node != node {
					continue
				}
				if m.Role == election.RoleRouter {
					return fmt.Errorf("node %q is a router of group %q, which replicates nothing", node, g.cfg.Group)
				}
				return nil
			}
		}
		if try > 0 || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("node %q: cannot read the member directory of group %q to check it: %w", node, g.cfg.Group, err)
			}
			return fmt.Errorf("node %q is not in the member directory of group %q", node, g.cfg.Group)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}
