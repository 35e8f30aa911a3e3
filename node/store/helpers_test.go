package store

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakeclock"
)

// newClock is the stores' test clock, at a fixed start.
func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) }

func testConfig(t *testing.T, dir string, budget int64, clk *fakeclock.Clock) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.Budget = budget
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if clk != nil {
		cfg.Now = clk.Now
	}
	return cfg
}

func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t *testing.T, budget int64, clk *fakeclock.Clock) (*Store, Config) {
	t.Helper()
	cfg := testConfig(t, t.TempDir(), budget, clk)
	return openStore(t, cfg), cfg
}

// idOf is the content address of data under algo.
func idOf(algo hf.Algo, data []byte) hf.BlobID {
	if algo == hf.GitSHA1 {
		return hf.BlobID{Algo: algo, Hex: hf.GitBlobSHA1(data)}
	}
	return hf.BlobID{Algo: algo, Hex: hf.SHA256Hex(data)}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// put stores data as a complete blob and returns its id.
func put(t *testing.T, s *Store, algo hf.Algo, data []byte) hf.BlobID {
	t.Helper()
	id := idOf(algo, data)
	f, err := s.Create(id, int64(len(data)))
	if err != nil {
		t.Fatalf("Create %s: %v", id, err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatalf("WriteAt %s: %v", id, err)
	}
	if err := f.Commit(); err != nil {
		t.Fatalf("Commit %s: %v", id, err)
	}
	return id
}

// readBlob opens id and returns its content.
func readBlob(t *testing.T, s *Store, id hf.BlobID) []byte {
	t.Helper()
	b, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open %s: %v", id, err)
	}
	defer b.Close()
	data, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return data
}

// touch records an access to id.
func touch(t *testing.T, s *Store, id hf.BlobID) {
	t.Helper()
	b, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open %s: %v", id, err)
	}
	b.Close()
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name())
	}
	return names
}

func wantStored(t *testing.T, s *Store, id hf.BlobID, data []byte) {
	t.Helper()
	size, ok := s.Stat(id)
	if !ok || size != int64(len(data)) {
		t.Fatalf("Stat %s = %d, %v; want %d, true", id, size, ok, len(data))
	}
	if got := readBlob(t, s, id); !bytes.Equal(got, data) {
		t.Fatalf("content of %s differs", id)
	}
}

func wantAbsent(t *testing.T, s *Store, id hf.BlobID) {
	t.Helper()
	if size, ok := s.Stat(id); ok {
		t.Fatalf("Stat %s = %d, true; want absent", id, size)
	}
	if _, err := os.Stat(s.blobPath(id)); err == nil {
		t.Fatalf("file of %s still exists", id)
	}
}

func blobFile(cfg Config, id hf.BlobID) string {
	return filepath.Join(cfg.Dir, "blobs", string(id.Algo), id.Hex[:2], id.Hex)
}
