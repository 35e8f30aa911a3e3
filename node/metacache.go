package node

import (
	"container/list"
	"encoding/json"
	"log/slog"
	"sync"
)

// Buckets of the persisted metadata.
const (
	bucketRefs  = "refs"  // repo key + revision → refEntry
	bucketFiles = "files" // repo key + commit + path → fileEntry
	bucketAPI   = "api"   // repo key + endpoint + revision + query → apiEntry
)

// metaCache keeps metadata in memory (bounded LRU, so hits never touch bolt)
// and writes it through to the store so a restarted node still knows what its
// blobs are, even while the Hub is unreachable.
type metaCache struct {
	st  Store
	log *slog.Logger
	max int

	mu    sync.Mutex
	ll    *list.List
	items map[string]*list.Element
}

type metaItem struct {
	key string
	val any
}

func newMetaCache(st Store, max int, log *slog.Logger) *metaCache {
	return &metaCache{st: st, log: log, max: max, ll: list.New(), items: make(map[string]*list.Element)}
}

// get loads bucket/key into out (a pointer to the entry type). It reports
// whether the entry exists.
func get[T any](c *metaCache, bucket, key string) (T, bool) {
	var zero T
	k := bucket + "\x00" + key
	c.mu.Lock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		v, ok := e.Value.(*metaItem).val.(T)
		c.mu.Unlock()
		return v, ok
	}
	c.mu.Unlock()
	raw, ok, err := c.st.GetMeta(bucket, key)
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
	c.remember(k, v)
	return v, true
}

// put stores the entry in memory and persists it.
func put[T any](c *metaCache, bucket, key string, v T) {
	c.remember(bucket+"\x00"+key, v)
	raw, err := json.Marshal(v)
	if err == nil {
		err = c.st.PutMeta(bucket, key, raw)
	}
	if err != nil {
		c.log.Warn("persisting metadata", "bucket", bucket, "err", err)
	}
}

func (c *metaCache) remember(k string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		e.Value.(*metaItem).val = v
		c.ll.MoveToFront(e)
		return
	}
	c.items[k] = c.ll.PushFront(&metaItem{key: k, val: v})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*metaItem).key)
	}
}
