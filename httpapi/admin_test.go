package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/raftstore"
)

// fakeConfig is a ConfigStore whose answers each test sets.
type fakeConfig struct {
	mu      sync.Mutex
	apply   func(raftstore.Command) (uint64, error)
	snap    raftstore.Snapshot
	status  raftstore.Status
	applied []raftstore.Command
}

func (f *fakeConfig) Apply(_ context.Context, c raftstore.Command) (uint64, error) {
	f.mu.Lock()
	f.applied = append(f.applied, c)
	f.mu.Unlock()
	return f.apply(c)
}
func (f *fakeConfig) Snapshot() raftstore.Snapshot { return f.snap }
func (f *fakeConfig) WaitIndex(ctx context.Context, idx uint64) error {
	if idx <= f.snap.Index {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}
func (f *fakeConfig) Status() raftstore.Status  { return f.status }
func (f *fakeConfig) TransferLeadership() error { return nil }

type namedNode string

func (n namedNode) Name() string { return string(n) }

func newAdminServer(t *testing.T, cfg *fakeConfig, token string, members []membership.Member) *httptest.Server {
	h := NewAdmin(AdminDeps{
		Node:    namedNode("n1"),
		Store:   func() StoreStats { return StoreStats{} },
		Members: func() []membership.Member { return members },
		Config:  cfg,
		Token:   token,
		Hold:    200 * time.Millisecond,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func adminDo(t *testing.T, method, url, token, body string, hdr map[string]string) (*http.Response, adminError, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e adminError
	json.Unmarshal(raw, &e)
	return resp, e, string(raw)
}

func TestAdminErrorsAndAuth(t *testing.T) {
	cfg := &fakeConfig{
		snap: raftstore.Snapshot{Index: 7, Remotes: map[string]raftstore.Remote{"default": {Name: "default", URL: "https://huggingface.co", Token: "hf_secret", Version: 3}}},
		apply: func(c raftstore.Command) (uint64, error) {
			return 0, &raftstore.ValidationError{Fields: map[string]string{"url": "must be an http(s) URL"}}
		},
		status: raftstore.Status{State: "Leader", LeaderID: "n1"},
	}
	srv := newAdminServer(t, cfg, "admintok", nil)

	if resp, e, _ := adminDo(t, "GET", srv.URL+"/v1/remotes", "", "", nil); resp.StatusCode != 401 || e.Code != "unauthorized" {
		t.Fatalf("no token: %d %+v", resp.StatusCode, e)
	}
	if resp, _, _ := adminDo(t, "GET", srv.URL+"/-/health", "", "", nil); resp.StatusCode != 200 {
		t.Fatalf("health needs no token: %d", resp.StatusCode)
	}
	resp, _, raw := adminDo(t, "GET", srv.URL+"/v1/remotes/default", "admintok", "", nil)
	if resp.StatusCode != 200 || strings.Contains(raw, "hf_secret") || !strings.Contains(raw, `"token_set":true`) {
		t.Fatalf("get remote: %d %s", resp.StatusCode, raw)
	}
	resp, e, _ := adminDo(t, "PUT", srv.URL+"/v1/remotes/x", "admintok", `{"url":"ftp://x"}`, nil)
	if resp.StatusCode != 400 || e.Code != "validation" || e.Fields["url"] == "" {
		t.Fatalf("validation: %d %+v", resp.StatusCode, e)
	}
	resp, e, _ = adminDo(t, "PUT", srv.URL+"/v1/remotes/x", "admintok", `{"url":"https://x","polcy":"typo"}`, nil)
	if resp.StatusCode != 400 || e.Code != "bad_request" {
		t.Fatalf("unknown field: %d %+v", resp.StatusCode, e)
	}
	resp, e, _ = adminDo(t, "PUT", srv.URL+"/v1/remotes/x", "admintok", `{"url":"https://x"}`, map[string]string{"If-Match": "banana"})
	if resp.StatusCode != 400 || e.Code != "bad_request" {
		t.Fatalf("bad If-Match: %d %+v", resp.StatusCode, e)
	}
	resp, e, _ = adminDo(t, "GET", srv.URL+"/v1/remotes/nope", "admintok", "", nil)
	if resp.StatusCode != 404 || e.Code != "not_found" {
		t.Fatalf("missing: %d %+v", resp.StatusCode, e)
	}
	resp, e, _ = adminDo(t, "GET", srv.URL+"/v1/widgets", "admintok", "", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("unknown kind: %d %+v", resp.StatusCode, e)
	}
	// A read that waits for an index this node has not applied gives up.
	resp, e, _ = adminDo(t, "GET", srv.URL+"/v1/remotes?index=99", "admintok", "", nil)
	if resp.StatusCode != 503 {
		t.Fatalf("index wait: %d %+v", resp.StatusCode, e)
	}
	if resp, _, _ := adminDo(t, "GET", srv.URL+"/v1/remotes?index=7", "admintok", "", nil); resp.StatusCode != 200 {
		t.Fatalf("index reached: %d", resp.StatusCode)
	}

	// Conflicts and If-Match.
	cfg.apply = func(c raftstore.Command) (uint64, error) { return 0, raftstore.ErrConflict }
	resp, e, _ = adminDo(t, "PUT", srv.URL+"/v1/remotes/default", "admintok", `{"url":"https://x"}`, map[string]string{"If-Match": `"2"`})
	if resp.StatusCode != 409 || e.Code != "conflict" {
		t.Fatalf("conflict: %d %+v", resp.StatusCode, e)
	}
	// A remote PUT without a token keeps the stored one.
	last := cfg.applied[len(cfg.applied)-1]
	raw2, _ := json.Marshal(last)
	if !strings.Contains(string(raw2), "hf_secret") {
		t.Fatalf("PUT without a token dropped the stored token: %s", raw2)
	}
}

func TestAdminWritesGoToTheLeader(t *testing.T) {
	// The leader: applies everything.
	leaderCfg := &fakeConfig{
		apply:  func(raftstore.Command) (uint64, error) { return 42, nil },
		snap:   raftstore.Snapshot{Index: 42, Distributions: map[string]raftstore.Distribution{"d": {Name: "d", BasePath: "/d", Repository: "default", Version: 42}}},
		status: raftstore.Status{State: "Leader", LeaderID: "leader"},
	}
	leader := newAdminServer(t, leaderCfg, "", nil)
	members := []membership.Member{{Name: "leader", Meta: membership.Meta{AdminURL: leader.URL}}}
	followerCfg := &fakeConfig{
		apply: func(raftstore.Command) (uint64, error) {
			return 0, &raftstore.NotLeaderError{LeaderID: "leader", LeaderAddr: "x"}
		},
		status: raftstore.Status{State: "Follower", LeaderID: "leader"},
	}
	follower := newAdminServer(t, followerCfg, "", members)

	resp, _, raw := adminDo(t, "PUT", follower.URL+"/v1/distributions/d", "", `{"base_path":"/d","repository":"default"}`, nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Hfcache-Index") != "42" || resp.Header.Get("X-Hfcache-Leader") == "" || !strings.Contains(raw, `"/d"`) {
		t.Fatalf("forwarded write: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	if len(leaderCfg.applied) != 1 {
		t.Fatalf("the leader applied %d commands", len(leaderCfg.applied))
	}
	resp, _, _ = adminDo(t, "PUT", follower.URL+"/v1/distributions/d?redirect=true", "", `{}`, nil)
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), leader.URL+"/v1/distributions/d") {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// No leader: the write is held, then refused with 503.
	followerCfg.apply = func(raftstore.Command) (uint64, error) { return 0, raftstore.ErrNoLeader }
	start := time.Now()
	resp, e, _ := adminDo(t, "DELETE", follower.URL+"/v1/distributions/d", "", "", nil)
	if resp.StatusCode != 503 || e.Code != "no_leader" || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("no leader: %d %+v after %v", resp.StatusCode, e, time.Since(start))
	}
}

// Hostile admin requests: oversized and malformed JSON, odd names and
// paths each get a 4xx in the admin's JSON shape and apply nothing.
func TestAdminHostileInput(t *testing.T) {
	cfg := &fakeConfig{
		apply:  func(raftstore.Command) (uint64, error) { return 1, nil },
		status: raftstore.Status{State: "Leader", LeaderID: "n1"},
	}
	srv := newAdminServer(t, cfg, "", nil)
	cases := []struct{ method, path, body string }{
		{"PUT", "/v1/remotes/x", `{"url":"` + strings.Repeat("a", 2<<20) + `"}`},
		{"PUT", "/v1/remotes/x", `{"url":`},
		{"PUT", "/v1/remotes/x", `[1,2,3]`},
		{"PUT", "/v1/remotes/x", "\x00\x01\x02"},
		{"PUT", "/v1/remotes/x", `{"url":"https://x"} trailing`},
		{"PUT", "/v1/widgets/x", `{}`},
		{"GET", "/v1/remotes?index=-1", ""},
		{"GET", "/v1/remotes?index=99999999999999999999999", ""},
		{"DELETE", "/v1/remotes/x", ""},
	}
	for _, c := range cases[:len(cases)-1] {
		resp, e, _ := adminDo(t, c.method, srv.URL+c.path, "", c.body, nil)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || e.Code == "" {
			t.Errorf("%s %.40s %.40q: %d %+v", c.method, c.path, c.body, resp.StatusCode, e)
		}
	}
	// None of those reached Raft except what was valid to apply.
	cfg.mu.Lock()
	n := len(cfg.applied)
	cfg.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d hostile commands were applied", n)
	}
}
