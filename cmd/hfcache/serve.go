package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/httpapi/h1"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/node/store"
	"github.com/hfcache/hfcache/raftstore"
	"github.com/hfcache/hfcache/ring"
	"github.com/spf13/cobra"
)

type serveFlags struct {
	dataDir       string
	listen        string
	adminListen   string
	upstream      string
	upstreamToken string
	access        string
	cacheSize     string
	metaMemory    string
	refTTL        time.Duration
	authTTL       time.Duration
	nodeName      string
	gossipAddr    string
	advertiseAddr string
	join          []string
	clusterSecret string
	xetTokenTTL   time.Duration
	raftAddr      string
	raftAdvertise string
	bootstrapExp  int
	raftVoters    int
	reapAfter     time.Duration
	adminToken    string
	maxFills      int
	headerTimeout time.Duration
	upstreamStall time.Duration
	maxPerClient  int
	requestLog    bool
	tlsCert       string
	tlsKey        string
	peerTLSCA     string
	peerTLSCert   string
	peerTLSKey    string
	logLevel      string
	logFormat     string
	drainTimeout  time.Duration
	drainGrace    time.Duration
	gcPercent     int
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a cache node",
		Long: `Run a cache node. Point Hugging Face clients at its client address:
  HF_ENDPOINT=http://localhost:8080 hf download gpt2

Every flag can also be set as HFCACHE_<FLAG> (--data-dir → HFCACHE_DATA_DIR);
--upstream-token also falls back to HF_TOKEN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			if f.upstreamToken == "" {
				f.upstreamToken = os.Getenv("HF_TOKEN")
			}
			if useGCFlag(cmd.Flags().Changed("gc-percent"), os.Getenv("GOGC")) {
				debug.SetGCPercent(f.gcPercent)
			}
			ctx, hurry, stop := stopSignals(cmd.Context())
			defer stop()
			return serve(ctx, f, hurry)
		},
	}
	host, _ := os.Hostname()
	fs := cmd.Flags()
	fs.StringVar(&f.dataDir, "data-dir", "./hfcache-data", "directory for cached blobs and metadata")
	fs.StringVar(&f.listen, "listen", ":8080", "client HTTP address (the Hugging Face API)")
	fs.StringVar(&f.adminListen, "admin-listen", ":8081", "admin HTTP address (health, store stats, pprof)")
	fs.StringVar(&f.upstream, "upstream", "https://huggingface.co", "URL of the upstream Hub (the default remote)")
	fs.StringVar(&f.upstreamToken, "upstream-token", "", "Hub token of the default remote (also HF_TOKEN); never logged")
	fs.StringVar(&f.access, "access", "caller", "who may read gated/private content: caller (each caller's own token is checked by the Hub) or remote (the upstream token serves callers who send none)")
	fs.StringVar(&f.cacheSize, "cache-size", "", "byte budget for cached blobs, e.g. 200GiB (default: 80% of the data dir's free space at start)")
	fs.StringVar(&f.metaMemory, "meta-memory", "256MiB", "memory budget for cached metadata (commits, file metadata, API answers); what does not fit is read back from the data dir")
	fs.DurationVar(&f.refTTL, "ref-ttl", 60*time.Second, "how long a branch or tag → commit resolution is trusted")
	fs.DurationVar(&f.authTTL, "auth-ttl", 5*time.Minute, "how long the Hub's acceptance of a caller's token for a gated/private repo is trusted")
	fs.DurationVar(&f.xetTokenTTL, "xet-token-ttl", time.Hour, "lifetime of the Xet access tokens the cache issues (clients renew them a minute before they expire)")
	fs.StringVar(&f.nodeName, "node-name", host, "this node's name (unique in the cluster)")
	fs.StringVar(&f.gossipAddr, "gossip-addr", ":7946", "memberlist gossip address (TCP and UDP)")
	fs.StringVar(&f.advertiseAddr, "advertise-addr", "", "address other nodes reach this one at (default: the first non-loopback address, or the gossip address when bound to loopback)")
	fs.StringSliceVar(&f.join, "join", nil, "comma-separated host:port gossip addresses of nodes to join (retried in the background)")
	fs.StringVar(&f.clusterSecret, "cluster-secret", "", "shared secret of the cluster: encrypts gossip and signs peer requests; required with --join; never logged")
	fs.StringVar(&f.raftAddr, "raft-addr", ":7947", "Raft transport address (TCP) for the replicated configuration")
	fs.StringVar(&f.raftAdvertise, "raft-advertise", "", "Raft address other nodes dial (default: the advertise host with the --raft-addr port)")
	fs.IntVar(&f.bootstrapExp, "bootstrap-expect", 0, "form a new cluster once this many nodes see each other (all become voters); 0: a node without --join bootstraps alone")
	fs.IntVar(&f.raftVoters, "raft-voters", 3, "how many nodes vote in Raft; the rest replicate as non-voters")
	fs.DurationVar(&f.reapAfter, "reap-after", 10*time.Minute, "how long a failed node stays in the Raft configuration before the leader removes it")
	fs.DurationVar(&f.headerTimeout, "read-header-timeout", 30*time.Second, "how long a client may take to send request headers (slowloris guard)")
	fs.DurationVar(&f.upstreamStall, "upstream-stall-timeout", hubclient.DefaultConfig().StallTimeout, "how long an upstream download may send no data before it is abandoned and resumed")
	fs.IntVar(&f.maxFills, "max-fills", 64, "concurrent upstream fills per node; past it requests for uncached blobs get 429")
	fs.BoolVar(&f.requestLog, "request-log", true, "log one line per client request (at info level); --request-log=false keeps the other logs")
	fs.IntVar(&f.maxPerClient, "max-client-requests", 0, "concurrent requests per client address (0: no cap; behind a balancer all requests share its address)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate: serve the client and admin ports over TLS (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&f.peerTLSCA, "peer-tls-ca", "", "PEM CA that signs the nodes' certificates: verify peers, and require a node certificate on peer routes (mutual TLS)")
	fs.StringVar(&f.peerTLSCert, "peer-tls-cert", "", "PEM client certificate this node presents to peers (with --peer-tls-key)")
	fs.StringVar(&f.peerTLSKey, "peer-tls-key", "", "PEM private key for --peer-tls-cert")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer token required on the admin API (all routes but health); set it in production; never logged")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 60*time.Second, "on SIGTERM, how long downloads under way (and the hand-off of hot blobs) may take after --drain-grace before they are cut")
	fs.DurationVar(&f.drainGrace, "drain-grace", 5*time.Second, "on SIGTERM, how long /-/ready answers 503 while requests are still served, so load balancers take the node out first")
	fs.IntVar(&f.gcPercent, "gc-percent", defaultGCPercent, "Go's GC target (GOGC), used unless GOGC is set; -1 turns the GC off")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	return cmd
}

// defaultGCPercent is serve's GC target instead of Go's 100. A node's live
// heap is small (a few MiB: metadata, ring, Raft state), and a warm hit
// allocates a few KiB, so at 100 the collector ran about 20 times a second
// under load, and its pauses and assists were most of the requests' tail
// latency (docs/PERFORMANCE.md, P2). At 400 the heap's floor is 16 MiB
// instead of 4, which costs about 10 MiB of RSS.
const defaultGCPercent = 400

// useGCFlag says whether --gc-percent sets the GC target: when it was given
// (on the command line or as HFCACHE_GC_PERCENT), or when GOGC is not set.
// Otherwise GOGC, which the runtime has applied already, stays.
func useGCFlag(flagSet bool, gogc string) bool { return flagSet || gogc == "" }

// gcTarget is the GC target the runtime runs with, for the start-up log.
func gcTarget() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// errDrainSignal ends serve's context on SIGTERM: drain, then stop.
var errDrainSignal = errors.New("SIGTERM")

// stopSignals is a context that ends on SIGINT (stop now) or SIGTERM (its
// cause is errDrainSignal: drain first), and a channel closed by a second
// signal, which cuts a drain short.
func stopSignals(parent context.Context) (context.Context, <-chan struct{}, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	hurry, done := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			if s == syscall.SIGTERM {
				cancel(errDrainSignal)
			} else {
				cancel(errors.New("interrupted"))
			}
		case <-done:
			return
		}
		select {
		case <-sigs:
			close(hurry)
		case <-done:
		}
	}()
	return ctx, hurry, func() { signal.Stop(sigs); close(done); cancel(nil) }
}

// serve wires a node and runs it until ctx ends: at once, or after a drain
// when ctx's cause is errDrainSignal (cut short when hurry closes).
func serve(ctx context.Context, f serveFlags, hurry <-chan struct{}) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if u, err := url.Parse(f.upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--upstream %q: want an http(s) URL", f.upstream)
	}
	if f.access != "caller" && f.access != "remote" {
		return fmt.Errorf("--access %q: use caller or remote", f.access)
	}
	tlsc, err := loadTLS(f)
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	budget, err := budgetFor(f.cacheSize)
	if err != nil {
		return err
	}
	metaBytes, err := positiveSize("--meta-memory", f.metaMemory)
	if err != nil {
		return err
	}

	metrics := newNodeMetrics()
	st, err := store.Open(store.Config{Dir: filepath.Join(dataDir, "store"), Budget: budget, Logger: log.With("component", "store"), Now: time.Now,
		BudgetFor: func(used int64) int64 { return defaultBudget(dataDir, used) }})
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	defer st.Close()
	budget = st.Stats().Budget
	metrics.register(log, store.NewCollector(st))

	hcfg := hubclient.DefaultConfig()
	hcfg.BaseURL = f.upstream
	hcfg.UserAgent = "hfcache/" + version
	hcfg.Logger = log.With("component", "hubclient")
	hcfg.StallTimeout = f.upstreamStall
	hcfg.Metrics = metrics.hub.Remote(node.DefaultRemote)
	hub, err := hubclient.New(hcfg)
	if err != nil {
		return err
	}
	defer hub.Close()

	clientLn, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", f.adminListen)
	if err != nil {
		clientLn.Close()
		return fmt.Errorf("--admin-listen: %w", err)
	}

	// Membership: every node is a cluster of one until it joins others.
	if len(f.join) > 0 && f.clusterSecret == "" {
		return errors.New("--cluster-secret is required with --join: it authenticates gossip and peer requests")
	}
	host, err := advertiseHost(f.advertiseAddr, f.gossipAddr)
	if err != nil {
		return err
	}
	if f.clusterSecret == "" && !isLoopback(host) {
		log.Warn("no --cluster-secret: gossip is unencrypted and this node cannot serve peers; set one before adding nodes")
	}
	// The replicated configuration: Raft on its own port.
	raftAdv, err := raftAdvertise(f.raftAdvertise, f.raftAddr, host)
	if err != nil {
		return err
	}
	rcfg := raftstore.DefaultConfig()
	rcfg.Dir = filepath.Join(dataDir, "raft")
	rcfg.NodeID = f.nodeName
	rcfg.BindAddr = f.raftAddr
	rcfg.AdvertiseAddr = raftAdv
	if _, port, _ := net.SplitHostPort(f.raftAddr); port == "0" {
		rcfg.AdvertiseAddr = "" // a free port (tests): advertise what was bound
	}
	rcfg.Logger = log.With("component", "raft")
	// Raft accepts connections only from the addresses of gossip members.
	var gossip atomic.Pointer[membership.Membership]
	rcfg.AllowPeer = func(addr net.Addr) bool { return isMemberAddr(gossip.Load(), addr) }
	rs, err := raftstore.Open(rcfg)
	if err != nil {
		return fmt.Errorf("opening raft: %w", err)
	}
	defer rs.Shutdown()
	metrics.register(log, raftstore.NewCollector(rs))
	if rcfg.AdvertiseAddr == "" {
		raftAdv = rs.Addr()
	}

	mcfg := membership.DefaultConfig()
	mcfg.Name = f.nodeName
	mcfg.BindAddr = f.gossipAddr
	mcfg.AdvertiseAddr = f.advertiseAddr
	mcfg.Join = f.join
	mcfg.Secret = f.clusterSecret
	mcfg.Meta = membership.Meta{
		ClientURL: tlsc.scheme + "://" + net.JoinHostPort(host, portOf(clientLn.Addr())),
		AdminURL:  tlsc.scheme + "://" + net.JoinHostPort(host, portOf(adminLn.Addr())),
		RaftAddr:  raftAdv,
		Version:   version,
	}
	mcfg.Logger = log.With("component", "memberlist")
	members, err := membership.New(mcfg)
	if err != nil {
		return err
	}
	ringCfg := ring.DefaultConfig()
	ringCfg.Logger = log.With("component", "ring")
	rg, err := ring.New(ringCfg)
	if err != nil {
		return err
	}
	gossip.Store(members)
	if err := members.Start(); err != nil {
		return fmt.Errorf("--gossip-addr: %w", err)
	}
	defer members.Shutdown()

	ncfg := node.DefaultConfig()
	ncfg.Name = f.nodeName
	ncfg.AuthTTL = f.authTTL
	ncfg.Logger = log.With("component", "node")
	ncfg.Cluster = node.NewCluster(rg, members, log.With("component", "cluster"))
	ncfg.PeerAuth = node.NewPeerAuth(f.clusterSecret, time.Now)
	ncfg.XetSecret = f.clusterSecret
	ncfg.XetTokenTTL = f.xetTokenTTL
	ncfg.HotBytes = budget / 10
	ncfg.MetaBytes = int(min(metaBytes, math.MaxInt))
	ncfg.MaxFills = f.maxFills
	ncfg.PeerTLS = tlsc.peer
	ncfg.Metrics = metrics.node
	n, err := node.New(ncfg, node.LocalStore(st), &node.Remote{
		Name: node.DefaultRemote, Hub: hub, Token: f.upstreamToken, Policy: node.PolicyOnDemand, RefTTL: f.refTTL,
	})
	if err != nil {
		return err
	}
	st.SetOwned(n.Owns)
	st.SetXorbOwned(n.OwnsXorb)
	n.Start()
	// Ready: the store is open (it is, from here until serve returns), this
	// node is on its ring, the replicated configuration is applied, and it
	// is not draining. Both ports answer /-/ready with it.
	var draining atomic.Bool
	var applied func() uint64 // set once the applier exists
	ready := func() error {
		switch {
		case draining.Load():
			return errors.New("draining: shutting down")
		case applied == nil || applied() == 0:
			return errors.New("configuration not applied yet")
		case !slices.Contains(n.RingMembers(), f.nodeName):
			return errors.New("not on the ring yet")
		}
		return nil
	}
	clientAPI := httpapi.NewClient(httpapi.Config{Logger: log.With("component", "http"), NoRequestLog: !f.requestLog, MaxPerClient: f.maxPerClient, RequirePeerCert: f.peerTLSCA != "", Metrics: metrics.http, Activity: n, Ready: ready}, n,
		httpapi.Distribution{Name: "default", BasePath: "", Remote: node.DefaultRemote, Access: f.access})

	// Background work owned here: forming the Raft cluster, reconciling it
	// with gossip membership, applying configuration changes.
	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	defer func() { stopBG(); bgWG.Wait() }()
	sealer := raftstore.NewSealer(f.clusterSecret)
	applier := &configApplier{rs: rs, node: n, client: clientAPI, log: log.With("component", "config"), version: version, sealer: sealer, stallTimeout: f.upstreamStall, hubMetrics: metrics.hub}
	applied = applier.appliedIndex
	seed := seedCommands(f, sealer)
	bgWG.Add(3)
	go func() { defer bgWG.Done(); applier.run(bg) }()
	go func() { defer bgWG.Done(); formCluster(bg, rs, f, members, seed, log) }()
	go func() {
		defer bgWG.Done()
		reconcileLoop(bg, rs, members, raftstore.ReconcileConfig{Voters: f.raftVoters, ReapAfter: f.reapAfter}, log)
	}()

	client := &http.Server{
		Handler:           clientAPI,
		ReadHeaderTimeout: f.headerTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          serverErrorLog(log.With("component", "http")),
	}
	admin := &http.Server{
		Handler: httpapi.NewAdmin(httpapi.AdminDeps{
			Node: n,
			Store: func() httpapi.StoreStats {
				s := st.Stats()
				return httpapi.StoreStats{Used: s.Used, Budget: s.Budget, Blobs: s.Blobs, Xorbs: s.Xorbs, XorbBytes: s.XorbBytes}
			},
			Members:    members.Members,
			Config:     rs,
			Token:      f.adminToken,
			Sealer:     sealer,
			ForwardTLS: tlsc.peer,
			Metrics:    metrics.reg,
			Jobs:       n,
			Status:     n,
			Ready:      ready,
		}),
		ReadHeaderTimeout: f.headerTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          serverErrorLog(log.With("component", "admin")),
	}
	errc := make(chan error, 2)
	// Plain HTTP: simple GET and HEAD requests skip net/http's server (see
	// package h1); TLS stays all net/http (HTTP/2, ALPN).
	var fast *h1.Listener
	if tlsc.server != nil {
		clientLn = tls.NewListener(clientLn, tlsc.server)
		adminLn = tls.NewListener(adminLn, tlsc.server)
	} else {
		fast = h1.NewListener(clientLn, clientAPI, h1.Config{
			ReadHeaderTimeout: client.ReadHeaderTimeout, IdleTimeout: client.IdleTimeout, Logger: log.With("component", "http"),
		})
		clientLn = fast
	}
	go func() { errc <- client.Serve(clientLn) }()
	go func() { errc <- admin.Serve(adminLn) }()
	log.Info("hfcache serving",
		"node", f.nodeName, "client_addr", clientLn.Addr().String(), "admin_addr", adminLn.Addr().String(),
		"gossip_addr", members.GossipAddr(), "raft_addr", raftAdv, "client_url", mcfg.Meta.ClientURL, "join", f.join,
		"upstream", f.upstream, "upstream_token_set", f.upstreamToken != "", "access", f.access,
		"data_dir", dataDir, "cache_budget", budget, "gc_percent", gcTarget(), "version", version)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		log.Error("server stopped", "err", serveErr)
	}
	stopTimeout := 30 * time.Second
	if serveErr == nil && errors.Is(context.Cause(ctx), errDrainSignal) {
		(&drain{log: log.With("component", "drain"), grace: f.drainGrace, timeout: f.drainTimeout, hurry: hurry,
			draining: &draining, api: clientAPI, servers: keepAliveSetters(client, fast), node: n, ringCfg: ringCfg, self: f.nodeName}).run()
		// Leave the cluster while the client port still answers peers:
		// Raft first (a leader hands leadership over; once this node has
		// left gossip its peers would refuse its Raft connections), then
		// gossip, so peers stop routing here before the port closes.
		stopBG()
		bgWG.Wait()
		if err := rs.Shutdown(); err != nil {
			log.Warn("stopping raft", "err", err)
		}
		if err := members.Leave(5 * time.Second); err != nil {
			log.Warn("leaving the cluster", "err", err)
		}
		stopTimeout = 5 * time.Second // what was still under way had its time
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := client.Shutdown(sctx); err != nil {
		client.Close() // cut what is still under way
	}
	if fast != nil {
		fast.Close() // client.Shutdown closed it too: stop serving idle connections
		if err := fast.Wait(sctx); err != nil {
			fast.CloseConns()
		}
	}
	admin.Shutdown(sctx)
	stopBG()
	bgWG.Wait()
	if err := rs.Shutdown(); err != nil { // a leader hands leadership over first
		log.Warn("stopping raft", "err", err)
	}
	if err := members.Leave(5 * time.Second); err != nil {
		log.Warn("leaving the cluster", "err", err)
	}
	n.Shutdown(sctx)
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// positiveSize parses a byte-size flag that must be positive.
func positiveSize(name, v string) (int64, error) {
	b, err := parseSize(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if b <= 0 {
		return 0, fmt.Errorf("%s must be positive", name)
	}
	return b, nil
}

// budgetFor is the --cache-size budget, or 0 for the default (which the
// store computes with defaultBudget once it knows what it holds).
func budgetFor(flag string) (int64, error) {
	if flag != "" {
		return positiveSize("--cache-size", flag)
	}
	return 0, nil
}
