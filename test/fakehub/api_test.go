package fakehub

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestInfo(t *testing.T) {
	h, commit := fixture(t)
	api := h.URL() + "/api/models/" + modelID
	var info struct {
		ID, Sha, LastModified, CreatedAt, MongoID string
		Private                                   *bool
		Downloads, Likes                          *int
		Tags                                      []string
		Gated                                     any
		Siblings                                  []map[string]any
	}
	for _, u := range []string{api, api + "/revision/main", api + "/revision/HEAD", api + "/revision/" + commit} {
		info.Siblings = nil
		r := get(t, u).wantStatus(t, 200).wantHeader(t, "Content-Type", "application/json; charset=utf-8")
		r.json(t, &info)
		var raw map[string]any
		r.json(t, &raw)
		if info.ID != modelID || info.Sha != commit || info.Private == nil || *info.Private || info.Downloads == nil ||
			info.Likes == nil || info.Tags == nil || info.Gated != false || raw["_id"] == "" {
			t.Fatalf("%s: info %+v", u, info)
		}
		if !lastModifiedRE.MatchString(info.LastModified) || !lastModifiedRE.MatchString(info.CreatedAt) {
			t.Fatalf("dates %q %q", info.LastModified, info.CreatedAt)
		}
		var names []string
		for _, s := range info.Siblings {
			names = append(names, s["rfilename"].(string))
			if len(s) != 1 {
				t.Fatalf("sibling without blobs has %v", s)
			}
		}
		want := []string{"big.bin", "config.json", "empty.txt", "model.safetensors", "sub dir/ünïcode file+1.txt", "tokenizer/vocab.txt", "xet.bin"}
		if !reflect.DeepEqual(names, want) {
			t.Fatalf("siblings %v", names)
		}
	}
	// blobs=true|True|1
	for _, b := range []string{"true", "True", "1"} {
		var doc struct {
			Siblings []struct {
				Rfilename string
				Size      int64
				BlobID    string `json:"blobId"`
				LFS       *struct {
					SHA256      string `json:"sha256"`
					Size        int64  `json:"size"`
					PointerSize int    `json:"pointerSize"`
				} `json:"lfs"`
			}
		}
		get(t, api+"/revision/main?blobs="+b).wantStatus(t, 200).json(t, &doc)
		for _, s := range doc.Siblings {
			fi := h.FileInfo(hf.Model, modelID, "main", s.Rfilename)
			if s.Size != fi.Size || s.BlobID != fi.OID || (s.LFS != nil) != fi.LFS {
				t.Fatalf("sibling %+v vs %+v", s, fi)
			}
			if s.LFS != nil && (s.LFS.SHA256 != fi.SHA256 || s.LFS.Size != fi.Size || s.LFS.PointerSize != len(lfsPointer(fi.SHA256, fi.Size))) {
				t.Fatalf("sibling lfs %+v vs %+v", s.LFS, fi)
			}
		}
	}
	// expand: only those properties plus _id and id.
	for _, q := range []string{"expand=sha&expand=gated&expand=pipeline_tag", "expand[]=sha&expand[]=gated&expand[]=pipeline_tag"} {
		var doc map[string]any
		get(t, api+"/revision/HEAD?"+q).wantStatus(t, 200).json(t, &doc)
		keys := []string{}
		for k := range doc {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, []string{"_id", "gated", "id", "pipeline_tag", "sha"}) || doc["sha"] != commit {
			t.Fatalf("%s: %v", q, doc)
		}
	}
	get(t, api+"?expand=bogus").wantStatus(t, http.StatusBadRequest)
	get(t, api+"?blobs=maybe").wantStatus(t, http.StatusBadRequest)
	get(t, api+"/revision/main", "Authorization: Bearer hf_nope").wantStatus(t, 401)
	do(t, nil, http.MethodPost, api, nil).wantStatus(t, http.StatusMethodNotAllowed)
}

// treeEntries fetches a listing, following Link rel="next" to the end.
func treeEntries(t *testing.T, h *Hub, url string, hdrs ...string) (all []treeEntry, pages int) {
	t.Helper()
	linkRE := regexp.MustCompile(`^<(http://[^>]+)>; rel="next"$`)
	for url != "" {
		r := get(t, url, hdrs...).wantStatus(t, 200)
		var page []treeEntry
		r.json(t, &page)
		all = append(all, page...)
		pages++
		url = ""
		if l := r.Header.Get("Link"); l != "" {
			m := linkRE.FindStringSubmatch(l)
			if m == nil || !strings.HasPrefix(m[1], h.URL()+"/api/") {
				t.Fatalf("Link %q", l)
			}
			url = m[1]
		}
	}
	return all, pages
}

func paths(es []treeEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}

func TestTree(t *testing.T) {
	h, commit := fixture(t)
	api := h.URL() + "/api/models/" + modelID + "/tree/"
	root, _ := treeEntries(t, h, api+"main")
	if got := paths(root); !reflect.DeepEqual(got, []string{"big.bin", "config.json", "empty.txt", "model.safetensors", "sub dir", "tokenizer", "xet.bin"}) {
		t.Fatalf("root %v", got)
	}
	rec, _ := treeEntries(t, h, api+"main?recursive=True&expand=False")
	if got := paths(rec); !reflect.DeepEqual(got, []string{"big.bin", "config.json", "empty.txt", "model.safetensors", "sub dir", "sub dir/ünïcode file+1.txt", "tokenizer", "tokenizer/vocab.txt", "xet.bin"}) {
		t.Fatalf("recursive %v", got)
	}
	for _, e := range rec {
		if e.Type == "directory" {
			if e.Size != 0 || len(e.OID) != 40 || e.LFS != nil {
				t.Fatalf("dir entry %+v", e)
			}
			continue
		}
		fi := h.FileInfo(hf.Model, modelID, "main", e.Path)
		if e.Type != "file" || e.OID != fi.OID || e.Size != fi.Size || e.XetHash != fi.XetHash || (e.LFS != nil) != fi.LFS {
			t.Fatalf("entry %+v vs %+v", e, fi)
		}
		if e.LFS != nil && (e.LFS.OID != fi.SHA256 || e.LFS.Size != fi.Size || e.LFS.PointerSize != len(lfsPointer(fi.SHA256, fi.Size))) {
			t.Fatalf("lfs %+v", e.LFS)
		}
		if e.LastCommit != nil || e.Security != nil {
			t.Fatal("expand=false has lastCommit")
		}
	}
	// The raw JSON uses the Hub's keys.
	var raw []map[string]any
	get(t, api+"main").json(t, &raw)
	for _, e := range raw {
		for _, k := range []string{"type", "oid", "size", "path"} {
			if _, ok := e[k]; !ok {
				t.Fatalf("entry %v lacks %q", e, k)
			}
		}
	}
	// Sub paths: raw, %2F-encoded, with encoded or raw revisions; booleans in every spelling.
	for _, u := range []string{
		api + "main/sub%20dir", api + "main/sub dir", api + commit + "/sub%20dir?recursive=1",
		api + "refs%2Fpr%2F1/sub%20dir?recursive=true", api + "refs/pr/1/sub%20dir?recursive=false",
	} {
		if strings.Contains(u, "refs") {
			h.SetRef(hf.Model, modelID, "refs/pr/1", "main")
		}
		es, _ := treeEntries(t, h, u)
		if got := paths(es); !reflect.DeepEqual(got, []string{"sub dir/ünïcode file+1.txt"}) {
			t.Fatalf("%s: %v", u, got)
		}
	}
	h.Commit(hf.Model, modelID, "main", []File{{Path: "a/b/c/d.txt", Data: []byte("d")}}, nil)
	for _, u := range []string{api + "main/a%2Fb", api + "main/a/b"} {
		es, _ := treeEntries(t, h, u)
		if got := paths(es); !reflect.DeepEqual(got, []string{"a/b/c"}) {
			t.Fatalf("%s: %v", u, got)
		}
	}
	get(t, api+"main/nope").wantError(t, 404, hf.CodeEntryNotFound)
	get(t, api+"main/config.json").wantError(t, 404, hf.CodeEntryNotFound)
	get(t, api+"main?recursive=maybe").wantStatus(t, 400)
}

func TestTreePagination(t *testing.T) {
	h, _ := fixture(t)
	var files []File
	for i := range 23 {
		files = append(files, File{Path: "dir/" + string(rune('a'+i)) + ".txt", Data: []byte{byte(i)}})
	}
	h.Commit(hf.Model, modelID, "main", files, nil)
	api := h.URL() + "/api/models/" + modelID + "/tree/main"
	full, pages := treeEntries(t, h, api+"?recursive=true")
	if pages != 1 || len(full) != 9+24 {
		t.Fatalf("unpaginated: %d pages, %d entries", pages, len(full))
	}
	fullExp, _ := treeEntries(t, h, api+"?recursive=true&expand=true")
	for _, tc := range []struct {
		size  int
		query string
		want  []treeEntry
		pages int
	}{
		{5, "?recursive=true", full, 7},
		{5, "?recursive=True&expand=False", full, 7},
		{5, "?recursive=true&expand=true", fullExp, 7},
		{100, "?recursive=true&expand=true", fullExp, 1},
		{1, "?recursive=true", full, 33},
		{33, "?recursive=true", full, 1},
		{32, "?recursive=true", full, 2},
	} {
		h.SetPageSize(tc.size)
		got, pages := treeEntries(t, h, api+tc.query)
		if pages != tc.pages || !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("page size %d %s: %d pages, %d entries", tc.size, tc.query, pages, len(got))
		}
	}
	// Expand pages hold at most 50 by default.
	h.SetPageSize(0)
	var many []File
	for i := range 120 {
		many = append(many, File{Path: "many/" + strings.Repeat("x", i+1), Data: []byte("m")})
	}
	h.Commit(hf.Model, modelID, "main", many, nil)
	r := get(t, api+"/many?expand=true").wantStatus(t, 200)
	var page []treeEntry
	r.json(t, &page)
	if len(page) != 50 || r.Header.Get("Link") == "" {
		t.Fatalf("expand page %d entries, Link %q", len(page), r.Header.Get("Link"))
	}
	es, pages := treeEntries(t, h, api+"/many?expand=true")
	if len(es) != 120 || pages != 3 {
		t.Fatalf("%d entries in %d pages", len(es), pages)
	}
	es, pages = treeEntries(t, h, api+"/many")
	if len(es) != 120 || pages != 1 {
		t.Fatalf("%d entries in %d pages", len(es), pages)
	}
}

func TestTreeViaHandler(t *testing.T) {
	// Mounted in httptest, Links point at the request's host.
	h := New()
	h.AddRepo(RepoSpec{Type: hf.Dataset, ID: "org/ds", Files: []File{{Path: "a", Data: []byte("a")}, {Path: "b", Data: []byte("b")}}})
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	h.SetPageSize(1)
	r := get(t, srv.URL+"/api/datasets/org/ds/tree/main").wantStatus(t, 200)
	if l := r.Header.Get("Link"); !strings.HasPrefix(l, "<"+srv.URL+"/api/datasets/org/ds/tree/main?cursor=") {
		t.Fatalf("Link %q", l)
	}
	get(t, srv.URL+"/datasets/org/ds/resolve/main/a").wantStatus(t, 307)
}

func TestLastCommit(t *testing.T) {
	h, first := fixture(t)
	second := h.Commit(hf.Model, modelID, "main", []File{{Path: "config.json", Data: []byte("{}")}}, []string{"empty.txt"})
	es, _ := treeEntries(t, h, h.URL()+"/api/models/"+modelID+"/tree/main?recursive=true&expand=true")
	last := map[string]string{}
	for _, e := range es {
		if e.LastCommit == nil || !lastModifiedRE.MatchString(e.LastCommit.Date) || e.LastCommit.Title == "" {
			t.Fatalf("entry %+v", e)
		}
		if (e.Type == "file") != (e.Security != nil) {
			t.Fatalf("securityFileStatus on %+v", e)
		}
		last[e.Path] = e.LastCommit.ID
	}
	if last["config.json"] != second || last["tokenizer/vocab.txt"] != first || last["tokenizer"] != first {
		t.Fatalf("lastCommit %v", last)
	}
	if _, ok := last["empty.txt"]; ok {
		t.Fatal("deleted file listed")
	}
	// The old commit still has the old content.
	get(t, fileURL(h, first, "config.json")).wantStatus(t, 200).wantBody(t, configJSON)
	get(t, fileURL(h, second, "empty.txt")).wantError(t, 404, hf.CodeEntryNotFound)
}

func TestPathsInfo(t *testing.T) {
	h, commit := fixture(t)
	h.SetRef(hf.Model, modelID, "refs/pr/1", "main")
	for _, rev := range []string{"main", commit, "refs%2Fpr%2F1"} {
		u := h.URL() + "/api/models/" + modelID + "/paths-info/" + rev
		form := do(t, nil, http.MethodPost, u, strings.NewReader("paths=config.json&paths=nope&paths=model.safetensors&paths=tokenizer&expand=False"),
			"Content-Type: application/x-www-form-urlencoded").wantStatus(t, 200)
		var fromForm, fromJSON, tree []treeEntry
		form.json(t, &fromForm)
		body, _ := json.Marshal(map[string]any{"paths": []string{"config.json", "nope", "model.safetensors", "tokenizer"}, "expand": false})
		do(t, nil, http.MethodPost, u, strings.NewReader(string(body)), "Content-Type: application/json").wantStatus(t, 200).json(t, &fromJSON)
		if !reflect.DeepEqual(fromForm, fromJSON) || !reflect.DeepEqual(paths(fromForm), []string{"config.json", "model.safetensors", "tokenizer"}) {
			t.Fatalf("form %+v json %+v", fromForm, fromJSON)
		}
		get(t, h.URL()+"/api/models/"+modelID+"/tree/"+commit).json(t, &tree)
		byPath := map[string]treeEntry{}
		for _, e := range tree {
			byPath[e.Path] = e
		}
		for _, e := range fromForm {
			if !reflect.DeepEqual(e, byPath[e.Path]) {
				t.Fatalf("paths-info %+v != tree %+v", e, byPath[e.Path])
			}
		}
		// expand adds lastCommit.
		var exp []treeEntry
		do(t, nil, http.MethodPost, u, strings.NewReader(`{"paths":["config.json"],"expand":true}`), "Content-Type: application/json").json(t, &exp)
		if len(exp) != 1 || exp[0].LastCommit == nil || exp[0].LastCommit.ID != commit {
			t.Fatalf("expand %+v", exp)
		}
		do(t, nil, http.MethodPost, u, strings.NewReader("paths=config.json&expand=True"), "Content-Type: application/x-www-form-urlencoded").json(t, &exp)
		if len(exp) != 1 || exp[0].LastCommit == nil {
			t.Fatalf("form expand %+v", exp)
		}
	}
	u := h.URL() + "/api/models/" + modelID + "/paths-info/main"
	get(t, u).wantStatus(t, http.StatusMethodNotAllowed)
	do(t, nil, http.MethodPost, u, strings.NewReader("{bad"), "Content-Type: application/json").wantStatus(t, 400)
	do(t, nil, http.MethodPost, h.URL()+"/api/models/"+modelID+"/paths-info/nope", strings.NewReader("paths=a"),
		"Content-Type: application/x-www-form-urlencoded").wantError(t, 404, hf.CodeRevisionNotFound)
}

func TestRefsAndCommits(t *testing.T) {
	h, first := fixture(t)
	second := h.Commit(hf.Model, modelID, "main", []File{{Path: "x", Data: []byte("x")}}, nil)
	pr := h.Commit(hf.Model, modelID, "refs/pr/1", []File{{Path: "y", Data: []byte("y")}}, nil)
	h.SetRef(hf.Model, modelID, "v1.0", first)
	h.SetRef(hf.Model, modelID, "refs/convert/parquet", second)
	h.SetRef(hf.Model, modelID, "release/2", first)
	type ref struct{ Name, Ref, TargetCommit string }
	var refs struct {
		Branches, Tags, Converts []ref
		PullRequests             []ref `json:"pullRequests"`
	}
	get(t, h.URL()+"/api/models/"+modelID+"/refs").wantStatus(t, 200).json(t, &refs)
	want := []ref{{"main", "refs/heads/main", second}, {"release/2", "refs/heads/release/2", first}}
	if !reflect.DeepEqual(refs.Branches, want) || !reflect.DeepEqual(refs.Tags, []ref{{"v1.0", "refs/tags/v1.0", first}}) ||
		!reflect.DeepEqual(refs.Converts, []ref{{"parquet", "refs/convert/parquet", second}}) || refs.PullRequests != nil {
		t.Fatalf("refs %+v", refs)
	}
	get(t, h.URL()+"/api/models/"+modelID+"/refs?include_prs=1").json(t, &refs)
	if !reflect.DeepEqual(refs.PullRequests, []ref{{"refs/pr/1", "refs/pr/1", pr}}) {
		t.Fatalf("prs %+v", refs.PullRequests)
	}
	if h.Ref(hf.Model, modelID, "release/2") != first || h.Ref(hf.Model, modelID, "refs/pr/1") != pr || h.Ref(hf.Model, modelID, "x") != "" {
		t.Fatal("Ref")
	}
	h.DeleteRef(hf.Model, modelID, "v1.0")
	head(t, fileURL(h, "v1.0", "config.json")).wantError(t, 404, hf.CodeRevisionNotFound)

	var commits []struct {
		ID, Title, Date string
		Authors         []map[string]any
	}
	get(t, h.URL()+"/api/models/"+modelID+"/commits/refs%2Fpr%2F1").wantStatus(t, 200).json(t, &commits)
	if len(commits) != 3 || commits[0].ID != pr || commits[1].ID != second || commits[2].ID != first || !lastModifiedRE.MatchString(commits[0].Date) {
		t.Fatalf("commits %+v", commits)
	}
	h.SetPageSize(2)
	r := get(t, h.URL()+"/api/models/"+modelID+"/commits/refs%2Fpr%2F1").wantStatus(t, 200)
	r.json(t, &commits)
	if len(commits) != 2 || !strings.HasSuffix(r.Header.Get("Link"), `>; rel="next"`) {
		t.Fatalf("page 1: %d, Link %q", len(commits), r.Header.Get("Link"))
	}
}
