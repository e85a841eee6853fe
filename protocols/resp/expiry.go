package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Expiry and eviction. Followers are plain Redis servers that expire keys
// on their own clocks at the same absolute times as the primary, so most
// expirations need nothing. What does not converge on its own is a write
// that races an expiry: the primary runs INCR on a live key just before it
// expires, a follower applies it just after its copy expired and creates a
// fresh key with no expiry, which then outlives the primary's. Evictions
// (maxmemory) likewise remove keys on the primary only.
//
// So the leader does what a Redis master does, sending DEL for keys its
// primary expired or evicted, but in a way that keeps the backlog order
// exact: the keyspace events arrive on a connection of their own, at some
// point after the fact, so the leader asks the primary through the ordered
// writer whether the key is still absent, and logs DEL only if it is. At
// that point in the log the primary has no such key, so the DEL is a true
// effect there, and it cannot delete a key written again since.

// expiryEvents are the notify-keyspace-events flags the relay needs:
// keyevent notifications (E) for expired (x) and evicted (e) keys.
const expiryEvents = "Exe"

// relayPatterns are what the relay subscribes to: the expired and evicted
// keyevent channels of every db, spelt with a character class so that no
// client's pattern is the same string. PUBSUB NUMPAT, which counts unique
// patterns on the primary, can then leave exactly these two out.
var relayPatterns = [2][]byte{[]byte("__keyevent@*__:expire[d]"), []byte("__keyevent@*__:evicte[d]")}

// patchNumPat takes the relay's patterns out of a PUBSUB NUMPAT reply: a
// client of the proxy must not see the proxy's own subscriptions.
func patchNumPat(reply []byte) []byte {
	v, _, err := ParseValue(reply)
	if err != nil || v.Kind != Integer || v.Int < int64(len(relayPatterns)) {
		return reply
	}
	return appendInt(nil, v.Int-int64(len(relayPatterns)))
}

// withExpiryFlags is flags with the ones the relay needs added, if
// missing ('A' is an alias that includes 'x' and 'e').
func withExpiryFlags(flags string) string {
	out := flags
	for _, f := range expiryEvents {
		if !strings.ContainsRune(out, f) && !(f != 'E' && strings.ContainsRune(out, 'A')) {
			out += string(f)
		}
	}
	return out
}

// keepExpiryEvents rewrites a client's CONFIG SET of
// notify-keyspace-events so that it keeps the flags the relay needs:
// without them the primary would stop telling the leader which keys it
// expired, and followers would silently keep keys the primary dropped.
// Other parameters pass unchanged; args is not modified.
func keepExpiryEvents(args [][]byte) [][]byte {
	var out [][]byte
	for i := 2; i+1 < len(args); i += 2 {
		if !strings.EqualFold(string(args[i]), "notify-keyspace-events") {
			continue
		}
		want := withExpiryFlags(string(args[i+1]))
		if want == string(args[i+1]) {
			continue
		}
		if out == nil {
			out = append([][]byte(nil), args...)
		}
		out[i+1] = []byte(want)
	}
	if out == nil {
		return args
	}
	return out
}

// runExpiryRelay follows the primary's expired and evicted events and logs
// a DEL for each key still absent, while this node leads. It reconnects
// until ctx ends.
func (s *Server) runExpiryRelay(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.relayExpiry(ctx)
		if ctx.Err() != nil {
			return
		}
		ev := s.log.Debug()
		if errors.Is(err, errEventsRefused) {
			ev = s.log.Warn()
		}
		ev.Err(err).Dur("retry_in", backoff).Msg("expiry relay: keys the primary expires or evicts are not sent to followers as DEL")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *Server) relayExpiry(ctx context.Context) error {
	conn, br, bw, err := s.dialBackend(ctx, "expiry", false)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(5 * s.cfg.DialTimeout))
	if err := enableExpiryEvents(br, bw); err != nil {
		return err
	}
	writeCommand(bw, []byte("PSUBSCRIBE"), relayPatterns[0], relayPatterns[1])
	if err := bw.Flush(); err != nil {
		return err
	}
	s.relayPatternsOn.Store(true)
	defer s.relayPatternsOn.Store(false)
	conn.SetDeadline(time.Time{})
	for {
		raw, err := readReply(br, nil)
		if err != nil {
			return fmt.Errorf("read keyspace event: %w", err)
		}
		v, _, err := ParseValue(raw)
		if err != nil || v.Kind != Array || len(v.Elems) != 4 || !strings.EqualFold(string(v.Elems[0].Str), "pmessage") {
			continue // subscription confirmations
		}
		db, ok := eventDB(string(v.Elems[2].Str))
		if !ok {
			continue
		}
		s.logIfAbsent(db, append([]byte(nil), v.Elems[3].Str...))
	}
}

// enableExpiryEvents adds the flags the relay needs to the primary's
// notify-keyspace-events, keeping whatever else is configured.
func enableExpiryEvents(br *bufio.Reader, bw *bufio.Writer) error {
	v, err := roundTrip(br, bw, []byte("CONFIG"), []byte("GET"), []byte("notify-keyspace-events"))
	if err != nil {
		return err
	}
	cur := ""
	if v.Kind == Array && len(v.Elems) == 2 {
		cur = string(v.Elems[1].Str)
	}
	want := withExpiryFlags(cur)
	if want == cur {
		return nil
	}
	v, err = roundTrip(br, bw, []byte("CONFIG"), []byte("SET"), []byte("notify-keyspace-events"), []byte(want))
	if err != nil {
		return err
	}
	if v.IsError() {
		return fmt.Errorf("%w: %s", errEventsRefused, v.Str)
	}
	return nil
}

// errEventsRefused means the backend would not turn on keyspace events
// (CONFIG not allowed for the backend user, say).
var errEventsRefused = errors.New("backend refused CONFIG SET notify-keyspace-events")

// eventDB reads the db from a "__keyevent@<db>__:<event>" channel.
func eventDB(channel string) (int, bool) {
	rest, ok := strings.CutPrefix(channel, "__keyevent@")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "__:")
	if !ok {
		return 0, false
	}
	db, err := strconv.Atoi(num)
	return db, err == nil && db >= 0
}

// logIfAbsent asks the primary, in the writer's order, whether key is
// absent in db, and logs DEL key there if it is. Only a leader does.
func (s *Server) logIfAbsent(db int, key []byte) {
	if s.Router() || s.route.load().Mode != RouteLocal || strings.HasPrefix(string(key), reservedPrefix) {
		return
	}
	s.writesInFlight.Add(1)
	if s.route.load().Mode != RouteLocal {
		s.writesInFlight.Add(-1)
		return
	}
	j := newJob()
	j.writes = 1
	j.steps = append(j.steps, step{kind: stepAbsentDel, db: db, args: [][]byte{existsCmd, key}})
	s.writer.submit(j)
	go func() {
		// Nobody reads the reply; the job's buffers go back once done.
		<-j.done
		j.recycle()
	}()
}

var (
	existsCmd = []byte("EXISTS")
	delCmd    = []byte("DEL")
)
