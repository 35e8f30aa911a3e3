package fakehub

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestErrors(t *testing.T) {
	h, commit := fixture(t)
	u := h.URL()
	// File missing: EntryNotFound with X-Repo-Commit, on HEAD and GET, by branch and commit.
	for _, rev := range []string{"main", commit} {
		for _, m := range []string{http.MethodHead, http.MethodGet} {
			r := do(t, nil, m, fileURL(h, rev, "adapter_config.json"), nil).wantError(t, 404, hf.CodeEntryNotFound)
			r.wantHeader(t, hf.HeaderRepoCommit, commit)
			r.wantHeader(t, "Content-Type", "application/json; charset=utf-8")
		}
	}
	// A directory is not a file.
	get(t, fileURL(h, commit, "tokenizer")).wantError(t, 404, hf.CodeEntryNotFound)
	// Revision missing.
	r := head(t, fileURL(h, "nope", "config.json")).wantError(t, 404, hf.CodeRevisionNotFound)
	r.wantHeader(t, hf.HeaderRepoCommit, "")
	get(t, u+"/api/models/"+modelID+"/revision/nope").wantError(t, 404, hf.CodeRevisionNotFound)
	get(t, u+"/api/models/"+modelID+"/tree/nope").wantError(t, 404, hf.CodeRevisionNotFound)
	// Repo missing.
	get(t, u+"/org/missing/resolve/main/config.json").wantError(t, 401, hf.CodeRepoNotFound)
	get(t, u+"/org/missing/resolve/main/config.json", bearer(tokBob)).wantError(t, 404, hf.CodeRepoNotFound)
	get(t, u+"/api/models/org/missing").wantError(t, 401, hf.CodeRepoNotFound)
	get(t, u+"/api/datasets/"+modelID).wantError(t, 401, hf.CodeRepoNotFound) // wrong type
	get(t, u+"/datasets/"+modelID+"/resolve/main/config.json", bearer(tokBob)).wantError(t, 404, hf.CodeRepoNotFound)
	// Unknown token: 401 without a code, on every route, even public ones.
	for _, p := range []string{
		fileURL(h, "main", "config.json"), u + "/api/models/" + modelID, u + "/api/models/" + modelID + "/tree/main",
		u + "/api/whoami-v2", u + "/org/missing/resolve/main/x",
	} {
		r := get(t, p, bearer("hf_unknown")).wantStatus(t, 401)
		r.wantHeader(t, hf.HeaderErrorCode, "").wantHeader(t, hf.HeaderErrorMessage, "Invalid credentials in Authorization header")
	}
	// Unknown route.
	get(t, u+"/api/nothing").wantStatus(t, 404)
}

func TestAccessMatrix(t *testing.T) {
	h, _ := fixture(t)
	files := []File{{Path: "config.json", Data: configJSON}, {Path: "w.safetensors", Size: 1000, Seed: 1, LFS: true}}
	h.AddRepo(RepoSpec{Type: hf.Model, ID: "org/private", Private: true, Files: files})
	h.AddRepo(RepoSpec{Type: hf.Model, ID: "org/gated", Gated: "auto", Files: files})
	h.AddRepo(RepoSpec{Type: hf.Dataset, ID: "org/gated-ds", Gated: "manual", Files: files})
	h.Commit(hf.Model, modelID, "main", files[1:], nil)
	h.Grant(tokAlice, hf.Model, "org/private")
	h.Grant(tokAlice, hf.Model, "org/gated")
	h.Grant(tokAlice, hf.Dataset, "org/gated-ds")

	type want struct {
		status int
		code   string
	}
	ok := want{200, ""}
	redirect := want{307, ""}
	found := want{302, ""}
	routes := func(prefix, id string) map[string]string {
		api := "/api/" + map[string]string{"": "models", "datasets/": "datasets"}[prefix] + "/" + id
		return map[string]string{
			"resolve":     "/" + prefix + id + "/resolve/main/config.json",
			"resolve-lfs": "/" + prefix + id + "/resolve/main/w.safetensors",
			"raw":         "/" + prefix + id + "/raw/main/config.json",
			"info":        api,
			"revision":    api + "/revision/main",
			"tree":        api + "/tree/main",
			"refs":        api + "/refs",
			"commits":     api + "/commits/main",
			"xet-token":   api + "/xet-read-token/main",
			"auth-check":  api + "/auth-check",
		}
	}
	type tc struct {
		prefix, id, token string
		want              map[string]want
	}
	all := func(w want) map[string]want {
		m := map[string]want{}
		for k := range routes("", "x") {
			m[k] = w
		}
		return m
	}
	granted := map[string]want{"resolve": redirect, "resolve-lfs": found, "raw": ok, "info": ok, "revision": ok, "tree": ok, "refs": ok, "commits": ok, "xet-token": ok, "auth-check": ok}
	gatedDenied := func(w want) map[string]want {
		return map[string]want{"resolve": w, "resolve-lfs": w, "raw": w, "info": ok, "revision": ok, "tree": ok, "refs": ok, "commits": ok, "xet-token": w, "auth-check": w}
	}
	for _, c := range []tc{
		{"", "org/private", "", all(want{401, hf.CodeRepoNotFound})},
		{"", "org/private", tokBob, all(want{404, hf.CodeRepoNotFound})},
		{"", "org/private", tokAlice, granted},
		{"", "org/gated", "", gatedDenied(want{401, hf.CodeGatedRepo})},
		{"", "org/gated", tokBob, gatedDenied(want{403, hf.CodeGatedRepo})},
		{"", "org/gated", tokAlice, granted},
		{"datasets/", "org/gated-ds", "", gatedDenied(want{401, hf.CodeGatedRepo})},
		{"datasets/", "org/gated-ds", tokBob, gatedDenied(want{403, hf.CodeGatedRepo})},
		{"datasets/", "org/gated-ds", tokAlice, granted},
		{"", modelID, "", granted},
		{"", modelID, tokBob, granted},
	} {
		for name, path := range routes(c.prefix, c.id) {
			w := c.want[name]
			t.Run(c.id+"/"+c.token+"/"+name, func(t *testing.T) {
				var hdrs []string
				if c.token != "" {
					hdrs = append(hdrs, bearer(c.token))
				}
				r := get(t, h.URL()+path, hdrs...)
				if w.code != "" {
					r.wantError(t, w.status, w.code)
				} else {
					r.wantStatus(t, w.status)
				}
			})
		}
		// paths-info (POST) follows the metadata rules.
		pw := c.want["tree"]
		var hdrs = []string{"Content-Type: application/x-www-form-urlencoded"}
		if c.token != "" {
			hdrs = append(hdrs, bearer(c.token))
		}
		api := "/api/" + map[string]string{"": "models", "datasets/": "datasets"}[c.prefix] + "/" + c.id
		r := do(t, nil, http.MethodPost, h.URL()+api+"/paths-info/main", strings.NewReader("paths=config.json"), hdrs...)
		if r.StatusCode != pw.status || r.Header.Get(hf.HeaderErrorCode) != pw.code {
			t.Errorf("paths-info %s %s: %d %q, want %v", c.id, c.token, r.StatusCode, r.Header.Get(hf.HeaderErrorCode), pw)
		}
	}

	// Gated info is public and says how.
	var info map[string]any
	get(t, h.URL()+"/api/datasets/org/gated-ds").wantStatus(t, 200).json(t, &info)
	if info["gated"] != "manual" || info["private"] != false {
		t.Fatalf("gated info %v", info)
	}
	// Messages name the repo.
	msg := get(t, h.URL()+"/org/gated/resolve/main/config.json").Header.Get(hf.HeaderErrorMessage)
	if !strings.Contains(msg, "model org/gated is restricted") || !strings.Contains(msg, "Please log in") {
		t.Fatalf("gated message %q", msg)
	}

	// Revoke takes effect at once; grants follow renames.
	h.Revoke(tokAlice, hf.Model, "org/gated")
	get(t, h.URL()+"/org/gated/raw/main/config.json", bearer(tokAlice)).wantError(t, 403, hf.CodeGatedRepo)
	h.Rename(hf.Model, "org/private", "org/private2")
	get(t, h.URL()+"/org/private2/raw/main/config.json", bearer(tokAlice)).wantStatus(t, 200)
	// Changing visibility.
	h.SetAccess(hf.Model, modelID, true, "")
	get(t, fileURL(h, "main", "config.json")).wantError(t, 401, hf.CodeRepoNotFound)
	h.SetAccess(hf.Model, modelID, false, "")
	// Disabled.
	h.SetDisabled(hf.Model, modelID, true)
	get(t, fileURL(h, "main", "config.json")).wantStatus(t, 403).wantHeader(t, hf.HeaderErrorMessage, "Access to this resource is disabled.")
	// Removed token.
	h.RemoveToken(tokBob)
	get(t, h.URL()+"/api/whoami-v2", bearer(tokBob)).wantStatus(t, 401)
}

func TestWhoami(t *testing.T) {
	h, _ := fixture(t)
	var who struct{ Name, Type string }
	get(t, h.URL()+"/api/whoami-v2", bearer(tokAlice)).wantStatus(t, 200).json(t, &who)
	if who.Name != "alice" || who.Type != "user" {
		t.Fatalf("whoami %+v", who)
	}
	get(t, h.URL()+"/api/whoami-v2").wantStatus(t, 401)
	get(t, h.URL()+"/api/whoami-v2", "Authorization: Basic abc").wantStatus(t, 401)
}

func TestRenameAndAlias(t *testing.T) {
	h, commit := fixture(t)
	h.Rename(hf.Model, modelID, "neworg/model")
	h.AddRepo(RepoSpec{Type: hf.Model, ID: "openai-community/gpt2", Files: []File{{Path: "config.json", Data: configJSON}}})
	h.Alias(hf.Model, "openai-community/gpt2", "gpt2")
	h.AddRepo(RepoSpec{Type: hf.Dataset, ID: "rajpurkar/squad", Files: []File{{Path: "README.md", Data: []byte("x")}}})
	h.Alias(hf.Dataset, "rajpurkar/squad", "squad")
	for _, tc := range []struct{ from, to string }{
		{"/" + modelID + "/resolve/main/config.json?download=true", "/neworg/model/resolve/main/config.json?download=true"},
		{"/" + modelID + "/resolve/refs%2Fpr%2F1/sub%20dir/x.txt", "/neworg/model/resolve/refs%2Fpr%2F1/sub%20dir/x.txt"},
		{"/" + modelID + "/raw/main/config.json", "/neworg/model/raw/main/config.json"},
		{"/api/models/" + modelID, "/api/models/neworg/model"},
		{"/api/models/" + modelID + "/revision/main?expand=sha", "/api/models/neworg/model/revision/main?expand=sha"},
		{"/api/models/" + modelID + "/tree/main/sub%20dir?recursive=True", "/api/models/neworg/model/tree/main/sub%20dir?recursive=True"},
		{"/api/models/" + modelID + "/refs", "/api/models/neworg/model/refs"},
		{"/api/resolve-cache/models/" + modelID + "/" + commit + "/config.json", "/api/resolve-cache/models/neworg/model/" + commit + "/config.json"},
		{"/gpt2/resolve/main/config.json", "/openai-community/gpt2/resolve/main/config.json"},
		{"/api/models/gpt2/tree/main", "/api/models/openai-community/gpt2/tree/main"},
		{"/api/models/gpt2", "/api/models/openai-community/gpt2"},
		{"/datasets/squad/resolve/main/README.md", "/datasets/rajpurkar/squad/resolve/main/README.md"},
	} {
		t.Run(tc.from, func(t *testing.T) {
			head(t, h.URL()+tc.from).wantStatus(t, http.StatusTemporaryRedirect).wantHeader(t, "Location", tc.to)
		})
	}
	// Clients following the redirects end at the content.
	do(t, http.DefaultClient, http.MethodGet, fileURL(h, "main", "config.json"), nil).wantStatus(t, 200).wantBody(t, configJSON)
	do(t, http.DefaultClient, http.MethodGet, h.URL()+"/gpt2/resolve/main/config.json", nil).wantStatus(t, 200).wantBody(t, configJSON)
	// The old id is free again for a new repo.
	h.AddRepo(RepoSpec{Type: hf.Model, ID: modelID, Files: []File{{Path: "a", Data: []byte("a")}}})
	head(t, h.URL()+"/"+modelID+"/resolve/main/config.json").wantError(t, 404, hf.CodeEntryNotFound)
}
