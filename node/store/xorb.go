package store

// Sparse xorb storage (Xet).
//
// A xorb is a run of serialized chunks (8-byte header + compressed payload)
// of up to ~64 MiB, addressed by a 32-byte hash written as 64 lowercase hex.
// The upstream only serves the byte ranges of a xorb that a reconstruction
// lists, so a node holds xorbs sparsely: some chunks of each, every chunk
// stored at its byte offset within the xorb in the sparse file
//
//	xorbs/{hex[0:2]}/{hex}
//
// next to blobs/. Which chunks are present is recorded in index.db, bucket
// "xorbs" (key: the hex, value: encodeXorbRecord), and in memory as one LRU
// entry per xorb whose size is the sum of the serialized lengths of its
// chunks. Xorbs share the blobs' LRU heap, budget and flusher: they are
// evicted like blobs (unpinned and not owned first), pinned while an
// XorbFile is open, and their access times are persisted in batches.
//
// Crash safety: chunk bytes are fsynced before the index says they are
// present. A crash in between leaves unrecorded bytes in the file, which are
// harmless (rewritten by the next fill); a file without any record is deleted
// by the startup scan, and a record without its file is dropped.
//
// Concurrency: writers of one xorb (PutXorbChunks, VerifyXorbChunks,
// DropXorbChunks) are serialized by a per-xorb lock; readers (XorbChunks,
// OpenXorb) only take Store.mu briefly and never wait for a write. File I/O
// happens outside Store.mu, except unlinking an evicted xorb (as for blobs).
//
// Dropped chunks are freed by punching a hole (fallocate PUNCH_HOLE |
// KEEP_SIZE). While the xorb is open for reading the punch is deferred to
// the last XorbFile.Close, so the chunks an XorbFile listed when it was opened
// stay readable until it is closed; until then the bytes still count against
// the budget. Where punching is unsupported the bytes stay counted until the
// whole xorb is removed (they are forgotten at the next Open).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hfcache/hfcache/hubclient/hf"
	bolt "go.etcd.io/bbolt"
)

// XorbChunk is one chunk of a xorb held by the store.
type XorbChunk struct {
	Index    uint32   // chunk index within the xorb
	Offset   uint64   // byte offset of its serialized form within the xorb
	Len      uint32   // serialized length (header + payload)
	RawLen   uint32   // uncompressed length
	Hash     [32]byte // the chunk's Xet hash (computed by the caller on fill)
	Verified bool     // a file (or the xorb) hash covering it has been checked
}

func (c XorbChunk) end() uint64 { return c.Offset + uint64(c.Len) }

const (
	xorbsBucket = "xorbs"
	// xorbAlgo tags xorb entries' ids (entry.id, pendingDel, atime updates);
	// it is never a valid blob algorithm.
	xorbAlgo hf.Algo = "xorb"
	// maxXorbBytes bounds chunk offsets, a sanity check (xorbs are ~64 MiB).
	maxXorbBytes = 1 << 32
)

// xorbState is the xorb part of an entry, guarded by Store.mu.
type xorbState struct {
	// chunks is sorted by Index and never modified in place: it is replaced,
	// so a snapshot can be handed out and copied outside the lock.
	chunks []XorbChunk
	// holes are byte ranges of dropped chunks not punched yet (the xorb was
	// being read, or punching failed); holeBytes, their total, is part of
	// the entry's size.
	holes     []span
	holeBytes int64
}

func (x *xorbState) size() int64 {
	n := x.holeBytes
	for _, c := range x.chunks {
		n += int64(c.Len)
	}
	return n
}

// xorbLock serializes the writers of one xorb; refs is guarded by Store.mu.
type xorbLock struct {
	mu   sync.Mutex
	refs int
}

func validXorb(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("%w: xorb hash %q is not 64 hex digits", ErrInvalid, h)
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: xorb hash %q is not lowercase hex", ErrInvalid, h)
		}
	}
	return nil
}

func xorbID(h string) hf.BlobID { return hf.BlobID{Algo: xorbAlgo, Hex: h} }

// xorbPath is where a xorb's sparse file lives; h must be valid.
func (s *Store) xorbPath(h string) string {
	return filepath.Join(s.xorbsDir, h[:2], h)
}

// lockXorb takes h's writer lock.
func (s *Store) lockXorb(h string) *xorbLock {
	s.mu.Lock()
	l := s.xorbLocks[h]
	if l == nil {
		l = &xorbLock{}
		s.xorbLocks[h] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	return l
}

// tryLockXorb takes h's writer lock if it is free, else returns nil.
func (s *Store) tryLockXorb(h string) *xorbLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.xorbLocks[h] != nil {
		return nil
	}
	l := &xorbLock{refs: 1}
	l.mu.Lock()
	s.xorbLocks[h] = l
	return l
}

func (s *Store) unlockXorb(h string, l *xorbLock) {
	l.mu.Unlock()
	s.mu.Lock()
	if l.refs--; l.refs == 0 {
		delete(s.xorbLocks, h)
	}
	s.mu.Unlock()
}

// resizeXorbLocked recomputes e's size after its chunks or holes changed.
func (s *Store) resizeXorbLocked(e *entry) {
	n := e.xorb.size()
	d := n - e.size
	e.size = n
	if e.removed {
		return
	}
	s.used += d
	s.xorbUsed += d
	if e.pins > 0 {
		s.pinned += d
	}
}

// ownedLocked reports whether eviction should treat e as owned.
func (s *Store) ownedLocked(e *entry) bool {
	if e.xorb != nil {
		return s.isXorbOwned == nil || s.isXorbOwned(e.id.Hex)
	}
	return s.isOwned == nil || s.isOwned(e.id)
}

// currentLocked reports whether e is still the stored incarnation of its id.
func (s *Store) currentLocked(e *entry) bool {
	if e.xorb != nil {
		return s.xorbs[e.id.Hex] == e
	}
	return s.entries[e.id] == e
}

// SetXorbOwned is SetOwned for xorbs, keyed by the xorb's hex hash: xorbs
// for which isOwned is false are evicted first. Same rules as SetOwned;
// nil (the default): all xorbs owned.
func (s *Store) SetXorbOwned(isOwned func(xorb string) bool) {
	s.mu.Lock()
	s.isXorbOwned = isOwned
	s.mu.Unlock()
}

// PutXorbChunks stores serialized chunks of xorb (64 lowercase hex): data[i]
// is chunks[i]'s serialized bytes, written at chunks[i].Offset in the xorb's
// sparse file. The batch is fsynced, then recorded (verified as
// chunks[i].Verified says) in one index transaction. Chunks already present,
// by Index, are skipped. Space comes out of the budget shared with blobs,
// evicting unpinned entries as Create does: ErrNoSpace if it cannot be made,
// ErrDiskFull for a full disk.
func (s *Store) PutXorbChunks(xorb string, chunks []XorbChunk, data [][]byte) error {
	if err := validXorb(xorb); err != nil {
		return err
	}
	if len(chunks) != len(data) {
		return fmt.Errorf("%w: %d chunks with %d data slices", ErrInvalid, len(chunks), len(data))
	}
	for i, c := range chunks {
		switch {
		case c.Len == 0:
			return fmt.Errorf("%w: xorb %s chunk %d is empty", ErrInvalid, xorb, c.Index)
		case len(data[i]) != int(c.Len):
			return fmt.Errorf("%w: xorb %s chunk %d: %d bytes, Len %d", ErrInvalid, xorb, c.Index, len(data[i]), c.Len)
		case c.end() > maxXorbBytes:
			return fmt.Errorf("%w: xorb %s chunk %d ends at %d", ErrInvalid, xorb, c.Index, c.end())
		}
	}
	if len(chunks) == 0 {
		return nil
	}
	l := s.lockXorb(xorb)
	defer s.unlockXorb(xorb, l)
	err := s.putXorb(xorb, chunks, data)
	if errors.Is(err, errXorbVanished) {
		err = s.putXorb(xorb, chunks, data) // the entry was dropped: start afresh
	}
	return err
}

var errXorbVanished = errors.New("store: xorb file vanished")

// putXorb does PutXorbChunks under the xorb's lock.
func (s *Store) putXorb(xorb string, chunks []XorbChunk, data [][]byte) error {
	// The chunks to write, by position in chunks, first of each Index.
	order := make([]int, len(chunks))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmpIndex(chunks[a].Index, chunks[b].Index) })

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	e := s.xorbs[xorb]
	var cur []XorbChunk
	if e != nil {
		cur = e.xorb.chunks
	}
	var add []int
	for k, i := range order {
		c := chunks[i]
		if k > 0 && chunks[order[k-1]].Index == c.Index {
			continue
		}
		if _, ok := findChunk(cur, c.Index); !ok {
			add = append(add, i)
		}
	}
	if len(add) == 0 {
		if e != nil {
			s.touchLocked(e)
		}
		s.mu.Unlock()
		return nil
	}
	merged := make([]XorbChunk, 0, len(cur)+len(add))
	merged = append(merged, cur...)
	var need int64
	for _, i := range add {
		merged = append(merged, chunks[i])
		need += int64(chunks[i].Len)
	}
	slices.SortFunc(merged, func(a, b XorbChunk) int { return cmpIndex(a.Index, b.Index) })
	for i := 1; i < len(merged); i++ {
		if merged[i-1].end() > merged[i].Offset {
			s.mu.Unlock()
			return fmt.Errorf("%w: xorb %s: chunk %d [%d, %d) overlaps chunk %d at %d", ErrInvalid, xorb,
				merged[i-1].Index, merged[i-1].Offset, merged[i-1].end(), merged[i].Index, merged[i].Offset)
		}
	}
	// Pin the xorb so that making room cannot evict it under the write.
	if e != nil {
		s.pinLocked(e)
	}
	if s.pinned+s.reserved+need > s.cfg.Budget {
		pinned, reserved := s.pinned, s.reserved
		if e != nil {
			s.unpinLocked(e)
		}
		s.mu.Unlock()
		return fmt.Errorf("%w: xorb %s needs %d bytes; budget %d, pinned %d, reserved %d",
			ErrNoSpace, xorb, need, s.cfg.Budget, pinned, reserved)
	}
	s.evictLocked(s.cfg.Budget - need) // succeeds: everything unpinned may go
	s.reserved += need
	s.mu.Unlock()

	fail := func(f *os.File, written []span, err error) error {
		// The bytes are not recorded, so they are only dead weight.
		if e == nil {
			os.Remove(s.xorbPath(xorb))
		} else if f != nil {
			for _, w := range written {
				punchHole(f, w.start, w.end-w.start)
			}
		}
		s.mu.Lock()
		s.reserved -= need
		if e != nil {
			s.unpinLocked(e)
		}
		s.mu.Unlock()
		return err
	}

	path := s.xorbPath(xorb)
	flags := os.O_RDWR
	if e == nil {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if e == nil && errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			f, err = os.OpenFile(path, flags, 0o644)
		}
	}
	if err != nil {
		if e != nil && errors.Is(err, fs.ErrNotExist) {
			fail(nil, nil, err)
			s.mu.Lock()
			s.dropLocked(e, "file missing")
			s.mu.Unlock()
			return errXorbVanished
		}
		return fail(nil, nil, fmt.Errorf("store: xorb %s: %w", xorb, diskErr(err)))
	}
	defer f.Close()
	var written []span
	for _, i := range add {
		c := chunks[i]
		n, err := s.cfg.writeAt(f, data[i], int64(c.Offset))
		if n > 0 {
			written = append(written, span{int64(c.Offset), int64(c.Offset) + int64(n)})
		}
		if err == nil && n < len(data[i]) {
			err = fmt.Errorf("short write: %d of %d bytes", n, len(data[i]))
		}
		if err != nil {
			return fail(f, written, fmt.Errorf("store: write xorb %s chunk %d: %w", xorb, c.Index, diskErr(err)))
		}
	}
	if err := f.Sync(); err != nil {
		return fail(f, written, fmt.Errorf("store: sync xorb %s: %w", xorb, diskErr(err)))
	}
	if e == nil {
		s.syncDir(filepath.Dir(path))
	}

	s.mu.Lock()
	gen := uint64(0)
	if e == nil {
		s.gen++
		gen = s.gen
	} else {
		gen = e.gen
	}
	atime := s.cfg.Now().UnixNano()
	s.mu.Unlock()
	rec := xorbRecord{gen: gen, atime: atime, chunks: merged}
	if err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(xorbsBucket)).Put([]byte(xorb), rec.encode())
	}); err != nil {
		return fail(f, written, fmt.Errorf("store: index xorb %s: %w", xorb, err))
	}

	s.mu.Lock()
	s.reserved -= need
	if e == nil {
		e = &entry{id: xorbID(xorb), atime: atime, gen: gen, idx: -1, xorb: &xorbState{}}
		s.xorbs[xorb] = e
		s.seq++
		e.seq = s.seq
		s.lru.push(e)
	} else {
		s.unpinLocked(e)
		if e.removed { // dropped meanwhile (its file went missing): undo the record
			s.pendingDel[e.id] = e.gen
			s.mu.Unlock()
			return fmt.Errorf("%w: xorb %s was dropped during the write", ErrNotFound, xorb)
		}
		s.touchLocked(e)
	}
	e.xorb.chunks = merged
	if len(e.xorb.holes) > 0 { // rewritten holes are no longer holes
		e.xorb.holes = slices.DeleteFunc(e.xorb.holes, func(h span) bool {
			for _, w := range written {
				if w.start < h.end && h.start < w.end {
					e.xorb.holeBytes -= h.end - h.start
					return true
				}
			}
			return false
		})
	}
	s.resizeXorbLocked(e)
	s.mu.Unlock()
	s.reapHoles(e, f)
	return nil
}

func cmpIndex(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// findChunk finds index i in chunks sorted by Index.
func findChunk(chunks []XorbChunk, i uint32) (int, bool) {
	return slices.BinarySearchFunc(chunks, i, func(c XorbChunk, t uint32) int { return cmpIndex(c.Index, t) })
}

// XorbChunks returns the chunks held for xorb, sorted by Index; nil, nil when
// none. It records an access, in memory.
func (s *Store) XorbChunks(xorb string) ([]XorbChunk, error) {
	if err := validXorb(xorb); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	e := s.xorbs[xorb]
	if e == nil {
		s.mu.Unlock()
		return nil, nil
	}
	s.touchLocked(e)
	cs := e.xorb.chunks
	s.mu.Unlock()
	return slices.Clone(cs), nil
}

// snapshotXorb returns xorb's entry and chunks, or ErrNotFound.
func (s *Store) snapshotXorb(xorb string) (*entry, []XorbChunk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	e := s.xorbs[xorb]
	if e == nil {
		return nil, nil, fmt.Errorf("%w: xorb %s", ErrNotFound, xorb)
	}
	return e, e.xorb.chunks, nil
}

// putXorbRecord rewrites the chunk list of e's index record, unless the
// record is gone or belongs to another incarnation (e was evicted).
func (s *Store) putXorbRecord(e *entry, chunks []XorbChunk) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(xorbsBucket))
		k := []byte(e.id.Hex)
		gen, atime, ok := xorbRecordHeader(b.Get(k))
		if !ok || gen != e.gen {
			return nil
		}
		return b.Put(k, xorbRecord{gen: gen, atime: atime, chunks: chunks}.encode())
	})
}

// VerifyXorbChunks marks the listed chunk indices of xorb verified, in one
// transaction. Indices not held are ignored; ErrNotFound if no chunk of xorb
// is held.
func (s *Store) VerifyXorbChunks(xorb string, idx []uint32) error {
	if err := validXorb(xorb); err != nil {
		return err
	}
	l := s.lockXorb(xorb)
	defer s.unlockXorb(xorb, l)
	e, cur, err := s.snapshotXorb(xorb)
	if err != nil {
		return err
	}
	var next []XorbChunk
	for _, i := range idx {
		k, ok := findChunk(cur, i)
		if !ok || cur[k].Verified || (next != nil && next[k].Verified) {
			continue
		}
		if next == nil {
			next = slices.Clone(cur)
		}
		next[k].Verified = true
	}
	if next == nil {
		return nil
	}
	if err := s.putXorbRecord(e, next); err != nil {
		return fmt.Errorf("store: index xorb %s: %w", xorb, err)
	}
	s.mu.Lock()
	if s.currentLocked(e) {
		e.xorb.chunks = next
	}
	s.mu.Unlock()
	return nil
}

// DropXorbChunks forgets the listed chunk indices of xorb and frees their
// space by punching holes in its file (deferred while the xorb is open for
// reading). Dropping the last chunk removes the xorb. Indices not held are
// ignored; ErrNotFound if no chunk of xorb is held.
func (s *Store) DropXorbChunks(xorb string, idx []uint32) error {
	if err := validXorb(xorb); err != nil {
		return err
	}
	l := s.lockXorb(xorb)
	defer s.unlockXorb(xorb, l)
	e, cur, err := s.snapshotXorb(xorb)
	if err != nil {
		return err
	}
	drop := make(map[uint32]bool, len(idx))
	for _, i := range idx {
		drop[i] = true
	}
	var keep []XorbChunk
	var freed []span
	for _, c := range cur {
		if drop[c.Index] {
			freed = append(freed, span{int64(c.Offset), int64(c.end())})
		} else {
			keep = append(keep, c)
		}
	}
	if len(freed) == 0 {
		return nil
	}
	if len(keep) == 0 {
		s.mu.Lock()
		if s.currentLocked(e) {
			s.removeLocked(e)
		}
		s.mu.Unlock()
		s.log.Debug("store: dropped xorb", "xorb", xorb)
		if err := s.flush(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Warn("store: persisting xorb removal", "xorb", xorb, "err", err)
		}
		return nil
	}
	if err := s.putXorbRecord(e, keep); err != nil {
		return fmt.Errorf("store: index xorb %s: %w", xorb, err)
	}
	s.mu.Lock()
	if !s.currentLocked(e) {
		s.mu.Unlock()
		return nil
	}
	e.xorb.chunks = keep
	for _, h := range freed {
		e.xorb.holes = append(e.xorb.holes, h)
		e.xorb.holeBytes += h.end - h.start
	}
	s.resizeXorbLocked(e)
	s.mu.Unlock()
	s.reapHoles(e, nil)
	return nil
}

// reapHoles punches e's pending holes unless the xorb is being read. The
// caller holds the xorb's lock, so no write to it runs meanwhile. f is the
// xorb's file opened for writing, or nil.
func (s *Store) reapHoles(e *entry, f *os.File) {
	s.mu.Lock()
	if s.closed || e.removed || e.pins > 0 || len(e.xorb.holes) == 0 || s.noPunch {
		s.mu.Unlock()
		return
	}
	holes := e.xorb.holes
	e.xorb.holes = nil
	s.mu.Unlock()

	var err error
	if f == nil {
		f, err = os.OpenFile(s.xorbPath(e.id.Hex), os.O_RDWR, 0)
		if err == nil {
			defer f.Close()
		}
	}
	var left []span
	var punched int64
	for _, h := range holes {
		if err == nil {
			err = punchHole(f, h.start, h.end-h.start)
		}
		if err != nil {
			left = append(left, h)
		} else {
			punched += h.end - h.start
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist): // removed meanwhile
	case punchUnsupported(err):
		if !s.noPunch {
			s.log.Warn("store: cannot punch holes in xorb files; dropped chunks keep their space until the xorb is removed",
				"xorb", e.id.Hex, "err", err)
		}
		s.noPunch = true
	default:
		s.log.Warn("store: punching holes in xorb file; retried later", "xorb", e.id.Hex, "err", err)
	}
	e.xorb.holes = append(e.xorb.holes, left...)
	e.xorb.holeBytes -= punched
	s.resizeXorbLocked(e)
}

// XorbFile is an open xorb's sparse file, read at xorb byte offsets. The xorb
// is pinned against eviction until Close, and the chunks listed by Chunks
// stay readable until then (even if dropped meanwhile).
type XorbFile struct {
	s      *Store
	e      *entry
	f      *os.File
	chunks []XorbChunk
	closed bool
	mu     sync.Mutex
}

// OpenXorb opens xorb's sparse file for reading, pins it and records an
// access.
func (s *Store) OpenXorb(xorb string) (*XorbFile, error) {
	if err := validXorb(xorb); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	e := s.xorbs[xorb]
	if e == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: xorb %s", ErrNotFound, xorb)
	}
	s.pinLocked(e)
	s.touchLocked(e)
	chunks := e.xorb.chunks
	s.mu.Unlock()

	f, err := s.openPinned(e, s.xorbPath(xorb), "xorb "+xorb)
	if err != nil {
		return nil, err
	}
	return &XorbFile{s: s, e: e, f: f, chunks: chunks}, nil
}

// ReadAt reads the xorb's bytes at off (a xorb byte offset). Ranges of
// chunks not held read as zeros or fail with io.EOF.
func (x *XorbFile) ReadAt(p []byte, off int64) (int, error) { return x.f.ReadAt(p, off) }

// File is the open file, for sendfile; it must not be closed directly.
func (x *XorbFile) File() *os.File { return x.f }

// Hash is the xorb's hash, in hex.
func (x *XorbFile) Hash() string { return x.e.id.Hex }

// Chunks lists the chunks held when the xorb was opened, sorted by Index.
// The slice is shared: it must not be modified.
func (x *XorbFile) Chunks() []XorbChunk { return x.chunks }

// Close closes the file and unpins the xorb. It is idempotent.
func (x *XorbFile) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	x.mu.Unlock()
	err := x.f.Close()
	s, e := x.s, x.e
	s.mu.Lock()
	s.unpinLocked(e)
	reap := e.pins == 0 && !e.removed && len(e.xorb.holes) > 0
	s.mu.Unlock()
	// Punch the holes deferred for readers, unless a writer of the xorb is
	// busy: it reaps them when done.
	if reap {
		if l := s.tryLockXorb(e.id.Hex); l != nil {
			s.reapHoles(e, nil)
			s.unlockXorb(e.id.Hex, l)
		}
	}
	return err
}

// Index record of a xorb, version 1:
//
//	[0]      version
//	[1:9]    generation, big endian
//	[9:17]   last access, unix nanoseconds
//	[17:21]  number of chunks n
//	n × 53:  index u32, offset u64, len u32, raw len u32, hash [32], flags u8
//	         (bit 0: verified), sorted by index
type xorbRecord struct {
	gen    uint64
	atime  int64
	chunks []XorbChunk
}

const (
	xorbRecordVersion = 1
	xorbHeaderLen     = 1 + 8 + 8 + 4
	xorbChunkLen      = 4 + 8 + 4 + 4 + 32 + 1
)

func (r xorbRecord) encode() []byte {
	b := make([]byte, xorbHeaderLen, xorbHeaderLen+len(r.chunks)*xorbChunkLen)
	b[0] = xorbRecordVersion
	binary.BigEndian.PutUint64(b[1:], r.gen)
	binary.BigEndian.PutUint64(b[9:], uint64(r.atime))
	binary.BigEndian.PutUint32(b[17:], uint32(len(r.chunks)))
	for _, c := range r.chunks {
		b = binary.BigEndian.AppendUint32(b, c.Index)
		b = binary.BigEndian.AppendUint64(b, c.Offset)
		b = binary.BigEndian.AppendUint32(b, c.Len)
		b = binary.BigEndian.AppendUint32(b, c.RawLen)
		b = append(b, c.Hash[:]...)
		var flags byte
		if c.Verified {
			flags |= 1
		}
		b = append(b, flags)
	}
	return b
}

// xorbRecordHeader decodes a record's generation and access time.
func xorbRecordHeader(b []byte) (gen uint64, atime int64, ok bool) {
	if len(b) < xorbHeaderLen || b[0] != xorbRecordVersion {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b[1:]), int64(binary.BigEndian.Uint64(b[9:])), true
}

func decodeXorbRecord(b []byte) (xorbRecord, bool) {
	gen, atime, ok := xorbRecordHeader(b)
	if !ok {
		return xorbRecord{}, false
	}
	n := int(binary.BigEndian.Uint32(b[17:]))
	if n == 0 || len(b) != xorbHeaderLen+n*xorbChunkLen {
		return xorbRecord{}, false
	}
	r := xorbRecord{gen: gen, atime: atime, chunks: make([]XorbChunk, n)}
	p := b[xorbHeaderLen:]
	for i := range r.chunks {
		c := &r.chunks[i]
		c.Index = binary.BigEndian.Uint32(p)
		c.Offset = binary.BigEndian.Uint64(p[4:])
		c.Len = binary.BigEndian.Uint32(p[12:])
		c.RawLen = binary.BigEndian.Uint32(p[16:])
		copy(c.Hash[:], p[20:52])
		c.Verified = p[52]&1 != 0
		p = p[xorbChunkLen:]
		if c.Len == 0 || c.end() > maxXorbBytes ||
			(i > 0 && (r.chunks[i-1].Index >= c.Index || r.chunks[i-1].end() > c.Offset)) {
			return xorbRecord{}, false
		}
	}
	return r, true
}

// indexKey is where id's record lives: a blob's or a xorb's bucket.
func indexKey(tx *bolt.Tx, id hf.BlobID) (*bolt.Bucket, []byte) {
	if id.Algo == xorbAlgo {
		return tx.Bucket([]byte(xorbsBucket)), []byte(id.Hex)
	}
	return tx.Bucket([]byte(blobsBucket)), []byte(id.String())
}

// recordGen decodes the generation and access time of id's record v.
func recordGen(id hf.BlobID, v []byte) (gen uint64, atime int64, ok bool) {
	if id.Algo == xorbAlgo {
		return xorbRecordHeader(v)
	}
	r, ok := decodeRecord(v)
	return r.gen, r.atime, ok
}

// withATime is id's record v (valid) with its access time replaced.
func withATime(id hf.BlobID, v []byte, atime int64) []byte {
	if id.Algo == xorbAlgo {
		b := append([]byte(nil), v...)
		binary.BigEndian.PutUint64(b[9:], uint64(atime))
		return b
	}
	r, _ := decodeRecord(v)
	r.atime = atime
	return r.encode()
}

// scanXorbs loads the xorb records at Open: a record whose file is missing,
// not a regular file or too short for its chunks is dropped; a file under
// xorbs/ without a record (or that is no xorb path) is deleted.
func (s *Store) scanXorbs(st *scanStats) error {
	if err := os.MkdirAll(s.xorbsDir, 0o755); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var drop []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(xorbsBucket)).ForEach(func(k, v []byte) error {
			h := string(k)
			r, ok := decodeXorbRecord(v)
			if validXorb(h) != nil || !ok {
				drop = append(drop, h)
				return nil
			}
			s.gen = max(s.gen, r.gen)
			e := &entry{id: xorbID(h), atime: r.atime, gen: r.gen, xorb: &xorbState{chunks: r.chunks}}
			e.size = e.xorb.size()
			s.xorbs[h] = e
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: reading index: %w", err)
	}
	for h, e := range s.xorbs {
		path := s.xorbPath(h)
		fi, err := os.Lstat(path)
		last := e.xorb.chunks[len(e.xorb.chunks)-1]
		if err != nil || !fi.Mode().IsRegular() || fi.Size() < int64(last.end()) {
			if err == nil {
				s.log.Warn("store: removing xorb file of unexpected size or type", "xorb", h, "mode", fi.Mode().String(), "size", fi.Size())
				os.RemoveAll(path)
			}
			delete(s.xorbs, h)
			drop = append(drop, h)
		}
	}
	st.xorbsDropped = len(drop)

	stray := func(path string) {
		s.log.Warn("store: removing unindexed path under xorbs", "path", path)
		os.RemoveAll(path)
		st.xorbStrays++
	}
	prefixes, err := os.ReadDir(s.xorbsDir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, p := range prefixes {
		pdir := filepath.Join(s.xorbsDir, p.Name())
		if !p.IsDir() || len(p.Name()) != 2 {
			stray(pdir)
			continue
		}
		files, err := os.ReadDir(pdir)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		for _, d := range files {
			h := d.Name()
			if validXorb(h) != nil || h[:2] != p.Name() || !d.Type().IsRegular() || s.xorbs[h] == nil {
				stray(filepath.Join(pdir, h))
			}
		}
	}
	if len(drop) == 0 {
		return nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(xorbsBucket))
		for _, k := range drop {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: repairing index: %w", diskErr(err))
	}
	return nil
}
