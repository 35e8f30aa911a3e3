package store

import (
	"container/list"
	"io"
	"time"
)

// Small blobs are also kept in memory. A warm hit of a 4 KiB config.json
// served from its file costs open, fstat, a 512-byte read, a header write,
// sendfile and close: six system calls around a few kilobytes, more than
// the bytes themselves. A blob of at most Config.MemoryBlobMax bytes is read
// once, on its first Open, and served from memory afterwards while it stays
// among the most recently used within Config.MemoryBytes. The copy is the
// verified blob's content (it is immutable, being content-addressed), and it
// leaves memory when the blob leaves the store.

// Memory defaults.
const (
	DefaultMemoryBlobMax = 64 << 10
	DefaultMemoryBytes   = 32 << 20
)

// memoryLRU holds the in-memory copies, most recently used at the front.
// Guarded by Store.mu.
type memoryLRU struct {
	order *list.List // of *entry
	bytes int64
	limit int64
}

// keepsInMemory reports whether a blob of this size is served from memory.
func (s *Store) keepsInMemory(size int64) bool {
	return s.mem.limit > 0 && size <= s.cfg.MemoryBlobMax && size <= s.mem.limit
}

// memTouchLocked marks e's copy as just used.
func (s *Store) memTouchLocked(e *entry) {
	if e.memElem != nil {
		s.mem.order.MoveToFront(e.memElem)
	}
}

// memAddLocked keeps data as e's in-memory copy and trims the oldest copies
// down to the limit.
func (s *Store) memAddLocked(e *entry, data []byte, mod time.Time) {
	if e.removed || e.memElem != nil {
		return
	}
	e.data, e.mod = data, mod
	e.memElem = s.mem.order.PushFront(e)
	s.mem.bytes += int64(len(data))
	for s.mem.bytes > s.mem.limit {
		s.memDropLocked(s.mem.order.Back().Value.(*entry))
	}
}

// memDropLocked forgets e's in-memory copy, if any. Blobs already handed
// out keep their slice.
func (s *Store) memDropLocked(e *entry) {
	if e.memElem == nil {
		return
	}
	s.mem.order.Remove(e.memElem)
	s.mem.bytes -= int64(len(e.data))
	e.memElem, e.data = nil, nil
}

// readWhole reads a small blob's file into memory, checking its size.
func readWhole(b *Blob) ([]byte, error) {
	data := make([]byte, b.e.size)
	if _, err := b.f.ReadAt(data, 0); err != nil && !(err == io.EOF && b.e.size == 0) {
		return nil, err
	}
	return data, nil
}
