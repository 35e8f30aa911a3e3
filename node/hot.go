package node

import (
	"errors"
	"sync"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// hotCounter notices blobs a non-owner serves often, so it can keep a copy
// of its own and one popular model does not pin its owner's network link.
type hotCounter struct {
	threshold int
	window    time.Duration
	now       func() time.Time

	mu     sync.Mutex
	start  time.Time
	counts map[hf.BlobID]int
	copies map[hf.BlobID]int64 // hot copies this node started, with sizes

	// served counts serves of blobs this node owns: what it hands to their
	// next owners when it drains (handoff.go).
	served servedLog
}

func newHotCounter(threshold int, window time.Duration, now func() time.Time) *hotCounter {
	return &hotCounter{threshold: threshold, window: window, now: now, counts: map[hf.BlobID]int{}, copies: map[hf.BlobID]int64{}}
}

// hit counts one serve of id through this node and reports whether it just
// became hot (crossed the threshold within the current window).
func (h *hotCounter) hit(id hf.BlobID) bool {
	if h.threshold <= 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := h.now(); now.Sub(h.start) > h.window {
		h.start, h.counts = now, map[hf.BlobID]int{}
	}
	h.counts[id]++
	return h.counts[id] == h.threshold
}

// admit reserves room for a hot copy of size bytes within limit, forgetting
// copies that are no longer stored.
func (h *hotCounter) admit(id hf.BlobID, size, limit int64, stored func(hf.BlobID) bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	var used int64
	for cid, sz := range h.copies {
		if !stored(cid) && cid != id {
			delete(h.copies, cid)
			continue
		}
		used += sz
	}
	if _, ok := h.copies[id]; ok || used+size > limit {
		return false
	}
	h.copies[id] = size
	return true
}

// forget drops a hot copy that could not be made, so it may be tried again.
func (h *hotCounter) forget(id hf.BlobID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.copies, id)
	delete(h.counts, id)
}

// errNotHeld ends a hot copy when no peer holds the blob on disk yet (its
// owner is still filling it): a hot copy never goes to the Hub.
var errNotHeld = errors.New("node: no peer holds the blob")

// keepHotCopy starts a background fill of a hot blob this node does not
// own; the fill copies it from a node that holds it.
func (n *Node) keepHotCopy(f *File) {
	stored := func(id hf.BlobID) bool { _, ok := n.store.Stat(id); return ok }
	if !n.hot.admit(f.Blob, f.Size, n.cfg.HotBytes, stored) {
		return
	}
	hot := *f
	hot.peerOnly = true
	fl, err := n.startFill(&hot)
	if err != nil {
		n.hot.forget(f.Blob)
		n.log.Debug("not keeping a hot copy", "blob", f.Blob, "err", err)
		return
	}
	n.log.Info("keeping a copy of a hot blob", "blob", f.Blob, "bytes", f.Size)
	fl.release()
}
