package node

import (
	"context"
	"encoding/json"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// WarmItem is a repository revision an immediate remote keeps filled.
type WarmItem struct {
	Remote   string
	Repo     hf.Repo
	Revision hf.Revision
	Include  []string // globs over file paths; empty: every file
}

// SetWarm replaces what the node keeps warm and starts a pass now.
func (n *Node) SetWarm(items []WarmItem) {
	n.warmMu.Lock()
	n.warmItems = items
	n.warmMu.Unlock()
	select {
	case n.warmKick <- struct{}{}:
	default:
	}
}

// warmLoop keeps the warm list filled: a pass at every change of the list
// and every interval after, so new commits on a warmed branch are fetched.
// Every node walks the whole list but fills only the blobs it owns, so each
// blob is fetched by its owner.
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
			if n.ctx.Err() != nil {
				return
			}
			if err := n.warmOne(n.ctx, it); err != nil {
				n.log.Warn("warming", "remote", it.Remote, "repo", it.Repo, "revision", it.Revision, "err", err)
			}
		}
	}
}

// warmOne lists a repository revision and fills the owned blobs of the
// files it includes, one at a time.
func (n *Node) warmOne(ctx context.Context, it WarmItem) error {
	files, err := n.listFiles(ctx, it)
	if err != nil {
		return err
	}
	filled := 0
	for _, p := range files {
		if !included(p, it.Include) {
			continue
		}
		fp, err := hf.ParsePath(p)
		if err != nil {
			continue
		}
		f, err := n.Resolve(ctx, FileRequest{Remote: it.Remote, Repo: it.Repo, Revision: it.Revision, Path: fp, Access: AccessRemote})
		if err != nil {
			n.log.Warn("warming: resolving", "repo", it.Repo, "path", p, "err", err)
			continue
		}
		if !n.Owns(f.Blob) || f.remote.Policy == PolicyStreamed {
			continue
		}
		if _, ok := n.store.Stat(f.Blob); ok {
			continue
		}
		if err := n.fillAndWait(ctx, f); err != nil {
			n.log.Warn("warming: filling", "repo", it.Repo, "path", p, "err", err)
			continue
		}
		filled++
	}
	if filled > 0 {
		n.log.Info("warmed", "remote", it.Remote, "repo", it.Repo, "revision", it.Revision, "blobs", filled)
	}
	return nil
}

// fillAndWait fills a blob (or joins its fill) and waits for the end.
func (n *Node) fillAndWait(ctx context.Context, f *File) error {
	fl, err := n.startFill(f)
	if err != nil {
		return err
	}
	defer fl.release()
	for {
		st := fl.state()
		if st.verified {
			return nil
		}
		if st.err != nil {
			return st.err
		}
		if st.storeErr != nil {
			return st.storeErr
		}
		select {
		case <-st.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// listFiles lists every file of the revision through the tree API (all pages).
func (n *Node) listFiles(ctx context.Context, it WarmItem) ([]string, error) {
	q := url.Values{"recursive": {"true"}, "expand": {"false"}}
	var out []string
	for page := 0; page < 10_000; page++ {
		resp, err := n.API(ctx, APIRequest{Remote: it.Remote, Access: AccessRemote, Repo: it.Repo, Endpoint: EndpointTree, Revision: it.Revision, Query: q})
		if err != nil {
			return nil, err
		}
		var entries []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		}
		if err := json.Unmarshal(resp.Body, &entries); err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Type == "file" {
				out = append(out, e.Path)
			}
		}
		if resp.Next == "" {
			return out, nil
		}
		_, rawQuery, _ := strings.Cut(resp.Next, "?")
		if q, err = url.ParseQuery(rawQuery); err != nil {
			return nil, err
		}
	}
	return out, nil
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
