package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
	"github.com/hfcache/hfcache/test/procs"
)

// The "killed nodes" scenario of issue 7.
const (
	killRepoID = "acme/kill-model"
	// killClients download the whole snapshot at once, as a lab does.
	killClients = 8
	// killHubRate throttles every upstream body, so fills are still running
	// when the first node dies.
	killHubRate = 1 << 20
	// killSlowRate is each client's read rate until the test releases it (a
	// slow link): transfers stay in flight across both kills however fast
	// the machine is. Released, clients read at full speed.
	killSlowRate = 512 << 10
	// killRcvBuf is the clients' socket receive buffer: small, so fewer of
	// a transfer's bytes wait in loopback buffers (autotuned up to
	// megabytes) and a kill is more likely to cut it.
	killRcvBuf = 64 << 10
	// killCutMargin: a node is killed while a client reads a body through it
	// with at least this much of the file still to come.
	killCutMargin = 2 << 20
	// killReadTimeout is huggingface_hub's per-read timeout
	// (HF_HUB_DOWNLOAD_TIMEOUT).
	killReadTimeout = 10 * time.Second
	// killMaxFails bounds consecutive attempts without progress (the count
	// resets when an attempt brings bytes, as huggingface_hub's does).
	killMaxFails = 10
)

// killFiles is the snapshot: LFS shards of a few MiB (odd sizes, to catch
// off-by-ones in ranges) and small regular files, eight files for eight
// clients that each start at a different one.
func killFiles() []fakehub.File {
	return []fakehub.File{
		{Path: "config.json", Data: []byte(`{"model_type": "llama", "hidden_size": 64}` + "\n")},
		{Path: "tokenizer_config.json", Data: []byte(`{"bos_token": "<s>", "eos_token": "</s>"}` + "\n")},
		{Path: "README.md", Data: []byte("---\nlicense: mit\n---\n# kill-model\n")},
		{Path: "tokenizer.model", Size: 1<<20 + 3, Seed: 71, LFS: true},
		{Path: "model-00001-of-00004.safetensors", Size: 6<<20 + 1, Seed: 72, LFS: true},
		{Path: "model-00002-of-00004.safetensors", Size: 5<<20 + 7, Seed: 73, LFS: true},
		{Path: "model-00003-of-00004.safetensors", Size: 4<<20 + 13, Seed: 74, LFS: true},
		{Path: "model-00004-of-00004.safetensors", Size: 3<<20 + 17, Seed: 75, LFS: true},
	}
}

// killNode is a cluster node with fixed addresses (client, gossip, Raft) and
// a data directory it keeps across restarts, so a restarted node comes
// back where the balancer, gossip and Raft expect it.
type killNode struct {
	name, dir, listen, gossip, raft string
	join                            []string
	p                               *proc
	dead                            []*proc // earlier, killed processes (their logs)
}

func (kn *killNode) start(t *testing.T, hub *fakehub.Hub) {
	t.Helper()
	if kn.p != nil {
		kn.dead = append(kn.dead, kn.p)
	}
	args := []string{"--node-name", kn.name, "--cluster-secret", clusterSecret,
		"--listen", kn.listen, "--gossip-addr", kn.gossip, "--raft-addr", kn.raft,
		"--bootstrap-expect", "3", "--join", strings.Join(kn.join, ",")}
	kn.p = startProc(t, hub.URL(), kn.dir, args...)
}

// killRaftView is GET /v1/cluster/raft with the indexes.
type killRaftView struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LeaderID     string `json:"leader_id"`
	Servers      []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
	} `json:"servers"`
}

func killRaftStatus(p *proc) killRaftView {
	var v killRaftView
	resp, err := http.Get(p.AdminURL + "/v1/cluster/raft")
	if err != nil {
		return v
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&v)
	return v
}

// killAgreedLeader is the leader every given node names, with every node
// seeing want voters; "" until they agree.
func killAgreedLeader(want int, nodes ...*killNode) string {
	leader := ""
	for _, n := range nodes {
		v := killRaftStatus(n.p)
		voters := 0
		for _, s := range v.Servers {
			if s.Suffrage == "voter" {
				voters++
			}
		}
		if v.LeaderID == "" || voters != want || (leader != "" && v.LeaderID != leader) {
			return ""
		}
		leader = v.LeaderID
	}
	return leader
}

// killStoreBlobs is a node's /v1/store blob count (-1 if unreachable).
func killStoreBlobs(p *proc) int {
	resp, err := http.Get(p.AdminURL + "/v1/store")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		Blobs int `json:"blobs"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return -1
	}
	return st.Blobs
}

// killDiskBlobs lists the complete blobs in a node's data directory
// (store/blobs/{algo}/{xx}/{hex}): content address → algorithm.
func killDiskBlobs(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := filepath.Join(dataDir, "store", "blobs")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			out[d.Name()] = filepath.Base(filepath.Dir(filepath.Dir(p)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// killLFSBlobs counts the sha256 (LFS) blobs among a node's blobs.
func killLFSBlobs(blobs map[string]string) int {
	n := 0
	for _, algo := range blobs {
		if algo == string(hf.SHA256) {
			n++
		}
	}
	return n
}

// killWaitDead waits until every observer's gossip declares name dead: the
// cluster noticed the kill (and moved the node's keys away) before the
// node comes back.
func killWaitDead(t *testing.T, name string, observers ...*killNode) {
	t.Helper()
	eventually(t, 30*time.Second, "gossip declaring "+name+" dead", func() bool {
		for _, o := range observers {
			if memberStates(o.p, "")[name] != "dead" {
				return false
			}
		}
		return true
	})
}

// killBytes is how many body bytes the clients have read in all.
func killBytes(clients []*killClient) int64 {
	var n int64
	for _, c := range clients {
		c.mu.Lock()
		n += c.read
		c.mu.Unlock()
	}
	return n
}

// killPut writes a remote through a node's admin API; status and index.
func killPut(t *testing.T, p *proc, name string, hub *fakehub.Hub) (int, uint64, []byte) {
	return admin(t, http.MethodPut, p.AdminURL+"/v1/remotes/"+name, map[string]any{"url": hub.URL()})
}

// killClient downloads a snapshot through the balancer the way
// huggingface_hub does: the revision's file list, then per file a HEAD for
// the size and a GET that, on a connection error, a 5xx or a body that ends
// short, is retried from the bytes it already has with Range: bytes=N-
// (expecting 206 and the exact Content-Range) and appended.
type killClient struct {
	id   int
	base string
	hc   *http.Client
	slow <-chan struct{} // closed: read at full speed

	mu       sync.Mutex
	file     string
	have     int64
	size     int64
	front    string // node that answered the current body (the balancer's backend)
	inBody   bool
	finished bool
	err      error
	sums     map[string]string // path → sha256 of the downloaded bytes
	resumes  map[string]int    // path → 206 answers to Range resumes
	cuts     int               // transfers that broke mid-body
	retries  int               // attempts that failed (any request)
	stalls   int               // reads that hit killReadTimeout
	read     int64             // body bytes read, every file and attempt
}

func newKillClient(id int, base string, slow <-chan struct{}) *killClient {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetReadBuffer(killRcvBuf)
			}
			return c, err
		},
	}
	return &killClient{id: id, base: base, slow: slow, sums: map[string]string{}, resumes: map[string]int{},
		hc: &http.Client{Transport: tr}}
}

// killProgress is what the test sees of a client.
type killProgress struct {
	id          int
	file        string
	have, size  int64
	front       string
	inBody      bool
	finished    bool
	resumes     int
	cuts, stall int
}

func (c *killClient) progress() killProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := 0
	for _, n := range c.resumes {
		r += n
	}
	return killProgress{id: c.id, file: c.file, have: c.have, size: c.size, front: c.front, inBody: c.inBody,
		finished: c.finished, resumes: r, cuts: c.cuts, stall: c.stalls}
}

func (c *killClient) run(ctx context.Context) {
	err := c.snapshot(ctx)
	c.mu.Lock()
	c.err, c.finished, c.inBody = err, true, false
	c.mu.Unlock()
	c.hc.CloseIdleConnections()
}

func (c *killClient) snapshot(ctx context.Context) error {
	var info struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			RFilename string `json:"rfilename"`
		} `json:"siblings"`
	}
	err := c.retry(ctx, "revision info", func() (bool, error) {
		resp, err := c.get(ctx, http.MethodGet, c.base+"/api/models/"+killRepoID+"/revision/main", nil)
		if err != nil {
			return true, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return killRetryable(resp.StatusCode), fmt.Errorf("revision info: %s", resp.Status)
		}
		return true, json.NewDecoder(resp.Body).Decode(&info)
	})
	if err != nil {
		return err
	}
	var files []string
	for _, s := range info.Siblings {
		files = append(files, s.RFilename)
	}
	sort.Strings(files)
	if len(files) == 0 || len(info.SHA) != 40 {
		return fmt.Errorf("revision info: commit %q, %d files", info.SHA, len(files))
	}
	// Like snapshot_download: every file at the resolved commit. Each
	// client starts at a different file, so every blob is wanted at once.
	for i := range files {
		p := files[(c.id+i)%len(files)]
		if err := c.download(ctx, info.SHA, p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func killRetryable(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

func (c *killClient) get(ctx context.Context, method, url string, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.hc.Do(req)
}

// retry runs a request until it succeeds, fails for good, or fails
// killMaxFails times in a row; f reports whether its error may be retried.
func (c *killClient) retry(ctx context.Context, what string, f func() (retryable bool, err error)) error {
	var last error
	for fails := 0; fails < killMaxFails; fails++ {
		if fails > 0 {
			c.mu.Lock()
			c.retries++
			c.mu.Unlock()
			if err := killBackoff(ctx, fails); err != nil {
				return err
			}
		}
		retryable, err := f()
		if err == nil {
			return nil
		}
		if !retryable || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return fmt.Errorf("%s: %d attempts failed, last: %w", what, killMaxFails, last)
}

// killBackoff is the pause before retry n: 100 ms doubling, at most 1.6 s.
func killBackoff(ctx context.Context, n int) error {
	d := min(100*time.Millisecond<<(n-1), 1600*time.Millisecond)
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *killClient) download(ctx context.Context, commit, path string) error {
	url := resolveURL(c.base, hf.Model, killRepoID, commit, path)
	var size int64 = -1
	err := c.retry(ctx, "HEAD", func() (bool, error) {
		resp, err := c.get(ctx, http.MethodHead, url, nil)
		if err != nil {
			return true, err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return killRetryable(resp.StatusCode), fmt.Errorf("HEAD: %s", resp.Status)
		}
		if resp.Header.Get(hf.HeaderRepoCommit) != commit || resp.Header.Get("ETag") == "" {
			return false, fmt.Errorf("HEAD: commit %q etag %q", resp.Header.Get(hf.HeaderRepoCommit), resp.Header.Get("ETag"))
		}
		size, err = strconv.ParseInt(resp.Header.Get(hf.HeaderLinkedSize), 10, 64)
		if err != nil {
			return false, fmt.Errorf("HEAD: X-Linked-Size %q", resp.Header.Get(hf.HeaderLinkedSize))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.file, c.have, c.size = path, 0, size
	c.mu.Unlock()

	h := sha256.New()
	var have int64
	var last error
	for fails := 0; ; {
		n, err := c.attempt(ctx, url, h, have, size)
		have += n
		if err == nil {
			break
		}
		var perm killPermanent
		if errors.As(err, &perm) || ctx.Err() != nil {
			return err
		}
		last = err
		if n > 0 {
			fails = 0 // progress: the attempt budget starts over
		}
		if fails++; fails >= killMaxFails {
			return fmt.Errorf("GET: %d attempts without progress, last: %w", fails, last)
		}
		c.mu.Lock()
		c.retries++
		c.mu.Unlock()
		if err := killBackoff(ctx, fails); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.sums[path] = hex.EncodeToString(h.Sum(nil))
	c.inBody = false
	c.mu.Unlock()
	return nil
}

// killPermanent is a protocol violation: retrying would not help.
type killPermanent struct{ error }

// attempt is one GET from offset have; it appends what it reads to h and
// returns how many bytes that was. nil error: the file is complete.
func (c *killClient) attempt(ctx context.Context, url string, h io.Writer, have, size int64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var hdr map[string]string
	if have > 0 {
		hdr = map[string]string{"Range": fmt.Sprintf("bytes=%d-", have)}
	}
	resp, err := c.get(ctx, http.MethodGet, url, hdr)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch {
	case killRetryable(resp.StatusCode):
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return 0, fmt.Errorf("GET: %s", resp.Status)
	case have > 0 && resp.StatusCode == http.StatusPartialContent:
		want := fmt.Sprintf("bytes %d-%d/%d", have, size-1, size)
		if got := resp.Header.Get("Content-Range"); got != want {
			return 0, killPermanent{fmt.Errorf("resume from %d: Content-Range %q, want %q", have, got, want)}
		}
		c.mu.Lock()
		c.resumes[c.file]++
		c.mu.Unlock()
	case have == 0 && resp.StatusCode == http.StatusOK:
		if resp.ContentLength != size {
			return 0, killPermanent{fmt.Errorf("GET: Content-Length %d, HEAD said %d", resp.ContentLength, size)}
		}
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, killPermanent{fmt.Errorf("GET with %d bytes already: %s %q", have, resp.Status, body)}
	}
	front := resp.Header.Get("X-Hfcache-Via") // the node that relayed from the owner
	if front == "" {
		front = resp.Header.Get("X-Hfcache-Node")
	}
	c.mu.Lock()
	c.front, c.inBody = front, true
	c.mu.Unlock()

	// The read watchdog: no byte for killReadTimeout fails the attempt.
	stalled := false
	var smu sync.Mutex
	watchdog := time.AfterFunc(time.Hour, func() {
		smu.Lock()
		stalled = true
		smu.Unlock()
		cancel()
	})
	defer watchdog.Stop()

	buf := make([]byte, 32<<10)
	start := time.Now()
	var n int64
	for have+n < size {
		watchdog.Reset(killReadTimeout)
		m, err := resp.Body.Read(buf[:min(int64(len(buf)), size-have-n)])
		watchdog.Stop()
		if m > 0 {
			h.Write(buf[:m])
			n += int64(m)
			c.mu.Lock()
			c.have = have + n
			c.read += int64(m)
			c.mu.Unlock()
			if err := c.pace(ctx, start, n); err != nil {
				return n, err
			}
		}
		if err != nil && have+n < size {
			c.mu.Lock()
			c.inBody = false
			c.cuts++
			smu.Lock()
			if stalled {
				c.stalls++
			}
			smu.Unlock()
			c.mu.Unlock()
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("body cut at %d of %d: %w", have+n, size, err)
		}
	}
	return n, nil
}

// pace holds a slow client to killSlowRate until it is released.
func (c *killClient) pace(ctx context.Context, start time.Time, n int64) error {
	select {
	case <-c.slow:
		return nil
	default:
	}
	d := time.Until(start.Add(time.Duration(n * int64(time.Second) / killSlowRate)))
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-c.slow:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// killInFlight lists clients reading a body through node with at least
// margin bytes of the file left.
func killInFlight(clients []*killClient, node string, margin int64) []killProgress {
	var out []killProgress
	for _, c := range clients {
		p := c.progress()
		if p.inBody && !p.finished && (node == "" || p.front == node) && p.size-p.have >= margin {
			out = append(out, p)
		}
	}
	return out
}

// TestKilledNodes (issue 7, "killed nodes"): three Raft nodes behind the
// test balancer, eight huggingface_hub-like clients downloading a snapshot
// through it from a slow Hub; a follower is SIGKILLed, then the Raft leader.
//
// The sequence, and why: with three voters, two dead nodes leave no quorum,
// so "a new leader is elected and admin writes succeed" is only meaningful
// if the first killed node is back before the leader dies:
//
//  1. SIGKILL a follower mid-download (one that holds blobs and relays a
//     client's body). Admin writes still commit on the two left (a quorum).
//  2. Restart it on the same addresses and data directory: it rejoins gossip
//     and Raft, still holds its blobs, and applies the write it missed.
//  3. SIGKILL the leader mid-download. A new leader is elected among the two
//     survivors and an admin write succeeds through a survivor.
//  4. Restart the old leader: it rejoins as a follower of the new leader,
//     applies the write made after its death and still holds its blobs.
//
// Every download completes byte-identical (clients cut by a kill resume with
// Range), and each restarted node serves the blobs it held before its kill
// from its disk, without an upstream body fetch.
//
// The balancer keeps a dead node in its pool: a refused connection is
// passed to the next backend (a passive health check, as nginx's
// proxy_next_upstream does), and the restarted node, on its old address,
// gets requests again as soon as it listens.
func TestKilledNodes(t *testing.T) {
	began := time.Now()
	// A Hub with only this repository (the standard fixtures' 64 MiB model
	// costs seconds to generate under -race).
	hub := fakehub.New()
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: killRepoID, Files: killFiles()})
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	commit := hub.Ref(hf.Model, killRepoID, "main")
	want := map[string]string{} // path → sha256 of the Hub's content
	addrPath := map[string]string{}
	for _, f := range killFiles() {
		fi := hub.FileInfo(hf.Model, killRepoID, commit, f.Path)
		want[f.Path] = fi.SHA256
		addrPath[fi.Addr()] = f.Path
	}
	hub.SetThrottle(killHubRate, 0)

	nodes := make([]*killNode, 3)
	for i := range nodes {
		nodes[i] = &killNode{name: fmt.Sprintf("kill%d", i+1), dir: t.TempDir(), listen: freeAddr(t), gossip: freeAddr(t), raft: freeAddr(t)}
	}
	for i, n := range nodes {
		for j, o := range nodes {
			if i != j {
				n.join = append(n.join, o.gossip)
			}
		}
	}
	byName := map[string]*killNode{}
	for _, n := range nodes {
		n.start(t, hub)
		byName[n.name] = n
	}
	logDeadOnFailure(t, "kill", nodes)
	all := func() []*proc { return []*proc{nodes[0].p, nodes[1].p, nodes[2].p} }
	waitMembers(t, 3, all()...)
	var leaderName string
	eventually(t, 30*time.Second, "three voters agreeing on a leader", func() bool {
		leaderName = killAgreedLeader(3, nodes...)
		return leaderName != ""
	})
	formed := time.Since(began)
	lb := newBalancer(t, "http://"+nodes[0].listen, "http://"+nodes[1].listen, "http://"+nodes[2].listen)

	// Eight clients, slow until released.
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	released := false
	clients := make([]*killClient, killClients)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = newKillClient(i, lb.URL, release)
		wg.Add(1)
		go func() { defer wg.Done(); clients[i].run(ctx) }()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	t.Cleanup(func() {
		cancel()
		if !released {
			close(release)
		}
		<-allDone
	})
	downloadsFrom := time.Now()

	// 1. Kill a follower that holds an LFS blob and is relaying bodies to
	// clients (of two such, the one relaying the most).
	var victim *killNode
	var cut1 []killProgress
	eventually(t, 20*time.Second, "a follower holding an LFS blob and relaying a client's body", func() bool {
		victim, cut1 = nil, nil
		for _, n := range nodes {
			if n.name == leaderName || killLFSBlobs(killDiskBlobs(t, n.dir)) == 0 {
				continue
			}
			if f := killInFlight(clients, n.name, killCutMargin); len(f) > len(cut1) {
				victim, cut1 = n, f
			}
		}
		return victim != nil
	})
	leader := byName[leaderName]
	var other *killNode // the follower that stays up
	for _, n := range nodes {
		if n != leader && n != victim {
			other = n
		}
	}
	victim.p.Kill()
	bytes1 := killBytes(clients)
	held1 := killDiskBlobs(t, victim.dir)
	t.Logf("t=%v: SIGKILL follower %s (%d blobs on disk, %d LFS; %d clients mid-body through it, %d in flight overall)",
		time.Since(downloadsFrom).Round(time.Millisecond), victim.name, len(held1), killLFSBlobs(held1), len(cut1), len(killInFlight(clients, "", 0)))

	// Two of three voters are a quorum: writes go on while it is down.
	st, idx1, body := killPut(t, other.p, "kill-while-follower-down", hub)
	if st != 200 || idx1 == 0 {
		t.Fatalf("admin write with a follower down: %d index %d %s", st, idx1, body)
	}
	// The cluster notices (gossip declares it dead, its keys move) and the
	// downloads go on without it.
	killWaitDead(t, victim.name, leader, other)
	eventually(t, 20*time.Second, "downloads progressing without "+victim.name, func() bool {
		return killBytes(clients) >= bytes1+1<<20
	})
	t.Logf("t=%v: %s declared dead; the clients read %d MiB since its kill",
		time.Since(downloadsFrom).Round(time.Millisecond), victim.name, (killBytes(clients)-bytes1)>>20)

	// 2. Restart it: same addresses, same data directory.
	restart1 := time.Now()
	victim.start(t, hub)
	waitMembers(t, 3, all()...)
	eventually(t, 30*time.Second, victim.name+" back in Raft with the write it missed", func() bool {
		v := killRaftStatus(victim.p)
		if v.State != "follower" || v.LeaderID != leaderName || v.AppliedIndex < idx1 {
			return false
		}
		st, _, _ := admin(t, http.MethodGet, victim.p.AdminURL+"/v1/remotes/kill-while-follower-down?index="+strconv.FormatUint(idx1, 10), nil)
		return st == 200
	})
	killCheckKept(t, victim, held1)
	t.Logf("t=%v: %s restarted and rejoined (gossip; Raft follower at index ≥ %d; %d blobs kept) %v after the restart",
		time.Since(downloadsFrom).Round(time.Millisecond), victim.name, idx1, len(held1), time.Since(restart1).Round(time.Millisecond))

	// 3. Kill the leader while bodies are still in flight.
	var cut2 []killProgress
	eventually(t, 20*time.Second, "downloads in flight and an LFS blob on the leader", func() bool {
		cut2 = killInFlight(clients, leaderName, killCutMargin)
		return len(killInFlight(clients, "", killCutMargin)) > 0 && killLFSBlobs(killDiskBlobs(t, leader.dir)) > 0
	})
	inFlight := len(killInFlight(clients, "", 0))
	leader.p.Kill()
	kill2 := time.Now()
	held2 := killDiskBlobs(t, leader.dir)
	t.Logf("t=%v: SIGKILL leader %s (%d blobs on disk, %d LFS; %d clients mid-body through it, %d in flight overall)",
		time.Since(downloadsFrom).Round(time.Millisecond), leader.name, len(held2), killLFSBlobs(held2), len(cut2), inFlight)
	survivors := []*killNode{victim, other}
	var newLeader string
	eventually(t, 30*time.Second, "a new leader among the survivors", func() bool {
		// The dead leader is still a voter (reaped only after --reap-after).
		newLeader = killAgreedLeader(3, survivors...)
		return newLeader != "" && newLeader != leaderName
	})
	elected := time.Since(kill2)
	var idx2 uint64
	eventually(t, 30*time.Second, "an admin write after the leader died", func() bool {
		var st int
		st, idx2, _ = killPut(t, other.p, "kill-after-leader-death", hub)
		return st == 200 && idx2 > idx1
	})
	written := time.Since(kill2)
	for _, n := range survivors {
		st, _, body := admin(t, http.MethodGet, n.p.AdminURL+"/v1/remotes/kill-after-leader-death?index="+strconv.FormatUint(idx2, 10), nil)
		if st != 200 {
			t.Fatalf("%s reading the write made after the leader died: %d %s", n.name, st, body)
		}
	}
	t.Logf("t=%v: new leader %s elected %v after the kill; admin write committed at index %d %v after it",
		time.Since(downloadsFrom).Round(time.Millisecond), newLeader, elected.Round(time.Millisecond), idx2, written.Round(time.Millisecond))

	// 4. Restart the old leader: it follows the new leader (a later term)
	// and catches up.
	leader.start(t, hub)
	waitMembers(t, 3, all()...)
	eventually(t, 30*time.Second, leader.name+" following "+newLeader+" with the write made after its death", func() bool {
		v := killRaftStatus(leader.p)
		if v.State != "follower" || v.LeaderID != newLeader || v.AppliedIndex < idx2 {
			return false
		}
		st, _, _ := admin(t, http.MethodGet, leader.p.AdminURL+"/v1/remotes/kill-after-leader-death?index="+strconv.FormatUint(idx2, 10), nil)
		return st == 200
	})
	if l := killAgreedLeader(3, nodes...); l != newLeader {
		t.Fatalf("after the old leader rejoined the nodes name leader %q, want %q", l, newLeader)
	}
	killCheckKept(t, leader, held2)
	t.Logf("t=%v: %s restarted and rejoined as a follower (%d blobs kept)",
		time.Since(downloadsFrom).Round(time.Millisecond), leader.name, len(held2))

	// Every download completes, byte-identical.
	close(release)
	released = true
	select {
	case <-allDone:
	case <-time.After(60 * time.Second):
		for _, c := range clients {
			t.Logf("client %d: %+v", c.id, c.progress())
		}
		t.Fatal("downloads did not complete within 60s of the release")
	}
	downloaded := time.Since(downloadsFrom)
	resumes, cuts, retries, stalls := 0, 0, 0, 0
	for _, c := range clients {
		c.mu.Lock()
		if c.err != nil {
			t.Errorf("client %d: %v", c.id, c.err)
		}
		for p, s := range want {
			if c.sums[p] != s {
				t.Errorf("client %d: %s: sha256 %s, the Hub's is %s", c.id, p, c.sums[p], s)
			}
		}
		for _, n := range c.resumes {
			resumes += n
		}
		cuts, retries, stalls = cuts+c.cuts, retries+c.retries, stalls+c.stalls
		c.mu.Unlock()
	}
	// Which clients reading through a node when it died resumed that file
	// with Range. Not all of them need to: a SIGKILLed process's socket
	// still delivers what it had sent, and loopback buffers (node, balancer)
	// can hold megabytes, so a transfer may finish without noticing.
	for _, k := range []struct {
		what string
		cut  []killProgress
	}{{"follower " + victim.name, cut1}, {"leader " + leader.name, cut2}} {
		resumed := 0
		for _, p := range k.cut {
			c := clients[p.id]
			c.mu.Lock()
			if c.resumes[p.file] > 0 {
				resumed++
			}
			c.mu.Unlock()
		}
		t.Logf("%d of the %d clients reading through %s when it was killed resumed that file with Range", resumed, len(k.cut), k.what)
	}
	if resumes == 0 {
		t.Errorf("no download was resumed with Range: the kills cut no transfer")
	}
	if stalls > 0 {
		t.Errorf("%d reads waited %v without a byte", stalls, killReadTimeout)
	}
	t.Logf("downloads: %d clients × %d files complete and byte-identical %v after they started; %d bodies cut, %d Range resumes, %d failed attempts retried; balancer spread %v",
		len(clients), len(want), downloaded.Round(time.Millisecond), cuts, resumes, retries, lb.spread())
	if t.Failed() {
		return
	}

	fetches := map[string]int{}
	for addr, p := range addrPath {
		fetches[p] = hub.Stats().BodyFetches(addr)
	}
	t.Logf("upstream body fetches per file (more than one: a fill died with its node, or ranged reads): %v", fetches)

	// The restarted nodes serve what they held before their kill from their
	// own disk, without an upstream body fetch.
	hub.ResetStats()
	for _, k := range []struct {
		n    *killNode
		held map[string]string
	}{{victim, held1}, {leader, held2}} {
		for addr := range k.held {
			p, ok := addrPath[addr]
			if !ok {
				t.Fatalf("%s holds blob %s, which is not in the snapshot", k.n.name, addr)
			}
			resp, body := do(t, http.MethodGet, resolveURL(k.n.p.URL, hf.Model, killRepoID, commit, p), nil)
			if resp.StatusCode != 200 || sha(body) != want[p] {
				t.Fatalf("%s GET %s after its restart: %d, sha256 %s", k.n.name, p, resp.StatusCode, sha(body))
			}
			if src, node := resp.Header.Get("X-Hfcache-Source"), resp.Header.Get("X-Hfcache-Node"); src != "disk" || node != k.n.name {
				t.Errorf("%s GET %s after its restart: served by %s from %q, want %s from disk", k.n.name, p, node, src, k.n.name)
			}
		}
	}
	stats := hub.Stats()
	for addr, p := range addrPath {
		if n := stats.BodyFetches(addr); n != 0 {
			t.Errorf("%s was fetched upstream %d times while the restarted nodes served what they held", p, n)
		}
	}
	t.Logf("cluster formed in %v; whole test %v", formed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// killCheckKept checks that a restarted node still holds, on disk and in its
// store's index, every blob it held when it was killed.
func killCheckKept(t *testing.T, n *killNode, held map[string]string) {
	t.Helper()
	now := killDiskBlobs(t, n.dir)
	for addr := range held {
		if now[addr] == "" {
			t.Errorf("%s lost blob %s across its restart", n.name, addr)
		}
	}
	if got := killStoreBlobs(n.p); got < len(held) {
		t.Errorf("%s's store indexes %d blobs after its restart, it held %d", n.name, got, len(held))
	}
}

// logDeadOnFailure logs, if the test fails, the tail of each node's logs
// from the processes it had before it was killed or restarted (the harness
// logs the running ones).
func logDeadOnFailure(t *testing.T, what string, nodes []*killNode) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			for _, p := range n.dead {
				t.Logf("%s logs before its %s (tail):\n%s", n.name, what, procs.Tail(p.Log.String(), 8000))
			}
		}
	})
}
