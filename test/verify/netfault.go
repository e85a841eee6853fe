package verify

import (
	"context"
	"fmt"
	"strings"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// CutMode is how a link is cut.
type CutMode string

const (
	// Blackhole keeps connections open and new ones are accepted, but no
	// byte passes in either direction: what a dropped route or a dead
	// switch looks like. Both sides just wait. The bytes sent meanwhile are
	// dropped, so healing closes the connections that lived through the
	// cut (a TCP stream cannot resume with a gap); new ones then pass.
	Blackhole CutMode = "blackhole"
	// Refuse closes every connection through the link and refuses new
	// ones, as a crashed host's kernel or a firewall with REJECT would.
	Refuse CutMode = "refuse"
)

// Net is a set of toxiproxy proxies, one per link a test may cut.
type Net struct {
	srv *toxiproxy.ApiServer

	mu    sync.Mutex
	links []*Link
}

// Link is one proxy: a listen address that forwards to an upstream, which
// can be cut and healed.
type Link struct {
	// Name names the link in fault logs, e.g. "n1-nats".
	Name string
	// Listen is the address the proxy listens on.
	Listen string
	// Upstream is where it forwards.
	Upstream string

	mu  sync.Mutex
	p   *toxiproxy.Proxy
	cut CutMode // "" while healed
}

// NewNet returns an empty set of proxies with toxiproxy's logging off.
func NewNet() *Net {
	return &Net{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// Add starts a proxy on listen ("127.0.0.1:0" picks a port) to upstream.
func (n *Net) Add(name, listen, upstream string) (*Link, error) {
	p := toxiproxy.NewProxy(n.srv, name, listen, upstream)
	nop := zerolog.Nop()
	p.Logger = &nop
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("proxy %s on %s: %w", name, listen, err)
	}
	l := &Link{Name: name, Listen: p.Listen, Upstream: upstream, p: p}
	n.mu.Lock()
	n.links = append(n.links, l)
	n.mu.Unlock()
	return l, nil
}

// Links returns every link.
func (n *Net) Links() []*Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Link(nil), n.links...)
}

// Close stops every proxy.
func (n *Net) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.links {
		l.mu.Lock()
		l.p.Stop()
		l.mu.Unlock()
	}
}

// Cut cuts the link in both directions. Cutting a cut link does nothing.
func (l *Link) Cut(mode CutMode) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut != "" {
		return nil
	}
	switch mode {
	case Refuse:
		l.p.Stop()
	case Blackhole:
		for _, dir := range []string{"upstream", "downstream"} {
			// A timeout toxic of 0 drops every byte and never closes.
			spec := fmt.Sprintf(`{"name":"blackhole_%s","type":"timeout","stream":%q,"attributes":{"timeout":0}}`, dir, dir)
			if _, err := l.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
				return fmt.Errorf("blackhole %s %s: %w", l.Name, dir, err)
			}
		}
	default:
		return fmt.Errorf("cut %s: unknown mode %q", l.Name, mode)
	}
	l.cut = mode
	return nil
}

// Heal restores a cut link.
func (l *Link) Heal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.cut {
	case "":
		return nil
	case Blackhole:
		// Close the connections that lived through the cut first, then
		// let bytes through again.
		l.p.Stop()
		l.p.Toxics.ResetToxics(context.Background())
	}
	if err := l.p.Start(); err != nil {
		return fmt.Errorf("heal %s: %w", l.Name, err)
	}
	l.cut = ""
	return nil
}

// IsCut reports whether the link is cut.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut != ""
}
