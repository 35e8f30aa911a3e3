package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// storeDir is where `hfcache serve` keeps its blob store under --data-dir
// (node/store's layout: blobs/{algo}/{xx}/{hex}, tmp/, index.db).
func storeDir(dataDir string) string { return filepath.Join(dataDir, "store") }

// blobFile is the path of a complete blob in a process's store.
func blobFile(dataDir string, algo hf.Algo, hexID string) string {
	return filepath.Join(storeDir(dataDir), "blobs", string(algo), hexID[:2], hexID)
}

// tmpFiles lists the store's temp files (fills in progress or crashed).
func tmpFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(storeDir(dataDir), "tmp"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// storeStats is a process's GET /v1/store.
func storeStats(t *testing.T, p *proc) (blobs int, used int64) {
	t.Helper()
	resp, body := do(t, http.MethodGet, p.AdminURL+"/v1/store", nil)
	var st struct {
		Blobs int   `json:"blobs"`
		Used  int64 `json:"used_bytes"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("store stats: %d %s", resp.StatusCode, body)
	}
	return st.Blobs, st.Used
}

// fileSHA256 hashes a file on disk.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// download is a GET whose body is hashed as it streams; read counts the
// bytes received so far.
type download struct {
	resp *http.Response
	n    int64
	sum  string
	err  error // transport or body read error
}

func streamGet(url string, read *atomic.Int64) download {
	resp, err := noRedirect.Get(url)
	if err != nil {
		return download{err: err}
	}
	defer resp.Body.Close()
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var d download
	d.resp = resp
	for {
		n, rerr := resp.Body.Read(buf)
		h.Write(buf[:n])
		d.n += int64(n)
		if read != nil {
			read.Add(int64(n))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			d.err = rerr
			break
		}
	}
	d.sum = hex.EncodeToString(h.Sum(nil))
	return d
}

// TestCrashMidFill: SIGKILL the node while it fills a 64 MiB blob (several
// ranged upstream streams, throttled) and a client streams it. The client
// sees a broken transfer, not a short body that looks complete; the crash
// leaves only a temp file, which the restarted process (same --data-dir)
// removes; the blob is not indexed; the next GET fills it again from the
// Hub, byte-identical, and it is then on disk under its sha256.
func TestCrashMidFill(t *testing.T) {
	hub := startHub(t)
	dir := t.TempDir()
	p := startProc(t, hub.URL(), dir)
	fi := hub.FileInfo(hf.Model, bigID, "main", "big.bin")
	u := resolveURL(p.URL, hf.Model, bigID, "main", "big.bin")
	// Metadata first, so the throttle only slows the bytes.
	if m := pythonHead(t, u, ""); m.Status != 200 || m.ETag != fi.SHA256 || m.Size != bigSize {
		t.Fatalf("HEAD: %+v", m)
	}
	hub.SetThrottle(2<<20, 0) // per upstream stream: the fill would take seconds

	var read atomic.Int64
	got := make(chan download, 1)
	go func() { got <- streamGet(u, &read) }()
	eventually(t, 20*time.Second, "the client to receive bytes and a temp file to exist", func() bool {
		return read.Load() > 0 && len(tmpFiles(t, dir)) > 0
	})
	tmp := tmpFiles(t, dir)
	if len(tmp) != 1 || !strings.Contains(tmp[0], fi.SHA256) {
		t.Fatalf("temp files during the fill: %q, want one for %s", tmp, fi.SHA256)
	}
	p.Kill()

	var d download
	select {
	case d = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's download did not end after the node died")
	}
	switch {
	case d.resp == nil:
		t.Fatalf("no response before the kill: %v", d.err)
	case d.resp.StatusCode != 200 || d.resp.Header.Get("Content-Length") != strconv.Itoa(bigSize):
		t.Fatalf("status %d, Content-Length %q", d.resp.StatusCode, d.resp.Header.Get("Content-Length"))
	case d.err == nil:
		t.Fatalf("the client read %d of %d bytes and no error: a short body that looks complete", d.n, bigSize)
	case d.n >= bigSize:
		t.Fatalf("the client read all %d bytes of an unfinished fill", d.n)
	}
	t.Logf("client: %d of %d bytes, then %v", d.n, bigSize, d.err)

	// The crash left the temp file and nothing under blobs/.
	if tmp := tmpFiles(t, dir); len(tmp) != 1 {
		t.Fatalf("temp files after the crash: %q", tmp)
	}
	final := blobFile(dir, hf.SHA256, fi.SHA256)
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unfinished blob is in place at %s: %v", final, err)
	}
	hub.SetThrottle(0, 0)
	fetches := hub.Stats().BodyFetches(fi.SHA256)

	// Restart on the same data directory.
	p = startProc(t, hub.URL(), dir)
	u = resolveURL(p.URL, hf.Model, bigID, "main", "big.bin")
	if tmp := tmpFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temp files after the restart: %q", tmp)
	}
	if !strings.Contains(p.Log.String(), `"tmp_removed":1`) {
		t.Errorf("the store did not report removing the crashed fill's temp file")
	}
	if blobs, used := storeStats(t, p); blobs != 0 || used != 0 {
		t.Fatalf("after the restart the store indexes %d blobs (%d bytes), want none", blobs, used)
	}

	// The next GET fills the blob again from the Hub, whole and exact.
	d = streamGet(u, nil)
	if d.err != nil || d.resp.StatusCode != 200 || d.n != bigSize || d.sum != fi.SHA256 {
		t.Fatalf("refill: status %v, %d bytes, err %v, sha256 match %v", d.resp, d.n, d.err, d.sum == fi.SHA256)
	}
	if src := d.resp.Header.Get("X-Hfcache-Source"); src != "upstream" {
		t.Errorf("refill source %q, want upstream", src)
	}
	if after := hub.Stats().BodyFetches(fi.SHA256); after <= fetches {
		t.Fatalf("the Hub's body fetches of the blob went from %d to %d: not refilled", fetches, after)
	}
	eventually(t, 10*time.Second, "the refilled blob to be indexed", func() bool {
		blobs, used := storeStats(t, p)
		return blobs == 1 && used == bigSize
	})
	if sum := fileSHA256(t, final); sum != fi.SHA256 {
		t.Fatalf("the stored blob hashes to %s, want %s", sum, fi.SHA256)
	}
	if tmp := tmpFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temp files after the refill: %q", tmp)
	}
	d = streamGet(u, nil)
	if d.err != nil || d.sum != fi.SHA256 || d.resp.Header.Get("X-Hfcache-Source") != "disk" {
		t.Fatalf("hit after the refill: err %v, source %q, sha256 match %v", d.err, d.resp.Header.Get("X-Hfcache-Source"), d.sum == fi.SHA256)
	}
}
