package store

import (
	"container/heap"
	"slices"
)

// Evict evicts unpinned blobs, least recently used first and blobs not owned
// (SetOwned) before owned ones, until Used+Reserved <= target or only pinned
// blobs are left.
func (s *Store) Evict(target int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.evictLocked(target)
}

// evictLocked evicts until used+reserved <= limit and reports whether that
// was reached. Pinned blobs are skipped; blobs being filled are not entries
// and so are never candidates. Files are unlinked under the lock (see
// removeLocked); the index entries are deleted by the next flush.
func (s *Store) evictLocked(limit int64) bool {
	over := func() bool { return s.used+s.reserved > limit }
	if !over() {
		return true
	}
	if s.isOwned != nil || s.isXorbOwned != nil {
		var others []*entry
		for _, e := range s.lru {
			if e.pins == 0 && !s.ownedLocked(e) {
				others = append(others, e)
			}
		}
		slices.SortFunc(others, func(a, b *entry) int {
			if older(a, b) {
				return -1
			}
			return 1
		})
		for _, e := range others {
			if !over() {
				break
			}
			s.evictOneLocked(e)
		}
	}
	var pinned []*entry
	for over() && len(s.lru) > 0 {
		e := s.lru[0]
		if e.pins > 0 {
			heap.Pop(&s.lru)
			pinned = append(pinned, e)
			continue
		}
		s.evictOneLocked(e)
	}
	for _, e := range pinned {
		s.lru.push(e)
	}
	return !over()
}

func (s *Store) evictOneLocked(e *entry) {
	s.removeLocked(e)
	s.evictions++
	s.evictedBytes += e.size
	s.log.Debug("store: evicted", "blob", e.id.String(), "size", e.size)
}

// older orders entries by last access, then by access order.
func older(a, b *entry) bool {
	if a.atime != b.atime {
		return a.atime < b.atime
	}
	return a.seq < b.seq
}

// lruHeap is a min-heap of complete blobs by last access.
type lruHeap []*entry

func (h lruHeap) Len() int           { return len(h) }
func (h lruHeap) Less(i, j int) bool { return older(h[i], h[j]) }
func (h lruHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

// Push and Pop are for container/heap; use push, fix and remove.
func (h *lruHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}

func (h *lruHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

func (h *lruHeap) push(e *entry) { heap.Push(h, e) }

func (h *lruHeap) fix(e *entry) {
	if e.idx >= 0 {
		heap.Fix(h, e.idx)
	}
}

func (h *lruHeap) remove(e *entry) {
	if e.idx >= 0 {
		heap.Remove(h, e.idx)
	}
}
