package store

import (
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestEvictAmongKeepsAQuota(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s, err := Open(Config{Dir: t.TempDir(), Budget: 1 << 30, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []hf.BlobID
	for i := 0; i < 4; i++ {
		data := make([]byte, 1000)
		data[0] = byte(i)
		id, _ := hf.NewBlobID(hf.SHA256, hf.SHA256Hex(data))
		f, err := s.Create(id, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(data, 0)
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		now = now.Add(time.Second)
		ids = append(ids, id)
	}
	other := ids[3]
	quota := ids[:3]
	if u := s.Usage(quota); u != 3000 {
		t.Fatalf("usage %d", u)
	}
	b, _ := s.Open(quota[0]) // pinned: never evicted
	defer b.Close()
	if ev := s.EvictAmong(quota, 2000); ev != 1000 {
		t.Fatalf("evicted %d bytes, want the oldest unpinned one (1000)", ev)
	}
	if _, ok := s.Stat(quota[1]); ok {
		t.Fatal("the least recently used unpinned blob survived")
	}
	if _, ok := s.Stat(other); !ok {
		t.Fatal("a blob outside the set was evicted")
	}
	var keys []string
	s.PutMeta("q", "a\x00x", []byte("1"))
	s.PutMeta("q", "a\x00y", []byte("2"))
	s.PutMeta("q", "b\x00z", []byte("3"))
	s.ScanMeta("q", "a\x00", func(k string, v []byte) { keys = append(keys, k+"="+string(v)) })
	if len(keys) != 2 || keys[0] != "a\x00x=1" {
		t.Fatalf("scan: %q", keys)
	}
}
