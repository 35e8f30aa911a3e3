package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/raftstore"
)

// fakeStatus is a StatusSource with fixed answers.
type fakeStatus struct {
	fills  []node.FillProgress
	repos  []node.RepoActivity
	errs   []node.RecentError
	shares map[string]float64
}

func (f *fakeStatus) Fills() []node.FillProgress         { return f.fills }
func (f *fakeStatus) TopRepos(n int) []node.RepoActivity { return f.repos[:min(n, len(f.repos))] }
func (f *fakeStatus) RecentErrors() []node.RecentError   { return f.errs }
func (f *fakeStatus) RingShares() map[string]float64     { return f.shares }

func newStatusServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	evil := `model/acme/<script>alert("x")</script>`
	src := &fakeStatus{
		fills: []node.FillProgress{{Blob: hf.BlobID{Algo: hf.SHA256, Hex: strings.Repeat("ab", 32)}, Repo: evil, Path: "big.bin",
			Size: 4 << 20, Written: 1 << 20, Source: node.SourceUpstream, Started: time.Now().Add(-3 * time.Second)}},
		repos:  []node.RepoActivity{{Repo: evil, Requests: 4, Hits: 3, Bytes: 5 << 30}, {Repo: "dataset/acme/data", Requests: 1}},
		errs:   []node.RecentError{{At: time.Now(), Kind: "fill", Repo: evil, Path: "a&b.bin", Detail: `upstream said <b>no</b>`}},
		shares: map[string]float64{"n1": 0.5, "n2": 0.5},
	}
	cfg := &fakeConfig{status: raftstore.Status{State: "leader", Term: 3, LeaderID: "n1", Servers: []raftstore.Server{
		{ID: "n1", Suffrage: "voter", Leader: true}, {ID: "n2", Suffrage: "voter"}, {ID: "n3", Suffrage: "nonvoter"}}}}
	h := NewAdmin(AdminDeps{
		Node: namedNode("n1"),
		Store: func() StoreStats {
			return StoreStats{Used: 3 << 30, Budget: 10 << 30, Blobs: 7, Xorbs: 4, XorbBytes: 1 << 30}
		},
		Members: func() []membership.Member {
			return []membership.Member{
				{Name: "n2", State: membership.StateAlive, Meta: membership.Meta{AdminURL: "http://127.0.0.1:2"}},
				{Name: "n1", State: membership.StateAlive, Self: true, Meta: membership.Meta{AdminURL: "http://127.0.0.1:1"}},
				{Name: "n3", State: membership.StateSuspect},
			}
		},
		Config: cfg,
		Token:  token,
		Status: src,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestStatusPage(t *testing.T) {
	srv := newStatusServer(t, "")
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`<strong id="member-count">3</strong> (2 alive)`,
		`<strong id="raft-leader">n1</strong>`,
		`<td id="voters">n1, n2</td>`,
		`<progress class="fill-progress" value="1048576" max="4194304"></progress> 1.0 MiB of 4.0 MiB (25.0 %)`,
		`3.0 GiB of 10.0 GiB (30.0 %)`,
		`7 blobs, Xet chunks of 4 xorbs (1.0 GiB)`,
		`<td class="num">50.0 %</td>`,
		`<td class="num">75 %</td>`,
		`model/acme/&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`,
		`a&amp;b.bin`,
		`upstream said &lt;b&gt;no&lt;/b&gt;`,
		`<a href="http://127.0.0.1:2/">n2</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "<b>") {
		t.Errorf("a repository name or error reached the page unescaped:\n%s", page)
	}
	// Members sorted by name; only this node's stored bytes are known.
	rows := regexp.MustCompile(`(?s)<tr class="member">.*?</tr>`).FindAllString(page, -1)
	if len(rows) != 3 || !strings.Contains(rows[0], ">n1<") || !strings.Contains(rows[0], "3.0 GiB") ||
		!strings.Contains(rows[1], "—</td>\n</tr>") || !strings.Contains(rows[2], `class="suspect"`) || !strings.Contains(rows[2], "nonvoter") {
		t.Errorf("member rows:\n%s", strings.Join(rows, "\n"))
	}
	if t.Failed() {
		t.Logf("page:\n%s", page)
	}
	// / is the page only: other unknown paths stay 404.
	if resp, err := http.Get(srv.URL + "/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %v %v, want 404", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
}

func TestStatusPageNeedsToken(t *testing.T) {
	srv := newStatusServer(t, "s3cret")
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET / without the token = %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET / with the token = %d, want 200", resp.StatusCode)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB", 1 << 62: "4.0 EiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
