package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/node/store"
	"github.com/hfcache/hfcache/test/fakehub"
)

// jobScript is a fake jobs API: POST answers the first snapshot, every GET
// the next one (the last repeats), DELETE cancels.
type jobScript struct {
	mu       sync.Mutex
	steps    []node.Job
	gets     int
	posted   map[string]any
	deleted  bool
	postErr  func(w http.ResponseWriter) bool
	holdLast bool // keep answering running until DELETE
}

func (s *jobScript) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/jobs":
		json.NewDecoder(r.Body).Decode(&s.posted)
		if s.postErr != nil && s.postErr(w) {
			return
		}
		w.Header().Set("Location", "/v1/jobs/"+s.steps[0].ID)
		fakeJSON(w, http.StatusCreated, s.steps[0])
	case r.Method == http.MethodGet && r.URL.Path == "/v1/jobs/"+s.steps[0].ID:
		s.gets++
		fakeJSON(w, http.StatusOK, s.steps[min(s.gets, len(s.steps)-1)])
	case r.Method == http.MethodDelete && r.URL.Path == "/v1/jobs/"+s.steps[0].ID:
		s.deleted = true
		j := s.steps[min(s.gets, len(s.steps)-1)]
		now := j.StartedAt.Add(time.Second)
		j.State, j.Error, j.FinishedAt, j.Phase = node.JobCanceled, "canceled", &now, ""
		fakeJSON(w, http.StatusOK, j)
	default:
		fakeError(w, http.StatusNotFound, "", "no route", nil)
	}
}

// scriptedJob is a job of three files (one cached) seen at each poll.
func scriptedJob(final string) []node.Job {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	base := node.Job{ID: "k7x.n1", Node: "n1", Trigger: "api", State: node.JobRunning, Remote: "default", Type: hf.Model,
		Repo: "acme/m", Revision: "main", StartedAt: start}
	step := func(f func(j *node.Job)) node.Job {
		j := base
		f(&j)
		return j
	}
	commit := strings.Repeat("abcdef12", 5)
	files := func(j *node.Job, done, cached int, bytesDone, fetched int64) {
		j.Commit, j.Phase = commit, node.PhaseFetching
		j.Files = node.JobFiles{Total: 3, Done: done, Cached: cached}
		j.Bytes = node.JobBytes{Total: 30 << 20, Done: bytesDone, Cached: 10 << 20, Fetched: fetched}
	}
	end := start.Add(4 * time.Second)
	return []node.Job{
		step(func(j *node.Job) { j.Phase = node.PhaseResolving }),
		step(func(j *node.Job) { j.Commit, j.Phase = commit, node.PhaseListing }),
		step(func(j *node.Job) { files(j, 1, 1, 10<<20, 0) }),
		step(func(j *node.Job) { files(j, 1, 1, 15<<20, 5<<20) }),
		step(func(j *node.Job) { files(j, 2, 1, 20<<20, 10<<20) }),
		step(func(j *node.Job) {
			files(j, 3, 1, 30<<20, 20<<20)
			j.Phase, j.State, j.FinishedAt = "", final, &end
			j.Bytes.Upstream, j.Bytes.Peer = 16<<20, 4<<20
			if final == node.JobFailed {
				j.Files.Done, j.Files.Failed = 2, 1
				j.Bytes.Done, j.Bytes.Upstream = 20<<20, 6<<20
				j.Error = "1 of 3 files failed"
				j.Errors = []node.JobError{{Path: "b.bin", Error: "on n2: node: fill failed: hub: 403 Forbidden"}}
			}
		}),
	}
}

func startScript(t *testing.T, s *jobScript) string {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

var fastPoll = []string{"--poll-interval", "2ms", "--progress-interval", "1ns"}

// Not on a terminal, progress is printed as lines, then the summary.
func TestWarmProgressLines(t *testing.T) {
	cliEnv(t)
	s := &jobScript{steps: scriptedJob(node.JobDone)}
	addr := startScript(t, s)
	out, errOut := mustRun(t, addr, "", append([]string{"warm", "acme/m", "--include", "*.json", "--include", "*.bin"}, fastPoll...)...)
	if s.posted["repo"] != "acme/m" || s.posted["type"] != "model" || s.posted["revision"] != nil || len(s.posted["include"].([]any)) != 2 {
		t.Errorf("posted %v", s.posted)
	}
	if strings.Contains(out, "\r") {
		t.Errorf("a progress bar was drawn on a pipe:\n%q", out)
	}
	for _, want := range []string{
		"warming model acme/m@main: job k7x.n1 on n1\n",
		"resolving main…\n",
		"listing files…\n",
		"1/3 files, 10.0 MiB / 30.0 MiB (33%), ",
		"2/3 files, 20.0 MiB / 30.0 MiB (67%), ",
		"done: model acme/m@main (commit abcdef1) in 4.0s\n",
		"  files  3 of 3 (2 fetched, 1 already cached, 0 failed)\n",
		"  bytes  30.0 MiB of 30.0 MiB (16.0 MiB from upstream, 4.0 MiB from peers, 10.0 MiB already cached)\n",
		"  rate   5.0 MiB/s\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("stderr: %q", errOut)
	}
	// The rate and ETA come from the fetched bytes between polls.
	if !strings.Contains(out, "MiB/s, ETA ") {
		t.Errorf("no rate and ETA:\n%s", out)
	}
}

// A failed job exits non-zero after its summary names the failed files.
func TestWarmFailedJob(t *testing.T) {
	cliEnv(t)
	addr := startScript(t, &jobScript{steps: scriptedJob(node.JobFailed)})
	out, _, err := runCLI(t, "", append([]string{"warm", "acme/m@main", "--addr", addr}, fastPoll...)...)
	if err == nil || exitCode(err) != 1 || err.Error() != "job k7x.n1 failed: 1 of 3 files failed" {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{
		"failed: model acme/m@main (commit abcdef1) in 4.0s\n",
		"  files  2 of 3 (1 fetched, 1 already cached, 1 failed)\n",
		"  error  b.bin: on n2: node: fill failed: hub: 403 Forbidden\n",
		"  reason 1 of 3 files failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// -o json prints the final job and nothing else on stdout.
func TestWarmJSON(t *testing.T) {
	cliEnv(t)
	addr := startScript(t, &jobScript{steps: scriptedJob(node.JobDone)})
	out, _ := mustRun(t, addr, "", append([]string{"warm", "acme/m", "-o", "json"}, fastPoll...)...)
	j := decodeJSON[node.Job](t, out)
	if j.State != node.JobDone || j.Files.Done != 3 || j.ID != "k7x.n1" {
		t.Fatalf("json: %s", out)
	}
}

// Interrupted, the command cancels the job before it exits.
func TestWarmInterruptCancels(t *testing.T) {
	cliEnv(t)
	steps := scriptedJob(node.JobDone)
	s := &jobScript{steps: steps[:4]} // running for good
	addr := startScript(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(append([]string{"warm", "acme/m", "--addr", addr}, fastPoll...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		gets := s.gets
		s.mu.Unlock()
		if gets >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command did not poll")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	cancel() // what Ctrl-C does
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not stop")
	}
	s.mu.Lock()
	deleted := s.deleted
	s.mu.Unlock()
	if !deleted || err == nil || err.Error() != "interrupted: job k7x.n1 canceled" {
		t.Fatalf("deleted %v, err %v", deleted, err)
	}
	if !strings.Contains(errb.String(), "interrupted: canceling job k7x.n1") || !strings.Contains(out.String(), "canceled: model acme/m@main") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
}

func TestWarmErrors(t *testing.T) {
	cliEnv(t)
	s := &jobScript{steps: scriptedJob(node.JobDone), postErr: func(w http.ResponseWriter) bool {
		fakeError(w, http.StatusNotFound, "revision_not_found", "resolving model/acme/m@nope: hub: 404 Not Found (RevisionNotFound): Invalid rev id: nope", nil)
		return true
	}}
	addr := startScript(t, s)
	_, _, err := runCLI(t, "", "warm", "acme/m@nope", "--addr", addr)
	if err == nil || exitCode(err) != 1 || err.Error() != "resolving model/acme/m@nope: hub: 404 Not Found (RevisionNotFound): Invalid rev id: nope" {
		t.Fatalf("unknown revision: %v", err)
	}
	for _, args := range [][]string{
		{"warm"},
		{"warm", "acme/m@"},
		{"warm", "@main"},
		{"warm", "acme/m", "--type", "checkpoint"},
		{"warm", "acme/m", "--include", ""},
	} {
		if _, _, err := runCLI(t, "", append(args, "--addr", addr)...); exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// Against a real node: the summary counts what the Hub sent, and a second
// run finds everything cached.
func TestWarmAgainstNode(t *testing.T) {
	cliEnv(t)
	hub := fakehub.New()
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "acme/warm", Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"warm": true}`)},
		{Path: "model-1.safetensors", Size: 1 << 20, Seed: 1, LFS: true},
		{Path: "model-2.safetensors", Size: 1<<20 + 7, Seed: 2, LFS: true},
	}})
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(store.Config{Dir: t.TempDir(), Budget: 1 << 30, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL, hcfg.Logger = hub.URL(), log
	hc, err := hubclient.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	ncfg := node.DefaultConfig()
	ncfg.Name, ncfg.Logger = "solo", log
	n, err := node.New(ncfg, node.LocalStore(st), &node.Remote{Name: node.DefaultRemote, Hub: hc, RefTTL: time.Minute, Policy: node.PolicyOnDemand})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	srv := httptest.NewServer(httpapi.NewAdmin(httpapi.AdminDeps{Node: n, Store: func() httpapi.StoreStats { return httpapi.StoreStats{} },
		Members: func() []membership.Member { return nil }, Jobs: n, Token: "secret"}))
	t.Cleanup(srv.Close)
	t.Setenv("HFCACHE_ADMIN_TOKEN", "secret")

	out, _ := mustRun(t, srv.URL, "", "warm", "acme/warm", "--poll-interval", "10ms")
	total := int64(len(`{"warm": true}`) + 2<<20 + 7)
	for _, want := range []string{
		"warming model acme/warm@main (commit ",
		"done: model acme/warm@main (commit ",
		"  files  3 of 3 (3 fetched, 0 already cached, 0 failed)\n",
		"  bytes  2.0 MiB of 2.0 MiB (2.0 MiB from upstream, 0 B from peers, 0 B already cached)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("first run lacks %q:\n%s", want, out)
		}
	}
	if st.Stats().Blobs != 3 || st.Stats().Used < total {
		t.Fatalf("store: %+v", st.Stats())
	}
	out, _ = mustRun(t, srv.URL, "", "warm", "acme/warm", "--include", "*.safetensors", "--poll-interval", "10ms")
	if !strings.Contains(out, "  files  2 of 2 (0 fetched, 2 already cached, 0 failed)\n") {
		t.Errorf("second run:\n%s", out)
	}
	_, _, err = runCLI(t, "", "warm", "acme/nope", "--addr", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "RepoNotFound") {
		t.Errorf("unknown repository: %v", err)
	}
}
