package mysql

import (
	"errors"
	"fmt"
	"time"

	gm "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/replicar/replicar/ackpolicy"
)

// Errors clients can rely on. The word that opens the message is the
// contract, as for RESP; the code is what MySQL drivers already act on:
// 1290 (ER_OPTION_PREVENTS_STATEMENT, "read-only", SQLSTATE HY000) for
// statements that were not executed and may be retried, 1105
// (ER_UNKNOWN_ERROR) for a commit whose fate is unknown.
const (
	codeNotExecuted = gm.ER_OPTION_PREVENTS_STATEMENT // 1290
	codeUncommitted = gm.ER_UNKNOWN_ERROR             // 1105
	stateGeneral    = "HY000"
)

func newError(code uint16, msg string) *gm.MyError {
	return &gm.MyError{Code: code, State: stateGeneral, Message: msg}
}

// refusedError turns a refusal of Admit or AdmitRead into the error the
// client gets. The statement was not executed.
func refusedError(err error) *gm.MyError {
	switch {
	case errors.Is(err, ackpolicy.ErrNoReplicas):
		return newError(codeNotExecuted, "NOREPLICAS not enough in-sync replicas to write; the statement was not executed ("+err.Error()+")")
	case errors.Is(err, ackpolicy.ErrNotLeader):
		return newError(codeNotExecuted, "TRYAGAIN no leader can take this statement now; it was not executed ("+err.Error()+")")
	}
	return newError(codeNotExecuted, "TRYAGAIN the statement was not executed ("+err.Error()+")")
}

// rolledBack adds to a refused COMMIT's message what became of the
// transaction.
func rolledBack(e *gm.MyError, rollbackErr error) *gm.MyError {
	if rollbackErr != nil {
		e.Message += "; rolling the transaction back failed too (" + rollbackErr.Error() + "), the connection is closed"
	} else {
		e.Message += "; the transaction was rolled back"
	}
	return e
}

// uncommittedError is the answer to a transaction the primary committed but
// the ack policy did not (or whose entry never reached the log).
func uncommittedError(gtid string, err error) *gm.MyError {
	if errors.Is(err, ackpolicy.ErrAckTimeout) {
		return newError(codeUncommitted, fmt.Sprintf("UNCOMMITTED transaction %s applied on the primary but not replicated under the ack policy within the ack timeout", gtid))
	}
	return newError(codeUncommitted, fmt.Sprintf("UNCOMMITTED transaction %s applied on the primary but not committed: %v", gtid, err))
}

// tryAgainError answers a statement that found no leader within the
// failover wait.
func tryAgainError(wait time.Duration, why string) *gm.MyError {
	return newError(codeNotExecuted, fmt.Sprintf("TRYAGAIN no leader available after waiting %s (%s); the statement was not executed", wait, why))
}

// leaderChangedError ends a session whose transaction (or locked tables,
// or open cursor) was on a node that no longer leads.
func leaderChangedError() *gm.MyError {
	return newError(codeNotExecuted, "TRYAGAIN the leader changed while this session had a transaction open; the transaction was rolled back and the connection is closed")
}

// backendUnavailableError answers a statement that could not reach the
// backend; it was not executed.
func backendUnavailableError(err error) *gm.MyError {
	return newError(gm.ER_UNKNOWN_ERROR, "ERR backend unavailable; the statement was not executed ("+err.Error()+")")
}

// lostError answers a statement whose backend connection failed while it
// ran: it may or may not have been executed.
func lostError(err error) *gm.MyError {
	return newError(gm.ER_UNKNOWN_ERROR, "ERR backend connection lost with the statement in flight; it may have been executed ("+err.Error()+")")
}

// tooManyError is the answer past MaxClients, as mysqld gives it.
func tooManyError() *gm.MyError {
	return &gm.MyError{Code: gm.ER_CON_COUNT_ERROR, State: "08004", Message: "Too many connections"}
}

// dialError turns a failed backend or leader connection into the client's
// error: a MySQL error from the server (unknown database, access denied)
// keeps its code; anything else is "backend unavailable".
func dialError(err error) *gm.MyError {
	if me, ok := myError(err); ok {
		return &gm.MyError{Code: me.Code, State: me.State, Message: me.Message}
	}
	return backendUnavailableError(err)
}
