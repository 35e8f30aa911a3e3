package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

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
}

type jsPlanRepo struct {
	Type     string   `json:"type"`
	Name     string   `json:"name"`
	Revision string   `json:"revision"`
	Steps    []string `json:"steps"`
	Files    []string `json:"files,omitempty"`
}

type jsResult struct {
	Error string `json:"error"`
	Repos []struct {
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
		Download   map[string]string `json:"download"`
		Snapshot   string            `json:"snapshot"`
		ToCacheDir map[string]string `json:"toCacheDir"`
	} `json:"repos"`
}

// runJS runs test/js/hfclient.mjs with a plan and returns its result.
func runJS(t *testing.T, plan jsPlan) jsResult {
	t.Helper()
	dir := jsDir(t)
	pf := filepath.Join(t.TempDir(), "plan.json")
	raw, _ := json.Marshal(plan)
	if err := os.WriteFile(pf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(dir, "hfclient.mjs"), pf)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// The client logs progress on stdout; the result is the last line.
	out := bytes.TrimSpace(stdout.Bytes())
	last := out[bytes.LastIndexByte(out, '\n')+1:]
	var res jsResult
	if jerr := json.Unmarshal(last, &res); jerr != nil || err != nil {
		t.Fatalf("hfclient.mjs: %v\nresult: %.4000s\nstderr: %.4000s", err, last, stderr.String())
	}
	return res
}

// TestHFJSClient drives the real @huggingface/hub through an hfcache
// process: info, recursive paginated listing, download info, downloads,
// snapshotDownload and downloadFileToCacheDir, for a model and a dataset.
// Every byte is compared with the fake Hub's content.
func TestHFJSClient(t *testing.T) {
	hub := startHub(t)
	hub.SetPageSize(10) // force several pages through the cache's Link rewriting
	p := startProc(t, hub.URL(), t.TempDir())
	steps := []string{"info", "list", "downloadInfo", "download", "snapshot", "toCacheDir"}
	plan := jsPlan{
		HubURL:   p.URL,
		OutDir:   t.TempDir(),
		CacheDir: t.TempDir(),
		Repos: []jsPlanRepo{
			{Type: "model", Name: modelID, Revision: "main", Steps: steps},
			{Type: "dataset", Name: datasetID, Revision: "main", Steps: steps},
		},
	}
	res := runJS(t, plan)
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
			if e.XetHash != nil {
				t.Errorf("%s: xetHash leaked for %s", r.Name, e.Path)
			}
		}
		sort.Strings(listed)
		if strings.Join(listed, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: listFiles gave %d files, want %d:\n%v\nwant\n%v", r.Name, len(listed), len(want), listed, want)
		}
		for _, path := range want {
			data := content(t, hub, typ, r.Name, "main", path)
			if di := r.DownloadInfo[path]; di == nil || di.Size != int64(len(data)) || di.Xet != nil {
				t.Errorf("%s %s: fileDownloadInfo %+v, want size %d and no xet", r.Name, path, di, len(data))
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
