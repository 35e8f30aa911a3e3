package node

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
)

// FileRequest asks for one file of a repository at a revision.
type FileRequest struct {
	// Remote names the upstream (a remote of the configuration); "" is the
	// default remote.
	Remote   string
	Repo     hf.Repo
	Revision hf.Revision
	Path     hf.Path
	Token    string // the caller's own Hub token; "" for none
	// Access is the distribution's access mode: AccessCaller or AccessRemote.
	Access string
	// Repository is the configured repository the request is served for;
	// blobs filled for it count against its quota.
	Repository string
}

// File is what the node knows about a file at a commit: enough to answer a
// HEAD exactly as the Hub would, and to find the bytes.
type File struct {
	Repo               hf.Repo
	Commit             string
	Path               hf.Path
	Blob               hf.BlobID
	Size               int64
	ContentType        string
	ContentDisposition string
	// Stale is set when the revision could not be re-resolved because the
	// Hub is unreachable and the last known commit was used.
	Stale bool
	// XetHash is the Xet file id of a Xet-backed file ("" otherwise).
	XetHash string

	remote     *Remote
	repository string // counts the blob against this repository's quota
	token      string // upstream token that may fetch the bytes
	location   string // CDN URL from the Hub's redirect, if still fresh
	peerOnly   bool   // a hot copy: fill from a peer that holds the blob, never from the Hub
	etag       string // Blob.ETag(), when it came formatted with a cached entry
	sizeText   string // Size in decimal, likewise
	blobKey    string // Blob.String(), likewise: the blob's key on the ring
	// refAt is when this node learnt the branch or tag's commit from the
	// Hub (or the moment a peer's answer dates it to); zero for a commit
	// revision. The owner tells peers how long the commit stays fresh.
	refAt time.Time
}

// ETag is the file's ETag header value (the Hub's: the quoted content
// address).
func (f *File) ETag() string {
	if f.etag != "" {
		return f.etag
	}
	return f.Blob.ETag()
}

// SizeText is Size in decimal, as Content-Length and X-Linked-Size carry it.
func (f *File) SizeText() string {
	if f.sizeText != "" {
		return f.sizeText
	}
	return strconv.FormatInt(f.Size, 10)
}

// ringKey is the blob's key on the ring (its content address as text).
func (f *File) ringKey() string {
	if f.blobKey != "" {
		return f.blobKey
	}
	return f.Blob.String()
}

// XetAdvertised reports whether clients are told to fetch the file over
// Xet from this cache: the file is Xet-backed and its remote speaks Xet.
func (f *File) XetAdvertised() bool {
	return f.XetHash != "" && f.remote != nil && !f.remote.XetHidden()
}

// refEntry is a revision's resolution, valid for the ref TTL.
type refEntry struct {
	Commit string    `json:"commit"`
	At     time.Time `json:"at"`
}

// fileEntry is a file's metadata at a commit: immutable.
type fileEntry struct {
	Blob               string    `json:"blob,omitempty"`
	Size               int64     `json:"size"`
	ContentType        string    `json:"content_type,omitempty"`
	ContentDisposition string    `json:"content_disposition,omitempty"`
	NotFound           bool      `json:"not_found,omitempty"`
	XetHash            string    `json:"xet_hash,omitempty"`
	Location           string    `json:"-"`
	LocationAt         time.Time `json:"-"`

	// Formatted once when the entry enters the memory cache (derive), so
	// a hit formats nothing.
	id       hf.BlobID
	etag     string
	sizeText string
	key      string // id.String()
}

// withDefaults fills the type and disposition the Hub left out, as its CDN
// would answer them for path p.
func (fe *fileEntry) withDefaults(p hf.Path) {
	if fe.ContentType == "" {
		fe.ContentType = contentTypeFor(p)
	}
	if fe.ContentDisposition == "" {
		fe.ContentDisposition = contentDisposition(p)
	}
}

// derive fills the entry's formatted fields; the metadata cache calls it
// for each entry it keeps in memory.
func (fe *fileEntry) derive() {
	if fe.NotFound {
		return
	}
	id, err := hf.ParseBlobID(fe.Blob)
	if err != nil {
		return // fileFrom reports it
	}
	fe.id, fe.etag, fe.sizeText, fe.key = id, id.ETag(), strconv.FormatInt(fe.Size, 10), id.String()
}

// locationTTL is how long a signed CDN URL is reused; the Hub signs them for
// about an hour.
const locationTTL = 30 * time.Minute

// scope is a repository's key within its remote: caches, access decisions
// and ring placement of metadata are all per remote, since two upstreams
// may hold different repositories under the same id.
func scope(r *Remote, repo hf.Repo) string { return string(appendScope(nil, r, repo)) }

func refKey(r *Remote, repo hf.Repo, rev string) string {
	return string(appendRefKey(nil, r, repo, rev))
}

func fileKey(r *Remote, repo hf.Repo, commit string, p hf.Path) string {
	return string(appendFileKey(nil, r, repo, commit, p))
}

// The append forms build the same keys into a caller's buffer. The hit
// path builds them in stack arrays: a map lookup of string(b) does not
// copy b, so finding cached metadata allocates nothing.

func appendScope(b []byte, r *Remote, repo hf.Repo) []byte {
	b = append(b, r.Name...)
	b = append(b, 0)
	b = append(b, repo.Type...)
	b = append(b, '/')
	return append(b, repo.ID...)
}

func appendRefKey(b []byte, r *Remote, repo hf.Repo, rev string) []byte {
	b = append(appendScope(b, r, repo), 0)
	return append(b, rev...)
}

func appendFileKey(b []byte, r *Remote, repo hf.Repo, commit string, p hf.Path) []byte {
	b = append(appendScope(b, r, repo), 0)
	b = append(b, commit...)
	b = append(b, 0)
	return append(b, p...)
}

// keyBuf is the stack array a request builds its metadata keys in; longer
// keys spill to the heap.
type keyBuf [320]byte

// Resolve answers what a HEAD of the file would: the commit the revision
// points at and the file's content address and size. Metadata cached here
// (immutable, or a branch's commit still fresh) is used when the caller may
// see the repository; otherwise the repository's owner on the ring answers
// (it asks the Hub at most once per TTL for the whole cluster), or this
// node if it owns the repository or no owner can be reached.
func (n *Node) Resolve(ctx context.Context, req FileRequest) (*File, error) {
	if n.cluster == nil {
		return n.ResolveLocal(ctx, req)
	}
	r, err := n.admit(req.Remote, req.Repo)
	if err != nil {
		return nil, err
	}
	token := r.upstreamToken(req.Access, req.Token)
	// From memory when this node knows the commit (a commit revision, or a
	// branch's commit still fresh) and the file's metadata at it: on any
	// node, owner of the repository or not.
	f, ref, ok, err := n.cachedFile(r, req, token)
	if ok {
		return f, err
	}
	key := scope(r, req.Repo)
	if n.cluster.Owns(key) {
		// This node is the repository's owner: no preference list, no
		// sealed token for a peer.
		return n.resolveUpstream(ctx, r, req, token, ref)
	}
	var pf PeerFile
	local, err := n.viaPeers(ctx, n.cluster.Route(key, 3), PeerResolvePath, PeerFileRequest{
		Remote: r.Name, Repository: req.Repository, Type: req.Repo.Type, ID: req.Repo.ID,
		Revision: string(req.Revision), Path: string(req.Path), Token: n.cfg.PeerAuth.SealToken(token),
	}, &pf)
	if local {
		return n.resolveUpstream(ctx, r, req, token, ref)
	}
	if err != nil {
		return nil, err
	}
	f, err = n.FileFromPeer(r.Name, req.Repository, req.Repo, req.Path, pf, token)
	if err != nil {
		return nil, err
	}
	if err := r.checkSize(f); err != nil {
		return nil, err
	}
	// The owner's answer is the Hub's: remember the immutable part, and the
	// branch's commit for as long as the owner holds it fresh, no longer.
	n.access.accepted(scope(r, req.Repo), token)
	put(n.meta, bucketFiles, fileKey(r, req.Repo, f.Commit, req.Path), fileEntry{
		Blob: pf.Blob, Size: pf.Size, ContentType: f.ContentType, ContentDisposition: f.ContentDisposition, XetHash: pf.XetHash,
	})
	if !f.Stale {
		n.keepRef(r, req.Repo, req.Revision, f.Commit, pf.RefFreshMillis)
	}
	return f, nil
}

// cachedFile resolves from this node's memory alone: the commit is the
// revision itself or the branch's fresh commit, the caller may read the
// repository, and the file's metadata at that commit is cached. ok is
// false when any of that is missing. ref is the branch's fresh commit, if
// there was one (a HEAD then goes by commit instead of by branch).
func (n *Node) cachedFile(r *Remote, req FileRequest, token string) (f *File, ref refEntry, ok bool, err error) {
	commit := string(req.Revision)
	if !req.Revision.IsCommit() {
		ref, _ = n.freshCommit(r, req.Repo, req.Revision)
		commit = ref.Commit
	}
	var sb, kb keyBuf
	if commit == "" || !n.access.allowed(appendScope(sb[:0], r, req.Repo), token, n.cfg.AuthTTL) {
		return nil, ref, false, nil
	}
	fe, found := lookup[fileEntry](n.meta, appendFileKey(bucketKey(kb[:0], bucketFiles), r, req.Repo, commit, req.Path))
	if !found {
		return nil, ref, false, nil
	}
	f, err = n.fileFrom(r, req, commit, fe, token, false)
	if f != nil {
		f.refAt = ref.At
	}
	return f, ref, true, err
}

// freshCommit is what this node knows of a branch or tag that is still
// within the ref TTL: its commit and when it was learnt.
func (n *Node) freshCommit(r *Remote, repo hf.Repo, rev hf.Revision) (refEntry, bool) {
	var kb keyBuf
	ref, ok := lookup[refEntry](n.meta, appendRefKey(bucketKey(kb[:0], bucketRefs), r, repo, string(rev)))
	if !ok || !n.fresh(r, ref.At) {
		return refEntry{}, false
	}
	return ref, true
}

// fresh reports whether what this node learnt at at is still within r's
// ref TTL.
func (n *Node) fresh(r *Remote, at time.Time) bool { return n.cfg.Now().Sub(at) < r.RefTTL }

// freshMillis is how much longer what this node learnt at at stays fresh
// (within the ref TTL), in whole milliseconds: how long a peer may keep it
// (0: not at all; also for a zero at). A duration, not a time, so the
// nodes' clocks need not agree.
func (n *Node) freshMillis(r *Remote, at time.Time) int64 {
	if at.IsZero() { // nothing learnt (a file or an answer at a commit): no clock read
		return 0
	}
	if left := r.RefTTL - n.cfg.Now().Sub(at); left >= time.Millisecond {
		return left.Milliseconds()
	}
	return 0
}

// learntAt is when this node would have learnt what a peer holds fresh for
// ms more: kept as learnt then, it goes stale here when it does there.
func (n *Node) learntAt(r *Remote, ms int64) time.Time {
	return n.cfg.Now().Add(min(time.Duration(ms)*time.Millisecond, r.RefTTL) - r.RefTTL)
}

// keepRef remembers a branch's or tag's commit that its owner holds fresh
// for ms more, for that long and no longer.
func (n *Node) keepRef(r *Remote, repo hf.Repo, rev hf.Revision, commit string, ms int64) {
	if ms > 0 && rev != "" && !rev.IsCommit() {
		put(n.meta, bucketRefs, refKey(r, repo, string(rev)), refEntry{Commit: commit, At: n.learntAt(r, ms)})
	}
}

// viaOwner makes a peer call to the owner of key: the first reachable node
// of its preference list. It reports local when this node is that owner, or
// no owner could be reached (this node then answers as owner).
func (n *Node) viaOwner(ctx context.Context, key, path string, in, out any) (local bool, err error) {
	if n.cluster.Owns(key) {
		return true, nil // what the preference list would say, without building it
	}
	return n.viaPeers(ctx, n.cluster.Route(key, 3), path, in, out)
}

// viaPeers is viaOwner over a given preference list.
func (n *Node) viaPeers(ctx context.Context, peers []Peer, path string, in, out any) (local bool, err error) {
	for _, p := range peers {
		if p.Name == n.cluster.Self() {
			return true, nil
		}
		err := n.peers.call(ctx, p, path, in, out)
		if errors.Is(err, errPeerDown) || errors.Is(err, ErrPeerAuth) {
			n.log.Warn("owner unreachable, trying the next node", "peer", p.Name, "err", err)
			continue
		}
		return false, err
	}
	return true, nil
}

// ResolveLocal is Resolve as the repository's owner: from this node's cache
// or the Hub, never from a peer.
func (n *Node) ResolveLocal(ctx context.Context, req FileRequest) (*File, error) {
	r, err := n.admit(req.Remote, req.Repo)
	if err != nil {
		return nil, err
	}
	token := r.upstreamToken(req.Access, req.Token)
	f, ref, ok, err := n.cachedFile(r, req, token)
	if ok {
		return f, err
	}
	return n.resolveUpstream(ctx, r, req, token, ref)
}

// resolveUpstream is ResolveLocal after a miss in memory: the Hub's HEAD,
// by the branch's fresh commit when there is one (ref), single-flighted,
// or cached metadata of any age while the Hub is unreachable.
func (n *Node) resolveUpstream(ctx context.Context, r *Remote, req FileRequest, token string, ref refEntry) (*File, error) {
	repoKey := scope(r, req.Repo)
	rev := req.Revision
	if ref.Commit != "" {
		rev = hf.Revision(ref.Commit)
	}
	key := "head\x00" + repoKey + "\x00" + string(rev) + "\x00" + string(req.Path) + "\x00" + tokenHash(token)
	v, err, _ := n.group.Do(key, func() (any, error) {
		// The shared call must not die with the first caller's request.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return n.headUpstream(hctx, r, req.Repo, rev, req.Path, token)
	})
	if err == nil {
		res := v.(headResult)
		f, err := n.fileFrom(r, req, res.commit, res.entry, token, false)
		if f != nil {
			// When the branch's commit was learnt: by this HEAD, or before
			// it when the HEAD went by the fresh commit.
			f.refAt = res.refAt
			if ref.Commit != "" {
				f.refAt = ref.At
			}
		}
		return f, err
	}
	if errors.Is(err, hubclient.ErrUnreachable) {
		if f, ok := n.resolveStale(r, req, token); ok {
			n.log.Warn("hub unreachable, serving cached metadata", "repo", repoKey, "revision", req.Revision, "err", err)
			return f, nil
		}
	}
	return nil, err
}

type headResult struct {
	commit string
	entry  fileEntry
	refAt  time.Time // when a branch's commit was recorded; zero for a commit revision
}

// headUpstream asks the Hub for a file's metadata and records what it learnt:
// the revision's commit, the file's metadata (or its absence) and whether the
// token may read the repository.
func (n *Node) headUpstream(ctx context.Context, r *Remote, repo hf.Repo, rev hf.Revision, p hf.Path, token string) (headResult, error) {
	meta, err := r.Hub.HeadFile(ctx, repo, rev, p, token)
	if err != nil {
		var he *hubclient.Error
		switch {
		case errors.As(err, &he) && errors.Is(err, hubclient.ErrEntryNotFound) && hf.IsCommit(he.RepoCommit):
			// The repository is readable and the file is absent at that
			// commit: both facts are worth keeping.
			n.access.accepted(scope(r, repo), token)
			n.rememberRef(r, repo, rev, he.RepoCommit)
			put(n.meta, bucketFiles, fileKey(r, repo, he.RepoCommit, p), fileEntry{NotFound: true})
		case errors.Is(err, hubclient.ErrRepoNotFound), errors.Is(err, hubclient.ErrGatedRepo), errors.Is(err, hubclient.ErrUnauthorized):
			n.access.refused(scope(r, repo), token)
		}
		return headResult{}, err
	}
	if !hf.IsCommit(meta.Commit) {
		return headResult{}, fmt.Errorf("%w: X-Repo-Commit %q", hubclient.ErrBadResponse, meta.Commit)
	}
	id, err := hf.BlobIDFromETag(meta.ETag)
	if err != nil || (meta.LFS && id.Algo != hf.SHA256) || meta.Size < 0 {
		return headResult{}, fmt.Errorf("%w: ETag %q for %s", hubclient.ErrBadResponse, meta.ETag, p)
	}
	n.access.accepted(scope(r, repo), token)
	refAt := n.rememberRef(r, repo, rev, meta.Commit)
	fe := fileEntry{
		Blob:               id.String(),
		Size:               meta.Size,
		ContentType:        meta.ContentType,
		ContentDisposition: meta.ContentDisposition,
		Location:           meta.Location,
		LocationAt:         n.cfg.Now(),
		XetHash:            meta.XetHash,
	}
	fe.withDefaults(p) // stored with the entry: a hit formats nothing
	put(n.meta, bucketFiles, fileKey(r, repo, meta.Commit, p), fe)
	return headResult{commit: meta.Commit, entry: fe, refAt: refAt}, nil
}

// rememberRef records rev → commit unless rev already is a commit, and
// returns when it did (zero if it did not).
func (n *Node) rememberRef(r *Remote, repo hf.Repo, rev hf.Revision, commit string) time.Time {
	if rev.IsCommit() || !hf.IsCommit(commit) {
		return time.Time{}
	}
	at := n.cfg.Now()
	put(n.meta, bucketRefs, refKey(r, repo, string(rev)), refEntry{Commit: commit, At: at})
	return at
}

// resolveStale answers from cached metadata of any age while the Hub is
// unreachable. Public repositories stay available; gated and private ones
// only for callers whose access was confirmed within the auth TTL.
func (n *Node) resolveStale(r *Remote, req FileRequest, token string) (*File, bool) {
	repoKey := appendScope(nil, r, req.Repo)
	if !n.access.everPublic(repoKey) && !n.access.allowed(repoKey, token, n.cfg.AuthTTL) {
		return nil, false
	}
	commit, stale := string(req.Revision), false
	if !req.Revision.IsCommit() {
		ref, ok := get[refEntry](n.meta, bucketRefs, refKey(r, req.Repo, string(req.Revision)))
		if !ok {
			return nil, false
		}
		commit, stale = ref.Commit, !n.fresh(r, ref.At)
	}
	fe, ok := get[fileEntry](n.meta, bucketFiles, fileKey(r, req.Repo, commit, req.Path))
	if !ok {
		return nil, false
	}
	f, err := n.fileFrom(r, req, commit, fe, token, stale)
	return f, err == nil
}

// fileFrom turns a cached entry into a File, or the Hub's EntryNotFound.
func (n *Node) fileFrom(r *Remote, req FileRequest, commit string, fe fileEntry, token string, stale bool) (f *File, err error) {
	defer func() {
		if err == nil {
			if err = r.checkSize(f); err != nil {
				f = nil
			}
		}
	}()
	if fe.NotFound {
		return nil, &hubclient.Error{
			Status:     http.StatusNotFound,
			Code:       hf.CodeEntryNotFound,
			Message:    "Entry not found",
			RepoCommit: commit,
		}
	}
	if fe.etag == "" {
		fe.derive() // a fresh HEAD's entry, or one read before derive existed
	}
	if fe.etag == "" {
		return nil, fmt.Errorf("%w: cached content address %q", hubclient.ErrBadResponse, fe.Blob)
	}
	fe.withDefaults(req.Path)
	f = &File{
		Repo:               req.Repo,
		Commit:             commit,
		Path:               req.Path,
		Blob:               fe.id,
		Size:               fe.Size,
		ContentType:        fe.ContentType,
		ContentDisposition: fe.ContentDisposition,
		Stale:              stale,
		XetHash:            fe.XetHash,
		remote:             r,
		repository:         req.Repository,
		token:              token,
		etag:               fe.etag,
		sizeText:           fe.sizeText,
		blobKey:            fe.key,
	}
	if fe.Location != "" && n.cfg.Now().Sub(fe.LocationAt) < locationTTL {
		f.location = fe.Location
	}
	return f, nil
}

// contentTypeFor guesses a content type from the file name, as the Hub's CDN does.
func contentTypeFor(p hf.Path) string {
	if t := mime.TypeByExtension(path.Ext(string(p))); t != "" {
		return t
	}
	return "application/octet-stream"
}

// contentDisposition is the Hub's Content-Disposition for a file.
func contentDisposition(p hf.Path) string {
	base := p.Base()
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, base)
	return `inline; filename*=UTF-8''` + url.PathEscape(base) + `; filename="` + ascii + `";`
}
