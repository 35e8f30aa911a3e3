package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
)

// jsDir holds the pinned @huggingface/hub (installed by `make deps`).
func jsDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@huggingface", "hub")); err != nil {
		t.Fatalf("@huggingface/hub is not installed in %s: run `make deps` (make test does it)", dir)
	}
	return dir
}

type jsPlan struct {
	HubURL      string       `json:"hubUrl"`
	AccessToken string       `json:"accessToken,omitempty"`
	OutDir      string       `json:"outDir"`
	CacheDir    string       `json:"cacheDir"`
	Repos       []jsPlanRepo `json:"repos"`
	// LogFetch records every request the client makes (jsResult.Fetches).
	LogFetch bool `json:"logFetch,omitempty"`
}

type jsPlanRepo struct {
	Type     string   `json:"type"`
	Name     string   `json:"name"`
	Revision string   `json:"revision"`
	Steps    []string `json:"steps"`
	Files    []string `json:"files,omitempty"`
	// NoXet downloads with xet: false (plain HTTP).
	NoXet bool `json:"-"`
	// Parallel runs this many downloadFile calls per file at once.
	Parallel int `json:"parallel,omitempty"`
	// AccessToken overrides the plan's token for this repo ("" sends none
	// when set through NoToken).
	AccessToken string `json:"-"`
	NoToken     bool   `json:"-"`
	// ExpectError records a step's error in the result instead of failing.
	ExpectError bool `json:"expectError,omitempty"`
}

// MarshalJSON adds the fields whose absence means something to the client.
func (r jsPlanRepo) MarshalJSON() ([]byte, error) {
	type plain jsPlanRepo
	m := map[string]any{}
	raw, _ := json.Marshal(plain(r))
	json.Unmarshal(raw, &m)
	if r.NoXet {
		m["xet"] = false
	}
	if r.AccessToken != "" || r.NoToken {
		m["accessToken"] = r.AccessToken
	}
	return json.Marshal(m)
}

// jsFetch is one request the JS client made (plan.LogFetch).
type jsFetch struct {
	Repo     int    `json:"repo"` // index of the plan's repo entry
	Method   string `json:"method"`
	URL      string `json:"url"`
	Status   int    `json:"status"`
	Error    string `json:"error"`
	TokenExp int64  `json:"tokenExp"` // the xet-read-token route's exp
}

type jsResult struct {
	Error   string    `json:"error"`
	Status  *int      `json:"status"`
	Fetches []jsFetch `json:"fetches"`
	Repos   []struct {
		Type string `json:"type"`
		Name string `json:"name"`
		Info *struct {
			ID  string `json:"id"`
			SHA string `json:"sha"`
		} `json:"info"`
		List []struct {
			Type    string `json:"type"`
			Path    string `json:"path"`
			Size    int64  `json:"size"`
			XetHash any    `json:"xetHash"`
		} `json:"list"`
		DownloadInfo map[string]*struct {
			Size int64  `json:"size"`
			ETag string `json:"etag"`
			Xet  any    `json:"xet"`
		} `json:"downloadInfo"`
		Download    map[string]string   `json:"download"`
		DownloadSha map[string][]string `json:"downloadSha"`
		Snapshot    string              `json:"snapshot"`
		ToCacheDir  map[string]string   `json:"toCacheDir"`
		Err         *struct {
			Message string `json:"message"`
			Name    string `json:"name"`
			Status  *int   `json:"status"`
		} `json:"error"`
	} `json:"repos"`
}

// runJS runs test/js/hfclient.mjs with a plan and returns its result.
func runJS(t *testing.T, plan jsPlan) jsResult {
	t.Helper()
	res, err := runJSErr(t, plan)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// runJSErr runs test/js/hfclient.mjs with a plan; err describes a failed
// run (non-zero exit, no parseable result) with its output. A run that
// fails with the client's error still returns that error's result.
func runJSErr(t *testing.T, plan jsPlan) (jsResult, error) {
	t.Helper()
	dir := jsDir(t)
	pf := filepath.Join(t.TempDir(), "plan.json")
	raw, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "hfclient.mjs"), pf)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	// The client logs progress on stdout; the result is the last line.
	out := bytes.TrimSpace(stdout.Bytes())
	last := out[bytes.LastIndexByte(out, '\n')+1:]
	var res jsResult
	if jerr := json.Unmarshal(last, &res); jerr != nil || err != nil {
		return res, fmt.Errorf("hfclient.mjs: %v (%v, %v)\nresult: %.4000s\nstderr: %.4000s", err, jerr, ctx.Err(), last, stderr.String())
	}
	return res, nil
}

// TestHFJSClient drives the real @huggingface/hub through an hfcache
// process: info, recursive paginated listing, download info, downloads,
// snapshotDownload and downloadFileToCacheDir, for a model and a dataset.
// Every byte is compared with the fake Hub's content. Xet is native (the
// default): the Xet file is listed with its xetHash, fileDownloadInfo
// reports Xet, and its downloads go through the cache's CAS routes.
func TestHFJSClient(t *testing.T) {
	hub := startHub(t)
	hub.SetPageSize(10) // force several pages through the cache's Link rewriting
	p := startProc(t, hub.URL(), t.TempDir())
	checkHFJSClient(t, hub, p.URL, true)
}

// TestHFJSClientXetHidden: the same through a node whose remote hides Xet
// (xet: hidden): no xetHash in listings, no Xet in fileDownloadInfo, no
// request to a Xet route; every file comes over plain HTTP.
func TestHFJSClientXetHidden(t *testing.T) {
	hub := startHub(t)
	hub.SetPageSize(10)
	s := newStack(t, hub, xetHidden)
	checkHFJSClient(t, hub, s.URL, false)
}

func checkHFJSClient(t *testing.T, hub *fakehub.Hub, url string, native bool) {
	t.Helper()
	steps := []string{"info", "list", "downloadInfo", "download", "snapshot", "toCacheDir"}
	plan := jsPlan{
		HubURL:   url,
		OutDir:   t.TempDir(),
		CacheDir: t.TempDir(),
		LogFetch: true,
		Repos: []jsPlanRepo{
			{Type: "model", Name: modelID, Revision: "main", Steps: steps},
			{Type: "dataset", Name: datasetID, Revision: "main", Steps: steps},
		},
	}
	res := runJS(t, plan)
	xetFiles := 0
	for i, r := range res.Repos {
		typ := hf.Model
		if r.Type == "dataset" {
			typ = hf.Dataset
		}
		commit := pythonHead(t, resolveURL(hub.URL(), typ, r.Name, "main", "README.md"), "").Commit
		if typ == hf.Model {
			commit = pythonHead(t, resolveURL(hub.URL(), typ, r.Name, "main", "config.json"), "").Commit
		}
		if r.Info == nil || r.Info.SHA != commit {
			t.Errorf("%s: info %+v, want sha %s", r.Name, r.Info, commit)
		}
		want := hubFiles(t, hub, typ, r.Name)
		var listed []string
		for _, e := range r.List {
			if e.Type == "file" {
				listed = append(listed, e.Path)
			}
			fi := hub.FileInfo(typ, r.Name, "main", e.Path)
			switch {
			case !native && e.XetHash != nil:
				t.Errorf("%s: xetHash leaked for %s with Xet hidden", r.Name, e.Path)
			case native && fi.Xet && e.XetHash != fi.XetHash:
				t.Errorf("%s: %s listed with xetHash %v, want %s", r.Name, e.Path, e.XetHash, fi.XetHash)
			case native && !fi.Xet && e.XetHash != nil:
				t.Errorf("%s: non-Xet %s listed with xetHash %v", r.Name, e.Path, e.XetHash)
			}
		}
		sort.Strings(listed)
		if strings.Join(listed, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: listFiles gave %d files, want %d:\n%v\nwant\n%v", r.Name, len(listed), len(want), listed, want)
		}
		for _, path := range want {
			data := content(t, hub, typ, r.Name, "main", path)
			isXet := native && hub.FileInfo(typ, r.Name, "main", path).Xet
			if isXet {
				xetFiles++
			}
			if di := r.DownloadInfo[path]; di == nil || di.Size != int64(len(data)) || (di.Xet != nil) != isXet {
				t.Errorf("%s %s: fileDownloadInfo %+v, want size %d and xet info %v", r.Name, path, di, len(data), isXet)
			}
			got, err := os.ReadFile(r.Download[path])
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s %s: downloadFile bytes differ (%v)", r.Name, path, err)
			}
			snap, err := os.ReadFile(filepath.Join(r.Snapshot, path))
			if err != nil || !bytes.Equal(snap, data) {
				t.Errorf("%s %s: snapshotDownload bytes differ (%v)", r.Name, path, err)
			}
			cached, err := os.ReadFile(r.ToCacheDir[path])
			if err != nil || !bytes.Equal(cached, data) {
				t.Errorf("%s %s: downloadFileToCacheDir bytes differ (%v)", r.Name, path, err)
			}
		}
		if i == 0 && !strings.Contains(r.Snapshot, commit) {
			t.Errorf("snapshot folder %s is not named by commit %s", r.Snapshot, commit)
		}
	}
	// Every request went to the cache; Xet routes were used exactly when
	// Xet is native (downloadFile and snapshotDownload of the Xet file: two
	// reconstructions at least; downloadFileToCacheDir finds the snapshot's
	// blob and downloads nothing).
	recons := 0
	for _, f := range res.Fetches {
		if !strings.HasPrefix(f.URL, url+"/") {
			t.Errorf("the client requested %s, not on the cache %s", f.URL, url)
		}
		if strings.Contains(f.URL, "/reconstructions/") || strings.Contains(f.URL, "/xet-read-token/") || strings.Contains(f.URL, "/xet/xorb/") {
			if !native {
				t.Errorf("Xet hidden, yet the client requested %s", f.URL)
			}
			if f.Status >= 300 {
				t.Errorf("%s %s: %d", f.Method, f.URL, f.Status)
			}
		}
		if strings.Contains(f.URL, "/v2/reconstructions/") {
			recons++
		}
	}
	if native && (xetFiles == 0 || recons < 2*xetFiles) {
		t.Errorf("%d Xet files, %d reconstruction requests: the Xet path was not taken", xetFiles, recons)
	}
}

// hubFiles lists a repository's files at main, sorted, as the fake Hub has them.
func hubFiles(t *testing.T, h *fakehub.Hub, typ hf.RepoType, id string) []string {
	t.Helper()
	resp, body := do(t, "GET", h.URL()+"/api/"+typ.Plural()+"/"+id+"/revision/main", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("fake hub info: %d", resp.StatusCode)
	}
	var info struct {
		Siblings []struct {
			RFilename string `json:"rfilename"`
		} `json:"siblings"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range info.Siblings {
		out = append(out, s.RFilename)
	}
	sort.Strings(out)
	return out
}
