package e2e

// Upstream trouble, with the hfcache binary as a process and the fake Hub in
// process: an outage (the Hub's listeners closed, then reopened), and a Hub
// that misbehaves per request (truncated bodies, wrong bytes, stalls, 429,
// 500s) through fakehub's SetFault hook.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
)

// fileHeaders are the resolve headers a client keys a download by.
type fileHeaders struct {
	Commit, ETag, LinkedETag, LinkedSize, Length string
}

func headersOf(resp *http.Response) fileHeaders {
	return fileHeaders{
		Commit:     resp.Header.Get(hf.HeaderRepoCommit),
		ETag:       resp.Header.Get("ETag"),
		LinkedETag: resp.Header.Get(hf.HeaderLinkedETag),
		LinkedSize: resp.Header.Get(hf.HeaderLinkedSize),
		Length:     resp.Header.Get("Content-Length"),
	}
}

// wantHeaders are the headers the Hub's contract requires for f at commit.
func wantHeaders(fi fakehub.FileInfo, commit string) fileHeaders {
	size := strconv.FormatInt(fi.Size, 10)
	h := fileHeaders{Commit: commit, ETag: `"` + fi.Addr() + `"`, LinkedSize: size, Length: size}
	if fi.LFS {
		h.LinkedETag = h.ETag
	}
	return h
}

// isHubError reports whether resp is an error in the Hub's shape: the
// status, X-Error-Code, X-Error-Message and a JSON {"error": ...} body.
func isHubError(resp *http.Response, body []byte, status int) bool {
	var j struct {
		Error string `json:"error"`
	}
	return resp.StatusCode == status && resp.Header.Get(hf.HeaderErrorCode) != "" &&
		resp.Header.Get(hf.HeaderErrorMessage) != "" && json.Unmarshal(body, &j) == nil && j.Error != ""
}

// fetch performs a request without following redirects and reads the body;
// unlike do it reports a failed transfer instead of failing the test, so it
// can observe aborted bodies and run outside the test goroutine.
func fetch(method, url string, hdr map[string]string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// TestUpstreamOutage: a node warmed with the tiny model keeps serving every
// file, byte-identical and with the headers clients key on, by branch (the
// last known commit, marked stale) and by commit while the Hub's listeners
// are closed, and the repository info by branch too; anything it does not
// hold answers 504 UpstreamUnreachable in the Hub's shape within seconds,
// before any client times out; once the Hub is back, new commits on the
// branch are picked up after the ref TTL.
//
// TestOffline covers the real JS client offline; this goes further: every
// file by commit and by branch with its headers, the info API cached while
// the branch was fresh, the 504 latency for an unknown file, uncached
// repositories and a blob whose metadata alone is cached, and recovery after
// the Hub restarts.
func TestUpstreamOutage(t *testing.T) {
	hub := startHub(t)
	const refTTL = 500 * time.Millisecond
	p := startProc(t, hub.URL(), t.TempDir(), "--ref-ttl", refTTL.String())
	commit := hub.Ref(hf.Model, modelID, "main")
	files := modelFiles()

	// Warm: every file by branch, as hf_hub_download does.
	want := map[string]fileHeaders{}
	wantBytes := map[string][]byte{}
	for _, f := range files {
		wantBytes[f.Path] = content(t, hub, hf.Model, modelID, "main", f.Path)
		resp, body := do(t, http.MethodGet, resolveURL(p.URL, hf.Model, modelID, "main", f.Path), nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, wantBytes[f.Path]) {
			t.Fatalf("warm %s: status %d, %d bytes", f.Path, resp.StatusCode, len(body))
		}
		want[f.Path] = wantHeaders(hub.FileInfo(hf.Model, modelID, "main", f.Path), commit)
		if got := headersOf(resp); got != want[f.Path] {
			t.Fatalf("warm %s: headers %+v, want %+v", f.Path, got, want[f.Path])
		}
	}
	// The repository info by branch (what snapshot_download asks first;
	// the branch is fresh, so it is cached under the commit), and two files
	// whose metadata is cached but whose bytes are not (HEAD only).
	infoURL := p.URL + "/api/models/" + modelID + "/revision/main"
	if resp, body := do(t, http.MethodGet, infoURL, nil); resp.StatusCode != 200 || !bytes.Contains(body, []byte(commit)) {
		t.Fatalf("info: %d %s", resp.StatusCode, body)
	}
	dataCommit := hub.Ref(hf.Dataset, datasetID, "main")
	for _, path := range []string{"data/train.parquet", "data/test.csv"} {
		resp, _ := do(t, http.MethodHead, resolveURL(p.URL, hf.Dataset, datasetID, "main", path), nil)
		if resp.StatusCode != 200 || resp.Header.Get(hf.HeaderRepoCommit) != dataCommit {
			t.Fatalf("HEAD of the dataset's %s: %d", path, resp.StatusCode)
		}
	}
	headOnly := resolveURL(p.URL, hf.Dataset, datasetID, dataCommit, "data/train.parquet")

	hub.Close()
	start := time.Now()
	var (
		wg sync.WaitGroup
		mu sync.Mutex // t.Errorf/Logf order from the goroutines below
	)
	// get checks one offline download of a cached file. By branch the ref
	// is past its TTL: the node tries the Hub, then serves the last known
	// commit, marked stale.
	get := func(path, rev string) {
		defer wg.Done()
		resp, body, err := fetch(http.MethodGet, resolveURL(p.URL, hf.Model, modelID, rev, path), nil)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			t.Errorf("offline %s@%s: %v", path, rev, err)
		case resp.StatusCode != 200:
			t.Errorf("offline %s@%s: status %d", path, rev, resp.StatusCode)
		case headersOf(resp) != want[path]:
			t.Errorf("offline %s@%s: headers %+v, want %+v", path, rev, headersOf(resp), want[path])
		case !bytes.Equal(body, wantBytes[path]):
			t.Errorf("offline %s@%s: bytes differ", path, rev)
		case rev == "main" && resp.Header.Get("X-Hfcache-Stale") != "1":
			t.Errorf("offline %s@main: not marked stale", path)
		}
	}
	// unavailable checks that what the node does not hold answers 504 in
	// the Hub's shape within limit, well within the clients' 10 s timeouts.
	unavailable := func(what, method, url string, limit time.Duration) {
		defer wg.Done()
		start := time.Now()
		resp, body, err := fetch(method, url, nil)
		took := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			t.Errorf("%s: %v", what, err)
			return
		case resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(hf.HeaderErrorCode) != "UpstreamUnreachable" ||
			(method == http.MethodGet && !isHubError(resp, body, http.StatusGatewayTimeout)):
			t.Errorf("%s: %d %q %q %s, want 504 UpstreamUnreachable in the Hub's shape", what, resp.StatusCode,
				resp.Header.Get(hf.HeaderErrorCode), resp.Header.Get(hf.HeaderErrorMessage), body)
		case took > limit:
			t.Errorf("%s: the 504 took %v, more than %v", what, took, limit)
		}
		t.Logf("%s: %d %s in %v", what, resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode), took)
	}

	// Concurrently, as snapshot_download does: every file by commit, and
	// what the node does not hold. Each of those retries the Hub (at most
	// ~3 s) before its 504.
	for _, f := range files {
		wg.Add(1)
		go get(f.Path, commit)
	}
	wg.Add(4)
	go unavailable("unknown file of a cached repo", http.MethodGet, resolveURL(p.URL, hf.Model, modelID, commit, "not-fetched.bin"), 5*time.Second)
	go unavailable("uncached repo", http.MethodGet, resolveURL(p.URL, hf.Model, bigID, "main", "big.bin"), 5*time.Second)
	go unavailable("uncached repo, HEAD", http.MethodHead, resolveURL(p.URL, hf.Model, edgeID, "main", "empty.txt"), 5*time.Second)
	go unavailable("metadata cached, bytes not, by commit", http.MethodGet, headOnly, 5*time.Second)

	// Once the ref TTL has passed, a branch resolves to the last known
	// commit, marked stale: then every file by branch, the info by branch
	// (cached while the branch was fresh, so under its commit), and a file
	// whose bytes are not cached by branch, which retries the Hub twice
	// (to re-resolve the branch, then for the bytes) before its 504.
	eventually(t, 10*time.Second, "main to be served stale", func() bool {
		resp, _ := do(t, http.MethodHead, resolveURL(p.URL, hf.Model, modelID, "main", "config.json"), nil)
		return resp.StatusCode == 200 && resp.Header.Get("X-Hfcache-Stale") == "1"
	})
	for _, f := range files {
		wg.Add(1)
		go get(f.Path, "main")
	}
	wg.Add(2)
	go unavailable("metadata cached, bytes not, by branch", http.MethodGet, resolveURL(p.URL, hf.Dataset, datasetID, "main", "data/test.csv"), 8*time.Second)
	go func() {
		defer wg.Done()
		resp, body, err := fetch(http.MethodGet, infoURL, nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"sha":"`+commit+`"`)) || resp.Header.Get("X-Hfcache-Stale") != "1" {
			t.Errorf("offline info by branch: %v %v %.200s", err, resp != nil && resp.Header.Get("X-Hfcache-Stale") == "1", body)
		}
	}()
	wg.Wait()
	if resp, _ := do(t, http.MethodHead, headOnly, nil); resp.StatusCode != 200 {
		t.Errorf("offline HEAD of a file whose metadata is cached: %d", resp.StatusCode)
	}
	t.Logf("offline checks took %v", time.Since(start))

	// The Hub comes back with a new commit on main: the node moves to it
	// (its ref is past the TTL), then to the next one once the TTL of that
	// fresh resolution has passed, and still serves the old commit.
	if err := hub.Restart(); err != nil {
		t.Fatal(err)
	}
	var next string
	for i, hidden := range []int{16, 32} {
		newConfig := []byte(`{"model_type": "bert", "hidden_size": ` + strconv.Itoa(hidden) + "}\n")
		next = hub.Commit(hf.Model, modelID, "main", []fakehub.File{{Path: "config.json", Data: newConfig}}, nil)
		var got []byte
		eventually(t, 10*time.Second, "the node to resolve main to new commit "+strconv.Itoa(i+1), func() bool {
			resp, body := do(t, http.MethodGet, resolveURL(p.URL, hf.Model, modelID, "main", "config.json"), nil)
			got = body
			return resp.StatusCode == 200 && resp.Header.Get(hf.HeaderRepoCommit) == next && resp.Header.Get("X-Hfcache-Stale") == ""
		})
		if !bytes.Equal(got, newConfig) {
			t.Fatalf("config.json at new commit %d: %q", i+1, got)
		}
	}
	if resp, body := do(t, http.MethodGet, resolveURL(p.URL, hf.Model, modelID, commit, "config.json"), nil); resp.StatusCode != 200 || !bytes.Equal(body, files[0].Data) {
		t.Fatalf("config.json at the old commit: %d %q", resp.StatusCode, body)
	}
	eventually(t, 10*time.Second, "the info API to follow main", func() bool {
		resp, body := do(t, http.MethodGet, infoURL, nil)
		return resp.StatusCode == 200 && bytes.Contains(body, []byte(`"sha":"`+next+`"`))
	})
	if resp, body := do(t, http.MethodGet, headOnly, nil); resp.StatusCode != 200 || sha(body) != sha(content(t, hub, hf.Dataset, datasetID, dataCommit, "data/train.parquet")) {
		t.Fatalf("after the restart, the dataset file: %d", resp.StatusCode)
	}
}

// upstreamFault is one misbehaviour of the fake Hub: it answers the next
// `left` requests that match (left < 0: every one, until cleared).
type upstreamFault struct {
	match func(*http.Request) bool
	serve func(w http.ResponseWriter, r *http.Request)
	left  atomic.Int32
	hits  atomic.Int32
}

// faultTable dispatches fakehub's single SetFault hook to per-file faults,
// so cases can run in parallel against one node.
type faultTable struct {
	mu     sync.Mutex
	faults []*upstreamFault
}

func (ft *faultTable) add(times int32, match func(*http.Request) bool, serve func(http.ResponseWriter, *http.Request)) *upstreamFault {
	f := &upstreamFault{match: match, serve: serve}
	f.left.Store(times)
	ft.mu.Lock()
	ft.faults = append(ft.faults, f)
	ft.mu.Unlock()
	return f
}

// clear stops f: matching requests reach the fake Hub's real handlers.
func (f *upstreamFault) clear() { f.left.Store(0) }

func (ft *faultTable) hook(w http.ResponseWriter, r *http.Request) bool {
	ft.mu.Lock()
	faults := append([]*upstreamFault(nil), ft.faults...)
	ft.mu.Unlock()
	for _, f := range faults {
		if !f.match(r) {
			continue
		}
		for {
			n := f.left.Load()
			if n == 0 {
				break
			}
			if n < 0 || f.left.CompareAndSwap(n, n-1) {
				f.hits.Add(1)
				f.serve(w, r)
				return true
			}
		}
	}
	return false
}

// cdnPathOf is the fake CDN's path for an LFS blob.
func cdnPathOf(sha256hex string) string {
	return "/repos/" + sha256hex[:2] + "/" + sha256hex[2:4] + "/" + sha256hex
}

// matchReq matches a method and a path suffix (the file names are unique).
func matchReq(method, suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.Method == method && strings.HasSuffix(r.URL.Path, suffix) }
}

// truncateBody declares the whole file and sends half of it, then breaks
// the connection.
func truncateBody(data []byte) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
}

// stallBody declares the whole file, sends half of it and then nothing,
// holding the connection open until the client gives up (or stop closes).
func stallBody(data []byte, stop <-chan struct{}) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
		panic(http.ErrAbortHandler)
	}
}

// wrongBytes serves the file (ranges included) with one byte changed: the
// right size, the wrong hash.
func wrongBytes(data []byte) func(http.ResponseWriter, *http.Request) {
	bad := append([]byte(nil), data...)
	bad[len(bad)/3] ^= 0xff
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(bad))
	}
}

// hubStatus answers as the Hub does when it refuses to serve: status,
// X-Error-Message, a JSON error, and Retry-After if given.
func hubStatus(status int, retryAfter string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		msg := http.StatusText(status) + " (injected)"
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set(hf.HeaderErrorMessage, msg)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		body := `{"error":"` + msg + `"}`
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			io.WriteString(w, body)
		}
	}
}

// getOutcome is what a client made of a GET: "ok" (200, the exact bytes),
// "broken" (the transfer failed: a read error, or no response at all) or
// "error NNN" (an error response in the Hub's shape). It fails the test on
// anything else, above all a complete-looking 200 with the wrong bytes.
func getOutcome(t *testing.T, url string, want []byte) (string, *http.Response) {
	t.Helper()
	resp, body, err := fetch(http.MethodGet, url, nil)
	switch {
	case resp == nil:
		t.Logf("GET: no response: %v", err)
		return "broken", nil
	case resp.StatusCode == 200 && err != nil:
		if int64(len(body)) >= resp.ContentLength && resp.ContentLength >= 0 {
			t.Fatalf("GET: read error %v after the whole declared body", err)
		}
		return "broken", resp
	case resp.StatusCode == 200:
		if !bytes.Equal(body, want) {
			t.Fatalf("GET: 200 with %d bytes that are not the file's (%d bytes): served as complete", len(body), len(want))
		}
		return "ok", resp
	case err != nil:
		t.Fatalf("GET: %d and a broken error body: %v", resp.StatusCode, err)
	}
	var j struct {
		Error string `json:"error"`
	}
	if resp.Header.Get(hf.HeaderErrorMessage) == "" || json.Unmarshal(body, &j) != nil || j.Error == "" {
		t.Fatalf("GET: %d not in the Hub's error shape: %q %s", resp.StatusCode, resp.Header.Get(hf.HeaderErrorMessage), body)
	}
	if resp.StatusCode >= 500 && resp.StatusCode != 500 && resp.Header.Get(hf.HeaderErrorCode) == "" {
		t.Fatalf("GET: %d from the cache without X-Error-Code", resp.StatusCode)
	}
	return "error " + strconv.Itoa(resp.StatusCode), resp
}

// TestBadUpstream: the fake Hub misbehaves for one file at a time, on its
// CDN (LFS bytes) or on resolve (metadata HEADs, regular files' bytes): a
// truncated body, wrong bytes, a stalled connection, 429 with Retry-After,
// 500s. Every client either gets the exact bytes (the node retried or
// resumed) or a clear failure (an error in the Hub's shape, or a broken
// transfer), never a complete-looking wrong file; nothing wrong is stored;
// once the fault is gone the next download is exact and the store holds
// the blob under its address, with the right sha256.
func TestBadUpstream(t *testing.T) {
	hub := startHub(t)
	const badID = "acme/faulty-model"
	lfs := func(path string, seed int64) fakehub.File {
		return fakehub.File{Path: path, Size: 300_000 + seed, Seed: seed, LFS: true}
	}
	reg := func(path string) fakehub.File {
		return fakehub.File{Path: path, Data: bytes.Repeat([]byte(path+"\n"), 2000)}
	}
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: badID, Files: []fakehub.File{
		lfs("truncated.bin", 101), lfs("corrupt.bin", 102), lfs("stalled.bin", 103), lfs("cdn-500.bin", 104),
		reg("corrupt.txt"), reg("resolve-500.txt"), reg("head-500.txt"), reg("head-500-always.txt"),
		reg("head-429.txt"), reg("head-429-long.txt"), reg("get-429.txt"), reg("get-429-long.txt"),
		lfs("cdn-500-always.bin", 105),
	}})
	var faults faultTable
	hub.SetFault(faults.hook)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	const stall = 500 * time.Millisecond
	dir := t.TempDir()
	p := startProc(t, hub.URL(), dir, "--upstream-stall-timeout", stall.String())
	// The replicated configuration's remote replaces the flags' one: the
	// cases run against that long-lived hub client.
	eventually(t, 20*time.Second, "the configuration to be applied", func() bool {
		resp, _ := do(t, http.MethodGet, p.AdminURL+"/-/ready", nil)
		return resp.StatusCode == 200
	})

	type fileCase struct {
		name string
		path string
		// inject installs the fault; data is the file's content.
		inject func(data []byte, fi fakehub.FileInfo) *upstreamFault
		// first checks the first download (outcome, response, time taken).
		first func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault)
	}
	wantOK := func(t *testing.T, outcome string, _ *http.Response, _ time.Duration, _ *upstreamFault) {
		t.Helper()
		if outcome != "ok" {
			t.Fatalf("first download: %s, want the exact bytes after a retry", outcome)
		}
	}
	cases := []fileCase{
		{name: "truncated CDN body is resumed", path: "truncated.bin",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(1, matchReq(http.MethodGet, cdnPathOf(fi.SHA256)), truncateBody(data))
			},
			first: wantOK},
		{name: "stalled CDN body is abandoned by the watchdog and resumed", path: "stalled.bin",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(1, matchReq(http.MethodGet, cdnPathOf(fi.SHA256)), stallBody(data, stop))
			},
			first: func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault) {
				wantOK(t, outcome, resp, took, f)
				if took < stall || took > 5*time.Second {
					t.Fatalf("served in %v: the stall watchdog (--upstream-stall-timeout %v) did not fire on time", took, stall)
				}
			}},
		{name: "wrong bytes from the CDN fail the transfer", path: "corrupt.bin",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(-1, matchReq(http.MethodGet, cdnPathOf(fi.SHA256)), wrongBytes(data))
			},
			first: wantFailure},
		{name: "wrong bytes of a regular file fail the transfer", path: "corrupt.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(-1, matchReq(http.MethodGet, "/corrupt.txt"), wrongBytes(data))
			},
			first: wantFailure},
		{name: "CDN 500s are retried", path: "cdn-500.bin",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(2, matchReq(http.MethodGet, cdnPathOf(fi.SHA256)), hubStatus(500, ""))
			},
			first: wantOK},
		{name: "resolve 500s on the bytes are retried", path: "resolve-500.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(2, matchReq(http.MethodGet, "/resolve-500.txt"), hubStatus(500, ""))
			},
			first: wantOK},
		{name: "resolve 500s on the metadata are retried", path: "head-500.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(2, matchReq(http.MethodHead, "/head-500.txt"), hubStatus(500, ""))
			},
			first: wantOK},
		{name: "persistent resolve 500s are reported", path: "head-500-always.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(-1, matchReq(http.MethodHead, "/head-500-always.txt"), hubStatus(500, ""))
			},
			first: func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault) {
				if outcome != "error 500" {
					t.Fatalf("first download: %s, want the Hub's 500", outcome)
				}
			}},
		{name: "429 with a short Retry-After is waited out", path: "head-429.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(1, matchReq(http.MethodHead, "/head-429.txt"), hubStatus(429, "1"))
			},
			first: func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault) {
				wantOK(t, outcome, resp, took, f)
				if took < 900*time.Millisecond {
					t.Fatalf("served in %v: the Hub's Retry-After: 1 was not honoured", took)
				}
			}},
		{name: "429 with a long Retry-After is passed on", path: "head-429-long.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(-1, matchReq(http.MethodHead, "/head-429-long.txt"), hubStatus(429, "120"))
			},
			first: func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault) {
				if outcome != "error 429" || resp.Header.Get("Retry-After") != "120" {
					t.Fatalf("first download: %s Retry-After %q, want the Hub's 429 with Retry-After: 120", outcome, resp.Header.Get("Retry-After"))
				}
				if took > 2*time.Second {
					t.Fatalf("the 429 took %v", took)
				}
			}},
		{name: "429 on the bytes is waited out", path: "get-429.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(1, matchReq(http.MethodGet, "/get-429.txt"), hubStatus(429, "1"))
			},
			first: func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault) {
				wantOK(t, outcome, resp, took, f)
				if took < 900*time.Millisecond {
					t.Fatalf("served in %v: the Hub's Retry-After: 1 was not honoured", took)
				}
			}},
		{name: "429 on the bytes with a long Retry-After is passed on", path: "get-429-long.txt",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(-1, matchReq(http.MethodGet, "/get-429-long.txt"), hubStatus(429, "120"))
			},
			first: func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault) {
				if outcome != "error 429" || resp.Header.Get("Retry-After") != "120" {
					t.Fatalf("first download: %s Retry-After %q, want the Hub's 429 with Retry-After: 120", outcome, resp.Header.Get("Retry-After"))
				}
				if took > 2*time.Second || f.hits.Load() != 1 {
					t.Fatalf("the 429 took %v and %d requests to the Hub: Retry-After not honoured", took, f.hits.Load())
				}
			}},
		{name: "persistent CDN 500s are reported", path: "cdn-500-always.bin",
			inject: func(data []byte, fi fakehub.FileInfo) *upstreamFault {
				return faults.add(-1, matchReq(http.MethodGet, cdnPathOf(fi.SHA256)), hubStatus(500, ""))
			},
			first: func(t *testing.T, outcome string, resp *http.Response, took time.Duration, f *upstreamFault) {
				if outcome != "error 500" {
					t.Fatalf("first download: %s, want the upstream's 500", outcome)
				}
				if took > 5*time.Second {
					t.Fatalf("the 500 took %v", took)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fi := hub.FileInfo(hf.Model, badID, "main", c.path)
			data := content(t, hub, hf.Model, badID, "main", c.path)
			algo := hf.GitSHA1
			if fi.LFS {
				algo = hf.SHA256
			}
			stored := blobFile(dir, algo, fi.Addr())
			u := resolveURL(p.URL, hf.Model, badID, "main", c.path)
			f := c.inject(data, fi)

			start := time.Now()
			outcome, resp := getOutcome(t, u, data)
			took := time.Since(start)
			t.Logf("first download: %s in %v (%d faulty answers)", outcome, took, f.hits.Load())
			if f.hits.Load() == 0 {
				t.Fatal("the fault was never hit")
			}
			c.first(t, outcome, resp, took, f)
			if outcome != "ok" {
				if _, err := os.Stat(stored); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("after a failed download the blob is stored at %s (%v)", stored, err)
				}
				eventually(t, 5*time.Second, "the failed fill's temp file to be removed", func() bool {
					for _, name := range tmpFiles(t, dir) {
						if strings.Contains(name, fi.Addr()) {
							return false
						}
					}
					return true
				})
			}

			f.clear()
			if outcome, _ := getOutcome(t, u, data); outcome != "ok" {
				t.Fatalf("download after the fault cleared: %s", outcome)
			}
			eventually(t, 5*time.Second, "the blob to be stored", func() bool {
				_, err := os.Stat(stored)
				return err == nil
			})
			if got := fileSHA256(t, stored); got != sha(data) {
				t.Fatalf("the stored blob's sha256 is %s, want %s", got, sha(data))
			}
		})
	}
}

// wantFailure: the first download must fail visibly.
func wantFailure(t *testing.T, outcome string, _ *http.Response, _ time.Duration, _ *upstreamFault) {
	t.Helper()
	if outcome == "ok" {
		t.Fatal("first download succeeded although every answer was wrong")
	}
}
