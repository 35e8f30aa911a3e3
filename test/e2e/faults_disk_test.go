package e2e

// A node whose data directory is a small filesystem (a 40 MiB tmpfs): past
// the byte budget the store evicts; past the disk itself a fill fails with
// ENOSPC and its readers get the rest of the bytes straight from the Hub.

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
	bolt "go.etcd.io/bbolt"
)

const diskFS = 40 << 20 // the tmpfs under the data directory

// diskMount mounts a tmpfs of size bytes on a new directory and unmounts it
// when the test ends (after the node using it stopped: cleanups run last
// registered first). It skips the test where mounting is not permitted.
func diskMount(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Skipf("cannot mount a tmpfs for a small data directory (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// diskStore is the node's GET /v1/store.
type diskStore struct {
	Used   int64 `json:"used_bytes"`
	Budget int64 `json:"budget_bytes"`
	Blobs  int   `json:"blobs"`
}

func diskStats(t *testing.T, p *proc) diskStore {
	t.Helper()
	resp, body := do(t, http.MethodGet, p.AdminURL+"/v1/store", nil)
	var s diskStore
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("store stats: %d %s", resp.StatusCode, body)
	}
	return s
}

// diskBlob is where the node keeps a complete sha256 blob.
func diskBlob(dataDir, sha256 string) string {
	return filepath.Join(dataDir, "store", "blobs", "sha256", sha256[:2], sha256)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// diskTmp lists the store's temp files (fills in progress or left behind).
func diskTmp(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "store", "tmp"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// diskCheckIndex reads the stopped node's store index and checks that every
// blob it lists is a complete file of the recorded size that hashes to its
// address; it returns the indexed addresses.
func diskCheckIndex(t *testing.T, dataDir string) []string {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dataDir, "store", "index.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []string
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("blobs"))
		if b == nil {
			return errors.New("no blobs bucket")
		}
		return b.ForEach(func(k, v []byte) error {
			ids = append(ids, string(k))
			if len(v) != 25 {
				return fmt.Errorf("index record of %s: %d bytes", k, len(v))
			}
			size := int64(binary.BigEndian.Uint64(v[1:9]))
			algo, hexs, _ := strings.Cut(string(k), ":")
			var h hash.Hash
			switch algo {
			case "sha256":
				h = sha256.New()
			case "gitsha1":
				h = sha1.New()
				fmt.Fprintf(h, "blob %d\x00", size)
			default:
				return fmt.Errorf("unexpected address %s", k)
			}
			f, err := os.Open(filepath.Join(dataDir, "store", "blobs", algo, hexs[:2], hexs))
			if err != nil {
				return fmt.Errorf("indexed blob %s: %w", k, err)
			}
			defer f.Close()
			n, err := io.Copy(h, f)
			if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != hexs {
				return fmt.Errorf("indexed blob %s: %d bytes (index says %d), hash %x, err %v", k, n, size, h.Sum(nil), err)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestFullDisk: a node on a 40 MiB filesystem.
//
// Budget below the disk (24 MiB): six 5 MiB downloads are all correct, and
// the two least recently used blobs are evicted so that usage stays within
// the budget; an evicted file is filled again.
//
// Budget above the disk (1 GiB): a 32 MiB file does not fit next to a
// 12 MiB one. Two clients downloading it at once, and a third asking for a
// range from its middle, all get their bytes complete and correct (the
// parallel fill dies of ENOSPC and its readers continue from the Hub from
// where they are); the node keeps running and serves afterwards; the
// failed fill leaves no temp file, and the index lists only complete blobs
// that hash to their address.
func TestFullDisk(t *testing.T) {
	const repo = "acme/disk-fill"
	files := []fakehub.File{{Path: "small.txt", Data: []byte("small file\n")}}
	for i := 0; i < 6; i++ {
		files = append(files, fakehub.File{Path: fmt.Sprintf("part-%d.bin", i), Size: 5<<20 - int64(i), Seed: int64(900 + i), LFS: true})
	}
	files = append(files,
		fakehub.File{Path: "fits.bin", Size: 12 << 20, Seed: 910, LFS: true},
		fakehub.File{Path: "too-big.bin", Size: 32 << 20, Seed: 911, LFS: true}, // two parallel chunks
	)
	hub := fakehub.New()
	commit := hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: repo, Files: files})
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	info := func(path string) fakehub.FileInfo { return hub.FileInfo(hf.Model, repo, commit, path) }
	// fetch downloads a file and checks its size and sha256 as it streams
	// (no copy of the content in memory: big allocations are slow under
	// the race detector).
	fetch := func(p *proc, path string) (*http.Response, error) {
		resp, err := noRedirect.Get(resolveURL(p.URL, hf.Model, repo, commit, path))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		fi := info(path)
		switch {
		case err != nil:
			return resp, fmt.Errorf("after %d bytes: %w", n, err)
		case resp.StatusCode != 200 || n != fi.Size || hex.EncodeToString(h.Sum(nil)) != fi.SHA256:
			return resp, fmt.Errorf("%d, %d bytes, not the Hub's", resp.StatusCode, n)
		}
		return resp, nil
	}
	get := func(p *proc, path string) *http.Response {
		t.Helper()
		resp, err := fetch(p, path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp
	}

	t.Run("budget", func(t *testing.T) {
		dir := diskMount(t, diskFS)
		const budget = 24 << 20
		p := startProc(t, hub.URL(), dir, "--cache-size", "24MiB")
		var parts []string
		for i := 0; i < 6; i++ {
			path := fmt.Sprintf("part-%d.bin", i)
			parts = append(parts, path)
			get(p, path)
			if s := diskStats(t, p); s.Used > budget {
				t.Fatalf("after %s: %d bytes used, budget %d", path, s.Used, budget)
			}
		}
		// 6 × 5 MiB in a 24 MiB budget: the two least recently used made
		// room for the last two.
		for i, path := range parts {
			if stored := exists(diskBlob(dir, info(path).SHA256)); stored != (i >= 2) {
				t.Errorf("%s on disk: %v, want only the two oldest evicted", path, stored)
			}
		}
		s := diskStats(t, p)
		if s.Blobs != 4 || s.Used > budget {
			t.Errorf("store after the downloads: %+v, want 4 blobs within %d bytes", s, budget)
		}
		// An evicted file is filled again, correctly.
		if resp := get(p, parts[0]); resp.Header.Get("X-Hfcache-Source") != "upstream" {
			t.Errorf("evicted %s served from %q", parts[0], resp.Header.Get("X-Hfcache-Source"))
		}
		p.stop(t)
		if ids := diskCheckIndex(t, dir); len(ids) != 4 {
			t.Errorf("index lists %d blobs, want 4: %v", len(ids), ids)
		}
	})

	t.Run("disk", func(t *testing.T) {
		dir := diskMount(t, diskFS)
		p := startProc(t, hub.URL(), dir, "--cache-size", "1GiB")
		get(p, "fits.bin")
		if !exists(diskBlob(dir, info("fits.bin").SHA256)) {
			t.Fatal("fits.bin was not stored")
		}

		big := info("too-big.bin")
		hub.ResetStats()
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i < 2 {
					_, errs[i] = fetch(p, "too-big.bin")
					return
				}
				// A range from the middle waits for the fill, then passes through.
				const off = 10 << 20
				req, _ := http.NewRequest(http.MethodGet, resolveURL(p.URL, hf.Model, repo, commit, "too-big.bin"), nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
				resp, err := noRedirect.Do(req)
				if err != nil {
					errs[i] = err
					return
				}
				defer resp.Body.Close()
				g := sha256.New()
				n, err := io.Copy(g, resp.Body)
				h := sha256.New()
				io.CopyBuffer(h, io.NewSectionReader(hub.Content(hf.Model, repo, commit, "too-big.bin"), off, big.Size-off), make([]byte, 1<<20))
				if err != nil || resp.StatusCode != 206 || n != big.Size-off || !bytes.Equal(g.Sum(nil), h.Sum(nil)) {
					errs[i] = fmt.Errorf("range from %d: %d, %d bytes, err %v, not the Hub's", off, resp.StatusCode, n, err)
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("client %d downloading a file larger than the free space: %v", i, err)
			}
		}
		if !strings.Contains(p.Log.String(), "store refused blob, passing bytes through") {
			t.Errorf("the node did not report passing bytes through")
		}
		t.Logf("upstream body bytes for the %d-byte file: %d", big.Size, hub.Stats().BodyBytes(big.SHA256))

		// Nothing half-written stays: no temp file, and its space comes back
		// once the last reader is done with it.
		eventually(t, 5*time.Second, "the failed fill's temp file and its space to go", func() bool {
			var fs syscall.Statfs_t
			return len(diskTmp(t, dir)) == 0 && syscall.Statfs(dir, &fs) == nil && int64(fs.Bavail)*fs.Bsize > 16<<20
		})
		// The node runs on and serves: from disk, and a new small file.
		select {
		case <-p.Done():
			t.Fatalf("the node exited:\n%s", p.Log.String())
		default:
		}
		if resp := get(p, "fits.bin"); resp.Header.Get("X-Hfcache-Source") != "disk" {
			t.Errorf("fits.bin served from %q after the disk filled, want disk", resp.Header.Get("X-Hfcache-Source"))
		}
		get(p, "small.txt")
		if exists(diskBlob(dir, big.SHA256)) {
			t.Errorf("a blob file of the file that did not fit exists")
		}
		if s := diskStats(t, p); s.Blobs != 2 {
			t.Errorf("store: %+v, want 2 blobs (fits.bin, small.txt)", s)
		}
		p.stop(t)
		ids := diskCheckIndex(t, dir)
		if len(ids) != 2 || !strings.Contains(strings.Join(ids, " "), info("fits.bin").SHA256) {
			t.Errorf("index lists %v, want fits.bin's and small.txt's blobs", ids)
		}
	})
}
