package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// TestMetricsEndpoint: the built binary serves its own registry on the
// admin port at /metrics, behind the admin token: request, store, Raft,
// ring, upstream and Go runtime series, after a miss and a hit.
func TestMetricsEndpoint(t *testing.T) {
	hub := startHub(t)
	p := startProc(t, hub.URL(), t.TempDir(), "--admin-token", "hf_admin_metrics_token")
	u := resolveURL(p.URL, hf.Model, modelID, "main", "config.json")
	for _, source := range []string{"upstream", "disk"} {
		if resp, _ := do(t, http.MethodGet, u, nil); resp.StatusCode != 200 || resp.Header.Get("X-Hfcache-Source") != source {
			t.Fatalf("GET: %d from %q, want %s", resp.StatusCode, resp.Header.Get("X-Hfcache-Source"), source)
		}
	}
	if resp, _ := do(t, http.MethodGet, p.AdminURL+"/metrics", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without the admin token: %d", resp.StatusCode)
	}
	var body string
	eventually(t, 10*time.Second, "raft leader in /metrics", func() bool {
		resp, b := do(t, http.MethodGet, p.AdminURL+"/metrics", map[string]string{"Authorization": "Bearer hf_admin_metrics_token"})
		body = string(b)
		return resp.StatusCode == 200 && strings.Contains(body, `hfcache_raft_state{state="leader"} 1`)
	})
	for _, want := range []string{
		`hfcache_http_requests_total{distribution="default",route="resolve",status="200"} 2`,
		`hfcache_file_responses_total{source="disk"} 1`,
		`hfcache_file_responses_total{source="upstream"} 1`,
		`hfcache_store_blobs 1`,
		`hfcache_store_budget_bytes 2.147483648e+09`,
		`hfcache_ring_members 1`,
		`hfcache_raft_has_leader 1`,
		`hfcache_raft_servers{suffrage="voter"} 1`,
		`hfcache_upstream_requests_total{method="HEAD",remote="default",status="200"}`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in /metrics", want)
		}
	}
}
