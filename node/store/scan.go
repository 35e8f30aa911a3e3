package store

import (
	"container/heap"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hfcache/hfcache/hubclient/hf"
	bolt "go.etcd.io/bbolt"
)

// scanStats summarises the startup scan for the log.
type scanStats struct {
	tmpRemoved     int
	dropped        int // index entries without a matching file
	orphansIndexed int
	orphansRemoved int
	strays         int // files under blobs/ that are no blob path
	xorbsDropped   int // xorb records without a matching file
	xorbStrays     int // files under xorbs/ without a record
	verifiedBytes  int64
}

// scan rebuilds the in-memory state at Open:
//
//  1. everything in tmp/ is a crashed fill and is deleted;
//  2. index entries whose file is missing, not a regular file or of the wrong
//     size are dropped (a wrong-sized file is deleted);
//  3. files under blobs/ that are not in the index were renamed into place
//     after verification but not indexed before a crash: they are re-hashed
//     and indexed (access time = file mtime), or deleted if they do not
//     match, or deleted unverified once Config.ScanVerifyBytes is used up;
//     anything that is not a blob path is deleted;
//  4. xorb records whose file is missing are dropped and files under xorbs/
//     without a record are deleted (scanXorbs);
//  5. used bytes are summed from the surviving entries (blobs and xorbs) and
//     the store is evicted down to its budget.
func (s *Store) scan() error {
	var st scanStats
	if err := os.MkdirAll(s.tmpDir, 0o755); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.MkdirAll(s.blobsDir, 0o755); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	tmp, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, d := range tmp {
		if err := os.RemoveAll(filepath.Join(s.tmpDir, d.Name())); err != nil {
			return fmt.Errorf("store: clearing tmp: %w", err)
		}
		st.tmpRemoved++
	}

	type loaded struct {
		id hf.BlobID
		r  record
	}
	var (
		index []loaded
		drop  []string // index keys to delete
	)
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(blobsBucket)).ForEach(func(k, v []byte) error {
			id, err := hf.ParseBlobID(string(k))
			r, ok := decodeRecord(v)
			if err != nil || validID(id) != nil || id.String() != string(k) || !ok {
				drop = append(drop, string(k))
				return nil
			}
			index = append(index, loaded{id, r})
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: reading index: %w", err)
	}
	for _, l := range index {
		path := s.blobPath(l.id)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != l.r.size {
			if err == nil {
				s.log.Warn("store: removing blob of unexpected size or type", "blob", l.id.String(), "want", l.r.size, "mode", fi.Mode().String(), "size", fi.Size())
				os.RemoveAll(path)
			}
			drop = append(drop, l.id.String())
			continue
		}
		s.gen = max(s.gen, l.r.gen)
		s.entries[l.id] = &entry{id: l.id, size: l.r.size, atime: l.r.atime, gen: l.r.gen}
	}
	st.dropped = len(drop)

	orphans, err := s.scanBlobs(&st)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(blobsBucket))
		for _, k := range drop {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, e := range orphans {
			if err := b.Put([]byte(e.id.String()), record{size: e.size, atime: e.atime, gen: e.gen}.encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: repairing index: %w", diskErr(err))
	}
	for _, e := range orphans {
		s.entries[e.id] = e
	}
	if err := s.scanXorbs(&st); err != nil {
		return err
	}

	s.lru = make(lruHeap, 0, len(s.entries)+len(s.xorbs))
	for _, e := range s.entries {
		e.idx = len(s.lru)
		s.lru = append(s.lru, e)
		s.used += e.size
	}
	for _, e := range s.xorbs {
		e.idx = len(s.lru)
		s.lru = append(s.lru, e)
		s.used += e.size
		s.xorbUsed += e.size
	}
	heap.Init(&s.lru)
	if s.cfg.Budget == 0 {
		if s.cfg.Budget = s.cfg.BudgetFor(s.used); s.cfg.Budget <= 0 {
			return fmt.Errorf("%w: store BudgetFor(%d) = %d must be positive", ErrInvalid, s.used, s.cfg.Budget)
		}
	}
	s.evictLocked(s.cfg.Budget)

	s.log.Info("store: opened", "dir", s.cfg.Dir, "blobs", len(s.entries), "used", s.used, "budget", s.cfg.Budget,
		"tmp_removed", st.tmpRemoved, "index_dropped", st.dropped, "orphans_indexed", st.orphansIndexed,
		"orphans_removed", st.orphansRemoved, "strays_removed", st.strays, "evicted", s.evictions,
		"xorbs", len(s.xorbs), "xorb_bytes", s.xorbUsed, "xorbs_dropped", st.xorbsDropped, "xorb_strays_removed", st.xorbStrays)
	return nil
}

// scanBlobs walks blobs/{algo}/{xx}/{hex} for files the index does not know
// and returns the verified ones as entries to index.
func (s *Store) scanBlobs(st *scanStats) ([]*entry, error) {
	var orphans []*entry
	stray := func(path string) {
		s.log.Warn("store: removing stray path under blobs", "path", path)
		os.RemoveAll(path)
		st.strays++
	}
	algos, err := os.ReadDir(s.blobsDir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, a := range algos {
		algo := hf.Algo(a.Name())
		adir := filepath.Join(s.blobsDir, a.Name())
		if !a.IsDir() || (algo != hf.SHA256 && algo != hf.GitSHA1) {
			stray(adir)
			continue
		}
		prefixes, err := os.ReadDir(adir)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		for _, p := range prefixes {
			pdir := filepath.Join(adir, p.Name())
			if !p.IsDir() || len(p.Name()) != 2 {
				stray(pdir)
				continue
			}
			files, err := os.ReadDir(pdir)
			if err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			for _, d := range files {
				path := filepath.Join(pdir, d.Name())
				id := hf.BlobID{Algo: algo, Hex: d.Name()}
				if validID(id) != nil || id.Hex[:2] != p.Name() || !d.Type().IsRegular() {
					stray(path)
					continue
				}
				if s.entries[id] != nil {
					continue
				}
				e, err := s.verifyOrphan(id, path, st)
				if err != nil {
					s.log.Warn("store: removing unindexed blob", "blob", id.String(), "reason", err)
					os.Remove(path)
					st.orphansRemoved++
					continue
				}
				orphans = append(orphans, e)
				st.orphansIndexed++
			}
		}
	}
	return orphans, nil
}

// verifyOrphan re-hashes an unindexed blob file.
func (s *Store) verifyOrphan(id hf.BlobID, path string, st *scanStats) (*entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if s.cfg.ScanVerifyBytes < 0 || st.verifiedBytes+size > s.cfg.ScanVerifyBytes {
		return nil, errors.New("startup verification cap (ScanVerifyBytes) reached")
	}
	st.verifiedBytes += size
	v := id.NewVerifier(size)
	n, err := io.Copy(v, f)
	if err != nil {
		return nil, err
	}
	if n != size || !v.OK() {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, id)
	}
	s.gen++
	return &entry{id: id, size: size, atime: fi.ModTime().UnixNano(), gen: s.gen}, nil
}
