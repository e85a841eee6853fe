package mysql

import (
	"context"
	"errors"
	"strings"

	gm "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/replicar/replicar/ackpolicy"
)

// relayResult is what the proxy learnt from one response.
type relayResult struct {
	status    uint16 // the status flags of the last OK or EOF
	sawStatus bool
	errored   bool // the response ended with an ERR
	refused   bool // admission refused the command: it never reached the backend
	cursor    bool // a prepared statement's cursor is open
	// schemaSeen says the backend reported the default database itself.
	schemaSeen bool
}

// relay copies the backend's response to a command (COM_QUERY,
// COM_STMT_EXECUTE and the like) to the client as it arrives, so that a
// large result set streams through a bounded buffer. Every result of a
// multi-result response is relayed. An OK that reports a committed
// transaction's GTID is held until that transaction's backlog entry is
// committed under the ack policy, and replaced by UNCOMMITTED if it is not.
// With fence set (a read under READ_POLICY=leader), the final packet waits
// until everything logged is committed.
//
// The returned error ends the session (the backend or the client
// connection failed); errors of the statement itself are relayed.
func (s *session) relay(binary, fence bool, class Class) (relayResult, error) {
	var res relayResult
	be := s.be
	for {
		p, err := be.readPacket()
		if err != nil {
			return res, s.backendLost(err)
		}
		switch {
		case p[0] == hdrOK:
			ok, err := parseOK(p, be.caps)
			if err != nil {
				s.srv.stats.ProtocolErrors.Add(1)
				return res, s.backendLost(err)
			}
			res.status, res.sawStatus = ok.status, true
			more := ok.status&statusMoreResults != 0
			gtid := s.absorbState(&ok, &res)
			if gtid == "" && !more && s.needsGTIDQuery(class, ok.status) {
				if gtid, err = s.queryGTID(); err != nil {
					return res, s.backendLost(err)
				}
			}
			if gtid != "" {
				if e := s.hold(gtid); e != nil {
					res.errored = true
					if err := s.writeErr(e); err != nil {
						return res, errClientGone
					}
					if more {
						// The client's answer ended with the error; what
						// the backend still sends is read and dropped.
						if err := s.drain(binary); err != nil {
							return res, err
						}
					}
					return res, nil
				}
			}
			if !more && fence {
				if e := s.fence(); e != nil {
					res.errored = true
					return res, s.toClient(s.writeErr(e))
				}
			}
			if !more && s.moreResults {
				ok.status |= statusMoreResults
			}
			if err := s.writeOK(ok); err != nil {
				return res, errClientGone
			}
			if !more {
				return res, nil
			}
		case p[0] == hdrERR:
			res.errored = true
			return res, s.toClient(s.cw.writePacket(p))
		case isEOF(p):
			// COM_SHUTDOWN, COM_DEBUG and COM_SET_OPTION answer with a
			// bare EOF.
			res.status, res.sawStatus = eofStatus(p), true
			return res, s.toClient(s.writeEOF(s.patchMore(p, false)))
		case p[0] == hdrLocal:
			if err := s.localInfile(p); err != nil {
				return res, err
			}
		default:
			more, err := s.relayResultSet(p, binary, fence, &res)
			if err != nil || !more {
				return res, err
			}
		}
	}
}

// relayResultSet relays one result set whose column count packet is p,
// and reports whether more results follow.
func (s *session) relayResultSet(p []byte, binary, fence bool, res *relayResult) (bool, error) {
	be := s.be
	ncol, _, good := lenencInt(p)
	if !good || ncol == 0 || ncol > 1<<16 {
		s.srv.stats.ProtocolErrors.Add(1)
		return false, s.backendLost(errors.New("malformed column count"))
	}
	if err := s.cw.writePacket(p); err != nil {
		return false, errClientGone
	}
	status, err := s.relayDefs(int(ncol))
	if err != nil {
		return false, err
	}
	// The EOF after the definitions carries the cursor flag: the rows
	// then come with COM_STMT_FETCH.
	if binary && status&statusCursorExists != 0 {
		res.status, res.sawStatus, res.cursor = status, true, true
		return false, nil
	}
	for {
		p, err := be.readPacket()
		if err != nil {
			return false, s.backendLost(err)
		}
		switch {
		case p[0] == hdrERR:
			res.errored = true
			return false, s.toClient(s.cw.writePacket(p))
		case isEOF(p):
			status := eofStatus(p)
			res.status, res.sawStatus = status, true
			more := status&statusMoreResults != 0
			if !more && fence {
				if e := s.fence(); e != nil {
					res.errored = true
					return false, s.toClient(s.writeErr(e))
				}
			}
			return more, s.toClient(s.writeEOF(s.patchMore(p, more)))
		default:
			if err := s.cw.writePacket(p); err != nil {
				return false, errClientGone
			}
		}
	}
}

// patchMore marks the final EOF of an answer with "more results" when
// the proxy sends the next statement of a split multi-statement query
// itself (statement mode).
func (s *session) patchMore(p []byte, more bool) []byte {
	if more || !s.moreResults || len(p) < 5 {
		return p
	}
	return eofPacket(leUint16(p[1:]), eofStatus(p)|statusMoreResults)
}

// drain reads and drops the rest of a multi-result response.
func (s *session) drain(binary bool) error {
	for {
		p, err := s.be.readPacket()
		if err != nil {
			return s.backendLost(err)
		}
		switch {
		case p[0] == hdrOK:
			ok, err := parseOK(p, s.be.caps)
			if err != nil {
				return s.backendLost(err)
			}
			var res relayResult
			if gtid := s.absorbState(&ok, &res); gtid != "" {
				s.srv.log.Warn().Uint32("session", s.id).Str("gtid", gtid).Msg("transaction committed after an UNCOMMITTED answer in the same multi-statement query; its client was not told")
			}
			if ok.status&statusMoreResults == 0 {
				return nil
			}
		case p[0] == hdrERR:
			return nil
		case p[0] == hdrLocal:
			// The client is no longer listening for this: send an empty
			// file.
			if err := s.be.writePacket(nil); err != nil {
				return s.backendLost(err)
			}
			if err := s.be.flush(); err != nil {
				return s.backendLost(err)
			}
		default:
			ncol, _, good := lenencInt(p)
			if !good || ncol > 1<<16 {
				return s.backendLost(errors.New("malformed column count"))
			}
			for range ncol + 1 {
				if _, err := s.be.readPacket(); err != nil {
					return s.backendLost(err)
				}
			}
			for {
				p, err := s.be.readPacket()
				if err != nil {
					return s.backendLost(err)
				}
				if p[0] == hdrERR {
					return nil
				}
				if isEOF(p) {
					if eofStatus(p)&statusMoreResults == 0 {
						return nil
					}
					break
				}
			}
		}
	}
}

// localInfile relays LOAD DATA LOCAL INFILE: the backend asks for a file,
// the client sends it in packets ending with an empty one, and the
// backend then answers with the statement's result.
func (s *session) localInfile(req []byte) error {
	if err := s.cw.writePacket(req); err != nil {
		return errClientGone
	}
	if err := s.cw.flush(); err != nil {
		return errClientGone
	}
	for {
		var pkt clientPacket
		select {
		case pkt = <-s.in:
		case <-s.ctx.Done():
			return fatal{}
		}
		if pkt.err != nil {
			return fatal{}
		}
		s.cw.seq = pkt.seq + 1
		if err := s.be.writePacket(pkt.data); err != nil {
			return s.backendLost(err)
		}
		if len(pkt.data) == 0 {
			break
		}
	}
	if err := s.be.flush(); err != nil {
		return s.backendLost(err)
	}
	return nil
}

// absorbState takes what the proxy follows out of an OK's session state:
// the default database, and the GTID of a transaction the statement
// committed. The GTID entry the proxy asked for itself is removed before
// the client sees the OK.
func (s *session) absorbState(ok *okPacket, res *relayResult) string {
	if len(ok.state) == 0 {
		return ""
	}
	var (
		gtid  string
		kept  []byte
		strip bool
	)
	err := walkState(ok.state, func(e stateEntry) {
		switch e.typ {
		case trackSchema:
			if db := lenencString(e.data); db != nil {
				s.db = string(db)
				res.schemaSeen = true
			}
		case trackSysVar:
			if name, value, ok := sysVar(e.data); ok && strings.EqualFold(string(name), "last_gtid") {
				if s.local() && len(value) > 0 {
					gtid = string(value)
				}
				if s.tracking {
					strip = true
					return
				}
			}
		case trackGTIDs:
			if len(e.data) > 1 {
				if v := lenencString(e.data[1:]); len(v) > 0 && s.local() {
					gtid = string(v)
				}
			}
			if s.tracking {
				strip = true
				return
			}
		}
		kept = append(kept, e.raw...)
	})
	if err != nil {
		s.srv.stats.ProtocolErrors.Add(1)
		return ""
	}
	if strip {
		ok.state = kept
	}
	if gtid == s.lastGTID {
		return ""
	}
	s.lastGTID = gtid
	return gtid
}

// needsGTIDQuery says whether, without session tracking, the proxy must
// ask the backend for the session's last GTID after a statement: on the
// leader's own backend, after a statement that may have committed a
// transaction with writes.
func (s *session) needsGTIDQuery(class Class, status uint16) bool {
	if s.tracking || !s.local() || s.srv.offsets == nil || !s.srv.info.MariaDB {
		return false
	}
	switch class {
	case ClassRead, ClassProxy, ClassEmpty, ClassRollback, ClassTx:
		return false
	case ClassWrite:
		// A write inside a transaction commits nothing yet.
		return status&statusInTrans == 0
	}
	// DDL, COMMIT, BEGIN and LOCK TABLES (implicit commits), SET
	// autocommit, admin statements.
	return true
}

// queryGTID asks the backend session for its last GTID (MariaDB's
// @@last_gtid is per session, so this is exact under concurrency too), and
// returns it if it is new.
func (s *session) queryGTID() (string, error) {
	_, rows, err := s.be.simpleQuery("SELECT @@last_gtid")
	if err != nil {
		if _, ok := myError(err); ok {
			return "", nil
		}
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == "" || rows[0][0] == s.lastGTID {
		return "", nil
	}
	s.lastGTID = rows[0][0]
	return s.lastGTID, nil
}

// hold waits until the transaction gtid is logged and committed under the
// ack policy. It returns the error to give the client instead of the OK,
// or nil.
func (s *session) hold(gtid string) *gm.MyError {
	if s.srv.offsets == nil || s.srv.core == nil {
		return nil
	}
	s.srv.stats.CommitsHeld.Add(1)
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.OffsetTimeout)
	off, err := s.srv.offsets.OffsetOf(ctx, gtid)
	cancel()
	if err == nil {
		err = s.srv.core.WaitCommitted(s.ctx, off)
	} else if s.ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = errors.New("the capture did not log it within " + s.srv.cfg.OffsetTimeout.String())
	}
	if err == nil {
		return nil
	}
	if s.srv.cfg.AckTimeoutDegrade && errors.Is(err, ackpolicy.ErrAckTimeout) {
		s.srv.log.Warn().Str("gtid", gtid).Err(err).Msg("commit acknowledged without meeting the ack policy (degrade mode)")
		return nil
	}
	s.srv.stats.Uncommitted.Add(1)
	if s.ctx.Err() == nil {
		s.srv.log.Warn().Uint32("session", s.id).Str("gtid", gtid).Err(err).Msg("commit not committed under the ack policy: answered UNCOMMITTED")
	}
	return uncommittedError(gtid, err)
}

// fence holds a read's final packet until everything logged is committed.
func (s *session) fence() *gm.MyError {
	if s.srv.core == nil {
		return nil
	}
	if err := s.srv.core.WaitReadable(s.ctx); err != nil {
		return newError(codeNotExecuted, "TRYAGAIN the read would show writes not committed under the ack policy ("+err.Error()+")")
	}
	return nil
}
