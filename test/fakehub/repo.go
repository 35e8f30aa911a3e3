package fakehub

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// File is one file of a commit, as tests describe it.
type File struct {
	Path string // repo path; may contain "/", spaces, "+", unicode
	Data []byte // content; nil with Size > 0 means generated content
	Size int64  // with Data == nil: size of deterministic pseudo-random content from Seed
	Seed int64
	LFS  bool // stored with Git LFS: resolve answers 302 to the CDN
	Xet  bool // LFS and Xet-backed (implies LFS): chunked into the fake CAS's xorbs

	// Compressible (with Data == nil) generates partly compressible content:
	// 160 KiB blocks that are in turn random (stored uncompressed), text-like
	// (LZ4 shrinks them) and float-like (ByteGrouping4LZ4 shrinks them).
	Compressible bool
	// PrefixLen and PrefixSeed (with Data == nil): the first PrefixLen bytes
	// are those of the generated file {Seed: PrefixSeed} (same Compressible),
	// the rest those of {Seed: Seed}. Two Xet files sharing a prefix share
	// every chunk that ends within it (see XetChunks).
	PrefixLen  int64
	PrefixSeed int64
}

// RepoSpec describes a repository to create.
type RepoSpec struct {
	Type     hf.RepoType // hf.Model, hf.Dataset, hf.Space
	ID       string      // "ns/name"
	Private  bool
	Gated    string // "" (not gated), "auto" or "manual"
	Disabled bool   // every access answers 403 "Access to this resource is disabled."
	Files    []File
}

// entry is a file as stored at a commit.
type entry struct {
	path    string
	blob    *blob
	lfs     bool
	xet     bool
	pointer []byte // LFS pointer text (lfs only)
	oid     string // git object id: blob sha1 of the content, or of the pointer for LFS
	xetHash string
}

// addr is the content address a client keys the file by: sha256 for LFS, git sha1 otherwise.
func (e *entry) addr() string {
	if e.lfs {
		return e.blob.sha256
	}
	return e.blob.gitSHA1
}

// node is one entry of a commit's tree listing: a file or a directory.
type node struct {
	path string
	dir  bool
	file *entry // nil for directories
	oid  string // tree sha1 for directories
}

// commit is an immutable snapshot of a repository.
type commit struct {
	id     string
	parent *commit
	seq    int64
	title  string
	date   time.Time
	files  map[string]*entry
	nodes  []node             // files and directories, sorted by path
	index  map[string]int     // path -> position in nodes
	last   map[string]*commit // file path -> last commit that changed it
}

// repo is a repository with its refs and every commit ever made in it.
type repo struct {
	typ      hf.RepoType
	id       string
	objID    string // the "_id" of the API
	private  bool
	gated    string
	disabled bool
	created  time.Time
	branches map[string]string // name -> commit id
	tags     map[string]string
	special  map[string]string // "refs/pr/1", "refs/convert/parquet" -> commit id
	commits  map[string]*commit
	// xetHashes are the Xet file ids of every commit: what a Xet token of
	// this repo may reconstruct.
	xetHashes map[string]bool
}

func repoKey(t hf.RepoType, id string) string { return string(t) + "/" + id }

// resolve turns any revision the Hub accepts into a commit.
func (rp *repo) resolve(rev string) *commit {
	lookup := func(id string, ok bool) *commit {
		if !ok {
			return nil
		}
		return rp.commits[id]
	}
	if rev == "HEAD" {
		return lookup(rp.branches["main"], true)
	}
	if id, ok := rp.branches[rev]; ok {
		return lookup(id, true)
	}
	if id, ok := rp.tags[rev]; ok {
		return lookup(id, true)
	}
	if id, ok := rp.special[rev]; ok {
		return lookup(id, true)
	}
	if name, ok := strings.CutPrefix(rev, "refs/heads/"); ok {
		return lookup(rp.branches[name], rp.branches[name] != "")
	}
	if name, ok := strings.CutPrefix(rev, "refs/tags/"); ok {
		return lookup(rp.tags[name], rp.tags[name] != "")
	}
	if c := rp.commits[rev]; c != nil {
		return c
	}
	if shortSHA.MatchString(rev) {
		var found *commit
		for id, c := range rp.commits {
			if strings.HasPrefix(id, rev) {
				if found != nil {
					return nil // ambiguous
				}
				found = c
			}
		}
		return found
	}
	return nil
}

var shortSHA = regexp.MustCompile(`^[0-9a-f]{7,39}$`)

// lookupNode finds a file or directory of a commit.
func (c *commit) lookupNode(path string) (node, bool) {
	i, ok := c.index[path]
	if !ok {
		return node{}, false
	}
	return c.nodes[i], true
}

// children lists the nodes under dir ("" = root), one level or recursively.
func (c *commit) children(dir string, recursive bool) []node {
	var out []node
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	start := sort.Search(len(c.nodes), func(i int) bool { return c.nodes[i].path >= prefix })
	for _, n := range c.nodes[start:] {
		if !strings.HasPrefix(n.path, prefix) {
			break
		}
		if !recursive && strings.Contains(n.path[len(prefix):], "/") {
			continue
		}
		out = append(out, n)
	}
	return out
}

// lastCommit is the most recent commit that changed a file or anything under a directory.
func (c *commit) lastCommit(n node) *commit {
	if !n.dir {
		return c.last[n.path]
	}
	var best *commit
	for _, ch := range c.children(n.path, true) {
		if ch.dir {
			continue
		}
		if lc := c.last[ch.path]; best == nil || lc.seq > best.seq {
			best = lc
		}
	}
	return best
}

// buildEntry turns a File into a stored entry, reusing generated blobs.
func (h *Hub) buildEntry(f File) *entry {
	p, err := hf.ParsePath(f.Path)
	if err != nil {
		panic(fmt.Sprintf("fakehub: %v", err))
	}
	var b *blob
	if f.Data != nil || f.Size == 0 {
		b = newDataBlob(f.Data)
	} else {
		g := genSpec{seed: f.Seed, compressible: f.Compressible}
		if f.PrefixLen > 0 {
			g.prefixSeed, g.prefixLen = f.PrefixSeed, f.PrefixLen
		}
		k := genKey{size: f.Size, gen: g}
		if b = h.genBlobs[k]; b == nil {
			if f.Xet {
				b = h.newXetGenBlob(f.Size, g)
			} else {
				b = newGenBlob(f.Size, g)
			}
			h.genBlobs[k] = b
		}
	}
	if prev := h.blobs[b.sha256]; prev != nil {
		if prev.xet == nil && prev.pending == nil {
			prev.pending = b.pending
		}
		b = prev
	} else {
		h.blobs[b.sha256] = b
	}
	e := &entry{path: string(p), blob: b, lfs: f.LFS || f.Xet, xet: f.Xet, oid: b.gitSHA1}
	if e.lfs {
		e.pointer = lfsPointer(b.sha256, b.size)
		e.oid = hf.GitBlobSHA1(e.pointer)
	}
	if e.xet {
		e.xetHash = h.registerXet(b).hash.String()
	}
	return e
}

type genKey struct {
	size int64
	gen  genSpec
}

// newCommit records a commit of files on top of parent (nil for the first one).
func (h *Hub) newCommit(rp *repo, parent *commit, files map[string]*entry, title string) *commit {
	h.seq++
	c := &commit{parent: parent, seq: h.seq, title: title, date: h.clock().UTC().Truncate(time.Millisecond), files: files}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	s := sha1.New()
	fmt.Fprintf(s, "fakehub commit\nrepo %s\nseq %d\n", repoKey(rp.typ, rp.id), c.seq)
	if parent != nil {
		fmt.Fprintf(s, "parent %s\n", parent.id)
	}
	for _, p := range paths {
		fmt.Fprintf(s, "%s %s\n", files[p].oid, p)
	}
	c.id = hex.EncodeToString(s.Sum(nil))

	c.last = make(map[string]*commit, len(files))
	for p, e := range files {
		if parent != nil {
			if pe := parent.files[p]; pe != nil && pe.oid == e.oid && pe.xet == e.xet {
				c.last[p] = parent.last[p]
				continue
			}
		}
		c.last[p] = c
	}
	c.buildNodes(paths)
	rp.commits[c.id] = c
	for _, e := range files {
		if e.xet {
			rp.xetHashes[e.xetHash] = true
		}
	}
	return c
}

// buildNodes derives the directory entries and their tree ids from the file paths.
func (c *commit) buildNodes(paths []string) {
	dirs := map[string]bool{}
	for _, p := range paths {
		for d := p; ; {
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				break
			}
			d = d[:i]
			dirs[d] = true
		}
	}
	for _, p := range paths {
		c.nodes = append(c.nodes, node{path: p, file: c.files[p], oid: c.files[p].oid})
	}
	for d := range dirs {
		c.nodes = append(c.nodes, node{path: d, dir: true})
	}
	sort.Slice(c.nodes, func(i, j int) bool { return c.nodes[i].path < c.nodes[j].path })
	c.index = make(map[string]int, len(c.nodes))
	for i, n := range c.nodes {
		c.index[n.path] = i
	}
	// Tree ids bottom-up: deepest directories first.
	order := make([]int, 0, len(dirs))
	for i, n := range c.nodes {
		if n.dir {
			order = append(order, i)
		}
	}
	sort.Slice(order, func(a, b int) bool {
		return strings.Count(c.nodes[order[a]].path, "/") > strings.Count(c.nodes[order[b]].path, "/")
	})
	for _, i := range order {
		s := sha1.New()
		s.Write([]byte("fakehub tree\n"))
		for _, ch := range c.children(c.nodes[i].path, false) {
			fmt.Fprintf(s, "%s %s\n", c.nodes[c.index[ch.path]].oid, ch.path)
		}
		c.nodes[i].oid = hex.EncodeToString(s.Sum(nil))
	}
}

// AddRepo creates a repository with branch "main" holding one commit of files
// and returns that commit. It panics if the repository exists or is invalid.
func (h *Hub) AddRepo(spec RepoSpec) (commitID string) {
	t := spec.Type
	if t == "" {
		t = hf.Model
	}
	if _, err := hf.NewRepo(t, spec.ID); err != nil {
		panic(fmt.Sprintf("fakehub: %v", err))
	}
	switch spec.Gated {
	case "", "auto", "manual":
	default:
		panic(fmt.Sprintf("fakehub: gated must be \"\", \"auto\" or \"manual\", not %q", spec.Gated))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	key := repoKey(t, spec.ID)
	if h.repos[key] != nil {
		panic("fakehub: repo exists: " + key)
	}
	delete(h.redirects, key)
	objSum := sha1.Sum([]byte("fakehub repo " + key + strconv.FormatInt(h.seq, 10)))
	rp := &repo{
		typ: t, id: spec.ID, objID: hex.EncodeToString(objSum[:12]),
		private: spec.Private, gated: spec.Gated, disabled: spec.Disabled,
		created:  h.clock().UTC().Truncate(time.Millisecond),
		branches: map[string]string{}, tags: map[string]string{}, special: map[string]string{},
		commits: map[string]*commit{}, xetHashes: map[string]bool{},
	}
	files := map[string]*entry{}
	for _, f := range spec.Files {
		e := h.buildEntry(f)
		files[e.path] = e
	}
	c := h.newCommit(rp, nil, files, "Initial commit")
	rp.branches["main"] = c.id
	h.repos[key] = rp
	return c.id
}

// Commit makes a new commit on branch holding the parent's files plus files
// minus deletes, and returns it. The parent is the branch's head, or main's
// if the branch is new. branch may also be "refs/heads/X" (branch X) or a
// special ref such as "refs/pr/1" or "refs/convert/parquet", which is then
// created or moved instead of a branch.
func (h *Hub) Commit(t hf.RepoType, id, branch string, files []File, deletes []string) (commitID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rp := h.mustRepo(t, id)
	if _, err := hf.ParseRevision(branch); err != nil {
		panic(fmt.Sprintf("fakehub: branch: %v", err))
	}
	refs := rp.branches
	name := strings.TrimPrefix(branch, "refs/heads/")
	switch {
	case strings.HasPrefix(branch, "refs/tags/"):
		panic("fakehub: cannot commit on a tag: " + branch)
	case strings.HasPrefix(branch, "refs/") && !strings.HasPrefix(branch, "refs/heads/"):
		refs = rp.special
	}
	parentID, ok := refs[name]
	if !ok {
		parentID = rp.branches["main"]
	}
	parent := rp.commits[parentID]
	next := make(map[string]*entry, len(parent.files)+len(files))
	for p, e := range parent.files {
		next[p] = e
	}
	for _, p := range deletes {
		delete(next, p)
	}
	for _, f := range files {
		e := h.buildEntry(f)
		next[e.path] = e
	}
	title := fmt.Sprintf("Update %d files, delete %d", len(files), len(deletes))
	c := h.newCommit(rp, parent, next, title)
	refs[name] = c.id
	return c.id
}

// SetRef points a ref at a commit (or at anything rev resolves to).
//
// "refs/heads/X" is branch X and "refs/tags/X" tag X; "refs/pr/N",
// "refs/convert/X" and other "refs/..." are special refs. A plain name moves an
// existing branch or tag of that name; a new plain name is a branch if it
// contains "/" ("feature/x") and a tag otherwise ("v1.0").
func (h *Hub) SetRef(t hf.RepoType, id, ref, rev string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rp := h.mustRepo(t, id)
	if _, err := hf.ParseRevision(ref); err != nil {
		panic(fmt.Sprintf("fakehub: ref: %v", err))
	}
	c := rp.resolve(rev)
	if c == nil {
		panic(fmt.Sprintf("fakehub: %s has no revision %q", repoKey(t, id), rev))
	}
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		rp.branches[strings.TrimPrefix(ref, "refs/heads/")] = c.id
	case strings.HasPrefix(ref, "refs/tags/"):
		rp.tags[strings.TrimPrefix(ref, "refs/tags/")] = c.id
	case strings.HasPrefix(ref, "refs/"):
		rp.special[ref] = c.id
	case rp.branches[ref] != "":
		rp.branches[ref] = c.id
	case rp.tags[ref] != "":
		rp.tags[ref] = c.id
	case strings.Contains(ref, "/"):
		rp.branches[ref] = c.id
	default:
		rp.tags[ref] = c.id
	}
}

// DeleteRef removes a branch, tag or special ref (same naming as SetRef).
func (h *Hub) DeleteRef(t hf.RepoType, id, ref string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rp := h.mustRepo(t, id)
	if name, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		delete(rp.branches, name)
		return
	}
	if name, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		delete(rp.tags, name)
		return
	}
	delete(rp.special, ref)
	if _, ok := rp.branches[ref]; ok {
		delete(rp.branches, ref)
		return
	}
	delete(rp.tags, ref)
}

// Ref is the commit a revision resolves to now, or "" if it does not.
func (h *Hub) Ref(t hf.RepoType, id, rev string) string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	rp := h.repos[repoKey(t, id)]
	if rp == nil {
		return ""
	}
	if c := rp.resolve(rev); c != nil {
		return c.id
	}
	return ""
}

// Rename moves a repository; the old id then answers a relative 307 to the new one.
func (h *Hub) Rename(t hf.RepoType, oldID, newID string) {
	if _, err := hf.NewRepo(t, newID); err != nil {
		panic(fmt.Sprintf("fakehub: %v", err))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rp := h.mustRepo(t, oldID)
	nk := repoKey(t, newID)
	if h.repos[nk] != nil {
		panic("fakehub: repo exists: " + nk)
	}
	delete(h.repos, repoKey(t, oldID))
	delete(h.redirects, nk)
	rp.id = newID
	h.repos[nk] = rp
	h.redirects[repoKey(t, oldID)] = newID
}

// Alias makes id (a legacy single-segment id like "gpt2") answer a relative
// 307 to the canonical repository.
func (h *Hub) Alias(t hf.RepoType, canonical, id string) {
	if _, err := hf.NewRepo(t, id); err != nil {
		panic(fmt.Sprintf("fakehub: %v", err))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mustRepo(t, canonical)
	h.redirects[repoKey(t, id)] = canonical
}

// SetAccess changes a repository's visibility: private, and gated ("", "auto", "manual").
func (h *Hub) SetAccess(t hf.RepoType, id string, private bool, gated string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rp := h.mustRepo(t, id)
	rp.private, rp.gated = private, gated
}

// SetDisabled disables (or re-enables) a repository.
func (h *Hub) SetDisabled(t hf.RepoType, id string, disabled bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mustRepo(t, id).disabled = disabled
}

// mustRepo is for the test-facing mutators; h.mu is held.
func (h *Hub) mustRepo(t hf.RepoType, id string) *repo {
	rp := h.repos[repoKey(t, id)]
	if rp == nil {
		panic("fakehub: no repo " + repoKey(t, id))
	}
	return rp
}

// FileInfo describes a file at a revision, for tests to compare with.
type FileInfo struct {
	Path    string
	Size    int64  // real size
	SHA256  string // sha256 of the content
	GitSHA1 string // git blob sha1 of the content
	OID     string // git object id in the tree: GitSHA1, or the pointer's sha1 for LFS
	Commit  string // commit the revision resolved to
	LFS     bool
	Xet     bool
	XetHash string
}

// Addr is the content address clients key the file by (its normalised ETag):
// SHA256 for LFS files, GitSHA1 otherwise.
func (fi FileInfo) Addr() string {
	if fi.LFS {
		return fi.SHA256
	}
	return fi.GitSHA1
}

// lookupFile finds a file for the test-facing accessors.
func (h *Hub) lookupFile(t hf.RepoType, id, rev, path string) (*entry, *commit) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	rp := h.repos[repoKey(t, id)]
	if rp == nil {
		return nil, nil
	}
	c := rp.resolve(rev)
	if c == nil {
		return nil, nil
	}
	return c.files[path], c
}

// FileInfo describes a file; the zero FileInfo if repo, revision or file is missing.
func (h *Hub) FileInfo(t hf.RepoType, id, rev, path string) FileInfo {
	e, c := h.lookupFile(t, id, rev, path)
	if e == nil {
		return FileInfo{}
	}
	return FileInfo{
		Path: e.path, Size: e.blob.size, SHA256: e.blob.sha256, GitSHA1: e.blob.gitSHA1,
		OID: e.oid, Commit: c.id, LFS: e.lfs, Xet: e.xet, XetHash: e.xetHash,
	}
}

// Content is random access to a file's real content (not the LFS pointer);
// nil if repo, revision or file is missing. Its size is FileInfo(...).Size.
func (h *Hub) Content(t hf.RepoType, id, rev, path string) io.ReaderAt {
	e, _ := h.lookupFile(t, id, rev, path)
	if e == nil {
		return nil
	}
	return e.blob.reader()
}

// Bytes reads a whole file (nil if missing); for small files in tests.
func (h *Hub) Bytes(t hf.RepoType, id, rev, path string) []byte {
	e, _ := h.lookupFile(t, id, rev, path)
	if e == nil {
		return nil
	}
	buf := make([]byte, e.blob.size)
	if _, err := e.blob.reader().ReadAt(buf, 0); err != nil && err != io.EOF {
		panic(err)
	}
	return buf
}
