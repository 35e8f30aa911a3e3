package e2e

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// chromiumBin is Debian's chromium (make deps installs it).
const chromiumBin = "/usr/bin/chromium"

// TestStatusPage renders a node's status page (admin port, /) in headless
// Chromium while a fill is in progress, and checks what a browser shows:
// the three members, the Raft leader, the fill's progress bar.
func TestStatusPage(t *testing.T) {
	if _, err := os.Stat(chromiumBin); err != nil {
		t.Skipf("%s not found (make deps installs Debian's chromium): %v", chromiumBin, err)
	}
	hub := startHub(t)
	n1 := startClusterNode(t, hub, 1, "")
	n2 := startClusterNode(t, hub, 2, n1.Gossip)
	n3 := startClusterNode(t, hub, 3, n1.Gossip)
	procs := []*proc{n1, n2, n3}
	waitMembers(t, 3, procs...)
	var leader string
	eventually(t, 30*time.Second, "a Raft leader with three voters", func() bool {
		leader = raftLeaderWithVoters(n1, 3)
		return leader != ""
	})

	// A slow Hub keeps the 64 MiB fill running while the browser looks.
	hub.SetThrottle(256<<10, 0)
	t.Cleanup(func() { hub.SetThrottle(0, 0) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, resolveURL(n1.URL, hf.Model, bigID, "main", "big.bin"), nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()

	// The blob's owner runs the fill: find the node whose page shows it
	// with some bytes written.
	var filling *proc
	eventually(t, 30*time.Second, "a fill with bytes written on some node's status page", func() bool {
		for _, p := range procs {
			resp, err := http.Get(p.AdminURL + "/")
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if v, max, ok := fillBar(string(body)); ok && v > 0 && v < max {
				filling = p
				return true
			}
		}
		return false
	})

	// Files served by that node's client port show in its top repositories.
	for i := 0; i < 2; i++ {
		if resp, _ := do(t, http.MethodGet, resolveURL(filling.URL, hf.Model, modelID, "main", "config.json"), nil); resp.StatusCode != 200 {
			t.Fatalf("config.json: %d", resp.StatusCode)
		}
	}

	start := time.Now()
	dom := renderDOM(t, filling.AdminURL+"/")
	t.Logf("chromium rendered %s in %v", filling.AdminURL+"/", time.Since(start).Round(time.Millisecond))
	t.Logf("rendered page, as text:\n%s", domText(dom))

	if m := regexp.MustCompile(`id="member-count">(\d+)<`).FindStringSubmatch(dom); m == nil || m[1] != "3" {
		t.Errorf("member count: %v, want 3", m)
	}
	if n := strings.Count(dom, `<tr class="member">`); n != 3 {
		t.Errorf("%d member rows, want 3", n)
	}
	if m := regexp.MustCompile(`id="raft-leader">([^<]*)<`).FindStringSubmatch(dom); m == nil || m[1] != leader {
		t.Errorf("leader shown: %v, want %q", m, leader)
	}
	v, max, ok := fillBar(dom)
	if !ok || v <= 0 || v >= max || max != bigSize {
		t.Errorf("fill progress bar: value %d max %d (found %v), want 0 < value < %d", v, max, ok, bigSize)
	}
	if !strings.Contains(dom, "big.bin") || !strings.Contains(dom, bigID) {
		t.Errorf("the fill's repository and file are not on the page")
	}
	if m := regexp.MustCompile(`(?s)<tr class="repo">\s*<td>([^<]*)</td>.*?</tr>`).FindStringSubmatch(dom); m == nil || m[1] != "model/"+modelID {
		t.Errorf("top repository: %v, want model/%s", m, modelID)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

// raftLeaderWithVoters is the leader p reports once the configuration has
// voters voters, else "".
func raftLeaderWithVoters(p *proc, voters int) string {
	resp, err := http.Get(p.AdminURL + "/v1/cluster/raft")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		LeaderID string `json:"leader_id"`
		Servers  []struct {
			Suffrage string `json:"suffrage"`
		} `json:"servers"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil {
		return ""
	}
	n := 0
	for _, s := range v.Servers {
		if s.Suffrage == "voter" {
			n++
		}
	}
	if n != voters {
		return ""
	}
	return v.LeaderID
}

var fillBarRE = regexp.MustCompile(`<progress class="fill-progress" value="(\d+)" max="(\d+)"`)

// fillBar reads the first fill's progress bar.
func fillBar(page string) (value, max int64, ok bool) {
	m := fillBarRE.FindStringSubmatch(page)
	if m == nil {
		return 0, 0, false
	}
	value, _ = strconv.ParseInt(m[1], 10, 64)
	max, _ = strconv.ParseInt(m[2], 10, 64)
	return value, max, true
}

// renderDOM loads url in headless Chromium and returns the DOM it built.
func renderDOM(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumBin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || len(out) == 0 {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, stderr.String())
	}
	return string(out)
}

var (
	headRE  = regexp.MustCompile(`(?s)<head>.*?</head>`)
	blockRE = regexp.MustCompile(`</(tr|p|h1|h2|table|thead|tbody)>|<br>`)
	cellRE  = regexp.MustCompile(`</t[dh]>`)
	tagRE   = regexp.MustCompile(`<[^>]*>`)
	spaceRE = regexp.MustCompile(`[ \t]+`)
	blankRE = regexp.MustCompile(`\n\s*\n+`)
)

// domText is the page's visible text, a line per row or paragraph.
func domText(dom string) string {
	s := headRE.ReplaceAllString(dom, "")
	s = strings.ReplaceAll(s, "\n", " ")
	s = blockRE.ReplaceAllString(s, "\n")
	s = cellRE.ReplaceAllString(s, " | ")
	s = tagRE.ReplaceAllString(s, "")
	s = html.UnescapeString(s)
	s = spaceRE.ReplaceAllString(s, " ")
	s = blankRE.ReplaceAllString(s, "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
