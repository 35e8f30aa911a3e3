package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/raftstore"
)

// fakeJobs is a JobRunner whose answers each test sets.
type fakeJobs struct {
	node  string
	start func(node.JobSpec) (node.Job, error)

	mu       sync.Mutex
	specs    []node.JobSpec
	jobs     map[string]node.Job
	canceled []string
}

func (f *fakeJobs) StartJob(_ context.Context, spec node.JobSpec) (node.Job, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.mu.Unlock()
	j, err := f.start(spec)
	if err == nil {
		f.mu.Lock()
		f.jobs[j.ID] = j
		f.mu.Unlock()
	}
	return j, err
}

func (f *fakeJobs) Job(id string) (node.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return node.Job{}, fmt.Errorf("%w %q on node %s", node.ErrJobNotFound, id, f.node)
	}
	return j, nil
}

func (f *fakeJobs) Jobs() []node.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []node.Job
	for _, j := range f.jobs {
		out = append(out, j)
	}
	return out
}

func (f *fakeJobs) CancelJob(_ context.Context, id string) (node.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return node.Job{}, fmt.Errorf("%w %q", node.ErrJobNotFound, id)
	}
	f.canceled = append(f.canceled, id)
	j.State = node.JobCanceled
	f.jobs[id] = j
	return j, nil
}

// jobsConfig is a configuration with two distributions on two remotes.
func jobsConfig() *fakeConfig {
	return &fakeConfig{status: raftstore.Status{State: "leader", LeaderID: "n1"}, snap: raftstore.Snapshot{
		Remotes: map[string]raftstore.Remote{"default": {Name: "default"}, "mirror": {Name: "mirror"}},
		Repositories: map[string]raftstore.Repository{
			"default": {Name: "default", Remote: "default"},
			"models":  {Name: "models", Remote: "mirror"},
		},
		Distributions: map[string]raftstore.Distribution{
			"default": {Name: "default", Repository: "default"},
			"lab":     {Name: "lab", BasePath: "/lab", Repository: "models"},
			"broken":  {Name: "broken", BasePath: "/b", Repository: "gone"},
		},
	}}
}

func newJobsServer(t *testing.T, name string, cfg ConfigStore, jobs *fakeJobs, token string, members func() []membership.Member) *httptest.Server {
	t.Helper()
	if members == nil {
		members = func() []membership.Member { return nil }
	}
	srv := httptest.NewServer(NewAdmin(AdminDeps{
		Node: namedNode(name), Store: func() StoreStats { return StoreStats{} }, Members: members,
		Config: cfg, Token: token, Jobs: jobs, Hold: 200 * time.Millisecond,
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runningJob(id string, spec node.JobSpec) node.Job {
	return node.Job{ID: id, Node: "n1", State: node.JobRunning, Remote: spec.Remote, Repository: spec.Repository,
		Type: spec.Repo.Type, Repo: spec.Repo.ID, Revision: string(spec.Revision), Commit: strings.Repeat("a", 40)}
}

func TestAdminStartJob(t *testing.T) {
	jobs := &fakeJobs{node: "n1", jobs: map[string]node.Job{}}
	jobs.start = func(spec node.JobSpec) (node.Job, error) { return runningJob("j1.n1", spec), nil }
	srv := newJobsServer(t, "n1", jobsConfig(), jobs, "tok", nil)

	resp, _, raw := adminDo(t, "POST", srv.URL+"/v1/jobs", "tok", `{"repo":"acme/m","include":["*.json"]}`, nil)
	var j node.Job
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") != "/v1/jobs/j1.n1" || json.Unmarshal([]byte(raw), &j) != nil || j.ID != "j1.n1" {
		t.Fatalf("POST: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), raw)
	}
	spec := jobs.specs[0]
	if spec.Remote != "default" || spec.Repository != "default" || spec.Distribution != "default" || spec.Repo != (hf.Repo{Type: hf.Model, ID: "acme/m"}) ||
		spec.Revision != "main" || len(spec.Include) != 1 {
		t.Fatalf("spec %+v", spec)
	}
	// Another distribution: its repository's remote.
	adminDo(t, "POST", srv.URL+"/v1/jobs", "tok", `{"type":"dataset","repo":"acme/d","revision":"v1","distribution":"lab"}`, nil)
	if spec := jobs.specs[1]; spec.Remote != "mirror" || spec.Repository != "models" || spec.Repo.Type != hf.Dataset || spec.Revision != "v1" {
		t.Fatalf("spec %+v", spec)
	}

	for _, c := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"unknown distribution", `{"repo":"acme/m","distribution":"nope"}`, 404, "not_found", `no such distribution "nope"`},
		{"dangling distribution", `{"repo":"acme/m","distribution":"broken"}`, 404, "not_found", `repository "gone"`},
		{"bad repo id", `{"repo":"../etc"}`, 400, "bad_request", "repo id"},
		{"bad type", `{"type":"checkpoint","repo":"acme/m"}`, 400, "bad_request", "repo type"},
		{"bad revision", `{"repo":"acme/m","revision":"a b"}`, 400, "bad_request", "revision"},
		{"unknown field", `{"repo":"acme/m","force":true}`, 400, "bad_request", "unknown field"},
		{"trailing data", `{"repo":"acme/m"} {}`, 400, "bad_request", "after the JSON"},
		{"no token", "", 401, "unauthorized", ""},
	} {
		tok := "tok"
		if c.name == "no token" {
			tok = ""
		}
		resp, e, raw := adminDo(t, "POST", srv.URL+"/v1/jobs", tok, c.body, nil)
		if resp.StatusCode != c.status || e.Code != c.code || !strings.Contains(e.Error, c.msg) {
			t.Errorf("%s: %d %s, want %d %s containing %q", c.name, resp.StatusCode, raw, c.status, c.code, c.msg)
		}
	}
	if len(jobs.specs) != 2 {
		t.Fatalf("refused requests reached the node: %d", len(jobs.specs))
	}
}

// The node's errors (the Hub's, mostly) map to statuses in one place; a
// Hub 401 must not read as a wrong admin token.
func TestAdminJobErrors(t *testing.T) {
	var next error
	jobs := &fakeJobs{node: "n1", jobs: map[string]node.Job{}, start: func(node.JobSpec) (node.Job, error) { return node.Job{}, next }}
	srv := newJobsServer(t, "n1", jobsConfig(), jobs, "", nil)
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("resolving: %w", &hubclient.Error{Status: 404, Code: hf.CodeRevisionNotFound, Message: "Invalid rev id: nope"}), 404, "revision_not_found"},
		{&hubclient.Error{Status: 401, Code: hf.CodeRepoNotFound}, 404, "repo_not_found"},
		{&hubclient.Error{Status: 401, Code: hf.CodeGatedRepo}, 403, "gated_repo"},
		{&hubclient.Error{Status: 403, Code: "RepoDenied"}, 403, "repo_denied"},
		{&hubclient.Error{Status: 401}, 403, "upstream_refused"},
		{&hubclient.Error{Status: 429}, 429, "upstream_rate_limited"},
		{&hubclient.Error{Status: 503}, 504, "upstream_unreachable"},
		{fmt.Errorf("%w: dial", hubclient.ErrUnreachable), 504, "upstream_unreachable"},
		{fmt.Errorf("%w (remote x)", node.ErrStreamedRemote), 400, "bad_request"},
		{fmt.Errorf("%w %q", node.ErrBadGlob, "[x"), 400, "bad_request"},
		{fmt.Errorf("%w %q", node.ErrUnknownRemote, "x"), 503, "remote_not_configured"},
	} {
		next = c.err
		resp, e, raw := adminDo(t, "POST", srv.URL+"/v1/jobs", "", `{"repo":"acme/m"}`, nil)
		if resp.StatusCode != c.status || e.Code != c.code || e.Error != c.err.Error() {
			t.Errorf("%v: %d %s, want %d %s", c.err, resp.StatusCode, raw, c.status, c.code)
		}
	}
}

// A job lives on the node that started it: GET and DELETE reaching another
// node are relayed there, once.
func TestAdminJobsAcrossNodes(t *testing.T) {
	jobs1 := &fakeJobs{node: "n1", jobs: map[string]node.Job{"a.n1": {ID: "a.n1", Node: "n1", State: node.JobRunning}}}
	jobs2 := &fakeJobs{node: "n2", jobs: map[string]node.Job{"b.n2": {ID: "b.n2", Node: "n2", State: node.JobDone}}}
	var members []membership.Member
	list := func() []membership.Member { return members }
	srv1 := newJobsServer(t, "n1", jobsConfig(), jobs1, "tok", list)
	srv2 := newJobsServer(t, "n2", jobsConfig(), jobs2, "tok", list)
	members = []membership.Member{
		{Name: "n1", State: membership.StateAlive, Meta: membership.Meta{AdminURL: srv1.URL}},
		{Name: "n2", State: membership.StateAlive, Meta: membership.Meta{AdminURL: srv2.URL}},
		{Name: "n3", State: membership.StateDead, Meta: membership.Meta{AdminURL: "http://127.0.0.1:1"}},
	}

	resp, _, raw := adminDo(t, "GET", srv1.URL+"/v1/jobs/b.n2", "tok", "", nil)
	var j node.Job
	if resp.StatusCode != 200 || json.Unmarshal([]byte(raw), &j) != nil || j.ID != "b.n2" || resp.Header.Get(headerNode) != "n2" {
		t.Fatalf("relayed GET: %d %s", resp.StatusCode, raw)
	}
	resp, _, raw = adminDo(t, "DELETE", srv2.URL+"/v1/jobs/a.n1", "tok", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(raw, `"state":"canceled"`) || len(jobs1.canceled) != 1 {
		t.Fatalf("relayed DELETE: %d %s", resp.StatusCode, raw)
	}
	// Unknown ids, here and there.
	for _, c := range []struct{ url, code, msg string }{
		{srv1.URL + "/v1/jobs/zzz.n1", "not_found", `no such job "zzz.n1" on node n1`},
		{srv1.URL + "/v1/jobs/zzz.n2", "not_found", `no such job "zzz.n2" on node n2`},
		{srv1.URL + "/v1/jobs/zzz.n9", "not_found", "ran on node n9, which is not a member"},
		{srv1.URL + "/v1/jobs/zzz", "not_found", "no such job"},
		{srv1.URL + "/v1/jobs/zzz.n3", "node_unreachable", "runs on node n3"},
	} {
		resp, e, raw := adminDo(t, "GET", c.url, "tok", "", nil)
		if e.Code != c.code || !strings.Contains(e.Error, c.msg) {
			t.Errorf("GET %s: %d %s, want %s containing %q", c.url, resp.StatusCode, raw, c.code, c.msg)
		}
	}
	// A relayed request is never relayed again.
	resp, e, _ := adminDo(t, "GET", srv1.URL+"/v1/jobs/b.n2", "tok", "", map[string]string{headerForwarded: "n3"})
	if resp.StatusCode != 404 || e.Code != "not_found" {
		t.Fatalf("a forwarded request was relayed: %d", resp.StatusCode)
	}
	// The list is this node's.
	resp, _, raw = adminDo(t, "GET", srv2.URL+"/v1/jobs", "tok", "", nil)
	var all []node.Job
	if resp.StatusCode != 200 || json.Unmarshal([]byte(raw), &all) != nil || len(all) != 1 || all[0].ID != "b.n2" {
		t.Fatalf("list: %d %s", resp.StatusCode, raw)
	}
	// The wrong admin token is refused before anything is relayed.
	if resp, _, _ := adminDo(t, "GET", srv1.URL+"/v1/jobs/b.n2", "bad", "", nil); resp.StatusCode != 401 {
		t.Fatalf("bad token: %d", resp.StatusCode)
	}
}

// Without a replicated configuration only the default distribution exists.
func TestAdminJobsWithoutConfig(t *testing.T) {
	jobs := &fakeJobs{node: "n1", jobs: map[string]node.Job{}}
	jobs.start = func(spec node.JobSpec) (node.Job, error) { return runningJob("j.n1", spec), nil }
	srv := newJobsServer(t, "n1", nil, jobs, "", nil)
	if resp, _, raw := adminDo(t, "POST", srv.URL+"/v1/jobs", "", `{"repo":"acme/m"}`, nil); resp.StatusCode != 201 || jobs.specs[0].Remote != node.DefaultRemote {
		t.Fatalf("POST: %d %s", resp.StatusCode, raw)
	}
	if resp, e, _ := adminDo(t, "POST", srv.URL+"/v1/jobs", "", `{"repo":"acme/m","distribution":"lab"}`, nil); resp.StatusCode != 404 || e.Code != "not_found" {
		t.Fatalf("unknown distribution: %d", resp.StatusCode)
	}
}
