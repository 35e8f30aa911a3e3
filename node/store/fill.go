package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// readBackChunk is the buffer size for hashing bytes that were written out of
// order and have to be read back from the temp file.
const readBackChunk = 1 << 20

// Create starts filling a blob of the given size. It returns ErrExists if the
// blob is complete and ErrFilling if another Fill for it is open. It reserves
// size bytes of the budget, evicting unpinned blobs as needed, or returns
// ErrNoSpace. The caller writes the content with WriteAt and ends with Commit
// or Abort, then Close.
func (s *Store) Create(id hf.BlobID, size int64) (*Fill, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: negative size %d for %s", ErrInvalid, size, id)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, ErrClosed
	case s.entries[id] != nil:
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrExists, id)
	case s.fills[id] != nil:
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrFilling, id)
	case s.pinned+s.reserved+size > s.cfg.Budget:
		pinned, reserved := s.pinned, s.reserved
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s needs %d bytes; budget %d, pinned %d, reserved %d",
			ErrNoSpace, id, size, s.cfg.Budget, pinned, reserved)
	}
	s.evictLocked(s.cfg.Budget - size) // succeeds: everything unpinned may go
	f := &Fill{
		s:    s,
		id:   id,
		size: size,
		path: filepath.Join(s.tmpDir, string(id.Algo)+"-"+id.Hex+"."+strconv.FormatUint(s.tmpSeq.Add(1), 10)),
		ver:  id.NewVerifier(size),
	}
	f.cond.L = &f.mu
	s.reserved += size
	s.fills[id] = f
	s.mu.Unlock()

	file, err := os.OpenFile(f.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(s.tmpDir, 0o755); err == nil {
			file, err = os.OpenFile(f.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		}
	}
	if err != nil {
		s.releaseFill(f)
		return nil, fmt.Errorf("store: create %s: %w", id, diskErr(err))
	}
	f.mu.Lock()
	f.file = file
	if f.state == fillAborted { // Store.Close got here first
		os.Remove(f.path)
	}
	f.mu.Unlock()
	return f, nil
}

type fillState int

const (
	fillOpen fillState = iota
	fillCommitting
	fillCommitted
	fillAborted
)

// Fill is a blob being written. WriteAt and ReadAt may be called from several
// goroutines. The bytes are hashed as they become contiguous from offset 0,
// so Commit only has to check the result.
//
// A range, once written, must not be rewritten with different bytes.
//
// Commit and Abort leave the file open so that readers can go on calling
// ReadAt; call Close when the last reader is done.
type Fill struct {
	s    *Store
	id   hf.BlobID
	size int64
	file *os.File

	// wmu serializes the writes of parallel streams. The kernel does too
	// (a buffered write holds the inode's lock), but its waiters spin while
	// the holder copies, and on a VM a copy into pages the host has not
	// backed yet is slow: under P3, 14% of the node's CPU samples were that
	// spinning. Waiting here parks the goroutine instead.
	wmu sync.Mutex

	mu       sync.Mutex
	cond     sync.Cond // on mu: state, writers and hashing changes
	path     string    // temp file, then final path after the rename
	state    fillState
	err      error // first write or hash failure: the fill is dead
	writers  int   // WriteAt calls writing outside mu
	hashing  bool  // a goroutine is feeding ver outside mu
	hashed   int64 // bytes [0, hashed) have been fed to ver
	pending  []span
	ver      *hf.Verifier // used only by the goroutine that set hashing
	released bool         // reservation returned (guarded by Store.mu)
	closed   bool
}

// span is a written byte range [start, end).
type span struct{ start, end int64 }

// ID is the content address being filled.
func (f *Fill) ID() hf.BlobID { return f.id }

// Size is the declared size.
func (f *Fill) Size() int64 { return f.size }

// WriteAt writes p at off. Writes past the declared size kill the fill with
// an ErrCorrupt error; a full disk kills it with an ErrDiskFull error. A dead
// fill must be aborted.
func (f *Fill) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	if err := f.usableLocked(); err != nil {
		f.mu.Unlock()
		return 0, err
	}
	if off < 0 {
		f.mu.Unlock()
		return 0, fmt.Errorf("%w: write at negative offset %d", ErrInvalid, off)
	}
	if off > f.size-int64(len(p)) {
		err := fmt.Errorf("%w: %s: write of %d bytes at %d past declared size %d", ErrCorrupt, f.id, len(p), off, f.size)
		f.killLocked(err)
		f.mu.Unlock()
		return 0, err
	}
	f.writers++
	f.mu.Unlock()

	f.wmu.Lock()
	n, err := f.s.cfg.writeAt(f.file, p, off)
	f.wmu.Unlock()

	f.mu.Lock()
	defer f.mu.Unlock()
	f.writers--
	defer f.cond.Broadcast()
	if n > 0 {
		f.addSpanLocked(off, off+int64(n))
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		err = fmt.Errorf("store: write %s: %w", f.id, diskErr(err))
		f.killLocked(err)
		return n, err
	}
	if !f.hashing && f.err == nil && f.state != fillAborted {
		f.advanceLocked(p, off)
	}
	return n, nil
}

// ReadAt reads already written bytes; the caller knows which those are. It
// keeps working after Commit and Abort, until Close.
func (f *Fill) ReadAt(p []byte, off int64) (int, error) {
	return f.file.ReadAt(p, off)
}

// Reopen opens the fill's file once more for reading, as a file
// description of its own: its offset is independent of every other reader's,
// which sendfile needs (it reads from the file's offset). It keeps working
// after Commit (the file was renamed) and Abort (removed), until Close. The
// caller closes the file. Linux only (through /proc/self/fd); elsewhere it
// returns an error and callers read with ReadAt.
func (f *Fill) Reopen() (*os.File, error) {
	sc, err := f.file.SyscallConn()
	if err != nil {
		return nil, err
	}
	var rf *os.File
	var oerr error
	if err := sc.Control(func(fd uintptr) {
		rf, oerr = os.Open("/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10))
	}); err != nil {
		return nil, err
	}
	return rf, oerr
}

// Commit checks that exactly the declared size was written and that it hashes
// to the address, then moves the file into place and indexes it. On any
// failure the fill is aborted; a mismatch returns ErrCorrupt. Committing a
// committed fill returns nil.
func (f *Fill) Commit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.state == fillCommitting {
		f.cond.Wait()
	}
	switch f.state {
	case fillCommitted:
		return nil
	case fillAborted:
		return f.doneErrLocked()
	}
	if f.err != nil {
		f.abortLocked()
		return f.err
	}
	f.state = fillCommitting
	for f.writers > 0 || f.hashing {
		f.cond.Wait()
	}
	err := f.err
	switch {
	case err != nil:
	case f.hashed != f.size:
		err = fmt.Errorf("%w: %s: %d contiguous bytes written of %d", ErrCorrupt, f.id, f.hashed, f.size)
	case !f.ver.OK():
		err = fmt.Errorf("%w: %s: the %d bytes written hash differently", ErrCorrupt, f.id, f.size)
	}
	if err == nil {
		f.mu.Unlock()
		err = f.s.commit(f)
		f.mu.Lock()
	}
	if err != nil {
		f.killLocked(err)
		f.abortLocked()
		return err
	}
	f.state = fillCommitted
	f.cond.Broadcast()
	return nil
}

// commit moves a verified fill into place and makes it visible. f is in
// state fillCommitting, so nothing else touches f.path.
func (s *Store) commit(f *Fill) error {
	if err := f.file.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", f.id, diskErr(err))
	}
	final := s.blobPath(f.id)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: %w", diskErr(err))
	}
	if err := os.Rename(f.path, final); err != nil {
		return fmt.Errorf("store: %w", diskErr(err))
	}
	f.mu.Lock()
	f.path = final // an abort from here on removes the renamed file
	f.mu.Unlock()
	s.syncDir(dir)

	s.mu.Lock()
	closed := s.closed
	s.gen++
	e := &entry{id: f.id, size: f.size, atime: s.cfg.Now().UnixNano(), gen: s.gen, idx: -1}
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := s.putIndex(f.id, record{size: e.size, atime: e.atime, gen: e.gen}); err != nil {
		return fmt.Errorf("store: index %s: %w", f.id, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseFillLocked(f)
	s.seq++
	e.seq = s.seq
	s.addLocked(e)
	return nil
}

// Abort removes the temp file and releases the reservation. It is
// idempotent, a no-op after a successful Commit, and waits for a Commit in
// progress to end.
func (f *Fill) Abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.state == fillCommitting {
		f.cond.Wait()
	}
	if f.state == fillOpen {
		f.abortLocked()
	}
}

// Close aborts the fill unless it was committed, waits for writes in flight
// and closes the file. Call it when the last reader is done.
func (f *Fill) Close() error {
	f.Abort()
	f.mu.Lock()
	for f.writers > 0 || f.hashing {
		f.cond.Wait()
	}
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	return f.file.Close()
}

func (f *Fill) abortLocked() {
	f.state = fillAborted
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.s.log.Warn("store: removing aborted fill", "blob", f.id.String(), "path", f.path, "err", err)
	}
	f.s.releaseFill(f)
	f.cond.Broadcast()
}

// killLocked records the first failure; the fill can only be aborted.
func (f *Fill) killLocked(err error) {
	if f.err == nil {
		f.err = err
	}
}

func (f *Fill) usableLocked() error {
	switch {
	case f.state != fillOpen:
		return f.doneErrLocked()
	case f.err != nil:
		return f.err
	}
	return nil
}

func (f *Fill) doneErrLocked() error {
	if f.err != nil {
		return f.err
	}
	return fmt.Errorf("%w: %s", ErrFillDone, f.id)
}

// releaseFill returns f's reservation and forgets it as the id's fill.
func (s *Store) releaseFill(f *Fill) {
	s.mu.Lock()
	s.releaseFillLocked(f)
	s.mu.Unlock()
}

func (s *Store) releaseFillLocked(f *Fill) {
	if f.released {
		return
	}
	f.released = true
	s.reserved -= f.size
	if s.fills[f.id] == f {
		delete(s.fills, f.id)
	}
}

// addSpanLocked records [start, end) as written, merging adjacent spans.
func (f *Fill) addSpanLocked(start, end int64) {
	i, _ := slices.BinarySearchFunc(f.pending, start, func(s span, t int64) int {
		switch {
		case s.start < t:
			return -1
		case s.start > t:
			return 1
		}
		return 0
	})
	f.pending = slices.Insert(f.pending, i, span{start, end})
	// Merge with the previous span, then absorb the following ones.
	if i > 0 && f.pending[i-1].end >= start {
		f.pending[i-1].end = max(f.pending[i-1].end, end)
		f.pending = slices.Delete(f.pending, i, i+1)
		i--
	}
	j := i + 1
	for j < len(f.pending) && f.pending[j].start <= f.pending[i].end {
		f.pending[i].end = max(f.pending[i].end, f.pending[j].end)
		j++
	}
	f.pending = slices.Delete(f.pending, i+1, j)
}

// advanceLocked moves the hashed prefix after the write of p at off. The
// write's own bytes are hashed from memory, by the writer, when they
// continue the prefix: a single stream hashes as it writes, as before. What
// else has become contiguous (bytes other streams wrote out of order) is
// read back and hashed by a goroutine of its own, so the writer that
// closed a gap goes back to its stream at once. (When the writer hashed
// the whole backlog itself, the first chunk's stream of a parallel fill
// spent the fill hashing the other streams' bytes, and every reader
// waited for that chunk.)
func (f *Fill) advanceLocked(p []byte, off int64) {
	if end := off + int64(len(p)); off <= f.hashed && f.hashed < end {
		start := f.hashed
		f.hashing = true
		f.mu.Unlock()
		f.ver.Write(p[start-off:])
		f.mu.Lock()
		f.hashed = end
		f.hashing = false
		f.cond.Broadcast()
	}
	if f.err == nil && f.backlogLocked() {
		f.hashing = true
		go f.hashBacklog()
	}
}

// backlogLocked drops the spans already hashed and reports whether written
// bytes continue the hashed prefix.
func (f *Fill) backlogLocked() bool {
	for len(f.pending) > 0 && f.pending[0].end <= f.hashed {
		f.pending = slices.Delete(f.pending, 0, 1)
	}
	return len(f.pending) > 0 && f.pending[0].start <= f.hashed
}

// hashBacklog reads back and hashes what is contiguous after the prefix,
// including what lands meanwhile. It runs with f.hashing set, which
// Commit and Close wait on.
func (f *Fill) hashBacklog() {
	var buf []byte
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.err == nil && f.backlogLocked() {
		start, end := f.hashed, f.pending[0].end
		f.mu.Unlock()
		err := f.hashRange(&buf, start, end)
		f.mu.Lock()
		if err != nil {
			f.killLocked(fmt.Errorf("store: hash %s: %w", f.id, err))
			break
		}
		f.hashed = end
	}
	f.hashing = false
	f.cond.Broadcast()
}

// hashRange reads bytes [start, end) back from the file into the verifier.
func (f *Fill) hashRange(buf *[]byte, start, end int64) error {
	for start < end {
		if *buf == nil {
			*buf = make([]byte, readBackChunk)
		}
		b := (*buf)[:min(int64(len(*buf)), end-start)]
		n, err := f.file.ReadAt(b, start)
		f.ver.Write(b[:n])
		start += int64(n)
		if n < len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
