package store

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/hfcache/hfcache/hubclient/hf"
	bolt "go.etcd.io/bbolt"
)

// Usage is the total size of the given blobs that are stored.
func (s *Store) Usage(ids []hf.BlobID) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, id := range ids {
		if e, ok := s.entries[id]; ok {
			n += e.size
		}
	}
	return n
}

// EvictAmong evicts unpinned blobs among ids, least recently used first,
// until the stored ones total at most limit (a quota). It returns the bytes
// evicted. Blobs are shared by address, so a blob evicted for one quota is
// gone for every repository that had it.
func (s *Store) EvictAmong(ids []hf.BlobID, limit int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	var cands []*entry
	var total int64
	for _, id := range ids {
		if e, ok := s.entries[id]; ok {
			total += e.size
			if e.pins == 0 {
				cands = append(cands, e)
			}
		}
	}
	slices.SortFunc(cands, func(a, b *entry) int {
		if older(a, b) {
			return -1
		}
		return 1
	})
	var evicted int64
	for _, e := range cands {
		if total <= limit {
			break
		}
		total -= e.size
		evicted += e.size
		s.evictOneLocked(e)
	}
	return evicted
}

// ScanMeta calls fn for every key of a metadata bucket that starts with
// prefix, in key order. fn must not call back into the store.
func (s *Store) ScanMeta(bucket, prefix string, fn func(key string, value []byte)) error {
	if bucket == "" {
		return fmt.Errorf("%w: empty meta bucket", ErrInvalid)
	}
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(metaBucket)).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			fn(string(k), bytes.Clone(v))
		}
		return nil
	})
}
