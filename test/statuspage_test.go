package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/replicar/replicar/test/harness"
)

// pageRow is one row of the status page's node table, as the browser
// renders it.
type pageRow struct {
	Node   string `json:"node"`
	Role   string `json:"role"`
	Health string `json:"health"`
	ISR    string `json:"isr"`
}

// pageView is what the test reads off the page.
type pageView struct {
	Rows      []pageRow `json:"rows"`
	Leader    string    `json:"leader"`
	Polls     string    `json:"polls"`
	LagSeries []string  `json:"lagSeries"`
	Rates     []string  `json:"rates"`
	Events    []string  `json:"events"`
}

const readPage = `({
	rows: [...document.querySelectorAll('#nodes tbody tr')].map(tr => ({
		node: tr.dataset.node, role: tr.dataset.role, health: tr.dataset.health,
		isr: tr.querySelector('td.isr').textContent})),
	leader: document.getElementById('leader').textContent,
	polls: document.body.dataset.polls || "0",
	lagSeries: [...document.querySelectorAll('#lag-legend li')].map(li => li.dataset.series),
	rates: [...document.querySelectorAll('#rate-legend li')].map(li => li.textContent),
	events: [...document.querySelectorAll('#events li')].map(li => li.textContent),
})`

// The status page, served by a follower and rendered by headless Chromium,
// shows the three nodes with their roles, the followers' lag and the write
// rate; after the leader is killed it shows another node leading and the
// old leader gone, without a reload.
func TestStatusPageShowsFailover(t *testing.T) {
	harness.Require(t, "chromium")
	browser, err := harness.LookPath("chromium")
	if err != nil {
		t.Fatal(err)
	}
	g := startProcGroup(t, 3, map[string]string{"REPLICAR_ACK_POLICY": "quorum"})
	leader := g.waitLeader(t, 20*time.Second)
	watcher := (leader + 1) % 3 // a follower serves the page: it outlives the leader
	oldLeader := g.nodes[leader].Node

	// A light workload through the watcher, so that the rates move.
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	c := g.client(t, watcher)
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			if c.Set(context.Background(), fmt.Sprintf("k%d", i%100), i, 0).Err() != nil {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 50*time.Second)
	defer cancelTimeout()

	url := "http://" + g.nodes[watcher].HTTP + "/"
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#nodes"))); err != nil {
		t.Fatalf("load %s in chromium: %v", url, err)
	}
	t.Logf("page loaded in %v", time.Since(start).Round(time.Millisecond))

	var view pageView
	wait := func(what string, timeout time.Duration, ok func(pageView) bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			var err error
			if view, err = chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage)); err != nil {
				t.Fatalf("read the page: %v", err)
			}
			if ok(view) {
				return
			}
			if time.Now().After(deadline) {
				shot(t, ctx)
				t.Fatalf("the page did not show %s within %v: %+v", what, timeout, view)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	roles := func(v pageView) map[string]string {
		m := map[string]string{}
		for _, r := range v.Rows {
			m[r.Node] = r.Role
		}
		return m
	}

	wait("three nodes, one leader, two followers in the ISR, lag and write rate", 15*time.Second, func(v pageView) bool {
		r := roles(v)
		followers := 0
		for _, row := range v.Rows {
			if row.Role == "follower" && row.ISR == "yes" && row.Health == "ok" {
				followers++
			}
		}
		moving := len(v.Rates) == 2
		for _, rate := range v.Rates { // "acks/s: 213", "writes/s: 213"
			moving = moving && !strings.HasSuffix(rate, ": 0") && !strings.HasSuffix(rate, ": –")
		}
		return len(v.Rows) == 3 && r[oldLeader] == "leader" && followers == 2 && v.Leader == oldLeader &&
			len(v.LagSeries) == 2 && moving
	})
	t.Logf("before: %+v; rates %v", view.Rows, view.Rates)
	shotTo(t, ctx, os.Getenv("REPLICAR_STATUSPAGE_SHOT_BEFORE"))

	killed := time.Now()
	if err := g.nodes[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	wait("another node leading and the old leader no longer up", 20*time.Second, func(v pageView) bool {
		r := roles(v)
		newLeader := ""
		for node, role := range r {
			if role == "leader" && node != oldLeader {
				newLeader = node
			}
		}
		oldGone := true
		for _, row := range v.Rows {
			if row.Node == oldLeader {
				oldGone = row.Health == "unreachable" || row.Health == "down" || row.Health == "gone"
			}
		}
		return newLeader != "" && v.Leader == newLeader && oldGone
	})
	t.Logf("the page showed the failover %v after the kill: %+v", time.Since(killed).Round(time.Millisecond), view.Rows)
	if !strings.Contains(strings.Join(view.Events, "\n"), "→ leader") {
		t.Errorf("no role change in the page's events: %q", view.Events)
	}
	shotTo(t, ctx, os.Getenv("REPLICAR_STATUSPAGE_SHOT_AFTER"))
}

// shot saves a screenshot of a page that failed its check, outside the
// test's temporary directory so that it outlives the test.
func shot(t *testing.T, ctx context.Context) {
	f, err := os.CreateTemp("", "replicar-statuspage-*.png")
	if err != nil {
		return
	}
	f.Close()
	if shotTo(t, ctx, f.Name()) {
		t.Logf("screenshot: %s", f.Name())
	}
}

// shotTo saves a screenshot of the page to path (nothing when path is
// empty).
func shotTo(t *testing.T, ctx context.Context, path string) bool {
	if path == "" {
		return false
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot: %v", err)
		return false
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot: %v", err)
		return false
	}
	return true
}
