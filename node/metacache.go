package node

import (
	"container/list"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hfcache/hfcache/node/store"
)

// Buckets of the persisted metadata.
const (
	bucketRefs  = "refs"  // repo key + revision → refEntry
	bucketFiles = "files" // repo key + commit + path → fileEntry
	bucketAPI   = "api"   // repo key + endpoint + revision + query → apiEntry
)

// metaCache keeps metadata in memory (bounded LRU, so hits never touch bolt)
// and writes it to the store so a restarted node still knows what its blobs
// are, even while the Hub is unreachable.
//
// Writes go behind the request path: put records the value in memory and
// queues it; run persists the queue in one bolt transaction per batch. A
// cold request used to wait for two bolt commits (two fdatasyncs) between
// the Hub's answer and its first byte. What a crash loses is at most the
// last batch, which the next request asks the Hub for again.
type metaCache struct {
	st       Store
	log      *slog.Logger
	max      int // entries in memory
	maxBytes int // their approximate size in memory

	mu    sync.Mutex
	ll    *list.List
	items map[string]*list.Element
	bytes int // sum of the items' sizes

	wmu     sync.Mutex
	pending map[string]store.MetaPut // by bucket\x00key, last write wins
	running bool                     // run is persisting; otherwise put writes through
	kick    chan struct{}
}

type metaItem struct {
	key  string
	val  any
	size int
}

// sizer is an entry whose memory is mostly a variable-length payload (an
// API answer's body); any other entry counts as entryOverhead bytes.
type sizer interface{ memSize() int }

// entryOverhead is what an entry, its key and the bookkeeping around it
// count for, beyond what memSize says.
const entryOverhead = 256

func memSize(k string, v any) int {
	n := len(k) + entryOverhead
	if s, ok := v.(sizer); ok {
		n += s.memSize()
	}
	return n
}

// newMetaCache keeps up to max entries of up to maxBytes in all in memory;
// what does not fit is read back from the store when asked for.
func newMetaCache(st Store, max, maxBytes int, log *slog.Logger) *metaCache {
	return &metaCache{st: st, log: log, max: max, maxBytes: maxBytes, ll: list.New(), items: make(map[string]*list.Element),
		pending: make(map[string]store.MetaPut), kick: make(chan struct{}, 1)}
}

// metaFlushDelay is how long run gathers writes before a transaction. A
// cold request writes its metadata a millisecond before its fill starts:
// committing at once put a bolt commit (an fdatasync, 1-3 ms on a VM's
// disk, holding one of the process's Ps) in the middle of the request's
// way to its first byte. It also makes fewer, larger transactions.
const metaFlushDelay = 100 * time.Millisecond

// run persists queued writes until ctx ends, then persists what is left.
func (c *metaCache) run(ctx context.Context) {
	c.wmu.Lock()
	c.running = true
	c.wmu.Unlock()
	for {
		select {
		case <-c.kick:
			select {
			case <-time.After(metaFlushDelay):
			case <-ctx.Done():
			}
			c.flush()
		case <-ctx.Done():
			c.wmu.Lock()
			c.running = false
			c.wmu.Unlock()
			c.flush()
			return
		}
	}
}

// flush writes every queued value in one transaction.
func (c *metaCache) flush() {
	c.wmu.Lock()
	if len(c.pending) == 0 {
		c.wmu.Unlock()
		return
	}
	puts := make([]store.MetaPut, 0, len(c.pending))
	for _, p := range c.pending {
		puts = append(puts, p)
	}
	c.pending = make(map[string]store.MetaPut)
	c.wmu.Unlock()
	if err := c.st.PutMetaBatch(puts); err != nil {
		c.log.Warn("persisting metadata", "entries", len(puts), "err", err)
	}
}

// queued returns a value put but not yet persisted; k is bucket\x00key.
func (c *metaCache) queued(k []byte) ([]byte, bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	p, ok := c.pending[string(k)]
	return p.Value, ok
}

// deriver is an entry with fields computed from the persisted ones (not
// persisted themselves): derive runs once, as the entry enters memory.
type deriver interface{ derive() }

func derived[T any](v T) T {
	if d, ok := any(&v).(deriver); ok {
		d.derive()
	}
	return v
}

// get returns the entry at bucket/key, and whether it exists.
func get[T any](c *metaCache, bucket, key string) (T, bool) {
	var buf [384]byte
	return lookup[T](c, append(bucketKey(buf[:0], bucket), key...))
}

// bucketKey starts a lookup key: the bucket, then a 0 byte; the entry's
// key follows.
func bucketKey(b []byte, bucket string) []byte { return append(append(b, bucket...), 0) }

// lookup is get with the whole key ("bucket\x00key") built by the
// caller, usually in a stack array: a hit in memory allocates nothing.
func lookup[T any](c *metaCache, k []byte) (T, bool) {
	var zero T
	c.mu.Lock()
	if e, ok := c.items[string(k)]; ok {
		c.ll.MoveToFront(e)
		v, ok := e.Value.(*metaItem).val.(T)
		c.mu.Unlock()
		return v, ok
	}
	c.mu.Unlock()
	bucket, key, _ := strings.Cut(string(k), "\x00") // a miss: copying is fine
	raw, ok := c.queued(k)
	var err error
	if !ok {
		raw, ok, err = c.st.GetMeta(bucket, key)
	}
	if err != nil {
		c.log.Warn("reading metadata", "bucket", bucket, "err", err)
		return zero, false
	}
	if !ok {
		return zero, false
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		c.log.Warn("decoding metadata", "bucket", bucket, "err", err)
		return zero, false
	}
	v = derived(v)
	c.remember(string(k), v)
	return v, true
}

// put stores the entry in memory and queues it to be persisted (or
// persists it now, when run is not running).
func put[T any](c *metaCache, bucket, key string, v T) {
	k := bucket + "\x00" + key
	c.remember(k, derived(v))
	raw, err := json.Marshal(v)
	if err != nil {
		c.log.Warn("encoding metadata", "bucket", bucket, "err", err)
		return
	}
	c.wmu.Lock()
	if !c.running {
		c.wmu.Unlock()
		if err := c.st.PutMeta(bucket, key, raw); err != nil {
			c.log.Warn("persisting metadata", "bucket", bucket, "err", err)
		}
		return
	}
	c.pending[k] = store.MetaPut{Bucket: bucket, Key: key, Value: raw}
	c.wmu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *metaCache) remember(k string, v any) {
	size := memSize(k, v)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if size > c.maxBytes {
		// Larger than the whole budget: not kept in memory (the store has
		// it), nothing else is pushed out for it, and an older value of k
		// leaves memory.
		if ok {
			c.dropLocked(e)
		}
		return
	}
	if ok {
		it := e.Value.(*metaItem)
		c.bytes += size - it.size
		it.val, it.size = v, size
		c.ll.MoveToFront(e)
	} else {
		c.items[k] = c.ll.PushFront(&metaItem{key: k, val: v, size: size})
		c.bytes += size
	}
	for c.ll.Len() > c.max || c.bytes > c.maxBytes { // the oldest go first
		c.dropLocked(c.ll.Back())
	}
}

func (c *metaCache) dropLocked(e *list.Element) {
	it := e.Value.(*metaItem)
	c.ll.Remove(e)
	delete(c.items, it.key)
	c.bytes -= it.size
}
