package resp

import "testing"

func TestPatchBlockedClients(t *testing.T) {
	in := appendBulkString(nil, "# Clients\r\nconnected_clients:3\r\nblocked_clients:1\r\ntracking_clients:0\r\n")
	got := patchBlockedClients(in, 12)
	want := appendBulkString(nil, "# Clients\r\nconnected_clients:3\r\nblocked_clients:13\r\ntracking_clients:0\r\n")
	if string(got) != string(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, same := range [][]byte{
		appendBulkString(nil, "# Server\r\nredis_version:7.0.15\r\n"), // no field
		[]byte("-ERR no\r\n"),
		[]byte("$5\r\nab"), // malformed
	} {
		if got := patchBlockedClients(same, 2); string(got) != string(same) {
			t.Fatalf("changed %q into %q", same, got)
		}
	}
	if got := patchBlockedClients(in, 0); string(got) != string(in) {
		t.Fatal("changed a reply with nothing parked")
	}
}
