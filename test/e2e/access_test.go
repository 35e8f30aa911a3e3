package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// TestOffline: with the fake Hub stopped, a cached snapshot still downloads
// with the real client by branch and by commit, resolves by branch say they
// are stale, and an uncached file gets a 504 in the Hub's error shape.
func TestOffline(t *testing.T) {
	hub := startHub(t)
	commit := pythonHead(t, resolveURL(hub.URL(), hf.Model, modelID, "main", "config.json"), "").Commit
	// A tiny ref TTL so that, offline, every branch lookup is past its TTL.
	p := startProc(t, hub.URL(), t.TempDir(), "--ref-ttl", "1ms")
	warm := jsPlan{HubURL: p.URL, OutDir: t.TempDir(), CacheDir: t.TempDir(), Repos: []jsPlanRepo{
		{Type: "model", Name: modelID, Revision: "main", Steps: []string{"snapshot"}},
		{Type: "model", Name: modelID, Revision: commit, Steps: []string{"snapshot"}},
	}}
	runJS(t, warm)

	hub.Close()
	offline := warm
	offline.CacheDir = t.TempDir() // a fresh client cache: every byte must come from hfcache
	res := runJS(t, offline)
	for _, r := range res.Repos {
		for _, f := range modelFiles() {
			got, err := os.ReadFile(filepath.Join(r.Snapshot, f.Path))
			if err != nil {
				t.Fatalf("offline snapshot missing %s: %v", f.Path, err)
			}
			if f.Data != nil && !bytes.Equal(got, f.Data) {
				t.Fatalf("offline snapshot %s differs", f.Path)
			}
		}
	}
	resp, _ := do(t, http.MethodHead, resolveURL(p.URL, hf.Model, modelID, "main", "config.json"), nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Hfcache-Stale") != "1" || resp.Header.Get(hf.HeaderRepoCommit) != commit {
		t.Fatalf("offline HEAD by branch: %d stale=%q commit=%q", resp.StatusCode, resp.Header.Get("X-Hfcache-Stale"), resp.Header.Get(hf.HeaderRepoCommit))
	}
	resp, body := do(t, http.MethodGet, resolveURL(p.URL, hf.Model, bigID, "main", "big.bin"), nil)
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hf.HeaderErrorCode) == "" {
		t.Fatalf("uncached offline: %d %q %s", resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode), body)
	}
}

// TestGatedAccess (no --upstream-token): no token → the Hub's 401 GatedRepo,
// a wrong token → the Hub's refusal, the accepted token → served; later
// requests without a token or with an unapproved one are still refused
// although the bytes are cached.
func TestGatedAccess(t *testing.T) {
	hub := startHub(t)
	p := startProc(t, hub.URL(), t.TempDir())
	for _, path := range []string{"config.json", "model.safetensors"} {
		u := resolveURL(p.URL, hf.Model, gatedID, "main", path)
		want := content(t, hub, hf.Model, gatedID, "main", path)
		check := func(step, token string, status int, code string) {
			t.Helper()
			hdr := map[string]string{}
			if token != "" {
				hdr["Authorization"] = "Bearer " + token
			}
			for _, method := range []string{http.MethodHead, http.MethodGet} {
				resp, body := do(t, method, u, hdr)
				if resp.StatusCode != status || resp.Header.Get(hf.HeaderErrorCode) != code {
					t.Fatalf("%s %s %s: %d %q, want %d %q", path, step, method, resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode), status, code)
				}
				if status == 200 && method == http.MethodGet && !bytes.Equal(body, want) {
					t.Fatalf("%s %s: bytes differ", path, step)
				}
				if status != 200 && method == http.MethodGet && bytes.Contains(body, want[:min(len(want), 16)]) {
					t.Fatalf("%s %s: refused response leaks content", path, step)
				}
			}
		}
		check("no token", "", 401, hf.CodeGatedRepo)
		check("wrong token", "hf_not_a_real_token", 401, "")
		check("unapproved token", otherToken, 403, hf.CodeGatedRepo)
		check("approved token", goodToken, 200, "")
		check("approved token again (hit)", goodToken, 200, "")
		check("no token after caching", "", 401, hf.CodeGatedRepo)
		check("unapproved token after caching", otherToken, 403, hf.CodeGatedRepo)
	}
}
