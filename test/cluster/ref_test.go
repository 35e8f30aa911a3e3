package cluster

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/test/fakeclock"
	"github.com/hfcache/hfcache/test/fakehub"
)

// keptForWhatIsLeft drives what a non-owner keeps of a branch's answer
// through its TTL (refTTL, a minute): every node asks once,
// all answer warm calls from memory, the owner asks the Hub again once the
// TTL is over, and a non-owner that asks 50 s into the owner's new TTL
// keeps the answer for the 10 s left, not for a TTL of its own. asks counts
// the calls the owner answered for the others (and names the owner);
// upstream counts the Hub's requests. It returns the owner and a non-owner.
func keptForWhatIsLeft(t *testing.T, c *Cluster, clk *fakeclock.Clock, get func(*Node), asks func() (float64, *Node), upstream func() int) (owner, other *Node) {
	t.Helper()
	check := func(step string, wantAsks float64, wantUp int) {
		t.Helper()
		if got, _ := asks(); got != wantAsks || upstream() != wantUp {
			t.Fatalf("%s: %v asked of the owner, %d to the Hub; want %v and %d", step, got, upstream(), wantAsks, wantUp)
		}
	}
	for _, n := range c.Nodes {
		get(n)
	}
	check("first request through each node", 2, 1)
	_, owner = asks()
	for _, n := range c.Nodes {
		if n != owner {
			other = n
			break
		}
	}
	for range 5 {
		for _, n := range c.Nodes {
			get(n)
		}
	}
	check("warm through every node", 2, 1)

	clk.Advance(refTTL + time.Second)
	get(owner)
	check("the owner after the TTL", 2, 2)
	clk.Advance(50 * time.Second)
	get(other)
	check("a non-owner, its copy expired", 3, 2)
	get(other)
	check("the same non-owner again", 3, 2)
	clk.Advance(11 * time.Second)
	get(other)
	check("the same non-owner once the owner's TTL ran out", 4, 3)
	// The owner answered that from a Hub request it made for it: fresh
	// for a TTL.
	get(other)
	check("the same non-owner after the owner's new request", 4, 3)
	return owner, other
}

// peerCalls sums a peer route's requests over the nodes, less a baseline
// per node, and names the node that answered any.
func peerCalls(t *testing.T, c *Cluster, route string, base map[*Node]float64) (total float64, owner *Node) {
	for _, n := range c.Nodes {
		if v := gather(t, n.Metrics, "hfcache_http_requests_total", map[string]string{"route": route}) - base[n]; v > 0 {
			total, owner = total+v, n
		}
	}
	return total, owner
}

// A branch's commit is the repository owner's to resolve, at most once per
// ref TTL from the Hub. The other nodes keep the owner's answer for what is
// left of its TTL and serve warm hits from memory meanwhile, instead of
// asking the owner on every request; and they never keep it longer than
// the owner does, so a client sees a commit no older than the TTL,
// whichever node it reaches.
func TestNonOwnersKeepTheBranchForWhatIsLeftOfItsTTL(t *testing.T) {
	hub := startHub(t)
	clk := fakeclock.New(time.Now())
	c := New(t, Options{Upstream: hub.URL(), NodeConfig: func(cfg *node.Config) { cfg.Now = clk.Now }}, 3)
	get := func(n *Node) {
		t.Helper()
		resp, _ := Get(t, fileURL(n, "config.json"), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("via %s: %d", n.Name, resp.StatusCode)
		}
	}
	resolves := func() (float64, *Node) { return peerCalls(t, c, "peer_resolve", nil) }
	heads := func() int { return hub.Stats().Requests(http.MethodHead, "/"+modelID+"/resolve/") }
	_, other := keptForWhatIsLeft(t, c, clk, get, resolves, heads)

	// With the Hub down the owner answers from its stale commit; a stale
	// answer is not kept, so the next request asks again.
	clk.Advance(refTTL + time.Second)
	hub.Close()
	for i := range 2 {
		get(other)
		if got, _ := resolves(); got != float64(5+i) {
			t.Fatalf("stale answer %d: %v resolves asked of the owner, want %d", i+1, got, 5+i)
		}
	}
}

// An API answer at a branch, or at the default branch (info without a
// revision, as `model_info` asks), is kept by the other nodes the same way:
// for what is left of the owner's TTL, never longer; an answer the owner
// served stale (the Hub down) is not kept.
func TestNonOwnersKeepBranchAPIAnswersForWhatIsLeftOfTheirTTL(t *testing.T) {
	hub := startHub(t)
	clk := fakeclock.New(time.Now())
	c := New(t, Options{Upstream: hub.URL(), NodeConfig: func(cfg *node.Config) { cfg.Now = clk.Now }}, 3)
	sha := hub.Ref(hf.Model, modelID, "main")
	info := "/api/models/" + modelID
	var owner, other *Node
	for _, path := range []string{info, info + "/revision/main"} {
		t.Run(path, func(t *testing.T) {
			get := func(n *Node) {
				t.Helper()
				resp, body := Get(t, n.URL+path, nil)
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), sha) {
					t.Fatalf("via %s: %d %s", n.Name, resp.StatusCode, body)
				}
			}
			base := map[*Node]float64{}
			for _, n := range c.Nodes {
				base[n] = gather(t, n.Metrics, "hfcache_http_requests_total", map[string]string{"route": "peer_api"})
			}
			asks := func() (float64, *Node) { return peerCalls(t, c, "peer_api", base) }
			// Info calls to the Hub, by name or at the commit a fresh
			// branch maps to.
			upBase := hub.Stats().Requests(http.MethodGet, info)
			upstream := func() int { return hub.Stats().Requests(http.MethodGet, info) - upBase }
			owner, other = keptForWhatIsLeft(t, c, clk, get, asks, upstream)
			clk.Advance(refTTL + time.Second)
		})
	}
	if owner == nil || other == nil {
		t.Fatal("no owner and non-owner of the repository's API calls")
	}
	// With the Hub down the owner answers from its stale copy; a stale
	// answer is not kept, so the next call asks again.
	hub.Close()
	before, _ := peerCalls(t, c, "peer_api", nil)
	for i := range 2 {
		if resp, _ := Get(t, other.URL+info, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("stale %d via %s: %d", i+1, other.Name, resp.StatusCode)
		}
		if got, _ := peerCalls(t, c, "peer_api", nil); got != before+float64(i+1) {
			t.Fatalf("stale answer %d: %v calls asked of the owner, want %v", i+1, got, before+float64(i+1))
		}
	}
}

// A repository API answer at a commit is immutable: a node that asked the
// owner for it once keeps it and answers from memory after, also once the
// ref TTL has passed, and also for the branch while the branch's commit is
// fresh there.
func TestNonOwnersKeepAPIAnswersAtACommit(t *testing.T) {
	hub := startHub(t)
	clk := fakeclock.New(time.Now())
	c := New(t, Options{Upstream: hub.URL(), NodeConfig: func(cfg *node.Config) { cfg.Now = clk.Now }}, 3)
	sha := hub.Ref(hf.Model, modelID, "main")
	tree := func(rev string) string { return "/api/models/" + modelID + "/tree/" + rev }
	get := func(n *Node, rev string) {
		t.Helper()
		resp, body := Get(t, n.URL+tree(rev), nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "config.json") {
			t.Fatalf("tree %s via %s: %d %s", rev, n.Name, resp.StatusCode, body)
		}
	}
	check := func(step string, wantAsks float64, wantUpstream int) {
		t.Helper()
		got, _ := peerCalls(t, c, "peer_api", nil)
		up := hub.Stats().Requests(http.MethodGet, tree(sha))
		if got != wantAsks || up != wantUpstream {
			t.Fatalf("%s: %v API calls asked of the owner, %d upstream; want %v and %d", step, got, up, wantAsks, wantUpstream)
		}
	}

	for range 3 {
		for _, n := range c.Nodes {
			get(n, sha)
		}
	}
	check("the tree at a commit, three times through each node", 2, 1)
	clk.Advance(time.Hour)
	for _, n := range c.Nodes {
		get(n, sha)
	}
	check("an hour later", 2, 1)

	// Each node learns the branch's commit (a resolve), then lists the
	// branch: at that commit, from memory.
	for _, n := range c.Nodes {
		if resp, _ := Get(t, fileURL(n, "config.json"), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("config via %s: %d", n.Name, resp.StatusCode)
		}
	}
	for _, n := range c.Nodes {
		get(n, "main")
	}
	check("the branch while its commit is fresh", 2, 1)
}

// A private repository's API answer kept at a node is served from there
// only to callers the Hub accepted: another token, or none, gets what the
// Hub would answer them (the statuses come from the Hub itself).
func TestKeptPrivateAPIAnswersStayPrivate(t *testing.T) {
	hub := startHub(t)
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "acme/private", Private: true, Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{}`)},
	}})
	hub.AddToken("hf_ok", "alice")
	hub.AddToken("hf_no", "mallory")
	hub.Grant("hf_ok", hf.Model, "acme/private")
	c := New(t, Options{Upstream: hub.URL()}, 3)
	auth := func(tok string) http.Header {
		if tok == "" {
			return nil
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	// At a commit (kept for good) and at the default branch (kept for
	// what is left of the owner's TTL).
	for _, u := range []string{"/api/models/acme/private/tree/" + hub.Ref(hf.Model, "acme/private", "main"), "/api/models/acme/private"} {
		want := map[string]int{}
		for _, tok := range []string{"", "hf_no"} {
			resp, _ := Get(t, hub.URL()+u, auth(tok))
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("the Hub answers %s for token %q", u, tok)
			}
			want[tok] = resp.StatusCode
		}
		for _, n := range slices.Concat(c.Nodes, c.Nodes) { // each node twice: the second time from what it kept
			resp, body := Get(t, n.URL+u, auth("hf_ok"))
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "config.json") {
				t.Fatalf("%s approved via %s: %d", u, n.Name, resp.StatusCode)
			}
			for tok, status := range want {
				if resp, _ := Get(t, n.URL+u, auth(tok)); resp.StatusCode != status {
					t.Fatalf("%s, token %q via %s: %d, want the Hub's %d", u, tok, n.Name, resp.StatusCode, status)
				}
			}
		}
	}
}

// A listing larger than what a node keeps of the owner's answers (1 MiB)
// still comes from the owner each time.
func TestLargeAPIAnswersAreNotKept(t *testing.T) {
	hub := startHub(t)
	files := make([]fakehub.File, 10000)
	for i := range files {
		files[i] = fakehub.File{Path: fmt.Sprintf("shards/part-%05d-of-10000-with-a-long-name.json", i), Data: []byte("{}")}
	}
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "acme/many", Files: files})
	hub.SetPageSize(len(files))
	c := New(t, Options{Upstream: hub.URL()}, 3)
	u := "/api/models/acme/many/tree/" + hub.Ref(hf.Model, "acme/many", "main") + "/shards"
	for range 2 {
		for _, n := range c.Nodes {
			resp, body := Get(t, n.URL+u, nil)
			if resp.StatusCode != http.StatusOK || len(body) <= 1<<20 {
				t.Fatalf("via %s: %d, %d bytes (want over 1 MiB)", n.Name, resp.StatusCode, len(body))
			}
		}
	}
	if asks, _ := peerCalls(t, c, "peer_api", nil); asks != 4 || hub.Stats().Requests(http.MethodGet, u) != 1 {
		t.Fatalf("%v API calls asked of the owner (want 4: not kept), %d upstream (want 1)", asks, hub.Stats().Requests(http.MethodGet, u))
	}
}
