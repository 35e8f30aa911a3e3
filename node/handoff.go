package node

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// A draining node hands the blobs it served most to the nodes that will own
// them once it is gone, while it still serves peers: each next owner is
// asked over /-/peer/warm, and its fill copies the blob from this node (a
// holder on the ring) instead of the Hub. Clients that come back through
// the balancer then find the blob on its new owner's disk.

// servedMax bounds how many owned blobs the node remembers serving.
const servedMax = 1024

// servedFile is a blob this node served as its owner, with what a next
// owner needs to fill it.
type servedFile struct {
	req  PeerWarmRequest
	hits int
	last time.Time
}

// servedLog counts serves of blobs this node owns (bounded; the least
// served entry makes room).
type servedLog struct {
	mu    sync.Mutex
	files map[hf.BlobID]*servedFile
}

func (s *servedLog) record(f *File, now time.Time) {
	if f.remote == nil || f.remote.Policy == PolicyStreamed {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files == nil {
		s.files = map[hf.BlobID]*servedFile{}
	}
	if e, ok := s.files[f.Blob]; ok {
		e.hits++
		e.last = now
		return
	}
	if len(s.files) >= servedMax {
		var victim hf.BlobID
		var min *servedFile
		for id, e := range s.files {
			if min == nil || e.hits < min.hits || (e.hits == min.hits && e.last.Before(min.last)) {
				victim, min = id, e
			}
		}
		delete(s.files, victim)
	}
	s.files[f.Blob] = &servedFile{hits: 1, last: now, req: PeerWarmRequest{
		Remote: f.remote.Name, Repository: f.repository, Type: f.Repo.Type, ID: f.Repo.ID,
		Commit: f.Commit, Path: string(f.Path), Blob: f.Blob.String(), Size: f.Size,
	}}
}

// top is the n most served files that keep accepts, most served first.
func (s *servedLog) top(n int, keep func(id hf.BlobID) bool) []PeerWarmRequest {
	s.mu.Lock()
	type entry struct {
		id hf.BlobID
		servedFile
	}
	all := make([]entry, 0, len(s.files))
	for id, e := range s.files {
		all = append(all, entry{id, *e})
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		if all[i].hits != all[j].hits {
			return all[i].hits > all[j].hits
		}
		return all[i].last.After(all[j].last)
	})
	var out []PeerWarmRequest
	for _, e := range all {
		if len(out) == n {
			break
		}
		if keep(e.id) {
			out = append(out, e.req)
		}
	}
	return out
}

// HandedOff is one blob a draining node handed to its next owner.
type HandedOff struct {
	Blob   string `json:"blob"`
	Path   string `json:"path"`
	To     string `json:"to"`
	Source string `json:"source,omitempty"` // how it came to be there (SourcePeer: copied from this node)
	Err    string `json:"error,omitempty"`
}

// handOffConcurrency is how many blobs are handed off at a time.
const handOffConcurrency = 4

// HandOff asks the next owners of the (at most max) blobs this node owns,
// holds and served most to fill them now, and waits for them or ctx.
// nextOwner names a key's owner on the ring without this node. It returns
// what was asked and how each ended; a single node hands off nothing.
func (n *Node) HandOff(ctx context.Context, max int, nextOwner func(key string) (string, bool)) []HandedOff {
	if n.cluster == nil || max <= 0 {
		return nil
	}
	reqs := n.hot.served.top(max, func(id hf.BlobID) bool {
		_, held := n.store.Stat(id)
		return held && n.Owns(id)
	})
	out := make([]HandedOff, len(reqs))
	sem := make(chan struct{}, handOffConcurrency)
	var wg sync.WaitGroup
	for i, req := range reqs {
		out[i] = HandedOff{Blob: req.Blob, Path: req.Path}
		next, ok := nextOwner(req.Blob)
		if !ok || next == n.cfg.Name {
			out[i].Err = "no other node"
			continue
		}
		out[i].To = next
		peer, ok := n.cluster.Peer(next)
		if !ok {
			out[i].Err = "next owner is not alive"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				out[i].Err = ctx.Err().Error()
				return
			}
			res, err := n.peers.warm(ctx, peer, req, func(int64) {})
			if err != nil {
				out[i].Err = err.Error()
				n.log.Warn("hand-off failed", "blob", req.Blob, "path", req.Path, "to", next, "err", err)
				return
			}
			out[i].Source = res.Source
			n.log.Info("blob handed off", "blob", req.Blob, "path", req.Path, "to", next, "source", res.Source, "bytes", res.Size)
		}()
	}
	wg.Wait()
	return out
}
