package node

import (
	"path"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// WarmItem is a repository revision an immediate remote keeps filled.
type WarmItem struct {
	Remote string
	// Repository is the configured repository whose warm list names the
	// item: its fills count against that repository's quota.
	Repository string
	Repo       hf.Repo
	Revision   hf.Revision
	Include    []string // globs over file paths; empty: every file
}

// key identifies the item among the warm jobs.
func (it WarmItem) key() string {
	return strings.Join(append([]string{it.Remote, it.Repository, it.Repo.Key(), string(it.Revision)}, it.Include...), "\x00")
}

// SetWarm replaces what the node keeps warm and starts a pass now; warm
// jobs of items no longer listed are canceled.
func (n *Node) SetWarm(items []WarmItem) {
	n.warmMu.Lock()
	n.warmItems = items
	n.warmMu.Unlock()
	keep := make(map[string]bool, len(items))
	for _, it := range items {
		keep[it.key()] = true
	}
	n.jobs.cancelWarm(keep)
	select {
	case n.warmKick <- struct{}{}:
	default:
	}
}

// warmLoop keeps the warm list filled: a pass at every change of the list
// and every interval after, so new commits on a warmed branch are fetched.
// A pass runs a prefetch job (jobs.go) per item, one after the other, on
// the node that owns the item's repository on the ring; the job has each
// blob filled by its owner. Any node may walk the list: the others skip
// the items they do not own, so each item is walked once for the cluster.
func (n *Node) warmLoop(interval time.Duration) {
	defer n.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.warmKick:
		case <-t.C:
		}
		n.warmMu.Lock()
		items := n.warmItems
		n.warmMu.Unlock()
		for _, it := range items {
			if n.ctx.Err() != nil || !n.coordinatesWarm(it) {
				continue
			}
			j := n.newJob(JobSpec{Remote: it.Remote, Repository: it.Repository, Repo: it.Repo, Revision: it.Revision, Include: it.Include}, TriggerWarm, it.key())
			if err := n.launch(j); err != nil {
				return
			}
			select {
			case <-j.done:
			case <-n.ctx.Done():
				return
			}
		}
	}
}

// coordinatesWarm reports whether this node walks a warm item: it is the
// first live node of the item's repository on the ring (the node that
// resolves the repository's metadata for the cluster).
func (n *Node) coordinatesWarm(it WarmItem) bool {
	r, err := n.remote(it.Remote)
	if err != nil {
		n.log.Warn("warming: remote not configured here", "remote", it.Remote, "repo", it.Repo)
		return false
	}
	return n.cluster == nil || n.cluster.Route(scope(r, it.Repo), 3)[0].Name == n.cluster.Self()
}

// included reports whether p matches one of the globs (or there are none).
// A glob without "/" also matches the file's base name ("*.json").
func included(p string, globs []string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, p); ok {
			return true
		}
		if !strings.Contains(g, "/") {
			if ok, _ := path.Match(g, path.Base(p)); ok {
				return true
			}
		}
	}
	return false
}
