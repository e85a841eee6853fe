package resp

import (
	"container/list"
	"crypto/sha1"
	"encoding/hex"
	"sync"
)

// DefaultScriptCacheBytes is the memory limit NewScriptCache uses when given
// zero or less: far more than the scripts of real applications, which are a
// few kilobytes each, and small next to any Redis.
const DefaultScriptCacheBytes = 64 << 20

// scriptEntryOverhead is what one cached script costs besides its body: the
// map entry, the list element and the entry itself, rounded up. It makes
// the limit hold for a flood of tiny scripts too.
const scriptEntryOverhead = 160

// ScriptCache maps the SHA1 of each Lua script the proxy has seen to its
// body, so that EVALSHA can be executed and logged as EVAL: a follower then
// runs the script without ever having been sent SCRIPT LOAD, and a primary
// that lost its own script cache (a restart, a failover) still runs it.
//
// It holds at most a fixed number of bytes (bodies plus a per-script
// overhead). Past that it forgets the least recently used scripts; EVALSHA
// of a forgotten script gets NOSCRIPT, and clients then send EVAL again, as
// they do after a Redis restart or SCRIPT FLUSH. Redis 7.0 never forgets a
// script on its own, so a client that counts on SCRIPT LOAD once at start
// and a cache larger than the limit would see more NOSCRIPTs than without
// the proxy.
//
// A ScriptCache is safe for concurrent use. The zero value is not usable;
// call NewScriptCache.
type ScriptCache struct {
	mu    sync.Mutex
	limit int
	used  int
	byID  map[[sha1.Size]byte]*list.Element
	lru   list.List // of *scriptEntry, most recently used first
}

type scriptEntry struct {
	id   [sha1.Size]byte
	body []byte
}

// NewScriptCache returns an empty cache that holds at most limitBytes;
// zero or less means DefaultScriptCacheBytes.
func NewScriptCache(limitBytes int) *ScriptCache {
	if limitBytes <= 0 {
		limitBytes = DefaultScriptCacheBytes
	}
	return &ScriptCache{limit: limitBytes, byID: make(map[[sha1.Size]byte]*list.Element)}
}

// ScriptSHA returns the lower-case hex SHA1 of body: the name Redis gives
// the script in SCRIPT LOAD's reply and EVALSHA.
func ScriptSHA(body []byte) string {
	sum := sha1.Sum(body)
	return hex.EncodeToString(sum[:])
}

// Add records body, copied, under its SHA1 and returns that SHA1 in hex. A
// body larger than the whole limit is not kept.
func (c *ScriptCache) Add(body []byte) string {
	id := sha1.Sum(body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.lru.MoveToFront(e)
		return hex.EncodeToString(id[:])
	}
	cost := len(body) + scriptEntryOverhead
	if cost <= c.limit {
		for c.used+cost > c.limit {
			c.removeLocked(c.lru.Back())
		}
		e := c.lru.PushFront(&scriptEntry{id: id, body: append([]byte(nil), body...)})
		c.byID[id] = e
		c.used += cost
	}
	return hex.EncodeToString(id[:])
}

// Get returns the body of the script whose SHA1 is sha, 40 hex digits in
// either case as EVALSHA accepts them. The body belongs to the cache and
// must not be modified.
func (c *ScriptCache) Get(sha []byte) ([]byte, bool) {
	var id [sha1.Size]byte
	if len(sha) != hex.EncodedLen(sha1.Size) {
		return nil, false
	}
	if _, err := hex.Decode(id[:], sha); err != nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*scriptEntry).body, true
}

// Remove forgets the script with this body, if the cache has it: after the
// primary refused to compile it, EVALSHA of its SHA1 must get NOSCRIPT as
// it does from Redis, not the compile error.
func (c *ScriptCache) Remove(body []byte) {
	id := sha1.Sum(body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.removeLocked(e)
	}
}

// Flush forgets every script, as SCRIPT FLUSH does on the primary.
func (c *ScriptCache) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byID)
	c.lru.Init()
	c.used = 0
}

// Len returns the number of scripts held.
func (c *ScriptCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}

// Bytes returns the memory charged against the limit.
func (c *ScriptCache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// add, get and remove are Add, Get and Remove for a cache that may be nil,
// as Prepare's may be.
func (c *ScriptCache) add(body []byte) {
	if c != nil {
		c.Add(body)
	}
}

func (c *ScriptCache) get(sha []byte) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	return c.Get(sha)
}

func (c *ScriptCache) remove(body []byte) {
	if c != nil && body != nil {
		c.Remove(body)
	}
}

func (c *ScriptCache) removeLocked(e *list.Element) {
	s := c.lru.Remove(e).(*scriptEntry)
	delete(c.byID, s.id)
	c.used -= len(s.body) + scriptEntryOverhead
}
