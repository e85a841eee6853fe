package election_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/replicar/replicar/election"
)

func TestOptionsValidate(t *testing.T) {
	good := election.Options{URL: "nats://127.0.0.1:4222", Group: "g", TTL: 3 * time.Second, Replicas: 3}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		change func(*election.Options)
		want   string
	}{
		{func(o *election.Options) { o.URL = "" }, "nats url"},
		{func(o *election.Options) { o.Group = "a b" }, "group"},
		{func(o *election.Options) { o.Group = "" }, "group"},
		{func(o *election.Options) { o.TTL = 500 * time.Millisecond }, "lease ttl"},
		{func(o *election.Options) { o.Replicas = 2 }, "replicas"},
	} {
		o := good
		tc.change(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error about %s", o, err, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, g := range []string{"default", "a.b", "A-1_x"} {
		if err := election.CheckGroup(g); err != nil {
			t.Errorf("group %q: %v", g, err)
		}
	}
	for _, g := range []string{"", "a b", "a/b", "a*", "a>"} {
		if err := election.CheckGroup(g); err == nil {
			t.Errorf("group %q accepted", g)
		}
	}
	if got := election.BucketName("shop.eu-1"); got != "replicar_shop_eu-1" {
		t.Errorf("bucket %q", got)
	}
	for _, n := range []string{"n1", "db-1.example.com", "a=b_c"} {
		if err := election.CheckNode(n); err != nil {
			t.Errorf("node %q: %v", n, err)
		}
	}
	for _, n := range []string{"", ".n1", "n1.", "a..b", "a b", "a*", "a>", "a/b"} {
		if err := election.CheckNode(n); err == nil {
			t.Errorf("node %q accepted", n)
		}
	}
}

func TestTiming(t *testing.T) {
	if got := election.FenceMargin(3 * time.Second); got != 300*time.Millisecond {
		t.Errorf("margin(3s) = %s", got)
	}
	if got := election.FenceMargin(time.Second); got != 100*time.Millisecond {
		t.Errorf("margin(1s) = %s", got)
	}
	if got := election.RenewInterval(3 * time.Second); got != 750*time.Millisecond {
		t.Errorf("renew(3s) = %s", got)
	}
	if got := election.HeartbeatInterval(3 * time.Second); got != time.Second {
		t.Errorf("heartbeat(3s) = %s", got)
	}
}

func TestIsConflict(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("timeout"), false},
		{context.DeadlineExceeded, false},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence: 4"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}, true},
		{fmt.Errorf("publish: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}), true},
		{jetstream.ErrKeyExists, true},
		{fmt.Errorf("update: %w", jetstream.ErrKeyRevisionMismatch), true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled}, false},
	} {
		if got := election.IsConflict(tc.err); got != tc.want {
			t.Errorf("isConflict(%v) = %v", tc.err, got)
		}
	}
}

func TestMsgOp(t *testing.T) {
	h := func(kv ...string) nats.Header {
		out := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		h    nats.Header
		want jetstream.KeyValueOp
	}{
		{nil, jetstream.KeyValuePut},
		{h("Nats-Expected-Last-Subject-Sequence", "3"), jetstream.KeyValuePut},
		{h("KV-Operation", "DEL"), jetstream.KeyValueDelete},
		{h("KV-Operation", "DEL", "Replicar-Released", "7"), jetstream.KeyValueDelete},
		{h("KV-Operation", "PURGE"), jetstream.KeyValuePurge},
		{h("Nats-Marker-Reason", "MaxAge"), jetstream.KeyValuePurge},
		{h("Nats-Marker-Reason", "Purge"), jetstream.KeyValuePurge},
		{h("Nats-Marker-Reason", "Remove"), jetstream.KeyValueDelete},
	} {
		if got := election.MsgOp(tc.h); got != tc.want {
			t.Errorf("op(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestValueHelpers(t *testing.T) {
	if (election.LeaderInfo{}).Held() || !(election.LeaderInfo{Node: "n1"}).Held() {
		t.Error("Held")
	}
	isr := election.ISR{Members: []string{"n1", "n2"}}
	if !isr.Contains("n2") || isr.Contains("n3") {
		t.Error("Contains")
	}
	stored := time.Unix(100, 0)
	if got := (election.Member{Stored: stored, Updated: 5}).When(); !got.Equal(stored) {
		t.Errorf("When with Stored: %s", got)
	}
	if got := (election.Member{Updated: 5000}).When(); !got.Equal(time.UnixMilli(5000)) {
		t.Errorf("When with Updated: %s", got)
	}
	if got := (election.Member{}).When(); !got.IsZero() {
		t.Errorf("When of nothing: %s", got)
	}
}

func TestRedactURLs(t *testing.T) {
	got := election.RedactURLs("nats://u:secret@h1:4222, nats://h2:4222,nats://tok@h3:4222")
	if strings.Contains(got, "secret") || !strings.Contains(got, "h2:4222") || !strings.Contains(got, "h1:4222") {
		t.Fatalf("redacted: %q", got)
	}
}

func TestNewNATSUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = election.NewNATS(ctx, election.Options{URL: "nats://" + addr, Group: "g", TTL: time.Second, Logger: testLogger(t)})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := election.StartEmbedded(ctx, election.EmbeddedOptions{Listen: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if !strings.HasPrefix(e.URL(), "nats://127.0.0.1:") || strings.HasSuffix(e.URL(), ":0") {
		t.Fatalf("url %q", e.URL())
	}
	storeDir := e.StoreDir()
	if _, err := os.Stat(storeDir); err != nil {
		t.Fatal(err)
	}

	// A second server on the same address fails at once.
	addr := strings.TrimPrefix(e.URL(), "nats://")
	start := time.Now()
	_, err = election.StartEmbedded(ctx, election.EmbeddedOptions{Listen: addr, Logger: testLogger(t)})
	if err == nil {
		t.Fatal("second server on the same address started")
	}
	t.Logf("second server: %v (%s)", err, time.Since(start).Round(time.Millisecond))
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s to fail", time.Since(start))
	}

	for _, bad := range []string{"nohost", "127.0.0.1:x", "127.0.0.1:70000"} {
		if _, err := election.StartEmbedded(ctx, election.EmbeddedOptions{Listen: bad}); err == nil {
			t.Errorf("listen %q accepted", bad)
		}
	}

	el, err := election.NewNATS(ctx, election.Options{URL: e.URL(), Group: "embedded", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if el.TTL() != election.DefaultTTL || el.Bucket() != "replicar_embedded" {
		t.Fatalf("ttl %s bucket %s", el.TTL(), el.Bucket())
	}
	if err := el.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := el.Campaign(ctx, election.LeaderInfo{Node: "n1"}); !errors.Is(err, election.ErrClosed) {
		t.Fatalf("campaign after close: %v", err)
	}
	e.Shutdown()
	e.Shutdown() // idempotent
	if _, err := os.Stat(storeDir); !os.IsNotExist(err) {
		t.Fatalf("temporary store dir %s not removed: %v", storeDir, err)
	}
}
