package e2e

// One test per applicable trap of the protocol's "Traps a caching proxy must
// handle" checklist, against a node in process and the fake Hub.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
)

// pyMeta is what huggingface_hub's get_hf_file_metadata reads from a HEAD.
type pyMeta struct {
	Status int
	Commit string
	ETag   string
	Size   int64
	Loc    string
}

// pythonHead does what huggingface_hub does: HEAD with Accept-Encoding:
// identity, follow only relative redirects (path replaced, query dropped),
// then read X-Repo-Commit, X-Linked-Etag or ETag, X-Linked-Size or
// Content-Length.
func pythonHead(t *testing.T, rawURL, token string) pyMeta {
	t.Helper()
	u, _ := url.Parse(rawURL)
	for hop := 0; ; hop++ {
		hdr := map[string]string{"Accept-Encoding": "identity"}
		if token != "" {
			hdr["Authorization"] = "Bearer " + token
		}
		resp, _ := do(t, http.MethodHead, u.String(), hdr)
		loc := resp.Header.Get("Location")
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && strings.HasPrefix(loc, "/") && hop < 10 {
			lu, _ := url.Parse(loc)
			u.Path, u.RawPath = lu.Path, lu.RawPath
			continue
		}
		m := pyMeta{Status: resp.StatusCode, Commit: resp.Header.Get(hf.HeaderRepoCommit), Loc: loc}
		m.ETag = hf.NormalizeETag(resp.Header.Get(hf.HeaderLinkedETag))
		if m.ETag == "" {
			m.ETag = hf.NormalizeETag(resp.Header.Get("ETag"))
		}
		sz := resp.Header.Get(hf.HeaderLinkedSize)
		if sz == "" {
			sz = resp.Header.Get("Content-Length")
		}
		m.Size, _ = strconv.ParseInt(sz, 10, 64)
		return m
	}
}

func resolveURL(base string, typ hf.RepoType, id, rev, path string) string {
	return base + hf.Repo{Type: typ, ID: id}.FilePath("resolve", hf.Revision(rev), hf.Path(path))
}

// Traps 1, 2, 3, 10: the headers a Python client reads match the Hub's, for
// a regular file, an LFS file, a file in a subfolder and a unicode name; LFS
// files are answered 200, never with the Hub's CDN redirect.
func TestTrapHeadersMatchHub(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	for _, p := range []string{"config.json", "model.safetensors", "nested/deeper/notes.md", "sub dir/ünïcode file.txt", "weights+v2.bin", "xet.bin"} {
		t.Run(p, func(t *testing.T) {
			want := pythonHead(t, resolveURL(hub.URL(), hf.Model, modelID, "main", p), "")
			if want.Commit == "" || want.ETag == "" {
				t.Fatalf("fake hub metadata incomplete: %+v", want)
			}
			for _, round := range []string{"cold", "warm"} {
				got := pythonHead(t, resolveURL(s.URL, hf.Model, modelID, "main", p), "")
				if got.Status != http.StatusOK || got.Loc != "" {
					t.Fatalf("%s: status %d location %q, want 200 without redirect", round, got.Status, got.Loc)
				}
				if got.Commit != want.Commit || got.ETag != want.ETag || got.Size != want.Size {
					t.Fatalf("%s: cache says %+v, hub says %+v", round, got, want)
				}
			}
			resp, body := do(t, http.MethodGet, resolveURL(s.URL, hf.Model, modelID, "main", p), nil)
			if resp.StatusCode != http.StatusOK || sha(body) != sha(content(t, hub, hf.Model, modelID, "main", p)) {
				t.Fatalf("GET: status %d, %d bytes differ from the hub's", resp.StatusCode, len(body))
			}
			if resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
				t.Fatalf("GET Content-Length %q for %d bytes", resp.Header.Get("Content-Length"), len(body))
			}
		})
	}
}

// Trap 10: X-Repo-Commit agrees with /api/models/{id}/revision/main's sha.
func TestTrapCommitAgreesWithInfo(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	m := pythonHead(t, resolveURL(s.URL, hf.Model, modelID, "main", "config.json"), "")
	_, body := do(t, http.MethodGet, s.URL+"/api/models/"+modelID+"/revision/main", nil)
	var info struct {
		SHA      string `json:"sha"`
		ID       string `json:"id"`
		Siblings []struct {
			RFilename string `json:"rfilename"`
		} `json:"siblings"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("info JSON: %v: %s", err, body)
	}
	if info.SHA != m.Commit || info.ID != modelID || len(info.Siblings) != len(modelFiles()) {
		t.Fatalf("info sha %s id %s siblings %d; resolve commit %s", info.SHA, info.ID, len(info.Siblings), m.Commit)
	}
	// An empty file: 200 with Content-Length 0; a Range gets what the Hub
	// (net/http's ServeContent) answers: the empty file, not a 416.
	u := resolveURL(s.URL, hf.Model, edgeID, "main", "empty.txt")
	if m, want := pythonHead(t, u, ""), pythonHead(t, resolveURL(hub.URL(), hf.Model, edgeID, "main", "empty.txt"), ""); m != want {
		t.Fatalf("empty file: cache %+v, hub %+v", m, want)
	}
	if resp, body := do(t, http.MethodGet, u, nil); resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != "0" {
		t.Fatalf("empty file GET: %d %q", resp.StatusCode, body)
	}
	edgeCommit := pythonHead(t, resolveURL(hub.URL(), hf.Model, edgeID, "main", "empty.txt"), "").Commit
	hubResp, _ := do(t, http.MethodGet, resolveURL(hub.URL(), hf.Model, edgeID, edgeCommit, "empty.txt"), map[string]string{"Range": "bytes=0-0"})
	if resp, _ := do(t, http.MethodGet, u, map[string]string{"Range": "bytes=0-0"}); resp.StatusCode != hubResp.StatusCode || resp.Header.Get("Content-Range") != hubResp.Header.Get("Content-Range") {
		t.Fatalf("empty file Range: %d %q, hub %d %q", resp.StatusCode, resp.Header.Get("Content-Range"), hubResp.StatusCode, hubResp.Header.Get("Content-Range"))
	}
	// After a new commit, both move together once the ref TTL allows.
	newCommit := hub.Commit(hf.Model, modelID, "main", nil, []string{"nested/deeper/notes.md"})
	if newCommit == m.Commit {
		t.Fatal("fake hub did not make a new commit")
	}
}

// Trap 4, 5: the Hub's relative 307s (resolve-cache for regular files,
// renamed repos, canonical single-segment ids) are followed inside the
// cache; the client sees a 200.
func TestTrapRelativeRedirectsFollowed(t *testing.T) {
	hub := startHub(t)
	hub.Rename(hf.Model, modelID, "acme/renamed-model")
	hub.Alias(hf.Model, "acme/renamed-model", "tinymodel")
	s := newStack(t, hub)
	want := content(t, hub, hf.Model, "acme/renamed-model", "main", "config.json")
	for _, u := range []string{
		resolveURL(s.URL, hf.Model, modelID, "main", "config.json"),
		resolveURL(s.URL, hf.Model, "tinymodel", "main", "config.json"),
		resolveURL(s.URL, hf.Model, "acme/renamed-model", "main", "config.json"),
	} {
		resp, body := do(t, http.MethodGet, u, nil)
		if resp.StatusCode != http.StatusOK || string(body) != string(want) {
			t.Fatalf("GET %s: %d %q", u, resp.StatusCode, body)
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Fatalf("GET %s: Location %q leaked", u, loc)
		}
	}
}

var linkNextRE = regexp.MustCompile(`^<(https?://[^>]+)>;\s+rel="next"$`)

// Trap 6: tree pagination links are absolute URLs on the cache, in the
// spelling hf.js parses, and following them lists every file exactly once
// (with its xetHash for Xet files only, Xet being native).
func TestTrapTreePaginationRewritten(t *testing.T) {
	hub := startHub(t)
	hub.SetPageSize(7)
	s := newStack(t, hub)
	next := s.URL + "/api/models/" + modelID + "/tree/main?recursive=True&expand=False"
	seen := map[string]bool{}
	pages := 0
	for next != "" {
		resp, body := do(t, http.MethodGet, next, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, resp.StatusCode, body)
		}
		var entries []map[string]any
		if err := json.Unmarshal(body, &entries); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			// Xet is native (the default): only Xet files carry their xetHash.
			if xh, ok := e["xetHash"]; ok {
				if fi := hub.FileInfo(hf.Model, modelID, "main", fmt.Sprint(e["path"])); !fi.Xet || xh != fi.XetHash {
					t.Fatalf("tree entry %v: xetHash %v, the Hub's %q", e, xh, fi.XetHash)
				}
			}
			if e["type"] == "file" {
				p := e["path"].(string)
				if seen[p] {
					t.Fatalf("%s listed twice", p)
				}
				seen[p] = true
			}
		}
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			m := linkNextRE.FindStringSubmatch(link)
			if m == nil || !strings.HasPrefix(m[1], s.URL+"/") {
				t.Fatalf("Link %q is not an absolute next link on the cache", link)
			}
			next = m[1]
		}
		pages++
	}
	if len(seen) != len(modelFiles()) || pages < 3 {
		t.Fatalf("listed %d files in %d pages, want %d files in several pages", len(seen), pages, len(modelFiles()))
	}
}

// Traps 7, 19, 20: ranges are exact on a hit — 206 with Content-Range,
// clamped ends, suffixes, 416 with bytes */N — and a full GET is exactly 200.
func TestTrapRanges(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	p := "model.safetensors"
	full := content(t, hub, hf.Model, modelID, "main", p)
	size := int64(len(full))
	u := resolveURL(s.URL, hf.Model, modelID, "main", p)
	for _, round := range []string{"cold", "warm"} {
		cases := []struct {
			rng        string
			status     int
			start, end int64 // expected slice [start, end)
		}{
			{"", 200, 0, size},
			{"bytes=0-0", 206, 0, 1},
			{"bytes=100-199", 206, 100, 200},
			{fmt.Sprintf("bytes=%d-", size/2), 206, size / 2, size},
			{fmt.Sprintf("bytes=%d-%d", size-10, size), 206, size - 10, size}, // hf_transfer asks for end = size
			{"bytes=-5", 206, size - 5, size},
			{fmt.Sprintf("bytes=%d-", size), 416, 0, 0},
		}
		for _, c := range cases {
			hdr := map[string]string{"Accept-Encoding": "gzip"}
			if c.rng != "" {
				hdr["Range"] = c.rng
			}
			resp, body := do(t, http.MethodGet, u, hdr)
			if resp.StatusCode != c.status {
				t.Fatalf("%s %q: status %d, want %d", round, c.rng, resp.StatusCode, c.status)
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" {
				t.Fatalf("%s %q: Content-Encoding %q", round, c.rng, ce)
			}
			switch c.status {
			case 206:
				wantCR := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end-1, size)
				if cr := resp.Header.Get("Content-Range"); cr != wantCR {
					t.Fatalf("%s %q: Content-Range %q, want %q", round, c.rng, cr, wantCR)
				}
				fallthrough
			case 200:
				if string(body) != string(full[c.start:c.end]) {
					t.Fatalf("%s %q: wrong bytes", round, c.rng)
				}
			case 416:
				if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", size) {
					t.Fatalf("%s %q: Content-Range %q", round, c.rng, cr)
				}
			}
		}
	}
	// If-None-Match on the ETag: 304 (the Hub does it for resolve).
	m := pythonHead(t, u, "")
	resp, _ := do(t, http.MethodGet, u, map[string]string{"If-None-Match": `"` + m.ETag + `"`})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: status %d, want 304", resp.StatusCode)
	}
}

// Traps 8, 9: HEAD reports the raw size and never downloads the body.
func TestTrapHeadDoesNotFetchBody(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	u := resolveURL(s.URL, hf.Model, bigID, "main", "big.bin")
	resp, _ := do(t, http.MethodHead, u, map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != strconv.Itoa(bigSize) || resp.Header.Get(hf.HeaderLinkedSize) != strconv.Itoa(bigSize) {
		t.Fatalf("HEAD: %d Content-Length %q X-Linked-Size %q", resp.StatusCode, resp.Header.Get("Content-Length"), resp.Header.Get(hf.HeaderLinkedSize))
	}
	info := hub.Stats()
	if n := info.BodyFetches(sha(content(t, hub, hf.Model, bigID, "main", "big.bin"))); n != 0 {
		t.Fatalf("HEAD of a cold file fetched the body %d times", n)
	}
}

// Trap 11: errors carry the Hub's X-Error-Code, message and JSON body;
// EntryNotFound carries X-Repo-Commit.
func TestTrapErrorHeaders(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	cases := []struct {
		name, url, token string
		status           int
		code             string
		commit           bool
	}{
		{"entry", resolveURL(s.URL, hf.Model, modelID, "main", "missing.json"), "", 404, hf.CodeEntryNotFound, true},
		{"entry again (cached absence)", resolveURL(s.URL, hf.Model, modelID, "main", "missing.json"), "", 404, hf.CodeEntryNotFound, true},
		{"revision", resolveURL(s.URL, hf.Model, modelID, "nope", "config.json"), "", 404, hf.CodeRevisionNotFound, false},
		{"repo anonymous", resolveURL(s.URL, hf.Model, "acme/nothing", "main", "config.json"), "", 401, hf.CodeRepoNotFound, false},
		{"repo with token", resolveURL(s.URL, hf.Model, "acme/nothing", "main", "config.json"), otherToken, 404, hf.CodeRepoNotFound, false},
		{"private anonymous", resolveURL(s.URL, hf.Model, privateID, "main", "config.json"), "", 401, hf.CodeRepoNotFound, false},
		{"gated anonymous", resolveURL(s.URL, hf.Model, gatedID, "main", "config.json"), "", 401, hf.CodeGatedRepo, false},
		{"gated not approved", resolveURL(s.URL, hf.Model, gatedID, "main", "config.json"), otherToken, 403, hf.CodeGatedRepo, false},
		{"write method", resolveURL(s.URL, hf.Model, modelID, "main", "config.json"), "", 405, "MethodNotAllowed", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := http.MethodGet
			if c.status == 405 {
				method = http.MethodPut
			}
			hdr := map[string]string{}
			if c.token != "" {
				hdr["Authorization"] = "Bearer " + c.token
			}
			resp, body := do(t, method, c.url, hdr)
			if resp.StatusCode != c.status || resp.Header.Get(hf.HeaderErrorCode) != c.code {
				t.Fatalf("status %d code %q, want %d %q (%s)", resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode), c.status, c.code, body)
			}
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) != nil || e.Error == "" || resp.Header.Get(hf.HeaderErrorMessage) == "" {
				t.Fatalf("error body %q / message %q not in the Hub's shape", body, resp.Header.Get(hf.HeaderErrorMessage))
			}
			if hasCommit := hf.IsCommit(resp.Header.Get(hf.HeaderRepoCommit)); hasCommit != c.commit {
				t.Fatalf("X-Repo-Commit %q", resp.Header.Get(hf.HeaderRepoCommit))
			}
		})
	}
}

// Trap 13: with the remote in xet: hidden mode, Xet is hidden completely.
func TestTrapXetHidden(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub, xetHidden)
	u := resolveURL(s.URL, hf.Model, modelID, "main", "xet.bin")
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		resp, _ := do(t, method, u, map[string]string{"Accept": "application/vnd.xet-fileinfo+json, */*", "Range": "bytes=0-0"})
		for k := range resp.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-xet") {
				t.Fatalf("%s: header %s leaked", method, k)
			}
		}
		if strings.Contains(resp.Header.Get("Link"), "xet") || strings.Contains(resp.Header.Get("Content-Type"), "xet") {
			t.Fatalf("%s: Xet Link/Content-Type leaked: %v", method, resp.Header)
		}
	}
	resp, body := do(t, http.MethodPost, s.URL+"/api/models/"+modelID+"/paths-info/main", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	_ = body
	if resp.StatusCode != 200 {
		// paths-info with no paths is fine either way; the JSON form is tested below.
		t.Logf("empty paths-info: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/models/"+modelID+"/paths-info/main", strings.NewReader(`{"paths":["xet.bin","config.json"],"expand":true}`))
	req.Header.Set("Content-Type", "application/json")
	r2, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	var entries []map[string]any
	if err := json.NewDecoder(r2.Body).Decode(&entries); err != nil || len(entries) != 2 {
		t.Fatalf("paths-info: %v, %d entries", err, len(entries))
	}
	for _, e := range entries {
		if _, ok := e["xetHash"]; ok {
			t.Fatalf("xetHash leaked in paths-info: %v", e)
		}
	}
	tok, _ := do(t, http.MethodGet, s.URL+"/api/models/"+modelID+"/xet-read-token/main", nil)
	if tok.StatusCode < 400 {
		t.Fatalf("xet-read-token answered %d", tok.StatusCode)
	}
}

// Traps 14, 15, 16, 18: revisions in every spelling, paths with spaces,
// "+" and unicode, query booleans, paths-info bodies, duplicate slashes.
func TestTrapParsing(t *testing.T) {
	hub := startHub(t)
	mainCommit := pythonHead(t, resolveURL(hub.URL(), hf.Model, modelID, "main", "config.json"), "").Commit
	hub.SetRef(hf.Model, modelID, "refs/pr/1", mainCommit)
	hub.SetRef(hf.Model, modelID, "v1.0", mainCommit)
	hub.SetRef(hf.Model, modelID, "feature/x", mainCommit)
	hub.SetRef(hf.Dataset, datasetID, "refs/convert/parquet", hub.Commit(hf.Dataset, datasetID, "parquet-tmp", []fakehub.File{{Path: "default/train/0000.parquet", Data: []byte("PAR1")}}, nil))
	s := newStack(t, hub)
	for _, u := range []string{
		s.URL + "/" + modelID + "/resolve/refs%2Fpr%2F1/config.json",
		s.URL + "/" + modelID + "/resolve/refs/pr/1/config.json",
		s.URL + "/" + modelID + "/resolve/v1.0/config.json",
		s.URL + "/" + modelID + "/resolve/feature%2Fx/config.json",
		s.URL + "/" + modelID + "/resolve/HEAD/config.json",
		s.URL + "/" + modelID + "/resolve/" + mainCommit + "/config.json",
		s.URL + "/" + modelID + "/resolve/" + mainCommit[:7] + "/config.json",
		s.URL + "//" + modelID + "/resolve/main/config.json",
		s.URL + "/" + modelID + "//resolve/main//config.json",
		s.URL + "/" + modelID + "/resolve/main/config.json?download=true",
		s.URL + "/" + modelID + "/resolve/main/sub%20dir/%C3%BCn%C3%AFcode%20file.txt",
		s.URL + "/" + modelID + "/resolve/main/weights%2Bv2.bin",
		s.URL + "/" + modelID + "/resolve/main/weights+v2.bin",
		s.URL + "/datasets/" + datasetID + "/resolve/refs%2Fconvert%2Fparquet/default/train/0000.parquet",
		s.URL + "/datasets/" + datasetID + "/resolve/refs/convert/parquet/default/train/0000.parquet",
	} {
		m := pythonHead(t, u, "")
		if m.Status != 200 || !hf.IsCommit(m.Commit) || m.ETag == "" {
			t.Errorf("HEAD %s: %+v", u, m)
		}
		resp, _ := do(t, http.MethodGet, u, nil)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", u, resp.StatusCode)
		}
	}
	for _, u := range []string{
		s.URL + "/api/models/" + modelID + "/tree/main/sub%20dir?recursive=True",
		s.URL + "/api/models/" + modelID + "/tree/main/nested%2Fdeeper?recursive=1",
		s.URL + "/api/models/" + modelID + "/tree/refs/pr/1/nested/deeper?recursive=true",
		s.URL + "/api/models/" + modelID + "/tree/refs%2Fpr%2F1?recursive=false",
		s.URL + "//api/models/" + modelID + "/tree/main",
		s.URL + "/api/models/" + modelID + "/revision/HEAD?expand=sha&expand=private",
		s.URL + "/api/models/" + modelID + "?expand[]=likes",
		s.URL + "/api/datasets/" + datasetID + "/tree/refs%2Fconvert%2Fparquet?recursive=True",
	} {
		resp, body := do(t, http.MethodGet, u, nil)
		if resp.StatusCode != 200 || !json.Valid(body) {
			t.Errorf("GET %s: %d %s", u, resp.StatusCode, body)
		}
	}
	// paths-info, form (Python) and JSON (hf.js).
	for _, c := range []struct{ ctype, body string }{
		{"application/x-www-form-urlencoded", "paths=config.json&paths=sub+dir%2F%C3%BCn%C3%AFcode+file.txt&expand=False"},
		{"application/json", `{"paths":["config.json","sub dir/ünïcode file.txt"],"expand":true}`},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/models/"+modelID+"/paths-info/main", strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var entries []map[string]any
		err = json.NewDecoder(resp.Body).Decode(&entries)
		resp.Body.Close()
		if err != nil || len(entries) != 2 {
			t.Errorf("paths-info %s: %v %d entries", c.ctype, err, len(entries))
		}
	}
}

// Trap 23 and pass-through: other API routes reach the Hub with the
// caller's token; write methods are refused.
func TestTrapPassthrough(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	resp, body := do(t, http.MethodGet, s.URL+"/api/whoami-v2", map[string]string{"Authorization": "Bearer " + goodToken})
	if resp.StatusCode != 200 || !strings.Contains(string(body), "alice") {
		t.Fatalf("whoami: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, http.MethodGet, s.URL+"/api/models/"+modelID+"/refs", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("refs: %d", resp.StatusCode)
	}
	resp, _ = do(t, http.MethodGet, s.URL+"/api/agent-harnesses", nil)
	if resp.StatusCode >= 500 {
		t.Fatalf("agent-harnesses: %d", resp.StatusCode)
	}
	resp, _ = do(t, http.MethodPost, s.URL+"/api/repos/create", nil)
	if resp.StatusCode != 405 || resp.Header.Get(hf.HeaderErrorCode) == "" {
		t.Fatalf("POST /api/repos/create: %d", resp.StatusCode)
	}
	resp, body = do(t, http.MethodGet, s.URL+"/"+modelID+"/raw/main/model.safetensors", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "version https://git-lfs.github.com/spec/v1") {
		t.Fatalf("raw LFS pointer: %d %q", resp.StatusCode, body)
	}
	resp, _ = do(t, http.MethodOptions, s.URL+"/"+modelID+"/resolve/main/config.json", map[string]string{"Origin": "http://example.test", "Access-Control-Request-Method": "GET"})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Fatalf("CORS preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// CORS headers go to a request with Origin, as from the Hub; every
	// answer varies on Origin once (TestTrapCORSInBrowser drives a
	// browser). The caller never sees an upstream's own CORS headers, and
	// an upstream's Vary joins the cache's.
	checkCORS := func(u, origin, upstreamVary string) *http.Response {
		t.Helper()
		hdr := map[string]string{}
		if origin != "" {
			hdr["Origin"] = origin
		}
		resp, _ := do(t, http.MethodGet, u, hdr)
		acao, expose := resp.Header.Values("Access-Control-Allow-Origin"), strings.Join(resp.Header.Values("Access-Control-Expose-Headers"), ",")
		want := []string{"*"}
		if origin == "" {
			want = nil
		}
		if !slices.Equal(acao, want) || strings.Contains(expose, "X-Upstream-Only") || (origin != "") != strings.Contains(expose, "X-Linked-Size") {
			t.Errorf("GET %s with Origin %q: %d, Access-Control-Allow-Origin %q (want %q), expose %q", u, origin, resp.StatusCode, acao, want, expose)
		}
		vary := strings.Join(resp.Header.Values("Vary"), ",")
		if strings.Count(vary, "Origin") != 1 || !strings.Contains(vary, upstreamVary) {
			t.Errorf("GET %s with Origin %q: Vary %q, want Origin once and %q", u, origin, vary, upstreamVary)
		}
		return resp
	}
	refs := s.URL + "/api/models/" + modelID + "/refs"
	for _, origin := range []string{"", "http://example.test"} {
		for _, u := range []string{s.URL + "/" + modelID + "/resolve/main/config.json", refs, s.URL + "/" + modelID + "/resolve/main/no-such-file"} {
			checkCORS(u, origin, "")
		}
	}
	// An upstream that answers with CORS headers of its own whether or not
	// the request had an Origin (the passthrough forwards none): they were
	// for the cache, not for the caller.
	hub.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Access-Control-Allow-Origin", "https://huggingface.co")
		w.Header().Set("Access-Control-Expose-Headers", "X-Upstream-Only")
		w.Header().Set("Vary", "Accept-Encoding")
		return false
	})
	defer hub.SetFault(nil)
	for _, origin := range []string{"", "http://example.test"} {
		if resp := checkCORS(refs, origin, "Accept-Encoding"); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with Origin %q from an upstream sending its own CORS headers: %d", refs, origin, resp.StatusCode)
		}
	}
}

// Trap 13, native mode (the default): resolve of a Xet file, HEAD and GET,
// plain and in the "fileinfo" form, advertises Xet with X-Xet-Hash and both
// Links, absolute and on the cache (never the Hub or its CAS), and never
// answers a 3xx; the fileinfo form carries what @huggingface/hub reads;
// tree and paths-info keep xetHash; a non-Xet LFS file advertises no Xet.
func TestTrapXetNative(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	fi := hub.FileInfo(hf.Model, modelID, "main", "xet.bin")
	if !fi.Xet || !hf.IsXetHash(fi.XetHash) {
		t.Fatalf("fixture: xet.bin is not Xet-backed: %+v", fi)
	}
	u := resolveURL(s.URL, hf.Model, modelID, "main", "xet.bin")
	checkLinks := func(what string, h http.Header) {
		t.Helper()
		if got := h.Get(hf.HeaderXetHash); got != fi.XetHash {
			t.Fatalf("%s: X-Xet-Hash %q, want %s", what, got, fi.XetHash)
		}
		links := map[string]string{}
		for _, m := range xetLinkRE.FindAllStringSubmatch(strings.Join(h.Values("Link"), ", "), -1) {
			links[m[2]] = m[1]
		}
		auth, recon := links["xet-auth"], links["xet-reconstruction-info"]
		if !strings.HasPrefix(auth, s.URL+"/api/models/"+modelID+"/xet-read-token/") {
			t.Fatalf("%s: xet-auth Link %q is not the cache's token route (Link: %q)", what, auth, h.Values("Link"))
		}
		if recon != s.URL+"/v1/reconstructions/"+fi.XetHash {
			t.Fatalf("%s: xet-reconstruction-info Link %q, want %s", what, recon, s.URL+"/v1/reconstructions/"+fi.XetHash)
		}
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, hub.URL()) || strings.Contains(v, hub.CDNURL()) || strings.Contains(v, hub.CASURL()) {
					t.Fatalf("%s: header %s: %q names the Hub", what, k, v)
				}
			}
		}
	}
	for _, round := range []string{"cold", "warm"} {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			what := round + " " + method
			resp, body := do(t, method, u, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d (Location %q)", what, resp.StatusCode, resp.Header.Get("Location"))
			}
			checkLinks(what, resp.Header)
			if method == http.MethodGet && sha(body) != fi.SHA256 {
				t.Fatalf("%s: %d bytes, not the file's", what, len(body))
			}
			// The fileinfo form, as @huggingface/hub's fileDownloadInfo asks.
			resp, _ = do(t, method, u, map[string]string{"Accept": "application/vnd.xet-fileinfo+json, */*", "Range": "bytes=0-0"})
			what += " fileinfo"
			if resp.StatusCode >= 300 {
				t.Fatalf("%s: status %d", what, resp.StatusCode)
			}
			checkLinks(what, resp.Header)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, hf.XetFileInfoType) {
				t.Fatalf("%s: Content-Type %q", what, ct)
			}
			if sz := resp.Header.Get(hf.HeaderLinkedSize); sz != strconv.FormatInt(fi.Size, 10) {
				t.Fatalf("%s: X-Linked-Size %q, want %d", what, sz, fi.Size)
			}
			etag := resp.Header.Get(hf.HeaderLinkedETag)
			if etag == "" {
				etag = resp.Header.Get("ETag")
			}
			if hf.NormalizeETag(etag) != fi.SHA256 {
				t.Fatalf("%s: X-Linked-ETag %q / ETag %q, want %s", what, resp.Header.Get(hf.HeaderLinkedETag), resp.Header.Get("ETag"), fi.SHA256)
			}
		}
	}
	// A plain LFS file and a regular file: no Xet.
	for _, p := range []string{"model.safetensors", "config.json"} {
		for _, hdr := range []map[string]string{nil, {"Accept": "application/vnd.xet-fileinfo+json, */*", "Range": "bytes=0-0"}} {
			resp, _ := do(t, http.MethodGet, resolveURL(s.URL, hf.Model, modelID, "main", p), hdr)
			if resp.StatusCode >= 300 || resp.Header.Get(hf.HeaderXetHash) != "" || strings.Contains(resp.Header.Get("Link"), "xet") || strings.Contains(resp.Header.Get("Content-Type"), "xet") {
				t.Fatalf("%s (%v): %d, Xet advertised: %v", p, hdr, resp.StatusCode, resp.Header)
			}
		}
	}
	// Listings keep xetHash for the Xet file only.
	listed := map[string]any{}
	resp, body := do(t, http.MethodGet, s.URL+"/api/models/"+modelID+"/tree/main?recursive=true", nil)
	var entries []map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &entries) != nil {
		t.Fatalf("tree: %d %s", resp.StatusCode, body)
	}
	for _, e := range entries {
		listed[e["path"].(string)] = e["xetHash"]
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/models/"+modelID+"/paths-info/main", strings.NewReader(`{"paths":["xet.bin","model.safetensors"],"expand":true}`))
	req.Header.Set("Content-Type", "application/json")
	r2, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	var infos []map[string]any
	if err := json.NewDecoder(r2.Body).Decode(&infos); err != nil || len(infos) != 2 {
		t.Fatalf("paths-info: %v, %d entries", err, len(infos))
	}
	for what, m := range map[string]map[string]any{"tree": listed, "paths-info": {infos[0]["path"].(string): infos[0]["xetHash"], infos[1]["path"].(string): infos[1]["xetHash"]}} {
		if m["xet.bin"] != fi.XetHash {
			t.Errorf("%s: xet.bin xetHash %v, want %s", what, m["xet.bin"], fi.XetHash)
		}
		if m["model.safetensors"] != nil {
			t.Errorf("%s: model.safetensors xetHash %v", what, m["model.safetensors"])
		}
	}
	// The token route names the cache as the CAS, in its JSON and headers.
	tok, tbody := do(t, http.MethodGet, s.URL+"/api/models/"+modelID+"/xet-read-token/main", nil)
	var tj struct {
		AccessToken string `json:"accessToken"`
		Exp         int64  `json:"exp"`
		CASURL      string `json:"casUrl"`
	}
	if tok.StatusCode != 200 || json.Unmarshal(tbody, &tj) != nil || tj.CASURL != s.URL || tok.Header.Get(hf.HeaderXetCASURL) != s.URL ||
		tj.AccessToken == "" || tok.Header.Get(hf.HeaderXetAccessToken) != tj.AccessToken || tok.Header.Get(hf.HeaderXetExpiration) != strconv.FormatInt(tj.Exp, 10) {
		t.Fatalf("xet-read-token: %d %s %v", tok.StatusCode, tbody, tok.Header)
	}
}

var xetLinkRE = regexp.MustCompile(`<([^>]+)>;\s*rel="([^"]+)"`)
