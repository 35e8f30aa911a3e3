package store

import (
	"bytes"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestSmallBlobsServedFromMemory(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1<<20, nil)
	cfg.MemoryBlobMax = 100
	cfg.MemoryBytes = 250
	s := openStore(t, cfg)

	small := [][]byte{randBytes(1, 100), randBytes(2, 100), randBytes(3, 100)}
	var ids []hf.BlobID
	for _, d := range small {
		ids = append(ids, put(t, s, hf.SHA256, d))
	}
	large := randBytes(4, 101)
	largeID := put(t, s, hf.SHA256, large)

	open := func(id hf.BlobID) *Blob {
		t.Helper()
		b, err := s.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	// The first Open reads a small blob into memory; it is served from
	// there, and its file is not held open.
	for i, id := range ids[:2] {
		b := open(id)
		if b.File() != nil || !bytes.Equal(b.Bytes(), small[i]) {
			t.Fatalf("blob %d: file %v, bytes equal %v", i, b.File(), bytes.Equal(b.Bytes(), small[i]))
		}
	}
	if b := open(largeID); b.File() == nil || b.Bytes() != nil {
		t.Fatal("a blob over MemoryBlobMax must be served from its file")
	}
	// Deleting the file does not matter to a blob held in memory: the copy
	// is the verified content.
	if err := removeFile(blobFile(cfg, ids[0])); err != nil {
		t.Fatal(err)
	}
	if got := readBlob(t, s, ids[0]); !bytes.Equal(got, small[0]) {
		t.Fatal("in-memory copy differs")
	}
	// A third copy passes MemoryBytes (250): the least recently used one
	// (ids[1]; ids[0] was just read) leaves memory, not the store.
	open(ids[2])
	s.mu.Lock()
	inMem := []bool{s.entries[ids[0]].data != nil, s.entries[ids[1]].data != nil, s.entries[ids[2]].data != nil}
	memBytes := s.mem.bytes
	s.mu.Unlock()
	if !inMem[0] || inMem[1] || !inMem[2] || memBytes != 200 {
		t.Fatalf("in memory %v, %d bytes; want [true false true], 200", inMem, memBytes)
	}
	wantStored(t, s, ids[1], small[1])

	// Pins and eviction behave as for files: Remove drops the copy.
	if st := s.Stats(); st.Pinned == 0 {
		t.Fatalf("open in-memory blobs must stay pinned: %+v", st)
	}
	if err := s.Remove(ids[2]); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	memBytes = s.mem.bytes
	s.mu.Unlock()
	if memBytes > 200 || memBytes < 100 {
		t.Fatalf("memory holds %d bytes after Remove", memBytes)
	}
	if _, err := s.Open(ids[2]); err == nil {
		t.Fatal("a removed blob must not open from memory")
	}
}

func TestMemoryDisabled(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1<<20, nil)
	cfg.MemoryBytes = -1
	s := openStore(t, cfg)
	id := put(t, s, hf.SHA256, []byte("tiny"))
	b, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.File() == nil || b.Bytes() != nil {
		t.Fatal("MemoryBytes < 0 must serve every blob from its file")
	}
}

func TestEmptyBlobFromMemory(t *testing.T) {
	s, _ := newStore(t, 1<<20, nil)
	id := put(t, s, hf.SHA256, nil)
	for range 2 {
		b, err := s.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		if b.Bytes() == nil || len(b.Bytes()) != 0 || b.Size() != 0 {
			t.Fatalf("empty blob: bytes %v size %d", b.Bytes(), b.Size())
		}
		b.Close()
	}
}
