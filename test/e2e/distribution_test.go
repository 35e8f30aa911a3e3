package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/store"
	"github.com/hfcache/hfcache/test/fakehub"
)

// TestDistributionsAndRemotes: a node serving two distributions — the root
// from an on-demand remote and /mirror from a streamed remote that excludes
// the gated model — honours each one's base path, policy and patterns.
func TestDistributionsAndRemotes(t *testing.T) {
	hub := startHub(t)
	log := testLogger(t)
	n, st := localNode(t, hub, nil, func(hc node.Hub) []*node.Remote {
		return []*node.Remote{
			{Name: node.DefaultRemote, Hub: hc, RefTTL: time.Minute, Policy: node.PolicyOnDemand},
			{Name: "mirror", Hub: hc, RefTTL: time.Minute, Policy: node.PolicyStreamed, Exclude: []string{"acme/gated-*"}},
		}
	})
	srv := httptest.NewServer(httpapi.NewClient(httpapi.Config{Logger: log}, n,
		httpapi.Distribution{Name: "root", Remote: node.DefaultRemote, Access: node.AccessCaller},
		httpapi.Distribution{Name: "mirror", BasePath: "/mirror/", Remote: "mirror", Access: node.AccessCaller},
	))
	defer srv.Close()

	// The streamed distribution serves bytes but stores none.
	want := content(t, hub, hf.Model, modelID, "main", "model.safetensors")
	resp, body := do(t, http.MethodGet, resolveURL(srv.URL+"/mirror", hf.Model, modelID, "main", "model.safetensors"), nil)
	if resp.StatusCode != 200 || sha(body) != sha(want) {
		t.Fatalf("streamed GET: %d", resp.StatusCode)
	}
	if b := st.Stats().Blobs; b != 0 {
		t.Fatalf("a streamed remote stored %d blobs", b)
	}
	// Its pagination links carry the base path.
	hub.SetPageSize(10)
	resp, _ = do(t, http.MethodGet, srv.URL+"/mirror/api/models/"+modelID+"/tree/main?recursive=true", nil)
	if link := resp.Header.Get("Link"); !strings.HasPrefix(link, "<"+srv.URL+"/mirror/api/models/") {
		t.Fatalf("Link %q does not carry the distribution's base path", link)
	}
	// A repository the remote excludes is refused before anything is fetched.
	before := hub.Stats().Requests("", "/"+gatedID)
	resp, body = do(t, http.MethodGet, resolveURL(srv.URL+"/mirror", hf.Model, gatedID, "main", "config.json"), map[string]string{"Authorization": "Bearer " + goodToken})
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(hf.HeaderErrorCode) == "" || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Fatalf("excluded repo: %d %q %s", resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode), body)
	}
	if after := hub.Stats().Requests("", "/"+gatedID); after != before {
		t.Fatalf("an excluded repository reached the Hub (%d requests)", after-before)
	}
	// The root distribution stores what it serves, and may read the gated repo.
	resp, _ = do(t, http.MethodGet, resolveURL(srv.URL, hf.Model, gatedID, "main", "config.json"), map[string]string{"Authorization": "Bearer " + goodToken})
	if resp.StatusCode != 200 || st.Stats().Blobs != 1 {
		t.Fatalf("root distribution: %d, %d blobs stored", resp.StatusCode, st.Stats().Blobs)
	}
	// A path under no distribution's base is a 404 in the Hub's shape only
	// when no root distribution exists; here the root takes it.
	resp, _ = do(t, http.MethodGet, srv.URL+"/mirrorx/"+modelID+"/resolve/main/config.json", nil)
	if resp.StatusCode == 200 {
		t.Fatalf("/mirrorx matched the /mirror distribution")
	}
}

// TestImmediateRemoteWarms: an immediate remote keeps its warm list filled
// with no client asking, only the included files, and follows the branch
// when it moves.
func TestImmediateRemoteWarms(t *testing.T) {
	hub := startHub(t)
	n, st := localNode(t, hub, func(c *node.Config) { c.WarmInterval = 50 * time.Millisecond }, func(hc node.Hub) []*node.Remote {
		return []*node.Remote{{Name: node.DefaultRemote, Hub: hc, RefTTL: 10 * time.Millisecond, Policy: node.PolicyImmediate}}
	})
	repo := hf.Repo{Type: hf.Model, ID: modelID}
	n.SetWarm([]node.WarmItem{{Remote: node.DefaultRemote, Repo: repo, Revision: "main", Include: []string{"*.safetensors", "nested/*/*.md"}}})

	has := func(path string) bool {
		id, err := hf.BlobIDFromETag(hub.FileInfo(hf.Model, modelID, "main", path).Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, ok := st.Stat(id)
		return ok
	}
	eventually(t, 20*time.Second, "the warm list filled", func() bool {
		return has("model.safetensors") && has("nested/deeper/notes.md")
	})
	if has("config.json") || has("weights+v2.bin") {
		t.Fatal("files outside the include globs were warmed")
	}
	// The branch moves: the new matching file is fetched without a request.
	hub.Commit(hf.Model, modelID, "main", []fakehub.File{{Path: "extra.safetensors", Size: 1000, Seed: 77, LFS: true}}, nil)
	eventually(t, 20*time.Second, "the new commit warmed", func() bool { return has("extra.safetensors") })
}

// TestRepositoryQuota: blobs filled for a repository beyond its quota are
// evicted, least recently used first; other repositories' blobs stay.
func TestRepositoryQuota(t *testing.T) {
	hub := startHub(t)
	log := testLogger(t)
	n, st := localNode(t, hub, nil, func(hc node.Hub) []*node.Remote {
		return []*node.Remote{{Name: node.DefaultRemote, Hub: hc, RefTTL: time.Minute, Policy: node.PolicyOnDemand}}
	})
	n.SetQuotas(map[string]int64{"capped": 10_050})
	srv := httptest.NewServer(httpapi.NewClient(httpapi.Config{Logger: log}, n,
		httpapi.Distribution{Name: "root", Repository: "free", Remote: node.DefaultRemote, Access: node.AccessCaller},
		httpapi.Distribution{Name: "capped", BasePath: "/capped", Repository: "capped", Remote: node.DefaultRemote, Access: node.AccessCaller},
	))
	defer srv.Close()
	get := func(base, p string) {
		t.Helper()
		if resp, _ := do(t, http.MethodGet, resolveURL(base, hf.Model, modelID, "main", p), nil); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", p, resp.StatusCode)
		}
	}
	stored := func(p string) bool {
		id, _ := hf.BlobIDFromETag(hub.FileInfo(hf.Model, modelID, "main", p).Addr())
		_, ok := st.Stat(id)
		return ok
	}
	get(srv.URL, "model.safetensors") // the free repository: never counted
	for _, p := range []string{"weights+v2.bin", "config.json", "nested/deeper/notes.md"} {
		get(srv.URL+"/capped", p)
	}
	if !stored("weights+v2.bin") || !stored("config.json") {
		t.Fatal("blobs within the quota were evicted")
	}
	get(srv.URL+"/capped", "sub dir/ünïcode file.txt") // now 10065 bytes > 10050
	eventually(t, 5*time.Second, "the oldest blob evicted", func() bool { return !stored("weights+v2.bin") })
	for _, p := range []string{"config.json", "nested/deeper/notes.md", "sub dir/ünïcode file.txt", "model.safetensors"} {
		if !stored(p) {
			t.Fatalf("%s was evicted; only the least recently used blob of the capped repository should be", p)
		}
	}
}

// localNode is a node in process with remotes built on one hub client.
func localNode(t *testing.T, hub *fakehub.Hub, tune func(*node.Config), remotes func(node.Hub) []*node.Remote) (*node.Node, *store.Store) {
	t.Helper()
	log := testLogger(t)
	st, err := store.Open(store.Config{Dir: t.TempDir(), Budget: 1 << 30, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL = hub.URL()
	hc, err := hubclient.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	ncfg := node.DefaultConfig()
	ncfg.Logger = log
	if tune != nil {
		tune(&ncfg)
	}
	n, err := node.New(ncfg, node.LocalStore(st), remotes(hc)...)
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n, st
}

// TestAccessRemote: a distribution with access "remote" serves gated
// content to callers without a token using the remote's token (a deliberate
// choice); the same remote behind a "caller" distribution does not.
func TestAccessRemote(t *testing.T) {
	hub := startHub(t)
	log := testLogger(t)
	n, _ := localNode(t, hub, nil, func(hc node.Hub) []*node.Remote {
		return []*node.Remote{{Name: node.DefaultRemote, Hub: hc, Token: goodToken, RefTTL: time.Minute, Policy: node.PolicyOnDemand}}
	})
	srv := httptest.NewServer(httpapi.NewClient(httpapi.Config{Logger: log}, n,
		httpapi.Distribution{Name: "open", BasePath: "/open", Remote: node.DefaultRemote, Access: node.AccessRemote},
		httpapi.Distribution{Name: "strict", BasePath: "/strict", Remote: node.DefaultRemote, Access: node.AccessCaller},
	))
	defer srv.Close()
	want := content(t, hub, hf.Model, gatedID, "main", "config.json")
	resp, body := do(t, http.MethodGet, resolveURL(srv.URL+"/open", hf.Model, gatedID, "main", "config.json"), nil)
	if resp.StatusCode != 200 || string(body) != string(want) {
		t.Fatalf("access remote, no token: %d", resp.StatusCode)
	}
	resp, _ = do(t, http.MethodGet, resolveURL(srv.URL+"/strict", hf.Model, gatedID, "main", "config.json"), nil)
	if resp.StatusCode != 401 || resp.Header.Get(hf.HeaderErrorCode) != hf.CodeGatedRepo {
		t.Fatalf("access caller, no token, after the remote cached it: %d %q", resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode))
	}
}
