package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// The jobs API: prefetch ("warm") jobs.
//
//	POST   /v1/jobs       start a job on this node; 201 with the job
//	GET    /v1/jobs       this node's jobs, newest first
//	GET    /v1/jobs/{id}  one job (on any node: forwarded to the node that runs it)
//	DELETE /v1/jobs/{id}  cancel it; 200 with the job once it stopped
//
// Jobs are not configuration: they are not written to Raft, the node that
// receives the POST coordinates the job and keeps its progress in memory.
// A job's id names that node, so a GET or DELETE that reaches another node
// (say, through a load balancer) is relayed to it.

// JobRunner is what the jobs API needs from a node.
type JobRunner interface {
	StartJob(ctx context.Context, spec node.JobSpec) (node.Job, error)
	Job(id string) (node.Job, error)
	Jobs() []node.Job
	CancelJob(ctx context.Context, id string) (node.Job, error)
}

var _ JobRunner = (*node.Node)(nil)

// jobRequest is the body of POST /v1/jobs.
type jobRequest struct {
	Type         string   `json:"type"`         // model (default), dataset, space, kernel
	Repo         string   `json:"repo"`         // "namespace/name"
	Revision     string   `json:"revision"`     // default main
	Distribution string   `json:"distribution"` // default: "default", else the one at the root
	Include      []string `json:"include"`      // globs over file paths; empty: every file
}

var (
	errNoSuchDistribution = errors.New("no such distribution")
	errNodeUnreachable    = errors.New("node unreachable")
)

// cancelWait is how long DELETE /v1/jobs/{id} waits for the job to stop.
const cancelWait = 10 * time.Second

func (a *admin) startJob(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeAdminError(w, fmt.Errorf("%w: reading body: %v", errBadRequest, err))
		return
	}
	var in jobRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := trailing(body); err != nil {
		writeAdminError(w, fmt.Errorf("%w: job JSON: %v", errBadRequest, err))
		return
	}
	if err := dec.Decode(&in); err != nil {
		writeAdminError(w, fmt.Errorf("%w: job JSON: %v", errBadRequest, err))
		return
	}
	spec, err := a.jobSpec(in)
	if err != nil {
		writeAdminError(w, err)
		return
	}
	job, err := a.d.Jobs.StartJob(r.Context(), spec)
	if err != nil {
		writeAdminError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+job.ID)
	writeJSON(w, http.StatusCreated, job)
}

// jobSpec validates a job request and finds the distribution's repository
// and remote in the configuration.
func (a *admin) jobSpec(in jobRequest) (node.JobSpec, error) {
	t, err := hf.ParseRepoType(in.Type)
	if err != nil {
		return node.JobSpec{}, err
	}
	repo, err := hf.NewRepo(t, in.Repo)
	if err != nil {
		return node.JobSpec{}, err
	}
	rev := hf.Revision("main")
	if in.Revision != "" {
		if rev, err = hf.ParseRevision(in.Revision); err != nil {
			return node.JobSpec{}, err
		}
	}
	spec := node.JobSpec{Repo: repo, Revision: rev, Include: in.Include, Distribution: in.Distribution, Remote: node.DefaultRemote}
	if a.d.Config == nil {
		if in.Distribution != "" && in.Distribution != "default" {
			return node.JobSpec{}, fmt.Errorf("%w %q: this node serves only the default distribution", errNoSuchDistribution, in.Distribution)
		}
		spec.Distribution = "default"
		return spec, nil
	}
	s := a.d.Config.Snapshot()
	d, ok := s.Distributions[in.Distribution]
	if in.Distribution == "" {
		if d, ok = s.Distributions["default"]; !ok {
			for _, cand := range s.Distributions {
				if cand.BasePath == "" {
					d, ok = cand, true
				}
			}
		}
		if !ok {
			return node.JobSpec{}, fmt.Errorf("%w: no distribution is named default or serves the root: name one", errNoSuchDistribution)
		}
	}
	if !ok {
		return node.JobSpec{}, fmt.Errorf("%w %q", errNoSuchDistribution, in.Distribution)
	}
	rp, ok := s.Repositories[d.Repository]
	if !ok {
		return node.JobSpec{}, fmt.Errorf("%w %q: its repository %q does not exist", errNoSuchDistribution, d.Name, d.Repository)
	}
	spec.Distribution, spec.Repository, spec.Remote = d.Name, rp.Name, rp.Remote
	return spec, nil
}

func (a *admin) listJobs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.d.Jobs.Jobs())
}

func (a *admin) getJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if a.relayJob(w, r, id) {
		return
	}
	job, err := a.d.Jobs.Job(id)
	if err != nil {
		writeAdminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, job)
}

func (a *admin) cancelJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if a.relayJob(w, r, id) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), cancelWait)
	defer cancel()
	job, err := a.d.Jobs.CancelJob(ctx, id)
	if err != nil {
		writeAdminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, job)
}

// relayJob sends a request about a job that another node runs to that
// node, and reports whether it answered. A request relayed once is never
// relayed again.
func (a *admin) relayJob(w http.ResponseWriter, r *http.Request, id string) bool {
	owner, ok := node.JobNode(id)
	if !ok || owner == a.d.Node.Name() || r.Header.Get(headerForwarded) != "" {
		return false
	}
	base := a.leaderAdminURL(owner) // any member's admin URL, by name
	if base == "" {
		writeAdminError(w, fmt.Errorf("%w %q: it ran on node %s, which is not a member of the cluster now (jobs live in the memory of the node that started them)",
			node.ErrJobNotFound, id, owner))
		return true
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), nil)
	if err != nil {
		writeAdminError(w, err)
		return true
	}
	if v := r.Header.Get("Authorization"); v != "" {
		req.Header.Set("Authorization", v)
	}
	req.Header.Set(headerForwarded, a.d.Node.Name())
	resp, err := a.fwd.Do(req)
	if err != nil {
		writeAdminError(w, fmt.Errorf("%w: job %q runs on node %s: %v", errNodeUnreachable, id, owner, err))
		return true
	}
	defer resp.Body.Close()
	if v := resp.Header.Get("Content-Type"); v != "" {
		w.Header().Set("Content-Type", v)
	}
	w.Header().Set(headerNode, owner)
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, maxAdminBody*8))
	return true
}

// jobError maps the errors of starting and reading jobs to a status and an
// error code; writeAdminError calls it. A Hub refusal must not become a
// 401, which would read as a wrong admin token.
func jobError(err error) (status int, code string, ok bool) {
	var he *hubclient.Error
	switch {
	case errors.Is(err, hf.ErrInvalid), errors.Is(err, node.ErrBadGlob), errors.Is(err, node.ErrStreamedRemote):
		return http.StatusBadRequest, "bad_request", true
	case errors.Is(err, node.ErrJobNotFound), errors.Is(err, errNoSuchDistribution):
		return http.StatusNotFound, "not_found", true
	case errors.Is(err, node.ErrUnknownRemote):
		return http.StatusServiceUnavailable, "remote_not_configured", true
	case errors.Is(err, errNodeUnreachable):
		return http.StatusBadGateway, "node_unreachable", true
	case errors.Is(err, hubclient.ErrUnreachable):
		return http.StatusGatewayTimeout, "upstream_unreachable", true
	case errors.As(err, &he):
		switch {
		case he.Code == hf.CodeRepoNotFound:
			return http.StatusNotFound, "repo_not_found", true
		case he.Code == hf.CodeRevisionNotFound:
			return http.StatusNotFound, "revision_not_found", true
		case he.Code == hf.CodeGatedRepo:
			return http.StatusForbidden, "gated_repo", true
		case he.Code == "RepoDenied":
			return http.StatusForbidden, "repo_denied", true
		case he.Status == http.StatusTooManyRequests:
			return http.StatusTooManyRequests, "upstream_rate_limited", true
		case he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden:
			return http.StatusForbidden, "upstream_refused", true
		case he.Status == http.StatusNotFound:
			return http.StatusNotFound, "not_found", true
		}
		return http.StatusBadGateway, "upstream_error", true
	case errors.Is(err, hubclient.ErrBadResponse):
		return http.StatusBadGateway, "upstream_error", true
	}
	return 0, "", false
}
