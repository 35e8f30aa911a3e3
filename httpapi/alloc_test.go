//go:build !race

// The race detector adds allocations of its own, so allocation counts are
// only meaningful without it.

package httpapi

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// A warm hit allocates only the request's own objects: its state and
// request id, the parsed route, the File, the Content and the blob handle,
// one slice of header values, the repository id when it has two segments,
// and the request log line's attributes. The metadata lookup, the ETag, the size and the
// Content-Disposition come formatted from the cache (see
// docs/PERFORMANCE.md: 18 allocations before). A change that adds one
// fails here.
func TestWarmHitAllocations(t *testing.T) {
	c, _, path := warmNode(t)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discard{h: http.Header{}}
	n := testing.AllocsPerRun(200, func() {
		clear(w.h)
		c.ServeHTTP(w, req)
	})
	t.Logf("%.1f allocations per hit", n)
	if n > 9 {
		t.Errorf("a warm hit makes %.1f allocations, want at most 9", n)
	}
	// And their bytes: under load the collector runs once per few MiB
	// allocated, so bytes per hit set how often it pauses the node (a
	// Content holding a copy of its File instead of a pointer made a hit
	// 1464 bytes instead of 1160).
	const runs = 1000
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range runs {
		clear(w.h)
		c.ServeHTTP(w, req)
	}
	runtime.ReadMemStats(&m1)
	per := (m1.TotalAlloc - m0.TotalAlloc) / runs
	t.Logf("%d bytes allocated per hit", per)
	if per > 1280 {
		t.Errorf("a warm hit allocates %d bytes, want at most 1280", per)
	}
}
