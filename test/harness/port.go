package harness

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// handedOut remembers every port this process has given away. The kernel may
// hand the same just-closed port to two callers of FreePort; a server started
// on the first one would then steal it from the second.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may still take it before the caller binds it; the Start helpers
// retry with new ports when a server reports "address already in use".
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return p
}

// FreeAddr returns "127.0.0.1:port" for a port from FreePort.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return loopback(FreePort(t))
}

func freePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[p] {
			handedOut.ports[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("free port: no unused port after 100 tries")
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	return ports, nil
}

func loopback(port int) string {
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// PortFree reports whether nothing listens on addr, by trying to bind it.
func PortFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// addrInUse reports whether a server log says a listen failed because the
// port was taken; redis, mariadbd and nats-server all say it this way.
func addrInUse(log string) bool {
	return strings.Contains(strings.ToLower(log), "address already in use")
}
