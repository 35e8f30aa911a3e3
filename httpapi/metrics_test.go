package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/node/store"
	"github.com/hfcache/hfcache/test/fakehub"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const (
	metricsRepo  = "acme/metrics-model"
	metricsToken = "hf_metrics_secret_token_123"
)

// lockedBuffer collects a node's logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// instrumented is one node wired as serve wires it: its own registry with
// the Go and process collectors, the store's, the node's, the Hub
// client's and the client port's metrics, served on an admin handler.
type instrumented struct {
	hub    *fakehub.Hub
	commit string
	client *httptest.Server
	admin  *httptest.Server
	logs   *lockedBuffer
}

func newInstrumented(t *testing.T) *instrumented {
	t.Helper()
	hub := fakehub.New()
	commit := hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: metricsRepo, Private: true, Files: []fakehub.File{
		{Path: "small.bin", Size: 4096, Seed: 1, LFS: true},
		{Path: "large.bin", Size: 256 << 10, Seed: 2, LFS: true},
		{Path: "broken.bin", Size: 100, Seed: 3, LFS: true},
		{Path: "limited.bin", Size: 100, Seed: 4, LFS: true},
		{Path: "corrupt.bin", Size: 1000, Seed: 5, LFS: true},
		{Path: "later.bin", Size: 100, Seed: 6, LFS: true},
	}})
	hub.AddToken(metricsToken, "alice")
	hub.Grant(metricsToken, hf.Model, metricsRepo)
	corrupt := hub.FileInfo(hf.Model, metricsRepo, commit, "corrupt.bin").SHA256
	hub.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		switch p := r.URL.Path; {
		case strings.HasSuffix(p, "/broken.bin"):
			http.Error(w, "boom", http.StatusInternalServerError)
		case strings.HasSuffix(p, "/limited.bin"):
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case strings.HasSuffix(p, "/"+corrupt):
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 1000)) // the right size, the wrong bytes
		default:
			return false
		}
		return true
	})
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)

	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	st, err := store.Open(store.Config{Dir: t.TempDir(), Budget: 1 << 30, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hubMetrics := hubclient.NewMetrics()
	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL = hub.URL()
	hcfg.MaxRetries = 0
	hcfg.Logger = log
	hcfg.Metrics = hubMetrics.Remote(node.DefaultRemote)
	hc, err := hubclient.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	ncfg := node.DefaultConfig()
	ncfg.Name = "n1"
	ncfg.Logger = log
	ncfg.FillRetries = 0
	ncfg.Metrics = node.NewMetrics()
	n, err := node.New(ncfg, node.LocalStore(st), &node.Remote{Name: node.DefaultRemote, Hub: hc, RefTTL: time.Hour, Policy: node.PolicyOnDemand})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	httpMetrics := NewMetrics(ncfg.Metrics)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		store.NewCollector(st), ncfg.Metrics, hubMetrics, httpMetrics,
	)
	c := NewClient(Config{Logger: log, Metrics: httpMetrics}, n,
		Distribution{Name: "default", Remote: node.DefaultRemote, Access: node.AccessCaller})
	client := httptest.NewServer(c)
	t.Cleanup(client.Close)
	admin := httptest.NewServer(NewAdmin(AdminDeps{
		Node:    namedNode("n1"),
		Store:   func() StoreStats { return StoreStats{} },
		Members: func() []membership.Member { return nil },
		Metrics: reg,
	}))
	t.Cleanup(admin.Close)
	return &instrumented{hub: hub, commit: commit, client: client, admin: admin, logs: logs}
}

// get requests a file of the repository with the token.
func (in *instrumented) get(t *testing.T, method, file string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(method, in.client.URL+hf.Repo{Type: hf.Model, ID: metricsRepo}.FilePath("resolve", "main", hf.Path(file)), nil)
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// scrape reads the admin port's /metrics.
func scrape(t *testing.T, adminURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value is the value of the series of name with exactly labels (others
// may exist on the series only if labels is nil); -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

type lbl = map[string]string

// TestMetricsAfterTraffic: a miss (filled from upstream), a hit, a file
// over the in-memory size, upstream errors (500, 429, unreachable), a
// corrupt fill, a HEAD, an API call and an unknown path; /metrics on the
// admin handler then shows each of them where it belongs.
func TestMetricsAfterTraffic(t *testing.T) {
	in := newInstrumented(t)
	want := in.hub.Bytes(hf.Model, metricsRepo, in.commit, "small.bin")
	for i, wantSource := range []string{"upstream", "disk"} {
		resp, body, err := in.get(t, http.MethodGet, "small.bin")
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.Header.Get(headerSource) != wantSource {
			t.Fatalf("GET %d: %d %v source %q", i, resp.StatusCode, err, resp.Header.Get(headerSource))
		}
	}
	for range 2 {
		if resp, body, err := in.get(t, http.MethodGet, "large.bin"); err != nil || resp.StatusCode != 200 || len(body) != 256<<10 {
			t.Fatalf("GET large.bin: %d %v", resp.StatusCode, err)
		}
	}
	if resp, _, _ := in.get(t, http.MethodHead, "small.bin"); resp.StatusCode != 200 {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	if resp, _, _ := in.get(t, http.MethodGet, "broken.bin"); resp.StatusCode != 500 {
		t.Fatalf("upstream 500: %d", resp.StatusCode)
	}
	if resp, _, _ := in.get(t, http.MethodGet, "limited.bin"); resp.StatusCode != 429 {
		t.Fatalf("upstream 429: %d", resp.StatusCode)
	}
	if resp, body, err := in.get(t, http.MethodGet, "corrupt.bin"); err == nil && resp.StatusCode == 200 && len(body) == 1000 {
		t.Fatal("a corrupt fill looked complete to its client")
	}
	req, _ := http.NewRequest(http.MethodGet, in.client.URL+"/api/models/"+metricsRepo, nil)
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("api info: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get(in.client.URL + "/no/such/route"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("unknown route: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	in.hub.Close()
	if resp, _, _ := in.get(t, http.MethodGet, "later.bin"); resp.StatusCode != 504 {
		t.Fatalf("upstream unreachable: %d", resp.StatusCode)
	}

	// The corrupt fill's response ends when it is aborted; its request is
	// counted once the handler has unwound.
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = scrape(t, in.admin.URL)
		if value(fams, "hfcache_http_aborted_total", lbl{"route": "resolve"}) == 1 && value(fams, "hfcache_fills_completed_total", lbl{"result": "failed"}) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the aborted response and the failed fill were not counted")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}

	res := func(status string) lbl { return lbl{"route": "resolve", "status": status, "distribution": "default"} }
	for _, c := range []struct {
		name   string
		labels lbl
		want   float64
	}{
		// Requests: two GETs and a HEAD of small.bin, two of large.bin and
		// the corrupt one answered 200; the upstream's errors as the Hub's.
		{"hfcache_http_requests_total", res("200"), 6},
		{"hfcache_http_requests_total", res("500"), 1},
		{"hfcache_http_requests_total", res("429"), 1},
		{"hfcache_http_requests_total", res("504"), 1},
		{"hfcache_http_requests_total", lbl{"route": "api_info", "status": "200", "distribution": "default"}, 1},
		{"hfcache_http_requests_total", lbl{"route": "unknown", "status": "404", "distribution": "default"}, 1},
		{"hfcache_http_request_duration_seconds", lbl{"route": "resolve"}, 9},
		{"hfcache_http_requests_in_flight", lbl{}, 0},
		// Bytes by source, and the hit ratio's inputs.
		{"hfcache_http_response_bytes_total", lbl{"route": "resolve", "source": "disk"}, 4096 + 256<<10},
		{"hfcache_file_responses_total", lbl{"source": "disk"}, 2},
		{"hfcache_file_responses_total", lbl{"source": "upstream"}, 3},
		// Fills.
		{"hfcache_fills_started_total", lbl{}, 3},
		{"hfcache_fills_completed_total", lbl{"result": "verified"}, 2},
		{"hfcache_fills_completed_total", lbl{"result": "failed"}, 1},
		{"hfcache_fills_in_flight", lbl{}, 0},
		{"hfcache_ring_members", lbl{}, 1},
		{"hfcache_ring_owned_share", lbl{}, 1},
		// Upstream.
		{"hfcache_upstream_requests_total", lbl{"remote": "default", "method": "HEAD", "status": "500"}, 1},
		{"hfcache_upstream_requests_total", lbl{"remote": "default", "method": "HEAD", "status": "429"}, 1},
		{"hfcache_upstream_rate_limited_total", lbl{"remote": "default"}, 1},
		{"hfcache_upstream_errors_total", lbl{"remote": "default", "kind": "request"}, 1},
		// The store.
		{"hfcache_store_used_bytes", lbl{}, 4096 + 256<<10},
		{"hfcache_store_blobs", lbl{}, 2},
		{"hfcache_store_budget_bytes", lbl{}, 1 << 30},
		{"hfcache_store_evictions_total", lbl{}, 0},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Bytes from upstream: at least every byte of the two filled blobs
	// reached a client while they were filled.
	if got := value(fams, "hfcache_http_response_bytes_total", lbl{"route": "resolve", "source": "upstream"}); got < 4096+256<<10 {
		t.Errorf("bytes served from upstream: %v", got)
	}
	if got := value(fams, "hfcache_upstream_received_bytes_total", lbl{"remote": "default"}); got < 4096+256<<10+1000 {
		t.Errorf("upstream bytes: %v", got)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_open_fds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
}

// safeLabelValue is what a label value may look like: a name from a small
// set, a configured name, a status code, a bucket bound, a Go version.
var safeLabelValue = regexp.MustCompile(`^[A-Za-z0-9_.+:-]{0,40}$|^[+-]Inf$`)

// TestMetricsLabelsAreBounded: after traffic that names repositories,
// files, revisions and a token, no label value carries any of them.
func TestMetricsLabelsAreBounded(t *testing.T) {
	in := newInstrumented(t)
	in.get(t, http.MethodGet, "small.bin")
	in.get(t, http.MethodGet, "broken.bin")
	http.Get(in.client.URL + "/acme/nope/resolve/main/secret%2Fpath.bin")
	fams := scrape(t, in.admin.URL)
	forbidden := []string{metricsToken, "acme", "metrics-model", "small.bin", "broken", "secret", "main", "/", in.commit}
	series := 0
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if !safeLabelValue.MatchString(v) {
					t.Errorf("%s{%s=%q}: not an allowed label value", name, l.GetName(), v)
				}
				for _, bad := range forbidden {
					if strings.Contains(v, bad) {
						t.Errorf("%s{%s=%q} carries %.8q", name, l.GetName(), v, bad)
					}
				}
			}
		}
	}
	if series < 50 {
		t.Fatalf("only %d series scraped", series)
	}
}

// TestRequestLogLine: one structured line per request at info with the
// request's id, distribution, repository, revision, path, status, bytes,
// source and duration; the token appears in no log line at any level.
func TestRequestLogLine(t *testing.T) {
	in := newInstrumented(t)
	var ids []string
	for range 2 {
		resp, _, err := in.get(t, http.MethodGet, "small.bin")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET: %d %v", resp.StatusCode, err)
		}
		ids = append(ids, resp.Header.Get(hfRequestID))
	}
	if resp, _, _ := in.get(t, http.MethodGet, "corrupt.bin"); resp.StatusCode != 200 {
		t.Fatalf("corrupt: %d", resp.StatusCode)
	}
	resp, err := http.Get(in.client.URL + "/no/such/route")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	lines := map[string]map[string]any{} // request id → line
	var aborted map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines, aborted = map[string]map[string]any{}, nil
		sc := bufio.NewScanner(strings.NewReader(in.logs.String()))
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("not a JSON log line: %q", sc.Text())
			}
			if line["msg"] != "request" {
				continue
			}
			if line["level"] != "INFO" {
				t.Errorf("request line at %v", line["level"])
			}
			id, _ := line["request_id"].(string)
			if _, dup := lines[id]; dup || id == "" {
				t.Errorf("request id %q logged twice or empty", id)
			}
			lines[id] = line
			if line["aborted"] == true {
				aborted = line
			}
		}
		if len(lines) == 4 && aborted != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d request lines (want 4), aborted %v:\n%s", len(lines), aborted, in.logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	for i, wantSource := range []string{"upstream", "disk"} {
		line := lines[ids[i]]
		for k, want := range map[string]any{
			"method": "GET", "route": "resolve", "distribution": "default", "repo_type": "model", "repo": metricsRepo,
			"revision": "main", "path": "small.bin", "status": float64(200), "bytes": float64(4096), "source": wantSource,
		} {
			if line[k] != want {
				t.Errorf("request %d: %s = %v, want %v (%v)", i, k, line[k], want, line)
			}
		}
		if d, ok := line["duration"].(float64); !ok || d <= 0 {
			t.Errorf("request %d: duration %v", i, line["duration"])
		}
	}
	if aborted["path"] != "corrupt.bin" || aborted["status"] != float64(200) {
		t.Errorf("aborted line: %v", aborted)
	}
	var unknown map[string]any
	for _, l := range lines {
		if l["route"] == "unknown" {
			unknown = l
		}
	}
	if unknown == nil || unknown["url"] != "/no/such/route" || unknown["status"] != float64(404) {
		t.Errorf("unknown route line: %v", unknown)
	}
	if logs := in.logs.String(); strings.Contains(logs, metricsToken) || strings.Contains(logs, "Bearer") {
		t.Error("the caller's token appears in the logs")
	}
}

// TestRouteLabels: every kind of client path maps to its fixed label.
func TestRouteLabels(t *testing.T) {
	for path, want := range map[string]string{
		"/acme/m/resolve/main/a/b.bin":                 "resolve",
		"/datasets/acme/d/raw/main/x.csv":              "raw",
		"/api/models/acme/m":                           "api_info",
		"/api/models/acme/m/revision/main":             "api_info",
		"/api/datasets/acme/d/tree/main/sub":           "tree",
		"/api/models/acme/m/paths-info/main":           "paths_info",
		"/api/models/acme/m/xet-read-token/main":       "xet",
		"/api/models/acme/m/refs":                      "api_passthrough",
		"/api/whoami-v2":                               "passthrough",
		"/api/models":                                  "passthrough",
		"/api/spaces/acme/s/commits/main":              "api_passthrough",
		"/api/datasets/acme/d/parquet/default/train/0": "api_passthrough",
	} {
		rt, err := parseRoute(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if got := routeOf(rt).String(); got != want {
			t.Errorf("%s: route %q, want %q", path, got, want)
		}
	}
	for p, want := range map[string]string{
		node.PeerResolvePath: "peer_resolve", node.PeerAPIPath: "peer_api", node.PeerBlobPath: "peer_blob",
		node.PeerWarmPath: "peer_warm", "/-/peer/other": "peer_other", "/-/x": "peer_other",
	} {
		if got := peerRouteOf(p).String(); got != want {
			t.Errorf("%s: route %q, want %q", p, got, want)
		}
	}
}
