package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/test/fakehub"
	"github.com/hfcache/hfcache/test/xetclient"
)

const xetRepo = "acme/xet-model"

// xetHub serves a Xet-backed model whose files span several small xorbs:
// a.bin (compressible: None, LZ4 and BG4 chunks), b.bin sharing a.bin's
// first 1 MiB, c.bin on its own (for corruption).
func xetHub(t *testing.T) *fakehub.Hub {
	t.Helper()
	h := fakehub.New()
	h.SetXorbLimit(1 << 20)
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: xetRepo, Files: []fakehub.File{
		{Path: "a.bin", Size: 3<<20 + 12345, Seed: 21, Xet: true, Compressible: true},
		{Path: "b.bin", Size: 2<<20 + 777, Seed: 22, PrefixLen: 1 << 20, PrefixSeed: 21, Xet: true, Compressible: true},
		{Path: "c.bin", Size: 2 << 20, Seed: 23, Xet: true},
		{Path: "plain.bin", Size: 1 << 20, Seed: 24, LFS: true},
	}})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func xetURL(n *Node, p string) string {
	return n.URL + hf.Repo{Type: hf.Model, ID: xetRepo}.FilePath("resolve", "main", hf.Path(p))
}

// refetched fails the test if the Hub served any xorb byte twice.
func refetched(t *testing.T, hub *fakehub.Hub) {
	t.Helper()
	if n := hub.Stats().XorbRefetchedBytes(""); n != 0 {
		for k, v := range hub.Stats().XorbRangeFetches() {
			t.Logf("%+v: %d", k, v)
		}
		t.Fatalf("%d xorb bytes fetched from the Hub more than once", n)
	}
}

// Xet clients (v2 multi-range as hf.js, v1 one range per request as
// hf_xet) download through any node of a cluster; every xorb byte is
// fetched from the Hub once for the cluster, and a plain GET of the same
// file is then assembled from the chunks without fetching the file.
func TestXetThroughCluster(t *testing.T) {
	hub := xetHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	ctx := context.Background()
	want := hub.Bytes(hf.Model, xetRepo, "main", "a.bin")

	v2 := &xetclient.Client{Version: 2, MultiRange: true}
	got, err := v2.Download(ctx, xetURL(c.Nodes[0], "a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("v2 download: %d bytes, differ from the file's %d", len(got), len(want))
	}
	v1 := &xetclient.Client{Version: 1}
	for _, n := range c.Nodes[1:] {
		got, err := v1.Download(ctx, xetURL(n, "a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("v1 download via %s differs", n.Name)
		}
	}
	refetched(t, hub)

	// A range of the file: the reconstruction is cut at term granularity
	// with offset_into_first_range.
	part, err := v2.DownloadRange(ctx, xetURL(c.Nodes[2], "a.bin"), 1<<20+5, 2<<20+7)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, want[1<<20+5:2<<20+8]) {
		t.Fatalf("ranged download differs")
	}

	// Plain HTTP of the same file: from the chunks, not from the Hub.
	fi := hub.FileInfo(hf.Model, xetRepo, "main", "a.bin")
	resp, body := Get(t, xetURL(c.Nodes[1], "a.bin"), nil)
	if resp.StatusCode != http.StatusOK || sha(body) != fi.SHA256 {
		t.Fatalf("plain GET: %d, sha256 %s, want %s", resp.StatusCode, sha(body), fi.SHA256)
	}
	if n := hub.Stats().BodyFetches(fi.SHA256); n != 0 {
		t.Errorf("plain GET fetched the file from the Hub %d times; want it assembled from held chunks", n)
	}
	refetched(t, hub)

	// The cluster's metrics: one verified file, every xorb byte the Hub
	// served stored once, one upstream reconstruction.
	verified, failed, filled, recons := xetMetrics(t, c)
	if verified < 1 || failed != 0 || filled != float64(hub.Stats().XorbBytesServed("")) || recons != 1 {
		t.Errorf("metrics: %v files verified, %v failed, %v chunk bytes filled (the Hub served %d), %v upstream reconstructions",
			verified, failed, filled, hub.Stats().XorbBytesServed(""), recons)
	}
}

// xetMetrics sums the Xet series over the cluster's nodes.
func xetMetrics(t *testing.T, c *Cluster) (verified, failed, filled, recons float64) {
	t.Helper()
	for _, n := range c.Nodes {
		verified += gather(t, n.Metrics, "hfcache_xet_files_checked_total", map[string]string{"result": "verified"})
		failed += gather(t, n.Metrics, "hfcache_xet_files_checked_total", map[string]string{"result": "failed"})
		filled += gather(t, n.Metrics, "hfcache_xet_chunk_bytes_filled_total", nil)
		recons += gather(t, n.Metrics, "hfcache_xet_upstream_reconstructions_total", nil)
	}
	return
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Sixteen concurrent Xet downloads of one cold file across the cluster
// fetch each xorb range from the Hub once.
func TestXetConcurrentDownloadsFetchOnce(t *testing.T) {
	hub := xetHub(t)
	hub.SetThrottle(16<<20, 0)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	want := hub.Bytes(hf.Model, xetRepo, "main", "a.bin")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl := &xetclient.Client{Version: 1 + i%2, MultiRange: i%4 < 2}
			got, err := cl.Download(context.Background(), xetURL(c.Nodes[i%3], "a.bin"))
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("client %d: bytes differ", i)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	refetched(t, hub)
}

// A file sharing chunks with one already downloaded fetches only its new
// chunks from the Hub.
func TestXetSharedChunksFetchedOnce(t *testing.T) {
	hub := xetHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	cl := &xetclient.Client{Version: 2, MultiRange: true}
	for i, p := range []string{"a.bin", "b.bin"} {
		got, err := cl.Download(context.Background(), xetURL(c.Nodes[i], p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, hub.Bytes(hf.Model, xetRepo, "main", p)) {
			t.Fatalf("%s differs", p)
		}
	}
	shared := 0
	a := hub.XetChunks(hub.FileInfo(hf.Model, xetRepo, "main", "a.bin").XetHash)
	for _, tb := range hub.XetChunks(hub.FileInfo(hf.Model, xetRepo, "main", "b.bin").XetHash) {
		for _, ta := range a {
			if ta.Xorb == tb.Xorb {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Fatal("fixture: b.bin shares no xorb with a.bin")
	}
	refetched(t, hub)
}

// An upstream xorb with wrong bytes (valid framing) is never served as the
// file: the download fails, and a later download after the Hub is fixed
// succeeds.
func TestXetCorruptXorbIsNeverServed(t *testing.T) {
	hub := xetHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	fi := hub.FileInfo(hf.Model, xetRepo, "main", "c.bin")
	terms := hub.XetChunks(fi.XetHash)
	bad := terms[len(terms)/2].Xorb
	hub.SetXorbCorruption(bad, true)
	cl := &xetclient.Client{Version: 2, MultiRange: true}
	want := hub.Bytes(hf.Model, xetRepo, "main", "c.bin")
	for _, n := range c.Nodes {
		got, err := cl.Download(context.Background(), xetURL(n, "c.bin"))
		if err == nil {
			t.Fatalf("download via %s succeeded with a corrupt xorb (bytes equal: %v)", n.Name, bytes.Equal(got, want))
		}
		t.Logf("via %s: %v", n.Name, err)
	}
	if _, failed, _, _ := xetMetrics(t, c); failed < 1 {
		t.Errorf("hfcache_xet_files_checked_total{result=failed} = %v after a corrupt fill", failed)
	}
	// A plain GET is not assembled from unverified chunks either.
	resp, body := Get(t, xetURL(c.Nodes[0], "c.bin"), nil)
	if resp.StatusCode == http.StatusOK && sha(body) != fi.SHA256 {
		t.Fatalf("plain GET served wrong bytes")
	}
	hub.SetXorbCorruption(bad, false)
	got, err := cl.Download(context.Background(), xetURL(c.Nodes[1], "c.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after the Hub was fixed: %v", err)
	}
}

// Tokens the cache issues expire; a client with an expired token gets 401
// and a new token works. The token route's headers carry what its JSON
// does.
func TestXetTokenExpiry(t *testing.T) {
	hub := xetHub(t)
	c := New(t, Options{Upstream: hub.URL(), NodeConfig: func(nc *node.Config) { nc.XetTokenTTL = 2 * time.Second }}, 1)
	cl := &xetclient.Client{Version: 2}
	ctx := context.Background()
	info, err := cl.Info(ctx, xetURL(c.Nodes[0], "a.bin"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cl.XetToken(ctx, info.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	if tok.HeaderToken != tok.AccessToken || tok.HeaderExp != fmt.Sprint(tok.Exp) || tok.HeaderCAS != tok.CASURL || tok.CASURL != c.Nodes[0].URL {
		t.Fatalf("token route: JSON %+v disagrees with its headers", tok)
	}
	if _, err := cl.Reconstruction(ctx, info.ReconURL, tok.AccessToken, 0, -1); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "token expiry", func() bool { return time.Now().Unix() >= tok.Exp })
	_, err = cl.Reconstruction(ctx, info.ReconURL, tok.AccessToken, 0, -1)
	if se, ok := err.(*xetclient.StatusError); !ok || se.Status != http.StatusUnauthorized {
		t.Fatalf("expired token: %v, want 401", err)
	}
	fresh, err := cl.XetToken(ctx, info.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cl.Reconstruction(ctx, info.ReconURL, fresh.AccessToken, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.Assemble(ctx, rec)
	if err != nil || !bytes.Equal(got, hub.Bytes(hf.Model, xetRepo, "main", "a.bin")) {
		t.Fatalf("download with a fresh token: %v", err)
	}
	// Past the end of the file: 416.
	_, err = cl.Reconstruction(ctx, info.ReconURL, fresh.AccessToken, info.Size, -1)
	if se, ok := err.(*xetclient.StatusError); !ok || se.Status != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %v, want 416", err)
	}
}

// With the Hub down, a Xet file the cluster holds still downloads over Xet
// (token, reconstruction and xorbs from the cache); one it does not hold
// fails cleanly.
func TestXetServedWhileHubIsDown(t *testing.T) {
	hub := xetHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	cl := &xetclient.Client{Version: 2, MultiRange: true}
	ctx := context.Background()
	want := hub.Bytes(hf.Model, xetRepo, "main", "a.bin")
	if _, err := cl.Download(ctx, xetURL(c.Nodes[0], "a.bin")); err != nil {
		t.Fatal(err)
	}
	hub.Close()
	for _, n := range c.Nodes {
		got, err := cl.Download(ctx, xetURL(n, "a.bin"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("via %s with the Hub down: %v", n.Name, err)
		}
	}
	if _, err := cl.Download(ctx, xetURL(c.Nodes[1], "c.bin")); err == nil {
		t.Fatal("an uncached Xet file downloaded with the Hub down")
	}
}

// A CAS that signs exact ranges (refusing parts of them) still fills: the
// owner asks for the whole signed range when a part is refused — here, a
// chunk in the middle of a range that went missing (dropped) since.
func TestXetExactRangeUpstream(t *testing.T) {
	hub := xetHub(t)
	hub.SetXorbExactRanges(true)
	c := New(t, Options{Upstream: hub.URL()}, 1)
	cl := &xetclient.Client{Version: 2, MultiRange: true}
	want := hub.Bytes(hf.Model, xetRepo, "main", "a.bin")
	for i := 0; i < 2; i++ {
		got, err := cl.Download(context.Background(), xetURL(c.Nodes[0], "a.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("a.bin differs")
		}
		if i == 0 {
			term := hub.XetChunks(hub.FileInfo(hf.Model, xetRepo, "main", "a.bin").XetHash)[0]
			if term.End-term.Start < 3 {
				t.Fatalf("fixture: first term has %d chunks", term.End-term.Start)
			}
			if err := c.Nodes[0].Store.DropXorbChunks(term.Xorb, []uint32{term.Start + 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if hub.Stats().XorbRefetchedBytes("") == 0 {
		t.Fatal("the dropped chunk was not fetched again")
	}
}

// Upstream xorb URLs that expired are refreshed by asking the Hub's CAS
// for the reconstruction again, and the upstream Xet token is renewed when
// the Hub's CAS refuses it.
func TestXetUpstreamURLsAndTokensExpire(t *testing.T) {
	hub := xetHub(t)
	hub.SetXetURLTTL(time.Second)
	hub.SetXetTokenTTL(2 * time.Second)
	c := New(t, Options{Upstream: hub.URL()}, 1)
	cl := &xetclient.Client{Version: 2, MultiRange: true}
	want := hub.Bytes(hf.Model, xetRepo, "main", "a.bin")
	fileHash := hub.FileInfo(hf.Model, xetRepo, "main", "a.bin").XetHash
	if got, err := cl.Download(context.Background(), xetURL(c.Nodes[0], "a.bin")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("first download: %v", err)
	}
	recons := hub.Stats().Reconstructions[fileHash]
	term := hub.XetChunks(fileHash)[0]
	if err := c.Nodes[0].Store.DropXorbChunks(term.Xorb, []uint32{term.Start}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	Eventually(t, 10*time.Second, "upstream URLs and token expire", func() bool { return time.Since(start) > 2500*time.Millisecond })
	if got, err := cl.Download(context.Background(), xetURL(c.Nodes[0], "a.bin")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("download after the upstream URLs expired: %v", err)
	}
	if n := hub.Stats().Reconstructions[fileHash]; n <= recons {
		t.Fatalf("%d upstream reconstructions after the URLs expired, as many as before (%d): the URLs were not refreshed", n, recons)
	}
}

// An upstream CAS without v2 reconstructions: the cache asks v1 and serves
// clients v1 and v2 all the same.
func TestXetUpstreamWithoutV2(t *testing.T) {
	hub := xetHub(t)
	hub.SetXetV2(false)
	c := New(t, Options{Upstream: hub.URL()}, 2)
	for i, cl := range []*xetclient.Client{{Version: 2, MultiRange: true}, {Version: 1}} {
		got, err := cl.Download(context.Background(), xetURL(c.Nodes[i], "b.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, hub.Bytes(hf.Model, xetRepo, "main", "b.bin")) {
			t.Fatalf("v%d client: bytes differ", cl.Version)
		}
	}
	refetched(t, hub)
}

// A warm job over a Xet repository fills the Xet files' chunks, once for
// the cluster: Xet clients and plain GETs afterwards fetch no file byte
// from the Hub, and a second job finds everything held.
func TestXetWarmJob(t *testing.T) {
	hub := xetHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 3)
	admin := adminFor(t, c.Nodes[0])
	runJob := func() node.Job {
		status, raw := postJSON(t, admin+"/v1/jobs", `{"repo":"`+xetRepo+`","revision":"main"}`)
		var job node.Job
		if status != http.StatusCreated || json.Unmarshal(raw, &job) != nil {
			t.Fatalf("POST /v1/jobs: %d %s", status, raw)
		}
		Eventually(t, 30*time.Second, "the job finished", func() bool {
			_, body := Get(t, admin+"/v1/jobs/"+job.ID, nil)
			json.Unmarshal(body, &job)
			return job.State != node.JobRunning
		})
		if job.State != node.JobDone || job.Files.Failed != 0 {
			t.Fatalf("job: %+v", job)
		}
		return job
	}
	runJob()
	if n := hub.Stats().XorbBytesServed(""); n == 0 {
		t.Fatal("the job fetched no xorb: Xet files were not warmed as chunks")
	}
	served := hub.Stats().XorbBytesServed("")
	for _, p := range []string{"a.bin", "b.bin", "c.bin"} {
		fi := hub.FileInfo(hf.Model, xetRepo, "main", p)
		if n := hub.Stats().BodyFetches(fi.SHA256); n != 0 {
			t.Errorf("%s: the job fetched the file itself %d times besides its chunks", p, n)
		}
		got, err := (&xetclient.Client{Version: 2, MultiRange: true}).Download(context.Background(), xetURL(c.Nodes[2], p))
		if err != nil || !bytes.Equal(got, hub.Bytes(hf.Model, xetRepo, "main", p)) {
			t.Fatalf("Xet download of %s after the job: %v", p, err)
		}
		resp, body := Get(t, xetURL(c.Nodes[1], p), nil)
		if resp.StatusCode != http.StatusOK || sha(body) != fi.SHA256 || hub.Stats().BodyFetches(fi.SHA256) != 0 {
			t.Fatalf("plain GET of %s after the job: %d, %d body fetches", p, resp.StatusCode, hub.Stats().BodyFetches(fi.SHA256))
		}
	}
	if n := hub.Stats().XorbBytesServed(""); n != served {
		t.Fatalf("downloads after the job fetched %d more xorb bytes", n-served)
	}
	if job := runJob(); job.Files.Cached != job.Files.Total {
		t.Fatalf("second job: %+v", job)
	}
	refetched(t, hub)
}

// A node joining the cluster takes over some xorbs: it copies their
// chunks from the nodes that held them, not from the Hub.
func TestXetNewNodeCopiesChunks(t *testing.T) {
	hub := xetHub(t)
	c := New(t, Options{Upstream: hub.URL()}, 2)
	cl := &xetclient.Client{Version: 2, MultiRange: true}
	for _, p := range []string{"a.bin", "b.bin", "c.bin"} {
		if _, err := cl.Download(context.Background(), xetURL(c.Nodes[0], p)); err != nil {
			t.Fatal(err)
		}
	}
	served := hub.Stats().XorbBytesServed("")
	c.Add()
	c.Add()
	c.WaitMembers(4)
	for _, n := range c.Nodes {
		for _, p := range []string{"a.bin", "b.bin", "c.bin"} {
			got, err := cl.Download(context.Background(), xetURL(n, p))
			if err != nil || !bytes.Equal(got, hub.Bytes(hf.Model, xetRepo, "main", p)) {
				t.Fatalf("%s via %s after the cluster grew: %v", p, n.Name, err)
			}
		}
	}
	if n := hub.Stats().XorbBytesServed(""); n != served {
		t.Fatalf("the grown cluster fetched %d more xorb bytes from the Hub", n-served)
	}
	moved := 0
	for _, n := range c.Nodes[2:] {
		st := n.Store.Stats()
		moved += st.Xorbs
	}
	if moved == 0 {
		t.Fatal("no xorb moved to the new nodes: the test proves nothing")
	}
}
