package resp

import (
	"github.com/replicar/replicar/ackpolicy"

	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// blocking serves a blocking command (BLPOP, BLMOVE, BZPOPMIN, XREAD BLOCK …)
// without blocking any backend connection: it probes the non-blocking form
// through the ordered writer and, when there is nothing yet, parks the client
// until a write the proxy logs touches one of its keys or the timeout ends.
// The effect logged is the non-blocking command that actually happened.
func (s *session) blocking(ctx context.Context, args [][]byte) {
	probe, timeoutMs, ok, err := NonBlocking(args)
	if err != nil {
		s.localError(err.Error())
		return
	}
	if !ok {
		// It cannot block (Redis rejects its arguments first): serve it
		// as the write it is, so the client gets Redis's own error.
		s.write(args)
		return
	}
	table := s.srv.table.Load()
	info, err := table.Lookup(probe)
	if err != nil {
		s.localError(err.Error())
		return
	}
	isWrite := Classify(info, probe) != ClassRead
	if isWrite {
		if msg, ok := s.reserved(args); !ok {
			s.localError(msg)
			return
		}
	}
	s.drain()
	// Keys are copied: the batch memory is reused while the client waits.
	var idx [16]int
	var keys [][]byte
	for _, i := range info.Keys(probe, idx[:0]) {
		keys = append(keys, bytes.Clone(probe[i]))
	}
	if info.Name == "xread" {
		if probe, err = s.resolveLastIDs(probe, info); err != nil {
			s.localError("ERR backend unavailable: " + err.Error())
			return
		}
	}
	probe = copyArgs(probe)

	var deadline <-chan time.Time
	if timeoutMs > 0 {
		t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
		defer t.Stop()
		deadline = t.C
	}
	var gone <-chan struct{}
	var stopWatching func()
	defer func() {
		if stopWatching != nil {
			stopWatching()
		}
	}()
	// timedOut is the first probe's nil reply, in the shape the command
	// uses, for when the timeout ends the wait.
	var timedOut *job
	// Probes after a wake go to the ordered writer ahead of its queue, in
	// the order the clients were woken: the longest-waiting client gets the
	// first element, as with Redis's FIFO of blocked clients. Parking
	// before the first probe means a write landing meanwhile wakes us
	// again (dirty).
	// For a blocking move, the probe first asks the source's type, in
	// the same burst: a WRONGTYPE is then known to be the destination's
	// when the source held a list at that moment.
	var srcType []byte
	var typeProbe [][]byte
	switch {
	case info.Name == "blmove" || info.Name == "brpoplpush":
		typeProbe = [][]byte{[]byte("TYPE"), probe[1]}
	case info.Name == "xreadgroup" && len(keys) > 0:
		// An error then says whether the stream went away (UNBLOCKED)
		// or only its group (the probe's own NOGROUP).
		typeProbe = [][]byte{[]byte("TYPE"), keys[0]}
	}
	w := newBlockWaiter(s.srv.writer, func() (*job, error) { return s.buildProbe(probe, isWrite, typeProbe, &srcType) })
	s.srv.blocked.park(w, s.db, keys)
	defer s.srv.blocked.unpark(w, s.db, keys)
	// The first probe goes out from here, at once, so that it keeps its
	// place among the commands other clients send after it.
	w.firstProbe()
	// ended is set once the timeout fired or the client went away while a
	// probe was already with the writer: its result still has to come.
	ended, left := false, false
	// unblocked is CLIENT UNBLOCK from another client; unblockErr says it
	// asked for the UNBLOCKED error rather than the timeout's reply.
	unblocked := s.unblock.open()
	defer s.unblock.close()
	unblockErr := false
	for {
		select {
		case res := <-w.probed:
			if res.err != nil {
				w.finish()
				s.localError(errorMessage(res.err))
				return
			}
			j := res.j
			<-j.done
			nilReply := isNilReply(j.out)
			if !nilReply && timedOut != nil {
				switch {
				case keepsBlockingOn(info.Name, j.out) && string(srcType) != "+list\r\n":
					// The key now holds another type. Redis checks the
					// type only when the command first runs; a client
					// already blocked stays blocked until the key holds
					// what it pops.
					nilReply = true
				case info.Name == "xreadgroup" && isError(j.out) && string(srcType) != "+stream\r\n":
					// The stream went away (deleted, replaced, flushed):
					// Redis unblocks the reader with this error. (When
					// only the group went, the probe's NOGROUP is the
					// answer, as on Redis.)
					w.finish()
					s.localError("UNBLOCKED the stream key no longer exists")
					return
				}
			}
			if !nilReply {
				w.finish()
				s.reply(j)
				return
			}
			if timedOut == nil {
				timedOut = j
			}
			if ended {
				w.finish()
				if left || ctx.Err() != nil {
					return
				}
				if unblockErr {
					s.localError(unblockedMessage)
					return
				}
				s.reply(timedOut)
				return
			}
			s.srv.blocked.rearm(w)
			if gone == nil {
				gone, stopWatching = s.watchGone()
			}
		case <-deadline:
			deadline = nil
			if w.cancel() {
				s.reply(timedOut)
				return
			}
			ended = true
		case withErr := <-unblocked:
			// As if the timeout had ended the wait, or with the error
			// Redis gives; a probe already with the writer still counts
			// if it popped something.
			unblocked, unblockErr = nil, withErr
			if w.cancel() {
				if withErr {
					s.localError(unblockedMessage)
				} else {
					s.reply(timedOut)
				}
				return
			}
			ended = true
		case <-gone:
			gone = nil
			if w.cancel() {
				return
			}
			ended, left = true, true
		case <-ctx.Done():
			if w.cancel() {
				return
			}
			ended = true
		}
	}
}

// buildProbe makes the job that runs the non-blocking form once, for the
// ordered writer. A write probe runs inside MULTI, where Redis never
// blocks.
//
// With typeProbe set, it is sent first in the same job, its reply going to
// *aside rather than to the client.
func (s *session) buildProbe(args [][]byte, isWrite bool, typeProbe [][]byte, aside *[]byte) (*job, error) {
	j := newJob()
	j.sess = s
	j.probe = true
	if typeProbe != nil {
		j.steps = append(j.steps, step{kind: stepRead, db: s.db, args: typeProbe, aside: aside})
	}
	if isWrite {
		if err := s.srv.core.Admit(); err != nil {
			return nil, err
		}
		plan, err := Prepare(args, s.srv.cfg.Now().UnixMilli(), s.srv.scripts)
		if err != nil {
			return nil, err
		}
		plan.Atomic = true
		if !s.holdWrite() {
			return nil, ackpolicy.ErrNotLeader
		}
		j.writes = 1
		j.steps = append(j.steps, step{kind: stepWrite, db: s.db, plan: plan})
	} else {
		j.steps = append(j.steps, step{kind: stepRead, db: s.db, args: args})
	}
	return j, nil
}

// unblockedMessage is Redis's reply to a command ended by CLIENT UNBLOCK
// … ERROR.
const unblockedMessage = "UNBLOCKED client unblocked via CLIENT UNBLOCK"

// clientUnblock is CLIENT UNBLOCK id [TIMEOUT|ERROR]: it ends the blocking
// command another client of this proxy is parked in. The proxy parks
// blocked clients itself, so it answers for them.
func (s *session) clientUnblock(args [][]byte) {
	if len(args) < 3 || len(args) > 4 {
		s.localError("ERR wrong number of arguments for 'client|unblock' command")
		return
	}
	id, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		s.localError("ERR value is not an integer or out of range")
		return
	}
	withErr := false
	if len(args) == 4 {
		switch strings.ToLower(string(args[3])) {
		case "timeout":
		case "error":
			withErr = true
		default:
			s.localError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
			return
		}
	}
	target := s.srv.sessionByID(id)
	if target != nil && target.unblock.fire(withErr) {
		s.local(appendInt(nil, 1))
		return
	}
	s.local(appendInt(nil, 0))
}

func isNilReply(reply []byte) bool {
	return bytes.Equal(reply, []byte("*-1\r\n")) || bytes.Equal(reply, []byte("$-1\r\n"))
}

// resolveLastIDs replaces XREAD's "$" ids by each stream's current last id,
// so that re-probing after a wake-up returns the entries added since the
// client blocked, as Redis does.
func (s *session) resolveLastIDs(args [][]byte, info *CommandInfo) ([][]byte, error) {
	streams := -1
	for i, a := range args {
		if strings.EqualFold(string(a), "streams") {
			streams = i
			break
		}
	}
	if streams < 0 {
		return args, nil
	}
	rest := args[streams+1:]
	n := len(rest) / 2
	out := append([][]byte(nil), args...)
	for k := 0; k < n; k++ {
		if string(rest[n+k]) != "$" {
			continue
		}
		j := newJob()
		j.steps = append(j.steps, step{kind: stepRead, db: s.db,
			args: [][]byte{[]byte("XREVRANGE"), rest[k], []byte("+"), []byte("-"), []byte("COUNT"), []byte("1")}})
		s.srv.writer.submit(j)
		<-j.done
		v, _, err := ParseValue(j.out)
		if err != nil {
			return nil, err
		}
		id := []byte("0-0")
		if v.Kind == Array && len(v.Elems) == 1 && v.Elems[0].Kind == Array && len(v.Elems[0].Elems) > 0 {
			id = bytes.Clone(v.Elems[0].Elems[0].Str)
		} else if v.Kind == Error {
			return nil, errors.New(string(v.Str))
		}
		out[streams+1+n+k] = id
	}
	return out, nil
}

// watchGone reports the client closing its connection while it is parked.
// It peeks at the socket; a pipelined command that arrives meanwhile stays
// buffered for after the blocking command, as on Redis.
func (s *session) watchGone() (<-chan struct{}, func()) {
	gone := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_, err := s.br.Peek(1)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			close(gone)
		}
	}()
	return gone, func() {
		s.conn.SetReadDeadline(time.Now())
		<-exited
		s.conn.SetReadDeadline(time.Time{})
	}
}

// keepsBlockingOn reports whether a client blocked on a command stays
// blocked when a re-probe answers reply: a WRONGTYPE error for a list or
// sorted-set pop or an XREAD, whose key changed type while the client
// waited. XREADGROUP is different: since Redis 7 a blocked XREADGROUP is
// unblocked with an error when its key is deleted or changes type.
func keepsBlockingOn(probe string, reply []byte) bool {
	if probe == "xreadgroup" {
		return false
	}
	return bytes.HasPrefix(reply, []byte("-WRONGTYPE"))
}

func isError(reply []byte) bool { return len(reply) > 0 && reply[0] == '-' }
