package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/store"
	"github.com/hfcache/hfcache/test/fakehub"
	"github.com/prometheus/client_golang/prometheus"
)

// warmNode is a node with one 4 KiB file already cached, instrumented as
// in production: metrics, and the request log line at info (discarded).
func warmNode(b testing.TB) (*Client, *node.Node, string) {
	return warmNodeWith(b, slog.LevelInfo, true)
}

func warmNodeWith(b testing.TB, level slog.Level, metrics bool) (*Client, *node.Node, string) {
	b.Helper()
	hub := fakehub.New()
	commit := hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "acme/bench", Files: []fakehub.File{{Path: "small.bin", Size: 4096, Seed: 1, LFS: true}}})
	if err := hub.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(hub.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))
	st, err := store.Open(store.Config{Dir: b.TempDir(), Budget: 1 << 30, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL = hub.URL()
	hc, _ := hubclient.New(hcfg)
	ncfg := node.DefaultConfig()
	ncfg.Logger = log
	var m *Metrics
	if metrics {
		ncfg.Metrics = node.NewMetrics()
		m = NewMetrics(ncfg.Metrics)
		prometheus.NewRegistry().MustRegister(ncfg.Metrics, m)
	}
	n, err := node.New(ncfg, node.LocalStore(st), &node.Remote{Name: node.DefaultRemote, Hub: hc, RefTTL: time.Hour, Policy: node.PolicyOnDemand})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Shutdown(context.Background()) })
	// As serve wires it: the node keeps the status page's activity counts.
	c := NewClient(Config{Logger: log, Metrics: m, Activity: n}, n, Distribution{Remote: node.DefaultRemote, Access: node.AccessCaller})
	path := hf.Repo{Type: hf.Model, ID: "acme/bench"}.FilePath("resolve", hf.Revision(commit), "small.bin")
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != 200 || rec.Body.Len() != 4096 {
		b.Fatalf("warming: %d %d", rec.Code, rec.Body.Len())
	}
	return c, n, path
}

// discard is a ResponseWriter that keeps nothing (the recorder's buffer
// would dominate the allocations).
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkWarmHit is the hot path of a cache hit: route, resolve from the
// in-memory metadata, open the blob and serve it.
func BenchmarkWarmHit(b *testing.B) {
	c, _, path := warmNode(b)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		c.ServeHTTP(w, req)
	}
}

// BenchmarkWarmHitQuiet is BenchmarkWarmHit without metrics and with the
// request log line disabled (log level warn): the instrumentation's cost
// is the difference.
func BenchmarkWarmHitQuiet(b *testing.B) {
	c, _, path := warmNodeWith(b, slog.LevelWarn, false)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		c.ServeHTTP(w, req)
	}
}

// BenchmarkResolveCached is the metadata lookup of a hit.
func BenchmarkResolveCached(b *testing.B) {
	_, n, path := warmNode(b)
	rt, err := parseRoute(path)
	if err != nil {
		b.Fatal(err)
	}
	req := node.FileRequest{Remote: node.DefaultRemote, Repo: rt.file.Repo, Revision: rt.file.Rev, Path: rt.file.Path}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Resolve(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
