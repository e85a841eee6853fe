package election

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestRenewalObserver(t *testing.T) {
	ctx := context.Background()
	o := newRenewalObserver()
	// A watch that starts with the key removed knows no renewal.
	o.observe(3, jetstream.KeyValuePurge, 10*time.Millisecond)
	if _, ok := o.lastRenewalBefore(ctx, 3, 0); ok {
		t.Fatal("removal seen first: want no renewal known")
	}
	// Create, two renewals, an expiry: the last renewal counts.
	o.observe(4, jetstream.KeyValuePut, 100*time.Millisecond)
	o.observe(6, jetstream.KeyValuePut, 200*time.Millisecond)
	o.observe(7, jetstream.KeyValuePut, 300*time.Millisecond)
	o.observe(9, jetstream.KeyValuePurge, 2*time.Second)
	if at, ok := o.lastRenewalBefore(ctx, 9, 0); !ok || at != 300*time.Millisecond {
		t.Fatalf("before 9: %s %v, want 300ms", at, ok)
	}
	// An old or repeated revision changes nothing.
	o.observe(7, jetstream.KeyValuePut, 5*time.Second)
	if at, _ := o.lastRenewalBefore(ctx, 9, 0); at != 300*time.Millisecond {
		t.Fatalf("after a replay: %s", at)
	}
	// A second removal with no put in between has no renewal before it.
	o.observe(10, jetstream.KeyValueDelete, 3*time.Second)
	if _, ok := o.lastRenewalBefore(ctx, 10, 0); ok {
		t.Fatal("removal after a removal: want no renewal known")
	}
	// A campaign that read a removal the watch has not delivered yet waits
	// for it.
	go func() {
		time.Sleep(20 * time.Millisecond)
		o.observe(12, jetstream.KeyValuePut, 4*time.Second)
		o.observe(14, jetstream.KeyValueDelete, 6*time.Second)
	}()
	if at, ok := o.lastRenewalBefore(ctx, 14, time.Second); !ok || at != 4*time.Second {
		t.Fatalf("before 14: %s %v, want 4s", at, ok)
	}
	// One it never delivers is unknown once the wait is over.
	if _, ok := o.lastRenewalBefore(ctx, 20, 10*time.Millisecond); ok {
		t.Fatal("undelivered removal: want no renewal known")
	}
	// Only the newest removals are kept.
	for i := range uint64(2 * maxRemovals) {
		o.observe(100+2*i, jetstream.KeyValuePut, time.Duration(i)*time.Second)
		o.observe(101+2*i, jetstream.KeyValuePurge, time.Duration(i)*time.Second)
	}
	if len(o.removals) != maxRemovals {
		t.Fatalf("%d removals kept, want %d", len(o.removals), maxRemovals)
	}
	if _, ok := o.lastRenewalBefore(ctx, 101, 0); ok {
		t.Fatal("oldest removal still kept")
	}
}
