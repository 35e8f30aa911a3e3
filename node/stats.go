package node

import (
	"sort"
	"sync"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// What the status page shows of a node's recent activity: fills in
// progress, the repositories it served most, and its recent errors. The
// counters live in memory only, bounded, and start again at zero on
// restart; Prometheus keeps the durable, repository-free totals.

const (
	// maxRepoStats bounds the repositories counted; past it the least
	// served (by bytes) is dropped to admit a new one.
	maxRepoStats = 4096
	// maxRecentErrors is how many recent errors are kept.
	maxRecentErrors = 50
)

// FillProgress is a snapshot of one fill in progress.
type FillProgress struct {
	Blob    hf.BlobID
	Repo    string // "model/acme/tiny" (hf.Repo.Key); empty if unknown
	Path    string
	Size    int64
	Written int64  // contiguous bytes on disk from offset 0
	Source  string // SourceUpstream or SourcePeer
	Started time.Time
}

// RepoActivity is what this node served of one repository since it started.
type RepoActivity struct {
	Repo     string // hf.Repo.Key
	Requests int64  // file downloads answered 2xx
	Hits     int64  // of which served from this node's disk
	Bytes    int64  // file bytes sent to clients
}

// RecentError is one failure the status page lists.
type RecentError struct {
	At     time.Time
	Kind   string // "request" or "fill"
	Status int    // HTTP status of a request; 0 for a fill
	Repo   string
	Path   string // file path, or the URL path of a request without a repository
	Detail string
}

// activity holds the counters; the zero value is not ready (newActivity).
type activity struct {
	mu     sync.Mutex
	repos  map[hf.Repo]*RepoActivity
	errs   [maxRecentErrors]RecentError
	next   int // index of the next error slot
	nErrs  int // errors kept (≤ maxRecentErrors)
	limitR int
}

func newActivity() *activity {
	return &activity{repos: map[hf.Repo]*RepoActivity{}, limitR: maxRepoStats}
}

func (a *activity) served(repo hf.Repo, bytes int64, hit bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.repos[repo]
	if !ok {
		if len(a.repos) >= a.limitR {
			var least *RepoActivity
			var leastKey hf.Repo
			for k, c := range a.repos {
				if least == nil || c.Bytes < least.Bytes || (c.Bytes == least.Bytes && c.Requests < least.Requests) {
					least, leastKey = c, k
				}
			}
			delete(a.repos, leastKey)
		}
		r = &RepoActivity{Repo: repo.Key()}
		a.repos[repo] = r
	}
	r.Requests++
	if hit {
		r.Hits++
	}
	r.Bytes += bytes
}

func (a *activity) top(n int) []RepoActivity {
	a.mu.Lock()
	out := make([]RepoActivity, 0, len(a.repos))
	for _, r := range a.repos {
		out = append(out, *r)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Repo < out[j].Repo
	})
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func (a *activity) failed(e RecentError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs[a.next] = e
	a.next = (a.next + 1) % maxRecentErrors
	a.nErrs = min(a.nErrs+1, maxRecentErrors)
}

func (a *activity) recent() []RecentError {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]RecentError, 0, a.nErrs)
	for i := 1; i <= a.nErrs; i++ {
		out = append(out, a.errs[(a.next-i+maxRecentErrors)%maxRecentErrors])
	}
	return out
}

// RecordServed counts a file download from repo answered by this node's
// client port: bytes sent, and whether they came from its disk.
func (n *Node) RecordServed(repo hf.Repo, bytes int64, hit bool) {
	n.activity.served(repo, bytes, hit)
}

// RecordError keeps a failure for the status page (the last 50).
func (n *Node) RecordError(e RecentError) {
	if e.At.IsZero() {
		e.At = n.cfg.Now()
	}
	n.activity.failed(e)
}

// TopRepos lists the repositories this node served most, by bytes then
// downloads, at most k of them.
func (n *Node) TopRepos(k int) []RepoActivity { return n.activity.top(k) }

// RecentErrors lists the last errors, newest first.
func (n *Node) RecentErrors() []RecentError { return n.activity.recent() }

// Fills is a snapshot of the fills in progress on this node, largest first.
func (n *Node) Fills() []FillProgress {
	n.mu.Lock()
	fills := make([]*fill, 0, len(n.fills))
	for _, fl := range n.fills {
		fills = append(fills, fl)
	}
	n.mu.Unlock()
	out := make([]FillProgress, 0, len(fills))
	for _, fl := range fills {
		fl.mu.Lock()
		p := FillProgress{Blob: fl.id, Repo: fl.repo, Path: fl.path, Size: fl.size, Written: fl.written, Source: fl.source, Started: fl.started}
		fl.mu.Unlock()
		if p.Source == "" {
			p.Source = SourceUpstream
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Size != out[j].Size {
			return out[i].Size > out[j].Size
		}
		return out[i].Blob.String() < out[j].Blob.String()
	})
	return out
}

// RingShares is the fraction of the ring's partitions each ring member
// owns, as this node sees it.
func (n *Node) RingShares() map[string]float64 {
	if n.cluster == nil {
		return map[string]float64{n.cfg.Name: 1}
	}
	out := map[string]float64{}
	r, ok := n.cluster.ring.(interface{ Share(member string) float64 })
	for _, m := range n.cluster.RingMembers() {
		if ok {
			out[m] = r.Share(m)
		}
	}
	return out
}
