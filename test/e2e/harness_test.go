package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/store"
	"github.com/hfcache/hfcache/test/fakehub"
	"github.com/hfcache/hfcache/test/procs"
)

// hfcacheBin is the binary built once by TestMain for the process tests.
var hfcacheBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hfcache-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hfcacheBin = filepath.Join(dir, "hfcache")
	build := exec.Command("go", "build", "-o", hfcacheBin, "github.com/hfcache/hfcache/cmd/hfcache")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hfcache:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startHub starts a fake Hub with the standard fixtures and stops it with the test.
func startHub(t *testing.T) *fakehub.Hub {
	t.Helper()
	h := fakehub.New()
	addFixtures(h)
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Fixture repositories.
const (
	modelID   = "acme/tiny-model"
	datasetID = "acme/tiny-data"
	gatedID   = "acme/gated-model"
	privateID = "acme/private-model"
	bigID     = "acme/big-model"
	edgeID    = "acme/edge-cases"

	goodToken  = "hf_good_token_approved"
	otherToken = "hf_valid_but_not_approved"

	bigSize = 64 << 20
)

// modelFiles are the tiny model's files: regular, LFS, Xet, a subfolder, a
// unicode name with a space, a "+", and enough small files to paginate.
func modelFiles() []fakehub.File {
	files := []fakehub.File{
		{Path: "config.json", Data: []byte(`{"model_type": "bert", "hidden_size": 8}` + "\n")},
		{Path: "sub dir/ünïcode file.txt", Data: []byte("unicode content\n")},
		{Path: "nested/deeper/notes.md", Data: []byte("# notes\n")},
		{Path: "weights+v2.bin", Data: bytes.Repeat([]byte("w+"), 5000), LFS: true},
		{Path: "model.safetensors", Size: 3<<20 + 17, Seed: 1, LFS: true},
		{Path: "xet.bin", Size: 1<<20 + 3, Seed: 2, Xet: true},
	}
	for i := 0; i < 60; i++ {
		files = append(files, fakehub.File{Path: fmt.Sprintf("many/file-%03d.txt", i), Data: []byte(fmt.Sprintf("file %d\n", i))})
	}
	return files
}

func addFixtures(h *fakehub.Hub) {
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: modelID, Files: modelFiles()})
	h.AddRepo(fakehub.RepoSpec{Type: hf.Dataset, ID: datasetID, Files: []fakehub.File{
		{Path: "README.md", Data: []byte("---\nlicense: mit\n---\n# tiny data\n")},
		{Path: "data/train.parquet", Size: 200_000, Seed: 3, LFS: true},
		{Path: "data/test.csv", Data: []byte("a,b\n1,2\n")},
	}})
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: gatedID, Gated: "manual", Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"gated": true}`)},
		{Path: "model.safetensors", Size: 100_000, Seed: 4, LFS: true},
	}})
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: privateID, Private: true, Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"private": true}`)},
	}})
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: bigID, Files: []fakehub.File{
		{Path: "big.bin", Size: bigSize, Seed: 5, LFS: true},
	}})
	// An empty file answers a Range with 200 and no Content-Range (as Go's
	// ServeContent does, and so the fake Hub), which @huggingface/hub's
	// fileDownloadInfo cannot take ("Expected size information"); it lives
	// outside the repos the JS client downloads whole.
	h.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: edgeID, Files: []fakehub.File{
		{Path: "empty.txt", Data: []byte{}},
		{Path: "__init__.py", Data: []byte{}},
	}})
	h.AddToken(goodToken, "alice")
	h.AddToken(otherToken, "mallory")
	h.Grant(goodToken, hf.Model, gatedID)
	h.Grant(goodToken, hf.Model, privateID)
}

// content reads a file's bytes from the fake Hub.
func content(t *testing.T, h *fakehub.Hub, typ hf.RepoType, id, rev, path string) []byte {
	t.Helper()
	ra := h.Content(typ, id, rev, path)
	if ra == nil {
		t.Fatalf("fake hub has no %s %s@%s:%s", typ, id, rev, path)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.NewSectionReader(ra, 0, 1<<40)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stack is one node in process: store, hub client, node and HTTP handler on
// an httptest server. Fast, and the node's internals are reachable.
type stack struct {
	URL   string
	Node  *node.Node
	Store *store.Store
	Dir   string
}

// stackOpt adjusts a stack's node, store and default remote before they start.
type stackOpt func(*node.Config, *store.Config, *node.Remote)

// xetHidden serves the default remote with Xet hidden (xet: hidden).
func xetHidden(_ *node.Config, _ *store.Config, r *node.Remote) { r.Xet = node.XetHidden }

// xetTokenTTL sets the lifetime of the Xet tokens the node issues.
func xetTokenTTL(d time.Duration) stackOpt {
	return func(nc *node.Config, _ *store.Config, _ *node.Remote) { nc.XetTokenTTL = d }
}

func newStack(t *testing.T, hub *fakehub.Hub, opts ...stackOpt) *stack {
	t.Helper()
	dir := t.TempDir()
	return openStack(t, hub, dir, opts...)
}

// openStack starts a node on an existing data directory.
func openStack(t *testing.T, hub *fakehub.Hub, dir string, opts ...stackOpt) *stack {
	t.Helper()
	log := testLogger(t)
	ncfg := node.DefaultConfig()
	ncfg.Name = "test-node"
	ncfg.Logger = log
	scfg := store.Config{Dir: dir, Budget: 1 << 30, Logger: log, Now: time.Now}
	remote := &node.Remote{Name: node.DefaultRemote, RefTTL: time.Minute, Policy: node.PolicyOnDemand}
	for _, o := range opts {
		o(&ncfg, &scfg, remote)
	}
	st, err := store.Open(scfg)
	if err != nil {
		t.Fatal(err)
	}
	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL = hub.URL()
	hcfg.RetryBase = 10 * time.Millisecond
	hcfg.MaxRetries = 1
	hcfg.Logger = log
	hc, err := hubclient.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	remote.Hub = hc
	n, err := node.New(ncfg, node.LocalStore(st), remote)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewClient(httpapi.Config{Logger: log}, n, httpapi.Distribution{Remote: node.DefaultRemote, Access: node.AccessCaller}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
		hc.Close()
		st.Close()
	})
	return &stack{URL: srv.URL, Node: n, Store: st, Dir: dir}
}

// testLogger logs through t.Log only when the test fails verbose.
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// get performs a request and returns the response with its body read.
func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, body
}

var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableCompression: true},
}

// proc is an hfcache process started from the built binary.
type proc struct {
	*procs.Proc
	URL      string
	AdminURL string
	Gossip   string
	DataDir  string
}

// startProc runs `hfcache serve` against upstream on loopback ports and
// waits until it serves. Extra args are appended.
func startProc(t *testing.T, upstream, dataDir string, args ...string) *proc {
	t.Helper()
	all := append([]string{"serve",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", dataDir, "--upstream", upstream,
		"--cache-size", "2GiB", "--log-format", "json", "--log-level", "debug",
		"--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
	}, args...)
	return startCmd(t, exec.Command(hfcacheBin, all...), dataDir)
}

// startCmd starts an `hfcache serve` command line, logging to stderr as
// JSON, waits for its "hfcache serving" log line and takes the addresses
// from it; it stops the process with the test.
func startCmd(t *testing.T, cmd *exec.Cmd, dataDir string) *proc {
	t.Helper()
	cmd.Env = append(os.Environ(), "HF_TOKEN=")
	pp, err := procs.Start(cmd, procs.Options{Name: "hfcache", StderrOnly: true, Ready: procs.IsServing})
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{Proc: pp, DataDir: dataDir}
	t.Cleanup(func() { p.stop(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	line, err := p.WaitReady(ctx)
	switch {
	case errors.Is(err, procs.ErrExited):
		t.Fatalf("hfcache exited before serving:\n%s", p.Log.String())
	case err != nil:
		t.Fatalf("hfcache did not start within 60s:\n%s", p.Log.String())
	}
	addrs, _ := procs.ParseServing(line)
	p.URL, p.AdminURL, p.Gossip = "http://"+addrs.Client, "http://"+addrs.Admin, addrs.Gossip
	return p
}

// stop sends SIGINT and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	if p.Exited() {
		return
	}
	if p.Stop(os.Interrupt, 30*time.Second) {
		t.Errorf("hfcache did not stop within 30s on SIGINT")
	}
	if t.Failed() {
		t.Logf("hfcache logs (tail):\n%s", procs.Tail(p.Log.String(), 20000))
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if procs.Poll(ctx, 5*time.Millisecond, cond) != nil { // polling interval, not a wait for an outcome
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
