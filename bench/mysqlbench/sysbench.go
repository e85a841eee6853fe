package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// endpoint is where sysbench connects: a mariadbd or a replicar client
// port, with the account to log in with.
type endpoint struct {
	addr, user, password string
}

// sbParams are the sysbench settings shared by every run.
type sbParams struct {
	binary          string
	threads         int
	tables, rows    int
	duration        time.Duration
	prepareThreads  int
	db              string
	extraRunOptions []string
}

func (p sbParams) args(workload string, ep endpoint, threads int) ([]string, error) {
	host, port, ok := strings.Cut(ep.addr, ":")
	if !ok {
		return nil, fmt.Errorf("address %q has no port", ep.addr)
	}
	return []string{workload,
		"--db-driver=mysql",
		"--mysql-host=" + host,
		"--mysql-port=" + port,
		"--mysql-user=" + ep.user,
		"--mysql-password=" + ep.password,
		"--mysql-db=" + p.db,
		"--tables=" + strconv.Itoa(p.tables),
		"--table-size=" + strconv.Itoa(p.rows),
		"--threads=" + strconv.Itoa(threads),
	}, nil
}

// prepare creates and fills the tables.
func (p sbParams) prepare(ctx context.Context, workload string, ep endpoint) error {
	args, err := p.args(workload, ep, p.prepareThreads)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.binary, append(args, "prepare")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysbench prepare: %w: %s", err, fatalLines(out))
	}
	return nil
}

// sbResult is what one sysbench run measured.
type sbResult struct {
	tps, p50, p95 float64 // latencies in milliseconds
	transactions  int64
	errors        int64   // the ones sysbench ignored and retried
	cpu           float64 // sysbench's own CPU seconds
}

var (
	reTransactions = regexp.MustCompile(`transactions:\s+(\d+)\s+\(([0-9.]+) per sec\.\)`)
	reIgnored      = regexp.MustCompile(`ignored errors:\s+(\d+)`)
	// A histogram line: value, bar, count.
	reHistogram = regexp.MustCompile(`^\s*([0-9.]+)\s+\|\**\s+(\d+)\s*$`)
)

// run drives the workload for p.duration and parses sysbench's report.
func (p sbParams) run(ctx context.Context, workload string, ep endpoint) (sbResult, error) {
	args, err := p.args(workload, ep, p.threads)
	if err != nil {
		return sbResult{}, err
	}
	args = append(args, "--time="+strconv.Itoa(int(p.duration.Seconds())), "--report-interval=0", "--histogram=on")
	args = append(args, p.extraRunOptions...)
	ctx, cancel := context.WithTimeout(ctx, p.duration+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.binary, append(args, "run")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return sbResult{}, fmt.Errorf("sysbench %s: %w: %s", workload, err, fatalLines(out))
	}
	r, err := parseReport(out)
	r.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return r, err
}

// parseReport reads tps from the transactions line and p50/p95 from the
// latency histogram, so both percentiles come from one source.
func parseReport(out []byte) (sbResult, error) {
	var r sbResult
	m := reTransactions.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("sysbench report has no transactions line: %s", tail(out, 5))
	}
	r.transactions, _ = strconv.ParseInt(string(m[1]), 10, 64)
	r.tps, _ = strconv.ParseFloat(string(m[2]), 64)
	if m := reIgnored.FindSubmatch(out); m != nil {
		r.errors, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	type bucket struct {
		ms    float64
		count int64
	}
	var hist []bucket
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := reHistogram.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err1 := strconv.ParseFloat(m[1], 64)
		c, err2 := strconv.ParseInt(m[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		hist = append(hist, bucket{v, c})
		total += c
	}
	if total == 0 {
		return r, errors.New("sysbench report has no latency histogram")
	}
	slices.SortFunc(hist, func(a, b bucket) int { return cmpFloat(a.ms, b.ms) })
	pct := func(q float64) float64 {
		want := int64(q*float64(total) + 0.5)
		var seen int64
		for _, b := range hist {
			seen += b.count
			if seen >= want {
				return b.ms
			}
		}
		return hist[len(hist)-1].ms
	}
	r.p50, r.p95 = pct(0.50), pct(0.95)
	return r, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fatalLines picks sysbench's FATAL lines (the server's error is in them)
// out of its output, or its last lines when there are none.
func fatalLines(out []byte) string {
	var picked []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.Contains(line, "FATAL") || strings.Contains(line, "error") && !strings.Contains(line, "ignored errors") {
			if !slices.Contains(picked, line) {
				picked = append(picked, strings.TrimSpace(line))
			}
		}
		if len(picked) == 3 {
			break
		}
	}
	if len(picked) == 0 {
		return tail(out, 3)
	}
	return strings.Join(picked, " | ")
}

func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
