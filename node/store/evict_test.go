package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// blobs returns n distinct 30-byte contents.
func blobs(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "blob %02d padded to thirty bytes", i)[:30]
	}
	return out
}

func TestEvictLRU(t *testing.T) {
	tests := []struct {
		name    string
		touches []int // indexes accessed after the 4 blobs are stored, in order
		evicted []int // evicted, in order, by storing 2 more 30-byte blobs
	}{
		{"insertion order", nil, []int{0, 1}},
		{"oldest touched", []int{0}, []int{1, 2}},
		{"reverse touches", []int{3, 2, 1, 0}, []int{3, 2}},
		{"repeated", []int{1, 0, 1}, []int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			s, _ := newStore(t, 120, clk)
			data := blobs(6)
			ids := make([]hf.BlobID, 6)
			for i := range 4 {
				clk.Advance(time.Second)
				ids[i] = put(t, s, hf.SHA256, data[i])
			}
			for _, i := range tt.touches {
				clk.Advance(time.Second)
				touch(t, s, ids[i])
			}
			for k, want := range tt.evicted {
				clk.Advance(time.Second)
				ids[4+k] = put(t, s, hf.SHA256, data[4+k])
				if _, ok := s.Stat(ids[want]); ok {
					t.Fatalf("after store %d: blob %d not evicted", k, want)
				}
				if st := s.Stats(); st.Used != 120 || st.Evictions != int64(k+1) || st.EvictedBytes != int64(30*(k+1)) {
					t.Fatalf("stats %+v", st)
				}
			}
			evicted := map[int]bool{}
			for _, i := range tt.evicted {
				evicted[i] = true
				wantAbsent(t, s, ids[i])
			}
			for i := range 6 {
				if !evicted[i] {
					wantStored(t, s, ids[i], data[i])
				}
			}
		})
	}
}

func TestEvictSameTimestampUsesAccessOrder(t *testing.T) {
	s, _ := newStore(t, 90, newClock()) // clock never advances
	data := blobs(4)
	a := put(t, s, hf.SHA256, data[0])
	b := put(t, s, hf.SHA256, data[1])
	c := put(t, s, hf.SHA256, data[2])
	touch(t, s, a)
	put(t, s, hf.SHA256, data[3])
	if _, ok := s.Stat(b); ok {
		t.Fatal("b should have been evicted")
	}
	for _, id := range []hf.BlobID{a, c} {
		if _, ok := s.Stat(id); !ok {
			t.Fatalf("%s evicted", id)
		}
	}
}

func TestPinnedAndFillingNeverEvicted(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, 100, clk)
	data := blobs(4)
	a := put(t, s, hf.SHA256, data[0]) // oldest, pinned below
	clk.Advance(time.Second)
	b := put(t, s, hf.SHA256, data[1])
	clk.Advance(time.Second)
	pin, err := s.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	// A fill reserves 30: 30+30+30 = 90.
	fillID := idOf(hf.SHA256, data[2])
	fill, err := s.Create(fillID, 30)
	if err != nil {
		t.Fatal(err)
	}
	defer fill.Close()
	if st := s.Stats(); st.Pinned != 30 || st.Reserved != 30 || st.Used != 60 {
		t.Fatalf("stats %+v", st)
	}
	// Needs 20 more: b goes although a is older.
	clk.Advance(time.Second)
	c := put(t, s, hf.GitSHA1, data[3])
	if _, ok := s.Stat(b); ok {
		t.Fatal("b not evicted")
	}
	if _, ok := s.Stat(a); !ok {
		t.Fatal("pinned a evicted")
	}
	// a pinned, the fill's 30 reserved, c unpinned: a 41-byte blob fits only
	// by evicting c (30+30+41 = 101 > 100 even then).
	if _, err := s.Create(idOf(hf.SHA256, make([]byte, 41)), 41); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create = %v, want ErrNoSpace", err)
	}
	if _, ok := s.Stat(c); !ok {
		t.Fatal("a failed Create evicted c")
	}
	// Everything pinned: no space for even 11 bytes more.
	pinC, err := s.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(idOf(hf.SHA256, make([]byte, 11)), 11); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create = %v, want ErrNoSpace", err)
	}
	s.Evict(0)
	if st := s.Stats(); st.Used != 60 || st.Blobs != 2 {
		t.Fatalf("Evict(0) evicted pinned blobs: %+v", st)
	}
	// A blob bigger than the budget never fits.
	if _, err := s.Create(idOf(hf.SHA256, make([]byte, 101)), 101); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create = %v, want ErrNoSpace", err)
	}
	// Unpinned, they can go.
	pin.Close()
	pinC.Close()
	if _, err := fill.WriteAt(data[2], 0); err != nil {
		t.Fatal(err)
	}
	if err := fill.Commit(); err != nil {
		t.Fatal(err)
	}
	s.Evict(30)
	if st := s.Stats(); st.Used != 30 || st.Blobs != 1 || st.Pinned != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, ok := s.Stat(fillID); !ok {
		t.Fatal("most recent blob evicted")
	}
}

func TestNonOwnedEvictedFirst(t *testing.T) {
	clk := newClock()
	s, _ := newStore(t, 120, clk)
	data := blobs(6)
	ids := make([]hf.BlobID, 4)
	for i := range 4 {
		clk.Advance(time.Second)
		ids[i] = put(t, s, hf.SHA256, data[i])
	}
	notOwned := map[hf.BlobID]bool{ids[3]: true, ids[2]: true}
	s.SetOwned(func(id hf.BlobID) bool { return !notOwned[id] })
	// Pin one non-owned blob: the other non-owned one goes, then the
	// oldest owned.
	pin, err := s.Open(ids[2])
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Close()
	clk.Advance(time.Second)
	put(t, s, hf.SHA256, data[4])
	if _, ok := s.Stat(ids[3]); ok {
		t.Fatal("non-owned blob not evicted first")
	}
	clk.Advance(time.Second)
	put(t, s, hf.SHA256, data[5])
	if _, ok := s.Stat(ids[0]); ok {
		t.Fatal("oldest owned blob not evicted second")
	}
	for _, id := range ids[1:3] {
		if _, ok := s.Stat(id); !ok {
			t.Fatalf("%s evicted", id)
		}
	}
	s.SetOwned(nil)
	s.Evict(60)
	if st := s.Stats(); st.Used != 60 {
		t.Fatalf("stats %+v", st)
	}
	if _, ok := s.Stat(ids[2]); !ok {
		t.Fatal("pinned blob evicted")
	}
}

func TestRemove(t *testing.T) {
	s, cfg := newStore(t, 100, nil)
	data := blobs(1)[0]
	id := put(t, s, hf.SHA256, data)
	b, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove = %v", err)
	}
	wantAbsent(t, s, id)
	if _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open = %v", err)
	}
	p := make([]byte, len(data))
	if _, err := b.ReadAt(p, 0); err != nil || string(p) != string(data) {
		t.Fatalf("open blob unreadable after Remove: %v", err)
	}
	if st := s.Stats(); st.Used != 0 || st.Pinned != 0 || st.Blobs != 0 {
		t.Fatalf("stats %+v", st)
	}
	b.Close()
	if st := s.Stats(); st.Pinned != 0 {
		t.Fatalf("stats %+v", st)
	}
	// It can be stored again, and the removal is durable.
	put(t, s, hf.SHA256, data)
	s.Remove(id)
	s.Close()
	s = openStore(t, cfg)
	wantAbsent(t, s, id)
}

func TestOpenDropsVanishedFile(t *testing.T) {
	s, cfg := newStore(t, 100, nil)
	data := blobs(2)
	a := put(t, s, hf.SHA256, data[0])
	b := put(t, s, hf.SHA256, data[1])
	if err := removeFile(blobFile(cfg, a)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open = %v", err)
	}
	if err := truncateFile(blobFile(cfg, b), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open = %v", err)
	}
	if st := s.Stats(); st.Used != 0 || st.Blobs != 0 || st.Pinned != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBudgetForCountsWhatIsStored(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1<<20, nil)
	s := openStore(t, cfg)
	put(t, s, hf.SHA256, randBytes(9, 1000))
	s.Close()
	var got int64 = -1
	cfg.Budget = 0
	cfg.BudgetFor = func(used int64) int64 { got = used; return used + 500 }
	s = openStore(t, cfg)
	if got != 1000 || s.Stats().Budget != 1500 {
		t.Fatalf("BudgetFor saw %d used, budget %d; want 1000 and 1500", got, s.Stats().Budget)
	}
	cfg.BudgetFor = nil
	if _, err := Open(cfg); err == nil {
		t.Fatal("Budget 0 without BudgetFor must be refused")
	}
}
