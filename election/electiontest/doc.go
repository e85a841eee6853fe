// Package electiontest is an in-memory election for unit tests of code that
// uses election.Elector, such as the proxy's role logic.
//
// A Fake is one group's bucket: the leader key, the member directory and
// the ISR, with revisions from one counter as in a JetStream stream, and a
// clock that moves only by Advance. Each node gets its own Elector from it:
//
//	f := electiontest.New(3 * time.Second)
//	n1, n2 := f.Elector(), f.Elector()
//	l, _ := n1.Campaign(ctx, election.LeaderInfo{Node: "n1"})
//	f.Advance(10 * time.Second)  // renewed every TTL/4 on the way: still held
//	f.Pause(l)                   // the holder stops renewing, as if paused
//	f.Advance(3 * time.Second)   // l is lost (ErrLeaseExpired), the key expires
//	l2, _ := n2.Campaign(ctx, election.LeaderInfo{Node: "n2"}) // ServeAt = Now + TTL
//
// The fake follows the NATS elector's rules: a lease's fence deadline is the
// time of its last renewal + TTL − election.FenceMargin, the key expires one
// TTL after its last write, member records expire one TTL after they were
// published, and the ISR never expires. A new leader serves one TTL after
// winning unless the previous one released: the real elector's rule for a
// candidate that did not see the holder's last renewal (one that did often
// serves at once), and the conservative case for tests of role logic.
// Leases are renewed at every RenewInterval step of Advance unless paused or
// the fake is down. Valid and the deadlines read the fake clock, not
// time.Now.
package electiontest
