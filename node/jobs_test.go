package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
)

// repoHub is a Hub holding one repository at one commit: its info and
// tree APIs, HEADs and bodies. Bodies of gated paths stop after half their
// bytes until the gate opens; failing paths answer an error.
type repoHub struct {
	commit string
	files  map[string][]byte
	lfs    map[string]bool

	mu      sync.Mutex
	gate    chan struct{}
	gated   map[string]bool
	failing map[string]bool
	gets    map[string]int
}

func newRepoHub() *repoHub {
	return &repoHub{commit: testCommit, files: map[string][]byte{}, lfs: map[string]bool{},
		gate: make(chan struct{}), gated: map[string]bool{}, failing: map[string]bool{}, gets: map[string]int{}}
}

func (h *repoHub) add(p string, data []byte, lfs bool) { h.files[p], h.lfs[p] = data, lfs }

func (h *repoHub) blob(p string) hf.BlobID {
	if h.lfs[p] {
		id, _ := hf.NewBlobID(hf.SHA256, hf.SHA256Hex(h.files[p]))
		return id
	}
	id, _ := hf.NewBlobID(hf.GitSHA1, hf.GitBlobSHA1(h.files[p]))
	return id
}

func (h *repoHub) fetches(p string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets[p]
}

func (h *repoHub) HeadFile(_ context.Context, _ hf.Repo, _ hf.Revision, p hf.Path, _ string) (*hubclient.FileMeta, error) {
	data, ok := h.files[string(p)]
	if !ok {
		return nil, &hubclient.Error{Status: 404, Code: hf.CodeEntryNotFound, RepoCommit: h.commit}
	}
	return &hubclient.FileMeta{Commit: h.commit, ETag: h.blob(string(p)).Hex, LFS: h.lfs[string(p)], Size: int64(len(data))}, nil
}

func (h *repoHub) GetFile(ctx context.Context, _ hf.Repo, _ hf.Revision, p hf.Path, _, _ string, off, _ int64) (*hubclient.Body, error) {
	h.mu.Lock()
	h.gets[string(p)]++
	failing, gated := h.failing[string(p)], h.gated[string(p)]
	h.mu.Unlock()
	if failing {
		return nil, &hubclient.Error{Status: 403, Code: "Forbidden", Message: "no bytes for " + string(p)}
	}
	data := h.files[string(p)]
	var r io.Reader = bytes.NewReader(data[off:])
	if gated {
		half := int64(len(data) / 2)
		r = io.MultiReader(bytes.NewReader(data[off:half]), &gateReader{ctx: ctx, gate: h.gate, r: bytes.NewReader(data[half:])})
	}
	return &hubclient.Body{ReadCloser: io.NopCloser(r), Status: 206, Size: int64(len(data))}, nil
}

// gateReader blocks until the gate opens (or ctx ends), then reads r.
type gateReader struct {
	ctx  context.Context
	gate chan struct{}
	r    io.Reader
}

func (g *gateReader) Read(p []byte) (int, error) {
	select {
	case <-g.gate:
		return g.r.Read(p)
	case <-g.ctx.Done():
		return 0, g.ctx.Err()
	}
}

func (h *repoHub) Do(_ context.Context, _, escapedPath, _ string, _ http.Header, _ []byte) (*http.Response, error) {
	prefix := testRepo.APIPath("")
	rest, ok := strings.CutPrefix(escapedPath, prefix)
	if !ok {
		return nil, &hubclient.Error{Status: 404, Code: hf.CodeRepoNotFound, Message: "Repository not found"}
	}
	var body any
	switch {
	case rest == "/revision/main" || rest == "/revision/"+h.commit:
		body = map[string]any{"id": testRepo.ID, "sha": h.commit}
	case strings.HasPrefix(rest, "/revision/"):
		return nil, &hubclient.Error{Status: 404, Code: hf.CodeRevisionNotFound, Message: "Invalid rev id"}
	case rest == "/tree/"+h.commit:
		var entries []map[string]any
		for p, data := range h.files {
			e := map[string]any{"type": "file", "path": p, "size": len(data), "oid": hf.GitBlobSHA1(data)}
			if h.lfs[p] {
				e["oid"] = hf.GitBlobSHA1([]byte("pointer " + p))
				e["lfs"] = map[string]any{"oid": hf.SHA256Hex(data), "size": len(data), "pointerSize": 130}
			}
			entries = append(entries, e)
		}
		entries = append(entries, map[string]any{"type": "directory", "path": "dir", "oid": "x"})
		body = entries
	default:
		return nil, &hubclient.Error{Status: 404, Code: hf.CodeEntryNotFound}
	}
	raw, _ := json.Marshal(body)
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(raw))}, nil
}

func (h *repoHub) URL(p string) string { return "http://hub.test" + p }

func (h *repoHub) XetReadToken(context.Context, hf.Repo, hf.Revision, string) (*hubclient.XetToken, error) {
	return nil, errors.New("not used")
}

func (h *repoHub) Fetch(context.Context, string, http.Header) (*http.Response, error) {
	return nil, errors.New("not used")
}

// jobHub is a repository of three LFS files and a regular one.
func jobHub() *repoHub {
	h := newRepoHub()
	h.add("a.safetensors", payload(300_000), true)
	h.add("b.safetensors", payload(200_001), true)
	h.add("dir/c.bin", payload(100_003), true)
	h.add("config.json", []byte(`{"jobs": true}`), false)
	return h
}

// waitJob polls a job until it is no longer running.
func waitJob(t *testing.T, n *Node, id string) Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, err := n.Job(id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != JobRunning {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still running after 20s: %+v", j)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func startTestJob(t *testing.T, n *Node, spec JobSpec) Job {
	t.Helper()
	if spec.Repo == (hf.Repo{}) {
		spec.Repo = testRepo
	}
	j, err := n.StartJob(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// A job counts files and bytes as they go — in-flight bytes included —
// and tells cached files from fetched ones.
func TestJobProgressAccounting(t *testing.T) {
	hub := jobHub()
	hub.gated["a.safetensors"] = true
	n, st := newTestNode(t, hub, 1<<30, nil)
	// b is on disk already.
	f, err := n.Resolve(context.Background(), FileRequest{Repo: testRepo, Revision: "main", Path: "b.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.WarmLocal(context.Background(), PeerWarmRequest{Remote: DefaultRemote, Type: testRepo.Type, ID: testRepo.ID,
		Commit: testCommit, Path: "b.safetensors", Blob: f.Blob.String(), Size: f.Size}, func(int64) {}); err != nil {
		t.Fatal(err)
	}

	j := startTestJob(t, n, JobSpec{Revision: "main"})
	if j.State != JobRunning || j.Commit != testCommit || j.Trigger != TriggerAPI || !strings.HasSuffix(j.ID, "."+n.Name()) {
		t.Fatalf("first snapshot: %+v", j)
	}
	// a.safetensors stops at half its bytes: the job shows them.
	half := int64(300_000 / 2)
	fetchedOthers := int64(100_003 + len(`{"jobs": true}`))
	others := 200_001 + fetchedOthers
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ = n.Job(j.ID)
		if j.Files.Done == 3 && j.Bytes.Done == others+half {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in-flight bytes not counted: %+v", j)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if j.State != JobRunning || j.Bytes.Fetched != fetchedOthers+half || j.Bytes.Cached != 200_001 {
		t.Fatalf("while a.safetensors fills: %+v", j)
	}
	close(hub.gate)
	j = waitJob(t, n, j.ID)
	want := JobFiles{Total: 4, Done: 4, Cached: 1}
	if j.State != JobDone || j.Files != want || j.Error != "" || j.FinishedAt == nil || j.Phase != "" {
		t.Fatalf("finished job: %+v", j)
	}
	total := int64(300_000 + 200_001 + 100_003 + len(`{"jobs": true}`))
	wantBytes := JobBytes{Total: total, Done: total, Cached: 200_001, Fetched: total - 200_001, Upstream: total - 200_001}
	if j.Bytes != wantBytes {
		t.Fatalf("bytes %+v, want %+v", j.Bytes, wantBytes)
	}
	if j.Owners[n.Name()] != 4 {
		t.Fatalf("owners %v", j.Owners)
	}
	for p := range hub.files {
		if _, ok := st.Stat(hub.blob(p)); !ok {
			t.Errorf("%s not stored", p)
		}
	}
	if hub.fetches("b.safetensors") != 1 {
		t.Errorf("the cached file was fetched again (%d fetches)", hub.fetches("b.safetensors"))
	}

	// Again: everything is cached, nothing is fetched.
	j = waitJob(t, n, startTestJob(t, n, JobSpec{}).ID)
	if j.State != JobDone || j.Files.Cached != 4 || j.Bytes.Fetched != 0 || j.Bytes.Cached != total {
		t.Fatalf("second job: %+v", j)
	}
	// Include globs pick files; a glob without / matches base names too.
	j = waitJob(t, n, startTestJob(t, n, JobSpec{Include: []string{"*.bin", "config.*"}}).ID)
	if j.Files.Total != 2 || j.Bytes.Total != int64(100_003+len(`{"jobs": true}`)) {
		t.Fatalf("included files: %+v", j.Files)
	}
}

// One file that cannot be fetched fails the job, not the other files.
func TestJobFailureOfOneFile(t *testing.T) {
	hub := jobHub()
	hub.failing["dir/c.bin"] = true
	n, st := newTestNode(t, hub, 1<<30, nil)
	j := waitJob(t, n, startTestJob(t, n, JobSpec{}).ID)
	if j.State != JobFailed || j.Files.Done != 3 || j.Files.Failed != 1 || j.Error != "1 of 4 files failed" {
		t.Fatalf("job: %+v", j)
	}
	if len(j.Errors) != 1 || j.Errors[0].Path != "dir/c.bin" || !strings.Contains(j.Errors[0].Error, "no bytes for dir/c.bin") {
		t.Fatalf("errors: %+v", j.Errors)
	}
	if _, ok := st.Stat(hub.blob("a.safetensors")); !ok {
		t.Fatal("the other files were not filled")
	}
}

// Canceling stops the job; the fill under way is not torn down (it is
// shared with clients) and completes once its bytes arrive.
func TestJobCancel(t *testing.T) {
	hub := jobHub()
	hub.gated["a.safetensors"] = true
	n, st := newTestNode(t, hub, 1<<30, nil)
	n.cfg.JobConcurrency = 1
	j := startTestJob(t, n, JobSpec{Include: []string{"a.safetensors", "dir/*"}})
	deadline := time.Now().Add(10 * time.Second)
	for j.Bytes.Fetched < 150_000 { // a.safetensors is under way, stopped at half
		if time.Now().After(deadline) {
			t.Fatalf("the job did not start: %+v", j)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
		j, _ = n.Job(j.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := n.CancelJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != JobCanceled || j.Error != "canceled" || j.FinishedAt == nil || j.Files.Done+j.Files.Failed == j.Files.Total {
		t.Fatalf("canceled job: %+v", j)
	}
	if j2, _ := n.CancelJob(ctx, j.ID); j2.State != JobCanceled {
		t.Fatalf("canceling again: %+v", j2)
	}
	close(hub.gate)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, ok := st.Stat(hub.blob("a.safetensors")); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fill under way did not complete after the job was canceled")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if _, err := n.CancelJob(ctx, "nope.x"); !errors.Is(err, ErrJobNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
}

// What a caller can get wrong is refused before a job starts.
func TestStartJobRefuses(t *testing.T) {
	hub := jobHub()
	n, _ := newTestNode(t, hub, 1<<30, nil)
	ctx := context.Background()
	if _, err := n.StartJob(ctx, JobSpec{Repo: testRepo, Revision: "nope"}); !errors.Is(err, hubclient.ErrRevisionNotFound) {
		t.Errorf("unknown revision: %v", err)
	}
	if _, err := n.StartJob(ctx, JobSpec{Repo: hf.Repo{Type: hf.Model, ID: "other/repo"}}); !errors.Is(err, hubclient.ErrRepoNotFound) {
		t.Errorf("unknown repository: %v", err)
	}
	if _, err := n.StartJob(ctx, JobSpec{Repo: testRepo, Include: []string{"[x"}}); !errors.Is(err, ErrBadGlob) {
		t.Errorf("bad glob: %v", err)
	}
	if _, err := n.StartJob(ctx, JobSpec{Repo: testRepo, Remote: "elsewhere"}); !errors.Is(err, ErrUnknownRemote) {
		t.Errorf("unknown remote: %v", err)
	}
	n.SetRemotes([]*Remote{{Name: DefaultRemote, Hub: hub, RefTTL: time.Minute, Policy: PolicyStreamed}})
	if _, err := n.StartJob(ctx, JobSpec{Repo: testRepo}); !errors.Is(err, ErrStreamedRemote) {
		t.Errorf("streamed remote: %v", err)
	}
	n.SetRemotes([]*Remote{{Name: DefaultRemote, Hub: hub, RefTTL: time.Minute, Policy: PolicyOnDemand, Exclude: []string{"acme/*"}}})
	var he *hubclient.Error
	if _, err := n.StartJob(ctx, JobSpec{Repo: testRepo}); !errors.As(err, &he) || he.Code != "RepoDenied" {
		t.Errorf("excluded repository: %v", err)
	}
	// Files over the remote's maximum size are skipped, not failed.
	n.SetRemotes([]*Remote{{Name: DefaultRemote, Hub: hub, RefTTL: time.Minute, Policy: PolicyOnDemand, MaxFileSize: 250_000}})
	j := waitJob(t, n, startTestJob(t, n, JobSpec{}).ID)
	if j.State != JobDone || j.Files.Total != 3 || j.Files.Skipped != 1 {
		t.Errorf("max file size: %+v", j)
	}
	if got := len(n.Jobs()); got != 1 {
		t.Errorf("%d jobs listed, want 1", got)
	}
}

// The warm list runs through the job engine: a warm job per item, the
// newest of each kept, and items taken off the list are canceled.
func TestWarmListRunsJobs(t *testing.T) {
	hub := jobHub()
	hub.gated["a.safetensors"] = true
	n, st := newTestNode(t, hub, 1<<30, nil)
	n.cfg.WarmInterval = 20 * time.Millisecond
	n.SetRemotes([]*Remote{{Name: DefaultRemote, Hub: hub, RefTTL: time.Minute, Policy: PolicyImmediate}})
	n.Start()
	small := WarmItem{Remote: DefaultRemote, Repository: "r", Repo: testRepo, Revision: "main", Include: []string{"config.json"}}
	n.SetWarm([]WarmItem{small})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := st.Stat(hub.blob("config.json")); ok && len(n.Jobs()) == 1 && n.Jobs()[0].State == JobDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm job: %+v", n.Jobs())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if j := n.Jobs()[0]; j.Trigger != TriggerWarm || j.Repository != "r" || j.Files.Total != 1 {
		t.Fatalf("warm job: %+v", j)
	}
	// A stuck item is canceled when it leaves the list.
	big := WarmItem{Remote: DefaultRemote, Repo: testRepo, Revision: "main", Include: []string{"a.safetensors"}}
	n.SetWarm([]WarmItem{big})
	var running Job
	for running.ID == "" {
		for _, j := range n.Jobs() {
			if j.State == JobRunning && j.Include[0] == "a.safetensors" && j.Bytes.Fetched > 0 {
				running = j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the big item did not start: %+v", n.Jobs())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	n.SetWarm(nil)
	if j := waitJob(t, n, running.ID); j.State != JobCanceled {
		t.Fatalf("removed item's job: %+v", j)
	}
	close(hub.gate)
}

func TestJobIDsNameTheirNode(t *testing.T) {
	for _, name := range []string{"node1", "hfcache-0.hfcache.svc", "a b/ü", "~x"} {
		id := newJobID(name)
		if got, ok := JobNode(id); !ok || got != name {
			t.Errorf("JobNode(%q) = %q, %v; want %q", id, got, ok, name)
		}
		if strings.ContainsAny(id, "/?#% ") {
			t.Errorf("id %q is not URL-safe", id)
		}
	}
	if a, b := newJobID("n"), newJobID("n"); a == b {
		t.Error("two ids alike")
	}
	for _, id := range []string{"", "abc", "abc.", "abc.a b", "abc.~!!"} {
		if _, ok := JobNode(id); ok {
			t.Errorf("JobNode(%q) accepted", id)
		}
	}
}

// Finished jobs are forgotten: API jobs past a count, warm jobs but the
// newest of each item; running jobs never.
func TestJobRetention(t *testing.T) {
	tab := newJobTable()
	now := time.Now()
	mk := func(key string, finished bool) *job {
		j := &job{key: key, done: make(chan struct{}), inflight: map[int]int64{}, v: Job{ID: newJobID("n")}}
		if finished {
			j.v.FinishedAt = &now
			close(j.done)
		}
		tab.add(j)
		return j
	}
	running := mk("", false)
	for i := 0; i < maxFinishedJobs+5; i++ {
		mk("", true)
	}
	mk("w1", true)
	mk("w1", true)
	newest := mk("w1", true)
	mk("w2", true)
	tab.prune(now)
	if _, ok := tab.get(running.v.ID); !ok {
		t.Fatal("a running job was forgotten")
	}
	warm := 0
	for _, j := range tab.all() {
		if j.key == "w1" {
			warm++
			if j != newest {
				t.Error("an older warm job was kept")
			}
		}
	}
	if warm != 1 || len(tab.all()) != 1+maxFinishedJobs+2 {
		t.Fatalf("kept %d jobs (%d of w1)", len(tab.all()), warm)
	}
	tab.prune(now.Add(2 * finishedJobTTL))
	if len(tab.all()) != 3 {
		t.Fatalf("kept %d jobs after the TTL", len(tab.all()))
	}
}
