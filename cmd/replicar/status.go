package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/replicar/replicar/proxy"
)

// watchEvery is how often `replicar status --watch` refreshes.
const watchEvery = time.Second

// cmdStatus asks one node's HTTP address for the group (GET /group) and
// prints every member: the node asks the member directory in NATS who is
// in the group and each member for its /status, and adds the leader's view
// of its followers, so followers that are disconnected (or dead, while
// the leader still tracks them) and routers are listed too. A node that
// predates /group is asked for /status, which shows it and, on a leader,
// its followers.
func cmdStatus(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replicar status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "HTTP address of a node (default REPLICAR_HTTP_LISTEN)")
	watch := fs.Bool("watch", false, "refresh every second until interrupted")
	asJSON := fs.Bool("json", false, `print JSON: {"group","leader","epoch","nodes":[<status>…]}`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "status takes no arguments besides --addr, --watch and --json")
	}
	if *addr == "" {
		cfg, _, ok := loadOrReport(environ, stderr, false)
		if !ok {
			return exitUsage
		}
		*addr = cfg.HTTPListen
	}
	for {
		gs, err := fetchGroup(ctx, *addr)
		switch {
		case err != nil && !*watch:
			fmt.Fprintf(stderr, "replicar: status: %v\n", err)
			return exitFailure
		case err != nil:
			// Watching through a failover: the node asked may be the
			// one that died; say so and keep asking.
			if !*asJSON {
				fmt.Fprint(stdout, "\x1b[H\x1b[2J")
			}
			fmt.Fprintf(stdout, "%s  replicar: status: %v\n", time.Now().Format("15:04:05"), err)
		case *asJSON:
			enc := json.NewEncoder(stdout)
			if !*watch {
				enc.SetIndent("", "  ")
			}
			enc.Encode(gs)
		default:
			if *watch {
				fmt.Fprint(stdout, "\x1b[H\x1b[2J")
				fmt.Fprintf(stdout, "%s  every %v, Ctrl-C to stop\n", time.Now().Format("15:04:05"), watchEvery)
			}
			printGroup(stdout, gs)
		}
		if !*watch {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(watchEvery):
		}
	}
}

// fetchGroup asks addr for /group, or for /status when the node does not
// serve /group (404).
func fetchGroup(ctx context.Context, addr string) (proxy.GroupStatus, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	var gs proxy.GroupStatus
	found, err := getJSON(ctx, addr+"/group", &gs)
	if err != nil || found {
		return gs, err
	}
	var st proxy.Status
	if found, err = getJSON(ctx, addr+"/status", &st); err != nil {
		return gs, err
	} else if !found {
		return gs, fmt.Errorf("GET %s/status: 404 Not Found", addr)
	}
	return proxy.AssembleGroup(st, nil, nil), nil
}

// getJSON decodes url's body into v; found is false on a 404.
func getJSON(ctx context.Context, url string, v any) (found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		return false, fmt.Errorf("decode %s: %w", url, err)
	}
	return true, nil
}

// printGroup prints the group as a table, one row per member.
func printGroup(w io.Writer, gs proxy.GroupStatus) {
	leader := gs.Leader
	if leader == "" {
		leader = "none (election)"
	}
	fmt.Fprintf(w, "group %s, leader %s, epoch %d (asked %s)\n", gs.Group, leader, gs.Epoch, gs.Asked)
	if gs.Error != "" {
		fmt.Fprintf(w, "partial view: %s\n", gs.Error)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSTATE\tEPOCH\tOFFSET\tAPPLIED\tLAG\tISR\tHEALTH")
	for _, n := range gs.Nodes {
		offset, applied, lag := fmt.Sprint(n.Offset), fmt.Sprint(n.Applied), "-"
		if n.Role == "router" {
			offset, applied = "-", "-"
		}
		if n.Role == proxy.RoleFollower && gs.Leader != "" {
			lag = fmt.Sprintf("%d (%s, %.2fs)", n.LagEntries, byteSize(n.LagBytes), n.LagSeconds)
		}
		if !n.Reachable {
			offset = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", n.Node, n.Role, n.State, n.Epoch, offset, applied, lag, yesNo(n.InISR), n.Health)
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// byteSize prints n bytes in B, KiB, MiB or GiB.
func byteSize(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
}
