package election

// Test hooks into the NATS lease.

func setPaused(l Leadership, paused bool) {
	nl := l.(*natsLease)
	req := pauseRequest{paused: paused, ack: make(chan struct{})}
	select {
	case nl.pause <- req:
		<-req.ack
	case <-nl.done:
	}
}

// PauseRenewals stops a NATS lease's renew loop from renewing, as a paused
// process would, and returns once no renewal is in flight, so Deadline no
// longer moves.
func PauseRenewals(l Leadership) { setPaused(l, true) }

// ResumeRenewals undoes PauseRenewals; the next renewal is sent at once.
func ResumeRenewals(l Leadership) { setPaused(l, false) }

// SetRevision makes the lease renew from rev next, as if it had missed the
// answer to its latest renewal. Call it while renewals are paused.
func SetRevision(l Leadership, rev uint64) {
	nl := l.(*natsLease)
	nl.mu.Lock()
	nl.rev = rev
	nl.mu.Unlock()
}

// Revision is the revision the lease renews from.
func Revision(l Leadership) uint64 { return l.(*natsLease).revision() }

// Adoptions counts the renewals the lease found stored after a conflict.
func Adoptions(l Leadership) int64 { return l.(*natsLease).adoptions.Load() }

var (
	IsConflict = isConflict
	MsgOp      = msgOp
	RedactURLs = redactURLs
)
