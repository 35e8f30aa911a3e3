package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// The owner's side of a prefetch job: a coordinator asks a blob's owner,
// one file at a time, to fill it; the owner answers with a stream of
// progress events (NDJSON) ending with the outcome.

// PeerWarmPath is the peer route a job's coordinator asks owners on.
const PeerWarmPath = "/-/peer/warm"

// warmProgressEvery is how often an owner reports a fill's progress.
const warmProgressEvery = 200 * time.Millisecond

// PeerWarmRequest asks a blob's owner to fill one file of a commit. The
// owner fetches with the remote's own token: jobs are started by admins.
type PeerWarmRequest struct {
	Remote     string      `json:"remote"`
	Repository string      `json:"repository,omitempty"`
	Type       hf.RepoType `json:"type"`
	ID         string      `json:"id"`
	Commit     string      `json:"commit"`
	Path       string      `json:"path"`
	Blob       string      `json:"blob"`
	Size       int64       `json:"size"`
}

// WarmResult is how a file came to be on its owner.
type WarmResult struct {
	// Source is SourceDisk (it was there already), SourceUpstream (filled
	// from the Hub) or SourcePeer (copied from a node that held it).
	Source string `json:"source"`
	Size   int64  `json:"size"`
}

// PeerWarmEvent is one line of the owner's answer: progress (Written), or
// the end (Done) with a Result or an Error.
type PeerWarmEvent struct {
	Written int64       `json:"written,omitempty"`
	Done    bool        `json:"done,omitempty"`
	Result  *WarmResult `json:"result,omitempty"`
	Error   string      `json:"error,omitempty"`
	// Busy marks an Error that goes away by itself: the owner runs its
	// maximum of fills.
	Busy bool `json:"busy,omitempty"`
}

// WarmDone is the last event of an owner's answer.
func WarmDone(res WarmResult, err error) PeerWarmEvent {
	if err != nil {
		return PeerWarmEvent{Done: true, Error: err.Error(), Busy: errors.Is(err, ErrBusy)}
	}
	return PeerWarmEvent{Done: true, Result: &res}
}

// WarmLocal fills one file of a job on this node (as its owner) and waits
// for the blob to be verified and stored, reporting the bytes written every
// so often. A blob already on disk is not resolved again. The fill is the
// node's one fill for the blob: a client reading it at the same time reads
// the same fill, and it completes even if the job is canceled.
func (n *Node) WarmLocal(ctx context.Context, req PeerWarmRequest, progress func(written int64)) (WarmResult, error) {
	id, err := hf.ParseBlobID(req.Blob)
	if err != nil {
		return WarmResult{}, err
	}
	if size, ok := n.store.Stat(id); ok {
		return WarmResult{Source: SourceDisk, Size: size}, nil
	}
	repo, err := hf.NewRepo(req.Type, req.ID)
	if err != nil {
		return WarmResult{}, err
	}
	p, err := hf.ParsePath(req.Path)
	if err != nil {
		return WarmResult{}, err
	}
	if !hf.IsCommit(req.Commit) {
		return WarmResult{}, fmt.Errorf("%w: commit %q", hf.ErrInvalid, req.Commit)
	}
	f, err := n.Resolve(ctx, FileRequest{Remote: req.Remote, Repository: req.Repository, Repo: repo, Revision: hf.Revision(req.Commit), Path: p, Access: AccessRemote})
	if err != nil {
		return WarmResult{}, err
	}
	if f.remote.Policy == PolicyStreamed {
		return WarmResult{}, fmt.Errorf("%w (remote %q)", ErrStreamedRemote, f.remote.Name)
	}
	if f.XetAdvertised() {
		// Clients reach a Xet file over Xet: warm its chunks (once for
		// the cluster, verified against the file's hash). A plain GET is
		// then assembled from them, so the blob need not be stored too.
		token, g := n.fileGrant(f)
		if _, _, held := n.xetHeld(ctx, token, g, f.XetHash); held {
			return WarmResult{Source: SourceDisk, Size: f.Size}, nil
		}
		if err := n.ensureXetFile(ctx, token, g, f.XetHash); err != nil {
			return WarmResult{}, err
		}
		progress(f.Size)
		return WarmResult{Source: SourceUpstream, Size: f.Size}, nil
	}
	if f.Blob != id {
		n.log.Warn("job: the tree listing and the file disagree on its content address", "repo", repo, "path", p, "listed", id, "resolved", f.Blob)
		if size, ok := n.store.Stat(f.Blob); ok {
			return WarmResult{Source: SourceDisk, Size: size}, nil
		}
	}
	fl, err := n.startFill(f)
	if errors.Is(err, store.ErrExists) {
		return WarmResult{Source: SourceDisk, Size: f.Size}, nil
	}
	if err != nil {
		return WarmResult{}, err
	}
	defer fl.release()
	return n.awaitFill(ctx, fl, progress)
}

// awaitFill waits for a fill to end, reporting its progress.
func (n *Node) awaitFill(ctx context.Context, fl *fill, progress func(int64)) (WarmResult, error) {
	var reported time.Time
	for {
		st := fl.state()
		switch {
		case st.verified:
			return WarmResult{Source: fl.Source(), Size: fl.size}, nil
		case st.err != nil:
			return WarmResult{}, st.err
		case st.storeErr != nil:
			return WarmResult{}, fmt.Errorf("node: the store refused the blob: %w", st.storeErr)
		}
		if now := time.Now(); now.Sub(reported) >= warmProgressEvery {
			reported = now
			progress(st.written)
		}
		t := time.NewTimer(warmProgressEvery)
		select {
		case <-st.changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return WarmResult{}, ctx.Err()
		}
		t.Stop()
	}
}

// warm asks a peer to fill one file, relaying its progress, and returns
// its outcome. A peer that cannot be reached, or whose answer breaks off,
// is errPeerDown: the next node of the route is asked.
func (p *peerClient) warm(ctx context.Context, peer Peer, req PeerWarmRequest, progress func(int64)) (WarmResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return WarmResult{}, err
	}
	resp, err := p.do(ctx, http.MethodPost, peer, PeerWarmPath, nil, body, nil)
	if err != nil {
		return WarmResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode == http.StatusNotFound && resp.Header.Get(hf.HeaderErrorCode) == "NotFound" {
			return WarmResult{}, fmt.Errorf("node %s does not serve %s: is it an older version?", peer.Name, PeerWarmPath)
		}
		return WarmResult{}, peerError(resp, raw)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev PeerWarmEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return WarmResult{}, ctx.Err()
			}
			return WarmResult{}, fmt.Errorf("%w: %s: warm answer broke off: %v", errPeerDown, peer.Name, err)
		}
		switch {
		case !ev.Done:
			progress(ev.Written)
		case ev.Busy:
			return WarmResult{}, fmt.Errorf("%w: on %s: %s", ErrBusy, peer.Name, ev.Error)
		case ev.Error != "":
			return WarmResult{}, fmt.Errorf("on %s: %s", peer.Name, ev.Error)
		case ev.Result == nil:
			return WarmResult{}, fmt.Errorf("%w: %s: warm answer without a result", errPeerDown, peer.Name)
		default:
			return *ev.Result, nil
		}
	}
}
