package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
	"github.com/hfcache/hfcache/test/procs"
)

// freeAddr reserves a loopback port for a process to bind later (fixed
// ports let a restarted node come back at the same Raft address): one whose
// TCP and UDP ports are free now and that no other call in this test binary
// returned.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := procs.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

type raftNode struct {
	name, dir, gossip, raft string
	p                       *proc
}

func (rn *raftNode) start(t *testing.T, hub *fakehub.Hub, seed string) {
	t.Helper()
	args := []string{"--node-name", rn.name, "--cluster-secret", clusterSecret, "--gossip-addr", rn.gossip, "--raft-addr", rn.raft}
	if seed != "" {
		args = append(args, "--join", seed)
	}
	rn.p = startProc(t, hub.URL(), rn.dir, args...)
}

type raftView struct {
	State    string `json:"state"`
	LeaderID string `json:"leader_id"`
	Servers  []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
	} `json:"servers"`
}

func raftStatus(t *testing.T, p *proc) raftView {
	resp, err := http.Get(p.AdminURL + "/v1/cluster/raft")
	if err != nil {
		return raftView{}
	}
	defer resp.Body.Close()
	var v raftView
	json.NewDecoder(resp.Body).Decode(&v)
	return v
}

// admin sends an admin API request and returns status, index and body.
func admin(t *testing.T, method, url string, body any) (int, uint64, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		return 0, 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Hfcache-Index"), 10, 64)
	return resp.StatusCode, idx, buf.Bytes()
}

// TestReplicatedConfiguration: three nodes form one Raft cluster; a
// distribution created through a follower is readable on another follower
// with ?index and serves the real JS client on every node; the leader is
// killed and writes continue on a new leader; every node restarts with its
// configuration intact; the CLI talks to a running node.
func TestReplicatedConfiguration(t *testing.T) {
	hub := startHub(t)
	nodes := make([]*raftNode, 3)
	for i := range nodes {
		nodes[i] = &raftNode{name: fmt.Sprintf("node%d", i+1), dir: t.TempDir(), gossip: freeAddr(t), raft: freeAddr(t)}
	}
	nodes[0].start(t, hub, "")
	nodes[1].start(t, hub, nodes[0].gossip)
	nodes[2].start(t, hub, nodes[0].gossip)
	waitRaft(t, nodes, 3)

	leader, followers := roles(t, nodes)
	// Writes through a follower are forwarded to the leader.
	f1, f2 := followers[0], followers[1]
	st, _, body := admin(t, http.MethodPut, f1.p.AdminURL+"/v1/remotes/mirror", map[string]any{"url": hub.URL(), "policy": "streamed", "ref_ttl": "30s", "token": "hf_remote_secret"})
	if st != 200 || strings.Contains(string(body), "hf_remote_secret") || !strings.Contains(string(body), `"token_set":true`) {
		t.Fatalf("PUT remote via follower: %d %s", st, body)
	}
	st, _, body = admin(t, http.MethodPut, f1.p.AdminURL+"/v1/repositories/mirror", map[string]any{"remote": "mirror"})
	if st != 200 {
		t.Fatalf("PUT repository: %d %s", st, body)
	}
	st, idx, body := admin(t, http.MethodPut, f1.p.AdminURL+"/v1/distributions/mirror", map[string]any{"base_path": "/mirror", "repository": "mirror"})
	if st != 200 || idx == 0 {
		t.Fatalf("PUT distribution: %d index %d %s", st, idx, body)
	}
	// Read your write on the other follower.
	st, _, body = admin(t, http.MethodGet, f2.p.AdminURL+"/v1/distributions/mirror?index="+strconv.FormatUint(idx, 10), nil)
	if st != 200 || !strings.Contains(string(body), `"/mirror"`) {
		t.Fatalf("read on another follower: %d %s", st, body)
	}
	// Validation errors name the field; an unknown remote is refused.
	st, _, body = admin(t, http.MethodPut, f2.p.AdminURL+"/v1/repositories/broken", map[string]any{"remote": "nope"})
	if st != 400 || !strings.Contains(string(body), `"remote"`) {
		t.Fatalf("invalid repository: %d %s", st, body)
	}
	// Every node serves the new distribution to the real client.
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.name+" serving /mirror", func() bool {
			resp, _ := do(t, http.MethodHead, resolveURL(n.p.URL+"/mirror", hf.Model, modelID, "main", "config.json"), nil)
			return resp.StatusCode == 200
		})
		plan := jsPlan{HubURL: n.p.URL + "/mirror", OutDir: t.TempDir(), CacheDir: t.TempDir(), Repos: []jsPlanRepo{
			{Type: "model", Name: modelID, Revision: "main", Steps: []string{"list", "download"}},
		}}
		res := runJS(t, plan)
		for p, path := range res.Repos[0].Download {
			if got := readFile(t, path); !bytes.Equal(got, content(t, hub, hf.Model, modelID, "main", p)) {
				t.Fatalf("%s /mirror %s: bytes differ", n.name, p)
			}
		}
	}

	// Kill the leader: a new one is elected among the other two and writes
	// continue.
	killedAt := time.Now()
	leader.p.Kill()
	var recovered time.Duration
	eventually(t, 30*time.Second, "a write after the leader died", func() bool {
		st, _, _ := admin(t, http.MethodPut, f2.p.AdminURL+"/v1/remotes/after-failover", map[string]any{"url": hub.URL()})
		if st == 200 {
			recovered = time.Since(killedAt)
			return true
		}
		return false
	})
	t.Logf("leader killed → next successful write: %v", recovered)

	// Restart every node: the configuration is intact.
	for _, n := range followers {
		n.p.stop(t)
	}
	for _, n := range nodes {
		n.start(t, hub, nodes[0].gossip)
	}
	waitRaft(t, nodes, 3)
	for _, n := range nodes {
		for _, name := range []string{"mirror", "after-failover", "default"} {
			// A restarted node applies its log once it learns the commit index.
			eventually(t, 10*time.Second, n.name+" has remote "+name+" after the restart", func() bool {
				st, _, body := admin(t, http.MethodGet, n.p.AdminURL+"/v1/remotes/"+name, nil)
				if strings.Contains(string(body), "hf_remote_secret") {
					t.Fatalf("the remote token leaked: %s", body)
				}
				return st == 200
			})
		}
	}

	// The remote's token is sealed with a key derived from the cluster
	// secret: no Raft log, snapshot or index on disk holds it in the clear.
	for _, n := range nodes {
		filepath.WalkDir(n.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if raw, err := os.ReadFile(p); err == nil && bytes.Contains(raw, []byte("hf_remote_secret")) {
				t.Errorf("%s holds the remote token in the clear", p)
			}
			return nil
		})
	}

	// The CLI against a running node.
	out, err := exec.Command(hfcacheBin, "distribution", "get", "mirror", "--addr", nodes[1].p.AdminURL, "-o", "json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"base_path": "/mirror"`) && !strings.Contains(string(out), `"base_path":"/mirror"`) {
		t.Fatalf("hfcache distribution get: %v\n%s", err, out)
	}
	out, err = exec.Command(hfcacheBin, "remote", "list", "--addr", nodes[2].p.AdminURL).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mirror") || strings.Contains(string(out), "hf_remote_secret") {
		t.Fatalf("hfcache remote list: %v\n%s", err, out)
	}
	// A maximum file size set through the CLI refuses bigger files everywhere.
	out, err = exec.Command(hfcacheBin, "remote", "update", "mirror", "--max-file-size", "1KiB", "--addr", nodes[0].p.AdminURL).CombinedOutput()
	if err != nil {
		t.Fatalf("hfcache remote update --max-file-size: %v\n%s", err, out)
	}
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.name+" refusing a file over max_file_size", func() bool {
			resp, _ := do(t, http.MethodHead, resolveURL(n.p.URL+"/mirror", hf.Model, modelID, "main", "model.safetensors"), nil)
			return resp.StatusCode == 403 && resp.Header.Get(hf.HeaderErrorCode) == "FileTooLarge"
		})
		if resp, _ := do(t, http.MethodHead, resolveURL(n.p.URL+"/mirror", hf.Model, modelID, "main", "config.json"), nil); resp.StatusCode != 200 {
			t.Fatalf("a small file under max_file_size: %d", resp.StatusCode)
		}
	}
	out, err = exec.Command(hfcacheBin, "cluster", "members", "--addr", nodes[0].p.AdminURL).CombinedOutput()
	if err != nil || strings.Count(string(out), "alive") != 3 {
		t.Fatalf("hfcache cluster members: %v\n%s", err, out)
	}
}

// waitRaft waits until every running node sees want Raft servers and the
// same leader.
func waitRaft(t *testing.T, nodes []*raftNode, want int) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("a Raft cluster of %d with one leader", want), func() bool {
		leader := ""
		for _, n := range nodes {
			v := raftStatus(t, n.p)
			if len(v.Servers) != want || v.LeaderID == "" || (leader != "" && v.LeaderID != leader) {
				return false
			}
			leader = v.LeaderID
		}
		return true
	})
}

// roles finds the leader and the followers.
func roles(t *testing.T, nodes []*raftNode) (*raftNode, []*raftNode) {
	t.Helper()
	id := raftStatus(t, nodes[0].p).LeaderID
	var leader *raftNode
	var followers []*raftNode
	for _, n := range nodes {
		if n.name == id {
			leader = n
		} else {
			followers = append(followers, n)
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is not one of the nodes", id)
	}
	return leader, followers
}
