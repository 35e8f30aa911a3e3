package hubclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: requests by method and status (redirect hops and retries
// each count), 429s, body bytes, a stalled body, a connection refused,
// and a caller's own cancellation, which is no upstream error.
func TestMetrics(t *testing.T) {
	f := newFakeHub(t)
	m := NewMetrics()
	prometheus.NewRegistry().MustRegister(m) // a registry of its own: no globals
	c := f.client(func(cfg *Config) {
		cfg.StallTimeout = 100 * time.Millisecond
		cfg.MaxRetries = 1
		cfg.Metrics = m.Remote("hub")
	})
	repo := mustRepo(t, "org/model")

	// An LFS file: HEAD answers 302 to the CDN; GET follows it.
	if _, err := c.HeadFile(ctxT(t), repo, "main", "model.safetensors", ""); err != nil {
		t.Fatal(err)
	}
	b, err := c.GetFile(ctxT(t), repo, "main", "model.safetensors", "", "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, b)
	// 429 then 429 again (one retry): the Hub's error comes back.
	f.setFlaky(2, http.StatusTooManyRequests, "0")
	if _, err := c.HeadFile(ctxT(t), mustRepo(t, "org/flaky"), "main", "config.json", ""); err == nil {
		t.Fatal("429 twice succeeded")
	}
	// A body that stalls.
	stalled, err := c.GetFile(ctxT(t), repo, "main", "stall.bin", "", "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(stalled)
	stalled.Close()
	// The caller cancels mid-body.
	ctx, cancel := context.WithCancel(ctxT(t))
	mine, err := c.GetFile(ctx, repo, "main", "stall.bin", "", "", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(mine, make([]byte, 100))
	cancel()
	io.ReadAll(mine)
	mine.Close()
	// Nobody listens.
	dead := httptest.NewServer(nil)
	dead.Close()
	d := newTestClient(t, dead.URL, func(cfg *Config) { cfg.MaxRetries = 0; cfg.Metrics = m.Remote("gone") })
	if _, err := d.HeadFile(ctxT(t), repo, "main", "config.json", ""); err == nil {
		t.Fatal("a closed port answered")
	}

	for _, c := range []struct {
		what string
		got  prometheus.Collector
		want float64
	}{
		{"HEAD 302", m.requests.WithLabelValues("hub", "HEAD", "302"), 1},
		{"HEAD 429", m.requests.WithLabelValues("hub", "HEAD", "429"), 2},
		{"429s", m.limited.WithLabelValues("hub"), 2},
		{"stalls", m.errors.WithLabelValues("hub", "stall"), 1},
		{"broken bodies", m.errors.WithLabelValues("hub", "body"), 0},
		{"request errors", m.errors.WithLabelValues("hub", "request"), 0},
		{"refused", m.errors.WithLabelValues("gone", "request"), 1},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("hub")); got < float64(len(lfsBody)+200) {
		t.Errorf("bytes: %v, want at least the LFS body and the two stalled prefixes", got)
	}
	if n := testutil.CollectAndCount(m, "hfcache_upstream_requests_total"); n < 4 {
		t.Errorf("%d request series", n)
	}
	m.Forget("gone")
	if got := testutil.ToFloat64(m.errors.WithLabelValues("gone", "request")); got != 0 {
		t.Errorf("a forgotten remote's series survived: %v", got)
	}
}
