package fakehub

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// TestXetLargeFile times registering a large Xet file; FAKEHUB_XET_BIG sets
// its size in MiB (skipped when unset), FAKEHUB_XET_COMPRESSIBLE=1 makes it
// partly compressible.
func TestXetLargeFile(t *testing.T) {
	mib, _ := strconv.ParseInt(os.Getenv("FAKEHUB_XET_BIG"), 10, 64)
	if mib <= 0 {
		t.Skip("FAKEHUB_XET_BIG not set")
	}
	h := New()
	start := time.Now()
	h.AddRepo(RepoSpec{Type: hf.Model, ID: "org/big", Files: []File{
		{Path: "big.bin", Size: mib << 20, Seed: 1, Xet: true, Compressible: os.Getenv("FAKEHUB_XET_COMPRESSIBLE") == "1"},
	}})
	fi := h.FileInfo(hf.Model, "org/big", "main", "big.bin")
	terms := h.XetChunks(fi.XetHash)
	t.Logf("%d MiB Xet file registered in %v: %d terms, last xorb %s", mib, time.Since(start), len(terms), terms[len(terms)-1].Xorb)
}
