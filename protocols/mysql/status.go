package mysql

import (
	"fmt"
	"strings"

	gm "github.com/go-mysql-org/go-mysql/mysql"
)

// statusRows are the rows of SHOW REPLICAR STATUS: the fields of RESP's
// REPLICAR INFO and of /status, then the front end's own counters, as
// (Variable_name, Value) pairs like SHOW STATUS.
func (s *Server) statusRows() [][2]string {
	var rows [][2]string
	w := func(k string, v any) { rows = append(rows, [2]string{k, fmt.Sprint(v)}) }
	var st Status
	if s.core != nil {
		st = s.core.Status()
	}
	w("node", st.Node)
	w("group", st.Group)
	w("protocol", st.Protocol)
	w("role", st.Role)
	w("state", st.State)
	w("epoch", st.Epoch)
	w("leader", st.Leader)
	w("leader_addr", st.LeaderAddr)
	w("offset", st.Offset)
	w("committed", st.Committed)
	w("applied", st.Applied)
	w("isr", strings.Join(st.ISR, ","))
	w("ack_policy", st.AckPolicy)
	w("backlog_first_offset", st.BacklogFirst)
	w("backlog_bytes", st.BacklogBytes)
	w("backlog_limit_bytes", st.BacklogLimit)
	w("connected_followers", len(st.Followers))
	for i, f := range st.Followers {
		w(fmt.Sprintf("follower%d", i), fmt.Sprintf("node=%s,acked=%d,lag_entries=%d,lag_seconds=%.3f,in_sync=%t,connected=%t",
			f.Node, f.Acked, f.LagEntries, f.LagSeconds, f.InSync, f.Connected))
	}
	rt := s.Route()
	w("backend", s.cfg.Backend)
	w("backend_up", s.backendUp.Load())
	w("mysql_format", s.cfg.Format)
	w("route", rt.Mode)
	w("route_leader", rt.Leader)
	w("connected_clients", s.clients.Load())
	w("total_connections", s.stats.Connections.Load())
	w("rejected_connections", s.stats.Rejected.Load())
	w("auth_failures", s.stats.AuthFailures.Load())
	w("queries", s.stats.Queries.Load())
	w("writes_admitted", s.stats.WritesAdmitted.Load())
	w("writes_refused", s.stats.WritesRefused.Load())
	w("commits_held", s.stats.CommitsHeld.Load())
	w("writes_uncommitted", s.stats.Uncommitted.Load())
	w("backend_errors", s.stats.BackendErrors.Load())
	w("protocol_errors", s.stats.ProtocolErrors.Load())
	w("sessions_moved", s.stats.SessionsMoved.Load())
	w("sessions_kicked", s.stats.SessionsKicked.Load())
	return rows
}

// writeStatus answers SHOW REPLICAR STATUS with a result set.
func (s *session) writeStatus() error {
	rows := s.srv.statusRows()
	names := []string{"Variable_name", "Value"}
	if err := s.cw.writePacket(gm.PutLengthEncodedInt(uint64(len(names)))); err != nil {
		return errClientGone
	}
	for _, n := range names {
		f := &gm.Field{Name: []byte(n), OrgName: []byte(n), Charset: 33, ColumnLength: 1024 * 3,
			Type: gm.MYSQL_TYPE_VAR_STRING, Flag: gm.NOT_NULL_FLAG}
		if err := s.cw.writePacket(f.Dump()); err != nil {
			return errClientGone
		}
	}
	status := uint16(gm.SERVER_STATUS_AUTOCOMMIT)
	if s.inTx {
		status |= statusInTrans
	}
	if err := s.cw.writePacket(eofPacket(0, status)); err != nil {
		return errClientGone
	}
	var row []byte
	for _, r := range rows {
		row = row[:0]
		for _, v := range r {
			row = gm.AppendLengthEncodedInteger(row, uint64(len(v)))
			row = append(row, v...)
		}
		if err := s.cw.writePacket(row); err != nil {
			return errClientGone
		}
	}
	return s.toClient(s.cw.writePacket(eofPacket(0, status)))
}

// StatusText renders the rows of SHOW REPLICAR STATUS as name:value lines,
// for logs and tests.
func (s *Server) StatusText() string {
	var b strings.Builder
	for _, r := range s.statusRows() {
		b.WriteString(r[0])
		b.WriteByte(':')
		b.WriteString(r[1])
		b.WriteString("\r\n")
	}
	return b.String()
}
