package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	bolt "go.etcd.io/bbolt"
)

func xorbName(n int) string { return fmt.Sprintf("%064x", n+0xab00) }

// xorbRun makes chunks first..first+n-1 of xorb seed, each of size bytes,
// laid out back to back as in a real xorb (chunk i at i*size).
func xorbRun(seed uint64, first, n, size int) ([]XorbChunk, [][]byte) {
	var cs []XorbChunk
	var data [][]byte
	for i := first; i < first+n; i++ {
		d := randBytes(seed*1000+uint64(i), size)
		cs = append(cs, XorbChunk{
			Index:  uint32(i),
			Offset: uint64(i * size),
			Len:    uint32(size),
			RawLen: uint32(2 * size),
			Hash:   sha256.Sum256(d),
		})
		data = append(data, d)
	}
	return cs, data
}

func putXorb(t *testing.T, s *Store, xorb string, cs []XorbChunk, data [][]byte) {
	t.Helper()
	if err := s.PutXorbChunks(xorb, cs, data); err != nil {
		t.Fatalf("PutXorbChunks %s: %v", xorb, err)
	}
}

// wantXorb checks that xorb holds exactly the chunks want (sorted by Index)
// with the given bytes.
func wantXorb(t *testing.T, s *Store, xorb string, want []XorbChunk, data map[uint32][]byte) {
	t.Helper()
	got, err := s.XorbChunks(xorb)
	if err != nil {
		t.Fatalf("XorbChunks: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("XorbChunks = %+v\nwant %+v", got, want)
	}
	x, err := s.OpenXorb(xorb)
	if err != nil {
		t.Fatalf("OpenXorb: %v", err)
	}
	defer x.Close()
	if !slices.Equal(x.Chunks(), want) {
		t.Fatalf("XorbFile.Chunks differ")
	}
	for _, c := range want {
		b := make([]byte, c.Len)
		if _, err := x.ReadAt(b, int64(c.Offset)); err != nil {
			t.Fatalf("ReadAt chunk %d: %v", c.Index, err)
		}
		if !bytes.Equal(b, data[c.Index]) {
			t.Fatalf("chunk %d content differs", c.Index)
		}
	}
}

func byIndex(cs []XorbChunk, data [][]byte) map[uint32][]byte {
	m := map[uint32][]byte{}
	for i, c := range cs {
		m[c.Index] = data[i]
	}
	return m
}

func sumLen(cs []XorbChunk) int64 {
	var n int64
	for _, c := range cs {
		n += int64(c.Len)
	}
	return n
}

func TestXorbPutSparse(t *testing.T) {
	s, _ := newStore(t, 1<<20, newClock())
	x := xorbName(1)
	if got, err := s.XorbChunks(x); got != nil || err != nil {
		t.Fatalf("XorbChunks of nothing = %v, %v", got, err)
	}
	a, ad := xorbRun(1, 0, 2, 100) // chunks 0-1
	b, bd := xorbRun(1, 5, 3, 100) // chunks 5-7; 2-4 are a hole
	// The second run is given out of order.
	putXorb(t, s, x, []XorbChunk{b[2], b[0], b[1]}, [][]byte{bd[2], bd[0], bd[1]})
	putXorb(t, s, x, a, ad)
	all := append(slices.Clone(a), b...)
	data := byIndex(all, append(slices.Clone(ad), bd...))
	wantXorb(t, s, x, all, data)
	if st := s.Stats(); st.Used != 500 || st.XorbBytes != 500 || st.Xorbs != 1 || st.Blobs != 0 || st.Reserved != 0 || st.Pinned != 0 {
		t.Fatalf("stats %+v", st)
	}
	fi, err := os.Stat(filepath.Join(s.cfg.Dir, "xorbs", x[:2], x))
	if err != nil || fi.Size() != 800 {
		t.Fatalf("xorb file: %v, %v", fi, err)
	}
	// The hole reads as zeros and is not listed.
	f, _ := s.OpenXorb(x)
	hole := make([]byte, 300)
	if _, err := f.ReadAt(hole, 200); err != nil || !bytes.Equal(hole, make([]byte, 300)) {
		t.Fatalf("hole: %v", err)
	}
	f.Close()
	f.Close() // idempotent
	if st := s.Stats(); st.Pinned != 0 {
		t.Fatalf("pinned after close: %+v", st)
	}
}

func TestXorbDuplicateSkipped(t *testing.T) {
	s, _ := newStore(t, 1<<20, newClock())
	x := xorbName(2)
	cs, data := xorbRun(2, 0, 3, 64)
	putXorb(t, s, x, cs[:2], data[:2])
	// Chunk 1 again with other bytes (not rewritten), chunk 2 new, chunk 2
	// twice in the batch.
	other := bytes.Repeat([]byte{0xee}, 64)
	putXorb(t, s, x, []XorbChunk{cs[1], cs[2], cs[2]}, [][]byte{other, data[2], data[2]})
	wantXorb(t, s, x, cs, byIndex(cs, data))
	if st := s.Stats(); st.Used != 3*64 || st.Reserved != 0 {
		t.Fatalf("stats %+v", st)
	}
	// All present: a no-op.
	putXorb(t, s, x, cs, [][]byte{other, other, other})
	wantXorb(t, s, x, cs, byIndex(cs, data))
}

func TestXorbInvalid(t *testing.T) {
	s, _ := newStore(t, 1<<20, newClock())
	cs, data := xorbRun(3, 0, 2, 32)
	good := xorbName(3)
	for _, name := range []string{"", "abc", strings64("A"), strings64("g"), "../" + good[3:], good + "0"} {
		if err := s.PutXorbChunks(name, cs, data); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutXorbChunks(%q) = %v, want ErrInvalid", name, err)
		}
		if _, err := s.XorbChunks(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("XorbChunks(%q) = %v, want ErrInvalid", name, err)
		}
		if _, err := s.OpenXorb(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("OpenXorb(%q) = %v, want ErrInvalid", name, err)
		}
		if err := s.DropXorbChunks(name, []uint32{0}); !errors.Is(err, ErrInvalid) {
			t.Errorf("DropXorbChunks(%q) = %v, want ErrInvalid", name, err)
		}
		if err := s.VerifyXorbChunks(name, []uint32{0}); !errors.Is(err, ErrInvalid) {
			t.Errorf("VerifyXorbChunks(%q) = %v, want ErrInvalid", name, err)
		}
	}
	bad := []struct {
		name string
		cs   []XorbChunk
		data [][]byte
	}{
		{"length mismatch", cs, data[:1]},
		{"short data", cs[:1], [][]byte{data[0][:10]}},
		{"empty chunk", []XorbChunk{{Index: 0}}, [][]byte{{}}},
		{"overlap", []XorbChunk{cs[0], {Index: 1, Offset: 16, Len: 32}}, [][]byte{data[0], data[1]}},
		{"offset too large", []XorbChunk{{Index: 0, Offset: 1 << 40, Len: 32}}, data[:1]},
	}
	for _, b := range bad {
		if err := s.PutXorbChunks(good, b.cs, b.data); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: PutXorbChunks = %v, want ErrInvalid", b.name, err)
		}
	}
	if st := s.Stats(); st.Used != 0 || st.Reserved != 0 || st.Xorbs != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := s.OpenXorb(good); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenXorb of absent xorb = %v", err)
	}
}

func strings64(c string) string { return string(bytes.Repeat([]byte(c), 64)) }

func TestXorbVerifyDrop(t *testing.T) {
	s, cfg := newStore(t, 1<<20, newClock())
	x := xorbName(4)
	cs, data := xorbRun(4, 0, 4, 4096)
	cs[3].Verified = true
	putXorb(t, s, x, cs, data)
	if err := s.VerifyXorbChunks(x, []uint32{0, 2, 9, 2}); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(cs)
	want[0].Verified, want[2].Verified = true, true
	wantXorb(t, s, x, want, byIndex(cs, data))

	if err := s.DropXorbChunks(x, []uint32{1, 42}); err != nil {
		t.Fatal(err)
	}
	want = slices.Delete(want, 1, 2)
	wantXorb(t, s, x, want, byIndex(cs, data))
	if st := s.Stats(); st.Used != 3*4096 || st.XorbBytes != 3*4096 {
		t.Fatalf("stats after drop %+v", st)
	}
	// Re-put of the dropped chunk.
	putXorb(t, s, x, cs[1:2], data[1:2])
	want = slices.Insert(want, 1, cs[1])
	wantXorb(t, s, x, want, byIndex(cs, data))

	// The flags and the drop survive a reopen.
	if err := s.DropXorbChunks(x, []uint32{3}); err != nil {
		t.Fatal(err)
	}
	want = want[:3]
	s.Close()
	s = openStore(t, cfg)
	wantXorb(t, s, x, want, byIndex(cs, data))

	// Dropping the rest removes the xorb, its file and its record.
	if err := s.DropXorbChunks(x, []uint32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.XorbChunks(x); got != nil || err != nil {
		t.Fatalf("XorbChunks after dropping all = %v, %v", got, err)
	}
	if _, err := os.Stat(s.xorbPath(x)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("xorb file: %v", err)
	}
	if st := s.Stats(); st.Used != 0 || st.Xorbs != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.DropXorbChunks(x, []uint32{0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DropXorbChunks of absent xorb = %v", err)
	}
	s.Close()
	s = openStore(t, cfg)
	if got, _ := s.XorbChunks(x); got != nil {
		t.Fatalf("dropped xorb back after reopen: %v", got)
	}
}

// A chunk dropped while the xorb is open stays readable through the open
// XorbFile; its space is freed (punched) when the file is closed.
func TestXorbDropWhileOpen(t *testing.T) {
	s, _ := newStore(t, 1<<20, newClock())
	x := xorbName(5)
	cs, data := xorbRun(5, 0, 3, 8192)
	putXorb(t, s, x, cs, data)
	f, err := s.OpenXorb(x)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DropXorbChunks(x, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Used != 3*8192 || st.Pinned != 3*8192 {
		t.Fatalf("stats while open %+v", st) // the unpunched chunk still counts
	}
	b := make([]byte, 8192)
	if _, err := f.ReadAt(b, 8192); err != nil || !bytes.Equal(b, data[1]) {
		t.Fatalf("dropped chunk not readable while open: %v", err)
	}
	f.Close()
	st := s.Stats()
	if st.Pinned != 0 || (!s.noPunch && st.Used != 2*8192) {
		t.Fatalf("stats after close %+v (noPunch %v)", st, s.noPunch)
	}
	wantXorb(t, s, x, []XorbChunk{cs[0], cs[2]}, byIndex(cs, data))
	if !s.noPunch {
		f, _ := s.OpenXorb(x)
		if _, err := f.ReadAt(b, 8192); err != nil || !bytes.Equal(b, make([]byte, 8192)) {
			t.Fatalf("dropped chunk was not punched: %v", err)
		}
		f.Close()
	}
}

func TestXorbEvictedByBlobs(t *testing.T) {
	clk := newClock()
	s, cfg := newStore(t, 120, clk)
	x := xorbName(6)
	cs, data := xorbRun(6, 0, 2, 30)
	putXorb(t, s, x, cs, data) // 60 bytes, oldest
	clk.Advance(time.Second)
	bl := blobs(3)
	b0 := put(t, s, hf.SHA256, bl[0])
	clk.Advance(time.Second)
	b1 := put(t, s, hf.SHA256, bl[1])
	if st := s.Stats(); st.Used != 120 {
		t.Fatalf("stats %+v", st)
	}
	clk.Advance(time.Second)
	b2 := put(t, s, hf.SHA256, bl[2]) // evicts the whole xorb
	if got, _ := s.XorbChunks(x); got != nil {
		t.Fatalf("xorb not evicted: %v", got)
	}
	if _, err := os.Stat(s.xorbPath(x)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("xorb file: %v", err)
	}
	st := s.Stats()
	if st.Used != 90 || st.Xorbs != 0 || st.XorbBytes != 0 || st.Evictions != 1 || st.EvictedBytes != 60 {
		t.Fatalf("stats %+v", st)
	}
	for i, id := range []hf.BlobID{b0, b1, b2} {
		wantStored(t, s, id, bl[i])
	}
	// The eviction reaches the index.
	s.Close()
	s = openStore(t, cfg)
	if got, _ := s.XorbChunks(x); got != nil {
		t.Fatalf("evicted xorb back after reopen: %v", got)
	}
}

func TestXorbEvictsBlobs(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, 120, clk)
	bl := blobs(4)
	var ids []hf.BlobID
	for i := range 4 {
		clk.Advance(time.Second)
		ids = append(ids, put(t, s, hf.SHA256, bl[i]))
	}
	clk.Advance(time.Second)
	touch(t, s, ids[0])
	x := xorbName(7)
	cs, data := xorbRun(7, 0, 2, 25) // 50 bytes: evicts blobs 1 and 2
	clk.Advance(time.Second)
	putXorb(t, s, x, cs, data)
	wantAbsent(t, s, ids[1])
	wantAbsent(t, s, ids[2])
	wantStored(t, s, ids[0], bl[0])
	wantStored(t, s, ids[3], bl[3])
	wantXorb(t, s, x, cs, byIndex(cs, data))
	if st := s.Stats(); st.Used != 110 || st.Evictions != 2 {
		t.Fatalf("stats %+v", st)
	}
	// More than the budget: ErrNoSpace, nothing evicted.
	big, bigData := xorbRun(8, 0, 1, 121)
	if err := s.PutXorbChunks(xorbName(8), big, bigData); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("oversized put = %v, want ErrNoSpace", err)
	}
	if st := s.Stats(); st.Used != 110 || st.Reserved != 0 || st.Evictions != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestXorbPinned(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, 100, clk)
	x := xorbName(9)
	cs, data := xorbRun(9, 0, 2, 30)
	putXorb(t, s, x, cs, data) // 60 bytes, oldest
	f, err := s.OpenXorb(x)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pinned != 60 {
		t.Fatalf("stats %+v", st)
	}
	clk.Advance(time.Second)
	bl := blobs(2)
	b0 := put(t, s, hf.SHA256, bl[0])
	clk.Advance(time.Second)
	b1 := put(t, s, hf.SHA256, bl[1]) // needs room: b0 goes, not the open xorb
	wantAbsent(t, s, b0)
	wantStored(t, s, b1, bl[1])
	if _, err := s.Create(idOf(hf.SHA256, []byte("x")), 41); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create past the pinned xorb = %v, want ErrNoSpace", err)
	}
	// Adding chunks to the open xorb evicts others, never the xorb itself.
	more, moreData := xorbRun(9, 2, 1, 30)
	putXorb(t, s, x, more, moreData)
	wantAbsent(t, s, b1)
	if st := s.Stats(); st.Used != 90 || st.Pinned != 90 {
		t.Fatalf("stats %+v", st)
	}
	b := make([]byte, 30)
	if _, err := f.ReadAt(b, 60); err != nil || !bytes.Equal(b, moreData[0]) {
		t.Fatalf("read new chunk through the open file: %v", err)
	}
	f.Close()
	s.Evict(0)
	if got, _ := s.XorbChunks(x); got != nil {
		t.Fatal("closed xorb not evictable")
	}
}

func TestXorbOwned(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, 120, clk)
	bl := blobs(3)
	b0 := put(t, s, hf.SHA256, bl[0]) // oldest, owned
	clk.Advance(time.Second)
	x, y := xorbName(10), xorbName(11)
	cs, data := xorbRun(10, 0, 1, 30)
	putXorb(t, s, x, cs, data)
	clk.Advance(time.Second)
	putXorb(t, s, y, cs, data)
	s.SetXorbOwned(func(h string) bool { return h != y })
	clk.Advance(time.Second)
	b1 := put(t, s, hf.SHA256, bl[1])
	clk.Advance(time.Second)
	put(t, s, hf.SHA256, bl[2]) // the unowned xorb goes before older ones
	if got, _ := s.XorbChunks(y); got != nil {
		t.Fatal("unowned xorb not evicted first")
	}
	wantStored(t, s, b0, bl[0])
	wantStored(t, s, b1, bl[1])
	if got, _ := s.XorbChunks(x); len(got) != 1 {
		t.Fatal("owned xorb evicted")
	}
}

func TestXorbReopen(t *testing.T) {
	clk := newClock()
	s, cfg := newStore(t, 1<<20, clk)
	x, y, z := xorbName(12), xorbName(13), xorbName(14)
	cs, data := xorbRun(12, 3, 3, 500)
	cs[1].Verified = true
	putXorb(t, s, x, cs, data)
	putXorb(t, s, y, cs, data)
	putXorb(t, s, z, cs, data)
	if err := s.VerifyXorbChunks(x, []uint32{5}); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(cs)
	want[2].Verified = true
	clk.Advance(time.Hour)
	s.XorbChunks(x) // an access, flushed on Close
	atime := clk.Now().UnixNano()
	s.Close()

	// y's file vanishes; z's is truncated; a stray and an unindexed xorb
	// file appear.
	if err := os.Remove(filepath.Join(cfg.Dir, "xorbs", y[:2], y)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(cfg.Dir, "xorbs", z[:2], z), 1000); err != nil {
		t.Fatal(err)
	}
	u := xorbName(15)
	os.MkdirAll(filepath.Join(cfg.Dir, "xorbs", u[:2]), 0o755)
	unindexed := filepath.Join(cfg.Dir, "xorbs", u[:2], u)
	stray := filepath.Join(cfg.Dir, "xorbs", u[:2], "junk")
	for _, p := range []string{unindexed, stray} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s = openStore(t, cfg)
	wantXorb(t, s, x, want, byIndex(cs, data))
	for _, h := range []string{y, z, u} {
		if got, _ := s.XorbChunks(h); got != nil {
			t.Fatalf("xorb %s loaded: %v", h, got)
		}
	}
	for _, p := range []string{unindexed, stray, filepath.Join(cfg.Dir, "xorbs", z[:2], z)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s not removed: %v", p, err)
		}
	}
	if st := s.Stats(); st.Used != 1500 || st.Xorbs != 1 || st.XorbBytes != 1500 {
		t.Fatalf("stats %+v", st)
	}
	s.mu.Lock()
	got := s.xorbs[x].atime
	s.mu.Unlock()
	if got != atime {
		t.Fatalf("access time %d, want %d", got, atime)
	}
	s.Close()
	// The dropped records are gone from the index.
	db, err := bolt.Open(filepath.Join(cfg.Dir, "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		n := tx.Bucket([]byte(xorbsBucket)).Stats().KeyN
		if n != 1 {
			t.Errorf("%d xorb records, want 1", n)
		}
		return nil
	})
}

func TestXorbRecordEncoding(t *testing.T) {
	cs, _ := xorbRun(16, 0, 3, 10)
	cs[1].Verified = true
	r := xorbRecord{gen: 7, atime: -5, chunks: cs}
	got, ok := decodeXorbRecord(r.encode())
	if !ok || got.gen != 7 || got.atime != -5 || !slices.Equal(got.chunks, cs) {
		t.Fatalf("round trip: %+v, %v", got, ok)
	}
	b := r.encode()
	for _, bad := range [][]byte{nil, b[:len(b)-1], append([]byte{2}, b[1:]...), xorbRecord{gen: 1}.encode()} {
		if _, ok := decodeXorbRecord(bad); ok {
			t.Errorf("decoded a bad record %x", bad)
		}
	}
	unsorted := xorbRecord{chunks: []XorbChunk{cs[1], cs[0]}}
	if _, ok := decodeXorbRecord(unsorted.encode()); ok {
		t.Error("decoded an unsorted record")
	}
}

func TestXorbDiskFull(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1<<20, nil)
	var fail sync.Map
	cfg.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
		if _, ok := fail.Load(off); ok {
			n, _ := f.WriteAt(p[:len(p)/2], off)
			return n, syscall.ENOSPC
		}
		return f.WriteAt(p, off)
	}
	s := openStore(t, cfg)
	x := xorbName(17)
	cs, data := xorbRun(17, 0, 3, 100)
	fail.Store(int64(100), true)
	if err := s.PutXorbChunks(x, cs, data); !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("PutXorbChunks = %v, want ErrDiskFull", err)
	}
	if st := s.Stats(); st.Used != 0 || st.Reserved != 0 || st.Xorbs != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := os.Stat(s.xorbPath(x)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file of a failed new xorb left: %v", err)
	}
	putXorb(t, s, x, cs[:1], data[:1])
	if err := s.PutXorbChunks(x, cs, data); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("PutXorbChunks = %v, want ErrDiskFull", err)
	}
	wantXorb(t, s, x, cs[:1], byIndex(cs, data))
	if st := s.Stats(); st.Used != 100 || st.Reserved != 0 || st.Pinned != 0 {
		t.Fatalf("stats %+v", st)
	}
	fail.Delete(int64(100))
	putXorb(t, s, x, cs, data)
	wantXorb(t, s, x, cs, byIndex(cs, data))
}

func TestXorbConcurrent(t *testing.T) {
	s, _ := newStore(t, 1<<20, newClock())
	x := xorbName(18)
	cs, data := xorbRun(18, 0, 64, 256)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine puts an overlapping window of chunks, reading
			// what is there meanwhile.
			for k := 0; k < 64; k += 4 {
				i, j := (g*8+k)%64, min((g*8+k)%64+6, 64)
				if err := s.PutXorbChunks(x, cs[i:j], data[i:j]); err != nil {
					t.Error(err)
					return
				}
				got, err := s.XorbChunks(x)
				if err != nil {
					t.Error(err)
					return
				}
				f, err := s.OpenXorb(x)
				if err != nil {
					t.Error(err)
					return
				}
				for _, c := range got[:min(len(got), 3)] {
					b := make([]byte, c.Len)
					if _, err := f.ReadAt(b, int64(c.Offset)); err != nil || !bytes.Equal(b, data[c.Index]) {
						t.Errorf("chunk %d: %v", c.Index, err)
					}
				}
				f.Close()
				if k%16 == 0 {
					s.VerifyXorbChunks(x, []uint32{uint32(i)})
				}
			}
		}()
	}
	wg.Wait()
	got, _ := s.XorbChunks(x)
	if len(got) != 64 {
		t.Fatalf("%d chunks held, want 64", len(got))
	}
	if st := s.Stats(); st.Used != 64*256 || st.Reserved != 0 || st.Pinned != 0 {
		t.Fatalf("stats %+v", st)
	}
	s.mu.Lock()
	locks := len(s.xorbLocks)
	s.mu.Unlock()
	if locks != 0 {
		t.Fatalf("%d xorb locks left", locks)
	}
}

// A blob or a xorb whose file disappears under the running store is not
// found when opened, and leaves the index.
func TestOpenAfterTheFileVanished(t *testing.T) {
	s, cfg := newStore(t, 1<<20, newClock())
	id := put(t, s, hf.SHA256, blobs(1)[0])
	if err := os.Remove(blobFile(cfg, id)); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a vanished blob: %v, %v", b, err)
	}
	wantAbsent(t, s, id)

	x := xorbName(20)
	cs, data := xorbRun(10, 0, 1, 30)
	putXorb(t, s, x, cs, data)
	if err := os.Remove(filepath.Join(cfg.Dir, "xorbs", x[:2], x)); err != nil {
		t.Fatal(err)
	}
	if xf, err := s.OpenXorb(x); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenXorb of a vanished xorb: %v, %v", xf, err)
	}
	if got, _ := s.XorbChunks(x); got != nil {
		t.Fatalf("vanished xorb still indexed: %v", got)
	}
}
