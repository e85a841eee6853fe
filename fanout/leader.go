package fanout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/ackpolicy"
	"github.com/replicar/replicar/backlog"
)

// Source is the leader's backlog as the streaming sessions see it. The proxy
// implements it over its backlog.Log (and WAL); every method must be safe for
// concurrent use, since each follower session calls it from its own
// goroutine.
type Source interface {
	// Resume answers a follower's handshake, as backlog.Log.Resume does.
	Resume(lastEpoch, nextOffset uint64) backlog.Decision
	// Read appends to dst the entries from offset from on, payloads
	// capped at maxBytes but at least one entry, as backlog.Log.Read does.
	// Unlike Log.Read, the payloads must stay valid and unchanged until the
	// caller's next Read with the same dst (copy them out of the log, or
	// pin them): the session encodes them after Read returns, without any
	// lock the Source holds. A from older than the retained backlog is
	// backlog.ErrOutOfRetention.
	Read(from uint64, maxBytes int, dst []backlog.Entry) ([]backlog.Entry, error)
	// Last is the position of the newest entry.
	Last() backlog.Position
	// Committed is the offset the ack policy has committed.
	Committed() uint64
	// Epoch is the leader's current epoch.
	Epoch() uint64
	// Appended returns a channel that is closed by the next append after
	// the call. A session takes the channel before reading Last, so it
	// never misses an append.
	Appended() <-chan struct{}
}

// LeaderConfig configures a Leader.
type LeaderConfig struct {
	// Group is the replication group; a HELLO naming another is refused.
	Group string
	// Node is the leader's node id, sent in VERDICT and the tracker's
	// leader.
	Node string
	// Allow, when set, says whether a follower's node id may connect
	// (stream or ask for a snapshot): a non-nil error refuses it with
	// ErrCodeNotMember and the error's text. It may block, for example to
	// read a member directory; ctx ends with the session. An empty node
	// id is always refused.
	Allow func(ctx context.Context, node string) error
	// TLS, when set, makes every connection TLS: the handshake runs
	// within HandshakeTimeout before the first frame. Client certificates
	// are required when it says so (ClientAuth).
	TLS *tls.Config
	// Tracker sets the ISR rules (MaxLag, in-flight window). Its Leader
	// field is set from Node.
	Tracker Config
	// Heartbeat is the interval of HEARTBEAT frames. 0 means 1s.
	Heartbeat time.Duration
	// MaxBatchBytes caps the payload bytes of one ENTRIES frame (a single
	// larger entry still goes alone). 0 means 1 MiB; at most 64 MiB.
	MaxBatchBytes int
	// HandshakeTimeout bounds the wait for HELLO. 0 means 10s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one frame write; a follower that stops reading
	// for longer is disconnected. 0 means 10s.
	WriteTimeout time.Duration
	// AckTimeout is how long a session may go without any frame from the
	// follower (which acks every heartbeat) before it is dropped. 0 means
	// 30s.
	AckTimeout time.Duration
	// Snapshot, when set, serves a follower's SNAPSHOT request: it copies
	// a consistent snapshot into target (the follower's store) and
	// returns the position the copy stands at. nil refuses the request.
	Snapshot func(ctx context.Context, node, target string) (backlog.Position, error)
	// OnAck, when set, is called after an ack moved the tracker, outside
	// the Leader's lock, so the caller can recompute commits (State, then
	// ackpolicy.Commit). It runs on the session's reader goroutine and
	// must not block for long.
	OnAck func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c LeaderConfig) withDefaults() LeaderConfig {
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 1 << 20
	}
	c.MaxBatchBytes = min(c.MaxBatchBytes, 64<<20)
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Tracker.Leader = c.Node
	return c
}

// LeaderStatus is a snapshot of the leader's replication state.
type LeaderStatus struct {
	Epoch     uint64           `json:"epoch"`
	Last      uint64           `json:"last"`
	Committed uint64           `json:"committed"`
	ISR       []string         `json:"isr"`
	Followers []FollowerStatus `json:"followers"`
}

// Leader serves the replication protocol to followers: one session per
// connection, each with a sender goroutine (ENTRIES, HEARTBEAT) and a reader
// goroutine (ACK), so a slow follower only ever holds up its own session.
// The decisions stay in the pure parts: Source.Resume decides the verdict and
// the Tracker, guarded by the Leader's mutex, decides what may be sent and
// who belongs in the ISR.
//
// On any verdict but Continue the session sends VERDICT and closes: a full
// resync (snapshot copy) is orchestrated by the proxy, after which the
// follower reconnects at its new position.
type Leader struct {
	cfg    LeaderConfig
	src    Source
	logger zerolog.Logger

	mu       sync.Mutex
	tracker  *Tracker
	sessions map[string]*leaderSession
}

// NewLeader returns a Leader streaming src. The tracker starts at src's last
// offset.
func NewLeader(cfg LeaderConfig, src Source, logger zerolog.Logger) *Leader {
	cfg = cfg.withDefaults()
	return &Leader{
		cfg:      cfg,
		src:      src,
		logger:   logger,
		tracker:  NewTracker(cfg.Tracker, src.Last().Offset, cfg.Now()),
		sessions: map[string]*leaderSession{},
	}
}

// WithTracker runs fn with the Tracker under the Leader's lock, for Propose,
// SetISR, Remove and the like. fn must not block or call the Leader.
func (l *Leader) WithTracker(fn func(t *Tracker)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(l.tracker)
}

// Appended tells the tracker the backlog now ends at offset. The proxy calls
// it after each append so lag in time is measured from the append; sessions
// also catch up on it themselves before sending.
func (l *Leader) Appended(offset uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tracker.Appended(offset, l.cfg.Now())
}

// State is the tracker's ackpolicy.State for a group of groupSize nodes.
func (l *Leader) State(groupSize int) ackpolicy.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tracker.Appended(l.src.Last().Offset, l.cfg.Now())
	return l.tracker.State(groupSize)
}

// Status is a snapshot of the leader's view of its followers.
func (l *Leader) Status() LeaderStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	l.tracker.Appended(l.src.Last().Offset, now)
	return LeaderStatus{
		Epoch:     l.src.Epoch(),
		Last:      l.tracker.Last(),
		Committed: l.src.Committed(),
		ISR:       l.tracker.ISR(),
		Followers: l.tracker.Followers(now),
	}
}

// Serve accepts followers on ln until ctx ends, then closes ln and every
// session and returns nil once they are gone. An accept error other than
// ctx's end is returned, also after closing the sessions.
func (l *Leader) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.serveConn(ctx, conn)
		}()
	}
}

// leaderSession is one follower connection.
type leaderSession struct {
	node   string
	cancel context.CancelFunc
	// wake is signalled (never blocking) when an ack may have opened the
	// in-flight window.
	wake chan struct{}
}

func (l *Leader) serveConn(ctx context.Context, conn net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	log := l.logger.With().Str("remote", conn.RemoteAddr().String()).Logger()
	conn, err := serverTLS(ctx, conn, l.cfg.TLS, l.cfg.HandshakeTimeout)
	if err != nil {
		log.Warn().Err(err).Msg("replication peer refused")
		return
	}
	w := &frameWriter{conn: conn, timeout: l.cfg.WriteTimeout}
	r := newFrameReader(conn)

	first, err := l.readFirst(conn, r)
	if err != nil {
		log.Debug().Err(err).Msg("handshake failed")
		return
	}
	if first.Type == TypeSnapshot {
		l.serveSnapshot(ctx, conn, w, first.Snapshot, log)
		return
	}
	hello := first.Hello
	if f, ok := l.check(ctx, hello); !ok {
		log.Warn().Str("node", hello.Node).Str("group", hello.Group).Str("reason", f.Error.Message).Msg("follower refused")
		_ = w.write(f)
		return
	}
	log = log.With().Str("follower", hello.Node).Logger()

	d := l.src.Resume(hello.LastEpoch, hello.NextOffset)
	v := Verdict{Verdict: d.Verdict, From: d.From, DivergedAt: d.DivergedAt,
		LeaderEpoch: l.src.Epoch(), LeaderNode: l.cfg.Node}
	if d.Reason != nil {
		v.Reason = d.Reason.Error()
	}
	if err := w.write(Frame{Type: TypeVerdict, Verdict: v}); err != nil {
		log.Debug().Err(err).Msg("send verdict")
		return
	}
	if d.Verdict != backlog.Continue {
		// The proxy orchestrates the resync; the follower comes back
		// with a new position.
		log.Info().Stringer("verdict", d.Verdict).Err(d.Reason).Msg("follower not streamable")
		return
	}

	s := &leaderSession{node: hello.Node, cancel: cancel, wake: make(chan struct{}, 1)}
	l.attach(s, d.From-1)
	defer l.detach(s)
	log.Info().Uint64("from", d.From).Msg("follower streaming")

	var wg sync.WaitGroup
	wg.Add(1)
	var readErr error
	go func() {
		defer wg.Done()
		defer cancel()
		readErr = l.readAcks(ctx, s, conn, r)
	}()
	sendErr := l.stream(ctx, s, w, d.From)
	cancel()
	wg.Wait()
	log.Info().AnErr("send", sendErr).AnErr("read", readErr).Msg("follower session ended")
}

// readFirst reads a connection's first frame: HELLO, or SNAPSHOT on a
// connection that asks for a full resync copy.
func (l *Leader) readFirst(conn net.Conn, r *frameReader) (Frame, error) {
	if err := conn.SetReadDeadline(time.Now().Add(l.cfg.HandshakeTimeout)); err != nil {
		return Frame{}, fmt.Errorf("set read deadline: %w", err)
	}
	f, err := r.next()
	if err != nil {
		return Frame{}, fmt.Errorf("read hello: %w", err)
	}
	if f.Type != TypeHello && f.Type != TypeSnapshot {
		return Frame{}, fmt.Errorf("read hello: got %v", f.Type)
	}
	return f, nil
}

// serveSnapshot runs a follower's full resync copy and answers where it
// stands. The copy can take long; the follower waits for it.
func (l *Leader) serveSnapshot(ctx context.Context, conn net.Conn, w *frameWriter, req Snapshot, log zerolog.Logger) {
	hello := Hello{Protocol: req.Protocol, Group: req.Group, Node: req.Node}
	if f, ok := l.check(ctx, hello); !ok {
		log.Warn().Str("node", req.Node).Str("reason", f.Error.Message).Msg("snapshot request refused")
		_ = w.write(f)
		return
	}
	if l.cfg.Snapshot == nil || req.Target == "" {
		_ = w.write(errorFrame(ErrCodeInternal, "this leader does not serve snapshots"))
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	log.Info().Str("follower", req.Node).Str("target", req.Target).Msg("full resync: copying a snapshot")
	pos, err := l.cfg.Snapshot(ctx, req.Node, req.Target)
	if err != nil {
		log.Warn().Err(err).Str("follower", req.Node).Msg("full resync copy failed")
		_ = w.write(errorFrame(ErrCodeInternal, "snapshot: %v", err))
		return
	}
	_ = w.write(Frame{Type: TypeSnapshotDone, SnapshotDone: SnapshotDone{Epoch: pos.Epoch, Offset: pos.Offset}})
}

// check validates a HELLO, returning the ERROR frame to refuse it with.
func (l *Leader) check(ctx context.Context, h Hello) (Frame, bool) {
	switch {
	case h.Protocol != ProtocolVersion:
		return errorFrame(ErrCodeProtocol, "protocol %d, want %d", h.Protocol, ProtocolVersion), false
	case h.Group != l.cfg.Group:
		return errorFrame(ErrCodeGroup, "group %q, %s serves %q", h.Group, l.cfg.Node, l.cfg.Group), false
	case h.Node == "" || h.Node == l.cfg.Node:
		return errorFrame(ErrCodeProtocol, "bad node id %q", h.Node), false
	}
	if l.cfg.Allow != nil {
		if err := l.cfg.Allow(ctx, h.Node); err != nil {
			return errorFrame(ErrCodeNotMember, "%v", err), false
		}
	}
	return Frame{}, true
}

// attach makes s the node's current session, ending any older one, and
// records the connection in the tracker.
func (l *Leader) attach(s *leaderSession, acked uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.sessions[s.node]; old != nil {
		old.cancel()
	}
	l.sessions[s.node] = s
	now := l.cfg.Now()
	l.tracker.Appended(l.src.Last().Offset, now)
	l.tracker.Connected(s.node, acked, now)
}

func (l *Leader) detach(s *leaderSession) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[s.node] != s {
		return // replaced by a newer session
	}
	delete(l.sessions, s.node)
	_ = l.tracker.Disconnected(s.node, l.cfg.Now())
}

// canSend reports whether s is current and its window has room, syncing the
// tracker with the backlog's end first.
func (l *Leader) canSend(s *leaderSession, last uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tracker.Appended(last, l.cfg.Now())
	return l.sessions[s.node] == s && l.tracker.CanSend(s.node)
}

func (l *Leader) sent(s *leaderSession, offset uint64, size int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[s.node] != s {
		return errors.New("session replaced")
	}
	// The batch was read after canSend looked at the backlog's end, so it
	// may hold entries appended since: the tracker learns of them first.
	l.tracker.Appended(offset, l.cfg.Now())
	return l.tracker.Sent(s.node, offset, size)
}

// stream is the sender: ENTRIES from next on as the window allows,
// HEARTBEAT every cfg.Heartbeat.
func (l *Leader) stream(ctx context.Context, s *leaderSession, w *frameWriter, next uint64) error {
	hb := time.NewTicker(l.cfg.Heartbeat)
	defer hb.Stop()
	var batch []backlog.Entry
	for {
		appended := l.src.Appended()
		last := l.src.Last().Offset
		open := true
		for next <= last {
			if open = l.canSend(s, last); !open {
				break
			}
			var err error
			batch, err = l.src.Read(next, l.cfg.MaxBatchBytes, batch[:0])
			if err != nil {
				// Out of retention while streaming: tell the follower,
				// which reconnects and is told to full-resync.
				_ = w.write(errorFrame(ErrCodeInternal, "read backlog: %v", err))
				return fmt.Errorf("read backlog at %d: %w", next, err)
			}
			if len(batch) == 0 {
				break
			}
			size := 0
			for _, e := range batch {
				size += len(e.Payload)
			}
			// Record the batch as sent before writing it: a fast follower
			// can apply and ack it before the write call returns, and an
			// ack beyond what the tracker knows was sent ends the session.
			end := batch[len(batch)-1].Offset
			if err := l.sent(s, end, size); err != nil {
				return fmt.Errorf("track sent: %w", err)
			}
			f := Frame{Type: TypeEntries, Entries: Entries{Committed: l.src.Committed(), Entries: batch}}
			if err := w.write(f); err != nil {
				return err
			}
			next = end + 1
		}
		if !open {
			// Window full: only an ack can help, not an append.
			appended = nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-appended:
		case <-s.wake:
		case <-hb.C:
			pos := l.src.Last()
			f := Frame{Type: TypeHeartbeat, Heartbeat: Heartbeat{
				Epoch: l.src.Epoch(), Last: pos.Offset, Committed: l.src.Committed(),
				SentUnixNano: l.cfg.Now().UnixNano(),
			}}
			if err := w.write(f); err != nil {
				return err
			}
		}
	}
}

// readAcks is the reader: it feeds ACKs to the tracker until the connection
// fails or the follower says something else.
func (l *Leader) readAcks(ctx context.Context, s *leaderSession, conn net.Conn, r *frameReader) error {
	for {
		if err := conn.SetReadDeadline(time.Now().Add(l.cfg.AckTimeout)); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		f, err := r.next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read ack: %w", err)
		}
		switch f.Type {
		case TypeAck:
		case TypeError:
			return &PeerError{Code: f.Error.Code, Message: f.Error.Message}
		default:
			return fmt.Errorf("read ack: unexpected %v", f.Type)
		}
		if epoch := l.src.Epoch(); f.Ack.Epoch > epoch {
			return fmt.Errorf("ack epoch %d, leader epoch %d: %w", f.Ack.Epoch, epoch, backlog.ErrStaleLeader)
		}
		l.mu.Lock()
		if l.sessions[s.node] != s {
			l.mu.Unlock()
			return errors.New("session replaced")
		}
		err = l.tracker.Ack(s.node, f.Ack.Applied, l.cfg.Now())
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("track ack: %w", err)
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
		if l.cfg.OnAck != nil {
			l.cfg.OnAck()
		}
	}
}
