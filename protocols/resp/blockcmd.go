package resp

import (
	"github.com/replicar/replicar/ackpolicy"

	"bytes"
	"context"
	"errors"
	"os"
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
	for {
		w := &blockWaiter{wake: make(chan struct{})}
		// Park before probing, so a write landing between the probe and
		// the park still wakes us.
		s.srv.blocked.park(w, s.db, keys)
		j, nilReply, err := s.probe(probe, isWrite)
		if err != nil {
			s.srv.blocked.unpark(w, s.db, keys)
			s.localError(errorMessage(err))
			return
		}
		if !nilReply {
			s.srv.blocked.unpark(w, s.db, keys)
			s.reply(j)
			return
		}
		if gone == nil {
			gone, stopWatching = s.watchGone()
		}
		select {
		case <-w.wake:
			s.srv.blocked.unpark(w, s.db, keys)
		case <-deadline:
			s.srv.blocked.unpark(w, s.db, keys)
			s.reply(j) // the nil reply, in the shape the command uses
			return
		case <-gone:
			s.srv.blocked.unpark(w, s.db, keys)
			return
		case <-ctx.Done():
			s.srv.blocked.unpark(w, s.db, keys)
			return
		}
	}
}

// probe runs the non-blocking form once and reports whether it found
// nothing. A write probe runs inside MULTI, where Redis never blocks.
func (s *session) probe(args [][]byte, isWrite bool) (*job, bool, error) {
	j := newJob()
	j.sess = s
	if isWrite {
		if err := s.srv.core.Admit(); err != nil {
			return nil, false, err
		}
		plan, err := Prepare(args, s.srv.cfg.Now().UnixMilli(), s.srv.scripts)
		if err != nil {
			return nil, false, err
		}
		plan.Atomic = true
		if !s.holdWrite() {
			return nil, false, ackpolicy.ErrNotLeader
		}
		j.writes = 1
		j.steps = append(j.steps, step{kind: stepWrite, db: s.db, plan: plan})
	} else {
		j.steps = append(j.steps, step{kind: stepRead, db: s.db, args: args})
	}
	s.srv.writer.submit(j)
	<-j.done
	reply := j.out
	isNil := bytes.Equal(reply, []byte("*-1\r\n")) || bytes.Equal(reply, []byte("$-1\r\n"))
	return j, isNil, nil
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
