package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/replicar/replicar/proxy"
)

// baseEnv keeps the tests independent of the machine's hostname.
var baseEnv = []string{"PATH=/usr/bin", "HOME=/nonexistent", "REPLICAR_NODE_ID=n1"}

func env(extra ...string) []string { return append(append([]string(nil), baseEnv...), extra...) }

func runCmd(t *testing.T, ctx context.Context, environ []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runMain(ctx, args, environ, &out, &errOut)
	return code, out.String(), errOut.String()
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestVersion(t *testing.T) {
	code, out, errOut := runCmd(t, context.Background(), env(), "version")
	if code != exitOK || errOut != "" || !strings.HasPrefix(out, "replicar dev (commit ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: code %d, stdout %q, stderr %q", code, out, errOut)
	}

	old := commit
	commit = "abc123"
	defer func() { commit = old }()
	if _, out, _ := runCmd(t, context.Background(), env(), "version"); !strings.Contains(out, "commit abc123,") {
		t.Errorf("ldflags commit not shown: %q", out)
	}

	if code, _, _ := runCmd(t, context.Background(), env(), "version", "--json"); code != exitUsage {
		t.Errorf("version with an argument exited %d", code)
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		code, out, errOut := runCmd(t, context.Background(), env(), arg)
		if code != exitOK || errOut != "" || !strings.HasPrefix(out, "Usage: replicar") || !strings.Contains(out, "REPLICAR_ACK_POLICY") {
			t.Errorf("%s: code %d, stderr %q, stdout %q", arg, code, errOut, out)
		}
	}
	for _, arg := range []string{"frobnicate", "--json"} {
		code, out, errOut := runCmd(t, context.Background(), env(), arg)
		if code != exitUsage || out != "" || !strings.HasPrefix(errOut, "replicar: unknown command \""+arg+"\"\n") || !strings.Contains(errOut, "Usage: replicar") {
			t.Errorf("%s: code %d, stdout %q, stderr %q", arg, code, out, errOut)
		}
	}
}

func TestConfigPrintsEffectiveMaskedConfig(t *testing.T) {
	code, out, errOut := runCmd(t, context.Background(), env(
		"REPLICAR_PROTOCOL=mysql",
		"REPLICAR_ACK_POLICY=ALL",
		"REPLICAR_MIN_INSYNC=2",
		"REPLICAR_PASSWORD=hunter2",
		"REPLICAR_NATS_URL=nats://admin:hunter2@n1:4222",
		"REPLICAR_BACKLOG_BYTES=1gib",
		"REPLICAR_DATA_DIR=", // empty counts as unset
	), "config")
	if code != exitOK || errOut != "" {
		t.Fatalf("config: code %d, stderr %q", code, errOut)
	}
	got := lines(out)
	vars := proxy.Vars()
	if len(got) != len(vars) {
		t.Fatalf("config printed %d lines, want %d:\n%s", len(got), len(vars), out)
	}
	for i, v := range vars {
		if !strings.HasPrefix(got[i], v.Env()+"=") {
			t.Errorf("line %d is %q, want %s=… (contract order)", i, got[i], v.Env())
		}
	}
	for _, want := range []string{
		"REPLICAR_PROTOCOL=mysql", "REPLICAR_LISTEN=127.0.0.1:3307", "REPLICAR_USER=root",
		"REPLICAR_BACKEND_USER=root", "REPLICAR_ACK_POLICY=all", "REPLICAR_MIN_INSYNC=2",
		"REPLICAR_PASSWORD=****", "REPLICAR_BACKEND_PASSWORD=", "REPLICAR_NATS_URL=nats://****@n1:4222",
		"REPLICAR_BACKLOG_BYTES=1gb", "REPLICAR_DATA_DIR=", "REPLICAR_NODE_ID=n1",
	} {
		if !strings.Contains("\n"+out, "\n"+want+"\n") {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("config output leaks a secret:\n%s", out)
	}
}

func TestConfigJSON(t *testing.T) {
	code, out, errOut := runCmd(t, context.Background(), env("REPLICAR_PASSWORD=hunter2"), "config", "--json")
	if code != exitOK || errOut != "" {
		t.Fatalf("config --json: code %d, stderr %q", code, errOut)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("config --json is not a JSON object of strings: %v\n%s", err, out)
	}
	if len(m) != len(proxy.Vars()) || m["REPLICAR_PASSWORD"] != "****" || m["REPLICAR_ACK_POLICY"] != "quorum" {
		t.Errorf("config --json = %v", m)
	}
	if code, _, _ := runCmd(t, context.Background(), env(), "config", "--yaml"); code != exitUsage {
		t.Errorf("config --yaml exited %d", code)
	}
}

func TestBadValueIsOneLine(t *testing.T) {
	tests := []struct {
		env, want string
	}{
		{"REPLICAR_FSYNC=sometimes", `replicar: REPLICAR_FSYNC="sometimes": want one of always, everysec, no`},
		{"REPLICAR_ACK_POLICY=quorom", `replicar: REPLICAR_ACK_POLICY="quorom": want one of none, leader, one, quorum, all`},
		{"REPLICAR_PROTOCOL=memcached", `replicar: REPLICAR_PROTOCOL="memcached": want one of redis, mysql`},
		{"REPLICAR_ACK_TIMEOUT=5", `replicar: REPLICAR_ACK_TIMEOUT="5": want a duration such as 500ms, 5s or 1m`},
		{"REPLICAR_BACKLOG_BYTES=1kb", `replicar: REPLICAR_BACKLOG_BYTES="1kb": want a size ≥ 64kb such as 64mb`},
		{"REPLICAR_LISTEN=6380", `replicar: REPLICAR_LISTEN="6380": want host:port such as 127.0.0.1:7380 or :7380 (missing port in address)`},
		{"REPLICAR_READ_POLICY=bounded", `replicar: REPLICAR_MAX_READ_LAG="": want a duration > 0 such as 1s with REPLICAR_READ_POLICY=bounded`},
		{"REPLICAR_TLS_CERT=main_test.go", `replicar: REPLICAR_TLS_KEY="": want the key file of REPLICAR_TLS_CERT (set both or neither)`},
		{"REPLICAR_UNCLEAN_ELECTION=perhaps", `replicar: REPLICAR_UNCLEAN_ELECTION="perhaps": want true or false`},
	}
	for _, tt := range tests {
		for _, cmd := range []string{"", "config"} {
			t.Run(cmd+" "+tt.env, func(t *testing.T) {
				var args []string
				if cmd != "" {
					args = []string{cmd}
				}
				code, out, errOut := runCmd(t, context.Background(), env(tt.env), args...)
				if code != exitUsage || out != "" {
					t.Errorf("code %d, stdout %q; want %d and nothing", code, out, exitUsage)
				}
				if got := lines(errOut); len(got) != 1 || got[0] != tt.want {
					t.Errorf("stderr\n%q\nwant the one line\n%q", errOut, tt.want)
				}
			})
		}
	}
}

func TestSeveralBadValuesOneLineEach(t *testing.T) {
	_, _, errOut := runCmd(t, context.Background(), env(
		"REPLICAR_MYSQL_FORMAT=mixed", "REPLICAR_FSYNC=sometimes", "REPLICAR_ACKS=0", "REPLICAR_LEASE_TTL=1ms",
	), "config")
	want := []string{
		`replicar: REPLICAR_ACKS="0": want a whole number from 1 to 63`,
		`replicar: REPLICAR_LEASE_TTL="1ms": want a duration ≥ 1s`,
		`replicar: REPLICAR_FSYNC="sometimes": want one of always, everysec, no`,
		`replicar: REPLICAR_MYSQL_FORMAT="mixed": want one of row, statement`,
	}
	if got := lines(errOut); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr\n%s\nwant (contract order)\n%s", errOut, strings.Join(want, "\n"))
	}
}

func TestUnknownVariableWarns(t *testing.T) {
	code, out, errOut := runCmd(t, context.Background(), env("REPLICAR_ACK_POLICYY=all", "REPLICAR_ZZZ_SOMETHING=1", "NOT_REPLICAR_X=1"), "config")
	if code != exitOK || out == "" {
		t.Fatalf("unknown variable is fatal: code %d", code)
	}
	want := []string{
		"replicar: warning: unknown variable REPLICAR_ACK_POLICYY is ignored (did you mean REPLICAR_ACK_POLICY?)",
		"replicar: warning: unknown variable REPLICAR_ZZZ_SOMETHING is ignored",
	}
	if got := lines(errOut); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr\n%s\nwant\n%s", errOut, strings.Join(want, "\n"))
	}
	if !strings.Contains(out, "REPLICAR_ACK_POLICY=quorum\n") {
		t.Error("unknown variable was applied")
	}
}

// logLines decodes JSON log output, failing on anything that is not JSON.
func logLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func TestRunLogsMaskedConfigAndStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as if the signal came at once
	code, out, errOut := runCmd(t, ctx, env("REPLICAR_PASSWORD=hunter2", "REPLICAR_GROUP=g1", "REPLICAR_ACKS=3",
		"REPLICAR_BACKEND=127.0.0.1:1", "REPLICAR_LISTEN=127.0.0.1:0", "REPLICAR_REPL_LISTEN=127.0.0.1:0", "REPLICAR_HTTP_LISTEN=127.0.0.1:0"))
	if code != exitOK || out != "" {
		t.Fatalf("run: code %d, stdout %q", code, out)
	}
	if strings.Contains(errOut, "hunter2") {
		t.Errorf("log leaks a secret:\n%s", errOut)
	}
	logs := logLines(t, errOut)
	var msgs []string
	for _, l := range logs {
		msgs = append(msgs, l["message"].(string))
		if l["node"] != "n1" || l["group"] != "g1" || l["time"] == nil {
			t.Errorf("log line lacks node, group or time: %v", l)
		}
	}
	joined := strings.Join(msgs, "\n")
	for _, want := range []string{"REPLICAR_ACKS=3 has no effect", "starting replicar", "shut down", "stopped"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no log message with %q in\n%s", want, joined)
		}
	}
	for _, l := range logs {
		if l["message"] == "starting replicar" {
			cfg, _ := l["config"].(map[string]any)
			if cfg["password"] != "****" || cfg["ack_policy"] != "quorum" || cfg["listen"] != "127.0.0.1:0" {
				t.Errorf("logged config = %v", cfg)
			}
		}
	}
}

func TestRunLogFormatAndLevel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	node := []string{"REPLICAR_BACKEND=127.0.0.1:1", "REPLICAR_LISTEN=127.0.0.1:0", "REPLICAR_REPL_LISTEN=127.0.0.1:0", "REPLICAR_HTTP_LISTEN=127.0.0.1:0"}
	_, _, errOut := runCmd(t, ctx, env(append(node, "REPLICAR_LOG_FORMAT=console")...))
	if strings.HasPrefix(errOut, "{") || !strings.Contains(errOut, "starting replicar") || !strings.Contains(errOut, "node=n1") {
		t.Errorf("console log:\n%s", errOut)
	}
	if strings.Contains(errOut, "\x1b[") {
		t.Errorf("console log to a buffer is colored:\n%q", errOut)
	}
	_, _, errOut = runCmd(t, ctx, env(append(node, "REPLICAR_LOG_LEVEL=error")...))
	if errOut != "" {
		t.Errorf("LOG_LEVEL=error still logs:\n%s", errOut)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "abc", 0}, {"ACK_POLICYY", "ACK_POLICY", 1}, {"FSNYC", "FSYNC", 2}, {"", "abc", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
