package fakehub

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

var model = hf.Repo{Type: hf.Model, ID: modelID}

// fileURL is the URL huggingface_hub builds for a file.
func fileURL(h *Hub, rev, path string) string {
	return h.URL() + model.FilePath("resolve", hf.Revision(rev), hf.Path(path))
}

func TestResolveRegularByCommit(t *testing.T) {
	h, commit := fixture(t)
	for _, tc := range []struct {
		path, ctype, disposition string
	}{
		{"config.json", "text/plain; charset=utf-8", `inline; filename*=UTF-8''config.json; filename="config.json";`},
		{"sub dir/ünïcode file+1.txt", "text/plain; charset=utf-8", `inline; filename*=UTF-8''%C3%BCn%C3%AFcode%20file+1.txt; filename="_n_code file+1.txt";`},
		{"tokenizer/vocab.txt", "text/plain; charset=utf-8", `inline; filename*=UTF-8''vocab.txt; filename="vocab.txt";`},
		{"empty.txt", "text/plain; charset=utf-8", `inline; filename*=UTF-8''empty.txt; filename="empty.txt";`},
		{"big.bin", "application/octet-stream", `inline; filename*=UTF-8''big.bin; filename="big.bin";`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			fi := h.FileInfo(hf.Model, modelID, "main", tc.path)
			want := readAll(t, h.Content(hf.Model, modelID, "main", tc.path), fi.Size)
			if fi.Commit != commit || fi.GitSHA1 != hf.GitBlobSHA1(want) || fi.SHA256 != hf.SHA256Hex(want) || fi.Addr() != fi.GitSHA1 {
				t.Fatalf("FileInfo %+v inconsistent with content", fi)
			}
			for _, method := range []string{http.MethodHead, http.MethodGet} {
				r := do(t, nil, method, fileURL(h, commit, tc.path), nil).wantStatus(t, http.StatusOK)
				r.wantHeader(t, "ETag", `"`+hf.GitBlobSHA1(want)+`"`)
				r.wantHeader(t, hf.HeaderRepoCommit, commit)
				r.wantHeader(t, "Content-Length", strconv.Itoa(len(want)))
				r.wantHeader(t, "Accept-Ranges", "bytes")
				r.wantHeader(t, "Content-Type", tc.ctype)
				r.wantHeader(t, "Content-Disposition", tc.disposition)
				r.wantHeader(t, hf.HeaderLinkedETag, "")
				if r.Header.Get(hf.HeaderRequestID) == "" {
					t.Fatal("no X-Request-Id")
				}
				if method == http.MethodGet {
					r.wantBody(t, want)
				} else if len(r.body) != 0 {
					t.Fatal("HEAD has a body")
				}
			}
		})
	}
}

func TestResolveRawUnicodeURL(t *testing.T) {
	// hf.js puts the path raw into the URL; Go's client then percent-encodes it.
	h, commit := fixture(t)
	get(t, h.URL()+"/"+modelID+"/resolve/"+commit+"/sub dir/ünïcode file+1.txt").wantStatus(t, 200).wantBody(t, unicodeTxt)
	get(t, h.URL()+"/"+modelID+"/resolve/"+commit+"/sub%20dir/%C3%BCn%C3%AFcode%20file%2B1.txt").wantStatus(t, 200).wantBody(t, unicodeTxt)
	// An encoded "/" inside a path segment does not name a file.
	get(t, h.URL()+"/"+modelID+"/resolve/"+commit+"/tokenizer%2Fvocab.txt").wantError(t, 404, hf.CodeEntryNotFound)
}

func TestResolveCacheRedirect(t *testing.T) {
	h, commit := fixture(t)
	h.SetRef(hf.Model, modelID, "v1.0", "main")
	sha1 := hf.GitBlobSHA1(unicodeTxt)
	path := "sub dir/ünïcode file+1.txt"
	for _, rev := range []string{"main", "HEAD", "v1.0", commit[:7], commit[:12]} {
		t.Run(rev, func(t *testing.T) {
			for _, method := range []string{http.MethodHead, http.MethodGet} {
				r := do(t, nil, method, fileURL(h, rev, path), nil).wantStatus(t, http.StatusTemporaryRedirect)
				r.wantHeader(t, hf.HeaderRepoCommit, commit)
				r.wantHeader(t, "ETag", "") // metadata only on the final 200
				loc, err := url.Parse(r.Header.Get("Location"))
				if err != nil || loc.IsAbs() || loc.Host != "" {
					t.Fatalf("Location %q is not relative", r.Header.Get("Location"))
				}
				wantPath := "/api/resolve-cache/models/" + modelID + "/" + commit + "/sub%20dir/%C3%BCn%C3%AFcode%20file%2B1.txt"
				if loc.EscapedPath() != wantPath {
					t.Fatalf("Location path %q, want %q", loc.EscapedPath(), wantPath)
				}
				q := loc.Query()
				if q.Get("etag") != `"`+sha1+`"` {
					t.Fatalf("etag query %q", q.Get("etag"))
				}
				if _, ok := q["/"+modelID+"/resolve/"+rev+"/"+path]; !ok {
					t.Fatalf("query %v lacks the original path", q)
				}
				// Python follows with the path only; a browser keeps the query.
				for _, next := range []string{h.URL() + loc.EscapedPath(), h.URL() + loc.String()} {
					f := do(t, nil, method, next, nil).wantStatus(t, http.StatusOK)
					f.wantHeader(t, "ETag", `"`+sha1+`"`).wantHeader(t, hf.HeaderRepoCommit, commit)
					f.wantHeader(t, "Content-Length", strconv.Itoa(len(unicodeTxt)))
					if method == http.MethodGet {
						f.wantBody(t, unicodeTxt)
					}
				}
			}
		})
	}
	// The standard client follows the whole chain.
	r := do(t, http.DefaultClient, http.MethodGet, fileURL(h, "main", "config.json"), nil).wantStatus(t, 200)
	r.wantBody(t, configJSON)
	// It can be switched off.
	h.SetResolveCacheRedirect(false)
	get(t, fileURL(h, "main", "config.json")).wantStatus(t, 200).wantBody(t, configJSON)
}

func TestResolveLFS(t *testing.T) {
	h, commit := fixture(t)
	fi := h.FileInfo(hf.Model, modelID, "main", "model.safetensors")
	content := readAll(t, h.Content(hf.Model, modelID, "main", "model.safetensors"), fi.Size)
	if hf.SHA256Hex(content) != fi.SHA256 || !fi.LFS || fi.Addr() != fi.SHA256 {
		t.Fatalf("FileInfo %+v", fi)
	}
	pointer := lfsPointer(fi.SHA256, fi.Size)
	if fi.OID != hf.GitBlobSHA1(pointer) {
		t.Fatalf("OID %s is not the pointer's git sha1", fi.OID)
	}
	for _, rev := range []string{"main", commit} {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			r := do(t, nil, method, fileURL(h, rev, "model.safetensors"), nil).wantStatus(t, http.StatusFound)
			r.wantHeader(t, hf.HeaderRepoCommit, commit)
			r.wantHeader(t, hf.HeaderLinkedETag, `"`+fi.SHA256+`"`)
			r.wantHeader(t, hf.HeaderLinkedSize, strconv.FormatInt(fi.Size, 10))
			r.wantHeader(t, "Content-Type", "text/plain; charset=utf-8")
			r.wantHeader(t, "X-Xet-Hash", "")
			r.wantHeader(t, "Link", "")
			if et := hf.NormalizeETag(r.Header.Get("ETag")); et == "" || et == fi.SHA256 {
				t.Fatalf("302 ETag %q must exist and differ from the sha256", et)
			}
			loc := r.Header.Get("Location")
			if !strings.HasPrefix(loc, h.CDNURL()+"/repos/"+fi.SHA256[:2]+"/"+fi.SHA256[2:4]+"/"+fi.SHA256+"?") {
				t.Fatalf("Location %q", loc)
			}
			if u, _ := url.Parse(loc); u.Hostname() != "localhost" {
				t.Fatalf("CDN host %q must differ from the Hub's", u.Hostname())
			}
			wantLen := "Found. Redirecting to " + loc
			r.wantHeader(t, "Content-Length", strconv.Itoa(len(wantLen)))
			if method == http.MethodGet {
				r.wantBody(t, []byte(wantLen))
			}
			// The CDN serves the bytes with its own ETag.
			c := get(t, loc).wantStatus(t, http.StatusOK)
			c.wantBody(t, content)
			if et := hf.NormalizeETag(c.Header.Get("ETag")); et == "" || et == fi.SHA256 {
				t.Fatalf("CDN ETag %q", et)
			}
			c.wantHeader(t, "Accept-Ranges", "bytes")
			c.wantHeader(t, "Content-Disposition", `inline; filename*=UTF-8''model.safetensors; filename="model.safetensors";`)
		}
	}
	// A token on the CDN is refused (and counted).
	loc := head(t, fileURL(h, "main", "model.safetensors")).Header.Get("Location")
	h.ResetStats()
	get(t, loc, bearer(tokAlice)).wantStatus(t, http.StatusForbidden)
	if s := h.Stats(); s.CDNAuthRejected != 1 || s.BodyFetches(fi.SHA256) != 0 {
		t.Fatalf("CDNAuthRejected %d, fetches %d", s.CDNAuthRejected, s.BodyFetches(fi.SHA256))
	}
	// Go's client drops the token when the redirect changes host: the flow works end to end.
	do(t, http.DefaultClient, http.MethodGet, fileURL(h, "main", "model.safetensors"), nil, bearer(tokAlice)).wantStatus(t, 200).wantBody(t, content)
	if h.Stats().CDNAuthRejected != 1 {
		t.Fatal("default client leaked the token to the CDN")
	}
}

func TestCDNSignature(t *testing.T) {
	h, _ := fixture(t)
	loc := head(t, fileURL(h, "main", "model.safetensors")).Header.Get("Location")
	u, _ := url.Parse(loc)
	tamper := func(k, v string) string {
		q := u.Query()
		q.Set(k, v)
		c := *u
		c.RawQuery = q.Encode()
		return c.String()
	}
	get(t, loc).wantStatus(t, 200)
	get(t, tamper("X-Amz-Signature", strings.Repeat("0", 64))).wantStatus(t, http.StatusForbidden)
	get(t, tamper("Expires", "99999999999")).wantStatus(t, http.StatusForbidden)
	get(t, h.CDNURL()+u.Path).wantStatus(t, http.StatusForbidden)
	// Another blob's path with this signature.
	other := h.FileInfo(hf.Model, modelID, "main", "xet.bin").SHA256
	c := *u
	c.Path = "/repos/" + other[:2] + "/" + other[2:4] + "/" + other
	get(t, c.String()).wantStatus(t, http.StatusForbidden)
	// Expired an hour later.
	h.SetClock(func() time.Time { return time.Now().Add(61 * time.Minute) })
	get(t, loc).wantStatus(t, http.StatusForbidden)
	// A fresh URL works again.
	get(t, head(t, fileURL(h, "main", "model.safetensors")).Header.Get("Location")).wantStatus(t, 200)
	// Short TTL.
	h.SetClock(time.Now)
	h.SetSignedURLTTL(0)
	get(t, head(t, fileURL(h, "main", "model.safetensors")).Header.Get("Location")).wantStatus(t, http.StatusForbidden)
	// Writes.
	do(t, nil, http.MethodPut, loc, nil).wantStatus(t, http.StatusMethodNotAllowed)
}

func TestResolveXet(t *testing.T) {
	h, commit := fixture(t)
	fi := h.FileInfo(hf.Model, modelID, "main", "xet.bin")
	if !fi.Xet || !fi.LFS || len(fi.XetHash) != 64 {
		t.Fatalf("FileInfo %+v", fi)
	}
	wantLink := "<" + h.URL() + "/api/models/" + modelID + "/xet-read-token/" + commit + `>; rel="xet-auth", <` + h.CASURL() + `/v1/reconstructions/` + fi.XetHash + `>; rel="xet-reconstruction-info"`
	r := head(t, fileURL(h, "main", "xet.bin")).wantStatus(t, http.StatusFound)
	r.wantHeader(t, "X-Xet-Hash", fi.XetHash).wantHeader(t, "Link", wantLink)
	r.wantHeader(t, hf.HeaderLinkedETag, `"`+fi.SHA256+`"`).wantHeader(t, hf.HeaderLinkedSize, strconv.FormatInt(fi.Size, 10))
	get(t, r.Header.Get("Location")).wantStatus(t, 200)

	// hf.js's fileinfo probe.
	f := get(t, fileURL(h, "main", "xet.bin"), "Accept: application/vnd.xet-fileinfo+json, */*", "Range: bytes=0-0").wantStatus(t, http.StatusOK)
	f.wantHeader(t, "Content-Type", "application/vnd.xet-fileinfo+json")
	f.wantHeader(t, "X-Xet-Hash", fi.XetHash).wantHeader(t, "Link", wantLink)
	f.wantHeader(t, hf.HeaderLinkedSize, strconv.FormatInt(fi.Size, 10))
	var doc map[string]any
	f.json(t, &doc)
	if doc["hash"] != fi.XetHash {
		t.Fatalf("fileinfo %v", doc)
	}
	// Not for plain LFS files.
	get(t, fileURL(h, "main", "model.safetensors"), "Accept: application/vnd.xet-fileinfo+json").wantStatus(t, http.StatusFound)

	// Token route.
	x := get(t, h.URL()+"/api/models/"+modelID+"/xet-read-token/"+commit).wantStatus(t, 200)
	var tok struct {
		AccessToken string `json:"accessToken"`
		Exp         int64  `json:"exp"`
		CasURL      string `json:"casUrl"`
	}
	x.json(t, &tok)
	if tok.AccessToken == "" || tok.Exp == 0 || tok.CasURL != h.CASURL() {
		t.Fatalf("xet token %+v", tok)
	}
	x.wantHeader(t, "X-Xet-Access-Token", tok.AccessToken).wantHeader(t, "X-Xet-Cas-Url", h.CASURL())
	x.wantHeader(t, "X-Xet-Token-Expiration", strconv.FormatInt(tok.Exp, 10))
	get(t, h.URL()+"/api/models/"+modelID+"/xet-read-token/nope").wantError(t, 404, hf.CodeRevisionNotFound)
}

func TestRaw(t *testing.T) {
	h, commit := fixture(t)
	fi := h.FileInfo(hf.Model, modelID, "main", "model.safetensors")
	pointer := lfsPointer(fi.SHA256, fi.Size)
	if want := fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", fi.SHA256, fi.Size); string(pointer) != want {
		t.Fatalf("pointer %q", pointer)
	}
	for _, rev := range []string{"main", commit} {
		raw := h.URL() + model.FilePath("raw", hf.Revision(rev), "model.safetensors")
		r := get(t, raw).wantStatus(t, 200)
		r.wantBody(t, pointer)
		r.wantHeader(t, "ETag", `"`+fi.OID+`"`).wantHeader(t, hf.HeaderRepoCommit, commit)
		head(t, raw).wantStatus(t, 200).wantHeader(t, "Content-Length", strconv.Itoa(len(pointer)))
		get(t, h.URL()+model.FilePath("raw", hf.Revision(rev), "config.json")).wantStatus(t, 200).wantBody(t, configJSON)
		head(t, h.URL()+model.FilePath("raw", hf.Revision(rev), "nope.json")).wantError(t, 404, hf.CodeEntryNotFound)
	}
}

func TestRange(t *testing.T) {
	h, commit := fixture(t)
	big := h.FileInfo(hf.Model, modelID, "main", "big.bin")
	lfs := h.FileInfo(hf.Model, modelID, "main", "model.safetensors")
	cdnURL := head(t, fileURL(h, "main", "model.safetensors")).Header.Get("Location")
	for _, target := range []struct {
		name string
		url  string
		fi   FileInfo
	}{
		{"hub", fileURL(h, commit, "big.bin"), big},
		{"resolve-cache", h.URL() + "/api/resolve-cache/models/" + modelID + "/" + commit + "/big.bin", big},
		{"cdn", cdnURL, lfs},
	} {
		all := readAll(t, h.Content(hf.Model, modelID, commit, target.fi.Path), target.fi.Size)
		n := target.fi.Size
		for _, tc := range []struct {
			rng        string
			status     int
			from, to   int64 // inclusive
			contentRng string
		}{
			{"bytes=0-0", 206, 0, 0, fmt.Sprintf("bytes 0-0/%d", n)},
			{"bytes=10-99", 206, 10, 99, fmt.Sprintf("bytes 10-99/%d", n)},
			{"bytes=100-", 206, 100, n - 1, fmt.Sprintf("bytes 100-%d/%d", n-1, n)},
			{"bytes=-5", 206, n - 5, n - 1, fmt.Sprintf("bytes %d-%d/%d", n-5, n-1, n)},
			{fmt.Sprintf("bytes=%d-%d", n-10, n), 206, n - 10, n - 1, fmt.Sprintf("bytes %d-%d/%d", n-10, n-1, n)}, // hf_transfer's end = size
			{fmt.Sprintf("bytes=%d-", n), 416, 0, 0, fmt.Sprintf("bytes */%d", n)},
			{fmt.Sprintf("bytes=%d-%d", n+5, n+10), 416, 0, 0, fmt.Sprintf("bytes */%d", n)},
		} {
			t.Run(target.name+"/"+tc.rng, func(t *testing.T) {
				r := get(t, target.url, "Range: "+tc.rng).wantStatus(t, tc.status)
				r.wantHeader(t, "Content-Range", tc.contentRng)
				if tc.status == 206 {
					r.wantBody(t, all[tc.from:tc.to+1])
					r.wantHeader(t, "Content-Length", strconv.FormatInt(tc.to-tc.from+1, 10))
				}
			})
		}
	}
}

func TestIfNoneMatch(t *testing.T) {
	h, commit := fixture(t)
	etag := `"` + hf.GitBlobSHA1(configJSON) + `"`
	get(t, fileURL(h, commit, "config.json"), "If-None-Match: "+etag).wantStatus(t, http.StatusNotModified)
	get(t, fileURL(h, commit, "config.json"), `If-None-Match: "other"`).wantStatus(t, 200).wantBody(t, configJSON)
}

func TestResolveWriteMethods(t *testing.T) {
	h, commit := fixture(t)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		do(t, nil, m, fileURL(h, commit, "config.json"), strings.NewReader("x")).wantStatus(t, http.StatusMethodNotAllowed)
	}
}

func TestRevisionEncodings(t *testing.T) {
	h, main := fixture(t)
	pr := h.Commit(hf.Model, modelID, "refs/pr/1", []File{{Path: "config.json", Data: []byte("pr\n")}}, nil)
	conv := h.Commit(hf.Model, modelID, "refs/convert/parquet", []File{{Path: "default/train/0000.parquet", Data: []byte("PAR1")}}, nil)
	feat := h.Commit(hf.Model, modelID, "feature/x", []File{{Path: "config.json", Data: []byte("feature\n")}}, nil)
	h.SetRef(hf.Model, modelID, "v1.0", main)
	for _, tc := range []struct {
		rev  string // as it appears in the URL
		path string
		want string // commit, or "" for RevisionNotFound
	}{
		{"main", "config.json", main},
		{"HEAD", "config.json", main},
		{"v1.0", "config.json", main},
		{main, "config.json", main},
		{main[:7], "config.json", main},
		{"refs%2Fheads%2Fmain", "config.json", main},
		{"refs%2Fpr%2F1", "config.json", pr},
		{"refs/pr/1", "config.json", pr},
		{"refs%2Fconvert%2Fparquet", "default/train/0000.parquet", conv},
		{"refs/convert/parquet", "default/train/0000.parquet", conv},
		{"feature%2Fx", "config.json", feat},
		{"feature/x", "config.json", ""}, // raw branch names with "/" are ambiguous: not split
		{"refs/pr/2", "config.json", ""},
		{"nope", "config.json", ""},
		{"abcdef0", "config.json", ""},
		{strings.Repeat("0", 40), "config.json", ""},
	} {
		t.Run(tc.rev, func(t *testing.T) {
			u := h.URL() + "/" + modelID + "/resolve/" + tc.rev + "/" + tc.path
			r := head(t, u)
			if tc.want == "" {
				r.wantError(t, 404, hf.CodeRevisionNotFound)
				return
			}
			if r.StatusCode != 200 && r.StatusCode != 307 {
				t.Fatalf("status %d", r.StatusCode)
			}
			r.wantHeader(t, hf.HeaderRepoCommit, tc.want)
			get(t, h.URL()+"/api/models/"+modelID+"/revision/"+tc.rev+"?expand=sha").wantStatus(t, 200)
		})
	}
}

func TestBigGeneratedFile(t *testing.T) {
	h := New()
	const size = 64<<20 + 5
	h.AddRepo(RepoSpec{Type: hf.Model, ID: "org/big", Files: []File{{Path: "weights.bin", Size: size, Seed: 42, LFS: true}}})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fi := h.FileInfo(hf.Model, "org/big", "main", "weights.bin")
	r := head(t, h.URL()+"/org/big/resolve/main/weights.bin").wantStatus(t, 302)
	r.wantHeader(t, hf.HeaderLinkedSize, strconv.Itoa(size)).wantHeader(t, hf.HeaderLinkedETag, `"`+fi.SHA256+`"`)
	res, err := http.Get(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	s := sha256.New()
	n, err := io.Copy(s, res.Body)
	if err != nil || n != size {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if got := hex.EncodeToString(s.Sum(nil)); got != fi.SHA256 {
		t.Fatalf("sha256 %s, want %s", got, fi.SHA256)
	}
	if st := h.Stats(); st.BodyFetches(fi.SHA256) != 1 || st.BodyBytes(fi.SHA256) != size {
		t.Fatalf("fetches %d bytes %d", st.BodyFetches(fi.SHA256), st.BodyBytes(fi.SHA256))
	}
}

var lastModifiedRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
