package verify

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
)

// Outcome is what a client can tell about an operation from its reply.
type Outcome int

const (
	// OK: the operation completed and its reply is its result.
	OK Outcome = iota
	// NotExecuted: the reply promises that the write was not executed
	// (TRYAGAIN, NOREPLICAS, "ERR backend unavailable" before sending, or
	// no connection at all).
	NotExecuted
	// Unknown: the write may or may not have been executed, now or later
	// (UNCOMMITTED, a timeout, a connection lost with it in flight, any
	// other error).
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case NotExecuted:
		return "not-executed"
	}
	return "unknown"
}

// Classify maps a reply error to an outcome, after the contract in
// DESIGN.md ("Errors clients can rely on"), and names the error's kind for
// the counts.
func Classify(err error) (Outcome, string) {
	if err == nil || errors.Is(err, redis.Nil) {
		return OK, "ok"
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "TRYAGAIN"):
		return NotExecuted, "TRYAGAIN"
	case strings.HasPrefix(msg, "NOREPLICAS"):
		return NotExecuted, "NOREPLICAS"
	case strings.HasPrefix(msg, "UNCOMMITTED"):
		return Unknown, "UNCOMMITTED"
	case strings.HasPrefix(msg, "ERR backend unavailable"):
		if strings.Contains(msg, "may have been executed") {
			return Unknown, "backend-lost-in-flight"
		}
		return NotExecuted, "backend-unavailable"
	case strings.Contains(msg, "may have been executed"):
		return Unknown, "leader-lost-in-flight"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return NotExecuted, "dial"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Unknown, "timeout"
	}
	var re redis.Error
	if errors.As(err, &re) {
		return Unknown, "other-error"
	}
	return Unknown, "connection"
}

// RegInput is a register operation: a SET of Value or a GET of Key.
type RegInput struct {
	Key   string
	Write bool
	Value string
}

// RegOutput is its result: the value a GET read (Exists false for nil),
// or, for a write, whether its outcome is unknown.
type RegOutput struct {
	Value   string
	Exists  bool
	Unknown bool
}

// regState is one key's value.
type regState struct {
	Value  string
	Exists bool
}

// RegisterModel is a per-key register: a SET sets the key (an unknown SET
// too, when it is linearized: it returns only at the end of the history,
// so it may as well take effect after everything else, which is the same
// as never), and a GET reads it. Histories are partitioned by key.
var RegisterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(RegInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(regState), input.(RegInput), output.(RegOutput)
		if in.Write {
			return true, regState{Value: in.Value, Exists: true}
		}
		return out.Exists == s.Exists && out.Value == s.Value, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(RegInput), output.(RegOutput)
		switch {
		case in.Write && out.Unknown:
			return fmt.Sprintf("set(%s, %s) -> ?", in.Key, in.Value)
		case in.Write:
			return fmt.Sprintf("set(%s, %s)", in.Key, in.Value)
		case !out.Exists:
			return fmt.Sprintf("get(%s) -> nil", in.Key)
		}
		return fmt.Sprintf("get(%s) -> %s", in.Key, out.Value)
	},
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return fmt.Sprint(info)
	},
	DescribeState: func(state any) string {
		if s := state.(regState); s.Exists {
			return s.Value
		}
		return "nil"
	},
}

// History collects register operations from several clients. Times are
// nanoseconds from a common start on the monotonic clock.
type History struct {
	mu      sync.Mutex
	ops     []porcupine.Operation
	pending []porcupine.Operation // unknown writes: their Return is set by Close
	procs   int
}

// NewProcess returns a fresh client id for the visualization. A client
// takes a new one after an operation whose outcome is unknown, since that
// operation stays open until the end of the history.
func (h *History) NewProcess() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.procs++
	return h.procs - 1
}

// Add records a completed operation.
func (h *History) Add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// AddUnknown records a write whose outcome is unknown: it may take effect
// at any time after its call.
func (h *History) AddUnknown(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending = append(h.pending, op)
}

// Operations returns the history, the unknown writes returning after
// every completed operation.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	var end int64
	for _, op := range h.ops {
		end = max(end, op.Return, op.Call)
	}
	for _, op := range h.pending {
		end = max(end, op.Call)
	}
	out := append([]porcupine.Operation(nil), h.ops...)
	for _, op := range h.pending {
		op.Return = end + 1
		out = append(out, op)
	}
	return out
}

// Len returns the number of operations recorded.
func (h *History) Len() (completed, unknown int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops), len(h.pending)
}

// AppendLog records the append workload: each id a client pushed, in the
// client's order, and its outcome.
type AppendLog struct {
	mu  sync.Mutex
	ids []appended
}

type appended struct {
	id      string
	list    string
	client  int
	seq     int
	outcome Outcome
}

// Add records the outcome of pushing id to list.
func (a *AppendLog) Add(list, id string, client, seq int, o Outcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, appended{id: id, list: list, client: client, seq: seq, outcome: o})
}

// AppendReport is what the append check found.
type AppendReport struct {
	// Sent, Acked, Unknown and NotExecuted count the pushes by outcome.
	Sent, Acked, Unknown, NotExecuted int
	// Lost are acknowledged ids missing from the final lists.
	Lost []string
	// Duplicated are ids found more than once.
	Duplicated []string
	// Phantoms are ids the client was told were not executed, or that
	// were never sent, found in the lists.
	Phantoms []string
	// Reordered are acknowledged ids found before an id their client had
	// acknowledged earlier.
	Reordered []string
	// UnknownPresent counts the unknown pushes that did take effect.
	UnknownPresent int
}

// Counts counts the pushes by outcome, without final lists to check.
func (a *AppendLog) Counts() AppendReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.countsLocked()
}

func (a *AppendLog) countsLocked() AppendReport {
	var r AppendReport
	for _, x := range a.ids {
		r.Sent++
		switch x.outcome {
		case OK:
			r.Acked++
		case Unknown:
			r.Unknown++
		default:
			r.NotExecuted++
		}
	}
	return r
}

// Check compares the log with the final content of every list.
func (a *AppendLog) Check(final map[string][]string) AppendReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.countsLocked()
	byID := map[string]appended{}
	for _, x := range a.ids {
		byID[x.id] = x
	}
	seen := map[string]int{}
	lastSeq := map[int]int{} // client → the highest acknowledged seq met so far in its list
	lists := make([]string, 0, len(final))
	for l := range final {
		lists = append(lists, l)
	}
	sort.Strings(lists)
	for _, l := range lists {
		for _, id := range final[l] {
			seen[id]++
			if seen[id] == 2 {
				r.Duplicated = append(r.Duplicated, id)
			}
			x, ok := byID[id]
			if !ok || x.list != l || x.outcome == NotExecuted {
				if seen[id] == 1 {
					r.Phantoms = append(r.Phantoms, l+"/"+id)
				}
				continue
			}
			if x.outcome == Unknown && seen[id] == 1 {
				r.UnknownPresent++
			}
			if x.outcome != OK {
				continue
			}
			if prev, ok := lastSeq[x.client]; ok && x.seq < prev {
				r.Reordered = append(r.Reordered, id)
			}
			lastSeq[x.client] = max(lastSeq[x.client], x.seq)
		}
	}
	for _, x := range a.ids {
		if x.outcome == OK && seen[x.id] == 0 {
			r.Lost = append(r.Lost, x.list+"/"+x.id)
		}
	}
	return r
}
