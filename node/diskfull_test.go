package node

import (
	"bytes"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node/store"
)

// commitFullStore's fills are written and verified, then fail to commit
// with ENOSPC, as when the disk fills up by the time of the fsync, the
// rename or the index write.
type commitFullStore struct{ Store }

func (s commitFullStore) Create(id hf.BlobID, size int64) (BlobWriter, error) {
	w, err := s.Store.Create(id, size)
	if err != nil {
		return nil, err
	}
	return commitFullWriter{w}, nil
}

type commitFullWriter struct{ BlobWriter }

func (w commitFullWriter) Commit() error {
	w.BlobWriter.Abort()
	return fmt.Errorf("store: index: %w: %w", store.ErrDiskFull, syscall.ENOSPC)
}

// The disk fills up as the blob is committed: its readers still get every
// byte (the last one from the Hub), and nothing is stored.
func TestDiskFullAtCommitPassesThrough(t *testing.T) {
	good := payload(3 << 20)
	hub := serving(good, func(off int64) io.Reader { return bytes.NewReader(good[off:]) })
	n, st := newTestNode(t, hub, 1<<30, func(s Store) Store { return commitFullStore{s} })
	got, _, err := resolveAndRead(t, n, 0, -1)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read: %v, %d of %d bytes", err, len(got), len(good))
	}
	if s := st.Stats(); s.Blobs != 0 || s.Reserved != 0 {
		t.Fatalf("after a fill that could not be committed: %+v", s)
	}
}
