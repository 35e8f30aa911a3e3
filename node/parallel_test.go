package node

import (
	"testing"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// Readers are woken when the contiguous prefix moves, not for bytes
// written past it.
func TestAdvanceChunkWakesOnPrefix(t *testing.T) {
	fl := newFill(hf.BlobID{}, 3<<10, nil)
	fl.chunk, fl.chunkDone = 1<<10, make([]int64, 3)
	st := fl.state()
	fl.advanceChunk(1, 1<<10) // past the prefix
	select {
	case <-st.changed:
		t.Fatal("woken though the prefix did not move")
	default:
	}
	fl.advanceChunk(0, 512)
	select {
	case <-st.changed:
	default:
		t.Fatal("not woken when the prefix moved")
	}
	if w := fl.state().written; w != 512 {
		t.Fatalf("written %d, want 512", w)
	}
	fl.advanceChunk(0, 512) // completes chunk 0: the prefix covers chunk 1 too
	if w := fl.state().written; w != 2<<10 {
		t.Fatalf("written %d, want %d", w, 2<<10)
	}
}
