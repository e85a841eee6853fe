package resp

import "testing"

func TestLoopbackForWildcard(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:6380":   "127.0.0.1:6380",
		":6380":          "127.0.0.1:6380",
		"[::]:6380":      "[::1]:6380",
		"10.0.0.5:6380":  "10.0.0.5:6380",
		"node1:6380":     "node1:6380",
		"127.0.0.1:6380": "127.0.0.1:6380",
		"junk":           "junk",
	} {
		if got := loopbackForWildcard(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}
