package cluster

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/test/fakehub"
)

const (
	modelID = "acme/cluster-model"
	bigSize = 8 << 20
)

func startHub(t *testing.T) *fakehub.Hub {
	t.Helper()
	h := fakehub.New()
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: modelID, Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"cluster": true}`)},
		{Path: "big.bin", Size: bigSize, Seed: 9, LFS: true},
		{Path: "small.bin", Size: 4096, Seed: 10, LFS: true},
	}})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func fileURL(n *Node, p string) string {
	return n.URL + hf.Repo{Type: hf.Model, ID: modelID}.FilePath("resolve", "main", hf.Path(p))
}

// Concurrent requests for a cold blob arriving at every node end on the
// owner's single fill: one upstream body fetch, identical bytes everywhere.
func TestOneUpstreamFetchForTheCluster(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	want := hub.Bytes(hf.Model, modelID, "main", "big.bin")
	hub.SetThrottle(32<<20, 0)
	var wg sync.WaitGroup
	errs := make(chan string, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(n *Node) {
			defer wg.Done()
			resp, err := http.Get(fileURL(n, "big.bin"))
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, want) {
				errs <- "bytes differ via " + n.Name
			}
		}(c.Nodes[i%3])
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := hub.Stats().BodyFetches(hub.FileInfo(hf.Model, modelID, "main", "big.bin").Addr()); n != 1 {
		for _, e := range hub.Stats().Log {
			t.Logf("%+v", e)
		}
		t.Fatalf("%d upstream body fetches, want 1", n)
	}
	// Metadata too: one HEAD-equivalent resolution for the whole cluster.
	if n := hub.Stats().Requests(http.MethodHead, "/"+modelID+"/resolve/main/big.bin"); n != 1 {
		for _, e := range hub.Stats().Log {
			if e.Method == http.MethodHead {
				t.Logf("%+v", e)
			}
		}
		t.Errorf("%d upstream HEADs of the file, want 1 (single flight on the repo owner)", n)
	}
}

// Peer routes refuse anyone without the cluster secret, so a client cannot
// reach a blob through them and skip access control.
func TestPeerRoutesNeedTheSecret(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 1)
	n := c.Nodes[0]
	fi := hub.FileInfo(hf.Model, modelID, "main", "small.bin")
	u := n.URL + node.PeerBlobPath + "?id=sha256:" + fi.SHA256 + "&type=model&repo=" + modelID + "&commit=" + fi.Commit + "&path=small.bin&size=4096"
	for name, hdr := range map[string]http.Header{
		"unsigned":     {},
		"forged":       {node.HeaderPeerAuth: {"1700000000.deadbeef"}},
		"other secret": signed(t, "not-the-secret", u),
		"replayed":     signedAt(t, Secret, u, time.Now().Add(-time.Hour)),
	} {
		resp, _ := Get(t, u, hdr)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, resp.StatusCode)
		}
	}
	if n := hub.Stats().BodyFetches(fi.SHA256); n != 0 {
		t.Fatalf("refused peer requests reached the Hub %d times", n)
	}
	resp, body := Get(t, u, signed(t, Secret, u))
	if resp.StatusCode != 200 || !bytes.Equal(body, hub.Bytes(hf.Model, modelID, "main", "small.bin")) {
		t.Fatalf("signed peer request: %d", resp.StatusCode)
	}
}

func signed(t *testing.T, secret, u string) http.Header { return signedAt(t, secret, u, time.Now()) }

func signedAt(t *testing.T, secret, u string, at time.Time) http.Header {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	node.NewPeerAuth(secret, func() time.Time { return at }).Sign(req)
	return req.Header
}

// A request forwarded by a peer is served by the node it reached, even if
// that node disagrees about ownership: it is never forwarded again.
func TestForwardedRequestIsNotForwardedAgain(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	fi := hub.FileInfo(hf.Model, modelID, "main", "small.bin")
	for _, n := range c.Nodes {
		u := n.URL + node.PeerBlobPath + "?id=sha256:" + fi.SHA256 + "&type=model&repo=" + modelID + "&commit=" + fi.Commit + "&path=small.bin&size=4096"
		resp, _ := Get(t, u, signed(t, Secret, u))
		if resp.StatusCode != 200 || resp.Header.Get("X-Hfcache-Node") != n.Name {
			t.Fatalf("peer request to %s served by %q (%d)", n.Name, resp.Header.Get("X-Hfcache-Node"), resp.StatusCode)
		}
	}
}

// Responses say which node served the bytes and from where; a node that is
// not the owner streams the owner's answer through.
func TestResponsesNameNodeAndSource(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	resp, _ := Get(t, fileURL(c.Nodes[0], "small.bin"), nil)
	owner := resp.Header.Get("X-Hfcache-Node")
	if resp.Header.Get("X-Hfcache-Source") != "upstream" || owner == "" {
		t.Fatalf("cold: node %q source %q", owner, resp.Header.Get("X-Hfcache-Source"))
	}
	for _, n := range c.Nodes {
		resp, _ := Get(t, fileURL(n, "small.bin"), http.Header{"Range": {"bytes=10-19"}})
		if resp.StatusCode != 206 || resp.Header.Get("X-Hfcache-Node") != owner || resp.Header.Get("X-Hfcache-Source") != "disk" {
			t.Fatalf("warm via %s: %d node %q source %q", n.Name, resp.StatusCode, resp.Header.Get("X-Hfcache-Node"), resp.Header.Get("X-Hfcache-Source"))
		}
		if n.Name != owner && resp.Header.Get("X-Hfcache-Via") != n.Name {
			t.Fatalf("via %s: X-Hfcache-Via %q", n.Name, resp.Header.Get("X-Hfcache-Via"))
		}
	}
	// A large blob through a non-owner (spliced socket to socket): whole,
	// ranged, and conditional, exactly as the owner answers.
	big := hub.Bytes(hf.Model, modelID, "main", "big.bin")
	for _, n := range c.Nodes {
		resp, body := Get(t, fileURL(n, "big.bin"), nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, big) {
			t.Fatalf("big.bin via %s: %d, %d bytes", n.Name, resp.StatusCode, len(body))
		}
		resp, body = Get(t, fileURL(n, "big.bin"), http.Header{"Range": {"bytes=5000000-"}})
		if resp.StatusCode != 206 || !bytes.Equal(body, big[5000000:]) || resp.Header.Get("Content-Range") != "bytes 5000000-8388607/8388608" {
			t.Fatalf("big.bin range via %s: %d %q", n.Name, resp.StatusCode, resp.Header.Get("Content-Range"))
		}
		resp, _ = Get(t, fileURL(n, "big.bin"), http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
		if resp.StatusCode != 304 {
			t.Fatalf("big.bin If-None-Match via %s: %d", n.Name, resp.StatusCode)
		}
	}
}

// A crashed owner is skipped: the next node in preference order serves,
// filling from the Hub, and the cluster notices the death.
func TestCrashedOwnerIsSkipped(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	resp, _ := Get(t, fileURL(c.Nodes[0], "small.bin"), nil)
	owner := resp.Header.Get("X-Hfcache-Node")
	var victim, other *Node
	for _, n := range c.Nodes {
		if n.Name == owner {
			victim = n
		} else {
			other = n
		}
	}
	c.Crash(victim)
	want := hub.Bytes(hf.Model, modelID, "main", "small.bin")
	resp, body := Get(t, fileURL(other, "small.bin"), nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("with the owner down: %d", resp.StatusCode)
	}
	Eventually(t, 20*time.Second, "the crash to be noticed", func() bool {
		for _, m := range other.Members.Members() {
			if m.Name == victim.Name {
				return m.State == "dead" || m.State == "suspect"
			}
		}
		return true
	})
	resp, body = Get(t, fileURL(other, "small.bin"), nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("after the crash was noticed: %d", resp.StatusCode)
	}
}

// A blob served often through a non-owner is kept there too.
func TestHotBlobIsCopiedToTheNonOwner(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL(), NodeConfig: func(nc *node.Config) { nc.HotThreshold = 3 }}, 2)
	resp, _ := Get(t, fileURL(c.Nodes[0], "small.bin"), nil)
	owner := resp.Header.Get("X-Hfcache-Node")
	nonOwner := c.Nodes[0]
	if owner == nonOwner.Name {
		nonOwner = c.Nodes[1]
	}
	for i := 0; i < 3; i++ {
		Get(t, fileURL(nonOwner, "small.bin"), nil)
	}
	id, _ := hf.NewBlobID(hf.SHA256, hub.FileInfo(hf.Model, modelID, "main", "small.bin").SHA256)
	Eventually(t, 10*time.Second, "a hot copy on "+nonOwner.Name, func() bool {
		_, ok := nonOwner.Store.Stat(id)
		return ok
	})
	resp, _ = Get(t, fileURL(nonOwner, "small.bin"), nil)
	if resp.Header.Get("X-Hfcache-Node") != nonOwner.Name || resp.Header.Get("X-Hfcache-Source") != "disk" {
		t.Fatalf("hot blob served by %q from %q", resp.Header.Get("X-Hfcache-Node"), resp.Header.Get("X-Hfcache-Source"))
	}
	if n := hub.Stats().BodyFetches(id.Hex); n != 1 {
		t.Fatalf("the hot copy came from the Hub: %d fetches", n)
	}
	if nonOwner.Node.Owns(id) {
		t.Fatal("the hot copy's node claims to own it")
	}
}

// Metadata lookups go through the repository's owner, so one Hub request
// per TTL serves the whole cluster.
func TestMetadataSingleFlightOnRepoOwner(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	for _, n := range c.Nodes {
		resp, body := Get(t, n.URL+"/api/models/"+modelID+"/revision/main", nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"sha"`) {
			t.Fatalf("info via %s: %d", n.Name, resp.StatusCode)
		}
		resp, _ = Get(t, fileURL(n, "config.json"), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("config via %s: %d", n.Name, resp.StatusCode)
		}
	}
	st := hub.Stats()
	if n := st.Requests(http.MethodGet, "/api/models/"+modelID+"/revision/main"); n != 1 {
		t.Errorf("%d upstream info requests for 3 nodes, want 1", n)
	}
	if n := st.Requests(http.MethodHead, "/"+modelID+"/resolve/"); n != 1 {
		t.Errorf("%d upstream HEADs for 3 nodes, want 1", n)
	}
}

// A gated repository through every node: the caller's token travels to the
// owners sealed, the Hub's answer comes back, and refusals stay refusals.
func TestGatedThroughPeers(t *testing.T) {
	hub := startHub(t)
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "acme/gated", Gated: "manual", Files: []fakehub.File{
		{Path: "model.safetensors", Size: 2 << 20, Seed: 11, LFS: true},
	}})
	hub.AddToken("hf_ok", "alice")
	hub.AddToken("hf_no", "mallory")
	hub.Grant("hf_ok", hf.Model, "acme/gated")
	c := New(t, Options{Upstream: hub.URL()}, 3)
	want := hub.Bytes(hf.Model, "acme/gated", "main", "model.safetensors")
	for _, n := range c.Nodes {
		u := n.URL + hf.Repo{Type: hf.Model, ID: "acme/gated"}.FilePath("resolve", "main", "model.safetensors")
		resp, body := Get(t, u, http.Header{"Authorization": {"Bearer hf_ok"}})
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("approved via %s: %d", n.Name, resp.StatusCode)
		}
		for tok, status := range map[string]int{"": 401, "hf_no": 403} {
			hdr := http.Header{}
			if tok != "" {
				hdr.Set("Authorization", "Bearer "+tok)
			}
			resp, _ := Get(t, u, hdr)
			if resp.StatusCode != status || resp.Header.Get("X-Error-Code") != "GatedRepo" {
				t.Fatalf("token %q via %s: %d %q", tok, n.Name, resp.StatusCode, resp.Header.Get("X-Error-Code"))
			}
		}
	}
}

// A cold blob that turns hot at a non-owner while its owner is still
// filling it is not fetched from the Hub a second time: hot copies come only
// from peers that hold the blob.
func TestHotDuringColdFillStaysOneFetch(t *testing.T) {
	hub := startHub(t)
	c := New(t, Options{Upstream: hub.URL(), NodeConfig: func(nc *node.Config) { nc.HotThreshold = 2 }}, 3)
	hub.SetThrottle(16<<20, 0)
	want := hub.Bytes(hf.Model, modelID, "main", "big.bin")
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(n *Node) {
			defer wg.Done()
			resp, err := http.Get(fileURL(n, "big.bin"))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("via %s: bytes differ (%v)", n.Name, err)
			}
		}(c.Nodes[i%3])
	}
	wg.Wait()
	hub.SetThrottle(0, 0)
	addr := hub.FileInfo(hf.Model, modelID, "main", "big.bin").Addr()
	if sent := hub.Stats().BodyBytes(addr); sent != bigSize {
		t.Fatalf("the Hub sent %d bytes of an %d-byte blob: hot copies went upstream", sent, bigSize)
	}
	// Once the owner holds it, the hot copies do arrive (from the owner).
	for i := 0; i < 6; i++ {
		Get(t, fileURL(c.Nodes[i%3], "big.bin"), nil)
	}
	id, _ := hf.BlobIDFromETag(addr)
	Eventually(t, 10*time.Second, "a hot copy on a non-owner", func() bool {
		held := 0
		for _, n := range c.Nodes {
			if _, ok := n.Store.Stat(id); ok {
				held++
			}
		}
		return held >= 2
	})
	if sent := hub.Stats().BodyBytes(addr); sent != bigSize {
		t.Fatalf("the Hub sent %d bytes after the hot copies", sent)
	}
}
