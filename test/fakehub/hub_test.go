package fakehub

import (
	"bytes"
	"io"
	"math/rand"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestCloseRestart(t *testing.T) {
	h, commit := fixture(t)
	hubURL, cdnURL := h.URL(), h.CDNURL()
	loc := head(t, fileURL(h, commit, "model.safetensors")).Header.Get("Location")
	get(t, loc).wantStatus(t, 200)

	// A slow download in flight is cut by Close.
	h.SetThrottle(64<<10, 0)
	res, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := io.Copy(io.Discard, res.Body); err == nil {
		t.Fatal("in-flight body completed across Close")
	}
	res.Body.Close()
	h.SetThrottle(0, 0)

	for _, u := range []string{fileURL(h, commit, "config.json"), loc} {
		c := &http.Client{Timeout: 2 * time.Second}
		if r, err := c.Get(u); err == nil {
			r.Body.Close()
			t.Fatalf("%s answered %d while closed", u, r.StatusCode)
		}
	}
	h.Close() // idempotent
	if err := h.Restart(); err != nil {
		t.Fatal(err)
	}
	if h.URL() != hubURL || h.CDNURL() != cdnURL {
		t.Fatal("URLs changed across Restart")
	}
	get(t, fileURL(h, commit, "config.json")).wantStatus(t, 200).wantBody(t, configJSON)
	get(t, loc).wantStatus(t, 200)
	if err := h.Restart(); err == nil {
		t.Fatal("Restart while running succeeded")
	}
	if err := h.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	if err := New().Restart(); err == nil {
		t.Fatal("Restart before Start succeeded")
	}
}

func TestStats(t *testing.T) {
	h, commit := fixture(t)
	cfg := h.FileInfo(hf.Model, modelID, "main", "config.json")
	lfs := h.FileInfo(hf.Model, modelID, "main", "model.safetensors")
	h.ResetStats()

	// Regular file: HEAD and 307 are no body fetches; the resolve-cache GET is.
	r := head(t, fileURL(h, "main", "config.json")).wantStatus(t, 307)
	head(t, h.URL()+r.Header.Get("Location")).wantStatus(t, 200)
	get(t, h.URL()+r.Header.Get("Location")).wantStatus(t, 200)
	get(t, fileURL(h, commit, "config.json"), "Range: bytes=0-3").wantStatus(t, 206)
	get(t, fileURL(h, commit, "config.json"), "Range: bytes=1000-").wantStatus(t, 416)
	get(t, fileURL(h, commit, "config.json"), "If-None-Match: "+`"`+cfg.GitSHA1+`"`).wantStatus(t, 304)
	// LFS: the 302 is not a fetch, the CDN GET is.
	loc := get(t, fileURL(h, "main", "model.safetensors")).wantStatus(t, 302).Header.Get("Location")
	head(t, loc).wantStatus(t, 200)
	get(t, loc).wantStatus(t, 200)
	get(t, loc, "Range: bytes=-10").wantStatus(t, 206)
	// Raw pointer.
	get(t, h.URL()+model.FilePath("raw", "main", "model.safetensors")).wantStatus(t, 200)

	s := h.Stats()
	if got := s.BodyFetches(cfg.GitSHA1); got != 2 {
		t.Errorf("config fetches %d, want 2", got)
	}
	if got := s.BodyBytes(cfg.GitSHA1); got != int64(len(configJSON))+4 {
		t.Errorf("config bytes %d", got)
	}
	if got := s.BodyFetches(lfs.SHA256); got != 2 {
		t.Errorf("lfs fetches %d, want 2", got)
	}
	if got := s.BodyBytes(lfs.SHA256); got != lfs.Size+10 {
		t.Errorf("lfs bytes %d", got)
	}
	if got := s.BodyFetches(lfs.OID); got != 1 {
		t.Errorf("pointer fetches %d", got)
	}
	if got := s.Requests(http.MethodHead, "/"+modelID+"/resolve/"); got != 1 {
		t.Errorf("HEAD resolve %d", got)
	}
	if got := s.Requests(http.MethodGet, "/api/resolve-cache/"); got != 1 {
		t.Errorf("GET resolve-cache %d", got)
	}
	if got := s.Requests("", "/repos/"); got != 3 {
		t.Errorf("CDN requests %d", got)
	}
	if got := s.Requests(http.MethodGet, "/"+modelID+"/resolve/main/config.json"); got != 0 {
		t.Errorf("GET resolve/main/config.json %d", got)
	}
	if s.Total() != 11 || len(s.Log) != 11 {
		t.Errorf("total %d, log %d", s.Total(), len(s.Log))
	}
	cdn := 0
	for _, e := range s.Log {
		if e.CDN {
			cdn++
		}
	}
	if cdn != 3 || s.PathBytes["/api/resolve-cache/models/"+modelID+"/"+commit+"/config.json"] != int64(len(configJSON)) {
		t.Errorf("log: %d CDN, path bytes %v", cdn, s.PathBytes)
	}
	// The CDN's body bytes: the LFS GET and the 10-byte range, nothing the Hub wrote.
	if n, last := h.CDNBody(); n != lfs.Size+10 || last.IsZero() || time.Since(last) > time.Minute {
		t.Errorf("CDNBody = %d at %v, want %d just now", n, last, lfs.Size+10)
	}
	h.ResetStats()
	if s := h.Stats(); s.Total() != 0 || s.BodyFetches(cfg.GitSHA1) != 0 {
		t.Fatal("ResetStats")
	}
	if n, last := h.CDNBody(); n != 0 || !last.IsZero() {
		t.Fatalf("CDNBody after ResetStats = %d at %v", n, last)
	}
}

func TestThrottle(t *testing.T) {
	h, commit := fixture(t)
	h.SetThrottle(200<<10, 50*time.Millisecond)
	start := time.Now()
	r := get(t, fileURL(h, commit, "big.bin"), "Range: bytes=0-102399").wantStatus(t, 206)
	if len(r.body) != 100<<10 {
		t.Fatalf("%d bytes", len(r.body))
	}
	// 100 KiB at 200 KiB/s plus latency: at least ~0.5 s (a lower bound only).
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("throttled download took only %v", d)
	}
	h.SetThrottle(0, 0)
	get(t, fileURL(h, commit, "big.bin")).wantStatus(t, 200)
}

func TestFault(t *testing.T) {
	h, commit := fixture(t)
	var mu sync.Mutex
	n := 0
	h.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			http.Error(w, "boom", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	get(t, fileURL(h, commit, "config.json")).wantStatus(t, 503)
	get(t, fileURL(h, commit, "config.json")).wantStatus(t, 200)
	h.SetFault(nil)
	if s := h.Stats(); s.Requests("", "/") != 2 {
		t.Fatalf("faulted requests are counted: %d", s.Total())
	}
}

func TestGeneratedContent(t *testing.T) {
	const size = 100_003
	g := genReader{genSpec: genSpec{seed: 5}, size: size}
	full := make([]byte, size)
	if n, err := g.ReadAt(full, 0); n != size || err != nil {
		t.Fatalf("ReadAt full: %d %v", n, err)
	}
	rng := rand.New(rand.NewSource(1))
	for range 500 {
		off := rng.Int63n(size + 10)
		ln := rng.Intn(40)
		buf := make([]byte, ln)
		n, err := g.ReadAt(buf, off)
		want := full[min(off, size):min(off+int64(ln), size)]
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("ReadAt(%d, %d) mismatch", off, ln)
		}
		if (off+int64(ln) > size) != (err == io.EOF) && ln > 0 {
			t.Fatalf("ReadAt(%d, %d) err %v", off, ln, err)
		}
	}
	// Seeds differ, the same seed is deterministic, and content is not trivially zero.
	other := make([]byte, 64)
	genReader{genSpec: genSpec{seed: 6}, size: 64}.ReadAt(other, 0)
	if bytes.Equal(other, full[:64]) || bytes.Equal(full[:64], make([]byte, 64)) {
		t.Fatal("generated content is not seed dependent")
	}
	b := newGenBlob(size, genSpec{seed: 5})
	if b.sha256 != hf.SHA256Hex(full) || b.gitSHA1 != hf.GitBlobSHA1(full) {
		t.Fatal("generated blob hashes")
	}
}

func TestCommitsAndRefsAPI(t *testing.T) {
	h := New()
	c1 := h.AddRepo(RepoSpec{Type: hf.Space, ID: "org/space", Files: []File{{Path: "app.py", Data: []byte("print(1)")}}})
	if !hf.IsCommit(c1) {
		t.Fatalf("commit %q", c1)
	}
	c2 := h.Commit(hf.Space, "org/space", "main", []File{{Path: "b.txt", Data: []byte("b")}}, []string{"app.py"})
	c3 := h.Commit(hf.Space, "org/space", "dev", nil, nil) // new branch from main
	if c1 == c2 || c2 == c3 || h.Ref(hf.Space, "org/space", "main") != c2 || h.Ref(hf.Space, "org/space", "dev") != c3 {
		t.Fatal("commit ids")
	}
	if h.FileInfo(hf.Space, "org/space", c1, "app.py").Size != 8 || h.FileInfo(hf.Space, "org/space", "main", "app.py").Commit != "" {
		t.Fatal("history")
	}
	if got := h.Bytes(hf.Space, "org/space", "dev", "b.txt"); string(got) != "b" {
		t.Fatalf("Bytes %q", got)
	}
	if h.Content(hf.Space, "org/space", "main", "nope") != nil || h.Content(hf.Space, "org/nope", "main", "b.txt") != nil {
		t.Fatal("Content of missing file")
	}
	mustPanic(t, func() { h.AddRepo(RepoSpec{Type: hf.Space, ID: "org/space"}) })
	mustPanic(t, func() { h.AddRepo(RepoSpec{Type: hf.Model, ID: "bad id"}) })
	mustPanic(t, func() { h.Commit(hf.Model, "org/none", "main", nil, nil) })
	mustPanic(t, func() { h.Grant("unknown", hf.Space, "org/space") })
	mustPanic(t, func() { h.SetRef(hf.Space, "org/space", "v1", "nope") })
	mustPanic(t, func() { h.AddRepo(RepoSpec{ID: "org/x", Files: []File{{Path: "../x"}}}) })
}

func mustPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	f()
}

func TestConcurrentTraffic(t *testing.T) {
	h, _ := fixture(t)
	lfs := h.FileInfo(hf.Model, modelID, "main", "model.safetensors")
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{}
			for j := range 5 {
				u := fileURL(h, "main", "model.safetensors")
				if j%2 == 0 {
					u = h.URL() + "/api/models/" + modelID + "/tree/main?recursive=true&expand=true"
				}
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				req.Header.Set("Range", "bytes="+strconv.Itoa(i*1000)+"-"+strconv.Itoa(i*1000+99))
				res, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}()
		// Mutations race with the readers.
		h.Commit(hf.Model, modelID, "main", []File{{Path: "n" + strconv.Itoa(i), Data: []byte{byte(i)}}}, nil)
	}
	wg.Wait()
	if got := h.Stats().BodyFetches(lfs.SHA256); got != 16*2 {
		t.Fatalf("lfs fetches %d", got)
	}
}
