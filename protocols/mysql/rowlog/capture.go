package rowlog

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
)

// Appender is the backlog, as the capture sees it: Append adds one entry
// and returns its offset. The capture calls it from one goroutine, in
// binlog order; the payload is the caller's to keep.
type Appender interface {
	Append(ctx context.Context, payload []byte) (uint64, error)
}

// BufferedAppender is an Appender that can also hold entries until Flush.
// The capture then appends the transactions the primary sent in one burst
// (a group commit) and flushes once no event is waiting, so that they
// reach the WAL and the followers together; an entry commits only once
// flushed, so a held COMMIT is never released early.
type BufferedAppender interface {
	Appender
	AppendBuffered(ctx context.Context, payload []byte) (uint64, error)
	Flush() error
}

// Errors of Capture.
var (
	// ErrPositionLost means the primary's binlog no longer holds (or never
	// held) the start position: the binlogs after it were purged, or the
	// backend is not the one the position came from. The backlog cannot be
	// continued from this backend.
	ErrPositionLost = errors.New("rowlog: gtid position not in the primary's binlog")
	// ErrStopped is returned by OffsetOf once Run has returned.
	ErrStopped = errors.New("rowlog: capture stopped")
)

// Config configures a Capture.
type Config struct {
	// Addr is the primary's host:port; User and Password need REPLICATION
	// SLAVE and REPLICATION CLIENT.
	Addr     string
	User     string
	Password string
	// TLS, when set, is used for the binlog and check connections.
	TLS *tls.Config
	// ServerID is the replica server_id the capture registers with. It
	// must differ from every server's and replica's; 0 picks a random one
	// in [2^30, 2^31).
	ServerID uint32
	// Start is the GTID position (@@gtid_binlog_pos syntax, "0-1-57,1-2-9")
	// the capture continues after: the Position of the last entry in the
	// backlog, or the backend's @@gtid_binlog_pos when a new leader starts
	// an empty or foreign backlog (see doc.go). Empty means the whole
	// binlog.
	Start string
	// LastOffset is the offset of the last entry already in the backlog.
	// OffsetOf answers it for transactions at or before Start.
	LastOffset uint64
	// IgnoreDomains are GTID domains whose transactions are never captured
	// (the domain the follower applier logs its DDL in, see apply.Options).
	IgnoreDomains []uint32
	// MinBackoff and MaxBackoff bound the reconnect delay. Defaults 100ms
	// and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Heartbeat is the primary's heartbeat period on the binlog
	// connection, and ReadTimeout how long it may stay silent before the
	// capture reconnects. Defaults 1s and 5s.
	Heartbeat   time.Duration
	ReadTimeout time.Duration
	// Remember is how many recent GTIDs OffsetOf knows the exact offset
	// of. Default 65536.
	Remember int
}

func (c Config) withDefaults() Config {
	if c.ServerID == 0 {
		c.ServerID = 1<<30 + rand.Uint32N(1<<30)
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 5 * time.Second
	}
	if c.Remember <= 0 {
		c.Remember = 1 << 16
	}
	return c
}

// Stats reports a Capture's progress.
type Stats struct {
	Connected bool
	// Position is the GTID position after the last transaction processed.
	Position string
	// LastGTID and LastOffset are those of the last entry appended.
	LastGTID   string
	LastOffset uint64
	// Entries counts entries appended, Skipped the transactions with
	// nothing to capture (only InternalSchema, or an ignored domain).
	Entries    uint64
	Skipped    uint64
	Reconnects int
}

// Capture tails a MariaDB primary's binlog and appends each committed
// transaction as one entry. See doc.go.
type Capture struct {
	cfg    Config
	app    Appender
	logger zerolog.Logger
	db     *sql.DB
	host   string
	port   uint16
	asm    *assembler

	mu      sync.Mutex
	seen    map[uint32]uint64 // domain → last sequence number processed
	recent  map[string]uint64 // gtid → offset
	ring    []string          // recent's keys, oldest first at ringPos
	ringPos int
	changed chan struct{} // closed and replaced on progress
	stopErr error
	stats   Stats
}

// New returns a Capture that appends to app. It connects when Run starts.
func New(cfg Config, app Appender, logger zerolog.Logger) (*Capture, error) {
	cfg = cfg.withDefaults()
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("rowlog: backend address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("rowlog: backend port %q: %w", portStr, err)
	}
	start, err := gomysql.ParseMariadbGTIDSet(cfg.Start)
	if err != nil {
		return nil, fmt.Errorf("rowlog: start position %q: %w", cfg.Start, err)
	}
	pos := start.(*gomysql.MariadbGTIDSet)
	mc := mysql.NewConfig()
	mc.Net, mc.Addr, mc.User, mc.Passwd = "tcp", cfg.Addr, cfg.User, cfg.Password
	mc.Timeout = 5 * time.Second
	mc.TLS = cfg.TLS
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("rowlog: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	c := &Capture{
		cfg: cfg, app: app, logger: logger, db: db, host: host, port: uint16(port),
		asm:     newAssembler(pos, cfg.IgnoreDomains),
		seen:    map[uint32]uint64{},
		recent:  map[string]uint64{},
		ring:    make([]string, 0, min(cfg.Remember, 1024)),
		changed: make(chan struct{}),
	}
	for d, g := range pos.Sets {
		c.seen[d] = g.SequenceNumber
	}
	c.stats.Position = pos.String()
	c.stats.LastOffset = cfg.LastOffset
	return c, nil
}

// Stats returns the capture's counters.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Position is the GTID position after the last transaction processed: a
// restarted capture given it as Start continues with no gap and no
// duplicate.
func (c *Capture) Position() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats.Position
}

// OffsetOf blocks until the transaction with GTID gtid ("0-1001-57") has
// been captured and returns the offset of its entry, so that a client's
// COMMIT can be held until that offset commits.
//
// For a transaction captured long ago (beyond Config.Remember), one
// before Start, or one that had nothing to capture, it returns the offset
// of the last entry appended so far (Config.LastOffset before the first):
// an offset at least as high as the entry's, so waiting for it to commit
// is safe, if a little longer. It fails with ErrStopped once Run has
// returned, and with ctx's error.
func (c *Capture) OffsetOf(ctx context.Context, gtid string) (uint64, error) {
	g, err := gomysql.ParseMariadbGTID(gtid)
	if err != nil || gtid == "" {
		return 0, fmt.Errorf("rowlog: gtid %q: not D-S-N", gtid)
	}
	key := gtidString(*g)
	for {
		c.mu.Lock()
		if off, ok := c.recent[key]; ok {
			c.mu.Unlock()
			return off, nil
		}
		if seq, ok := c.seen[g.DomainID]; ok && seq >= g.SequenceNumber {
			off := c.stats.LastOffset
			c.mu.Unlock()
			return off, nil
		}
		if c.stopErr != nil {
			err := c.stopErr
			c.mu.Unlock()
			return 0, fmt.Errorf("%w: %v", ErrStopped, err)
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Run tails the binlog until ctx ends or an error that retrying cannot
// cure: ErrMisconfigured, ErrPositionLost, ErrUnsupported, ErrNoRowMetadata
// or an error from Append. Connection failures (the primary restarting)
// are retried with backoff from the last transaction processed, so no
// entry is appended twice or skipped. Run must not be called twice.
func (c *Capture) Run(ctx context.Context) error {
	err := c.run(ctx)
	c.db.Close()
	c.mu.Lock()
	c.stopErr = err
	c.stats.Connected = false
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return err
}

func (c *Capture) run(ctx context.Context) error {
	backoff := c.cfg.MinBackoff
	for {
		progressed, err := c.session(ctx)
		c.mu.Lock()
		c.stats.Connected = false
		c.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fatal(err) {
			c.logger.Error().Err(err).Msg("binlog capture stopped")
			return err
		}
		if progressed {
			backoff = c.cfg.MinBackoff
		}
		c.mu.Lock()
		c.stats.Reconnects++
		pos := c.stats.Position
		c.mu.Unlock()
		c.logger.Warn().Err(err).Str("position", pos).Dur("retry_in", backoff).Msg("binlog connection lost; resuming")
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// fatal reports whether err stops Run rather than a reconnect.
func fatal(err error) bool {
	return errors.Is(err, ErrMisconfigured) || errors.Is(err, ErrPositionLost) ||
		errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNoRowMetadata) ||
		errors.Is(err, errAppend) || errors.Is(err, errStream)
}

var (
	errAppend = errors.New("append")
	errStream = errors.New("binlog stream")
)

// session connects once and processes events until an error. progressed
// says whether it got as far as streaming.
func (c *Capture) session(ctx context.Context) (progressed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	info, err := Check(cctx, c.db)
	cancel()
	if err != nil {
		return false, err
	}
	c.asm.reset()
	start := c.asm.pos.Clone()
	if err := behind(start.(*gomysql.MariadbGTIDSet), info.GTIDBinlogPos); err != nil {
		return false, err
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID:                c.cfg.ServerID,
		Flavor:                  gomysql.MariaDBFlavor,
		Host:                    c.host,
		Port:                    c.port,
		User:                    c.cfg.User,
		Password:                c.cfg.Password,
		TLSConfig:               c.cfg.TLS,
		TimestampStringLocation: time.UTC,
		HeartbeatPeriod:         c.cfg.Heartbeat,
		ReadTimeout:             c.cfg.ReadTimeout,
		DisableRetrySync:        true,
		Logger:                  quietLogger(c.logger),
		EventCacheCount:         1024,
	})
	defer syncer.Close()
	streamer, err := syncer.StartSyncGTID(start)
	if err != nil {
		return false, classify(err)
	}
	c.mu.Lock()
	c.stats.Connected = true
	c.mu.Unlock()
	c.logger.Info().Str("position", start.String()).Uint32("server_id", c.cfg.ServerID).Msg("binlog capture streaming")
	// Events come through a channel of our own, whose length says whether
	// more are waiting: the entries are flushed only when none is.
	events := make(chan streamed, 256)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			ev, err := streamer.GetEvent(rctx)
			select {
			case events <- streamed{ev, err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	buffered, _ := c.app.(BufferedAppender)
	held := false
	defer func() {
		// Whatever ends the session, what was appended is flushed: its
		// clients wait on it. A failure leaves the log refusing writes.
		if held {
			_ = buffered.Flush()
		}
	}()
	for {
		var r streamed
		select {
		case r = <-events:
		case <-ctx.Done():
			r.err = ctx.Err()
		}
		if r.err != nil {
			return progressed, classify(r.err)
		}
		progressed = true
		g, err := c.asm.feed(r.ev)
		if err != nil {
			if errors.Is(err, ErrUnsupported) || errors.Is(err, ErrNoRowMetadata) {
				return true, err
			}
			return true, fmt.Errorf("%w: %v", errStream, err)
		}
		if g != nil {
			if err := c.commit(ctx, g, buffered != nil); err != nil {
				return true, err
			}
			held = held || (buffered != nil && g.txn != nil)
		}
		if held && len(events) == 0 {
			held = false
			if err := buffered.Flush(); err != nil {
				return true, fmt.Errorf("%w: %v", errAppend, err)
			}
		}
	}
}

// streamed is one result of the binlog streamer.
type streamed struct {
	ev  *replication.BinlogEvent
	err error
}

// behind refuses a start position the primary's binlog has not reached:
// MariaDB would wait for those sequence numbers and silently skip every
// transaction before them. It happens when the backend was replaced or
// restored from an older backup.
func behind(start *gomysql.MariadbGTIDSet, binlogPos string) error {
	ahead, err := Ahead(start.String(), binlogPos, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", errStream, err)
	}
	if ahead {
		return fmt.Errorf("%w: start %s is ahead of the backend's gtid_binlog_pos %q (backend replaced or restored?)", ErrPositionLost, start, binlogPos)
	}
	return nil
}

// classify turns the primary's refusal of the start position into
// ErrPositionLost; anything else is a connection problem worth a retry.
func classify(err error) error {
	var me *gomysql.MyError
	if errors.As(err, &me) && me.Code == gomysql.ER_MASTER_FATAL_ERROR_READING_BINLOG {
		return fmt.Errorf("%w: %s", ErrPositionLost, me.Message)
	}
	return err
}

// commit appends a completed group's entry and publishes the progress.
//
// With buffer set the entry is appended with AppendBuffered, and the
// caller flushes.
func (c *Capture) commit(ctx context.Context, g *group, buffer bool) error {
	var off uint64
	if g.txn != nil {
		payload, err := Encode(g.txn)
		if err != nil {
			return fmt.Errorf("%w: encode %s: %v", errAppend, g.gtid, err)
		}
		if buffer {
			off, err = c.app.(BufferedAppender).AppendBuffered(ctx, payload)
		} else {
			off, err = c.app.Append(ctx, payload)
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", errAppend, g.gtid, err)
		}
	}
	gt, err := gomysql.ParseMariadbGTID(g.gtid)
	if err != nil {
		return fmt.Errorf("%w: gtid %s: %v", errStream, g.gtid, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[gt.DomainID] = gt.SequenceNumber
	c.stats.Position = g.position
	if g.txn != nil {
		c.stats.Entries++
		c.stats.LastOffset = off
		c.stats.LastGTID = g.gtid
		if len(c.ring) < c.cfg.Remember {
			c.ring = append(c.ring, g.gtid)
		} else {
			delete(c.recent, c.ring[c.ringPos])
			c.ring[c.ringPos] = g.gtid
			c.ringPos = (c.ringPos + 1) % len(c.ring)
		}
		c.recent[g.gtid] = off
	} else {
		c.stats.Skipped++
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}
