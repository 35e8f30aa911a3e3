package node

import (
	"context"
	"log/slog"
	"sort"
	"sync"

	"github.com/hfcache/hfcache/node/membership"
)

// Ring is what the node needs from the consistent-hash ring.
type Ring interface {
	Set(members []string) uint64
	Members() []string
	Owner(key string) (string, bool)
	Preference(key string, n int) []string
	PreviousOwners(key string) []string
}

// Membership is what the node needs from gossip.
type Membership interface {
	Members() []membership.Member
	Changes() <-chan struct{}
	LocalName() string
}

// Peer is another node as the routing sees it.
type Peer struct {
	Name      string
	ClientURL string
	State     membership.State
}

// Cluster turns gossip membership into ring ownership. Membership changes
// ownership (alive and suspect members are on the ring); health only skips
// (a suspect or dead owner is passed over in preference order, but keeps
// its keys until it is gone from the membership).
type Cluster struct {
	self    string
	ring    Ring
	members Membership
	log     *slog.Logger

	mu    sync.RWMutex
	peers map[string]Peer
}

// NewCluster builds the cluster view; Node.Start runs its event loop.
func NewCluster(ring Ring, members Membership, log *slog.Logger) *Cluster {
	c := &Cluster{self: members.LocalName(), ring: ring, members: members, log: log, peers: map[string]Peer{}}
	c.refresh()
	return c
}

// RingMembers are the members the ring places keys on now.
func (c *Cluster) RingMembers() []string { return c.ring.Members() }

// Self is this node's name.
func (c *Cluster) Self() string { return c.self }

// run is the one event loop that feeds membership into the ring.
func (c *Cluster) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.members.Changes():
			c.refresh()
		}
	}
}

func (c *Cluster) refresh() {
	peers := map[string]Peer{}
	var onRing []string
	for _, m := range c.members.Members() {
		peers[m.Name] = Peer{Name: m.Name, ClientURL: m.Meta.ClientURL, State: m.State}
		if m.State == membership.StateAlive || m.State == membership.StateSuspect {
			onRing = append(onRing, m.Name)
		}
	}
	if _, ok := peers[c.self]; !ok {
		peers[c.self] = Peer{Name: c.self, State: membership.StateAlive}
		onRing = append(onRing, c.self)
	}
	sort.Strings(onRing)
	c.mu.Lock()
	c.peers = peers
	c.mu.Unlock()
	v := c.ring.Set(onRing)
	c.log.Info("ring updated", "version", v, "members", onRing)
}

// Route lists the nodes that should serve key, best first: the owner and the
// rest of the preference list, skipping members that are not alive. It
// always returns at least this node.
func (c *Cluster) Route(key string, n int) []Peer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Peer
	for _, name := range c.ring.Preference(key, n) {
		if p, ok := c.peers[name]; ok && (p.State == membership.StateAlive || name == c.self) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = append(out, Peer{Name: c.self, State: membership.StateAlive})
	}
	return out
}

// Preference lists key's owner and the rest of its preference list in ring
// order, alive and suspect members alike: nodes that agree on the ring agree
// on the owner whatever each of them suspects, and a suspect node is
// usually only slow. Callers fall through to the next on errPeerDown.
func (c *Cluster) Preference(key string, n int) []Peer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Peer
	for _, name := range c.ring.Preference(key, n) {
		p, ok := c.peers[name]
		switch {
		case name == c.self:
			out = append(out, Peer{Name: c.self, State: membership.StateAlive})
		case ok && (p.State == membership.StateAlive || p.State == membership.StateSuspect):
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = append(out, Peer{Name: c.self, State: membership.StateAlive})
	}
	return out
}

// Peer is the named member, if it is alive and reachable over HTTP.
func (c *Cluster) Peer(name string) (Peer, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.peers[name]
	return p, ok && p.State == membership.StateAlive && p.ClientURL != ""
}

// Owns reports whether this node owns key on the current ring.
func (c *Cluster) Owns(key string) bool {
	o, ok := c.ring.Owner(key)
	return !ok || o == c.self
}

// Holders lists other nodes that may hold key's blob: its owners in earlier
// ring versions first, then the current preference list; alive nodes
// first, then suspect ones. A suspect node is often only slow (a loaded
// machine misses a probe), and copying from it, bounded by the peer dial
// and TCP timeouts, beats fetching the blob from the Hub a second time.
func (c *Cluster) Holders(key string, n int) []Peer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	seen := map[string]bool{c.self: true}
	var out, suspect []Peer
	add := func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		p, ok := c.peers[name]
		if !ok || p.ClientURL == "" {
			return
		}
		switch p.State {
		case membership.StateAlive:
			out = append(out, p)
		case membership.StateSuspect:
			suspect = append(suspect, p)
		}
	}
	for _, name := range c.ring.PreviousOwners(key) {
		add(name)
	}
	for _, name := range c.ring.Preference(key, n) {
		add(name)
	}
	return append(out, suspect...)
}
