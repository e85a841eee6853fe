package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/replicar/replicar/proxy"
)

// groupStatus is `replicar status --json`: the group as one node sees it.
type groupStatus struct {
	Group  string         `json:"group"`
	Leader string         `json:"leader"`
	Epoch  uint64         `json:"epoch"`
	Nodes  []proxy.Status `json:"nodes"`
}

// cmdStatus asks one node's HTTP address for /status and prints the group:
// the node itself and, on a leader, each follower as the leader sees it.
// Until the member directory exists (NATS), followers are known only through
// their leader.
func cmdStatus(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replicar status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "HTTP address of a node (default REPLICAR_HTTP_LISTEN)")
	watch := fs.Bool("watch", false, "refresh every second until interrupted")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return exitUsage
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
		if err != nil {
			fmt.Fprintf(stderr, "replicar: status: %v\n", err)
			return exitFailure
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(gs)
		} else {
			if *watch {
				fmt.Fprint(stdout, "\x1b[H\x1b[2J")
			}
			printGroup(stdout, gs)
		}
		if !*watch {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(time.Second):
		}
	}
}

func fetchGroup(ctx context.Context, addr string) (groupStatus, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/status", nil)
	if err != nil {
		return groupStatus{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return groupStatus{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return groupStatus{}, fmt.Errorf("GET %s/status: %s", addr, res.Status)
	}
	var st proxy.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return groupStatus{}, fmt.Errorf("decode /status: %w", err)
	}
	gs := groupStatus{Group: st.Group, Leader: st.Leader, Epoch: st.Epoch, Nodes: []proxy.Status{st}}
	for _, f := range st.Followers {
		state := "connecting"
		if f.Connected {
			state = "streaming"
		}
		isr := []string{}
		if f.InSync {
			isr = st.ISR
		}
		gs.Nodes = append(gs.Nodes, proxy.Status{Node: f.Node, Group: st.Group, Protocol: st.Protocol,
			Role: "follower", State: state, Epoch: st.Epoch, Leader: st.Leader, LeaderAddr: st.LeaderAddr,
			Applied: f.Acked, Committed: st.Committed, ISR: isr, Followers: []proxy.FollowerStatus{}})
	}
	return gs, nil
}

func printGroup(w io.Writer, gs groupStatus) {
	fmt.Fprintf(w, "group %s, leader %s, epoch %d\n\n", gs.Group, gs.Leader, gs.Epoch)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSTATE\tEPOCH\tAPPLIED\tLAG\tISR\tHEALTH")
	lead := gs.Nodes[0]
	inISR := map[string]bool{}
	for _, n := range lead.ISR {
		inISR[n] = true
	}
	lag := map[string]string{}
	for _, f := range lead.Followers {
		lag[f.Node] = fmt.Sprintf("%d (%.1fs)", f.LagEntries, f.LagSeconds)
	}
	for _, n := range gs.Nodes {
		health := "ok"
		if n.Role == "leader" && !n.BackendUp {
			health = "backend down"
		} else if n.State != "streaming" {
			health = n.State
		}
		l := lag[n.Node]
		if l == "" {
			l = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%t\t%s\n", n.Node, n.Role, n.State, n.Epoch, n.Applied, l, inISR[n.Node], health)
	}
	tw.Flush()
}
