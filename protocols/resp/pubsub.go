package resp

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
)

// Pub/sub. A subscribing client gets a backend connection of its own; its
// (un)subscribe commands and PINGs go there, and a relay goroutine copies
// everything that connection says (confirmations and messages) into the
// client's reply stream. PUBLISH is an ordinary logged write, so once
// replication runs, subscribers on every node receive it.

type pubsubState struct {
	conn net.Conn
	bw   *bufio.Writer

	mu   sync.Mutex
	cond *sync.Cond
	// The subscriptions the backend has confirmed, by kind.
	channels, patterns, shards map[string]struct{}
	// unsubAcks counts confirmations of unsubscribe-type commands, so the
	// reader can wait until an UNSUBSCRIBE has taken effect.
	unsubAcks int
	dead      bool
	done      chan struct{}
}

func (p *pubsubState) active() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.dead && len(p.channels)+len(p.patterns)+len(p.shards) > 0
}

func (p *pubsubState) close() {
	p.conn.Close()
	<-p.done
}

// subscribe handles a pub/sub command while the client is not subscribed.
func (s *session) subscribe(ctx context.Context, info *CommandInfo, args [][]byte) {
	switch info.Name {
	case "unsubscribe", "punsubscribe", "sunsubscribe":
		if s.pubsub == nil {
			// Not subscribed: Redis confirms with a count of 0.
			kind := info.Name
			if len(args) == 1 {
				out := appendArrayHeader(nil, 3)
				out = appendBulkString(out, kind)
				out = append(out, "$-1\r\n"...)
				out = appendInt(out, 0)
				s.local(out)
				return
			}
			var out []byte
			for _, ch := range args[1:] {
				out = appendArrayHeader(out, 3)
				out = appendBulkString(out, kind)
				out = appendBulk(out, ch)
				out = appendInt(out, 0)
			}
			s.local(out)
			return
		}
	}
	s.drain()
	if s.pubsub == nil {
		conn, br, bw, err := s.srv.dialBackend(ctx, "pubsub", false)
		if err != nil {
			s.localError("ERR backend unavailable: " + err.Error())
			return
		}
		p := &pubsubState{conn: conn, bw: bw, done: make(chan struct{}),
			channels: map[string]struct{}{}, patterns: map[string]struct{}{}, shards: map[string]struct{}{}}
		p.cond = sync.NewCond(&p.mu)
		s.pubsub = p
		go s.relay(p, br)
	}
	s.forwardPubSub(info, args)
}

// handleSubscribed serves a command in subscribed mode, where Redis (RESP2)
// allows only the pub/sub commands, PING, QUIT and RESET.
func (s *session) handleSubscribed(info *CommandInfo, class Class, args [][]byte) bool {
	switch info.Name {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "ping":
		s.drain()
		s.forwardPubSub(info, args)
		return false
	case "quit":
		s.local(appendSimple(nil, "OK"))
		return true
	case "reset":
		s.reset()
		s.local(appendSimple(nil, "RESET"))
		return false
	}
	s.localError("ERR Can't execute '" + info.Name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
	return false
}

// forwardPubSub sends a command on the subscription connection. For an
// unsubscribe it waits until the backend has confirmed it, so the next
// command sees the client's new mode, as it would on Redis.
func (s *session) forwardPubSub(info *CommandInfo, args [][]byte) {
	p := s.pubsub
	p.mu.Lock()
	expect := -1
	switch info.Name {
	case "unsubscribe":
		expect = p.unsubAcks + max(1, countOr(len(args)-1, len(p.channels)))
	case "punsubscribe":
		expect = p.unsubAcks + max(1, countOr(len(args)-1, len(p.patterns)))
	case "sunsubscribe":
		expect = p.unsubAcks + max(1, countOr(len(args)-1, len(p.shards)))
	}
	p.mu.Unlock()
	writeArgs(p.bw, args)
	if err := p.bw.Flush(); err != nil {
		s.localError("ERR backend unavailable: " + err.Error())
		return
	}
	if expect < 0 {
		return
	}
	p.mu.Lock()
	for p.unsubAcks < expect && !p.dead {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

func countOr(n, dflt int) int {
	if n > 0 {
		return n
	}
	return dflt
}

// relay copies the subscription connection's output to the client, keeping
// track of what is subscribed.
func (s *session) relay(p *pubsubState, br *bufio.Reader) {
	defer close(p.done)
	defer func() {
		p.mu.Lock()
		p.dead = true
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	for {
		raw, err := readReply(br, nil)
		if err != nil {
			if !s.closed.Load() {
				s.srv.log.Debug().Err(err).Msg("subscription connection closed")
			}
			return
		}
		if v, _, err := ParseValue(raw); err == nil && v.Kind == Array && len(v.Elems) == 3 && v.Elems[2].Kind == Integer {
			p.track(strings.ToLower(string(v.Elems[0].Str)), string(v.Elems[1].Str))
		}
		// Confirmations and messages go straight to the client; the
		// session wrote every earlier reply before it subscribed.
		s.wmu.Lock()
		if !s.broken {
			_, err := s.bw.Write(raw)
			if err == nil {
				err = s.bw.Flush()
			}
			if err != nil {
				s.broken = true
				s.conn.Close()
			}
		}
		s.wmu.Unlock()
	}
}

func (p *pubsubState) track(kind, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch kind {
	case "subscribe":
		p.channels[name] = struct{}{}
	case "psubscribe":
		p.patterns[name] = struct{}{}
	case "ssubscribe":
		p.shards[name] = struct{}{}
	case "unsubscribe":
		delete(p.channels, name)
		p.unsubAcks++
	case "punsubscribe":
		delete(p.patterns, name)
		p.unsubAcks++
	case "sunsubscribe":
		delete(p.shards, name)
		p.unsubAcks++
	default:
		return
	}
	p.cond.Broadcast()
}
