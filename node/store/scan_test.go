package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	bolt "go.etcd.io/bbolt"
)

func removeFile(path string) error { return os.Remove(path) }

func truncateFile(path string, size int64) error { return os.Truncate(path, size) }

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// indexRecord reads id's record straight from index.db.
func indexRecord(t *testing.T, s *Store, id hf.BlobID) (record, bool) {
	t.Helper()
	var (
		r  record
		ok bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		r, ok = decodeRecord(tx.Bucket([]byte(blobsBucket)).Get([]byte(id.String())))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, ok
}

func TestReopenKeepsBlobsAndAccessTimes(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t, t.TempDir(), 1000, clk)
	s := openStore(t, cfg)
	data := blobs(4)
	ids := make([]hf.BlobID, 4)
	for i := range 4 {
		clk.Advance(time.Second)
		ids[i] = put(t, s, hf.GitSHA1, data[i])
	}
	// Access order now 2, 0, 3, 1 (1 most recent).
	for _, i := range []int{2, 0, 3, 1} {
		clk.Advance(time.Second)
		touch(t, s, ids[i])
	}
	want := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = openStore(t, cfg)
	got := s.Stats()
	if got.Used != want.Used || got.Blobs != want.Blobs {
		t.Fatalf("after reopen %+v, before %+v", got, want)
	}
	// Evictions follow the access order from before the restart.
	for k, want := range []int{2, 0, 3} {
		s.Evict(int64(30 * (3 - k)))
		if _, ok := s.Stat(ids[want]); ok {
			t.Fatalf("eviction %d: blob %d still present", k, want)
		}
	}
	wantStored(t, s, ids[1], data[1])
	s.Close()

	// Evictions are persisted too.
	s = openStore(t, cfg)
	if st := s.Stats(); st.Blobs != 1 || st.Used != 30 {
		t.Fatalf("stats %+v", st)
	}
	wantStored(t, s, ids[1], data[1])
}

func TestFlushPersistsAccessTimes(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t, t.TempDir(), 1000, clk)
	cfg.FlushInterval = 10 * time.Millisecond
	s := openStore(t, cfg)
	id := put(t, s, hf.SHA256, []byte("x"))
	clk.Advance(time.Hour)
	touch(t, s, id)
	want := clk.Now().UnixNano()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if r, ok := indexRecord(t, s, id); ok && r.atime == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("access time not flushed by the background flusher")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStaleDeleteDoesNotDropNewerEntry(t *testing.T) {
	s, cfg := newStore(t, 1000, newClock())
	data := []byte("recreated")
	id := put(t, s, hf.SHA256, data)
	s.Evict(0) // queues a delete of the first incarnation
	put(t, s, hf.SHA256, data)
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := indexRecord(t, s, id); !ok {
		t.Fatal("flush of a stale eviction deleted the newer index entry")
	}
	s.Close()
	s = openStore(t, cfg)
	wantStored(t, s, id, data)
}

func TestStartupScan(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t, t.TempDir(), 1000, clk)
	s := openStore(t, cfg)
	data := blobs(6)
	gone := put(t, s, hf.SHA256, data[0])   // file deleted while closed
	short := put(t, s, hf.GitSHA1, data[1]) // file truncated while closed
	kept := put(t, s, hf.SHA256, data[2])   // untouched
	s.Close()

	if err := os.Remove(blobFile(cfg, gone)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blobFile(cfg, short), 5); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cfg.Dir, "tmp", "sha256-crashed.1"), []byte("partial"))
	writeFile(t, filepath.Join(cfg.Dir, "tmp", "leftover", "x"), []byte("partial"))
	orphan := idOf(hf.GitSHA1, data[3])
	clk.Advance(time.Hour)
	writeFile(t, blobFile(cfg, orphan), data[3])
	orphanMtime := time.Now().Add(-48 * time.Hour)
	os.Chtimes(blobFile(cfg, orphan), orphanMtime, orphanMtime)
	corrupt := idOf(hf.SHA256, data[4])
	writeFile(t, blobFile(cfg, corrupt), data[5])
	stray := filepath.Join(cfg.Dir, "blobs", "sha256", "zz", "not-a-blob")
	writeFile(t, stray, []byte("?"))
	wrongDir := idOf(hf.SHA256, data[5])
	misplaced := filepath.Join(cfg.Dir, "blobs", "sha256", "00", wrongDir.Hex)
	if wrongDir.Hex[:2] == "00" {
		t.Skip("unlucky hash")
	}
	writeFile(t, misplaced, data[5])

	s = openStore(t, cfg)
	if got := dirEntries(t, filepath.Join(cfg.Dir, "tmp")); len(got) != 0 {
		t.Fatalf("tmp not cleared: %v", got)
	}
	wantAbsent(t, s, gone)
	wantAbsent(t, s, short)
	wantAbsent(t, s, corrupt)
	wantStored(t, s, kept, data[2])
	for _, p := range []string{stray, misplaced} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stray %s not removed: %v", p, err)
		}
	}
	if _, ok := indexRecord(t, s, gone); ok {
		t.Error("index entry of missing file kept")
	}
	if _, ok := indexRecord(t, s, short); ok {
		t.Error("index entry of truncated file kept")
	}
	r, ok := indexRecord(t, s, orphan)
	if !ok || r.size != 30 {
		t.Fatalf("verified orphan not indexed: %+v %v", r, ok)
	}
	if r.atime != orphanMtime.UnixNano() {
		t.Errorf("orphan access time %v, want its mtime %v", time.Unix(0, r.atime), orphanMtime)
	}
	if st := s.Stats(); st.Used != 60 || st.Blobs != 2 {
		t.Fatalf("stats %+v", st)
	}
	wantStored(t, s, orphan, data[3])
}

func TestStartupScanVerifyCap(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1000, nil)
	cfg.ScanVerifyBytes = 45 // room for one 30-byte orphan
	data := blobs(2)
	a, b := idOf(hf.SHA256, data[0]), idOf(hf.SHA256, data[1])
	writeFile(t, blobFile(cfg, a), data[0])
	writeFile(t, blobFile(cfg, b), data[1])
	s := openStore(t, cfg)
	if st := s.Stats(); st.Blobs != 1 || st.Used != 30 {
		t.Fatalf("stats %+v", st)
	}
	_, okA := s.Stat(a)
	_, okB := s.Stat(b)
	if okA == okB {
		t.Fatalf("want exactly one orphan indexed: %v %v", okA, okB)
	}
	// The other was removed.
	n := 0
	for _, id := range []hf.BlobID{a, b} {
		if _, err := os.Stat(blobFile(cfg, id)); err == nil {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d orphan files left, want 1", n)
	}
	s.Close()

	cfg.ScanVerifyBytes = -1
	if err := os.Remove(filepath.Join(cfg.Dir, "index.db")); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if st := s.Stats(); st.Blobs != 0 {
		t.Fatalf("ScanVerifyBytes<0 indexed orphans: %+v", st)
	}
}

func TestStartupEvictsToBudget(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t, t.TempDir(), 1000, clk)
	s := openStore(t, cfg)
	data := blobs(3)
	ids := make([]hf.BlobID, 3)
	for i := range ids {
		clk.Advance(time.Second)
		ids[i] = put(t, s, hf.SHA256, data[i])
	}
	s.Close()
	cfg.Budget = 60
	s = openStore(t, cfg)
	if st := s.Stats(); st.Used != 60 || st.Evictions != 1 {
		t.Fatalf("stats %+v", st)
	}
	wantAbsent(t, s, ids[0])
}

func TestMeta(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1000, nil)
	s := openStore(t, cfg)
	if _, ok, err := s.GetMeta("refs", "k"); ok || err != nil {
		t.Fatalf("missing bucket: %v %v", ok, err)
	}
	tests := []struct {
		bucket, key string
		value       []byte
	}{
		{"refs", "model/gpt2@main", []byte("abc123")},
		{"refs", "model/gpt2@v1", []byte("def456")},
		{"files", "model/gpt2@abc/config.json", bytes.Repeat([]byte("j"), 100_000)},
		{"api", "empty", []byte{}},
		{"api", "nil", nil},
	}
	for _, tt := range tests {
		if err := s.PutMeta(tt.bucket, tt.key, tt.value); err != nil {
			t.Fatalf("PutMeta(%s, %s): %v", tt.bucket, tt.key, err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		for _, tt := range tests {
			v, ok, err := s.GetMeta(tt.bucket, tt.key)
			if err != nil || !ok || !bytes.Equal(v, tt.value) || v == nil {
				t.Fatalf("GetMeta(%s, %s) = %q, %v, %v", tt.bucket, tt.key, v, ok, err)
			}
		}
		if _, ok, _ := s.GetMeta("refs", "model/gpt2@"); ok {
			t.Fatal("prefix key found")
		}
	}
	check(s)
	// Returned values are copies.
	v, _, _ := s.GetMeta("refs", "model/gpt2@main")
	v[0] = 'X'
	check(s)
	if err := s.PutMeta("refs", "model/gpt2@main", []byte("new")); err != nil {
		t.Fatal(err)
	}
	tests[0].value = []byte("new")
	s.Close()

	s = openStore(t, cfg)
	check(s)
	if err := s.DeleteMeta("refs", "model/gpt2@v1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMeta("refs", "absent"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMeta("nobucket", "absent"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetMeta("refs", "model/gpt2@v1"); ok {
		t.Fatal("deleted key found")
	}
	for _, args := range [][2]string{{"", "k"}, {"b", ""}} {
		if err := s.PutMeta(args[0], args[1], nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutMeta(%q, %q) = %v", args[0], args[1], err)
		}
		if _, _, err := s.GetMeta(args[0], args[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("GetMeta(%q, %q) = %v", args[0], args[1], err)
		}
		if err := s.DeleteMeta(args[0], args[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("DeleteMeta(%q, %q) = %v", args[0], args[1], err)
		}
	}
	s.Close()
	if err := s.PutMeta("refs", "k", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutMeta after Close = %v", err)
	}
	if _, _, err := s.GetMeta("refs", "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetMeta after Close = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{Dir: dir, Budget: 1}, true},
		{"no dir", Config{Budget: 1}, false},
		{"zero budget", Config{Dir: dir}, false},
		{"negative budget", Config{Dir: dir, Budget: -1}, false},
		{"negative flush", Config{Dir: dir, Budget: 1, FlushInterval: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Fatalf("Validate = %v", err)
			}
			s, err := Open(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("Open = %v", err)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s, cfg := newStore(t, 100, nil)
	id := put(t, s, hf.SHA256, []byte("a"))
	b, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	fillID := idOf(hf.SHA256, []byte("b"))
	f, err := s.Create(fillID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close aborted the open fill.
	if got := dirEntries(t, filepath.Join(cfg.Dir, "tmp")); len(got) != 0 {
		t.Fatalf("tmp not empty: %v", got)
	}
	if _, err := f.WriteAt([]byte("b"), 0); !errors.Is(err, ErrFillDone) {
		t.Fatalf("WriteAt = %v", err)
	}
	f.Close()
	// Blobs still open stay readable.
	p := make([]byte, 1)
	if _, err := b.ReadAt(p, 0); err != nil || p[0] != 'a' {
		t.Fatal(err)
	}
	b.Close()
	if _, err := s.Open(id); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open = %v", err)
	}
	if _, err := s.Create(fillID, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Create = %v", err)
	}
	if err := s.Remove(id); !errors.Is(err, ErrClosed) {
		t.Fatalf("Remove = %v", err)
	}
	if _, ok := s.Stat(id); ok {
		t.Fatal("Stat after Close")
	}
	s.Evict(0)
	// Another store can open the directory now.
	s2 := openStore(t, cfg)
	wantStored(t, s2, id, []byte("a"))
}
