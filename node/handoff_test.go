package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

func TestServedLogTop(t *testing.T) {
	blob := func(i int) hf.BlobID { return hf.BlobID{Algo: hf.SHA256, Hex: fmt.Sprintf("%064x", i)} }
	r := &Remote{Name: DefaultRemote, Policy: PolicyOnDemand}
	file := func(i int) *File {
		return &File{Repo: hf.Repo{Type: hf.Model, ID: "acme/m"}, Commit: fmt.Sprintf("%040x", 1), Path: hf.Path(fmt.Sprintf("f%d", i)), Blob: blob(i), Size: int64(i), remote: r}
	}
	var s servedLog
	now := time.Unix(0, 0)
	for i := 0; i < servedMax+10; i++ { // i served i%5+1 times
		for range i%5 + 1 {
			now = now.Add(time.Millisecond)
			s.record(file(i), now)
		}
	}
	if len(s.files) != servedMax {
		t.Fatalf("%d files remembered, want the bound %d", len(s.files), servedMax)
	}
	s.record(&File{Blob: blob(-1), remote: &Remote{Name: "p", Policy: PolicyStreamed}}, now)
	if _, ok := s.files[blob(-1)]; ok {
		t.Fatal("a streamed remote's blob is remembered: it is never stored")
	}
	top := s.top(3, func(id hf.BlobID) bool { return id != blob(servedMax+5) })
	if len(top) != 3 {
		t.Fatalf("top: %d", len(top))
	}
	// The most recent of the most served (5 hits: i%5 == 4), skipping the
	// one keep refuses.
	for i, want := range []int{servedMax, servedMax - 5, servedMax - 10} {
		if top[i].Blob != blob(want).String() || top[i].Path != fmt.Sprintf("f%d", want) || top[i].Remote != DefaultRemote || top[i].Size != int64(want) {
			t.Errorf("top[%d] = %+v, want file %d", i, top[i], want)
		}
	}
}
