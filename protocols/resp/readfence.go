package resp

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Read fencing. The primary applies a write before the ack policy commits
// it, so a read on another connection can see a write that a failover
// then loses: a client would have read a value the group went back on,
// which no linearizable register allows. Under READ_POLICY=leader a read's
// reply is therefore held, as a write's is, until everything it could have
// seen is committed: every write sent to the primary before the read's
// reply arrived has been answered and logged, and the log is committed up
// to its end. Without concurrent writes that is already true and costs
// nothing; with them a read waits about one commit, which is the price of
// the read being linearizable (Raft's ReadIndex pays it the same way).

// writeSeq counts the writes the ordered writer has sent to the primary and
// those it has finished with (answered and logged, or failed).
type writeSeq struct {
	sent, done atomic.Uint64
	waiters    atomic.Int64
	mu         sync.Mutex
	changed    chan struct{}
}

// finished records n writes finished and wakes waiting reads.
func (w *writeSeq) finished(n uint64) {
	w.done.Add(n)
	if w.waiters.Load() == 0 {
		return
	}
	w.mu.Lock()
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
	w.mu.Unlock()
}

// waitDone blocks until at least n writes have finished or ctx ends.
func (w *writeSeq) waitDone(ctx context.Context, n uint64) error {
	if w.done.Load() >= n {
		return nil
	}
	w.waiters.Add(1)
	defer w.waiters.Add(-1)
	for {
		w.mu.Lock()
		if w.changed == nil {
			w.changed = make(chan struct{})
		}
		ch := w.changed
		w.mu.Unlock()
		if w.done.Load() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// countWrites is the number of steps of j that write on the primary.
func countWrites(j *job) uint64 {
	n := uint64(0)
	for i := range j.steps {
		switch j.steps[i].kind {
		case stepWrite, stepTx, stepAbsentDel:
			n++
		}
	}
	if j.exclusive != nil && j.writes > 0 {
		n++
	}
	return n
}

// hasReads says whether j carries a read whose reply needs fencing. A
// MULTI … EXEC counts whatever it holds: its replies show the keys as the
// primary had them, and one with no logged write would otherwise go out
// at once, showing writes that are not committed.
func hasReads(j *job) bool {
	for i := range j.steps {
		switch st := &j.steps[i]; {
		case st.kind == stepRead && !st.anyDB, st.kind == stepTx:
			return true
		}
	}
	return false
}

// readFencing says whether reads are fenced now: on a leader serving
// READ_POLICY=leader reads from its primary.
func (s *Server) readFencing() bool {
	if s.Router() {
		return false
	}
	rt := s.route.load()
	return rt.Mode == RouteLocal && !rt.LocalReads
}

// fenceRead holds a read's reply until every write it could have seen is
// committed; it returns the reason when that cannot be.
func (s *Server) fenceRead(ctx context.Context, j *job) error {
	if err := s.wseq.waitDone(ctx, j.readFence); err != nil {
		return err
	}
	return s.core.WaitReadable(ctx)
}

// patchBlockedClients makes an INFO reply count the clients parked in the
// proxy: the backend never sees them block (the proxy probes with the
// non-blocking command), so its own blocked_clients is 0 for them, and
// tools (and Redis's tests) that wait for a client to block would wait
// forever. reply is the whole bulk reply; it returns the patched one.
func patchBlockedClients(reply []byte, parked int64) []byte {
	if parked <= 0 || len(reply) < 4 || reply[0] != '$' {
		return reply
	}
	v, _, err := ParseValue(reply)
	if err != nil || v.Kind != Bulk {
		return reply
	}
	body := string(v.Str)
	const field = "blocked_clients:"
	i := strings.Index(body, field)
	if i < 0 {
		return reply
	}
	j := i + len(field)
	k := j
	for k < len(body) && body[k] >= '0' && body[k] <= '9' {
		k++
	}
	n, err := strconv.ParseInt(body[j:k], 10, 64)
	if err != nil {
		return reply
	}
	body = body[:j] + strconv.FormatInt(n+parked, 10) + body[k:]
	return appendBulkString(nil, body)
}
