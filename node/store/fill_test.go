package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		chunk int
	}{
		{"empty", 0, 1},
		{"small", 11, 3},
		{"one-write", 100_000, 100_000},
		{"chunked", 3 << 20, 64 << 10},
	}
	for _, algo := range []hf.Algo{hf.SHA256, hf.GitSHA1} {
		for i, tt := range tests {
			t.Run(string(algo)+"/"+tt.name, func(t *testing.T) {
				s, cfg := newStore(t, 1<<30, newClock())
				data := randBytes(uint64(i), tt.size)
				id := idOf(algo, data)
				f, err := s.Create(id, int64(len(data)))
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := s.Stat(id); ok {
					t.Fatal("blob visible before Commit")
				}
				for off := 0; off < len(data); off += tt.chunk {
					end := min(off+tt.chunk, len(data))
					if n, err := f.WriteAt(data[off:end], int64(off)); err != nil || n != end-off {
						t.Fatalf("WriteAt(%d) = %d, %v", off, n, err)
					}
				}
				if st := s.Stats(); st.Reserved != int64(len(data)) || st.Fills != 1 {
					t.Fatalf("stats during fill: %+v", st)
				}
				if err := f.Commit(); err != nil {
					t.Fatalf("Commit: %v", err)
				}
				if err := f.Commit(); err != nil {
					t.Fatalf("second Commit: %v", err)
				}
				// Readers of the fill keep working after Commit.
				if len(data) > 0 {
					p := make([]byte, 1)
					if _, err := f.ReadAt(p, int64(len(data)-1)); err != nil || p[0] != data[len(data)-1] {
						t.Fatalf("ReadAt after Commit: %v", err)
					}
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				wantStored(t, s, id, data)
				b, err := s.Open(id)
				if err != nil {
					t.Fatal(err)
				}
				if b.ID() != id || b.Size() != int64(len(data)) || b.ModTime().IsZero() {
					t.Fatalf("blob %v %d %v", b.ID(), b.Size(), b.ModTime())
				}
				b.Close()
				b.Close() // idempotent
				fi, err := os.Stat(blobFile(cfg, id))
				if err != nil {
					t.Fatal(err)
				}
				if perm := fi.Mode().Perm(); perm&^0o644 != 0 || perm&0o600 != 0o600 {
					t.Errorf("mode %v, want 0644 (less umask)", fi.Mode())
				}
				if st := s.Stats(); st.Used != int64(len(data)) || st.Reserved != 0 || st.Blobs != 1 || st.Fills != 0 || st.Pinned != 0 {
					t.Fatalf("stats after commit: %+v", st)
				}
				if got := dirEntries(t, filepath.Join(cfg.Dir, "tmp")); len(got) != 0 {
					t.Fatalf("tmp not empty: %v", got)
				}
			})
		}
	}
}

func TestCorrupt(t *testing.T) {
	data := randBytes(1, 1000)
	other := randBytes(2, 1000)
	tests := []struct {
		name     string
		algo     hf.Algo
		size     int64
		write    []byte
		writeErr bool // WriteAt itself fails
	}{
		{"sha256 wrong content", hf.SHA256, 1000, other, false},
		{"gitsha1 wrong content", hf.GitSHA1, 1000, other, false},
		{"short", hf.SHA256, 1000, data[:999], false},
		{"nothing written", hf.GitSHA1, 1000, nil, false},
		{"past size", hf.SHA256, 999, data, true},
		{"declared size wrong", hf.GitSHA1, 999, data[:999], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, cfg := newStore(t, 1<<20, newClock())
			id := idOf(tt.algo, data)
			f, err := s.Create(id, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tt.write != nil {
				_, err := f.WriteAt(tt.write, 0)
				if tt.writeErr != (err != nil) {
					t.Fatalf("WriteAt: %v", err)
				}
				if err != nil && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("WriteAt: %v, want ErrCorrupt", err)
				}
			}
			if err := f.Commit(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Commit = %v, want ErrCorrupt", err)
			}
			wantAbsent(t, s, id)
			if got := dirEntries(t, filepath.Join(cfg.Dir, "tmp")); len(got) != 0 {
				t.Fatalf("tmp not empty: %v", got)
			}
			if st := s.Stats(); st.Reserved != 0 || st.Fills != 0 || st.Used != 0 {
				t.Fatalf("stats: %+v", st)
			}
			if _, err := f.WriteAt([]byte{1}, 0); err == nil {
				t.Fatal("WriteAt after failed Commit succeeded")
			}
			// The id can be filled again, correctly this time.
			if got := put(t, s, tt.algo, data); got != id {
				t.Fatal("id mismatch")
			}
			wantStored(t, s, id, data)
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	s, _ := newStore(t, 1<<20, nil)
	good := idOf(hf.SHA256, []byte("x"))
	for _, id := range []hf.BlobID{
		{},
		{Algo: hf.SHA256, Hex: "../../../etc/passwd"},
		{Algo: hf.SHA256, Hex: string(bytes.ToUpper([]byte(good.Hex)))},
		{Algo: "md5", Hex: good.Hex},
		{Algo: hf.GitSHA1, Hex: good.Hex},
	} {
		if _, err := s.Create(id, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", id, err)
		}
	}
	if _, err := s.Create(good, -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative size: %v", err)
	}
	f, err := s.Create(good, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("x"), -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative offset: %v", err)
	}
}

func TestOutOfOrderWrites(t *testing.T) {
	const chunk = 64 << 10
	data := randBytes(3, 4<<20+123)
	nchunks := (len(data) + chunk - 1) / chunk
	orders := map[string]func() []int{
		"reverse": func() []int {
			o := make([]int, nchunks)
			for i := range o {
				o[i] = nchunks - 1 - i
			}
			return o
		},
		"shuffled": func() []int { return rand.New(rand.NewPCG(9, 9)).Perm(nchunks) },
	}
	for _, algo := range []hf.Algo{hf.SHA256, hf.GitSHA1} {
		for name, order := range orders {
			for _, workers := range []int{1, 8} {
				t.Run(fmt.Sprintf("%s/%s/%d", algo, name, workers), func(t *testing.T) {
					s, _ := newStore(t, 1<<30, nil)
					id := idOf(algo, data)
					f, err := s.Create(id, int64(len(data)))
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					work := make(chan int)
					var wg sync.WaitGroup
					for range workers {
						wg.Go(func() {
							for c := range work {
								off := c * chunk
								end := min(off+chunk, len(data))
								if _, err := f.WriteAt(data[off:end], int64(off)); err != nil {
									t.Errorf("WriteAt: %v", err)
								}
							}
						})
					}
					for _, c := range order() {
						work <- c
					}
					close(work)
					wg.Wait()
					if err := f.Commit(); err != nil {
						t.Fatalf("Commit: %v", err)
					}
					wantStored(t, s, id, data)
				})
			}
		}
	}
}

func TestOutOfOrderCorruptChunk(t *testing.T) {
	data := randBytes(4, 1<<20)
	s, _ := newStore(t, 1<<30, nil)
	id := idOf(hf.SHA256, data)
	f, err := s.Create(id, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bad := bytes.Clone(data[1000:2000])
	bad[10] ^= 1
	f.WriteAt(data[2000:], 2000)
	f.WriteAt(bad, 1000)
	f.WriteAt(data[:1000], 0)
	if err := f.Commit(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Commit = %v, want ErrCorrupt", err)
	}
	wantAbsent(t, s, id)
}

func TestConcurrentReadAtDuringWrites(t *testing.T) {
	const chunk = 4096
	data := randBytes(5, 2<<20)
	s, _ := newStore(t, 1<<30, nil)
	id := idOf(hf.GitSHA1, data)
	f, err := s.Create(id, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64 // bytes [0, written) are on disk
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			p := make([]byte, 1000)
			check := func() {
				w := written.Load()
				if w == 0 {
					return
				}
				off := rng.Int64N(w)
				n := min(int64(len(p)), w-off)
				if _, err := f.ReadAt(p[:n], off); err != nil {
					t.Errorf("ReadAt(%d, %d): %v", off, n, err)
					return
				}
				if !bytes.Equal(p[:n], data[off:off+n]) {
					t.Errorf("ReadAt(%d) returned wrong bytes", off)
				}
			}
			for {
				select {
				case <-done:
					for range 100 { // and after Commit
						check()
					}
					return
				default:
					check()
				}
			}
		})
	}
	for off := 0; off < len(data); off += chunk {
		if _, err := f.WriteAt(data[off:off+chunk], int64(off)); err != nil {
			t.Fatal(err)
		}
		written.Store(int64(off + chunk))
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); err == nil {
		t.Fatal("ReadAt after Close succeeded")
	}
	wantStored(t, s, id, data)
}

func TestFillingAndExists(t *testing.T) {
	s, _ := newStore(t, 1<<20, nil)
	data := []byte("hello")
	id := idOf(hf.SHA256, data)
	f, err := s.Create(id, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(id, 5); !errors.Is(err, ErrFilling) {
		t.Fatalf("second Create = %v, want ErrFilling", err)
	}
	if _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open during fill = %v, want ErrNotFound", err)
	}
	f.WriteAt(data, 0)
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(id, 5); !errors.Is(err, ErrExists) {
		t.Fatalf("Create after Commit = %v, want ErrExists", err)
	}
	f.Close()

	// An aborted fill frees the id.
	id2 := idOf(hf.GitSHA1, data)
	f2, err := s.Create(id2, 5)
	if err != nil {
		t.Fatal(err)
	}
	f2.Abort()
	f2.Abort()
	if _, err := f2.WriteAt(data, 0); !errors.Is(err, ErrFillDone) {
		t.Fatalf("WriteAt after Abort = %v", err)
	}
	if err := f2.Commit(); !errors.Is(err, ErrFillDone) {
		t.Fatalf("Commit after Abort = %v", err)
	}
	f2.Close()
	f2.Close()
	put(t, s, hf.GitSHA1, data)
	if st := s.Stats(); st.Reserved != 0 || st.Used != 10 || st.Blobs != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseWithoutCommitAborts(t *testing.T) {
	s, cfg := newStore(t, 100, nil)
	id := idOf(hf.SHA256, []byte("abc"))
	f, err := s.Create(id, 3)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("ab"), 0)
	f.Close()
	if st := s.Stats(); st.Reserved != 0 || st.Fills != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := dirEntries(t, filepath.Join(cfg.Dir, "tmp")); len(got) != 0 {
		t.Fatalf("tmp not empty: %v", got)
	}
}

func TestDiskFull(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1<<20, nil)
	var fail atomic.Value // syscall.Errno to fail writes with, 0 for none
	fail.Store(syscall.Errno(0))
	cfg.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
		if errno := fail.Load().(syscall.Errno); errno != 0 {
			return 0, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
		}
		return f.WriteAt(p, off)
	}
	s := openStore(t, cfg)
	data := randBytes(6, 10_000)
	id := idOf(hf.SHA256, data)
	f, err := s.Create(id, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data[:5000], 0); err != nil {
		t.Fatal(err)
	}
	fail.Store(syscall.ENOSPC)
	_, err = f.WriteAt(data[5000:], 5000)
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt = %v, want ErrDiskFull wrapping ENOSPC", err)
	}
	fail.Store(syscall.Errno(0))
	if _, err := f.WriteAt(data[5000:], 5000); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("WriteAt on dead fill = %v", err)
	}
	if err := f.Commit(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Commit on dead fill = %v", err)
	}
	f.Abort()
	f.Close()
	if st := s.Stats(); st.Reserved != 0 || st.Fills != 0 || st.Used != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got := dirEntries(t, filepath.Join(cfg.Dir, "tmp")); len(got) != 0 {
		t.Fatalf("tmp not empty: %v", got)
	}
	wantAbsent(t, s, id)
	// The store keeps working.
	put(t, s, hf.SHA256, data)
	wantStored(t, s, id, data)

	// EDQUOT counts as disk full too.
	id2 := idOf(hf.GitSHA1, data)
	f2, err := s.Create(id2, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	fail.Store(syscall.EDQUOT)
	if _, err := f2.WriteAt(data, 0); !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("EDQUOT: %v", err)
	}
}

func TestAddSpan(t *testing.T) {
	tests := []struct {
		name  string
		spans []span
		want  []span
	}{
		{"single", []span{{0, 10}}, []span{{0, 10}}},
		{"adjacent", []span{{0, 10}, {10, 20}}, []span{{0, 20}}},
		{"adjacent reversed", []span{{10, 20}, {0, 10}}, []span{{0, 20}}},
		{"gap", []span{{0, 10}, {20, 30}}, []span{{0, 10}, {20, 30}}},
		{"fill gap", []span{{0, 10}, {20, 30}, {10, 20}}, []span{{0, 30}}},
		{"bridge many", []span{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {1, 6}}, []span{{0, 7}}},
		{"overlap", []span{{5, 15}, {0, 10}}, []span{{0, 15}}},
		{"contained", []span{{0, 30}, {10, 20}}, []span{{0, 30}}},
		{"same start", []span{{10, 20}, {10, 30}}, []span{{10, 30}}},
		{"middle", []span{{0, 5}, {30, 40}, {10, 20}}, []span{{0, 5}, {10, 20}, {30, 40}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Fill
			for _, s := range tt.spans {
				f.addSpanLocked(s.start, s.end)
			}
			if fmt.Sprint(f.pending) != fmt.Sprint(tt.want) {
				t.Fatalf("spans %v, want %v", f.pending, tt.want)
			}
		})
	}
}

// TestConcurrentStress runs fills, opens, removals and evictions at once on a
// small budget and checks the accounting afterwards.
func TestConcurrentStress(t *testing.T) {
	const budget = 4000
	s, cfg := newStore(t, budget, nil)
	contents := make([][]byte, 40)
	for i := range contents {
		contents[i] = randBytes(uint64(100+i), 200+i*10)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 200 {
				data := contents[rng.IntN(len(contents))]
				algo := []hf.Algo{hf.SHA256, hf.GitSHA1}[rng.IntN(2)]
				id := idOf(algo, data)
				switch rng.IntN(4) {
				case 0, 1:
					b, err := s.Open(id)
					if errors.Is(err, ErrNotFound) {
						f, err := s.Create(id, int64(len(data)))
						if err != nil {
							if !errors.Is(err, ErrExists) && !errors.Is(err, ErrFilling) && !errors.Is(err, ErrNoSpace) {
								t.Errorf("Create: %v", err)
							}
							continue
						}
						half := len(data) / 2
						f.WriteAt(data[half:], int64(half))
						f.WriteAt(data[:half], 0)
						if err := f.Commit(); err != nil {
							t.Errorf("Commit: %v", err)
						}
						f.Close()
						continue
					}
					if err != nil {
						t.Errorf("Open: %v", err)
						continue
					}
					got := make([]byte, b.Size())
					if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
						t.Errorf("read %s: %v", id, err)
					}
					b.Close()
				case 2:
					s.Remove(id)
				case 3:
					s.Evict(int64(rng.IntN(budget)))
					if st := s.Stats(); st.Used+st.Reserved > budget {
						t.Errorf("over budget: %+v", st)
					}
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	var sum int64
	n := 0
	for _, data := range contents {
		for _, algo := range []hf.Algo{hf.SHA256, hf.GitSHA1} {
			if size, ok := s.Stat(idOf(algo, data)); ok {
				sum += size
				n++
			}
		}
	}
	if st.Used != sum || st.Blobs != n || st.Reserved != 0 || st.Pinned != 0 || st.Fills != 0 || st.Used > budget {
		t.Fatalf("stats %+v, sum of blobs %d in %d", st, sum, n)
	}
	// Disk and index agree with memory.
	files := 0
	filepath.WalkDir(filepath.Join(cfg.Dir, "blobs"), func(_ string, d fs.DirEntry, _ error) error {
		if d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if files != n {
		t.Fatalf("%d blob files on disk, %d blobs", files, n)
	}
	s.Close()
	s = openStore(t, cfg)
	if st2 := s.Stats(); st2.Used != st.Used || st2.Blobs != st.Blobs {
		t.Fatalf("after reopen %+v, before %+v", st2, st)
	}
}

// Reopen gives a file description with an offset of its own, before and
// after Commit (the file was renamed) and after Abort (removed).
func TestFillReopen(t *testing.T) {
	for i, end := range []string{"commit", "abort"} {
		t.Run(end, func(t *testing.T) {
			s, _ := newStore(t, 1<<30, newClock())
			data := randBytes(uint64(i), 100_000)
			f, err := s.Create(idOf(hf.SHA256, data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(data, 0); err != nil {
				t.Fatal(err)
			}
			a, err := f.Reopen()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			pa := make([]byte, 10)
			if _, err := a.Read(pa); err != nil || !bytes.Equal(pa, data[:10]) {
				t.Fatalf("first reader: %v, %x", err, pa)
			}
			if end == "commit" {
				err = f.Commit()
			} else {
				f.Abort()
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := f.Reopen()
			if err != nil {
				t.Fatalf("Reopen after %s: %v", end, err)
			}
			defer b.Close()
			pb := make([]byte, 10)
			if _, err := b.Read(pb); err != nil || !bytes.Equal(pb, data[:10]) {
				t.Fatalf("second reader after %s: %v, %x", end, err, pb)
			}
			if _, err := a.Read(pa); err != nil || !bytes.Equal(pa, data[10:20]) {
				t.Fatalf("first reader's offset moved: %v, %x", err, pa)
			}
		})
	}
}
