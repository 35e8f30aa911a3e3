package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/ring"
	"github.com/hfcache/hfcache/test/fakehub"
)

const (
	warmRepoID     = "acme/warm-e2e"
	warmAdminToken = "e2e-admin-token"
)

// warmRepo adds a repository of several LFS files and a config to hub.
func warmRepo(hub *fakehub.Hub) []string {
	files := []fakehub.File{{Path: "config.json", Data: []byte(`{"warm": "e2e"}`)}}
	for i := 0; i < 6; i++ {
		files = append(files, fakehub.File{Path: fmt.Sprintf("model-%05d-of-00006.safetensors", i+1), Size: int64(300_000 + i*400_003), Seed: int64(40 + i), LFS: true})
	}
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: warmRepoID, Files: files})
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	return paths
}

// hfcacheCLI runs the built binary as a command, with the admin token in
// the environment, and returns its stdout (a pipe: no terminal), stderr
// and exit status.
func hfcacheCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(hfcacheBin, args...)
	cmd.Env = append(os.Environ(), "HFCACHE_ADMIN_TOKEN="+warmAdminToken, "HFCACHE_ADDR=", "HFCACHE_OUTPUT=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running hfcache %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// warmBlobFile is where a node keeps a complete blob.
func warmBlobFile(dataDir string, id hf.BlobID) string {
	return filepath.Join(dataDir, "store", "blobs", string(id.Algo), id.Hex[:2], id.Hex)
}

// waitReady waits until a node serves its replicated configuration.
func waitReady(t *testing.T, procs ...*proc) {
	t.Helper()
	eventually(t, 30*time.Second, "every node ready", func() bool {
		for _, p := range procs {
			resp, err := http.Get(p.AdminURL + "/-/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return false
			}
		}
		return true
	})
}

// TestWarmCommandAcrossCluster: `hfcache warm` against one node of three
// has each blob filled by its owner on the ring, fetched from the Hub once
// for the cluster, shows progress and a summary; afterwards any node
// serves every file without another upstream body fetch.
func TestWarmCommandAcrossCluster(t *testing.T) {
	hub := fakehub.New()
	paths := warmRepo(hub)
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	start := func(i int, seed string) *proc {
		args := []string{"--node-name", fmt.Sprintf("node%d", i), "--cluster-secret", clusterSecret, "--admin-token", warmAdminToken}
		if seed != "" {
			args = append(args, "--join", seed)
		}
		return startProc(t, hub.URL(), t.TempDir(), args...)
	}
	n1 := start(1, "")
	n2 := start(2, n1.Gossip)
	n3 := start(3, n1.Gossip)
	procs := []*proc{n1, n2, n3}
	waitReady(t, procs...)
	eventually(t, 30*time.Second, "3 alive members on every node", func() bool {
		for _, p := range procs {
			if aliveMembers(p, warmAdminToken) != 3 {
				return false
			}
		}
		return true
	})
	hub.SetThrottle(2<<20, 0) // a few seconds of transfer: progress lines

	out, errOut, code := hfcacheCLI(t, "warm", warmRepoID+"@main", "--addr", n2.AdminURL, "--progress-interval", "500ms")
	t.Logf("hfcache warm:\n%s%s", out, errOut)
	if code != 0 {
		t.Fatalf("hfcache warm exited %d", code)
	}
	n := len(paths)
	for _, want := range []string{
		"warming model " + warmRepoID + "@main (commit ",
		" files, ",
		"done: model " + warmRepoID + "@main (commit ",
		fmt.Sprintf("  files  %d of %d (%d fetched, 0 already cached, 0 failed)\n", n, n, n),
		"from upstream, 0 B from peers, 0 B already cached)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "\r") {
		t.Error("a progress bar was drawn on a pipe")
	}

	// Each blob is on its owner's disk (the ring every node runs, over the
	// same members), and left the Hub once.
	rg, err := ring.New(ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	rg.Set([]string{"node1", "node2", "node3"})
	dirs := map[string]string{"node1": n1.DataDir, "node2": n2.DataDir, "node3": n3.DataDir}
	owners := map[string]int{}
	checkFetches := func(when string) {
		t.Helper()
		st := hub.Stats()
		for _, p := range paths {
			if got := st.BodyFetches(hub.FileInfo(hf.Model, warmRepoID, "main", p).Addr()); got != 1 {
				t.Errorf("%s: %s fetched upstream %d times, want 1", when, p, got)
			}
		}
	}
	for _, p := range paths {
		id, err := hf.BlobIDFromETag(hub.FileInfo(hf.Model, warmRepoID, "main", p).Addr())
		if err != nil {
			t.Fatal(err)
		}
		owner, _ := rg.Owner(id.String())
		owners[owner]++
		if _, err := os.Stat(warmBlobFile(dirs[owner], id)); err != nil {
			t.Errorf("%s is not on its owner %s: %v", p, owner, err)
		}
	}
	if len(owners) < 2 {
		t.Errorf("all blobs on one owner (%v): the test does not cover the fan-out", owners)
	}
	checkFetches("after warm")

	// Any node serves any file, with no upstream body fetch.
	hub.SetThrottle(0, 0)
	for _, nd := range procs {
		for _, p := range paths {
			resp, body := do(t, http.MethodGet, resolveURL(nd.URL, hf.Model, warmRepoID, "main", p), nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, content(t, hub, hf.Model, warmRepoID, "main", p)) {
				t.Fatalf("GET %s via %s: %d", p, nd.URL, resp.StatusCode)
			}
		}
	}
	checkFetches("after downloads through every node")

	// Again through another node, as JSON: everything is cached already.
	out, _, code = hfcacheCLI(t, "warm", warmRepoID, "--addr", n3.AdminURL, "-o", "json")
	var job node.Job
	if code != 0 || json.Unmarshal([]byte(out), &job) != nil {
		t.Fatalf("warm -o json: exit %d\n%s", code, out)
	}
	if job.State != node.JobDone || job.Node != "node3" || job.Files.Cached != n || job.Bytes.Fetched != 0 {
		t.Fatalf("second job: %+v", job)
	}
	// The job can be read through any node.
	req, _ := http.NewRequest(http.MethodGet, n1.AdminURL+"/v1/jobs/"+job.ID, nil)
	req.Header.Set("Authorization", "Bearer "+warmAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Hfcache-Node") != "node3" {
		t.Fatalf("GET the job through node1: %d, served by %q", resp.StatusCode, resp.Header.Get("X-Hfcache-Node"))
	}

	// What the user gets wrong is said plainly, with a failing status.
	_, errOut, code = hfcacheCLI(t, "warm", warmRepoID+"@no-such-branch", "--addr", n1.AdminURL)
	if code != 1 || !strings.Contains(errOut, "RevisionNotFound") {
		t.Fatalf("unknown revision: exit %d: %s", code, errOut)
	}
	_, errOut, code = hfcacheCLI(t, "warm", warmRepoID, "--distribution", "nope", "--addr", n1.AdminURL)
	if code != 1 || !strings.Contains(errOut, `no such distribution "nope"`) {
		t.Fatalf("unknown distribution: exit %d: %s", code, errOut)
	}
}
