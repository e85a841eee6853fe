package resp

import (
	"sync"
	"time"
)

// A job is a run of consecutive commands from one client that go to the same
// lane (the ordered writer, one read connection, or the proxy itself). The
// session writes the replies of its jobs in the order it made them, so
// replies keep the client's order whatever lane served them.

type stepKind uint8

const (
	// stepRead sends args and copies the reply to the client.
	stepRead stepKind = iota + 1
	// stepWrite sends plan.Exec (inside MULTI/EXEC when atomic), answers
	// the client with the reply to Exec[0], and logs plan.Effect.
	stepWrite
	// stepTx is a client's MULTI … EXEC: every plan's Exec inside one
	// MULTI/EXEC, answered as one array and logged as one entry.
	stepTx
	// stepLocal was answered by the proxy; its reply is already in out.
	stepLocal
	// stepAbsentDel sends args (EXISTS key) and logs DEL key when the
	// primary answers 0: a key it expired or evicted (expiry.go).
	stepAbsentDel
)

type step struct {
	kind stepKind
	db   int
	// anyDB marks a command that reads no data and may run in any db
	// (PING, SCRIPT KILL): it needs no SELECT, which Redis refuses while a
	// script keeps it busy, and no read fence.
	anyDB bool
	args  [][]byte // stepRead
	plan  Plan     // stepWrite
	tx    []Plan   // stepTx
	// txDB is the db a transaction leaves the connection in (it may
	// SELECT inside MULTI).
	txDB int

	// Filled in by the lane.
	selectFirst bool
	replyStart  int
	replyEnd    int
	offset      uint64 // backlog offset of the logged effect, 0 if none
	// unknown marks a write whose outcome is unknown: the connection
	// failed after it was sent.
	unknown bool
	// aside, for a read step sent only for the proxy's own use, receives
	// its reply instead of the job's output, which the client gets.
	aside *[]byte
	// execSelect, on a forwarded EXEC whose MULTI queued a SELECT, is that
	// db + 1: the session moves to it once the reply shows EXEC ran.
	execSelect int
}

type job struct {
	steps []step
	out   []byte
	done  chan struct{}
	// exclusive, when set, is run by the ordered writer's receiver once
	// every earlier command has been answered and before any later one is
	// sent. It is how a WATCHed transaction runs on its own connection
	// without breaking the backlog order.
	exclusive func(j *job)
	// maxOffset is the highest backlog offset among the steps: the reply
	// is held until it commits.
	maxOffset uint64
	// sess is the client the job belongs to; it learns the offsets of its
	// writes from here, for WAIT.
	sess *session
	// arena holds the arguments the steps alias, released once the
	// replies are written.
	arena *arena
	// sentWrites is how many of the job's steps the writer sent to the
	// primary, counted finished when the job is; readFence is the writer's
	// sent count when the job's read replies arrived (readfence.go).
	sentWrites uint64
	readFence  uint64
	// fenced says the job's reads ran on this node's primary while it led
	// with READ_POLICY=leader: their replies wait for fenceRead, whatever
	// the node's role when they are written.
	fenced bool
	// writes counts the client writes in the job that the server's
	// writesInFlight holds, until the writer answers them.
	writes int64
	// probe marks a blocking command's probe: when it finds nothing, what
	// it logs (XREADGROUP making its consumer) must not wake parked
	// clients, itself included, or they would probe each other in a loop.
	probe bool
	// queued is when a forwarded job was submitted: it waits for a leader
	// for at most FailoverWait from then.
	queued time.Time
}

var outPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledOut keeps a buffer that a huge reply grew out of the pool.
const maxPooledOut = 256 << 10

// jobPool keeps jobs with their steps' capacity: a pipeline of sixteen
// writes otherwise grows a fresh steps slice five times per job.
var jobPool = sync.Pool{New: func() any { return new(job) }}

// maxPooledSteps keeps a job that a huge pipeline or transaction grew out of
// the pool.
const maxPooledSteps = 128

func newJob() *job {
	j := jobPool.Get().(*job)
	j.done = make(chan struct{})
	j.out = (*outPool.Get().(*[]byte))[:0]
	return j
}

// recycle returns the job's buffers once its reply has been written.
func (j *job) recycle() {
	if j.arena != nil {
		j.arena.release()
		j.arena = nil
	}
	if cap(j.out) <= maxPooledOut {
		b := j.out[:0]
		j.out = nil
		outPool.Put(&b)
	}
	// Nothing refers to a job once its reply is written: the lane let go
	// of it when it closed done.
	steps := j.steps
	clear(steps)
	*j = job{}
	if cap(steps) <= maxPooledSteps {
		j.steps = steps[:0]
		jobPool.Put(j)
	}
}

// fail answers every step from index from on with msg, dropping any partial
// reply the failed step had.
func (j *job) fail(from int, msg string, sent bool) {
	if from < len(j.steps) {
		j.out = j.out[:j.steps[from].replyStart]
	}
	for i := from; i < len(j.steps); i++ {
		st := &j.steps[i]
		st.replyStart = len(j.out)
		if sent && (st.kind == stepWrite || st.kind == stepTx) {
			st.unknown = true
			j.out = appendError(j.out, msg+" (the connection failed after the write was sent: it may have been executed)")
		} else {
			j.out = appendError(j.out, msg)
		}
		st.replyEnd = len(j.out)
	}
}
