package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
)

// API endpoints of a repository that the node caches.
const (
	EndpointInfo      = "info"       // /api/{type}s/{id} and /api/{type}s/{id}/revision/{rev}
	EndpointTree      = "tree"       // /api/{type}s/{id}/tree/{rev}[/{path}]
	EndpointPathsInfo = "paths-info" // POST /api/{type}s/{id}/paths-info/{rev}
)

// APIRequest asks for a repository's API JSON.
type APIRequest struct {
	Remote   string // "" is the default remote
	Access   string // the distribution's access mode
	Repo     hf.Repo
	Endpoint string
	Revision hf.Revision // "" for the default branch (info without /revision/)
	Path     string      // tree: directory inside the repo, "" for the root
	Query    url.Values
	// Body and ContentType are paths-info's form or JSON body.
	Body        []byte
	ContentType string
	Token       string
}

// APIResponse is the Hub's JSON, with the pagination link made
// relative to the Hub's base URL so the HTTP layer can point it at itself.
type APIResponse struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type,omitempty"`
	Body        []byte `json:"body"`
	// Next is the next page as an escaped path and query relative to the
	// Hub ("/api/models/x/tree/main?cursor=..."), or "".
	Next  string `json:"next,omitempty"`
	Stale bool   `json:"stale,omitempty"`
	// For a peer that asked the owner: the commit the answer is for, when
	// it is one (the request's, or its branch's while that is fresh), and
	// whether the Hub showed it to an anonymous request. A peer keeps such
	// an answer: at a commit it is immutable.
	Commit    string `json:"commit,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	// FreshMillis, for a call at a branch (or the default branch), is how
	// much longer the owner holds what it answered from fresh: the answer
	// itself, or with Commit the branch's commit. A peer keeps it that
	// long, never longer (0: not at all), as with PeerFile.RefFreshMillis.
	FreshMillis int64 `json:"fresh_ms,omitempty"`
}

// apiEntry is a cached API response. Entries fetched without any token
// (Anonymous) are what the Hub shows everyone; the others are only served
// to callers the Hub recently accepted for the repository.
type apiEntry struct {
	Status      int       `json:"status"`
	ContentType string    `json:"content_type"`
	Body        []byte    `json:"body"`
	Next        string    `json:"next,omitempty"`
	At          time.Time `json:"at"`
	Anonymous   bool      `json:"anonymous"`
}

// API answers a repository API call through the repository's owner on the
// ring, which caches it for the cluster (or locally on a single node). An
// answer at a commit is immutable, so the node that asked keeps it too.
func (n *Node) API(ctx context.Context, req APIRequest) (*APIResponse, error) {
	r, err := n.admit(req.Remote, req.Repo)
	if err != nil {
		return nil, err
	}
	resp, err := n.api(ctx, r, req)
	if err == nil && r.XetHidden() && (req.Endpoint == EndpointTree || req.Endpoint == EndpointPathsInfo) {
		// Kept as the Hub sent it; hidden on the way out, so switching a
		// remote's Xet mode applies to cached listings too.
		c := *resp
		c.Body = stripXet(resp.Body)
		resp = &c
	}
	return resp, err
}

// maxKeptAPIBody is the largest API answer a node keeps from the owner: a
// copy on every node multiplies what a large listing costs in each node's
// metadata memory and store. A larger answer still comes from the owner,
// which keeps it.
const maxKeptAPIBody = 1 << 20

func (n *Node) api(ctx context.Context, r *Remote, req APIRequest) (*APIResponse, error) {
	if n.cluster == nil {
		return n.APILocal(ctx, req)
	}
	token := r.upstreamToken(req.Access, req.Token)
	// An answer kept here from the owner before is served from memory, as
	// the owner would (APILocal), when the caller may read it: at a commit
	// it is immutable; for a branch (or the default branch) it lasts what
	// was left of the ref TTL when the owner fetched it. A branch goes by
	// its commit while that is fresh here.
	rev, _ := n.apiRevision(r, req)
	if cached, ok := get[apiEntry](n.meta, bucketAPI, apiKey(r, req, rev)); ok && n.servable(r, cached, rev, appendScope(nil, r, req.Repo), token) {
		return cached.response(false), nil
	}
	var resp APIResponse
	local, err := n.viaOwner(ctx, scope(r, req.Repo), PeerAPIPath, PeerAPIRequest{
		Remote: r.Name, Type: req.Repo.Type, ID: req.Repo.ID, Endpoint: req.Endpoint, Revision: string(req.Revision),
		Path: req.Path, Query: req.Query, Body: req.Body, ContentType: req.ContentType, Token: n.cfg.PeerAuth.SealToken(token),
	}, &resp)
	if local {
		return n.APILocal(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK || resp.Stale || len(resp.Body) > maxKeptAPIBody {
		return &resp, nil
	}
	keep := func(key string, at time.Time) {
		n.access.accepted(scope(r, req.Repo), token)
		put(n.meta, bucketAPI, key, apiEntry{
			Status: resp.Status, ContentType: resp.ContentType, Body: resp.Body, Next: resp.Next, At: at, Anonymous: resp.Anonymous,
		})
	}
	switch {
	case hf.IsCommit(resp.Commit) && (!req.Revision.IsCommit() || resp.Commit == string(req.Revision)):
		keep(apiKey(r, req, hf.Revision(resp.Commit)), n.cfg.Now())
		// The owner answered the branch at its fresh commit: so will this
		// node, for as long as the owner would.
		n.keepRef(r, req.Repo, req.Revision, resp.Commit, resp.FreshMillis)
	case resp.Commit == "" && resp.FreshMillis > 0 && !rev.IsCommit():
		keep(apiKey(r, req, rev), n.learntAt(r, resp.FreshMillis))
	}
	return &resp, nil
}

// APILocal answers a repository API call as its owner: from cache or from
// the Hub. Responses for a commit are immutable; for a branch they live for
// the ref TTL, and are served stale while the Hub is unreachable.
func (n *Node) APILocal(ctx context.Context, req APIRequest) (*APIResponse, error) {
	r, err := n.admit(req.Remote, req.Repo)
	if err != nil {
		return nil, err
	}
	token := r.upstreamToken(req.Access, req.Token)
	repoKey := appendScope(nil, r, req.Repo)

	rev, refAt := n.apiRevision(r, req)
	// forPeer marks what a peer may keep: an answer at a commit for good
	// (and a branch's commit while this node holds it fresh), an answer
	// for a branch while this node does.
	forPeer := func(e apiEntry) *APIResponse {
		resp := e.response(false)
		resp.Anonymous = e.Anonymous
		learnt := e.At
		if rev.IsCommit() {
			resp.Commit, learnt = string(rev), refAt
		}
		resp.FreshMillis = n.freshMillis(r, learnt)
		return resp
	}
	key := apiKey(r, req, rev)
	cached, ok := get[apiEntry](n.meta, bucketAPI, key)
	if ok && n.servable(r, cached, rev, repoKey, token) {
		return forPeer(cached), nil
	}

	v, err, _ := n.group.Do("api\x00"+key+"\x00"+tokenHash(token), func() (any, error) {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return n.apiUpstream(hctx, r, req, rev, token, key)
	})
	if err == nil {
		return forPeer(v.(apiEntry)), nil
	}
	if !errors.Is(err, hubclient.ErrUnreachable) {
		return nil, err
	}
	// Offline, a branch answers at its last known commit, as resolve does
	// (resolveStale): that answer may be cached only under the commit, if
	// the branch was fresh when it was fetched.
	if rev != "" && !rev.IsCommit() {
		if ref, found := get[refEntry](n.meta, bucketRefs, refKey(r, req.Repo, string(rev))); found {
			if e, found := get[apiEntry](n.meta, bucketAPI, apiKey(r, req, hf.Revision(ref.Commit))); found {
				cached, ok = e, true
			}
		}
	}
	if ok && (n.access.everPublic(repoKey) || n.mayRead(cached, repoKey, token)) {
		n.log.Warn("hub unreachable, serving cached API response", "repo", string(repoKey), "endpoint", req.Endpoint, "err", err)
		return cached.response(true), nil
	}
	return nil, err
}

// apiRevision is the revision an API call is answered at: a branch whose
// commit is fresh here is asked by commit, so the answer is immutable and
// consistent with resolve's X-Repo-Commit.
func (n *Node) apiRevision(r *Remote, req APIRequest) (rev hf.Revision, refAt time.Time) {
	if req.Revision != "" && !req.Revision.IsCommit() {
		if ref, ok := n.freshCommit(r, req.Repo, req.Revision); ok {
			return hf.Revision(ref.Commit), ref.At
		}
	}
	return req.Revision, time.Time{}
}

// servable reports whether a kept answer e at rev goes to a caller with
// token without asking again: the caller may read it, and it is at a
// commit (immutable) or still fresh.
func (n *Node) servable(r *Remote, e apiEntry, rev hf.Revision, repoKey []byte, token string) bool {
	return n.mayRead(e, repoKey, token) && (rev.IsCommit() || n.fresh(r, e.At))
}

// mayRead reports whether a caller with token may get a cached answer:
// the Hub showed it to everyone, or accepted the token for the repository
// recently.
func (n *Node) mayRead(e apiEntry, repoKey []byte, token string) bool {
	return e.Anonymous || n.access.allowed(repoKey, token, n.cfg.AuthTTL)
}

func (e apiEntry) memSize() int { return len(e.Body) + len(e.Next) + len(e.ContentType) }

func (e apiEntry) response(stale bool) *APIResponse {
	return &APIResponse{Status: e.Status, ContentType: e.ContentType, Body: e.Body, Next: e.Next, Stale: stale}
}

func (n *Node) apiUpstream(ctx context.Context, r *Remote, req APIRequest, rev hf.Revision, token, key string) (apiEntry, error) {
	method, p := http.MethodGet, ""
	switch req.Endpoint {
	case EndpointInfo:
		if rev != "" {
			p = "/revision/" + rev.Escaped()
		}
	case EndpointTree:
		p = "/tree/" + rev.Escaped()
		if req.Path != "" {
			p += "/" + hf.Path(req.Path).Escaped()
		}
	case EndpointPathsInfo:
		method, p = http.MethodPost, "/paths-info/"+rev.Escaped()
	}
	h := http.Header{"Accept": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if req.ContentType != "" {
		h.Set("Content-Type", req.ContentType)
	}
	resp, err := r.Hub.Do(ctx, method, req.Repo.APIPath(p), req.Query.Encode(), h, req.Body)
	if err != nil {
		if errors.Is(err, hubclient.ErrRepoNotFound) || errors.Is(err, hubclient.ErrGatedRepo) || errors.Is(err, hubclient.ErrUnauthorized) {
			n.access.refused(scope(r, req.Repo), token)
		}
		return apiEntry{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return apiEntry{}, errors.Join(hubclient.ErrUnreachable, err)
	}
	e := apiEntry{
		Status:      resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"),
		Body:        body,
		Next:        relativeNext(r.Hub, resp.Header.Get("Link")),
		At:          n.cfg.Now(),
		Anonymous:   token == "",
	}
	if resp.StatusCode == http.StatusOK {
		n.access.accepted(scope(r, req.Repo), token)
		if req.Endpoint == EndpointInfo && !rev.IsCommit() {
			var info struct {
				SHA string `json:"sha"`
			}
			if json.Unmarshal(body, &info) == nil {
				n.rememberRef(r, req.Repo, revOrDefault(rev), info.SHA)
				if rev != "" && hf.IsCommit(info.SHA) {
					// While the branch is fresh, calls at it are answered
					// at its commit (apiRevision): this is that answer.
					put(n.meta, bucketAPI, apiKey(r, req, hf.Revision(info.SHA)), e)
				}
			}
		}
		put(n.meta, bucketAPI, key, e)
	}
	return e, nil
}

// revOrDefault names the default branch's ref entry.
func revOrDefault(rev hf.Revision) hf.Revision {
	if rev == "" {
		return "\x00default"
	}
	return rev
}

// apiKey identifies a cached API response: repository, endpoint, revision,
// path, canonical query and body.
func apiKey(r *Remote, req APIRequest, rev hf.Revision) string {
	q := make([]string, 0, len(req.Query))
	for k, vs := range req.Query {
		for _, v := range vs {
			q = append(q, k+"="+v)
		}
	}
	sort.Strings(q)
	body := ""
	if len(req.Body) > 0 {
		s := sha256.Sum256(append([]byte(req.ContentType+"\x00"), req.Body...))
		body = hex.EncodeToString(s[:16])
	}
	return strings.Join([]string{scope(r, req.Repo), req.Endpoint, string(rev), req.Path, strings.Join(q, "&"), body}, "\x00")
}

var linkNext = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="?next"?`)

// relativeNext turns the Hub's absolute "next" link into a path relative to
// the Hub's base URL, or "" when there is none (or it points elsewhere).
func relativeNext(hub Hub, link string) string {
	m := linkNext.FindStringSubmatch(link)
	if m == nil {
		return ""
	}
	base := hub.URL("")
	if rel, ok := strings.CutPrefix(m[1], base); ok && strings.HasPrefix(rel, "/") {
		return rel
	}
	return ""
}

// stripXet removes "xetHash" from every entry of a tree or paths-info array,
// so clients never switch to Xet behind the cache's back.
func stripXet(body []byte) []byte {
	if !bytes.Contains(body, []byte(`"xetHash"`)) {
		return body
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(body, &entries); err != nil {
		return body
	}
	for _, e := range entries {
		delete(e, "xetHash")
	}
	out, err := json.Marshal(entries)
	if err != nil {
		return body
	}
	return out
}

// Passthrough forwards any other API call to the Hub uncached, with the
// caller's token. The caller must close the response body.
func (n *Node) Passthrough(ctx context.Context, remote, access, method, escapedPath, rawQuery, callerToken string, header http.Header) (*http.Response, error) {
	r, err := n.remote(remote)
	if err != nil {
		return nil, err
	}
	h := header.Clone()
	h.Del("Authorization")
	if t := r.upstreamToken(access, callerToken); t != "" {
		h.Set("Authorization", "Bearer "+t)
	}
	return r.Hub.Do(ctx, method, escapedPath, rawQuery, h, nil)
}
