package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// ErrFillFailed is returned to readers of a fill that could not complete: the
// upstream failed for good, or the bytes did not match their address. Readers
// see it before the last byte of the blob, so no client ever holds a
// complete-looking copy of bad content.
var ErrFillFailed = errors.New("node: fill failed")

// ErrBusy is returned when this node already runs its maximum of upstream
// fills: the client should retry shortly (429 with Retry-After).
var ErrBusy = errors.New("node: too many fills in progress")

// fill is one blob being copied from the Hub into the store. There is at
// most one per blob on a node; every request for the blob reads the partly
// written file as bytes arrive.
type fill struct {
	id   hf.BlobID
	size int64
	w    BlobWriter

	mu       sync.Mutex
	written  int64         // contiguous bytes on disk from offset 0
	changed  chan struct{} // closed and replaced whenever the state changes
	err      error         // terminal failure; unwritten bytes are unavailable
	storeErr error         // the disk refused writes; unwritten bytes come from upstream
	verified bool          // committed: every byte is readable
	finished bool          // the filling goroutine is done
	source   string        // where the bytes come from: upstream or peer

	// What the status page shows of it.
	repo, path string
	started    time.Time

	// Parallel fills: bytes written per chunk of size chunk.
	chunk     int64
	chunkDone []int64
	refs      int // holders of w: readers' Contents and the filler
}

func newFill(id hf.BlobID, size int64, w BlobWriter) *fill {
	return &fill{id: id, size: size, w: w, changed: make(chan struct{}), refs: 1}
}

// state is a consistent snapshot of a fill's progress.
type fillState struct {
	written  int64
	err      error
	storeErr error
	verified bool
	changed  <-chan struct{}
}

func (fl *fill) state() fillState {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fillState{fl.written, fl.err, fl.storeErr, fl.verified, fl.changed}
}

// Source is where the fill gets its bytes (SourcePeer or SourceUpstream).
func (fl *fill) Source() string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.source == "" {
		return SourceUpstream
	}
	return fl.source
}

// update changes the state under the lock and wakes every waiting reader.
func (fl *fill) update(f func()) {
	fl.mu.Lock()
	f()
	fl.wakeLocked()
	fl.mu.Unlock()
}

// wakeLocked wakes every reader waiting for the state to change.
func (fl *fill) wakeLocked() {
	close(fl.changed)
	fl.changed = make(chan struct{})
}

func (fl *fill) acquire() {
	fl.mu.Lock()
	fl.refs++
	fl.mu.Unlock()
}

// release drops a reference; the last one closes the temp or committed file.
func (fl *fill) release() {
	fl.mu.Lock()
	fl.refs--
	last := fl.refs == 0
	fl.mu.Unlock()
	if last {
		fl.w.Close()
	}
}

// startFill returns the fill for f's blob, starting it if none runs. It
// returns (nil, err) when the store cannot take the blob (no space, already
// complete: the caller then opens it or passes through).
func (n *Node) startFill(f *File) (*fill, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if fl, ok := n.fills[f.Blob]; ok {
		fl.acquire()
		n.metrics.fillJoined()
		return fl, nil
	}
	if len(n.fills) >= n.cfg.MaxFills {
		n.metrics.fillRefused()
		return nil, ErrBusy
	}
	w, err := n.store.Create(f.Blob, f.Size)
	if err != nil {
		return nil, err
	}
	fl := newFill(f.Blob, f.Size, w)
	fl.repo, fl.path, fl.started = f.Repo.Key(), string(f.Path), n.cfg.Now()
	fl.refs++ // the caller's
	n.fills[f.Blob] = fl
	n.metrics.fillStarted()
	n.wg.Add(1)
	go n.runFill(fl, *f)
	return fl, nil
}

// runFill copies the blob from the Hub, verifies and commits it.
func (n *Node) runFill(fl *fill, f File) {
	defer n.wg.Done()
	start := n.cfg.Now()
	err := n.copyUpstream(fl, &f)
	if err == nil {
		// The bytes are verified: a disk that fills up now (fsync, rename,
		// index) is a disk error like a failed write, not a bad fill.
		if err = fl.w.Commit(); errors.Is(err, store.ErrDiskFull) {
			err = &diskError{err}
		}
	}
	n.metrics.fillDone(err)
	// A failed fill leaves the table before its readers hear of it: a
	// client retrying at once then starts a new fill instead of joining
	// this one and getting its error again.
	forget := func() {
		n.mu.Lock()
		if n.fills[fl.id] == fl {
			delete(n.fills, fl.id)
		}
		n.mu.Unlock()
	}
	var diskErr *diskError
	switch {
	case err == nil:
		fl.update(func() { fl.verified = true })
		n.countAgainstQuota(f.repository, fl.id, fl.size)
		n.log.Info("blob filled", "blob", fl.id, "repo", f.Repo, "path", f.Path, "bytes", fl.size, "took", n.cfg.Now().Sub(start))
	case errors.As(err, &diskErr):
		fl.w.Abort()
		forget()
		fl.update(func() { fl.storeErr = err })
		n.log.Error("store refused blob, passing bytes through", "blob", fl.id, "err", err)
		n.RecordError(RecentError{Kind: "fill", Repo: fl.repo, Path: fl.path, Detail: err.Error()})
	case errors.Is(err, errNotHeld):
		fl.w.Abort()
		forget()
		fl.update(func() { fl.err = fmt.Errorf("%w: %w", ErrFillFailed, err) })
		n.hot.forget(fl.id)
		n.log.Info("hot copy postponed: no peer holds the blob yet", "blob", fl.id)
	default:
		fl.w.Abort()
		forget()
		fl.update(func() { fl.err = fmt.Errorf("%w: %w", ErrFillFailed, err) })
		n.log.Error("fill failed", "blob", fl.id, "repo", f.Repo, "path", f.Path, "err", err)
		n.RecordError(RecentError{Kind: "fill", Repo: fl.repo, Path: fl.path, Detail: err.Error()})
	}
	forget()
	fl.update(func() { fl.finished = true })
	fl.release()
}

// diskError marks a failure to write to the local store (as opposed to the
// upstream failing): readers can still be served, straight from upstream.
type diskError struct{ err error }

func (e *diskError) Error() string { return "writing to store: " + e.err.Error() }
func (e *diskError) Unwrap() error { return e.err }

// copyUpstream streams the blob from the Hub into the fill, resuming with a
// Range after a broken connection, up to FillRetries times without progress.
func (n *Node) copyUpstream(fl *fill, f *File) error {
	buf := make([]byte, 256<<10)
	if err := n.copyFromPeers(fl, f, buf); err != nil {
		return err
	}
	if err := n.copyFromXet(fl, f, buf); err != nil {
		return err
	}
	if f.peerOnly && fl.state().written < fl.size {
		return errNotHeld
	}
	if s, c := n.cfg.FillStreams, n.cfg.FillChunk; s > 1 && c > 0 && fl.size >= 2*c && fl.state().written == 0 {
		err := n.copyParallel(fl, f, s, c)
		if err == nil || !errors.Is(err, errSequential) {
			return err
		}
		n.log.Info("upstream ignores Range, filling with one stream", "blob", fl.id)
	}
	failures := 0
	for {
		off := fl.state().written
		if off == fl.size {
			return nil
		}
		body, skip, err := n.openUpstream(f, off)
		if err != nil {
			if !retryable(err) || failures >= n.cfg.FillRetries {
				return err
			}
			failures++
			if err := n.backoff(failures, err); err != nil {
				return err
			}
			continue
		}
		if body.Size >= 0 && body.Size != fl.size {
			body.Close()
			return fmt.Errorf("%w: upstream size %d, expected %d", hubclient.ErrBadResponse, body.Size, fl.size)
		}
		progressed, err := copyBody(fl, body, buf, off, skip)
		body.Close()
		if err == nil {
			continue // body ended: done, or resume from where it stopped
		}
		var diskErr *diskError
		if errors.As(err, &diskErr) || errors.Is(err, hubclient.ErrBadResponse) {
			return err
		}
		if progressed {
			failures = 0
		}
		if failures >= n.cfg.FillRetries {
			return err
		}
		failures++
		n.log.Warn("upstream stream broke, resuming", "blob", fl.id, "offset", fl.state().written, "err", err)
		if err := n.backoff(failures, err); err != nil {
			return err
		}
	}
}

// copyFromPeers copies the blob from a node that holds it on disk: one of
// its previous owners after the ring moved, or another node of its
// preference list. Whatever a peer could not deliver is left for the Hub.
// It returns an error only when the store fails.
func (n *Node) copyFromPeers(fl *fill, f *File, buf []byte) error {
	if n.cluster == nil {
		return nil
	}
	for _, p := range n.cluster.Holders(f.Blob.String(), 4) {
		resp, err := n.peers.blob(n.ctx, p, f, nil, true)
		if err != nil {
			continue
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			continue
		}
		fl.mu.Lock()
		fl.source = SourcePeer
		fl.mu.Unlock()
		from := fl.state().written
		_, err = copyBody(fl, resp.Body, buf, from, 0)
		n.metrics.PeerBytesIn(fl.state().written - from)
		resp.Body.Close()
		var diskErr *diskError
		if errors.As(err, &diskErr) {
			return err
		}
		if err != nil {
			n.log.Warn("peer copy broke, continuing from the Hub", "peer", p.Name, "blob", fl.id, "err", err)
		} else {
			n.log.Info("blob copied from peer", "peer", p.Name, "blob", fl.id, "bytes", fl.size)
		}
		return nil
	}
	return nil
}

// openUpstream opens the blob's bytes from off. When the Hub ignores the
// Range it reopens from 0 and returns how many bytes to skip.
func (n *Node) openUpstream(f *File, off int64) (*hubclient.Body, int64, error) {
	body, err := f.remote.Hub.GetFile(n.ctx, f.Repo, hf.Revision(f.Commit), f.Path, f.token, f.location, off, -1)
	if errors.Is(err, hubclient.ErrRangeIgnored) {
		body, err = f.remote.Hub.GetFile(n.ctx, f.Repo, hf.Revision(f.Commit), f.Path, f.token, f.location, 0, -1)
		return body, off, err
	}
	return body, 0, err
}

// copyBody writes body into the fill from offset off, after discarding skip
// bytes. It returns nil when the body ended cleanly.
func copyBody(fl *fill, body io.Reader, buf []byte, off, skip int64) (progressed bool, err error) {
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, body, skip); err != nil {
			return false, err
		}
	}
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			if off+int64(nr) > fl.size {
				return progressed, fmt.Errorf("%w: upstream sent more than %d bytes", hubclient.ErrBadResponse, fl.size)
			}
			if _, werr := fl.w.WriteAt(buf[:nr], off); werr != nil {
				return progressed, &diskError{werr}
			}
			first := !progressed && off == 0
			off += int64(nr)
			progressed = true
			fl.update(func() { fl.written = off })
			if first {
				// The readers just woken wait for this goroutine's time
				// slice while upstream data keeps arriving (it never
				// blocks): let them send the first byte now. Cold time
				// to first byte, median of 20 (16 MiB files): 8.4-8.9 ms
				// before, 5.8-6.9 ms after.
				runtime.Gosched()
			}
		}
		if rerr == io.EOF {
			if off < fl.size {
				return progressed, io.ErrUnexpectedEOF
			}
			return progressed, nil
		}
		if rerr != nil {
			return progressed, rerr
		}
	}
}

// retryable reports whether an upstream error may go away by itself.
func retryable(err error) bool {
	var he *hubclient.Error
	if errors.As(err, &he) {
		return he.Status == 429 || he.Status >= 500
	}
	return !errors.Is(err, context.Canceled)
}

// maxRetryAfter is the longest Retry-After a fill waits out: clients are
// waiting on it and read with a 10 s timeout (HF-PROTOCOL.md §2.3). Past
// it the fill fails and clients get the Hub's 429 and Retry-After.
const maxRetryAfter = 5 * time.Second

// backoff waits before retry number i after err, or returns why not to
// retry: err itself when the Hub asks to wait longer than maxRetryAfter,
// the node's context error when it shuts down. The waits (0.1 s, doubling:
// 3.1 s over five retries) are about the Hub client's for metadata (at most
// 3 s), so a fill from an unreachable Hub fails before clients time out. A
// Retry-After longer than the wait is honoured.
func (n *Node) backoff(i int, err error) error {
	d := 50 * time.Millisecond << min(i, 6)
	var he *hubclient.Error
	if errors.As(err, &he) && he.RetryAfter > d {
		if he.RetryAfter > maxRetryAfter {
			return err
		}
		d = he.RetryAfter
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-n.ctx.Done():
		return n.ctx.Err()
	}
}
