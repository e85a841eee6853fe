package election

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// KV keys.
const (
	leaderKey     = "leader"
	isrKey        = "isr"
	membersPrefix = "members."
)

// Message headers. nats.go keeps the KV ones unexported.
const (
	// kvOpHeader marks a KV delete ("DEL") or purge ("PURGE").
	kvOpHeader = "KV-Operation"
	kvOpDel    = "DEL"
	// releaseHeader is set on the delete a Release writes, to the epoch
	// released; a delete without it (an operator's `nats kv del`) counts
	// as an expiry.
	releaseHeader = "Replicar-Released"
	// ttlNever exempts a message from the bucket's MaxAge.
	ttlNever = "never"
)

// Options configures NewNATS.
type Options struct {
	// URL is the NATS server or cluster, "nats://host:port[,…]".
	URL string
	// Group is the group name; the bucket is BucketName(Group).
	Group string
	// TTL is the lease TTL (REPLICAR_LEASE_TTL), 3s when zero, at least
	// MinTTL. It is also the bucket's MaxAge: every node of a group must
	// use the same one, and NewNATS refuses a bucket made with another.
	TTL time.Duration
	// Replicas is the bucket's replica count when NewNATS creates it: 1
	// (the default) or 3 (or 5) on a NATS cluster.
	Replicas int
	// Name is the client connection name, shown by the server; "replicar"
	// when empty.
	Name string
	// Logger receives the elector's logs.
	Logger zerolog.Logger
	// NATSOptions are added after the elector's own client options
	// (credentials, TLS).
	NATSOptions []nats.Option
}

// DefaultTTL is the lease TTL when Options.TTL is zero.
const DefaultTTL = 3 * time.Second

func (o *Options) setDefaults() {
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Name == "" {
		o.Name = "replicar"
	}
}

// Validate names the first bad option.
func (o Options) Validate() error {
	if o.URL == "" {
		return errors.New("nats url: empty")
	}
	if err := CheckGroup(o.Group); err != nil {
		return err
	}
	if o.TTL < MinTTL {
		return fmt.Errorf("lease ttl %s: want at least %s", o.TTL, MinTTL)
	}
	switch o.Replicas {
	case 1, 3, 5:
	default:
		return fmt.Errorf("replicas %d: want 1, 3 or 5", o.Replicas)
	}
	return nil
}

// NATSElector is the Elector on a NATS JetStream KV bucket. See the
// package documentation for the keys and the fencing argument.
type NATSElector struct {
	opts   Options
	log    zerolog.Logger
	bucket string
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream
	// base is the origin of the monotonic clock the leases' deadlines are
	// counted from.
	base time.Time

	mu     sync.Mutex
	closed bool
	leases map[*natsLease]struct{}
	// disconnected is closed (and replaced) when the connection drops:
	// requests sent before then will never be answered.
	disconnected chan struct{}

	// renewals tells a campaign when the lease it replaces was last
	// renewed, and stopObserving ends its watch.
	renewals      *renewalObserver
	stopObserving context.CancelFunc
}

var _ Elector = (*NATSElector)(nil)

// NewNATS connects to NATS and opens the group's bucket, creating it when
// missing with MaxAge = TTL and subject delete markers. The client pings
// every TTL/3 (two missed pongs drop the connection) and reconnects
// forever; until the first connection and the bucket are there, it retries
// until ctx ends.
func NewNATS(ctx context.Context, o Options) (*NATSElector, error) {
	o.setDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	e := &NATSElector{
		opts:   o,
		bucket: BucketName(o.Group),
		base:   time.Now(),
		leases: make(map[*natsLease]struct{}),

		disconnected: make(chan struct{}),
	}
	e.log = o.Logger.With().Str("component", "election").Str("group", o.Group).Logger()

	ping := max(o.TTL/3, 100*time.Millisecond)
	copts := []nats.Option{
		nats.Name(o.Name),
		// A partition shows within about 2 × TTL/3 instead of the
		// default 2 minutes × 2.
		nats.PingInterval(ping),
		nats.MaxPingsOutstanding(2),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(min(max(o.TTL/10, 100*time.Millisecond), 2*time.Second)),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(max(o.TTL/2, time.Second)),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			e.mu.Lock()
			close(e.disconnected)
			e.disconnected = make(chan struct{})
			e.mu.Unlock()
			if !nc.IsClosed() {
				e.log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			e.log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
	}
	nc, err := nats.Connect(o.URL, append(copts, o.NATSOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", redactURLs(o.URL), err)
	}
	e.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	e.js = js
	for try, wait := 0, 50*time.Millisecond; ; try, wait = try+1, min(2*wait, time.Second) {
		err = e.openBucket(ctx)
		if err == nil {
			break
		}
		var perm permanentError
		if errors.As(err, &perm) {
			nc.Close()
			return nil, err
		}
		// The client gives up for good on a server that refuses the
		// credentials twice running; retrying would only say "connection
		// closed" for ever, so the reason ends the start instead.
		if nc.IsClosed() {
			cause := nc.LastError()
			if cause == nil {
				cause = nats.ErrConnectionClosed
			}
			return nil, fmt.Errorf("connect nats %s: %w", redactURLs(o.URL), cause)
		}
		if try%10 == 0 {
			e.log.Warn().Err(err).AnErr("nats_error", nc.LastError()).Str("url", redactURLs(o.URL)).Msg("open bucket, retrying")
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("open bucket %s: %w", e.bucket, errors.Join(ctx.Err(), err))
		case <-time.After(wait):
		}
	}
	e.renewals = newRenewalObserver()
	octx, stop := context.WithCancel(context.Background())
	e.stopObserving = stop
	go e.observeLeader(octx, e.renewals)
	e.log.Info().Str("bucket", e.bucket).Dur("ttl", o.TTL).Msg("election ready")
	return e, nil
}

// redactURLs hides the passwords in a comma-separated list of NATS URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// openBucket binds the bucket, creating it when missing, and checks that
// its TTL and markers are what this node needs.
func (e *NATSElector) openBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(e.opts.TTL, 2*time.Second))
	defer cancel()
	kv, err := e.js.KeyValue(ctx, e.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      e.bucket,
			Description: "replicar group " + e.opts.Group + ": leader lease, member directory, ISR",
			History:     1,
			// MaxAge: the leader key and member records expire one TTL
			// after their last write. The ISR is exempt (Nats-TTL: never).
			TTL: e.opts.TTL,
			// Subject delete markers: an expired key leaves a marker, so
			// watchers see it go, and a candidate can tell an expiry
			// from a release. The server wants whole seconds, at least 1.
			LimitMarkerTTL: markerTTL(e.opts.TTL),
			Storage:        jetstream.FileStorage,
			Replicas:       e.opts.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = e.js.KeyValue(ctx, e.bucket) // another node created it first
		}
	}
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		return permanent(fmt.Errorf("bucket %s: the NATS server lacks subject delete markers: replicar needs nats-server 2.11 or later", e.bucket))
	}
	if err != nil {
		return fmt.Errorf("bucket %s: %w", e.bucket, err)
	}
	st, err := e.js.Stream(ctx, "KV_"+e.bucket)
	if err != nil {
		return fmt.Errorf("bucket %s stream: %w", e.bucket, err)
	}
	si := st.CachedInfo()
	if si.Cluster != nil && si.Config.Replicas > 1 && si.Cluster.Leader == "" {
		// A replicated bucket just made has no stream leader for a moment;
		// writes then fail with "no response from stream".
		return fmt.Errorf("bucket %s: no stream leader yet", e.bucket)
	}
	cfg := si.Config
	if cfg.MaxAge != e.opts.TTL {
		// Changing it in place would let a key expire before the fence
		// deadline of a node still on the old TTL. Deleting the bucket
		// restarts revisions, hence epochs, at 1: only with the whole
		// group stopped and its persisted epochs reset.
		return permanent(fmt.Errorf("bucket %s has ttl %s, this node has lease ttl %s: every node of a group needs the same REPLICAR_LEASE_TTL",
			e.bucket, cfg.MaxAge, e.opts.TTL))
	}
	if cfg.SubjectDeleteMarkerTTL <= 0 || !cfg.AllowMsgTTL {
		return permanent(fmt.Errorf("bucket %s has no limit markers (made by something else?)", e.bucket))
	}
	if cfg.Replicas != e.opts.Replicas {
		e.log.Warn().Int("bucket_replicas", cfg.Replicas).Int("want", e.opts.Replicas).Msg("bucket replica count differs; keeping the bucket's")
	}
	e.kv, e.stream = kv, st
	return nil
}

// markerTTL rounds ttl up to whole seconds.
func markerTTL(ttl time.Duration) time.Duration {
	return time.Duration(math.Ceil(ttl.Seconds())) * time.Second
}

type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

func permanent(err error) error { return permanentError{err} }

// Bucket is the KV bucket name.
func (e *NATSElector) Bucket() string { return e.bucket }

// TTL is the lease TTL.
func (e *NATSElector) TTL() time.Duration { return e.opts.TTL }

func (e *NATSElector) subject(key string) string { return "$KV." + e.bucket + "." + key }

func (e *NATSElector) checkOpen() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	return nil
}

// untilDisconnect returns a context that is also cancelled when the
// connection drops, since nothing sent before then will be answered.
func (e *NATSElector) untilDisconnect(ctx context.Context) (context.Context, context.CancelFunc) {
	e.mu.Lock()
	disc := e.disconnected
	e.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-disc:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// since is the monotonic time since base.
func (e *NATSElector) since() time.Duration { return time.Since(e.base) }

// lastMsg reads the last message of a key from the stream leader, nil
// when there is none.
//
// It does not use the direct get API, which KV reads use: on a replicated
// bucket any replica that is about caught up answers direct gets, so they
// may miss the latest acknowledged writes. The stream leader has every
// acknowledged write (until it is deposed, which the CAS that follows a
// read in this package catches). A candidate reading the ISR must see the
// leader's last change of it.
func (e *NATSElector) lastMsg(ctx context.Context, key string) (*jetstream.RawStreamMsg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(e.opts.TTL, 2*time.Second))
		defer cancel()
	}
	req, err := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{e.subject(key)})
	if err != nil {
		return nil, err
	}
	reply, err := e.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+e.bucket, req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("get %s: decode: %w", key, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("get %s: %w", key, resp.Error)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("get %s: empty answer", key)
	}
	m := &jetstream.RawStreamMsg{
		Subject:  resp.Message.Subject,
		Sequence: resp.Message.Sequence,
		Data:     resp.Message.Data,
		Time:     resp.Message.Time,
		Header:   nats.Header{},
	}
	if len(resp.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("get %s: headers: %w", key, err)
		}
	}
	return m, nil
}

// msgOp is the KV operation of a raw message.
func msgOp(h nats.Header) jetstream.KeyValueOp {
	switch h.Get(kvOpHeader) {
	case kvOpDel:
		return jetstream.KeyValueDelete
	case "PURGE":
		return jetstream.KeyValuePurge
	}
	switch h.Get(jetstream.MarkerReasonHeader) {
	case "":
		return jetstream.KeyValuePut
	case "Remove":
		return jetstream.KeyValueDelete
	default: // "MaxAge", "Purge"
		return jetstream.KeyValuePurge
	}
}

// isConflict reports whether err is a failed CAS. Single servers answer
// 10071 ("wrong last sequence"), replicated streams 10164; nats.go maps
// them to ErrKeyExists or ErrKeyRevisionMismatch in some paths and not in
// others, so all are checked.
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return true
		}
	}
	return strings.Contains(err.Error(), "wrong last sequence")
}

func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// decodeLeader decodes a leader value read at rev, filling in the epoch
// when the value (a Create) does not carry it.
func decodeLeader(data []byte, rev uint64, stored time.Time) (LeaderInfo, error) {
	var li LeaderInfo
	if err := json.Unmarshal(data, &li); err != nil {
		return LeaderInfo{}, fmt.Errorf("decode leader at revision %d: %w", rev, err)
	}
	if li.Epoch == 0 {
		li.Epoch = rev
	}
	li.Revision, li.Stored = rev, stored
	return li, nil
}

// Campaign makes one attempt to take the lease. It reads the leader key's
// last message and creates the key by CAS on that revision: the CAS makes
// the read authoritative, so whether the previous holder released the
// lease (a delete carrying releaseHeader) or let it expire is decided on
// what the CAS proved was the latest message.
func (e *NATSElector) Campaign(ctx context.Context, me LeaderInfo) (Leadership, error) {
	if err := e.checkOpen(); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	if err := CheckNode(me.Node); err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	if me.Nonce == "" {
		me.Nonce = newNonce()
	}
	me.Epoch, me.Revision, me.Stored = 0, 0, time.Time{}

	prev, err := e.lastMsg(ctx, leaderKey)
	if err != nil {
		return nil, fmt.Errorf("campaign: read leader: %w", err)
	}
	var prevRev uint64
	released := false
	// renewedAt, when known, is the arrival here of the last renewal of
	// the lease the key held before prev removed it (observer.go).
	var renewedAt time.Duration
	knowRenewal := false
	if prev != nil {
		prevRev = prev.Sequence
		switch msgOp(prev.Header) {
		case jetstream.KeyValuePut:
			holder, err := decodeLeader(prev.Data, prev.Sequence, prev.Time)
			if err != nil {
				return nil, fmt.Errorf("campaign: %w: %w", ErrLeaseHeld, err)
			}
			return nil, fmt.Errorf("campaign: %w: %s holds epoch %d", ErrLeaseHeld, holder.Node, holder.Epoch)
		case jetstream.KeyValueDelete:
			released = prev.Header.Get(releaseHeader) != ""
		}
		if !released {
			renewedAt, knowRenewal = e.renewals.lastRenewalBefore(ctx, prevRev, min(e.opts.TTL/4, 250*time.Millisecond))
		}
	}

	value, err := json.Marshal(me)
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	msg := &nats.Msg{Subject: e.subject(leaderKey), Header: nats.Header{}, Data: value}
	sent := e.since()
	pa, err := e.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(prevRev))
	var epoch uint64
	switch {
	case err == nil:
		epoch = pa.Sequence
	case isConflict(err):
		return nil, fmt.Errorf("campaign: %w: lost the race at revision %d", ErrLeaseHeld, prevRev)
	default:
		// A timeout leaves it open whether the Create was stored: look
		// for our nonce. Were it stored, the lease began after sent.
		rctx, cancel := context.WithTimeout(context.Background(), e.opts.TTL/2)
		cur, rerr := e.lastMsg(rctx, leaderKey)
		cancel()
		if rerr != nil || cur == nil || msgOp(cur.Header) != jetstream.KeyValuePut {
			return nil, fmt.Errorf("campaign: create leader: %w", err)
		}
		li, derr := decodeLeader(cur.Data, cur.Sequence, cur.Time)
		if derr != nil || li.Nonce != me.Nonce || li.Epoch != cur.Sequence {
			return nil, fmt.Errorf("campaign: create leader: %w", err)
		}
		e.log.Warn().Err(err).Uint64("epoch", cur.Sequence).Msg("campaign answer lost, but the create was stored")
		epoch = cur.Sequence
	}

	me.Epoch = epoch
	value, err = json.Marshal(me) // renewals carry the epoch
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	// The old holder has fenced itself one TTL after its last renewal
	// was sent. A release says it already has; a renewal seen here bounds
	// it from this node's clock; otherwise wait a TTL from our own Create,
	// which came after that renewal too.
	serveAt := sent
	switch {
	case released:
	case knowRenewal:
		serveAt = max(sent, renewedAt+e.opts.TTL)
	default:
		serveAt += e.opts.TTL
	}
	l := &natsLease{
		e:       e,
		info:    me,
		value:   value,
		serveAt: serveAt,
		rev:     epoch,
		lost:    make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		pause:   make(chan pauseRequest),
		log:     e.log.With().Str("node", me.Node).Uint64("epoch", epoch).Logger(),
	}
	l.deadline.Store(int64(sent + e.opts.TTL - FenceMargin(e.opts.TTL)))

	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		l.lose(ErrClosed)
		close(l.done)
		return nil, fmt.Errorf("campaign: %w", ErrClosed)
	}
	e.leases[l] = struct{}{}
	e.mu.Unlock()
	l.log.Info().Bool("after_release", released).Bool("renewal_seen", knowRenewal).Uint64("previous_revision", prevRev).
		Time("serve_at", l.ServeAt()).Msg("won the lease")
	go l.run()
	return l, nil
}

func (e *NATSElector) forget(l *natsLease) {
	e.mu.Lock()
	delete(e.leases, l)
	e.mu.Unlock()
}

// WatchLeader watches the leader key; see Elector.
//
// A watch can go quiet without ending: its consumer lives on one NATS
// server, and when that server goes away the client may take many seconds
// to notice. A live leader renews every TTL/4 and each renewal reaches the
// watch, so after staleWatchAfter with nothing the key is read directly
// from the stream; if it moved on, that is sent, and the key is watched
// afresh. A dead leader's expiry therefore reaches its followers even when
// the watch does not.
func (e *NATSElector) WatchLeader(ctx context.Context) (<-chan LeaderInfo, error) {
	if err := e.checkOpen(); err != nil {
		return nil, fmt.Errorf("watch leader: %w", err)
	}
	w, err := e.kv.Watch(ctx, leaderKey)
	if err != nil {
		return nil, fmt.Errorf("watch leader: %w", err)
	}
	out := make(chan LeaderInfo)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		var (
			last     LeaderInfo
			sent     bool // last was sent at least once
			pending  bool // last is not yet sent
			initDone bool
		)
		quiet := time.NewTimer(staleWatchAfter(e.opts.TTL))
		defer quiet.Stop()
		for {
			var send chan<- LeaderInfo
			if pending && initDone {
				send = out
			}
			select {
			case <-ctx.Done():
				return
			case send <- last:
				pending, sent = false, true
			case <-quiet.C:
				quiet.Reset(staleWatchAfter(e.opts.TTL))
				if !initDone {
					continue
				}
				li, err := e.readLeader(ctx)
				if err != nil {
					// The stream is unreachable too: nothing to learn.
					continue
				}
				changed := !sameHolder(li, last)
				if !changed && (li.Revision == last.Revision || !li.Held()) {
					// Nothing the watch missed: the same lease, or still
					// no lease (a removal marker may age out).
					continue
				}
				// A new holder, or renewals the watch never showed.
				e.log.Warn().Uint64("watched_revision", last.Revision).Uint64("stored_revision", li.Revision).
					Str("holder", li.Node).Msg("watch leader: the watch missed a change; watching afresh")
				last = li
				if changed {
					pending = true
				}
				if nw, err := e.kv.Watch(ctx, leaderKey); err == nil {
					_ = w.Stop()
					w = nw
				}
			case entry, ok := <-w.Updates():
				if !ok {
					return
				}
				quiet.Reset(staleWatchAfter(e.opts.TTL))
				if entry == nil {
					initDone = true
					if !sent && !pending {
						pending = true // no leader key at all: send the empty info
					}
					continue
				}
				var li LeaderInfo
				if entry.Operation() == jetstream.KeyValuePut {
					var err error
					li, err = decodeLeader(entry.Value(), entry.Revision(), entry.Created())
					if err != nil {
						e.log.Warn().Err(err).Msg("watch leader: skipping a value")
						continue
					}
				} else {
					li = LeaderInfo{Revision: entry.Revision(), Stored: entry.Created()}
				}
				if (sent || pending) && sameHolder(li, last) {
					last = li // a renewal: newer revision, same leadership
					continue
				}
				last, pending = li, true
			}
		}
	}()
	return out, nil
}

// staleWatchAfter is how long a leader watch may stay quiet before the key
// is read directly: twice the lease TTL, eight missed renewals.
func staleWatchAfter(ttl time.Duration) time.Duration { return 2 * ttl }

// readLeader reads the leader key from the stream itself, as the watch
// would report it: the holder, or no holder at the revision that removed
// it (zero when the key was never written or has aged out unmarked).
func (e *NATSElector) readLeader(ctx context.Context) (LeaderInfo, error) {
	m, err := e.lastMsg(ctx, leaderKey)
	if err != nil || m == nil {
		return LeaderInfo{}, err
	}
	if msgOp(m.Header) == jetstream.KeyValuePut {
		return decodeLeader(m.Data, m.Sequence, m.Time)
	}
	return LeaderInfo{Revision: m.Sequence, Stored: m.Time}, nil
}

// sameHolder reports whether two observations are the same leadership (or
// both empty): a renewal is not a change.
func sameHolder(a, b LeaderInfo) bool {
	return a.Node == b.Node && a.Nonce == b.Nonce && a.Epoch == b.Epoch
}

// Publish writes the member record under members.<node>. It expires one
// TTL after it was written: publish every HeartbeatInterval.
func (e *NATSElector) Publish(ctx context.Context, m Member) error {
	if err := e.checkOpen(); err != nil {
		return fmt.Errorf("publish member: %w", err)
	}
	if err := CheckNode(m.Node); err != nil {
		return fmt.Errorf("publish member: %w", err)
	}
	if m.Updated == 0 {
		m.Updated = time.Now().UnixMilli()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("publish member %s: %w", m.Node, err)
	}
	if _, err := e.kv.Put(ctx, membersPrefix+m.Node, data); err != nil {
		return fmt.Errorf("publish member %s: %w", m.Node, err)
	}
	return nil
}

func decodeMember(entry jetstream.KeyValueEntry) (Member, error) {
	var m Member
	if err := json.Unmarshal(entry.Value(), &m); err != nil {
		return Member{}, fmt.Errorf("decode %s: %w", entry.Key(), err)
	}
	m.Revision, m.Stored = entry.Revision(), entry.Created()
	if m.Node == "" {
		m.Node = strings.TrimPrefix(entry.Key(), membersPrefix)
	}
	return m, nil
}

func sortedMembers(byKey map[string]Member) []Member {
	ms := make([]Member, 0, len(byKey))
	for _, m := range byKey {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Node, b.Node) })
	return ms
}

// Members lists the member records that have not expired, sorted by node.
// It asks the stream leader for the keys (stream info) and then for each
// record, rather than listing through a KV watch: on a replicated bucket a
// watch's consumer may sit on a lagging replica and miss the latest
// records.
func (e *NATSElector) Members(ctx context.Context) ([]Member, error) {
	if err := e.checkOpen(); err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	info, err := e.stream.Info(ctx, jetstream.WithSubjectFilter(e.subject(membersPrefix+">")))
	if err != nil {
		return nil, fmt.Errorf("members: %w", err)
	}
	byKey := make(map[string]Member)
	prefix := e.subject("")
	for subj := range info.State.Subjects {
		key := strings.TrimPrefix(subj, prefix)
		msg, err := e.lastMsg(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("members: %w", err)
		}
		if msg == nil || msgOp(msg.Header) != jetstream.KeyValuePut {
			continue // expired or deleted since the listing
		}
		var m Member
		if err := json.Unmarshal(msg.Data, &m); err != nil {
			e.log.Warn().Err(err).Str("key", key).Msg("members: skipping a record")
			continue
		}
		m.Revision, m.Stored = msg.Sequence, msg.Time
		if m.Node == "" {
			m.Node = strings.TrimPrefix(key, membersPrefix)
		}
		byKey[key] = m
	}
	return sortedMembers(byKey), nil
}

// WatchMembers sends the current member list, then the whole list again
// after every change (a heartbeat, a new member, an expiry). A reader that
// falls behind sees the latest list. The channel closes when ctx ends or
// the elector closes.
func (e *NATSElector) WatchMembers(ctx context.Context) (<-chan []Member, error) {
	if err := e.checkOpen(); err != nil {
		return nil, fmt.Errorf("watch members: %w", err)
	}
	w, err := e.kv.Watch(ctx, membersPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("watch members: %w", err)
	}
	out := make(chan []Member)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		byKey := make(map[string]Member)
		pending, initDone := false, false
		for {
			var send chan<- []Member
			if pending && initDone {
				send = out
			}
			select {
			case <-ctx.Done():
				return
			case send <- sortedMembers(byKey):
				pending = false
			case entry, ok := <-w.Updates():
				if !ok {
					return
				}
				if entry == nil {
					initDone, pending = true, true
					continue
				}
				pending = true
				if entry.Operation() != jetstream.KeyValuePut {
					delete(byKey, entry.Key())
					continue
				}
				m, err := decodeMember(entry)
				if err != nil {
					e.log.Warn().Err(err).Msg("watch members: skipping a record")
					continue
				}
				byKey[entry.Key()] = m
			}
		}
	}()
	return out, nil
}

// ISR reads the ISR key. It returns the revision of the key's last message
// even when that is a delete (with an empty ISR), so that SetISR can
// replace it.
func (e *NATSElector) ISR(ctx context.Context) (ISR, uint64, error) {
	if err := e.checkOpen(); err != nil {
		return ISR{}, 0, fmt.Errorf("read isr: %w", err)
	}
	m, err := e.lastMsg(ctx, isrKey)
	if err != nil {
		return ISR{}, 0, fmt.Errorf("read isr: %w", err)
	}
	if m == nil {
		return ISR{}, 0, nil
	}
	if msgOp(m.Header) != jetstream.KeyValuePut {
		return ISR{}, m.Sequence, nil
	}
	var isr ISR
	if err := json.Unmarshal(m.Data, &isr); err != nil {
		return ISR{}, m.Sequence, fmt.Errorf("read isr: decode revision %d: %w", m.Sequence, err)
	}
	return isr, m.Sequence, nil
}

// SetISR writes the ISR by CAS on prevRev. The message carries
// "Nats-TTL: never", which exempts it from the bucket's MaxAge: the ISR
// must outlive its leader.
func (e *NATSElector) SetISR(ctx context.Context, isr ISR, prevRev uint64) (uint64, error) {
	if err := e.checkOpen(); err != nil {
		return 0, fmt.Errorf("set isr: %w", err)
	}
	if isr.Members == nil {
		isr.Members = []string{}
	}
	data, err := json.Marshal(isr)
	if err != nil {
		return 0, fmt.Errorf("set isr: %w", err)
	}
	msg := &nats.Msg{Subject: e.subject(isrKey), Header: nats.Header{}, Data: data}
	msg.Header.Set(jetstream.MsgTTLHeader, ttlNever)
	pa, err := e.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(prevRev))
	if err != nil {
		if isConflict(err) {
			return 0, fmt.Errorf("set isr at revision %d: %w", prevRev, ErrConflict)
		}
		return 0, fmt.Errorf("set isr: %w", err)
	}
	return pa.Sequence, nil
}

// Close fences and ends every lease still held, without deleting the
// leader key (it expires), and closes the connection, which ends the
// watches.
func (e *NATSElector) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	leases := make([]*natsLease, 0, len(e.leases))
	for l := range e.leases {
		leases = append(leases, l)
	}
	e.mu.Unlock()
	for _, l := range leases {
		l.lose(ErrClosed)
		l.stopRenewing()
	}
	e.stopObserving()
	e.nc.Close()
	return nil
}

// releaseMsg is the delete a Release writes: a KV delete that also names
// the epoch released.
func (e *NATSElector) releaseMsg(epoch uint64) *nats.Msg {
	m := nats.NewMsg(e.subject(leaderKey))
	m.Header.Set(kvOpHeader, kvOpDel)
	m.Header.Set(releaseHeader, strconv.FormatUint(epoch, 10))
	return m
}
