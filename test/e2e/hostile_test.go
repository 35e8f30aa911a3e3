package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// TestHostileInput sends a corpus of hostile requests to the client routes
// of a node in process: each gets a 4xx in the Hub's error shape, nothing
// panics, no file appears outside the data directory, and nothing invalid
// reaches the Hub.
func TestHostileInput(t *testing.T) {
	hub := startHub(t)
	s := newStack(t, hub)
	outside := t.TempDir()
	before := hub.Stats().Total()
	long := strings.Repeat("a", 8<<10)
	corpus := []string{
		"/acme/tiny-model/resolve/main/../../../../" + filepath.Base(outside) + "/x",
		"/acme/tiny-model/resolve/main/%2e%2e/%2e%2e/etc/passwd",
		"/acme/tiny-model/resolve/main/a%2F..%2F..%2Fb",
		"/acme/tiny-model/resolve/..%2F..%2F/config.json",
		"/acme/tiny-model/resolve/main/a%5C..%5Cb",
		"/acme/tiny-model/resolve/main/a%00b",
		"/acme/tiny-model/resolve/main/%ff%fe%fd",
		"/acme/tiny-model/resolve/main/" + long,
		"/acme/" + long + "/resolve/main/config.json",
		"/acme/..%2Ftiny-model/resolve/main/config.json",
		"/.acme/tiny-model/resolve/main/config.json",
		"/acme/tiny-model/resolve/ma%0Ain/config.json",
		"/acme/tiny-model/resolve/main/",
		"/api/models/acme/tiny-model/tree/main/..%2F..",
		"/api/models/acme/tiny-model/tree/%2e%2e",
		"/api/models/..%2F..%2Fetc/revision/main",
		"/api/models/acme/tiny-model/revision/" + long,
		"/-/peer/blob?id=sha256:../../x",
		"/-/peer/resolve",
	}
	for _, p := range corpus {
		req, err := http.NewRequest(http.MethodGet, s.URL+p, nil)
		if err != nil {
			// Not even a valid URL for the client: send it raw below.
			continue
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("%.80s: %v", p, err)
		}
		var body struct {
			Error string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || err != nil || body.Error == "" {
			t.Errorf("%.80s: %d (%v) %q, want a 4xx in the Hub's shape", p, resp.StatusCode, err, body.Error)
		}
	}
	if got := hub.Stats().Total() - before; got != 0 {
		for _, e := range hub.Stats().Log[before:] {
			t.Logf("upstream: %s %s", e.Method, e.Path)
		}
		t.Errorf("%d hostile requests reached the Hub", got)
	}
	// Absurd, overlapping and malformed Range headers on a real file.
	u := resolveURL(s.URL, hf.Model, modelID, "main", "config.json")
	for _, rng := range []string{"bytes=99999999999999999999-", "bytes=-", "bytes=5-1", "bytes=0-1,0-1,0-1,0-1", "bytes=" + strings.Repeat("0-1,", 2000) + "0-1", "bits=0-1", "bytes=--1"} {
		resp, _ := do(t, http.MethodGet, u, map[string]string{"Range": rng})
		if resp.StatusCode >= 500 {
			t.Errorf("Range %.40q: %d", rng, resp.StatusCode)
		}
	}
	// A header bomb is cut off by the server, not the node's memory.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /acme/tiny-model/resolve/main/config.json HTTP/1.1\r\nHost: x\r\nX-Bomb: %s\r\n\r\n", strings.Repeat("b", 2<<20))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.Contains(line, "431") && !strings.Contains(line, "400") && line != "" {
		t.Errorf("header bomb: %q", line)
	}
	// Nothing was written outside the data directory.
	filepath.WalkDir(outside, func(p string, d fs.DirEntry, err error) error {
		if p != outside {
			t.Errorf("file created outside the data dir: %s", p)
		}
		return nil
	})
	if _, err := os.Stat("/etc/passwd.hfcache"); err == nil {
		t.Error("a file appeared in /etc")
	}
}
