// Package store is a node's content-addressed blob store: complete blobs on
// local disk, addressed by their hf.BlobID, within a byte budget.
//
// Layout under Config.Dir:
//
//	blobs/{algo}/{hex[0:2]}/{hex}   complete, verified blobs (0644, dirs 0755)
//	xorbs/{hex[0:2]}/{hex}          sparse Xet xorbs: the chunks held (xorb.go)
//	tmp/                            blobs being filled; wiped at every Open
//	index.db                        bbolt: size, last access and generation of
//	                                every complete blob, the chunks held of
//	                                every xorb, plus the node's metadata
//	                                buckets (PutMeta/GetMeta)
//
// A blob is written through a Fill (Create, WriteAt, Commit). The bytes are
// hashed as they arrive and Commit only moves the file into blobs/ when they
// match the blob's address and declared size, so nothing half-written or
// corrupt is ever visible through Stat or Open. File paths are derived only
// from validated BlobIDs.
//
// The budget covers complete blobs plus the sizes reserved by open fills.
// Create makes room by evicting the least recently used complete blobs that
// are not pinned (opened through Open and not yet closed); blobs the cluster
// does not own (SetOwned) go first. Accesses are recorded in memory and
// persisted in batches by a background flusher, never one bbolt write per
// request. Xorbs held sparsely (xorb.go) are entries of the same LRU and
// budget, pinned while open through OpenXorb.
package store

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	bolt "go.etcd.io/bbolt"
)

// Errors returned by the store, matched with errors.Is.
var (
	ErrNotFound = errors.New("store: blob not found")
	ErrExists   = errors.New("store: blob already stored")
	ErrFilling  = errors.New("store: blob is being filled")
	// ErrNoSpace: Create could not reserve the blob's size even after evicting
	// every unpinned blob.
	ErrNoSpace = errors.New("store: no space within budget")
	// ErrDiskFull wraps ENOSPC/EDQUOT (the OS error is wrapped too).
	ErrDiskFull = errors.New("store: disk full")
	ErrCorrupt  = errors.New("store: content does not match its address")
	ErrClosed   = errors.New("store: closed")
	// ErrInvalid is wrapped by errors about invalid arguments or configuration.
	ErrInvalid = errors.New("store: invalid argument")
	// ErrFillDone is returned by writes to, and commits of, an aborted fill
	// and by writes to a committed one.
	ErrFillDone = errors.New("store: fill already committed or aborted")
)

// Defaults of the optional Config fields.
const (
	DefaultFlushInterval   = 30 * time.Second
	DefaultScanVerifyBytes = 16 << 30

	// lockTimeout bounds the wait for index.db's file lock (another process
	// using the same Dir).
	lockTimeout = 10 * time.Second
)

// Config configures a Store. Zero optional fields take their defaults.
type Config struct {
	// Dir is the data directory.
	Dir string
	// Budget is the byte budget for complete plus reserved blobs; > 0,
	// unless BudgetFor is set.
	Budget int64
	// BudgetFor, with Budget 0, computes the budget once Open has counted
	// the bytes of the blobs already stored (used).
	BudgetFor func(used int64) int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for access times; defaults to time.Now.
	Now func() time.Time
	// FlushInterval is how often access times and evictions are written to
	// the index; DefaultFlushInterval if 0. Close flushes too.
	FlushInterval time.Duration
	// ScanVerifyBytes caps how many bytes of orphan blobs (files under blobs/
	// missing from the index, left by a crash between rename and index
	// write) Open re-hashes before indexing them; orphans past the cap are
	// removed, so a huge directory cannot block startup for long.
	// DefaultScanVerifyBytes if 0; negative: remove every orphan unverified.
	ScanVerifyBytes int64
	// MemoryBlobMax is the largest blob also kept in memory (see memory.go);
	// DefaultMemoryBlobMax if 0.
	MemoryBlobMax int64
	// MemoryBytes bounds the bytes of those in-memory copies;
	// DefaultMemoryBytes if 0, negative for none.
	MemoryBytes int64

	// writeAt replaces (*os.File).WriteAt for fills; tests inject disk errors.
	writeAt func(f *os.File, p []byte, off int64) (int, error)
}

// DefaultConfig is a Config with every optional field set; Dir and Budget
// must still be filled in.
func DefaultConfig() Config {
	return Config{
		Logger:          slog.Default(),
		Now:             time.Now,
		FlushInterval:   DefaultFlushInterval,
		ScanVerifyBytes: DefaultScanVerifyBytes,
		MemoryBlobMax:   DefaultMemoryBlobMax,
		MemoryBytes:     DefaultMemoryBytes,
	}
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: store Dir is empty", ErrInvalid)
	case c.Budget < 0 || (c.Budget == 0 && c.BudgetFor == nil):
		return fmt.Errorf("%w: store Budget %d must be positive", ErrInvalid, c.Budget)
	case c.FlushInterval < 0:
		return fmt.Errorf("%w: store FlushInterval %v is negative", ErrInvalid, c.FlushInterval)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.ScanVerifyBytes == 0 {
		c.ScanVerifyBytes = d.ScanVerifyBytes
	}
	if c.MemoryBlobMax == 0 {
		c.MemoryBlobMax = d.MemoryBlobMax
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = d.MemoryBytes
	}
	if c.writeAt == nil {
		c.writeAt = (*os.File).WriteAt
	}
	return c
}

// Store is a content-addressed blob store. All methods are safe for
// concurrent use.
type Store struct {
	cfg      Config
	log      *slog.Logger
	blobsDir string
	tmpDir   string
	xorbsDir string

	db       *bolt.DB
	dbMu     sync.RWMutex // guards dbClosed; held shared around db use
	dbClosed bool
	flushMu  sync.Mutex // one flush at a time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	tmpSeq    atomic.Uint64

	mu           sync.Mutex
	closed       bool
	entries      map[hf.BlobID]*entry // complete blobs
	lru          lruHeap              // the same entries, oldest access first
	fills        map[hf.BlobID]*Fill  // open fills
	used         int64                // bytes of complete blobs and xorb chunks
	xorbUsed     int64                // bytes of xorb entries (part of used)
	reserved     int64                // bytes reserved by open fills
	pinned       int64                // bytes of complete blobs with pins > 0
	evictions    int64
	evictedBytes int64
	seq          uint64 // access counter, breaks ties between equal access times
	gen          uint64 // last generation handed to a committed blob
	dirty        []*entry
	pendingDel   map[hf.BlobID]uint64 // index deletions not yet flushed: id → generation
	isOwned      func(hf.BlobID) bool
	mem          memoryLRU // in-memory copies of small blobs

	xorbs       map[string]*entry    // xorbs held, by hex hash (also in lru)
	xorbLocks   map[string]*xorbLock // writers of a xorb, by hex hash
	isXorbOwned func(string) bool
	noPunch     bool // hole punching failed as unsupported
}

// entry is one complete blob, or one xorb (xorb != nil, id.Algo xorbAlgo,
// size the bytes of its chunks), guarded by Store.mu.
type entry struct {
	id      hf.BlobID
	size    int64
	atime   int64  // last access, unix nanoseconds
	seq     uint64 // Store.seq at the last access
	gen     uint64 // distinguishes successive incarnations of an id in the index
	pins    int
	dirty   bool // atime not yet flushed
	removed bool
	idx     int // position in Store.lru

	data    []byte        // in-memory copy of a small blob, or nil
	mod     time.Time     // the file's mtime, with data
	memElem *list.Element // e in Store.mem.order, with data

	xorb *xorbState // for a xorb
}

// Open opens (creating if needed) the store in cfg.Dir, cleans up after a
// crash (see package doc and Config.ScanVerifyBytes), evicts down to the
// budget and starts the access-time flusher.
func Open(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// The index is opened first: its file lock keeps a second process away
	// from tmp/ before it is wiped.
	db, err := openIndex(filepath.Join(cfg.Dir, "index.db"))
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:        cfg,
		log:        cfg.Logger,
		blobsDir:   filepath.Join(cfg.Dir, "blobs"),
		tmpDir:     filepath.Join(cfg.Dir, "tmp"),
		xorbsDir:   filepath.Join(cfg.Dir, "xorbs"),
		db:         db,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		entries:    make(map[hf.BlobID]*entry),
		fills:      make(map[hf.BlobID]*Fill),
		pendingDel: make(map[hf.BlobID]uint64),
		xorbs:      make(map[string]*entry),
		xorbLocks:  make(map[string]*xorbLock),
		mem:        memoryLRU{order: list.New(), limit: max(cfg.MemoryBytes, 0)},
	}
	if err := s.scan(); err != nil {
		db.Close()
		return nil, err
	}
	go s.flushLoop(cfg.FlushInterval)
	return s, nil
}

// Close aborts open fills, stops the flusher, persists access times and
// closes the index. It is idempotent. Blobs still open stay readable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		fills := make([]*Fill, 0, len(s.fills))
		for _, f := range s.fills {
			fills = append(fills, f)
		}
		s.mu.Unlock()

		close(s.stop)
		<-s.done
		for _, f := range fills {
			f.Abort()
		}
		if err := s.flush(); err != nil {
			s.log.Warn("store: flushing access times on close", "err", err)
		}
		s.dbMu.Lock()
		s.dbClosed = true
		s.closeErr = s.db.Close()
		s.dbMu.Unlock()
	})
	return s.closeErr
}

// Stat reports the size of a complete blob, from memory.
func (s *Store) Stat(id hf.BlobID) (size int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false
	}
	e, ok := s.entries[id]
	if !ok {
		return 0, false
	}
	return e.size, true
}

// Blob is an open complete blob. It is pinned against eviction until Close.
type Blob struct {
	s      *Store
	e      *entry
	f      *os.File // nil for a blob served from memory
	data   []byte   // the whole blob, for a small one
	mod    time.Time
	closed atomic.Bool
}

// File is the open file, for http.ServeContent or io.SectionReader; nil
// for a small blob served from memory (see Bytes). It must not be closed
// directly; use Blob.Close.
func (b *Blob) File() *os.File { return b.f }

// Bytes is the whole content of a small blob held in memory, or nil. The
// slice is shared: it must not be modified.
func (b *Blob) Bytes() []byte { return b.data }

// ReadAt reads the blob's bytes at off, from memory or the file.
func (b *Blob) ReadAt(p []byte, off int64) (int, error) {
	if b.f != nil {
		return b.f.ReadAt(p, off)
	}
	if off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	n := copy(p, b.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Size is the blob's size in bytes.
func (b *Blob) Size() int64 { return b.e.size }

// ID is the blob's content address.
func (b *Blob) ID() hf.BlobID { return b.e.id }

// ModTime is the file's modification time (when it was stored).
func (b *Blob) ModTime() time.Time { return b.mod }

// Close closes the file and unpins the blob. It is idempotent.
func (b *Blob) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	if b.f != nil {
		err = b.f.Close()
	}
	b.s.mu.Lock()
	b.s.unpinLocked(b.e)
	b.s.mu.Unlock()
	return err
}

// Open opens a complete blob, pins it and records an access.
func (s *Store) Open(id hf.BlobID) (*Blob, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	e, ok := s.entries[id]
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	// Pinned before the file is opened, so eviction cannot unlink it in between.
	s.pinLocked(e)
	s.touchLocked(e)
	if e.data != nil {
		s.memTouchLocked(e)
		b := &Blob{s: s, e: e, data: e.data, mod: e.mod}
		s.mu.Unlock()
		return b, nil
	}
	s.mu.Unlock()

	f, err := s.openPinned(e, s.blobPath(id), id.String())
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != e.size {
		err = fmt.Errorf("%w: %s: file has %d bytes, index says %d", ErrNotFound, id, fi.Size(), e.size)
		s.mu.Lock()
		s.dropLocked(e, "size changed on disk")
		s.mu.Unlock()
	}
	if err != nil {
		f.Close()
		s.mu.Lock()
		s.unpinLocked(e)
		s.mu.Unlock()
		return nil, err
	}
	b := &Blob{s: s, e: e, f: f, mod: fi.ModTime()}
	if !s.keepsInMemory(e.size) {
		return b, nil
	}
	data, err := readWhole(b)
	if err != nil {
		// The file serves this reader; memory can wait for the next one.
		s.log.Warn("store: reading small blob into memory", "blob", id.String(), "err", err)
		return b, nil
	}
	f.Close()
	b.f, b.data = nil, data
	s.mu.Lock()
	s.memAddLocked(e, data, b.mod)
	s.mu.Unlock()
	return b, nil
}

// Remove deletes a complete blob (for example one found corrupt). It leaves
// the index and memory at once and its file is unlinked; readers that have it
// open keep reading the unlinked file.
func (s *Store) Remove(id hf.BlobID) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	e, ok := s.entries[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	s.removeLocked(e)
	s.mu.Unlock()
	s.log.Info("store: removed blob", "blob", id.String(), "size", e.size)
	if err := s.flush(); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("store: persisting removal", "blob", id.String(), "err", err)
	}
	return nil
}

// SetOwned tells eviction which blobs the node is responsible for; blobs for
// which isOwned is false are evicted first. isOwned is called with the
// store's lock held and must not call back into the Store. nil: all owned.
func (s *Store) SetOwned(isOwned func(hf.BlobID) bool) {
	s.mu.Lock()
	s.isOwned = isOwned
	s.mu.Unlock()
}

// Stats is a snapshot of the store's accounting.
type Stats struct {
	Budget       int64 // Config.Budget
	Used         int64 // bytes of complete blobs and xorb chunks
	Reserved     int64 // bytes reserved by open fills and xorb writes
	Pinned       int64 // bytes of complete blobs and xorbs open for reading
	Blobs        int   // complete blobs
	Fills        int   // open fills
	Evictions    int64 // blobs and xorbs evicted since Open
	EvictedBytes int64 // bytes evicted since Open
	Xorbs        int   // xorbs of which chunks are held
	XorbBytes    int64 // bytes of xorb chunks (part of Used)
}

// Stats returns the current accounting.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Budget:       s.cfg.Budget,
		Used:         s.used,
		Reserved:     s.reserved,
		Pinned:       s.pinned,
		Blobs:        len(s.entries),
		Fills:        len(s.fills),
		Evictions:    s.evictions,
		EvictedBytes: s.evictedBytes,
		Xorbs:        len(s.xorbs),
		XorbBytes:    s.xorbUsed,
	}
}

func (s *Store) pinLocked(e *entry) {
	e.pins++
	if e.pins == 1 && !e.removed {
		s.pinned += e.size
	}
}

func (s *Store) unpinLocked(e *entry) {
	e.pins--
	if e.pins == 0 && !e.removed {
		s.pinned -= e.size
	}
}

// touchLocked records an access to e, in memory.
func (s *Store) touchLocked(e *entry) {
	s.seq++
	e.atime = s.cfg.Now().UnixNano()
	e.seq = s.seq
	if !e.dirty {
		e.dirty = true
		s.dirty = append(s.dirty, e)
	}
	s.lru.fix(e)
}

// addLocked makes a complete blob visible.
func (s *Store) addLocked(e *entry) {
	s.entries[e.id] = e
	s.lru.push(e)
	s.used += e.size
}

// removeLocked forgets a complete blob, unlinks its file and queues the
// deletion of its index entry. Unlinking under the lock orders it before any
// later fill of the same id is renamed into place.
func (s *Store) removeLocked(e *entry) {
	s.lru.remove(e)
	path := s.blobPath
	if e.xorb != nil {
		delete(s.xorbs, e.id.Hex)
		s.xorbUsed -= e.size
		path = func(id hf.BlobID) string { return s.xorbPath(id.Hex) }
	} else {
		delete(s.entries, e.id)
	}
	s.used -= e.size
	if e.pins > 0 {
		s.pinned -= e.size
	}
	e.removed = true
	s.memDropLocked(e)
	s.pendingDel[e.id] = e.gen
	if err := os.Remove(path(e.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("store: removing blob file", "blob", e.id.String(), "err", err)
	}
}

// dropLocked removes e if it is still current, after finding its file broken.
func (s *Store) dropLocked(e *entry, reason string) {
	if !s.currentLocked(e) {
		return
	}
	s.log.Warn("store: dropping blob", "blob", e.id.String(), "reason", reason)
	s.removeLocked(e)
}

// blobPath is where a complete blob lives; id must be valid.
func (s *Store) blobPath(id hf.BlobID) string {
	return filepath.Join(s.blobsDir, string(id.Algo), id.Hex[:2], id.Hex)
}

// validID accepts only canonical content addresses, the only input paths
// are derived from.
func validID(id hf.BlobID) error {
	v, err := hf.NewBlobID(id.Algo, id.Hex)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if v != id {
		return fmt.Errorf("%w: content address %s is not canonical", ErrInvalid, id)
	}
	return nil
}

// diskErr marks out-of-space errors with ErrDiskFull.
func diskErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

// syncDir makes a rename in dir durable. Failure only risks losing the
// rename in a crash, which the startup scan handles, so it is logged.
func (s *Store) syncDir(dir string) {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		s.log.Warn("store: syncing directory", "dir", dir, "err", err)
	}
}
