package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hfcache/hfcache/test/fakeclock"
)

// The in-process cluster harness: real raft over TCP on 127.0.0.1, bolt in
// t.TempDir(), tight timings, polling waits with deadlines.

const waitBound = 15 * time.Second

// fastRaft: elections in a few hundred milliseconds instead of seconds, yet
// loose enough that a leader does not lose its lease when the race
// detector and parallel test binaries starve it for a moment.
func fastRaft(c *raft.Config) {
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 200 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
}

// testLogger is silent unless RAFTSTORE_TEST_LOG=1.
func testLogger(id string) *slog.Logger {
	if os.Getenv("RAFTSTORE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id)
}

func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
}

type testNode struct {
	id, dir, addr string
	tune          func(*raft.Config)
	clock         *fakeclock.Clock
	// allow is the node's Config.AllowPeer; nil admits loopback only, so
	// every multi-node test runs through the transport's admission check.
	allow func(net.Addr) bool
	s     *Store
}

// allowIPs is an AllowPeer admitting exactly the given IPs, the way the
// node admits its gossip members' IPs.
func allowIPs(ips ...string) func(net.Addr) bool {
	return func(a net.Addr) bool {
		tcp, ok := a.(*net.TCPAddr)
		if !ok {
			return false
		}
		for _, ip := range ips {
			if tcp.IP.Equal(net.ParseIP(ip)) {
				return true
			}
		}
		return false
	}
}

func openNode(t *testing.T, id string, tune func(*raft.Config)) *testNode {
	t.Helper()
	return openNodeClock(t, id, tune, newFakeClock())
}

func openNodeClock(t *testing.T, id string, tune func(*raft.Config), clock *fakeclock.Clock) *testNode {
	t.Helper()
	n := &testNode{id: id, dir: t.TempDir(), addr: "127.0.0.1:0", tune: tune, clock: clock}
	n.open(t)
	return n
}

// open (re)opens the node on its directory and address.
func (n *testNode) open(t *testing.T) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir, cfg.NodeID, cfg.BindAddr = n.dir, n.id, n.addr
	cfg.Logger = testLogger(n.id)
	cfg.Now = n.clock.Now
	cfg.AllowPeer = n.allow
	if cfg.AllowPeer == nil {
		cfg.AllowPeer = allowIPs("127.0.0.1")
	}
	cfg.Tune = func(c *raft.Config) {
		fastRaft(c)
		if n.tune != nil {
			n.tune(c)
		}
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open %s: %v", n.id, err)
	}
	n.s, n.addr = s, s.Addr()
	t.Cleanup(func() { _ = s.Shutdown() })
}

func (n *testNode) shutdown(t *testing.T) {
	t.Helper()
	if err := n.s.Shutdown(); err != nil {
		t.Fatalf("shutdown %s: %v", n.id, err)
	}
}

func (n *testNode) member(state string) Member {
	return Member{ID: n.id, RaftAddr: n.addr, State: state}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	t.Cleanup(cancel)
	return ctx
}

// leader waits until exactly one of the running nodes leads and every
// running node knows it.
func leader(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, "one leader known to all", func() bool {
		l = nil
		for _, n := range nodes {
			if n.s.IsLeader() {
				if l != nil {
					return false
				}
				l = n
			}
		}
		if l == nil {
			return false
		}
		for _, n := range nodes {
			if _, id := n.s.Leader(); id != l.id {
				return false
			}
		}
		return true
	})
	return l
}

// apply applies on whichever node leads, retrying while leadership moves.
func apply(t *testing.T, nodes []*testNode, cmd Command) uint64 {
	t.Helper()
	var idx uint64
	var err error
	waitFor(t, fmt.Sprintf("apply %v", cmd.Op), func() bool {
		for _, n := range running(nodes) {
			if n.s.IsLeader() {
				idx, err = n.s.Apply(context.Background(), cmd)
				return err == nil || !isRetryable(err)
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("apply %s: %v", cmd.Op, err)
	}
	return idx
}

func isRetryable(err error) bool {
	return err != nil && (isNotLeader(err) || errors.Is(err, ErrNoLeader) || containsLeadershipLost(err))
}

func isNotLeader(err error) bool {
	var nl *NotLeaderError
	return errors.As(err, &nl)
}

func containsLeadershipLost(err error) bool {
	return err != nil && errors.Is(err, raft.ErrLeadershipLost)
}

// servers is a node's view of the raft configuration: id → suffrage.
func servers(n *testNode) map[string]string {
	m := map[string]string{}
	for _, s := range n.s.Status().Servers {
		m[s.ID] = s.Suffrage
	}
	return m
}

func voters(n *testNode) []string {
	var v []string
	for id, s := range servers(n) {
		if s == "voter" {
			v = append(v, id)
		}
	}
	sort.Strings(v)
	return v
}

// cluster starts n nodes: the first bootstraps itself with the default
// seed, the leader's Reconcile adds the others.
func cluster(t *testing.T, count int, tune func(*raft.Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, count)
	for i := range nodes {
		nodes[i] = openNode(t, fmt.Sprintf("n%d", i+1), tune)
	}
	if err := nodes[0].s.BootstrapSelf(DefaultSeed()); err != nil {
		t.Fatal(err)
	}
	members := make([]Member, count)
	for i, n := range nodes {
		members[i] = n.member(StateAlive)
	}
	reconcile(t, nodes, members, ReconcileConfig{Voters: 3})
	l := leader(t, nodes...)
	idx, _ := l.s.fsm.index() // FSM-visible: commands and configurations, not no-ops
	for _, n := range nodes {
		if err := n.s.WaitIndex(ctxFor(t), idx); err != nil {
			t.Fatalf("%s catching up: %v", n.id, err)
		}
	}
	return nodes
}

// reconcile runs Reconcile on the leader until it succeeds there, riding
// out a leadership change (it is a no-op on followers).
func reconcile(t *testing.T, nodes []*testNode, members []Member, rc ReconcileConfig) {
	t.Helper()
	var err error
	defer func() {
		if t.Failed() && err != nil {
			t.Logf("last reconcile error: %v", err)
		}
	}()
	waitFor(t, "reconcile on the leader", func() bool {
		for _, n := range running(nodes) {
			if !n.s.IsLeader() {
				continue
			}
			if err = n.s.Reconcile(members, rc); err == nil && n.s.IsLeader() {
				return true
			}
		}
		return false
	})
}

// running is the nodes not shut down.
func running(nodes []*testNode) []*testNode {
	var r []*testNode
	for _, n := range nodes {
		if !n.s.closed.Load() {
			r = append(r, n)
		}
	}
	return r
}
