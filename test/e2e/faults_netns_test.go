package e2e

// Network partitions between real processes: three nodes, each in its own
// Linux network namespace, with two links each. A "cluster" bridge carries
// gossip, Raft and peer traffic (every node advertises its address there);
// a "client" bridge, where the test process (in the root namespace) holds
// an address, carries the test's requests to the client and admin ports and
// the nodes' requests to the fake Hub. Cutting a node off is taking its
// cluster link down on the host side: the node and the rest of the cluster
// can no longer reach each other, while the test still talks to all three.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
)

// netnsSeq keeps interface and namespace names unique within a test run;
// the pid keeps them unique between concurrent runs.
var netnsSeq atomic.Int32

// netLab is the namespaces, bridges and links of one test.
type netLab struct {
	t          *testing.T
	ip         string // the ip binary
	tag        string // unique part of every name
	brCluster  string
	brClient   string
	clusterNet string // "10.231.N": no address of the host on it
	clientNet  string // "10.232.N": the host is .1
	namespaces []string
	links      []string // host sides of the veth pairs
	nodes      []*netnsNode
}

// netnsNode is one node of the lab and, once started, its process.
type netnsNode struct {
	name      string
	ns        string
	clusterIP string
	clientIP  string
	hostLink  string // host side of the node's cluster link: down = cut off
	dir       string
	p         *proc
}

func (n *netnsNode) clientURL() string { return "http://" + n.clientIP + ":8080" }
func (n *netnsNode) adminURL() string  { return "http://" + n.clientIP + ":8081" }
func (n *netnsNode) gossip() string    { return n.clusterIP + ":7946" }

// newNetLab builds n namespaces joined by the two bridges, and removes
// everything when the test ends (also when it fails). It skips the test
// where namespaces cannot be created (not root, no CAP_SYS_ADMIN).
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/bin/ip"} {
			if _, err := os.Stat(p); err == nil {
				ipBin = p
				break
			}
		}
	}
	if ipBin == "" {
		t.Fatal("the ip command (iproute2) is missing: `make deps` installs it")
	}
	seq := netnsSeq.Add(1)
	lab := &netLab{t: t, ip: ipBin, tag: fmt.Sprintf("%d%c", os.Getpid()%1000000, 'a'+seq%26)}
	lab.brCluster, lab.brClient = "hfc"+lab.tag+"A", "hfc"+lab.tag+"B"

	// The first namespace decides whether this can run at all.
	first := "hfcache-" + lab.tag + "-1"
	if out, err := exec.Command(ipBin, "netns", "add", first).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here (needs root or CAP_SYS_ADMIN): ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	lab.namespaces = append(lab.namespaces, first)
	t.Cleanup(lab.teardown)

	third := lab.freeSubnet()
	lab.clusterNet, lab.clientNet = "10.231."+strconv.Itoa(third), "10.232."+strconv.Itoa(third)
	lab.run("link", "add", lab.brCluster, "type", "bridge")
	lab.run("link", "set", lab.brCluster, "up")
	lab.run("link", "add", lab.brClient, "type", "bridge")
	lab.run("addr", "add", lab.hostIP()+"/24", "dev", lab.brClient)
	lab.run("link", "set", lab.brClient, "up")
	for i := 1; i <= n; i++ {
		nd := &netnsNode{
			name:      fmt.Sprintf("node%d", i),
			ns:        fmt.Sprintf("hfcache-%s-%d", lab.tag, i),
			clusterIP: fmt.Sprintf("%s.%d", lab.clusterNet, 10+i),
			clientIP:  fmt.Sprintf("%s.%d", lab.clientNet, 10+i),
			hostLink:  fmt.Sprintf("hfc%s%dc", lab.tag, i),
			dir:       t.TempDir(),
		}
		clientLink := fmt.Sprintf("hfc%s%dk", lab.tag, i)
		if i > 1 {
			lab.run("netns", "add", nd.ns)
			lab.namespaces = append(lab.namespaces, nd.ns)
		}
		lab.nodes = append(lab.nodes, nd)
		lab.links = append(lab.links, nd.hostLink, clientLink)
		lab.run("link", "add", nd.hostLink, "type", "veth", "peer", "name", "cluster0", "netns", nd.ns)
		lab.run("link", "set", nd.hostLink, "master", lab.brCluster, "up")
		lab.run("link", "add", clientLink, "type", "veth", "peer", "name", "client0", "netns", nd.ns)
		lab.run("link", "set", clientLink, "master", lab.brClient, "up")
		lab.run("-n", nd.ns, "addr", "add", nd.clusterIP+"/24", "dev", "cluster0")
		lab.run("-n", nd.ns, "addr", "add", nd.clientIP+"/24", "dev", "client0")
		for _, l := range []string{"lo", "cluster0", "client0"} {
			lab.run("-n", nd.ns, "link", "set", l, "up")
		}
	}
	return lab
}

func (lab *netLab) hostIP() string { return lab.clientNet + ".1" }

// freeSubnet picks a third octet whose client subnet no address or route of
// the host uses (another run of this test, say).
func (lab *netLab) freeSubnet() int {
	out, _ := exec.Command(lab.ip, "-4", "-o", "addr").CombinedOutput()
	routes, _ := exec.Command(lab.ip, "-4", "route").CombinedOutput()
	used := string(out) + string(routes)
	start := os.Getpid()%200 + 20
	for k := 0; k < 200; k++ {
		third := (start+k-20)%200 + 20
		if !strings.Contains(used, "10.232."+strconv.Itoa(third)+".") {
			return third
		}
	}
	lab.t.Fatal("no free 10.232.x.0/24 subnet for the client bridge")
	return 0
}

// run runs an ip command and fails the test if it fails.
func (lab *netLab) run(args ...string) {
	lab.t.Helper()
	if out, err := exec.Command(lab.ip, args...).CombinedOutput(); err != nil {
		lab.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// teardown deletes the veth pairs, the namespaces and the bridges. It runs
// after the processes were stopped (cleanups run last registered first).
// The links go explicitly: a namespace outlives its name while sockets of
// the stopped nodes linger, and its links with it.
func (lab *netLab) teardown() {
	for _, l := range lab.links {
		exec.Command(lab.ip, "link", "del", l).Run()
	}
	for _, ns := range lab.namespaces {
		exec.Command(lab.ip, "netns", "del", ns).Run()
	}
	exec.Command(lab.ip, "link", "del", lab.brCluster).Run()
	exec.Command(lab.ip, "link", "del", lab.brClient).Run()
}

// cut takes a node's cluster link down: it is partitioned from the others.
func (lab *netLab) cut(n *netnsNode) { lab.run("link", "set", n.hostLink, "down") }

// heal brings the link back.
func (lab *netLab) heal(n *netnsNode) { lab.run("link", "set", n.hostLink, "up") }

// startHub starts a fake Hub on the client bridge, where the namespaces
// reach it, with files as one model repository; it returns the commit.
func (lab *netLab) startHub(repo string, files []fakehub.File) (*fakehub.Hub, string) {
	lab.t.Helper()
	h := fakehub.New()
	commit := h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: repo, Files: files})
	if err := h.StartOn(lab.hostIP()+":0", lab.hostIP()+":0"); err != nil {
		lab.t.Fatal(err)
	}
	lab.t.Cleanup(h.Close)
	// The CDN's URLs name "localhost", which inside a namespace is the
	// namespace itself: advertise the bridge address instead.
	u, err := url.Parse(h.CDNURL())
	if err != nil {
		lab.t.Fatal(err)
	}
	h.SetURLs("", "http://"+lab.hostIP()+":"+u.Port())
	return h, commit
}

// start runs `hfcache serve` in the node's namespace: client and admin on
// every interface (the test reaches them on the client bridge), gossip and
// Raft on the cluster link, which is also the address advertised to peers.
func (lab *netLab) start(n *netnsNode, upstream string, extra ...string) {
	t := lab.t
	t.Helper()
	var seeds []string
	for _, o := range lab.nodes {
		seeds = append(seeds, o.gossip())
	}
	args := append([]string{"netns", "exec", n.ns, hfcacheBin, "serve",
		"--node-name", n.name, "--data-dir", n.dir, "--upstream", upstream,
		"--cache-size", "1GiB", "--log-format", "json", "--log-level", "debug",
		"--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:8081",
		"--gossip-addr", n.gossip(), "--advertise-addr", n.clusterIP,
		"--raft-addr", n.clusterIP + ":7947",
		"--cluster-secret", clusterSecret, "--bootstrap-expect", strconv.Itoa(len(lab.nodes)),
		"--join", strings.Join(seeds, ","),
	}, extra...)
	n.p = startCmd(t, exec.Command(lab.ip, args...), n.dir)
	// The node listens on 0.0.0.0: reach it at its bridge addresses.
	n.p.URL, n.p.AdminURL, n.p.Gossip = n.clientURL(), n.adminURL(), n.gossip()
}

// netClient talks to the nodes over the client bridge; no request may hang
// the test, and no connection outlives its request.
var netClient = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableCompression: true, DisableKeepAlives: true},
}

// netDo sends a request with an optional JSON body; err is a transport
// failure.
func netDo(method, url string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := netClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp, raw, err
}

// netRaft is a node's GET /v1/cluster/raft.
type netRaft struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LeaderID     string `json:"leader_id"`
	Servers      []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
	} `json:"servers"`
}

func (n *netnsNode) raft() netRaft {
	var v netRaft
	if resp, body, err := netDo(http.MethodGet, n.adminURL()+"/v1/cluster/raft", nil); err == nil && resp.StatusCode == 200 {
		json.Unmarshal(body, &v)
	}
	return v
}

// memberStates is a node's view of every member's state, by name.
func (n *netnsNode) memberStates() map[string]string {
	out := map[string]string{}
	resp, body, err := netDo(http.MethodGet, n.adminURL()+"/v1/cluster/members", nil)
	if err != nil || resp.StatusCode != 200 {
		return out
	}
	var view struct {
		Members []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"members"`
	}
	json.Unmarshal(body, &view)
	for _, m := range view.Members {
		out[m.Name] = m.State
	}
	return out
}

// configOf is a node's whole configuration as its admin API lists it, and
// the configuration index it was read at.
func (n *netnsNode) configOf() (string, string) {
	var b strings.Builder
	idx := ""
	for _, kind := range []string{"remotes", "repositories", "distributions"} {
		resp, body, err := netDo(http.MethodGet, n.adminURL()+"/v1/"+kind, nil)
		if err != nil || resp.StatusCode != 200 {
			return "", ""
		}
		if i := resp.Header.Get("X-Hfcache-Index"); idx == "" || idx == i {
			idx = i
		} else {
			return "", "" // changed between the reads
		}
		fmt.Fprintf(&b, "%s: %s\n", kind, body)
	}
	return b.String(), idx
}

func (n *netnsNode) running() bool {
	select {
	case <-n.p.Done():
		return false
	default:
		return true
	}
}

// blobOnDisk reports whether the node's store holds a sha256 blob as a
// complete file.
func (n *netnsNode) blobOnDisk(sha256 string) bool {
	_, err := os.Stat(filepath.Join(n.dir, "store", "blobs", "sha256", sha256[:2], sha256))
	return err == nil
}

// TestNetworkPartition: three nodes in their own network namespaces. A
// follower cut off from the others keeps serving what it holds from disk,
// refuses an admin write with 503 (no leader) instead of diverging, while
// the other two keep serving and accept writes; when the link comes back,
// membership and configuration converge without a restart. Then the same
// with the leader cut off: the other two elect a new leader and take
// writes, the old one steps down and refuses them, and everything
// converges after the heal.
func TestNetworkPartition(t *testing.T) {
	lab := newNetLab(t, 3)
	const repo = "acme/partition"
	var files []fakehub.File
	for i := 0; i < 24; i++ {
		files = append(files, fakehub.File{Path: fmt.Sprintf("shard-%02d.bin", i), Size: 48<<10 + int64(i), Seed: int64(700 + i), LFS: true})
	}
	hub, commit := lab.startHub(repo, files)
	want := map[string][]byte{}
	addr := map[string]string{}
	for _, f := range files {
		want[f.Path] = content(t, hub, hf.Model, repo, commit, f.Path)
		addr[f.Path] = hub.FileInfo(hf.Model, repo, commit, f.Path).SHA256
	}
	fileURL := func(n *netnsNode, path string) string {
		return resolveURL(n.clientURL(), hf.Model, repo, commit, path)
	}

	start := time.Now()
	for _, n := range lab.nodes {
		lab.start(n, hub.URL())
	}
	nodes := lab.nodes
	eventually(t, 60*time.Second, "a Raft cluster of 3 and 3 alive members on every node", func() bool {
		leader := ""
		for _, n := range nodes {
			r := n.raft()
			if len(r.Servers) != 3 || r.LeaderID == "" || (leader != "" && r.LeaderID != leader) {
				return false
			}
			leader = r.LeaderID
			alive := 0
			for _, st := range n.memberStates() {
				if st == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("cluster formed in %v", time.Since(start).Round(time.Millisecond))

	// Every node serves every file; each keeps on disk the blobs it owns.
	for _, n := range nodes {
		for _, f := range files {
			resp, body, err := netDo(http.MethodGet, fileURL(n, f.Path), nil)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want[f.Path]) {
				t.Fatalf("warming %s through %s: %v %v", f.Path, n.name, err, resp)
			}
		}
	}

	byName := func(name string) *netnsNode {
		for _, n := range nodes {
			if n.name == name {
				return n
			}
		}
		t.Fatalf("no node %q", name)
		return nil
	}
	rolesNow := func() (*netnsNode, []*netnsNode) {
		leader := byName(nodes[0].raft().LeaderID)
		var rest []*netnsNode
		for _, n := range nodes {
			if n != leader {
				rest = append(rest, n)
			}
		}
		return leader, rest
	}

	// partition cuts victim off, checks both sides, heals and checks that
	// the cluster converges; name tags the objects written meanwhile.
	partition := func(name string, victim *netnsNode, majority []*netnsNode, wasLeader bool) {
		held := ""
		for _, f := range files {
			if victim.blobOnDisk(addr[f.Path]) {
				held = f.Path
				break
			}
		}
		if held == "" {
			t.Fatalf("%s holds none of the %d blobs on disk", victim.name, len(files))
		}
		cutAt := time.Now()
		lab.cut(victim)
		t.Logf("%s: %s cut off", name, victim.name)

		if wasLeader {
			eventually(t, 20*time.Second, "a new leader on the majority side", func() bool {
				a, b := majority[0].raft(), majority[1].raft()
				return a.LeaderID != "" && a.LeaderID == b.LeaderID && a.LeaderID != victim.name
			})
			t.Logf("%s: new leader %s after %v", name, majority[0].raft().LeaderID, time.Since(cutAt).Round(time.Millisecond))
		}
		// The cut node loses its leader (a cut leader steps down).
		eventually(t, 20*time.Second, victim.name+" without a leader", func() bool {
			r := victim.raft()
			return r.LeaderID == "" && r.State != "leader" && r.State != ""
		})

		// It keeps serving what it holds, from its disk.
		hub.ResetStats()
		resp, body, err := netDo(http.MethodGet, fileURL(victim, held), nil)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want[held]) {
			t.Fatalf("%s: GET %s on the cut node: %v %v", name, held, err, resp)
		}
		if src := resp.Header.Get("X-Hfcache-Source"); src != "disk" || hub.Stats().BodyFetches(addr[held]) != 0 {
			t.Errorf("%s: the cut node served %s from %q (%d upstream fetches), want disk", name, held, src, hub.Stats().BodyFetches(addr[held]))
		}

		// The majority accepts a write.
		resp, body, err = netDo(http.MethodPut, majority[1].adminURL()+"/v1/remotes/"+name+"-majority", map[string]any{"url": hub.URL()})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: write on the majority side: %v %v %s", name, err, resp, body)
		}

		// A write sent to the cut node fails within a bounded time.
		sent := time.Now()
		resp, body, err = netDo(http.MethodPut, victim.adminURL()+"/v1/remotes/"+name+"-cutoff", map[string]any{"url": hub.URL()})
		took := time.Since(sent)
		if err != nil || resp.StatusCode != 503 || !strings.Contains(string(body), "no_leader") {
			t.Fatalf("%s: write on the cut node: %v %v %s (after %v), want 503 no_leader", name, err, resp, body, took)
		}
		if took > 15*time.Second {
			t.Errorf("%s: the cut node took %v to refuse a write", name, took)
		}
		t.Logf("%s: the cut node refused a write after %v: %s", name, took.Round(time.Millisecond), bytes.TrimSpace(body))
		for _, n := range nodes {
			if resp, _, err := netDo(http.MethodGet, n.adminURL()+"/v1/remotes/"+name+"-cutoff", nil); err != nil || resp.StatusCode != 404 {
				t.Fatalf("%s: %s has the refused object: %v %v", name, n.name, err, resp)
			}
		}
		if resp, _, err := netDo(http.MethodGet, victim.adminURL()+"/v1/remotes/"+name+"-majority", nil); err != nil || resp.StatusCode != 404 {
			t.Fatalf("%s: the cut node sees the majority's write: %v %v", name, err, resp)
		}
		if r := victim.raft(); r.State == "leader" {
			t.Fatalf("%s: the cut node is leader", name)
		}

		// The majority keeps serving every file, those only the cut node
		// held included, once it no longer counts on the cut node.
		for _, m := range majority {
			eventually(t, 20*time.Second, m.name+" seeing "+victim.name+" down", func() bool {
				st := m.memberStates()[victim.name]
				return st == "suspect" || st == "dead"
			})
		}
		for _, m := range majority {
			for _, f := range files {
				resp, body, err := netDo(http.MethodGet, fileURL(m, f.Path), nil)
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want[f.Path]) {
					t.Fatalf("%s: GET %s on %s during the partition: %v %v", name, f.Path, m.name, err, resp)
				}
			}
		}
		t.Logf("%s: checks during the cut done after %v", name, time.Since(cutAt).Round(time.Millisecond))

		// Heal: gossip and Raft find each other again, no restart.
		healAt := time.Now()
		lab.heal(victim)
		var detail string
		converged := func() bool {
			var b strings.Builder
			leader, commitIdx, cfg, cfgIdx := "", uint64(0), "", ""
			ok := true
			for _, n := range nodes {
				states := n.memberStates()
				for _, o := range nodes {
					if states[o.name] != "alive" {
						ok = false
					}
				}
				r := n.raft()
				if r.LeaderID == "" || (leader != "" && r.LeaderID != leader) || len(r.Servers) != 3 ||
					(commitIdx != 0 && r.CommitIndex != commitIdx) || r.AppliedIndex != r.CommitIndex {
					ok = false
				}
				leader, commitIdx = r.LeaderID, r.CommitIndex
				c, idx := n.configOf()
				if c == "" || (cfg != "" && (c != cfg || idx != cfgIdx)) || !strings.Contains(c, `"`+name+`-majority"`) {
					ok = false
				}
				cfg, cfgIdx = c, idx
				fmt.Fprintf(&b, "\n%s: members %v; raft %+v; configuration index %s", n.name, states, r, idx)
			}
			detail = b.String()
			return ok
		}
		for deadline := time.Now().Add(60 * time.Second); !converged(); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no convergence within 60s of the heal:%s", name, detail)
			}
			time.Sleep(20 * time.Millisecond) // polling interval, not a wait for an outcome
		}
		t.Logf("%s: converged %v after the heal (configuration index %s everywhere)", name,
			time.Since(healAt).Round(time.Millisecond), func() string { _, i := nodes[0].configOf(); return i }())
		for _, n := range nodes {
			if !n.running() {
				t.Fatalf("%s: %s exited", name, n.name)
			}
			if resp, _, err := netDo(http.MethodGet, n.adminURL()+"/v1/remotes/"+name+"-cutoff", nil); err != nil || resp.StatusCode != 404 {
				t.Fatalf("%s: after the heal %s has the refused object: %v %v", name, n.name, err, resp)
			}
		}
		// A write through the node that was cut off works again.
		resp, body, err = netDo(http.MethodPut, victim.adminURL()+"/v1/remotes/"+name+"-healed", map[string]any{"url": hub.URL()})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: write on the healed node: %v %v %s", name, err, resp, body)
		}
	}

	leader, followers := rolesNow()
	partition("follower-cut", followers[0], []*netnsNode{leader, followers[1]}, false)
	leader, followers = rolesNow()
	partition("leader-cut", leader, followers, true)
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}
