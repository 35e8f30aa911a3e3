package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/test/fakehub"
)

const warmID = "acme/warm-cluster"

// warmHub serves a repository of several LFS files (and two small ones).
func warmHub(t *testing.T) (*fakehub.Hub, []string) {
	t.Helper()
	h := fakehub.New()
	files := []fakehub.File{
		{Path: "config.json", Data: []byte(`{"warm": "cluster"}`)},
		{Path: "README.md", Data: []byte("# warm\n")},
	}
	for i := 0; i < 8; i++ {
		files = append(files, fakehub.File{Path: fmt.Sprintf("shards/model-%05d.safetensors", i), Size: int64(200_000 + i*150_001), Seed: int64(100 + i), LFS: true})
	}
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: warmID, Files: files})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	return h, paths
}

// adminFor serves a node's jobs API (no replicated configuration: the
// default distribution only).
func adminFor(t *testing.T, n *Node) string {
	t.Helper()
	srv := httptest.NewServer(httpapi.NewAdmin(httpapi.AdminDeps{Node: n.Node, Store: func() httpapi.StoreStats { return httpapi.StoreStats{} },
		Members: n.Members.Members, Jobs: n.Node}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func postJSON(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func blobOf(t *testing.T, hub *fakehub.Hub, p string) hf.BlobID {
	t.Helper()
	id, err := hf.BlobIDFromETag(hub.FileInfo(hf.Model, warmID, "main", p).Addr())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// checkOnOwners asserts every file's blob is on its owner's disk, and was
// fetched from the Hub exactly once for the cluster.
func checkOnOwners(t *testing.T, c *Cluster, hub *fakehub.Hub, paths []string) {
	t.Helper()
	for _, p := range paths {
		id := blobOf(t, hub, p)
		owners := 0
		for _, n := range c.Nodes {
			if !n.Node.Owns(id) {
				continue
			}
			owners++
			if _, ok := n.Store.Stat(id); !ok {
				t.Errorf("%s is not on its owner %s", p, n.Name)
			}
		}
		if owners != 1 {
			t.Errorf("%s has %d owners", p, owners)
		}
		if got := hub.Stats().BodyFetches(hub.FileInfo(hf.Model, warmID, "main", p).Addr()); got != 1 {
			t.Errorf("%s: %d upstream body fetches, want 1", p, got)
		}
	}
}

// TestWarmJobAcrossCluster: a job started on one node has each blob
// filled by its owner, once for the cluster; afterwards every node serves
// every file without another upstream body fetch.
func TestWarmJobAcrossCluster(t *testing.T) {
	hub, paths := warmHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	admin := adminFor(t, c.Nodes[0])
	hub.SetThrottle(16<<20, 0)

	status, raw := postJSON(t, admin+"/v1/jobs", `{"repo":"`+warmID+`","revision":"main"}`)
	var job node.Job
	if status != http.StatusCreated || json.Unmarshal(raw, &job) != nil || job.Node != "node1" || !hf.IsCommit(job.Commit) {
		t.Fatalf("POST /v1/jobs: %d %s", status, raw)
	}
	var sawProgress bool
	Eventually(t, 30*time.Second, "the job finished", func() bool {
		resp, body := Get(t, admin+"/v1/jobs/"+job.ID, nil)
		if resp.StatusCode != 200 || json.Unmarshal(body, &job) != nil {
			t.Fatalf("GET job: %d %s", resp.StatusCode, body)
		}
		if job.State == node.JobRunning && job.Bytes.Done > 0 && job.Bytes.Done < job.Bytes.Total {
			sawProgress = true
		}
		return job.State != node.JobRunning
	})
	var total int64
	for _, p := range paths {
		total += hub.FileInfo(hf.Model, warmID, "main", p).Size
	}
	if job.State != node.JobDone || job.Files.Total != len(paths) || job.Files.Done != len(paths) || job.Files.Cached != 0 ||
		job.Bytes.Total != total || job.Bytes.Upstream != total || job.Bytes.Peer != 0 {
		t.Fatalf("job: %+v", job)
	}
	if len(job.Owners) < 2 {
		t.Fatalf("the blobs of %d files landed on %d owner(s): %v", len(paths), len(job.Owners), job.Owners)
	}
	if !sawProgress {
		t.Log("no intermediate progress seen (the fills were faster than the polls)")
	}
	checkOnOwners(t, c, hub, paths)

	// Every node serves every file from the cluster, not from the Hub.
	hub.SetThrottle(0, 0)
	for _, n := range c.Nodes {
		for _, p := range paths {
			resp, body := Get(t, fileURLOf(n, p), nil)
			want := hub.Bytes(hf.Model, warmID, "main", p)
			if resp.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("GET %s via %s: %d", p, n.Name, resp.StatusCode)
			}
		}
	}
	checkOnOwners(t, c, hub, paths)

	// A second job finds everything on its owners.
	_, raw = postJSON(t, admin+"/v1/jobs", `{"repo":"`+warmID+`"}`)
	json.Unmarshal(raw, &job)
	Eventually(t, 30*time.Second, "the second job finished", func() bool {
		_, body := Get(t, admin+"/v1/jobs/"+job.ID, nil)
		json.Unmarshal(body, &job)
		return job.State != node.JobRunning
	})
	if job.State != node.JobDone || job.Files.Cached != len(paths) || job.Bytes.Fetched != 0 {
		t.Fatalf("second job: %+v", job)
	}
}

func fileURLOf(n *Node, p string) string {
	return n.URL + hf.Repo{Type: hf.Model, ID: warmID}.FilePath("resolve", "main", hf.Path(p))
}

// TestImmediateWarmAcrossCluster: every node is given the warm list of an
// immediate remote; one node walks it and the owners fill their blobs,
// once for the cluster.
func TestImmediateWarmAcrossCluster(t *testing.T) {
	hub, paths := warmHub(t)
	c := New(t, Options{Upstream: hub.URL(), NodeConfig: func(cfg *node.Config) { cfg.WarmInterval = 100 * time.Millisecond }}, 3)
	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL = hub.URL()
	hc, err := hubclient.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	item := node.WarmItem{Remote: node.DefaultRemote, Repository: "warm", Repo: hf.Repo{Type: hf.Model, ID: warmID}, Revision: "main", Include: []string{"*.safetensors"}}
	for _, n := range c.Nodes {
		n.Node.SetRemotes([]*node.Remote{{Name: node.DefaultRemote, Hub: hc, RefTTL: refTTL, Policy: node.PolicyImmediate}})
		n.Node.SetWarm([]node.WarmItem{item})
	}
	var shards []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".safetensors") {
			shards = append(shards, p)
		}
	}
	Eventually(t, 30*time.Second, "the warm list filled on the owners", func() bool {
		for _, p := range shards {
			id := blobOf(t, hub, p)
			for _, n := range c.Nodes {
				if _, ok := n.Store.Stat(id); n.Node.Owns(id) && !ok {
					return false
				}
			}
		}
		return true
	})
	checkOnOwners(t, c, hub, shards)
	// One node coordinated the item, and says so.
	coordinators := 0
	for _, n := range c.Nodes {
		for _, j := range n.Node.Jobs() {
			if j.Trigger == node.TriggerWarm {
				coordinators++
				break
			}
		}
	}
	if coordinators != 1 {
		t.Fatalf("%d nodes ran warm jobs for the item, want 1", coordinators)
	}
	if got := hub.Stats().BodyFetches(hub.FileInfo(hf.Model, warmID, "main", "config.json").Addr()); got != 0 {
		t.Fatalf("a file outside the include globs was fetched %d times", got)
	}
}
