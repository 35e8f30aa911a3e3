package main

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hfcache/hfcache/httpapi"
	"github.com/hfcache/hfcache/hubclient"
	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/hfcache/hfcache/node/membership"
	"github.com/hfcache/hfcache/raftstore"
)

// configApplier turns the replicated configuration into what the node and
// the client handler serve: one hub client per remote, distributions
// resolved to their remote. It runs on every node after every change.
type configApplier struct {
	rs      *raftstore.Store
	node    *node.Node
	client  *httpapi.Client
	log     *slog.Logger
	version string
	sealer  *raftstore.Sealer
	// stallTimeout is every remote client's StallTimeout (--upstream-stall-timeout).
	stallTimeout time.Duration
	// hubMetrics counts every remote client's upstream traffic (nil: none).
	hubMetrics *hubclient.Metrics

	mu      sync.Mutex
	clients map[string]hubEntry // remote name → client for its URL
	applied uint64
}

type hubEntry struct {
	url    string
	client *hubclient.Client
}

// run applies the configuration now and after every change until ctx ends.
func (a *configApplier) run(ctx context.Context) {
	a.apply()
	for {
		select {
		case <-ctx.Done():
			a.mu.Lock()
			for _, e := range a.clients {
				e.client.Close()
			}
			a.mu.Unlock()
			return
		case <-a.rs.Changes():
			a.apply()
		}
	}
}

// appliedIndex is the configuration index being served (0: none yet).
func (a *configApplier) appliedIndex() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

func (a *configApplier) apply() {
	s := a.rs.Snapshot()
	if len(s.Remotes) == 0 {
		return // not seeded yet: keep serving the flags' default remote
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clients == nil {
		a.clients = map[string]hubEntry{}
	}
	var remotes []*node.Remote
	for name, r := range s.Remotes {
		e, ok := a.clients[name]
		if !ok || e.url != r.URL {
			cfg := hubclient.DefaultConfig()
			cfg.BaseURL = r.URL
			cfg.UserAgent = "hfcache/" + a.version
			cfg.Logger = a.log.With("remote", name)
			if a.stallTimeout > 0 {
				cfg.StallTimeout = a.stallTimeout
			}
			cfg.Metrics = a.hubMetrics.Remote(name)
			c, err := hubclient.New(cfg)
			if err != nil {
				a.log.Error("remote not usable", "remote", name, "err", err)
				continue
			}
			if ok {
				e.client.Close()
			}
			e = hubEntry{url: r.URL, client: c}
			a.clients[name] = e
		}
		token, err := a.sealer.Open(r.Token)
		if err != nil {
			a.log.Error("remote token unusable; serving the remote without it", "remote", name, "err", err)
		}
		ttl, err := time.ParseDuration(r.RefTTL)
		if err != nil {
			ttl = time.Minute
		}
		var maxSize int64
		if r.MaxFileSize != "" {
			maxSize, _ = raftstore.ParseBytes(r.MaxFileSize)
		}
		remotes = append(remotes, &node.Remote{Name: name, Hub: e.client, Token: token, Policy: r.Policy,
			RefTTL: ttl, Include: r.Include, Exclude: r.Exclude, MaxFileSize: maxSize, Xet: r.Xet})
	}
	for name, e := range a.clients {
		if _, ok := s.Remotes[name]; !ok {
			e.client.Close()
			delete(a.clients, name)
			a.hubMetrics.Forget(name)
		}
	}
	var dists []httpapi.Distribution
	for _, d := range s.Distributions {
		repo, ok := s.Repositories[d.Repository]
		if !ok {
			continue
		}
		dists = append(dists, httpapi.Distribution{Name: d.Name, BasePath: d.BasePath, Repository: repo.Name, Remote: repo.Remote, Access: d.Access})
	}
	var warm []node.WarmItem
	for _, repo := range s.Repositories {
		if s.Remotes[repo.Remote].Policy != node.PolicyImmediate {
			continue
		}
		for _, w := range repo.Warm {
			t, err := hf.ParseRepoType(w.Type)
			if err != nil {
				continue
			}
			r, err := hf.NewRepo(t, w.Repo)
			if err != nil {
				continue
			}
			rev := hf.Revision("main")
			if w.Revision != "" {
				rev = hf.Revision(w.Revision)
			}
			warm = append(warm, node.WarmItem{Remote: repo.Remote, Repository: repo.Name, Repo: r, Revision: rev, Include: w.Include})
		}
	}
	quotas := map[string]int64{}
	for _, repo := range s.Repositories {
		if repo.Quota == "" {
			continue
		}
		if q, err := raftstore.ParseBytes(repo.Quota); err == nil && q > 0 {
			quotas[repo.Name] = q
		}
	}
	a.node.SetRemotes(remotes)
	a.node.SetQuotas(quotas)
	a.client.SetDistributions(dists)
	a.node.SetWarm(warm)
	a.applied = s.Index
	a.log.Info("configuration applied", "index", s.Index, "remotes", len(remotes), "distributions", len(dists))
}

// raftMembers turns gossip members into what Raft reconciliation needs.
func raftMembers(ms []membership.Member) []raftstore.Member {
	out := make([]raftstore.Member, 0, len(ms))
	for _, m := range ms {
		if m.Meta.RaftAddr == "" {
			continue
		}
		out = append(out, raftstore.Member{ID: m.Name, RaftAddr: m.Meta.RaftAddr, State: string(m.State)})
	}
	return out
}

// seedCommands is the configuration a new cluster starts with: the default
// remote from --upstream (and its token), a repository on it, and a
// distribution serving it at the root with --access.
func seedCommands(f serveFlags, sealer *raftstore.Sealer) []raftstore.Command {
	return []raftstore.Command{
		raftstore.PutRemote(raftstore.Remote{Name: node.DefaultRemote, URL: f.upstream, Token: sealer.Seal(f.upstreamToken),
			Policy: node.PolicyOnDemand, RefTTL: f.refTTL.String()}),
		raftstore.PutRepository(raftstore.Repository{Name: "default", Remote: node.DefaultRemote}),
		raftstore.PutDistribution(raftstore.Distribution{Name: "default", BasePath: "", Repository: "default", Access: f.access}),
	}
}

// formCluster forms or joins the Raft cluster: existing state restarts as
// it was; --bootstrap-expect N waits for N members and bootstraps them all
// as voters; a lone node without --join bootstraps itself; a node with
// --join waits for the leader to add it.
func formCluster(ctx context.Context, rs *raftstore.Store, f serveFlags, members *membership.Membership, seed []raftstore.Command, log *slog.Logger) {
	switch {
	case rs.HasState():
		log.Info("raft: restarting with existing state")
	case f.bootstrapExp > 0:
		log.Info("raft: waiting for members to bootstrap", "expect", f.bootstrapExp)
		if err := rs.BootstrapExpect(ctx, f.bootstrapExp, func() []raftstore.Member { return raftMembers(members.Members()) }, seed); err != nil && ctx.Err() == nil {
			log.Error("raft: bootstrap-expect failed", "err", err)
		}
	case len(f.join) == 0:
		if err := rs.BootstrapSelf(seed); err != nil {
			log.Error("raft: bootstrapping a single-node cluster", "err", err)
		}
	default:
		log.Info("raft: waiting for the leader to add this node")
	}
}

// reconcileLoop has the leader bring Raft's membership in line with
// gossip's, every few seconds.
func reconcileLoop(ctx context.Context, rs *raftstore.Store, members *membership.Membership, rc raftstore.ReconcileConfig, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !rs.IsLeader() {
				continue
			}
			if err := rs.Reconcile(raftMembers(members.Members()), rc); err != nil {
				log.Warn("raft: reconciling membership", "err", err)
			}
		}
	}
}

// isMemberAddr reports whether addr's IP is one of a gossip member's (its
// gossip or Raft address): the Raft port admits only cluster members.
func isMemberAddr(m *membership.Membership, addr net.Addr) bool {
	if m == nil {
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	for _, mem := range m.Members() {
		for _, a := range []string{mem.Addr, mem.Meta.RaftAddr} {
			h, _, err := net.SplitHostPort(a)
			if err != nil {
				continue
			}
			if other := net.ParseIP(h); other != nil {
				if ip != nil && other.Equal(ip) {
					return true
				}
				continue
			}
			if ips, err := net.LookupIP(h); err == nil && ip != nil {
				for _, o := range ips {
					if o.Equal(ip) {
						return true
					}
				}
			}
		}
	}
	return false
}
