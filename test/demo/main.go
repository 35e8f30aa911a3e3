// Command demo shows an hfcache cluster at work (`make demo`): it starts the
// fake Hub, three hfcache nodes on loopback and a round-robin load balancer
// in front of them, then has the real @huggingface/hub client (Node, from
// test/js) download every file of a model and of a dataset through the
// balancer, twice. For each file it prints which node the balancer picked,
// which node served the bytes (X-Hfcache-Node) and where they came from
// (X-Hfcache-Source: upstream, peer, disk). The second pass is all hits.
// Everything it started is stopped and its temporary files removed at exit.
//
//	go run ./test/demo -hfcache bin/hfcache -fakehub bin/fakehub
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hfcache/hfcache/test/procs"
)

// Repositories the fake Hub serves by default (test/fakehub/cmd/fakehub).
const (
	demoModel   = "fakehub/demo-model"
	demoDataset = "fakehub/demo-dataset"
	nodeCount   = 3
)

type config struct {
	HFBin   string // hfcache binary
	HubBin  string // fakehub binary
	JSDir   string // test/js, with node_modules from `make deps`
	Verbose bool   // echo the processes' logs
}

func main() {
	var cfg config
	flag.StringVar(&cfg.HFBin, "hfcache", "bin/hfcache", "hfcache binary")
	flag.StringVar(&cfg.HubBin, "fakehub", "bin/fakehub", "fakehub binary")
	flag.StringVar(&cfg.JSDir, "js", "test/js", "directory of hfclient.mjs and its node_modules (make deps)")
	flag.BoolVar(&cfg.Verbose, "v", false, "echo the logs of the fake Hub and the nodes")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run is the whole demo; it writes its report to out.
func run(ctx context.Context, cfg config, out io.Writer) (err error) {
	start := time.Now()
	for _, p := range []*string{&cfg.HFBin, &cfg.HubBin, &cfg.JSDir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.JSDir, "node_modules", "@huggingface", "hub")); err != nil {
		return fmt.Errorf("@huggingface/hub is not installed in %s: run `make deps`", cfg.JSDir)
	}
	work, err := os.MkdirTemp("", "hfcache-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var started []*procs.Proc
	defer func() {
		// SIGTERM (a graceful stop) to every process, in parallel.
		if err == nil {
			fmt.Fprintln(out, "== stopping the nodes and the fake Hub (SIGTERM), removing their data")
		}
		var wg sync.WaitGroup
		for _, p := range started {
			wg.Add(1)
			go func() { defer wg.Done(); stop(p) }()
		}
		wg.Wait()
		if err == nil {
			fmt.Fprintf(out, "done in %.1fs\n", time.Since(start).Seconds())
		}
		if err != nil {
			for _, p := range started {
				if l := p.Log.Lines(); l != "" {
					fmt.Fprintf(out, "--- last log lines of %s:\n%s\n", p.Name, l)
				}
			}
		}
	}()
	var logTo io.Writer // nil: the logs are not echoed
	if cfg.Verbose {
		logTo = out
	}

	fmt.Fprintln(out, "== starting the fake Hub, three hfcache nodes and a round-robin load balancer on 127.0.0.1")
	hub, hubURL, err := startHub(cfg.HubBin, logTo)
	if err != nil {
		return err
	}
	started = append(started, hub)
	fmt.Fprintf(out, "fake Hub      %s  (serves %s and datasets/%s)\n", hubURL, demoModel, demoDataset)

	nodes, err := startCluster(ctx, cfg.HFBin, hubURL, work, logTo, func(p *procs.Proc) { started = append(started, p) })
	if err != nil {
		return err
	}
	lb, err := newBalancer(nodes)
	if err != nil {
		return err
	}
	defer lb.Close()
	for _, n := range nodes {
		fmt.Fprintf(out, "%-13s %s  (admin %s)\n", n.Name, n.url, n.admin)
	}
	fmt.Fprintf(out, "balancer      %s  (round robin over the three nodes)\n", lb.URL)
	fmt.Fprintf(out, "cluster ready: %d alive members, %.1fs\n", nodeCount, time.Since(start).Seconds())
	fmt.Fprintln(out)
	fmt.Fprintln(out, legend)

	var passes [2]passResult
	for i := range passes {
		fmt.Fprintln(out)
		title := "cold cache: each file is fetched from the Hub once, by the node that owns it"
		if i == 1 {
			title = "the same downloads again: all hits, no file from the Hub"
		}
		fmt.Fprintf(out, "== pass %d: @huggingface/hub downloads %s and datasets/%s through the balancer\n   %s\n", i+1, demoModel, demoDataset, title)
		before := upstreamBytes(nodes)
		lb.reset()
		files, err := download(ctx, cfg.JSDir, lb.URL, filepath.Join(work, fmt.Sprintf("client%d", i+1)))
		if err != nil {
			return fmt.Errorf("pass %d: %w", i+1, err)
		}
		passes[i] = report(out, files, lb.served(), upstreamBytes(nodes)-before)
		if passes[i].missing > 0 {
			return fmt.Errorf("pass %d: %d file downloads did not go through the balancer", i+1, passes[i].missing)
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "== summary: file bodies fetched from the Hub: %d in pass 1, %d in pass 2; nodes that served bytes: %d\n",
		passes[0].fromHub, passes[1].fromHub, len(passes[0].servedBy))
	if n := passes[1].fromHub; n > 0 {
		return fmt.Errorf("pass 2 fetched %d files from the Hub again, want all hits", n)
	}
	return nil
}

// ---- processes ----

// stop sends SIGTERM and waits; kills after 15s.
func stop(p *procs.Proc) { p.Stop(syscall.SIGTERM, 15*time.Second) }

// startProc starts cmd; each line of its output goes to logTo (if not nil)
// and the first line ready picks makes it ready.
func startProc(name string, cmd *exec.Cmd, logTo io.Writer, ready func(string) bool) (*procs.Proc, error) {
	return procs.Start(cmd, procs.Options{Name: name, Keep: 20, Echo: logTo, Ready: ready, KillWithParent: true})
}

// startHub starts the fake Hub on free loopback ports and returns its URL.
func startHub(bin string, logTo io.Writer) (*procs.Proc, string, error) {
	hubAddr, err1 := procs.FreeAddr()
	cdnAddr, err2 := procs.FreeAddr()
	if err := errors.Join(err1, err2); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-listen", hubAddr, "-cdn-listen", cdnAddr)
	p, err := startProc("fakehub", cmd, logTo, func(line string) bool { return strings.HasPrefix(line, "fakehub Hub: ") })
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	line, err := p.WaitReady(ctx)
	switch {
	case err == nil:
		return p, strings.TrimPrefix(line, "fakehub Hub: "), nil
	case errors.Is(err, procs.ErrExited):
		return nil, "", fmt.Errorf("fakehub exited: %s", p.Log.Lines())
	default:
		stop(p)
		return nil, "", fmt.Errorf("fakehub did not start within 30s: %s", p.Log.Lines())
	}
}

// node is a running hfcache process.
type node struct {
	*procs.Proc
	url, admin string
}

// startCluster starts three nodes that form one cluster (--bootstrap-expect
// 3, all joining the first one's gossip address) and waits until each is
// ready and sees three alive members.
func startCluster(ctx context.Context, bin, upstream, work string, logTo io.Writer, started func(*procs.Proc)) ([]*node, error) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	seed, err := procs.FreeAddr()
	if err != nil {
		return nil, err
	}
	nodes := make([]*node, nodeCount)
	for i := range nodeCount {
		name := fmt.Sprintf("node-%d", i+1)
		gossip := "127.0.0.1:0"
		if i == 0 {
			gossip = seed
		}
		args := []string{"serve",
			"--node-name", name,
			"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--gossip-addr", gossip, "--raft-addr", "127.0.0.1:0",
			"--data-dir", filepath.Join(work, name), "--upstream", upstream, "--cache-size", "1GiB",
			"--cluster-secret", hex.EncodeToString(secret), "--bootstrap-expect", strconv.Itoa(nodeCount),
			"--log-format", "json", "--log-level", "info",
		}
		if i > 0 {
			args = append(args, "--join", seed)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "HF_TOKEN=", "HFCACHE_CLUSTER_SECRET=", "HFCACHE_JOIN=")
		p, err := startProc(name, cmd, logTo, procs.IsServing)
		if err != nil {
			return nil, err
		}
		started(p)
		nodes[i] = &node{Proc: p}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range nodes {
		line, err := n.WaitReady(wctx)
		switch {
		case err == nil:
			a, _ := procs.ParseServing(line)
			n.url, n.admin = "http://"+a.Client, "http://"+a.Admin
		case errors.Is(err, procs.ErrExited):
			return nil, fmt.Errorf("%s exited before serving: %s", n.Name, n.Log.Lines())
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			return nil, fmt.Errorf("%s did not serve within 60s: %s", n.Name, n.Log.Lines())
		}
	}
	err = procs.Poll(wctx, 100*time.Millisecond, func() bool { // polling interval
		for _, n := range nodes {
			if !procs.HTTPOK(adminClient, n.admin+"/-/ready") || procs.AliveMembers(adminClient, n.admin) != nodeCount {
				return false
			}
		}
		return true
	})
	switch {
	case err == nil:
		return nodes, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		return nil, fmt.Errorf("the cluster did not form (%d ready, alive members) within 60s", nodeCount)
	}
}

var adminClient = &http.Client{Timeout: 5 * time.Second}

// upstreamBytes is the bytes the nodes received from the Hub so far
// (hfcache_upstream_received_bytes_total summed over the cluster).
func upstreamBytes(nodes []*node) int64 {
	var sum float64
	for _, n := range nodes {
		if v, err := procs.MetricSum(adminClient, n.admin+"/metrics", "hfcache_upstream_received_bytes_total"); err == nil {
			sum += v
		}
	}
	return int64(sum)
}

// ---- the load balancer ----

// served is what the balancer saw of one file download.
type served struct {
	via, node, source string
	status            int
}

// balancer is a round-robin reverse proxy over the nodes that records, per
// file download (GET .../resolve/...), the backend it picked and the
// X-Hfcache-Node and X-Hfcache-Source the answer carried.
type balancer struct {
	URL   string
	srv   *http.Server
	proxy *httputil.ReverseProxy
	tr    *http.Transport

	mu       sync.Mutex
	backends []*node
	next     int
	files    map[string][]served // key: type/repo/path; in arrival order
	xetFiles map[string]string   // Xet file hash (X-Xet-Hash) → key
}

type backendKey struct{}

func newBalancer(nodes []*node) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{URL: "http://" + ln.Addr().String(), backends: nodes, files: map[string][]served{}, xetFiles: map[string]string{},
		tr: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}}
	b.proxy = &httputil.ReverseProxy{
		Transport: b.tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			be := pr.In.Context().Value(backendKey{}).(*node)
			u, _ := url.Parse(be.url)
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // as balancers do: Link headers name the balancer
		},
		ModifyResponse: func(resp *http.Response) error {
			b.record(resp.Request, resp)
			return nil
		},
	}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	be := b.backends[b.next%len(b.backends)]
	b.next++
	b.mu.Unlock()
	b.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, be)))
}

func (b *balancer) record(r *http.Request, resp *http.Response) {
	if r.Method != http.MethodGet {
		return
	}
	be := r.Context().Value(backendKey{}).(*node)
	b.mu.Lock()
	defer b.mu.Unlock()
	key, ok := fileKey(r.URL.Path)
	if h := resp.Header.Get("X-Xet-Hash"); ok && h != "" {
		b.xetFiles[h] = key
	}
	if strings.Contains(r.URL.Path, "/xet/xorb/") {
		// A Xet client's range of a xorb: part of the file it was
		// resolved for (its f= parameter is the file's Xet hash).
		key, ok = b.xetFiles[r.URL.Query().Get("f")]
	}
	if !ok {
		return
	}
	b.files[key] = append(b.files[key], served{via: be.Name, node: resp.Header.Get("X-Hfcache-Node"), source: resp.Header.Get("X-Hfcache-Source"), status: resp.StatusCode})
}

func (b *balancer) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files = map[string][]served{}
}

func (b *balancer) served() map[string][]served {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]served, len(b.files))
	for k, v := range b.files {
		out[k] = append([]served(nil), v...)
	}
	return out
}

func (b *balancer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	b.tr.CloseIdleConnections()
}

// fileKey is "model/org/name/path" for a /org/name/resolve/rev/path URL
// path ("dataset/..." under /datasets/), or false for any other request.
func fileKey(p string) (string, bool) {
	typ := "model"
	if rest, ok := strings.CutPrefix(p, "/datasets/"); ok {
		typ, p = "dataset", "/"+rest
	}
	repo, rest, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/resolve/")
	if !ok || strings.HasPrefix(repo, "api/") {
		return "", false
	}
	_, path, ok := strings.Cut(rest, "/") // drop the revision
	if !ok {
		return "", false
	}
	return typ + "/" + repo + "/" + path, true
}

// ---- the client ----

// file is one file the client downloaded.
type file struct {
	typ, repo, path string
	size            int64
}

func (f file) key() string { return f.typ + "/" + f.repo + "/" + f.path }

// download has test/js/hfclient.mjs list and download every file of the
// demo model and dataset through hubURL, and returns them in listing order.
func download(ctx context.Context, jsDir, hubURL, dir string) ([]file, error) {
	type planRepo struct {
		Type     string   `json:"type"`
		Name     string   `json:"name"`
		Revision string   `json:"revision"`
		Steps    []string `json:"steps"`
	}
	steps := []string{"list", "download"}
	plan := struct {
		HubURL   string     `json:"hubUrl"`
		OutDir   string     `json:"outDir"`
		CacheDir string     `json:"cacheDir"`
		Repos    []planRepo `json:"repos"`
	}{hubURL, filepath.Join(dir, "out"), filepath.Join(dir, "cache"), []planRepo{
		{Type: "model", Name: demoModel, Revision: "main", Steps: steps},
		{Type: "dataset", Name: demoDataset, Revision: "main", Steps: steps},
	}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pf := filepath.Join(dir, "plan.json")
	raw, _ := json.Marshal(plan)
	if err := os.WriteFile(pf, raw, 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(jsDir, "hfclient.mjs"), pf)
	cmd.Dir = jsDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	outb := bytes.TrimSpace(stdout.Bytes())
	last := outb[bytes.LastIndexByte(outb, '\n')+1:]
	var res struct {
		Error string `json:"error"`
		Repos []struct {
			Type string `json:"type"`
			Name string `json:"name"`
			List []struct {
				Type string `json:"type"`
				Path string `json:"path"`
				Size int64  `json:"size"`
			} `json:"list"`
			Download map[string]*string `json:"download"`
		} `json:"repos"`
	}
	if jerr := json.Unmarshal(last, &res); jerr != nil || err != nil || res.Error != "" {
		return nil, fmt.Errorf("node hfclient.mjs: %v %s\nstdout: %.2000s\nstderr: %.2000s", err, res.Error, last, stderr.String())
	}
	var files []file
	for _, r := range res.Repos {
		for _, e := range r.List {
			if e.Type != "file" {
				continue
			}
			if d := r.Download[e.Path]; d == nil || *d == "" {
				return nil, fmt.Errorf("%s %s: %s was not downloaded", r.Type, r.Name, e.Path)
			}
			files = append(files, file{typ: r.Type, repo: r.Name, path: e.Path, size: e.Size})
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("the client listed no files")
	}
	return files, nil
}

// ---- the report ----

type passResult struct {
	fromHub  int            // files whose bytes this pass fetched from the Hub
	sources  map[string]int // files per SOURCE column
	servedBy map[string]int // full downloads per X-Hfcache-Node
	missing  int            // files the balancer saw no full download of
}

// legend explains the table's columns.
const legend = `BALANCER SENT IT TO: the node the balancer picked for the download. SERVED BY: the node
that served the bytes (X-Hfcache-Node): the file's owner in the cluster; a node that does
not own a file relays the owner's answer. SOURCE: where the bytes came from
(X-Hfcache-Source: upstream = the Hub, disk = the owner's cache, peer = another node's
copy). The client first probes each file with "Range: bytes=0-0"; "upstream>disk" means
the probe went to the Hub and the download itself then found the file on disk. Xet-backed
files are downloaded over Xet: their SOURCE is that of the xorb ranges the client read
(upstream = filled from the Hub for this request, disk = every chunk already held).`

// report prints one line per file (the balancer's view of its full
// download) and a summary line.
func report(out io.Writer, files []file, seen map[string][]served, upstream int64) passResult {
	res := passResult{sources: map[string]int{}, servedBy: map[string]int{}}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REPO\tFILE\tSIZE\tBALANCER SENT IT TO\tSERVED BY\tSOURCE")
	var total int64
	relayed := 0
	for _, f := range files {
		repo := f.repo
		if f.typ == "dataset" {
			repo = "datasets/" + f.repo
		}
		reqs := seen[f.key()]
		// The full download is the last 200; the sources are those of
		// every request for the file, in order, without repeats.
		full := served{via: "?", node: "?"}
		found := false
		var srcs []string
		for _, s := range reqs {
			if s.status == http.StatusOK {
				full, found = s, true
			}
			if s.source != "" && (len(srcs) == 0 || srcs[len(srcs)-1] != s.source) {
				srcs = append(srcs, s.source)
			}
		}
		if !found {
			res.missing++
		}
		if full.node == "" {
			full.node = "-"
		}
		if found && full.node != full.via {
			relayed++
		}
		src := strings.Join(srcs, ">")
		if src == "" {
			src = "-"
		}
		if slices.Contains(srcs, "upstream") {
			res.fromHub++
		}
		res.sources[src]++
		res.servedBy[full.node]++
		total += f.size
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", repo, f.path, humanSize(f.size), full.via, full.node, src)
	}
	tw.Flush()
	var src []string
	for k, v := range res.sources {
		src = append(src, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(src)
	fmt.Fprintf(out, "%d files, %s: %d fetched from the Hub (%s); %d relayed from the owner by the node the balancer picked; the cluster received %s from the Hub, metadata included\n",
		len(files), humanSize(total), res.fromHub, strings.Join(src, ", "), relayed, humanSize(upstream))
	return res
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
