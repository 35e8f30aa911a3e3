package node

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
)

// Prefetch jobs ("warm jobs") fill every file of a repository revision on
// the file's owner before any client asks. A job is coordinated by one
// node: it resolves the revision to a commit, lists the files, groups their
// blobs by owner on the ring and asks each owner to fill its share (a few
// files at a time per owner, through the signed peer route
// /-/peer/warm), keeping the progress as the owners report it.
//
// Jobs are operational state, like a download in progress, not
// configuration: they live in the memory of the node that coordinates them,
// are never written to Raft or to disk, and end with that node. Their ids
// name that node, so any node's admin API can find a job.
//
// The same engine keeps immediate remotes' warm lists filled (warm.go):
// the warm loop runs a job per listed repository on the node that owns the
// repository on the ring.

// Errors of prefetch jobs.
var (
	// ErrJobNotFound: no job with that id on this node (finished jobs are
	// forgotten after a while, and all of them when the node stops).
	ErrJobNotFound = errors.New("node: no such job")
	// ErrStreamedRemote: a job on a remote that stores nothing.
	ErrStreamedRemote = errors.New("node: the remote's policy is streamed: it stores nothing, so there is nothing to warm")
	// ErrBadGlob: an include pattern that path.Match cannot read.
	ErrBadGlob = errors.New("node: bad include pattern")
)

// Job states.
const (
	JobRunning  = "running"
	JobDone     = "done"
	JobFailed   = "failed"
	JobCanceled = "canceled"
)

// What started a job.
const (
	TriggerAPI  = "api"  // POST /v1/jobs
	TriggerWarm = "warm" // a pass over an immediate remote's warm list
)

// Phases of a running job.
const (
	PhaseResolving = "resolving" // the revision to a commit
	PhaseListing   = "listing"   // the commit's files
	PhaseFetching  = "fetching"  // owners fill their blobs
)

const (
	maxJobErrors      = 20        // per-file errors a job keeps
	maxFinishedJobs   = 100       // finished API jobs kept
	finishedJobTTL    = time.Hour // how long a finished API job is kept
	jobBusyRetries    = 30        // an owner at its maximum of fills is asked again
	jobResolveTimeout = time.Minute
)

// JobSpec is what a prefetch job fetches.
type JobSpec struct {
	Remote       string // "" is the default remote
	Repository   string // the configured repository: fills count against its quota
	Distribution string // informational: the distribution the job was started for
	Repo         hf.Repo
	Revision     hf.Revision // "" is main
	// Include are globs over file paths (see included); empty: every file.
	Include []string
}

// Job is a snapshot of a prefetch job, as the admin API shows it.
type Job struct {
	ID           string      `json:"id"`
	Node         string      `json:"node"` // the coordinating node
	Trigger      string      `json:"trigger"`
	State        string      `json:"state"`
	Phase        string      `json:"phase,omitempty"`
	Remote       string      `json:"remote"`
	Repository   string      `json:"repository,omitempty"`
	Distribution string      `json:"distribution,omitempty"`
	Type         hf.RepoType `json:"type"`
	Repo         string      `json:"repo"`
	Revision     string      `json:"revision"`
	Commit       string      `json:"commit,omitempty"`
	Include      []string    `json:"include,omitempty"`
	Files        JobFiles    `json:"files"`
	Bytes        JobBytes    `json:"bytes"`
	// Owners is how many of the files each node owns (and fills).
	Owners map[string]int `json:"owners,omitempty"`
	// Error says why the job failed or was canceled; Errors are the first
	// per-file failures.
	Error      string     `json:"error,omitempty"`
	Errors     []JobError `json:"errors,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// JobFiles counts a job's files. Done includes Cached; Total excludes Skipped.
type JobFiles struct {
	Total   int `json:"total"`
	Done    int `json:"done"`    // on their owner now: fetched by the job or already there
	Cached  int `json:"cached"`  // already on their owner
	Failed  int `json:"failed"`  // could not be filled
	Skipped int `json:"skipped"` // larger than the remote's max_file_size
}

// JobBytes counts a job's bytes. Done and Fetched include the bytes of
// files still being filled; Upstream and Peer count finished files only.
type JobBytes struct {
	Total    int64 `json:"total"`
	Done     int64 `json:"done"`
	Cached   int64 `json:"cached"`   // already on their owner
	Fetched  int64 `json:"fetched"`  // copied by the job, from the Hub or a peer
	Upstream int64 `json:"upstream"` // of finished files: fetched from the Hub
	Peer     int64 `json:"peer"`     // of finished files: copied from another node
}

// JobError is one file a job could not fill.
type JobError struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// job is a running or finished prefetch job.
type job struct {
	spec   JobSpec
	key    string // warm jobs: the warm item they fill
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	v        Job
	inflight map[int]int64 // file index → bytes written so far
}

func (j *job) snapshot() Job {
	j.mu.Lock()
	defer j.mu.Unlock()
	v := j.v
	v.Include = slices.Clone(v.Include)
	v.Errors = slices.Clone(v.Errors)
	if v.Owners != nil {
		v.Owners = make(map[string]int, len(j.v.Owners))
		for k, c := range j.v.Owners {
			v.Owners[k] = c
		}
	}
	for _, w := range j.inflight {
		v.Bytes.Done += w
		v.Bytes.Fetched += w
	}
	return v
}

func (j *job) update(f func(v *Job)) {
	j.mu.Lock()
	f(&j.v)
	j.mu.Unlock()
}

func (j *job) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// progress records how far a file's fill is.
func (j *job) progress(i int, written int64) {
	j.mu.Lock()
	if _, ok := j.inflight[i]; ok {
		j.inflight[i] = written
	}
	j.mu.Unlock()
}

// fileStarted and fileEnded bracket one file's work; ended counts the
// outcome (a file cut short by cancellation counts nowhere).
func (j *job) fileStarted(i int) {
	j.mu.Lock()
	j.inflight[i] = 0
	j.mu.Unlock()
}

func (j *job) fileEnded(f jobFile, res WarmResult, err error, canceled bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	written := j.inflight[f.idx]
	delete(j.inflight, f.idx)
	switch {
	case canceled:
		// The fill goes on without the job; count what it had so far.
		j.v.Bytes.Done += written
		j.v.Bytes.Fetched += written
	case err != nil:
		j.v.Files.Failed++
		if len(j.v.Errors) < maxJobErrors {
			j.v.Errors = append(j.v.Errors, JobError{Path: string(f.path), Error: err.Error()})
		}
	default:
		j.v.Files.Done++
		j.v.Bytes.Done += f.size
		switch res.Source {
		case SourceDisk:
			j.v.Files.Cached++
			j.v.Bytes.Cached += f.size
		case SourcePeer:
			j.v.Bytes.Fetched += f.size
			j.v.Bytes.Peer += f.size
		default:
			j.v.Bytes.Fetched += f.size
			j.v.Bytes.Upstream += f.size
		}
	}
}

// jobTable holds a node's jobs: running ones, and recently finished ones
// so their outcome can be read.
type jobTable struct {
	mu    sync.Mutex
	byID  map[string]*job
	order []*job // oldest first
}

func newJobTable() *jobTable { return &jobTable{byID: map[string]*job{}} }

func (t *jobTable) add(j *job) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[j.v.ID] = j
	t.order = append(t.order, j)
}

func (t *jobTable) get(id string) (*job, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.byID[id]
	return j, ok
}

// all lists the jobs, newest first.
func (t *jobTable) all() []*job {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.order)
	slices.Reverse(out)
	return out
}

// prune forgets finished jobs: warm jobs but the newest of each warm item,
// API jobs past finishedJobTTL or beyond the newest maxFinishedJobs.
// Running jobs are always kept.
func (t *jobTable) prune(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seenWarm := map[string]bool{}
	api := 0
	keep := make([]*job, 0, len(t.order))
	for i := len(t.order) - 1; i >= 0; i-- {
		j := t.order[i]
		drop := false
		if j.finished() {
			v := j.snapshot()
			if j.key != "" {
				drop = seenWarm[j.key]
				seenWarm[j.key] = true
			} else {
				api++
				drop = api > maxFinishedJobs || (v.FinishedAt != nil && now.Sub(*v.FinishedAt) > finishedJobTTL)
			}
		}
		if drop {
			delete(t.byID, j.v.ID)
			continue
		}
		keep = append(keep, j)
	}
	slices.Reverse(keep)
	t.order = keep
}

// cancelWarm cancels the running warm jobs whose item is not in keep.
func (t *jobTable) cancelWarm(keep map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, j := range t.order {
		if j.key != "" && !keep[j.key] && !j.finished() {
			j.cancel()
		}
	}
}

// StartJob starts a prefetch job coordinated by this node and returns its
// first snapshot. What a caller can get wrong is checked before it starts:
// the remote (and its include/exclude patterns), the include globs, and the
// revision, which is resolved to a commit now (an unknown repository or
// revision is the Hub's error).
func (n *Node) StartJob(ctx context.Context, spec JobSpec) (Job, error) {
	if spec.Revision == "" {
		spec.Revision = "main"
	}
	if err := n.checkJob(spec); err != nil {
		return Job{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, jobResolveTimeout)
	defer cancel()
	commit, err := n.resolveCommit(rctx, spec)
	if err != nil {
		return Job{}, err
	}
	j := n.newJob(spec, TriggerAPI, "")
	j.v.Commit, j.v.Phase = commit, PhaseListing
	if err := n.launch(j); err != nil {
		return Job{}, err
	}
	n.log.Info("job started", "job", j.v.ID, "remote", spec.Remote, "repo", spec.Repo, "revision", spec.Revision, "commit", commit)
	return j.snapshot(), nil
}

// checkJob refuses what no job can fetch.
func (n *Node) checkJob(spec JobSpec) error {
	r, err := n.admit(spec.Remote, spec.Repo)
	if err != nil {
		return err
	}
	if r.Policy == PolicyStreamed {
		return fmt.Errorf("%w (remote %q)", ErrStreamedRemote, r.Name)
	}
	for _, g := range spec.Include {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return fmt.Errorf("%w %q", ErrBadGlob, g)
		}
	}
	return nil
}

// Job returns a snapshot of one of this node's jobs.
func (n *Node) Job(id string) (Job, error) {
	j, ok := n.jobs.get(id)
	if !ok {
		return Job{}, fmt.Errorf("%w %q on node %s", ErrJobNotFound, id, n.cfg.Name)
	}
	return j.snapshot(), nil
}

// Jobs lists this node's jobs, newest first: the running ones and those
// finished recently.
func (n *Node) Jobs() []Job {
	n.jobs.prune(n.cfg.Now())
	js := n.jobs.all()
	out := make([]Job, 0, len(js))
	for _, j := range js {
		out = append(out, j.snapshot())
	}
	return out
}

// CancelJob cancels a running job and waits (until ctx ends) for it to
// stop; a finished job is left as it is. Fills already under way complete:
// they are shared with every client reading the blob.
func (n *Node) CancelJob(ctx context.Context, id string) (Job, error) {
	j, ok := n.jobs.get(id)
	if !ok {
		return Job{}, fmt.Errorf("%w %q on node %s", ErrJobNotFound, id, n.cfg.Name)
	}
	j.cancel()
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return j.snapshot(), nil
}

func (n *Node) newJob(spec JobSpec, trigger, key string) *job {
	if spec.Revision == "" {
		spec.Revision = "main"
	}
	remote := spec.Remote
	if remote == "" {
		remote = DefaultRemote
	}
	return &job{spec: spec, key: key, done: make(chan struct{}), inflight: map[int]int64{}, v: Job{
		ID: newJobID(n.cfg.Name), Node: n.cfg.Name, Trigger: trigger, State: JobRunning, Phase: PhaseResolving,
		Remote: remote, Repository: spec.Repository, Distribution: spec.Distribution,
		Type: spec.Repo.Type, Repo: spec.Repo.ID, Revision: string(spec.Revision),
		Include: slices.Clone(spec.Include), StartedAt: n.cfg.Now(),
	}}
}

// launch runs a job in the background, owned by the node.
func (n *Node) launch(j *job) error {
	if err := n.ctx.Err(); err != nil {
		return fmt.Errorf("node: shutting down: %w", err)
	}
	ctx, cancel := context.WithCancel(n.ctx)
	j.cancel = cancel
	n.wg.Add(1)
	n.jobs.add(j)
	n.jobs.prune(n.cfg.Now())
	go n.runJob(ctx, j)
	return nil
}

func (n *Node) runJob(ctx context.Context, j *job) {
	defer n.wg.Done()
	defer j.cancel()
	err := n.executeJob(ctx, j)
	now := n.cfg.Now()
	j.update(func(v *Job) {
		complete := v.Phase == PhaseFetching && v.Files.Done+v.Files.Failed == v.Files.Total
		v.Phase, v.FinishedAt = "", &now
		switch {
		case (err != nil || !complete) && ctx.Err() != nil:
			v.State, v.Error = JobCanceled, "canceled"
			if n.ctx.Err() != nil {
				v.Error = "canceled: the node is shutting down"
			}
		case err != nil:
			v.State, v.Error = JobFailed, err.Error()
		case v.Files.Failed > 0:
			v.State, v.Error = JobFailed, fmt.Sprintf("%d of %d files failed", v.Files.Failed, v.Files.Total)
		default:
			v.State = JobDone
		}
	})
	close(j.done)
	v := j.snapshot()
	args := []any{"job", v.ID, "trigger", v.Trigger, "state", v.State, "repo", j.spec.Repo, "revision", v.Revision, "commit", v.Commit,
		"files", v.Files.Total, "cached", v.Files.Cached, "failed", v.Files.Failed, "bytes_fetched", v.Bytes.Fetched, "took", now.Sub(v.StartedAt)}
	switch {
	case v.State == JobFailed:
		n.log.Warn("job failed", append(args, "err", v.Error)...)
	case v.Trigger == TriggerWarm && v.Files.Done == v.Files.Cached:
		n.log.Debug("job finished", args...)
	default:
		n.log.Info("job finished", args...)
	}
	n.jobs.prune(now)
}

// jobFile is one file of a job, with where its blob lives.
type jobFile struct {
	idx   int
	path  hf.Path
	blob  hf.BlobID
	size  int64
	route []Peer // the blob's owner and the next nodes; nil on a single node
}

// executeJob resolves, lists, and has every owner fill its files.
func (n *Node) executeJob(ctx context.Context, j *job) error {
	spec := j.spec
	commit := j.snapshot().Commit
	if commit == "" {
		if err := n.checkJob(spec); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, jobResolveTimeout)
		c, err := n.resolveCommit(rctx, spec)
		cancel()
		if err != nil {
			return err
		}
		commit = c
	}
	j.update(func(v *Job) { v.Commit, v.Phase = commit, PhaseListing })
	r, err := n.remote(spec.Remote)
	if err != nil {
		return err
	}
	files, skipped, err := n.planJob(ctx, r, spec, commit)
	if err != nil {
		return err
	}

	// Group by owner: each owner fills a few of its files at a time.
	groups := map[string][]jobFile{}
	owners := map[string]int{}
	var total int64
	for _, f := range files {
		owner := n.cfg.Name
		if n.cluster != nil {
			f.route = n.cluster.Route(f.blob.String(), 3)
			owner = f.route[0].Name
		}
		groups[owner] = append(groups[owner], f)
		owners[owner]++
		total += f.size
	}
	j.update(func(v *Job) {
		v.Phase = PhaseFetching
		v.Files.Total, v.Files.Skipped, v.Bytes.Total, v.Owners = len(files), skipped, total, owners
	})
	req := PeerWarmRequest{Remote: r.Name, Repository: spec.Repository, Type: spec.Repo.Type, ID: spec.Repo.ID, Commit: commit}
	var wg sync.WaitGroup
	for _, g := range groups {
		var next atomic.Int64
		for w := 0; w < min(n.cfg.JobConcurrency, len(g)); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(g) || ctx.Err() != nil {
						return
					}
					n.warmJobFile(ctx, j, req, g[i])
				}
			}()
		}
	}
	wg.Wait()
	return nil
}

// warmJobFile has one file filled by its owner and counts the outcome.
func (n *Node) warmJobFile(ctx context.Context, j *job, req PeerWarmRequest, f jobFile) {
	req.Path, req.Blob, req.Size = string(f.path), f.blob.String(), f.size
	j.fileStarted(f.idx)
	var res WarmResult
	var err error
	for attempt := 1; ; attempt++ {
		res, err = n.warmVia(ctx, f.route, req, func(written int64) { j.progress(f.idx, written) })
		if !errors.Is(err, ErrBusy) || attempt >= jobBusyRetries {
			break
		}
		// The owner runs its maximum of fills: ask again shortly.
		t := time.NewTimer(time.Duration(min(attempt, 8)) * 250 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	j.fileEnded(f, res, err, ctx.Err() != nil)
}

// warmVia asks the first reachable node of route to fill the file (this
// node itself when it comes first, or nobody else answers).
func (n *Node) warmVia(ctx context.Context, route []Peer, req PeerWarmRequest, progress func(int64)) (WarmResult, error) {
	for _, p := range route {
		if p.Name == n.cluster.Self() {
			break
		}
		res, err := n.peers.warm(ctx, p, req, progress)
		if errors.Is(err, errPeerDown) || errors.Is(err, ErrPeerAuth) {
			n.log.Warn("blob owner unreachable for a job, trying the next node", "peer", p.Name, "blob", req.Blob, "err", err)
			continue
		}
		return res, err
	}
	return n.WarmLocal(ctx, req, progress)
}

// resolveCommit resolves the job's revision to a commit through the
// repository's owner (the info API: one request for the cluster per TTL).
func (n *Node) resolveCommit(ctx context.Context, spec JobSpec) (string, error) {
	resp, err := n.API(ctx, APIRequest{Remote: spec.Remote, Access: AccessRemote, Repo: spec.Repo, Endpoint: EndpointInfo, Revision: spec.Revision})
	if err != nil {
		return "", fmt.Errorf("resolving %s@%s: %w", spec.Repo, spec.Revision, err)
	}
	var info struct {
		SHA string `json:"sha"`
	}
	if err := json.Unmarshal(resp.Body, &info); err != nil || !hf.IsCommit(info.SHA) {
		return "", fmt.Errorf("%w: the info of %s@%s names no commit", hubclient.ErrBadResponse, spec.Repo, spec.Revision)
	}
	return info.SHA, nil
}

// treeEntry is a file of the tree API, as far as a job needs it.
type treeEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	OID  string `json:"oid"`
	Size int64  `json:"size"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// planJob lists the commit's files the job includes, with their content
// addresses taken from the listing (LFS: the sha256; others: the git blob
// sha1), so no file needs a request of its own to be placed on the ring.
// Files over the remote's maximum size are skipped.
func (n *Node) planJob(ctx context.Context, r *Remote, spec JobSpec, commit string) (files []jobFile, skipped int, err error) {
	entries, err := n.listTree(ctx, r.Name, spec.Repo, hf.Revision(commit))
	if err != nil {
		return nil, 0, fmt.Errorf("listing %s@%s: %w", spec.Repo, commit, err)
	}
	for _, e := range entries {
		if !included(e.Path, spec.Include) {
			continue
		}
		p, err := hf.ParsePath(e.Path)
		if err != nil {
			continue
		}
		f := jobFile{idx: len(files), path: p, size: e.Size}
		switch {
		case e.LFS != nil:
			f.blob, err = hf.NewBlobID(hf.SHA256, e.LFS.OID)
			f.size = e.LFS.Size
		default:
			f.blob, err = hf.NewBlobID(hf.GitSHA1, e.OID)
		}
		if err != nil {
			// A listing without content addresses: ask for the file's.
			rf, rerr := n.Resolve(ctx, FileRequest{Remote: r.Name, Repository: spec.Repository, Repo: spec.Repo, Revision: hf.Revision(commit), Path: p, Access: AccessRemote})
			if rerr != nil {
				if ctx.Err() != nil {
					return nil, 0, ctx.Err()
				}
				var he *hubclient.Error
				if errors.As(rerr, &he) && he.Code == "FileTooLarge" {
					skipped++
					continue
				}
				return nil, 0, fmt.Errorf("resolving %s: %w", p, rerr)
			}
			f.blob, f.size = rf.Blob, rf.Size
		}
		if r.MaxFileSize > 0 && f.size > r.MaxFileSize {
			skipped++
			continue
		}
		files = append(files, f)
	}
	return files, skipped, nil
}

// listTree lists every file of a revision through the tree API (all pages).
func (n *Node) listTree(ctx context.Context, remote string, repo hf.Repo, rev hf.Revision) ([]treeEntry, error) {
	q := url.Values{"recursive": {"true"}, "expand": {"false"}}
	var out []treeEntry
	for page := 0; page < 100_000; page++ {
		resp, err := n.API(ctx, APIRequest{Remote: remote, Access: AccessRemote, Repo: repo, Endpoint: EndpointTree, Revision: rev, Query: q})
		if err != nil {
			return nil, err
		}
		var entries []treeEntry
		if err := json.Unmarshal(resp.Body, &entries); err != nil {
			return nil, fmt.Errorf("%w: tree listing: %v", hubclient.ErrBadResponse, err)
		}
		for _, e := range entries {
			if e.Type == "file" {
				out = append(out, e)
			}
		}
		if resp.Next == "" {
			return out, nil
		}
		_, rawQuery, _ := strings.Cut(resp.Next, "?")
		if q, err = url.ParseQuery(rawQuery); err != nil {
			return nil, fmt.Errorf("%w: tree pagination: %v", hubclient.ErrBadResponse, err)
		}
	}
	return out, nil
}

// Job ids are random and URL-safe, and name the coordinating node after a
// dot ("k3q…x.node-1"), so any node can tell where a job lives. A node
// name outside [A-Za-z0-9._-] is base64url-encoded behind a "~".
var plainNodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

var jobIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newJobID(nodeName string) string {
	var b [10]byte
	rand.Read(b[:])
	enc := nodeName
	if !plainNodeName.MatchString(nodeName) {
		enc = "~" + base64.RawURLEncoding.EncodeToString([]byte(nodeName))
	}
	return jobIDEncoding.EncodeToString(b[:]) + "." + enc
}

// JobNode is the name of the node that coordinates the job with this id.
func JobNode(id string) (string, bool) {
	_, enc, ok := strings.Cut(id, ".")
	if !ok || enc == "" {
		return "", false
	}
	if b64, ok := strings.CutPrefix(enc, "~"); ok {
		name, err := base64.RawURLEncoding.DecodeString(b64)
		if err != nil || len(name) == 0 {
			return "", false
		}
		return string(name), true
	}
	if !plainNodeName.MatchString(enc) {
		return "", false
	}
	return enc, true
}
