package fanout

import (
	"testing"
	"time"
)

// TestTrackerLagRingEviction runs long enough to overflow the sample ring and
// checks that lag is never understated for a follower whose first missing
// entry has left the ring, and is exact again once the ring covers it.
func TestTrackerLagRingEviction(t *testing.T) {
	base := time.Unix(0, 0)
	tr := NewTracker(Config{Leader: "n1", MaxLag: 10 * time.Second, LagResolution: 100 * time.Millisecond}, 0, base)
	tr.Connected("n2", 0, base)
	// Entry i is appended at i×100ms: one sample each, 300 > samplesCap.
	for i := uint64(1); i <= 300; i++ {
		tr.Appended(i, base.Add(time.Duration(i)*100*time.Millisecond))
	}
	if len(tr.samples) != samplesCap {
		t.Fatalf("ring holds %d samples", len(tr.samples))
	}
	now := base.Add(30 * time.Second)
	if err := tr.Sent("n2", 300, 1); err != nil {
		t.Fatal(err)
	}
	// Entry 11 (appended at 1.1s) is long gone from the ring: the bound
	// from entry 1 (0.1s) stays, overstating by 1s rather than understating.
	if err := tr.Ack("n2", 10, now); err != nil {
		t.Fatal(err)
	}
	if got := tr.Followers(now)[0].LagSeconds; got < 28.9 || got > 29.9+1e-9 {
		t.Fatalf("lag %.3f, want within [28.9, 29.9]", got)
	}
	// Entry 291 is in the ring: exact.
	if err := tr.Ack("n2", 290, now); err != nil {
		t.Fatal(err)
	}
	if got := tr.Followers(now)[0].LagSeconds; got != 0.9 {
		t.Fatalf("lag %.3f, want 0.900", got)
	}
}
