// Package cluster runs a whole hfcache cluster inside one test binary: real
// memberlist gossip, the real ring, real stores and real HTTP servers, all on
// 127.0.0.1 with tight timings. Tests poll with deadlines; nothing sleeps to
// wait for an outcome.
package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/httpapi/h1"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/node/store"
	"github.com/hfcache/hfcache/ring"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Secret is the harness's cluster secret.
const Secret = "in-process-cluster-secret"

// Node is one in-process node.
type Node struct {
	Name    string
	URL     string // client URL
	Node    *node.Node
	Store   *store.Store
	Members *membership.Membership
	// Metrics is the node's own registry, as serve builds it (the admin
	// port's /metrics): nodes in one process never share one.
	Metrics *prometheus.Registry

	srv  *httptest.Server
	fast *h1.Listener
	hub  *hubclient.Client
	stop func()
}

// Options adjust every node the harness starts.
type Options struct {
	Upstream string
	// NodeConfig, if set, adjusts each node's configuration.
	NodeConfig func(*node.Config)
	// Remote, if set, adjusts each node's default remote.
	Remote func(*node.Remote)
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t     *testing.T
	opts  Options
	Nodes []*Node
	logs  *logTail // every node's log lines, printed if the test fails
}

// refTTL is the ref TTL of every node's default remote, which the tests
// that walk a branch through its TTL count on.
const refTTL = time.Minute

// New starts n nodes; the second and later join the first.
func New(t *testing.T, opts Options, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts, logs: newLogTail(t)}
	for i := 0; i < n; i++ {
		c.Add()
	}
	c.WaitMembers(n)
	return c
}

// Tune tightens memberlist's timings for loopback tests, but not so far
// that a loaded 2-core machine running -race declares busy nodes dead: a
// false suspicion moves blobs to another owner, which fills them again (a
// 150 ms probe timeout did that to TestHotDuringColdFillStaysOneFetch about
// one run in four while the other packages' tests ran). A probe waits
// ProbeTimeout for a direct ack, then asks other members to probe for the
// rest of ProbeInterval; with the two equal there was no time left for
// that, and one late ack made a member suspect (TestPerNodeMetrics failed
// so in CI: node2 suspected node3 and sent its request to another owner).
func Tune(mc *memberlist.Config) {
	mc.ProbeInterval = time.Second
	mc.ProbeTimeout = 400 * time.Millisecond
	mc.GossipInterval = 20 * time.Millisecond
	mc.PushPullInterval = 500 * time.Millisecond
	mc.SuspicionMult = 4
	mc.TCPTimeout = 2 * time.Second
}

func (c *Cluster) logger(name string) *slog.Logger {
	if testing.Verbose() {
		// memberlist's probe goroutines may log a moment after Shutdown
		// returns; once the test's cleanups are done, those lines are
		// dropped rather than logged to a finished test (a panic).
		done := new(atomic.Bool)
		c.t.Cleanup(func() { done.Store(true) })
		return slog.New(slog.NewTextHandler(tlog{c.t, done}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
	}
	return slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
}

type tlog struct {
	t    *testing.T
	done *atomic.Bool
}

func (w tlog) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// logTailLines is how many of the nodes' last log lines a failed test
// prints.
const logTailLines = 300

// logTail keeps the last log lines of a test's nodes and prints them if
// the test fails: a flake under load then comes with what the nodes saw
// (a peer marked suspect, an owner unreachable), without -v.
type logTail struct {
	mu    sync.Mutex
	lines []string
	done  bool
}

func newLogTail(t *testing.T) *logTail {
	l := &logTail{}
	t.Cleanup(func() { // registered first: runs after the nodes stopped
		l.mu.Lock()
		defer l.mu.Unlock()
		l.done = true
		if t.Failed() && len(l.lines) > 0 {
			t.Logf("the nodes' last %d log lines:\n%s", len(l.lines), strings.Join(l.lines, ""))
		}
	})
	return l
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		if len(l.lines) == logTailLines {
			l.lines = append(l.lines[:0], l.lines[1:]...)
		}
		l.lines = append(l.lines, string(p))
	}
	return len(p), nil
}

// Add starts one more node, joining the first.
func (c *Cluster) Add() *Node {
	t := c.t
	t.Helper()
	name := fmt.Sprintf("node%d", len(c.Nodes)+1)
	log := c.logger(name)

	st, err := store.Open(store.Config{Dir: t.TempDir(), Budget: 1 << 30, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL = c.opts.Upstream
	hcfg.MaxRetries = 1
	hcfg.RetryBase = 10 * time.Millisecond
	hcfg.Logger = log
	hubMetrics := hubclient.NewMetrics()
	hcfg.Metrics = hubMetrics.Remote(node.DefaultRemote)
	hc, err := hubclient.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}

	// The HTTP server's address must be known before the node gossips it.
	srv := httptest.NewUnstartedServer(nil)
	mcfg := membership.DefaultConfig()
	mcfg.Name = name
	mcfg.BindAddr = "127.0.0.1:0"
	mcfg.Secret = Secret
	mcfg.Meta = membership.Meta{ClientURL: "http://" + srv.Listener.Addr().String(), AdminURL: "http://" + srv.Listener.Addr().String(), Version: "test"}
	mcfg.Tune = Tune
	mcfg.JoinRetryMin, mcfg.JoinRetryMax = 20*time.Millisecond, 200*time.Millisecond
	mcfg.Logger = log
	if len(c.Nodes) > 0 {
		mcfg.Join = []string{c.Nodes[0].Members.GossipAddr()}
	}
	members, err := membership.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := members.Start(); err != nil {
		t.Fatal(err)
	}
	rg, err := ring.New(ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ncfg := node.DefaultConfig()
	ncfg.Name = name
	ncfg.Logger = log
	ncfg.FillRetries = 1
	ncfg.Cluster = node.NewCluster(rg, members, log)
	ncfg.PeerAuth = node.NewPeerAuth(Secret, time.Now)
	ncfg.XetSecret = Secret
	ncfg.HotBytes = 1 << 28
	ncfg.Metrics = node.NewMetrics()
	if c.opts.NodeConfig != nil {
		c.opts.NodeConfig(&ncfg)
	}
	remote := &node.Remote{Name: node.DefaultRemote, Hub: hc, RefTTL: refTTL, Policy: node.PolicyOnDemand}
	if c.opts.Remote != nil {
		c.opts.Remote(remote)
	}
	n, err := node.New(ncfg, node.LocalStore(st), remote)
	if err != nil {
		t.Fatal(err)
	}
	st.SetOwned(n.Owns)
	st.SetXorbOwned(n.OwnsXorb)
	n.Start()
	httpMetrics := httpapi.NewMetrics(ncfg.Metrics)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), store.NewCollector(st), hubMetrics, httpMetrics)
	if ncfg.Metrics != nil {
		reg.MustRegister(ncfg.Metrics)
	}
	srv.Config.Handler = httpapi.NewClient(httpapi.Config{Logger: log, Metrics: httpMetrics}, n, httpapi.Distribution{Remote: node.DefaultRemote, Access: node.AccessCaller})
	// As hfcache serve does on plain HTTP: simple requests take the fast
	// path, the others net/http.
	fast := h1.NewListener(srv.Listener, srv.Config.Handler, h1.Config{ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, Logger: log})
	srv.Listener = fast
	srv.Start()

	nd := &Node{Name: name, URL: srv.URL, Node: n, Store: st, Members: members, Metrics: reg, srv: srv, fast: fast, hub: hc}
	stopped := false
	nd.stop = func() {
		if stopped {
			return
		}
		stopped = true
		fast.Close()
		fast.CloseConns()
		srv.CloseClientConnections()
		srv.Close()
		members.Leave(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
		hc.Close()
		st.Close()
	}
	t.Cleanup(nd.stop)
	c.Nodes = append(c.Nodes, nd)
	return nd
}

// Crash stops a node without leaving the cluster: its HTTP server and
// gossip go silent, as a killed process's would.
func (c *Cluster) Crash(n *Node) {
	n.fast.Close()
	n.fast.CloseConns()
	n.srv.CloseClientConnections()
	n.srv.Close()
	n.Members.Shutdown()
}

// WaitMembers waits until every running node sees want alive members.
func (c *Cluster) WaitMembers(want int) {
	c.t.Helper()
	Eventually(c.t, 20*time.Second, fmt.Sprintf("%d alive members everywhere", want), func() bool {
		for _, n := range c.Nodes {
			alive := 0
			for _, m := range n.Members.Members() {
				if m.State == membership.StateAlive {
					alive++
				}
			}
			if alive != want || len(n.Node.RingMembers()) != want {
				return false
			}
		}
		return true
	})
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// Get fetches url and returns the response with its body.
func Get(t *testing.T, url string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, body
}
