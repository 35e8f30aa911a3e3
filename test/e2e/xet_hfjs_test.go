package e2e

// The real @huggingface/hub (test/js, XetBlob since 2.9) downloading
// Xet-backed files through hfcache: a single node, a 3-node process cluster
// behind the balancer, token expiry, gated repositories, wrong upstream
// bytes. The client's fetch is wrapped so the tests see every request it
// made; the fake Hub's counters show what the cache fetched upstream.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
	"github.com/hfcache/hfcache/test/xetclient"
)

const (
	xetModelID = "acme/xet-js-model"
	xetGatedID = "acme/xet-js-gated"
)

// xetJSHub is a fake Hub with the standard fixtures plus a Xet model whose
// files span several 1 MiB xorbs of compressible content (None, LZ4 and
// BG4 chunks): a.bin; b.bin sharing a.bin's first 1 MiB; c.bin and d.bin on
// their own; an LFS file and a regular one. And a gated Xet model that only
// goodToken may read.
func xetJSHub(t *testing.T) *fakehub.Hub {
	t.Helper()
	h := fakehub.New()
	addFixtures(h)
	h.SetXorbLimit(1 << 20)
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: xetModelID, Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"xet": true}` + "\n")},
		{Path: "a.bin", Size: 3<<20 + 12345, Seed: 31, Xet: true, Compressible: true},
		{Path: "b.bin", Size: 2<<20 + 777, Seed: 32, PrefixLen: 1 << 20, PrefixSeed: 31, Xet: true, Compressible: true},
		{Path: "c.bin", Size: 2<<20 + 99, Seed: 33, Xet: true, Compressible: true},
		{Path: "d.bin", Size: 2<<20 + 5, Seed: 34, Xet: true, Compressible: true},
		{Path: "plain.bin", Size: 300_000, Seed: 35, LFS: true},
	}})
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: xetGatedID, Gated: "manual", Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"gated": "xet"}`)},
		{Path: "g.bin", Size: 1<<20 + 4321, Seed: 36, Xet: true, Compressible: true},
	}})
	h.Grant(goodToken, hf.Model, xetGatedID)
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	// The fixture must exercise what the tests claim.
	for _, p := range []string{"a.bin", "b.bin", "c.bin", "d.bin"} {
		fi := h.FileInfo(hf.Model, xetModelID, "main", p)
		xorbs := map[string]bool{}
		for _, tm := range h.XetChunks(fi.XetHash) {
			xorbs[tm.Xorb] = true
		}
		if !fi.Xet || len(xorbs) < 2 {
			t.Fatalf("fixture: %s is Xet %v over %d xorbs, want several", p, fi.Xet, len(xorbs))
		}
	}
	return h
}

// xetPlan downloads files of the Xet model (in Xet mode unless noXet).
func xetRepo(noXet bool, steps []string, files ...string) jsPlanRepo {
	return jsPlanRepo{Type: "model", Name: xetModelID, Revision: "main", Steps: steps, Files: files, NoXet: noXet}
}

// checkDownloads compares every file a repo entry downloaded (downloadFile,
// each parallel call, snapshotDownload, downloadFileToCacheDir) with the
// fake Hub's bytes.
func checkDownloads(t *testing.T, hub *fakehub.Hub, res jsResult, i int, id string) {
	t.Helper()
	r := res.Repos[i]
	if r.Err != nil {
		t.Fatalf("repo entry %d: %+v", i, *r.Err)
	}
	for p, path := range r.Download {
		want := hub.Bytes(hf.Model, id, "main", p)
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("entry %d: downloadFile %s: %d bytes differ from the Hub's %d (%v)", i, p, len(got), len(want), err)
		}
		for j, s := range r.DownloadSha[p] {
			if s != sha(want) {
				t.Errorf("entry %d: parallel downloadFile %d of %s: sha256 %s, want %s", i, j, p, s, sha(want))
			}
		}
	}
	for p, path := range r.ToCacheDir {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, hub.Bytes(hf.Model, id, "main", p)) {
			t.Errorf("entry %d: downloadFileToCacheDir %s differs (%v)", i, p, err)
		}
	}
	if r.Snapshot != "" {
		for _, p := range hubFiles(t, hub, hf.Model, id) {
			if got, err := os.ReadFile(filepath.Join(r.Snapshot, p)); err != nil || !bytes.Equal(got, hub.Bytes(hf.Model, id, "main", p)) {
				t.Errorf("entry %d: snapshotDownload %s differs (%v)", i, p, err)
			}
		}
	}
}

// xetRequests sorts the client's requests of one repo entry (-1: all) by
// Xet route: token route, reconstructions (by hash), xorb ranges. Every
// request must have gone to base, and none of the Xet ones may have failed.
type xetRequests struct {
	tokens  []jsFetch
	recons  map[string]int // file hash → reconstruction requests
	xorbs   int
	resolve int
	all     []jsFetch
}

func xetTraffic(t *testing.T, res jsResult, entry int, base string) xetRequests {
	t.Helper()
	x := xetRequests{recons: map[string]int{}}
	for _, f := range res.Fetches {
		if entry >= 0 && f.Repo != entry {
			continue
		}
		x.all = append(x.all, f)
		if !strings.HasPrefix(f.URL, base+"/") {
			t.Errorf("the client requested %s, not on the cache %s", f.URL, base)
		}
		xetRoute := true
		switch {
		case strings.Contains(f.URL, "/xet-read-token/"):
			x.tokens = append(x.tokens, f)
		case strings.Contains(f.URL, "/reconstructions/") || strings.Contains(f.URL, "/reconstruction/"):
			x.recons[f.URL[strings.LastIndexByte(f.URL, '/')+1:]]++
		case strings.Contains(f.URL, "/xet/xorb/"):
			x.xorbs++
		default:
			xetRoute = false
			if strings.Contains(f.URL, "/resolve/") {
				x.resolve++
			}
		}
		if xetRoute && (f.Status != http.StatusOK && f.Status != http.StatusPartialContent) {
			t.Errorf("%s %s: status %d %s", f.Method, f.URL, f.Status, f.Error)
		}
	}
	return x
}

func (x xetRequests) xet() bool { return len(x.tokens)+len(x.recons)+x.xorbs > 0 }

// checkXetTaken: the entry's downloads of these files went over Xet (a v2
// reconstruction per file, xorb ranges) to the cache, with a token from the
// cache's token route (asked in this entry or an earlier one: the client
// keeps a token in a process-wide cache until a minute before its exp).
func checkXetTaken(t *testing.T, hub *fakehub.Hub, res jsResult, entry int, base string, files ...string) {
	t.Helper()
	x := xetTraffic(t, res, entry, base)
	tokens := 0
	for _, f := range res.Fetches {
		if f.Repo <= entry && strings.Contains(f.URL, "/xet-read-token/") && f.Status == http.StatusOK {
			tokens++
		}
	}
	if tokens == 0 || x.xorbs == 0 {
		t.Errorf("entry %d: %d token requests so far, %d xorb requests: Xet not used", entry, tokens, x.xorbs)
	}
	for _, p := range files {
		h := hub.FileInfo(hf.Model, xetModelID, "main", p).XetHash
		if x.recons[h] == 0 {
			t.Errorf("entry %d: no reconstruction of %s (%s) requested: %v", entry, p, h, x.recons)
		}
	}
}

// checkXetNotTaken: the entry's downloads never touched a Xet route.
func checkXetNotTaken(t *testing.T, res jsResult, entry int, base string) {
	t.Helper()
	x := xetTraffic(t, res, entry, base)
	if x.xet() || x.resolve == 0 {
		t.Errorf("entry %d with xet:false: %d token, %v reconstruction, %d xorb, %d resolve requests", entry, len(x.tokens), x.recons, x.xorbs, x.resolve)
	}
}

// TestXetJSSingleNode: @huggingface/hub through one hfcache process. In its
// default mode downloadFile of Xet files spanning several xorbs uses the
// cache's token route, v2 reconstructions and xorb ranges, and every byte
// is right; with xet: false it uses plain GETs only; snapshotDownload and
// downloadFileToCacheDir of the whole Xet repo in default mode are right.
func TestXetJSSingleNode(t *testing.T) {
	hub := xetJSHub(t)
	p := startProc(t, hub.URL(), t.TempDir())
	res := runJS(t, jsPlan{HubURL: p.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
		xetRepo(false, []string{"downloadInfo", "download"}, "a.bin", "b.bin"),
		xetRepo(true, []string{"download"}, "d.bin", "plain.bin"),
		xetRepo(false, []string{"snapshot"}),
		xetRepo(false, []string{"toCacheDir"}, "c.bin"),
	}})
	for i := range res.Repos {
		checkDownloads(t, hub, res, i, xetModelID)
	}
	for _, f := range []string{"a.bin", "b.bin"} {
		if di := res.Repos[0].DownloadInfo[f]; di == nil || di.Xet == nil {
			t.Errorf("fileDownloadInfo %s: %+v, want Xet info", f, di)
		}
	}
	checkXetTaken(t, hub, res, 0, p.URL, "a.bin", "b.bin")
	checkXetNotTaken(t, res, 1, p.URL)
	checkXetTaken(t, hub, res, 2, p.URL, "a.bin", "b.bin", "c.bin", "d.bin")
	// downloadFileToCacheDir in another cache dir would download again; in
	// the snapshot's it finds the blob. Either way the bytes were checked.
	st := hub.Stats()
	for _, f := range []string{"a.bin", "b.bin", "c.bin"} {
		if h := hub.FileInfo(hf.Model, xetModelID, "main", f).XetHash; st.Reconstructions[h] == 0 {
			t.Errorf("%s: the cache never asked the Hub's CAS for its reconstruction", f)
		}
	}
	if st.XorbRefetchedBytes("") != 0 {
		t.Errorf("%d xorb bytes fetched from the Hub twice through one node", st.XorbRefetchedBytes(""))
	}
	t.Logf("hub: %d reconstructions %v, %d xorb fetches, %d xet tokens", len(st.Reconstructions), st.Reconstructions, len(st.XorbFetches), st.XetTokens)
}

// startXetCluster starts three hfcache processes behind the balancer.
func startXetCluster(t *testing.T, hub *fakehub.Hub) *balancer {
	t.Helper()
	n1 := startClusterNode(t, hub, 1, "")
	n2 := startClusterNode(t, hub, 2, n1.Gossip)
	n3 := startClusterNode(t, hub, 3, n1.Gossip)
	waitMembers(t, 3, n1, n2, n3)
	return newBalancer(t, n1.URL, n2.URL, n3.URL)
}

// refetchedNone fails if the Hub served any xorb byte twice.
func refetchedNone(t *testing.T, hub *fakehub.Hub, what string) {
	t.Helper()
	st := hub.Stats()
	if n := st.XorbRefetchedBytes(""); n != 0 {
		for k, v := range st.XorbRangeFetches() {
			if v > 1 {
				t.Logf("%+v fetched %d times", k, v)
			}
		}
		t.Fatalf("%s: %d xorb bytes fetched from the Hub more than once", what, n)
	}
}

// TestXetJSCluster: @huggingface/hub through three hfcache processes behind
// a round-robin balancer (every request of one download may land on a
// different node).
//   - 16 parallel Xet downloads of one cold file in one client: every byte
//     right, each xorb range fetched from the Hub once for the cluster.
//   - then a file sharing a.bin's first MiB: its shared chunks are not
//     fetched again (XorbRefetchedBytes stays 0).
//   - xet: false downloads a Xet file and an LFS file with plain GETs only.
//   - snapshotDownload of the Xet repo in default mode: every byte right,
//     still no xorb byte fetched twice.
func TestXetJSCluster(t *testing.T) {
	hub := xetJSHub(t)
	hub.SetThrottle(32<<20, 0) // let the 16 downloads overlap
	lb := startXetCluster(t, hub)

	t.Run("16 concurrent cold", func(t *testing.T) {
		res := runJS(t, jsPlan{HubURL: lb.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
			func() jsPlanRepo { r := xetRepo(false, []string{"download"}, "a.bin"); r.Parallel = 16; return r }(),
		}})
		checkDownloads(t, hub, res, 0, xetModelID)
		if n := len(res.Repos[0].DownloadSha["a.bin"]); n != 16 {
			t.Fatalf("%d downloads, want 16", n)
		}
		checkXetTaken(t, hub, res, 0, lb.URL, "a.bin")
		x := xetTraffic(t, res, 0, lb.URL)
		if h := hub.FileInfo(hf.Model, xetModelID, "main", "a.bin").XetHash; x.recons[h] < 16 {
			t.Errorf("%d reconstruction requests for 16 downloads", x.recons[h])
		}
		refetchedNone(t, hub, "16 concurrent downloads")
		t.Logf("balancer spread %v; hub xorb fetches %d", lb.spread(), len(hub.Stats().XorbFetches))
	})
	t.Run("dedup", func(t *testing.T) {
		before := hub.Stats().XorbBytesServed("")
		res := runJS(t, jsPlan{HubURL: lb.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
			xetRepo(false, []string{"download"}, "b.bin"),
		}})
		checkDownloads(t, hub, res, 0, xetModelID)
		checkXetTaken(t, hub, res, 0, lb.URL, "b.bin")
		// The fixture shares chunks (so the check below means something).
		shared := 0
		a := map[string]bool{}
		for _, tm := range hub.XetChunks(hub.FileInfo(hf.Model, xetModelID, "main", "a.bin").XetHash) {
			a[tm.Xorb] = true
		}
		for _, tm := range hub.XetChunks(hub.FileInfo(hf.Model, xetModelID, "main", "b.bin").XetHash) {
			if a[tm.Xorb] {
				shared++
			}
		}
		if shared == 0 {
			t.Fatal("fixture: b.bin shares no xorb with a.bin")
		}
		refetchedNone(t, hub, "b.bin after a.bin")
		t.Logf("b.bin (%d bytes, %d terms in a.bin's xorbs) cost %d xorb bytes upstream", hub.FileInfo(hf.Model, xetModelID, "main", "b.bin").Size, shared, hub.Stats().XorbBytesServed("")-before)
	})
	t.Run("xet false", func(t *testing.T) {
		res := runJS(t, jsPlan{HubURL: lb.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
			xetRepo(true, []string{"download"}, "d.bin", "plain.bin", "a.bin"),
		}})
		checkDownloads(t, hub, res, 0, xetModelID)
		checkXetNotTaken(t, res, 0, lb.URL)
	})
	t.Run("snapshot", func(t *testing.T) {
		res := runJS(t, jsPlan{HubURL: lb.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
			xetRepo(false, []string{"snapshot"}),
		}})
		checkDownloads(t, hub, res, 0, xetModelID)
		checkXetTaken(t, hub, res, 0, lb.URL, "a.bin", "b.bin", "c.bin", "d.bin")
		refetchedNone(t, hub, "snapshot")
	})
}

// TestXetJSTokenRefresh: a node issuing 3-second Xet tokens. One client
// process downloads, waits (polling the clock) past the exp of every token
// it was handed, and downloads the same file again with a fresh XetBlob:
// the second download succeeds, and the client asked the token route again
// for a token expiring later. From Go: the expired token is refused (401)
// on a reconstruction, and a fresh one works.
func TestXetJSTokenRefresh(t *testing.T) {
	hub := xetJSHub(t)
	p := startProc(t, hub.URL(), t.TempDir(), "--xet-token-ttl", "3s")
	wait := xetRepo(false, []string{"waitTokenExpiry", "download"}, "a.bin")
	res := runJS(t, jsPlan{HubURL: p.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
		xetRepo(false, []string{"download"}, "a.bin"),
		wait,
		xetRepo(false, []string{"download"}, "b.bin"),
	}})
	var firstExp int64
	for i := range res.Repos {
		checkDownloads(t, hub, res, i, xetModelID)
		x := xetTraffic(t, res, i, p.URL)
		if len(x.tokens) == 0 {
			t.Fatalf("entry %d: the client did not ask the token route", i)
		}
		for _, tk := range x.tokens {
			if tk.TokenExp == 0 || tk.TokenExp > time.Now().Add(time.Minute).Unix() {
				t.Errorf("entry %d: token exp %d, want about 3s after issue", i, tk.TokenExp)
			}
			if i == 0 && tk.TokenExp > firstExp {
				firstExp = tk.TokenExp
			}
			if i == 1 && tk.TokenExp <= firstExp {
				t.Errorf("after waiting past exp %d, the client got a token expiring at %d", firstExp, tk.TokenExp)
			}
		}
	}
	checkXetTaken(t, hub, res, 1, p.URL, "a.bin")

	// From Go: an expired token is refused; the refresh route gives a new one.
	ctx := context.Background()
	cl := &xetclient.Client{Version: 2}
	info, err := cl.Info(ctx, resolveURL(p.URL, hf.Model, xetModelID, "main", "c.bin"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cl.XetToken(ctx, info.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Reconstruction(ctx, info.ReconURL, tok.AccessToken, 0, -1); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	eventually(t, 10*time.Second, "the token's exp", func() bool { return time.Now().Unix() >= tok.Exp })
	for _, v := range []string{"/v1/", "/v2/"} {
		u := strings.Replace(info.ReconURL, "/v1/", v, 1)
		_, err = cl.Reconstruction(ctx, u, tok.AccessToken, 0, -1)
		if se, ok := err.(*xetclient.StatusError); !ok || se.Status != http.StatusUnauthorized {
			t.Fatalf("%s with an expired token: %v, want 401", u, err)
		}
	}
	fresh, err := cl.XetToken(ctx, info.TokenURL)
	if err != nil || fresh.Exp <= tok.Exp {
		t.Fatalf("refresh: %v %+v", err, fresh)
	}
	if _, err := cl.Reconstruction(ctx, info.ReconURL, fresh.AccessToken, 0, -1); err != nil {
		t.Fatalf("refreshed token: %v", err)
	}
}

// TestXetJSGated: a gated Xet repo through the cache. The token route and
// @huggingface/hub's Xet download answer as the Hub does for gated repos:
// 401 with no token, 403 for a valid user not granted access, 401 for an
// unknown token; the granted token downloads over Xet, every byte right.
// A cache token obtained for a public repo (anonymously, or even by the
// granted user) never reads the gated file's reconstruction, cold or warm.
func TestXetJSGated(t *testing.T) {
	hub := xetJSHub(t)
	p := startProc(t, hub.URL(), t.TempDir())
	tokenURL := p.URL + "/api/models/" + xetGatedID + "/xet-read-token/main"
	for _, c := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", 401, hf.CodeGatedRepo},
		{"not granted", otherToken, 403, hf.CodeGatedRepo},
		{"unknown token", "hf_not_a_token", 401, ""},
	} {
		hdr := map[string]string{}
		if c.token != "" {
			hdr["Authorization"] = "Bearer " + c.token
		}
		resp, body := do(t, http.MethodGet, tokenURL, hdr)
		if resp.StatusCode != c.status || (c.code != "" && resp.Header.Get(hf.HeaderErrorCode) != c.code) || resp.Header.Get(hf.HeaderXetAccessToken) != "" || bytes.Contains(body, []byte("accessToken")) {
			t.Errorf("token route, %s: %d %q %s, want %d %q", c.name, resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode), body, c.status, c.code)
		}
	}
	gated := func(token string, noToken bool) jsPlanRepo {
		return jsPlanRepo{Type: "model", Name: xetGatedID, Revision: "main", Steps: []string{"download"}, Files: []string{"g.bin"},
			AccessToken: token, NoToken: noToken, ExpectError: token != goodToken}
	}
	gfi := hub.FileInfo(hf.Model, xetGatedID, "main", "g.bin")

	// Cold: a public-repo cache token asks for the gated file's reconstruction.
	pubTok := func(hubToken string) string {
		cl := &xetclient.Client{HubToken: hubToken}
		tk, err := cl.XetToken(context.Background(), p.URL+"/api/models/"+xetModelID+"/xet-read-token/main")
		if err != nil {
			t.Fatal(err)
		}
		return tk.AccessToken
	}
	probe := func(when string) {
		for who, tk := range map[string]string{"anonymous": pubTok(""), "granted user": pubTok(goodToken)} {
			for _, v := range []string{"v1", "v2"} {
				resp, body := do(t, http.MethodGet, p.URL+"/"+v+"/reconstructions/"+gfi.XetHash, map[string]string{"Authorization": "Bearer " + tk})
				if (resp.StatusCode != 401 && resp.StatusCode != 403 && resp.StatusCode != 404) || bytes.Contains(body, []byte("terms")) {
					t.Errorf("%s: %s's public-repo token read the gated file's %s reconstruction: %d %.300s", when, who, v, resp.StatusCode, body)
				}
			}
		}
	}
	probe("cold")

	res := runJS(t, jsPlan{HubURL: p.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
		gated("", true),
		gated(otherToken, false),
		gated("hf_not_a_token", false),
		gated(goodToken, false),
	}})
	for i, want := range []int{401, 403, 401} {
		r := res.Repos[i]
		if r.Err == nil || r.Err.Status == nil || *r.Err.Status != want {
			t.Errorf("entry %d: JS download error %+v, want status %d", i, r.Err, want)
		}
		if len(r.Download) != 0 {
			t.Errorf("entry %d: downloaded %v", i, r.Download)
		}
		if x := xetTraffic(t, res, i, p.URL); len(x.recons) != 0 || x.xorbs != 0 {
			t.Errorf("entry %d: refused, yet reached reconstructions %v / %d xorb requests", i, x.recons, x.xorbs)
		}
	}
	r := res.Repos[3]
	if r.Err != nil {
		t.Fatalf("granted token: %+v", *r.Err)
	}
	got, err := os.ReadFile(r.Download["g.bin"])
	if err != nil || sha(got) != gfi.SHA256 {
		t.Fatalf("granted token: bytes differ (%v)", err)
	}
	x := xetTraffic(t, res, 3, p.URL)
	if x.recons[gfi.XetHash] == 0 || x.xorbs == 0 {
		t.Errorf("granted download did not go over Xet: %v, %d xorb requests", x.recons, x.xorbs)
	}
	// Warm: the cache now holds the gated file's reconstruction and chunks.
	probe("warm")
}

// TestXetJSCorruptXorb: the Hub serves wrong bytes (valid framing) for one
// xorb of a file; @huggingface/hub's Xet download through the cache fails,
// and never completes with wrong bytes. A plain download (xet: false, and a
// plain GET) may succeed — the Hub's plain file is intact — but only with
// the right bytes. The repo's other files are unaffected.
func TestXetJSCorruptXorb(t *testing.T) {
	hub := xetJSHub(t)
	fi := hub.FileInfo(hf.Model, xetModelID, "main", "c.bin")
	terms := hub.XetChunks(fi.XetHash)
	hub.SetXorbCorruption(terms[len(terms)/2].Xorb, true)
	p := startProc(t, hub.URL(), t.TempDir())
	for _, noXet := range []bool{false, true} {
		res, err := runJSErr(t, jsPlan{HubURL: p.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
			xetRepo(noXet, []string{"download"}, "c.bin"),
		}})
		switch {
		case err == nil:
			got, _ := os.ReadFile(res.Repos[0].Download["c.bin"])
			if !noXet || sha(got) != fi.SHA256 {
				t.Fatalf("xet:%v: download of c.bin succeeded with a corrupt upstream xorb (%d bytes, right: %v)", !noXet, len(got), sha(got) == fi.SHA256)
			}
			checkXetNotTaken(t, res, 0, p.URL)
			t.Logf("xet:false: right bytes over plain HTTP")
		case res.Error == "":
			t.Fatalf("xet:%v: the client failed without its error result: %v", !noXet, err)
		default:
			t.Logf("xet:%v: the client failed: %s", !noXet, res.Error)
		}
	}
	resp, err := http.Get(resolveURL(p.URL, hf.Model, xetModelID, "main", "c.bin"))
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && rerr == nil && sha(body) != fi.SHA256 {
			t.Fatalf("plain GET served %d wrong bytes with status 200", len(body))
		}
		t.Logf("plain GET: %d, %d bytes, read error %v", resp.StatusCode, len(body), rerr)
	}
	// Xet again, after the plain downloads: still refused (the plain bytes
	// do not vouch for the corrupt chunks).
	if res, err := runJSErr(t, jsPlan{HubURL: p.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), Repos: []jsPlanRepo{
		xetRepo(false, []string{"download"}, "c.bin"),
	}}); err == nil {
		got, _ := os.ReadFile(res.Repos[0].Download["c.bin"])
		if sha(got) != fi.SHA256 {
			t.Fatalf("second Xet download of c.bin succeeded with wrong bytes")
		}
		t.Logf("second Xet download of c.bin: right bytes")
	}
	// The other files of the repo are unaffected.
	res := runJS(t, jsPlan{HubURL: p.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), LogFetch: true, Repos: []jsPlanRepo{
		xetRepo(false, []string{"download"}, "a.bin"),
	}})
	checkDownloads(t, hub, res, 0, xetModelID)
	checkXetTaken(t, hub, res, 0, p.URL, "a.bin")
}
