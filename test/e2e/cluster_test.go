package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
)

const clusterSecret = "e2e-cluster-secret"

// startClusterNode starts node i of a cluster, joining seed (if any).
func startClusterNode(t *testing.T, hub *fakehub.Hub, i int, seed string) *proc {
	t.Helper()
	args := []string{"--node-name", fmt.Sprintf("node%d", i), "--cluster-secret", clusterSecret}
	if seed != "" {
		args = append(args, "--join", seed)
	}
	return startProc(t, hub.URL(), t.TempDir(), args...)
}

// memberStates is one node's view of the members, name → gossip state
// (nil if the node cannot be asked). token is the admin token, if any.
func memberStates(p *proc, token string) map[string]string {
	req, err := http.NewRequest(http.MethodGet, p.AdminURL+"/v1/cluster/members", nil)
	if err != nil {
		return nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var view struct {
		Members []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"members"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&view) != nil {
		return nil
	}
	states := map[string]string{}
	for _, m := range view.Members {
		states[m.Name] = m.State
	}
	return states
}

// aliveMembers is one node's count of alive members (-1 if it cannot be
// asked).
func aliveMembers(p *proc, token string) int {
	states := memberStates(p, token)
	if states == nil {
		return -1
	}
	n := 0
	for _, st := range states {
		if st == "alive" {
			n++
		}
	}
	return n
}

func waitMembers(t *testing.T, want int, procs ...*proc) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d alive members on every node", want), func() bool {
		for _, p := range procs {
			if aliveMembers(p, "") != want {
				return false
			}
		}
		return true
	})
}

// snapshotPlan downloads the model and the dataset with the JS client.
func snapshotPlan(url string, t *testing.T) jsPlan {
	return jsPlan{HubURL: url, OutDir: t.TempDir(), CacheDir: t.TempDir(), Repos: []jsPlanRepo{
		{Type: "model", Name: modelID, Revision: "main", Steps: []string{"info", "list", "download", "snapshot"}},
		{Type: "dataset", Name: datasetID, Revision: "main", Steps: []string{"info", "list", "download", "snapshot"}},
	}}
}

// checkSnapshot compares every downloaded file with the fake Hub's bytes.
func checkSnapshot(t *testing.T, hub *fakehub.Hub, res jsResult) {
	t.Helper()
	for _, r := range res.Repos {
		typ := hf.Model
		if r.Type == "dataset" {
			typ = hf.Dataset
		}
		files := hubFiles(t, hub, typ, r.Name)
		for _, p := range files {
			want := content(t, hub, typ, r.Name, "main", p)
			for what, path := range map[string]string{"snapshot": filepath.Join(r.Snapshot, p), "download": r.Download[p]} {
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s %s (%s): bytes differ (%v)", r.Name, p, what, err)
				}
			}
		}
	}
}

// repoAddrs lists the content addresses of the model's and dataset's files.
func repoAddrs(t *testing.T, hub *fakehub.Hub) []string {
	var out []string
	for _, r := range []struct {
		typ hf.RepoType
		id  string
	}{{hf.Model, modelID}, {hf.Dataset, datasetID}} {
		for _, p := range hubFiles(t, hub, r.typ, r.id) {
			out = append(out, hub.FileInfo(r.typ, r.id, "main", p).Addr())
		}
	}
	return out
}

// TestClusterBehindBalancer: three nodes behind a round-robin balancer serve
// the real JS client, fetching every blob from the Hub exactly once for the
// cluster; a fourth node joins and the same snapshot costs no upstream body
// fetch (moved blobs come from peers); a node killed with SIGKILL does not
// stop the snapshot from downloading.
func TestClusterBehindBalancer(t *testing.T) {
	hub := startHub(t)
	hub.SetPageSize(25)
	n1 := startClusterNode(t, hub, 1, "")
	n2 := startClusterNode(t, hub, 2, n1.Gossip)
	n3 := startClusterNode(t, hub, 3, n1.Gossip)
	waitMembers(t, 3, n1, n2, n3)
	lb := newBalancer(t, n1.URL, n2.URL, n3.URL)

	checkSnapshot(t, hub, runJS(t, snapshotPlan(lb.URL, t)))
	st := hub.Stats()
	// The JS client downloads Xet files over Xet (native, the default): the
	// cluster fetches their xorb ranges once each, never the file's body.
	xetFiles := map[string]string{} // content address → Xet hash
	for _, p := range hubFiles(t, hub, hf.Model, modelID) {
		if fi := hub.FileInfo(hf.Model, modelID, "main", p); fi.Xet {
			xetFiles[fi.Addr()] = fi.XetHash
		}
	}
	for _, addr := range repoAddrs(t, hub) {
		want := 1
		if h, ok := xetFiles[addr]; ok {
			want = 0
			if st.Reconstructions[h] == 0 || st.XorbRefetchedBytes("") != 0 {
				t.Errorf("Xet file %s: %d upstream reconstructions, %d xorb bytes fetched twice; want the xorbs fetched once", addr, st.Reconstructions[h], st.XorbRefetchedBytes(""))
			}
		}
		if n := st.BodyFetches(addr); n != want {
			t.Errorf("blob %s fetched upstream %d times through 3 nodes, want %d", addr, n, want)
		}
	}

	t.Logf("3 nodes: %d upstream body fetches for %d blobs; balancer spread %v", len(st.Fetches), len(repoAddrs(t, hub)), lb.spread())

	n4 := startClusterNode(t, hub, 4, n2.Gossip)
	waitMembers(t, 4, n1, n2, n3, n4)
	lb.set(n1.URL, n2.URL, n3.URL, n4.URL)
	hub.ResetStats()
	checkSnapshot(t, hub, runJS(t, snapshotPlan(lb.URL, t)))
	st = hub.Stats()
	for _, addr := range repoAddrs(t, hub) {
		if n := st.BodyFetches(addr); n != 0 {
			t.Errorf("after a node joined, blob %s was fetched upstream %d times, want 0 (peers hold it)", addr, n)
		}
	}

	t.Logf("4 nodes: %d upstream body fetches; %d upstream requests", len(st.Fetches), st.Total())
	moved := 0
	for _, p := range []*proc{n1, n2, n3, n4} {
		moved += strings.Count(p.Log.String(), "blob copied from peer")
	}
	if moved == 0 {
		t.Errorf("no blob was copied from a peer after the fourth node joined")
	}
	t.Logf("blobs copied between peers: %d", moved)

	before := storeBlobs(t, n3)
	n3.Kill()
	checkSnapshot(t, hub, runJS(t, snapshotPlan(lb.URL, t)))
	waitMembers(t, 3, n1, n2, n4)

	// The killed node comes back with its data directory: it rejoins and
	// still holds what it had.
	n3 = startProc(t, hub.URL(), n3.DataDir, "--node-name", "node3", "--cluster-secret", clusterSecret, "--join", n1.Gossip, "--gossip-addr", n3.Gossip)
	waitMembers(t, 4, n1, n2, n3, n4)
	if after := storeBlobs(t, n3); after < before || before == 0 {
		t.Fatalf("node3 held %d blobs before the kill and %d after restarting", before, after)
	}
}

// storeBlobs is how many blobs a node holds.
func storeBlobs(t *testing.T, p *proc) int {
	t.Helper()
	resp, body := do(t, http.MethodGet, p.AdminURL+"/v1/store", nil)
	var st struct {
		Blobs int `json:"blobs"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("store stats: %d %s", resp.StatusCode, body)
	}
	return st.Blobs
}
