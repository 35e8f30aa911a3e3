package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	bolt "go.etcd.io/bbolt"
)

// Buckets of index.db. blobs maps id.String() to an encoded record; meta
// holds one nested bucket per PutMeta bucket name; xorbs (xorbsBucket) maps
// a xorb's hex hash to its chunk list (xorb.go).
const (
	blobsBucket = "blobs"
	metaBucket  = "meta"
)

// record is a complete blob's index entry.
type record struct {
	size  int64
	atime int64 // unix nanoseconds
	gen   uint64
}

const (
	recordVersion = 1
	recordLen     = 1 + 8 + 8 + 8
)

func (r record) encode() []byte {
	b := make([]byte, recordLen)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], uint64(r.size))
	binary.BigEndian.PutUint64(b[9:], uint64(r.atime))
	binary.BigEndian.PutUint64(b[17:], r.gen)
	return b
}

func decodeRecord(b []byte) (record, bool) {
	if len(b) != recordLen || b[0] != recordVersion {
		return record{}, false
	}
	r := record{
		size:  int64(binary.BigEndian.Uint64(b[1:])),
		atime: int64(binary.BigEndian.Uint64(b[9:])),
		gen:   binary.BigEndian.Uint64(b[17:]),
	}
	return r, r.size >= 0
}

func openIndex(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open index %s: %w", path, diskErr(err))
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{blobsBucket, metaBucket, xorbsBucket} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init index %s: %w", path, diskErr(err))
	}
	return db, nil
}

// update runs a write transaction unless the store is closed.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.dbClosed {
		return ErrClosed
	}
	return diskErr(s.db.Update(fn))
}

// view runs a read transaction unless the store is closed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.dbClosed {
		return ErrClosed
	}
	return s.db.View(fn)
}

// putIndex records a newly committed blob.
func (s *Store) putIndex(id hf.BlobID, r record) error {
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(blobsBucket)).Put([]byte(id.String()), r.encode())
	})
}

// flushLoop persists access times and evictions every interval until Close.
func (s *Store) flushLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.flush(); err != nil {
				s.log.Warn("store: flushing index", "err", err)
			}
		}
	}
}

// atimeUpdate is an access time to persist for one incarnation of a blob.
type atimeUpdate struct {
	e     *entry
	id    hf.BlobID
	gen   uint64
	atime int64
}

// flush writes pending access times and index deletions in one transaction.
// Every change is conditional on the stored generation, so a flush racing
// with a later Commit of the same id never clobbers the newer entry.
func (s *Store) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()

	s.mu.Lock()
	ups := make([]atimeUpdate, 0, len(s.dirty))
	for _, e := range s.dirty {
		e.dirty = false
		if !e.removed {
			ups = append(ups, atimeUpdate{e: e, id: e.id, gen: e.gen, atime: e.atime})
		}
	}
	s.dirty = nil
	dels := s.pendingDel
	s.pendingDel = make(map[hf.BlobID]uint64)
	s.mu.Unlock()
	if len(ups) == 0 && len(dels) == 0 {
		return nil
	}

	err := s.update(func(tx *bolt.Tx) error {
		for id, gen := range dels {
			b, k := indexKey(tx, id)
			if g, _, ok := recordGen(id, b.Get(k)); ok && g == gen {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		for _, u := range ups {
			b, k := indexKey(tx, u.id)
			v := b.Get(k)
			g, atime, ok := recordGen(u.id, v)
			if !ok || g != u.gen || atime == u.atime {
				continue
			}
			if err := b.Put(k, withATime(u.id, v, u.atime)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		// Put the work back for the next flush.
		s.mu.Lock()
		for id, gen := range dels {
			if _, ok := s.pendingDel[id]; !ok {
				s.pendingDel[id] = gen
			}
		}
		for _, u := range ups {
			if !u.e.removed && !u.e.dirty {
				u.e.dirty = true
				s.dirty = append(s.dirty, u.e)
			}
		}
		s.mu.Unlock()
	}
	return err
}

// PutMeta stores value under key in a named metadata bucket, durably.
func (s *Store) PutMeta(bucket, key string, value []byte) error {
	if bucket == "" || key == "" {
		return fmt.Errorf("%w: empty meta bucket or key", ErrInvalid)
	}
	if value == nil {
		value = []byte{}
	}
	err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket([]byte(metaBucket)).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), value)
	})
	if err != nil {
		return fmt.Errorf("store: put meta %s/%s: %w", bucket, key, err)
	}
	return nil
}

// MetaPut is one write of PutMetaBatch.
type MetaPut struct {
	Bucket, Key string
	Value       []byte
}

// PutMetaBatch stores several metadata values in one durable transaction.
func (s *Store) PutMetaBatch(puts []MetaPut) error {
	for _, p := range puts {
		if p.Bucket == "" || p.Key == "" {
			return fmt.Errorf("%w: empty meta bucket or key", ErrInvalid)
		}
	}
	err := s.update(func(tx *bolt.Tx) error {
		root := tx.Bucket([]byte(metaBucket))
		for _, p := range puts {
			b, err := root.CreateBucketIfNotExists([]byte(p.Bucket))
			if err != nil {
				return err
			}
			v := p.Value
			if v == nil {
				v = []byte{}
			}
			if err := b.Put([]byte(p.Key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: put %d meta values: %w", len(puts), err)
	}
	return nil
}

// GetMeta returns a copy of the value stored under key in a metadata bucket.
func (s *Store) GetMeta(bucket, key string) ([]byte, bool, error) {
	if bucket == "" || key == "" {
		return nil, false, fmt.Errorf("%w: empty meta bucket or key", ErrInvalid)
	}
	var (
		val   []byte
		found bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(metaBucket)).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		// Meta buckets hold no nested buckets, so a matching key is a value
		// (possibly empty, which Bucket.Get may not distinguish from absent).
		k, v := b.Cursor().Seek([]byte(key))
		if k != nil && bytes.Equal(k, []byte(key)) {
			val, found = bytes.Clone(v), true
			if val == nil {
				val = []byte{}
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: get meta %s/%s: %w", bucket, key, err)
	}
	return val, found, nil
}

// DeleteMeta removes key from a metadata bucket; a missing key is no error.
func (s *Store) DeleteMeta(bucket, key string) error {
	if bucket == "" || key == "" {
		return fmt.Errorf("%w: empty meta bucket or key", ErrInvalid)
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(metaBucket)).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("store: delete meta %s/%s: %w", bucket, key, err)
	}
	return nil
}
