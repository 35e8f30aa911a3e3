package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/test/fakehub"
)

// Graceful drain (issue 8, items 2 and 5): SIGTERM takes a node out of the
// balancer (readiness), refuses new requests after a grace period, lets the
// downloads under way finish, hands its hottest blobs to their next owners,
// leaves the cluster and exits 0.

// sigterm sends SIGTERM and waits for the process to exit within bound;
// it returns how long that took and the exit code.
func sigterm(t *testing.T, p *proc, bound time.Duration) (time.Duration, int) {
	t.Helper()
	sent := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(bound):
		t.Fatalf("hfcache did not exit within %v of SIGTERM:\n%s", bound, p.Log.String())
	}
	return time.Since(sent), p.Cmd.ProcessState.ExitCode()
}

// readyStatus is GET /-/ready's status (0: unreachable).
func readyStatus(hc *http.Client, base string) int {
	resp, err := hc.Get(base + "/-/ready")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDrainSingleNode: a download from a throttled Hub is under way when
// the node gets SIGTERM. /-/ready answers 503 on both ports at once while
// /-/health still answers 200; after --drain-grace a new request gets 503
// with Connection: close; the download completes byte-identical; the
// process exits 0.
func TestDrainSingleNode(t *testing.T) {
	const grace = time.Second
	hub := fakehub.New()
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: "acme/drain-one", Files: []fakehub.File{
		{Path: "config.json", Data: []byte(`{"model_type": "llama"}` + "\n")},
		{Path: "model.safetensors", Size: 3<<20 + 5, Seed: 81, LFS: true},
	}})
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	commit := hub.Ref(hf.Model, "acme/drain-one", "main")
	fi := hub.FileInfo(hf.Model, "acme/drain-one", commit, "model.safetensors")
	hub.SetThrottle(1<<20, 0) // the fill, and so the download, takes ~3 s

	p := startProc(t, hub.URL(), t.TempDir(), "--drain-grace", grace.String(), "--drain-timeout", "20s")
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	eventually(t, 15*time.Second, "ready on both ports", func() bool {
		return readyStatus(fresh, p.URL) == 200 && readyStatus(fresh, p.AdminURL) == 200
	})

	type result struct {
		sum  string
		n    int64
		err  error
		done time.Time
	}
	started := make(chan struct{})
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(resolveURL(p.URL, hf.Model, "acme/drain-one", "main", "model.safetensors"))
		if err != nil {
			close(started)
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.CopyN(h, resp.Body, 1)
		close(started)
		if err == nil {
			var m int64
			m, err = io.Copy(h, resp.Body)
			n += m
		}
		if resp.StatusCode != 200 && err == nil {
			err = fmt.Errorf("GET: %s", resp.Status)
		}
		res <- result{sum: hex.EncodeToString(h.Sum(nil)), n: n, err: err, done: time.Now()}
	}()
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("the download did not start")
	}

	sent := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "/-/ready 503 on both ports", func() bool {
		return readyStatus(fresh, p.URL) == 503 && readyStatus(fresh, p.AdminURL) == 503
	})
	notReady := time.Since(sent)
	for _, base := range []string{p.URL, p.AdminURL} {
		if resp, err := fresh.Get(base + "/-/health"); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s/-/health while draining: %v %v", base, resp, err)
		} else {
			resp.Body.Close()
		}
	}

	// After the grace period, a new client request is refused.
	var refused time.Time
	var refusal *http.Response
	eventually(t, grace+5*time.Second, "a new request refused with 503 and Connection: close", func() bool {
		resp, err := fresh.Get(p.URL + "/api/models/acme/drain-one/revision/main")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			refused, refusal = time.Now(), resp
			return true
		}
		return false
	})
	if since := refused.Sub(sent); since < grace {
		t.Errorf("new requests refused %v after SIGTERM, before the %v grace period", since, grace)
	}
	if !refusal.Close || refusal.Header.Get(hf.HeaderErrorCode) != "ServiceUnavailable" || refusal.Header.Get("Retry-After") == "" {
		t.Errorf("refusal: close %v, X-Error-Code %q, Retry-After %q", refusal.Close, refusal.Header.Get(hf.HeaderErrorCode), refusal.Header.Get("Retry-After"))
	}

	var r result
	select {
	case r = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("the download under way did not finish")
	}
	if r.err != nil || r.n != fi.Size || r.sum != fi.SHA256 {
		t.Fatalf("download under way: %d of %d bytes, sha256 %s (want %s), err %v", r.n, fi.Size, r.sum, fi.SHA256, r.err)
	}
	if !r.done.After(refused) {
		t.Errorf("the download ended before new requests were refused: the test proves nothing about in-flight downloads")
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("hfcache did not exit within 10 s of its last download:\n%s", p.Log.String())
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.Log.String())
	}
	t.Logf("not ready %v after SIGTERM; refusing at %v; download done at %v; exited at %v",
		notReady.Round(time.Millisecond), refused.Sub(sent).Round(time.Millisecond), r.done.Sub(sent).Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
}

// drainFiles is the rolling restart's snapshot: small enough that slow
// clients download it again and again during the test.
func drainFiles() []fakehub.File {
	return []fakehub.File{
		{Path: "config.json", Data: []byte(`{"model_type": "llama", "hidden_size": 32}` + "\n")},
		{Path: "tokenizer_config.json", Data: []byte(`{"bos_token": "<s>"}` + "\n")},
		{Path: "README.md", Data: []byte("---\nlicense: mit\n---\n# drain-model\n")},
		{Path: "tokenizer.model", Size: 256<<10 + 3, Seed: 91, LFS: true},
		{Path: "model-00001-of-00003.safetensors", Size: 1<<20 + 1, Seed: 92, LFS: true},
		{Path: "model-00002-of-00003.safetensors", Size: 768<<10 + 7, Seed: 93, LFS: true},
		{Path: "model-00003-of-00003.safetensors", Size: 512<<10 + 13, Seed: 94, LFS: true},
		{Path: "vocab.json", Size: 200<<10 + 1, Seed: 95},
	}
}

func drainStart(t *testing.T, kn *killNode, hub *fakehub.Hub) {
	t.Helper()
	if kn.p != nil {
		kn.dead = append(kn.dead, kn.p)
	}
	kn.p = startProc(t, hub.URL(), kn.dir, "--node-name", kn.name, "--cluster-secret", clusterSecret,
		"--listen", kn.listen, "--gossip-addr", kn.gossip, "--raft-addr", kn.raft,
		"--bootstrap-expect", "3", "--join", strings.Join(kn.join, ","),
		"--drain-grace", "300ms", "--drain-timeout", "20s")
}

// handOffs are the "blob handed off" lines of a node's log: blob → target,
// and how many of the targets copied the blob from the node (rather than
// holding it already).
func handOffs(logs string) (map[string]string, int) {
	out, copied := map[string]string{}, 0
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Blob   string `json:"blob"`
			To     string `json:"to"`
			Source string `json:"source"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "blob handed off" {
			out[rec.Blob] = rec.To
			if rec.Source == "peer" {
				copied++
			}
		}
	}
	return out, copied
}

// TestDrainRollingRestart: three Raft nodes behind the test balancer, six
// clients downloading the snapshot again and again (slow links, resuming
// with Range like huggingface_hub). Each node in turn gets SIGTERM, exits 0
// and is started again on its data directory and addresses; the next one
// goes only once it is ready and the cluster has three voters again.
//
// The balancer is the realistic pair: an active readiness probe (each
// backend's client-port /-/ready every 100 ms, as a Kubernetes readiness
// probe or an HAProxy check) and passive retries (a refused connection, or
// a 503 that closes the connection, goes to the next backend, as nginx's
// proxy_next_upstream error http_503 does).
//
// No download fails: every snapshot completes byte-identical. Each drained
// node handed blobs to their next owners, which hold them on disk.
func TestDrainRollingRestart(t *testing.T) {
	began := time.Now()
	hub := fakehub.New()
	hub.AddRepo(fakehub.RepoSpec{Type: hf.Model, ID: killRepoID, Files: drainFiles()})
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	commit := hub.Ref(hf.Model, killRepoID, "main")
	want := map[string]string{}
	for _, f := range drainFiles() {
		want[f.Path] = hub.FileInfo(hf.Model, killRepoID, commit, f.Path).SHA256
	}
	hub.SetThrottle(2<<20, 0)

	nodes := make([]*killNode, 3)
	for i := range nodes {
		nodes[i] = &killNode{name: fmt.Sprintf("drain%d", i+1), dir: t.TempDir(), listen: freeAddr(t), gossip: freeAddr(t), raft: freeAddr(t)}
	}
	byName := map[string]*killNode{}
	for i, n := range nodes {
		byName[n.name] = n
		for j, o := range nodes {
			if i != j {
				n.join = append(n.join, o.gossip)
			}
		}
	}
	for _, n := range nodes {
		drainStart(t, n, hub)
	}
	logDeadOnFailure(t, "restart", nodes)
	all := func() []*proc { return []*proc{nodes[0].p, nodes[1].p, nodes[2].p} }
	waitMembers(t, 3, all()...)
	eventually(t, 30*time.Second, "three voters agreeing on a leader", func() bool { return killAgreedLeader(3, nodes...) != "" })
	formed := time.Since(began)

	lb := newBalancer(t, "http://"+nodes[0].listen, "http://"+nodes[1].listen, "http://"+nodes[2].listen)
	lb.retry503 = true
	lb.probeReady(t, 100*time.Millisecond)

	// Clients download the snapshot until told to stop; a failed snapshot
	// or a wrong byte is a failure.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stop := make(chan struct{})
	never := make(chan struct{}) // clients stay slow: transfers are under way at every restart
	var mu sync.Mutex
	var failures []string
	snapshots := 0
	clients := make([]*killClient, 6)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = newKillClient(i, lb.URL, never)
		wg.Add(1)
		go func(c *killClient) {
			defer wg.Done()
			defer c.hc.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := c.snapshot(ctx)
				c.mu.Lock()
				sums := c.sums
				c.sums = map[string]string{}
				c.mu.Unlock()
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("client %d: %v", c.id, err))
				} else {
					snapshots++
					for path, sum := range want {
						if sums[path] != sum {
							failures = append(failures, fmt.Sprintf("client %d: %s: sha256 %s, want %s", c.id, path, sums[path], sum))
						}
					}
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}(clients[i])
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	eventually(t, 20*time.Second, "every client reading bodies", func() bool {
		for _, c := range clients {
			if c.progress().have == 0 {
				return false
			}
		}
		return true
	})

	handedTotal := 0
	for _, kn := range nodes {
		inFlight := len(killInFlight(clients, kn.name, 0))
		old := kn.p
		took, code := sigterm(t, old, 40*time.Second)
		if code != 0 {
			t.Errorf("%s exited %d after SIGTERM", kn.name, code)
		}
		handed, copied := handOffs(old.Log.String())
		for blob, to := range handed {
			target := byName[to]
			if target == nil || target == kn {
				t.Errorf("%s handed %s to %q", kn.name, blob, to)
				continue
			}
			hexID := blob[strings.IndexByte(blob, ':')+1:]
			if _, ok := killDiskBlobs(t, target.dir)[hexID]; !ok {
				t.Errorf("%s handed %s to %s, which does not hold it", kn.name, blob, to)
			}
		}
		handedTotal += len(handed)
		restart := time.Now()
		drainStart(t, kn, hub)
		eventually(t, 30*time.Second, kn.name+" ready again", func() bool {
			return readyStatus(http.DefaultClient, kn.p.URL) == 200
		})
		waitMembers(t, 3, all()...)
		eventually(t, 30*time.Second, "three voters agreeing on a leader after restarting "+kn.name, func() bool {
			return killAgreedLeader(3, nodes...) != ""
		})
		// The restarted node is back in Raft: a write through it commits
		// and every node applies it.
		var idx uint64
		eventually(t, 30*time.Second, "an admin write through "+kn.name, func() bool {
			st, i, _ := killPut(t, kn.p, "after-"+kn.name, hub)
			idx = i
			return st == http.StatusOK
		})
		eventually(t, 30*time.Second, "every node applying the write", func() bool {
			for _, n := range nodes {
				if killRaftStatus(n.p).AppliedIndex < idx {
					return false
				}
			}
			return true
		})
		t.Logf("%s: %d downloads relayed through it at SIGTERM; exited %d after %v; handed off %d blobs (%d copied from it); back and rejoined in %v",
			kn.name, inFlight, code, took.Round(time.Millisecond), len(handed), copied, time.Since(restart).Round(time.Millisecond))
	}

	close(stop)
	select {
	case <-clientsDone:
	case <-time.After(30 * time.Second):
		t.Fatal("clients did not finish their last snapshot")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	if snapshots < len(clients) {
		t.Errorf("%d snapshots completed, want at least %d", snapshots, len(clients))
	}
	if handedTotal == 0 {
		t.Error("no drained node handed any blob to its next owner")
	}
	if leader := killAgreedLeader(3, nodes...); leader == "" {
		t.Error("no leader with three voters at the end")
	}
	resumes, retries := 0, 0
	for _, c := range clients {
		p := c.progress()
		resumes += p.resumes
		c.mu.Lock()
		retries += c.retries
		c.mu.Unlock()
	}
	lb.mu.Lock()
	retried := lb.retried
	lb.mu.Unlock()
	t.Logf("cluster formed in %v; %d snapshots, %d Range resumes, %d client retries, %d balancer retries after a 503; %d blobs handed off; total %v",
		formed.Round(time.Millisecond), snapshots, resumes, retries, retried, handedTotal, time.Since(began).Round(time.Millisecond))
}
